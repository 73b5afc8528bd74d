//! `open BUNDLE --identity FILE --trust PUBKEY… --into DIR`: the node's
//! whole path — verify, decrypt, and lay the payload over DIR with the safe
//! overlay (all or nothing).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use satchel_format::open::open_into;
use satchel_overlay::Options;
use serde_json::json;

use super::{error_kind, manifest_json, print_json, CheckArgs};

/// Arguments of `open`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The age identity that decrypts the payload (default: the admin
    /// profile's `identity`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The directory to lay the payload over (must exist).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// Trusted keys, expected target, serial floor.
    #[command(flatten)]
    pub check: CheckArgs,
}

/// Runs `open`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let ids = super::admin_identities(&a.identity, &super::profile::Profile::load()?)?;
    let checks = a.check.checks()?;
    if !a.into.is_dir() {
        return Err(
            super::UsageError(format!("--into {}: not a directory", a.into.display())).into(),
        );
    }
    let size = std::fs::metadata(&a.bundle)
        .with_context(|| format!("cannot open {}", a.bundle.display()))?
        .len();
    let counter = AtomicU64::new(0);
    let result = super::progress::with_progress("opening", Some(2 * size), &counter, || {
        open_into(
            &a.bundle,
            &checks,
            &ids,
            &a.into,
            &Options::default(),
            &counter,
        )
    });
    match result {
        Ok((verified, applied)) => {
            if super::json_output() {
                print_json(&json!({
                    "bundle": a.bundle,
                    "into": a.into,
                    "signer": verified.signer().to_string(),
                    "manifest": manifest_json(verified.manifest()),
                    "entries": applied.summary.entries,
                    "changes": applied.changes,
                }))?;
            } else {
                println!(
                    "opened {} into {}: {} entries, signed by {}",
                    a.bundle.display(),
                    a.into.display(),
                    verified.manifest().payload.entries,
                    verified.signer()
                );
                for line in super::changes_lines(&applied.changes) {
                    println!("  {line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if super::json_output() {
                print_json(&json!({
                    "bundle": a.bundle,
                    "error": { "kind": error_kind(&e), "message": e.to_string() },
                }))?;
                Ok(ExitCode::from(1))
            } else {
                Err(anyhow::Error::new(e).context(format!(
                    "refused {} (nothing was written to {})",
                    a.bundle.display(),
                    a.into.display()
                )))
            }
        }
    }
}
