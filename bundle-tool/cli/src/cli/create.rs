//! `create`: pack a directory (or take a checked tar), compress, encrypt to
//! the recipients, sign, and write the bundle.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use satchel_format::manifest::{format_time, Policy};
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Recipient, SigningKey};
use serde_json::json;
use time::OffsetDateTime;

use super::{manifest_json, manifest_lines, print_json, TargetArgs, UsageError};

/// Arguments of `create`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["mac", "site"])))]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_dir", "from_tar"])))]
pub struct Args {
    /// --mac MAC [--site NAME] for a host bundle, --site NAME for a site bundle.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The serial; must grow for each new bundle of the same target.
    #[arg(long, value_name = "N")]
    pub serial: u64,
    /// Expiry: a date (2027-01-31), an RFC 3339 time, or a duration from now (30d, 12h).
    #[arg(long, value_name = "DATE|DURATION")]
    pub expires: String,
    /// The admin's signing secret key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE")]
    pub sign_key: PathBuf,
    /// An age recipient (age1…): the node's or site's, and each admin's.
    #[arg(long = "recipient", value_name = "AGE1…", required = true)]
    pub recipients: Vec<String>,
    /// Pack this directory (regular files, directories, symlinks inside it).
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Use this tar as the payload (checked with the overlay's rules first).
    #[arg(long, value_name = "FILE")]
    pub from_tar: Option<PathBuf>,
    /// Store the source files' numeric owners instead of 0:0 (--from-dir).
    #[arg(long)]
    pub keep_owners: bool,
    /// Keep setuid, setgid, sticky and world-writable bits (signed policy).
    #[arg(long)]
    pub allow_special_bits: bool,
    /// The bundle file to write.
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    pub out: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--expires`: RFC 3339, `YYYY-MM-DD` (midnight UTC), or a duration.
pub fn parse_expires(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, UsageError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(text, &date_format) {
        return Ok(d.midnight().assume_utc());
    }
    if let Ok(d) = humantime::parse_duration(text) {
        let d = time::Duration::try_from(d)
            .map_err(|_| UsageError(format!("--expires {text:?} is too far away")))?;
        return now
            .checked_add(d)
            .ok_or_else(|| UsageError(format!("--expires {text:?} is too far away")));
    }
    Err(UsageError(format!(
        "--expires {text:?} is not a date (2027-01-31), an RFC 3339 time (2027-01-31T12:00:00Z) or a duration (30d, 12h)"
    )))
}

/// Runs `create`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let expires = parse_expires(&a.expires, now)?;
    if expires <= now {
        return Err(
            UsageError(format!("--expires {} is in the past", format_time(expires))).into(),
        );
    }
    let Some((target, site)) = a.target.parse()? else {
        return Err(UsageError("give --mac MAC [--site NAME] or --site NAME".into()).into());
    };
    let recipients = a
        .recipients
        .iter()
        .map(|r| Recipient::parse(r).map_err(|e| UsageError(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let key = SigningKey::read_pem_file(&a.sign_key)
        .with_context(|| format!("cannot read the signing key {}", a.sign_key.display()))?;
    let params = SealParams {
        target,
        site,
        serial: a.serial,
        created: now,
        expires,
        policy: Policy {
            allow_special_bits: a.allow_special_bits,
        },
        recipients,
    };
    let (source, total) = match (&a.from_dir, &a.from_tar) {
        (Some(dir), _) => (
            Source::Dir {
                path: dir,
                keep_owners: a.keep_owners,
            },
            None,
        ),
        (None, Some(tar)) => {
            let entries = check_tar(tar, a.allow_special_bits)?;
            let file = std::fs::File::open(tar)
                .with_context(|| format!("cannot open {}", tar.display()))?;
            let size = file.metadata().map(|m| m.len()).ok();
            (Source::Tar { file, entries }, size)
        }
        (None, None) => {
            return Err(UsageError("give --from-dir DIR or --from-tar FILE".into()).into())
        }
    };
    let counter = AtomicU64::new(0);
    let sealed = super::progress::with_progress("packing", total, &counter, || {
        seal_to_file(&params, source, &key, &a.out, &counter)
    })
    .with_context(|| {
        let from = a
            .from_dir
            .as_ref()
            .or(a.from_tar.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("cannot create {} from {from}", a.out.display())
    })?;
    if a.json {
        print_json(&json!({
            "bundle": a.out,
            "size": sealed.bundle_size,
            "manifest": manifest_json(&sealed.manifest),
        }))?;
    } else {
        println!("wrote {} ({} bytes)", a.out.display(), sealed.bundle_size);
        for line in manifest_lines(&sealed.manifest) {
            println!("  {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks a `--from-tar` payload with the overlay's rules; returns its entry count.
fn check_tar(path: &Path, allow_special_bits: bool) -> anyhow::Result<u64> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let opts = satchel_overlay::Options {
        allow_special_bits,
        ..Default::default()
    };
    let summary = satchel_overlay::check_archive(std::io::BufReader::new(file), &opts)
        .with_context(|| format!("{} is refused as a payload", path.display()))?;
    Ok(summary.entries.len() as u64)
}
