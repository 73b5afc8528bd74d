//! `verify BUNDLE --trust PUBKEY… [--mac MAC | --site NAME]`: the node's
//! checks without an identity (signature, target, expiry, serial floor,
//! payload size and hash, container shape). Exit 0 valid, 1 invalid.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use satchel_bundle::open::{verify_reader, Counted};
use satchel_bundle::verify::Checks;
use serde_json::json;

use super::{error_kind, load_trust, manifest_json, manifest_lines, print_json, TargetArgs};

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub bundle: PathBuf,
    /// A trusted signing public key (PEM); repeat for several.
    #[arg(long = "trust", value_name = "PUBKEY", required = true)]
    pub trust: Vec<PathBuf>,
    /// The target the bundle must be for (default: any).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Refuse serials below this (as a node's floor would).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub serial_floor: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `verify`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let trusted = load_trust(&a.trust)?;
    if a.target.mac.is_some() && a.target.site.is_some() {
        return Err(super::UsageError("give --mac or --site, not both".into()).into());
    }
    let mut checks = Checks::new(trusted);
    checks.target = a.target.parse()?.map(|(t, _)| t);
    checks.serial_floor = a.serial_floor;
    let size = std::fs::metadata(&a.bundle).map(|m| m.len()).ok();
    let counter = AtomicU64::new(0);
    let result = super::progress::with_progress("verifying", size, &counter, || {
        let file = File::open(&a.bundle)?;
        verify_reader(BufReader::new(Counted::new(file, &counter)), &checks)
    });
    match result {
        Ok(v) => {
            if a.json {
                print_json(&json!({
                    "valid": true,
                    "bundle": a.bundle,
                    "signer": v.signer.to_string(),
                    "manifest": manifest_json(v.manifest()),
                }))?;
            } else {
                println!(
                    "{}: valid, signed by trusted key {}",
                    a.bundle.display(),
                    v.signer
                );
                for line in manifest_lines(v.manifest()) {
                    println!("  {line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if a.json {
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
