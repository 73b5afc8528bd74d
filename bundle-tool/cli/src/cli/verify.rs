//! `verify BUNDLE --trust PUBKEY… [--mac MAC | --site NAME]`: the node's
//! checks without an identity (signature, target, expiry, serial floor,
//! payload size and hash, container shape). Exit 0 valid, 1 invalid, 2 when
//! the bundle cannot be read at all (usage or I/O: nothing was judged).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use satchel_format::open::{verify_reader, Counted};
use serde_json::json;

use super::{error_kind, manifest_json, manifest_lines, print_json, CheckArgs};

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub bundle: PathBuf,
    /// Trusted keys, expected target, serial floor.
    #[command(flatten)]
    pub check: CheckArgs,
}

/// Runs `verify`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let checks = a.check.checks()?;
    // A file that cannot be opened is not an invalid bundle: say so, exit 2.
    File::open(&a.bundle)
        .map_err(|e| super::UsageError(format!("cannot read {}: {e}", a.bundle.display())))?;
    let size = std::fs::metadata(&a.bundle).map(|m| m.len()).ok();
    let counter = AtomicU64::new(0);
    let result = super::progress::with_progress("verifying", size, &counter, || {
        let file = File::open(&a.bundle)?;
        verify_reader(BufReader::new(Counted::new(file, &counter)), &checks)
    });
    match result {
        Ok(v) => {
            if super::json_output() {
                print_json(&json!({
                    "valid": true,
                    "bundle": a.bundle,
                    "signer": v.signer().to_string(),
                    "manifest": manifest_json(v.manifest()),
                }))?;
            } else {
                println!(
                    "{}: valid, signed by trusted key {}",
                    a.bundle.display(),
                    v.signer()
                );
                for line in manifest_lines(v.manifest()) {
                    println!("  {line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(satchel_format::OpenError::Io(e)) => {
            Err(super::UsageError(format!("cannot read {}: {e}", a.bundle.display())).into())
        }
        Err(e) => {
            if super::json_output() {
                print_json(&json!({
                    "valid": false,
                    "bundle": a.bundle,
                    "error": { "kind": error_kind(&e), "message": e.to_string() },
                }))?;
            } else {
                println!("{}: INVALID: {e}", a.bundle.display());
            }
            Ok(ExitCode::from(1))
        }
    }
}
