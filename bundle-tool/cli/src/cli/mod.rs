//! The `satchel-bundle` subcommands, one file each, and what they share.
//!
//! Layout: [`Cli`] and [`Command`] (the clap definitions, which also feed
//! help, man page and completions) live here; each subcommand has its own
//! file with an `Args` struct and a `run` function returning an exit status.
//! Helpers shared by several subcommands (loading keys, target flags,
//! output, error kinds) are in this file and in [`progress`].
//!
//! To add a subcommand: a new file with `Args` and `run`, a variant in
//! [`Command`], and an arm in [`run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use satchel_format::error::{ContainerError, OpenError, VerifyError};
use satchel_format::{Identities, Mac, SiteName, Target, VerifyingKey};

mod approve;
mod completions;
mod create;
mod demo;
mod diff;
mod fleet;
mod initrd;
mod inspect;
mod keygen;
mod open;
mod profile;
pub mod progress;
mod publish;
mod recipients;
mod rollback;
mod template;
mod uploads;
mod verify;

/// satchel's offline bundle tool: keys, create, inspect, verify, open.
#[derive(Debug, Parser)]
#[command(name = "satchel-bundle", version, about, long_about = None)]
pub struct Cli {
    /// Log debug details to stderr (or set SATCHEL_LOG, e.g. SATCHEL_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Print JSON on stdout instead of text (every subcommand; before or after it).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a signing key pair or an age identity.
    #[command(subcommand)]
    Keygen(keygen::Keygen),
    /// Create a signed, encrypted bundle from a directory or a tar.
    Create(create::Args),
    /// Show a bundle's manifest and sizes (and its files, with an identity).
    Inspect(inspect::Args),
    /// Check a bundle against trusted keys: exit 0 valid, 1 invalid, 2 usage error.
    Verify(verify::Args),
    /// Verify, decrypt and lay a bundle over a directory (the node's overlay).
    Open(open::Args),
    /// Run a full keygen → create → verify → open round trip on sample data.
    Demo(demo::Args),
    /// Show what changed between two bundles or directories (added, removed, changed).
    Diff(diff::Args),
    /// Build a node's initrd overlay (zstd newc cpio) to append to a distro initrd.
    Initrd(initrd::Args),
    /// List, pull or reject captured uploads in the server's quarantine (admin cert).
    #[command(subcommand)]
    Uploads(uploads::Uploads),
    /// Review a pulled upload and sign it into a host bundle.
    Approve(approve::Args),
    /// Upload a signed bundle to the server (admin cert).
    Publish(publish::Args),
    /// The server's inventory: last result, applied serials, stale or failed nodes (admin cert).
    Nodes(fleet::NodesArgs),
    /// The published bundles: serial, size, signer, expiry (admin cert).
    Bundles(fleet::BundlesArgs),
    /// The server's audit log (admin cert).
    AuditLog(fleet::AuditArgs),
    /// The kept versions of one target (admin cert).
    History(fleet::HistoryArgs),
    /// Publish a kept version's payload again, re-signed at a new serial (admin cert).
    Rollback(rollback::Args),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the man page (or write all pages into a directory).
    Man(completions::ManArgs),
}

/// Whether `--json` was given (set once by [`run`]).
static JSON_OUTPUT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether the output is JSON (`--json`).
pub fn json_output() -> bool {
    JSON_OUTPUT.get().copied().unwrap_or(false)
}

/// Runs a parsed command line and prints its errors.
pub fn run(cli: Cli) -> ExitCode {
    let _ = JSON_OUTPUT.set(cli.json);
    let result = match &cli.command {
        Command::Keygen(k) => keygen::run(k),
        Command::Create(a) => create::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Open(a) => open::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Initrd(a) => initrd::run(a),
        Command::Uploads(u) => uploads::run(u),
        Command::Approve(a) => approve::run(a),
        Command::Publish(a) => publish::run(a),
        Command::Nodes(a) => fleet::nodes(a),
        Command::Bundles(a) => fleet::bundles(a),
        Command::AuditLog(a) => fleet::audit(a),
        Command::History(a) => fleet::history(a),
        Command::Rollback(a) => rollback::run(a),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("satchel-bundle: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// A mistake in the command line that clap cannot see (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `--mac MAC` and/or `--site NAME`, for the target a bundle must be for.
#[derive(Debug, Args, Clone, Default)]
pub struct TargetArgs {
    /// The node's MAC address (any common form; stored as aa-bb-cc-dd-ee-ff).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// The site (datacenter) name: a site bundle, or with --mac the host's site.
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
}

impl TargetArgs {
    /// The target and, for a host, its site. `None` if neither flag is given.
    pub fn parse(&self) -> anyhow::Result<Option<(Target, Option<SiteName>)>> {
        let site = match &self.site {
            Some(s) => Some(SiteName::parse(s).map_err(|e| UsageError(e.to_string()))?),
            None => None,
        };
        match (&self.mac, site) {
            (Some(m), site) => {
                let mac = Mac::parse(m).map_err(|e| UsageError(e.to_string()))?;
                Ok(Some((Target::Host(mac), site)))
            }
            (None, Some(site)) => Ok(Some((Target::Site(site), None))),
            (None, None) => Ok(None),
        }
    }
}

/// The checks `verify` and `open` share: trusted keys, the expected target,
/// and a serial floor, as a node applies them.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A trusted signing public key (PEM); repeat for several.
    #[arg(long = "trust", value_name = "PUBKEY", required = true)]
    pub trust: Vec<PathBuf>,
    /// The target the bundle must be for (default: any).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Refuse serials below this (as a node's floor would).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub serial_floor: u64,
}

impl CheckArgs {
    /// The bundle library's checks these flags ask for (clock: now).
    pub fn checks(&self) -> anyhow::Result<satchel_format::verify::Checks> {
        let trusted = load_trust(&self.trust)?;
        if self.target.mac.is_some() && self.target.site.is_some() {
            return Err(UsageError("give --mac or --site, not both".into()).into());
        }
        let mut checks = satchel_format::verify::Checks::new(trusted);
        checks.target = self.target.parse()?.map(|(t, _)| t);
        checks.serial_floor = self.serial_floor;
        Ok(checks)
    }
}

/// Reads the trusted signing public keys.
pub fn load_trust(paths: &[PathBuf]) -> anyhow::Result<Vec<VerifyingKey>> {
    if paths.is_empty() {
        return Err(UsageError("at least one --trust PUBKEY is required".into()).into());
    }
    paths
        .iter()
        .map(|p| {
            VerifyingKey::read_pem_file(p)
                .with_context(|| format!("cannot read trusted key {}", p.display()))
        })
        .collect()
}

/// The admins' identity: the flag's file, else the profile's `identity`.
pub fn admin_identities(
    flag: &Option<PathBuf>,
    profile: &profile::Profile,
) -> anyhow::Result<Identities> {
    let path = profile.or_flag(flag, &profile.identity).ok_or_else(|| {
        UsageError(format!(
            "no identity: give --identity FILE or set `identity` in {}",
            profile.describe()
        ))
    })?;
    load_identities(&path)
}

/// Reads an age identity file.
pub fn load_identities(path: &Path) -> anyhow::Result<Identities> {
    Identities::read_file(path).with_context(|| format!("cannot read identity {}", path.display()))
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A short, stable name for why a bundle was refused (the `--json` `kind`).
pub fn error_kind(e: &OpenError) -> &'static str {
    match e {
        OpenError::Verify(v) => match v {
            VerifyError::UntrustedSigner { .. } => "untrusted_signer",
            VerifyError::BadSignature { .. } => "bad_signature",
            VerifyError::WrongTarget { .. } => "wrong_target",
            VerifyError::Expired { .. } => "expired",
            VerifyError::SerialBelowFloor { .. } => "serial_below_floor",
            VerifyError::PayloadSizeMismatch { .. } => "payload_size_mismatch",
            VerifyError::PayloadHashMismatch { .. } => "payload_hash_mismatch",
            VerifyError::Io(_) => "io",
            _ => "invalid",
        },
        OpenError::Container(ContainerError::Manifest(_)) => "invalid_manifest",
        OpenError::Container(ContainerError::Io(_)) | OpenError::Io(_) => "io",
        OpenError::Container(_) => "malformed_container",
        OpenError::PassphraseRefused => "passphrase_refused",
        OpenError::NoMatchingIdentity => "no_matching_identity",
        OpenError::InvalidAge(_) | OpenError::Payload(_) => "bad_payload",
        OpenError::UncompressedTooLarge { .. } | OpenError::UncompressedSizeMismatch { .. } => {
            "uncompressed_size_mismatch"
        }
        OpenError::EntryCountMismatch { .. } => "entry_count_mismatch",
        OpenError::Extract(_) => "refused_by_overlay",
        _ => "invalid",
    }
}

/// The manifest as JSON for `--json` output (the manifest's own fields plus
/// nothing secret).
pub fn manifest_json(m: &satchel_format::Manifest) -> serde_json::Value {
    serde_json::to_value(m).unwrap_or(serde_json::Value::Null)
}

/// Human lines describing a manifest.
pub fn manifest_lines(m: &satchel_format::Manifest) -> Vec<String> {
    use satchel_format::manifest::format_time;
    let mut lines = vec![format!("target:       {}", m.target)];
    if let Some(site) = &m.site {
        lines.push(format!("site:         {site}"));
    }
    lines.push(format!("serial:       {}", m.serial));
    lines.push(format!("created:      {}", format_time(m.created)));
    lines.push(format!("expires:      {}", format_time(m.expires)));
    lines.push(format!("signer:       {}", m.signer));
    lines.push(format!(
        "payload:      {} bytes encrypted, {} bytes of tar, {} entries",
        m.payload.compressed_size, m.payload.uncompressed_size, m.payload.entries
    ));
    lines.push(format!("sha256:       {}", hex::encode(m.payload.sha256)));
    lines.push(format!(
        "special bits: {}",
        if m.policy.allow_special_bits {
            "kept"
        } else {
            "dropped"
        }
    ));
    lines
}

/// Human lines describing what the overlay changed.
pub fn changes_lines(c: &satchel_overlay::Changes) -> Vec<String> {
    let mut lines = Vec::new();
    for (what, paths) in [
        ("installed", &c.installed),
        ("replaced", &c.replaced),
        ("removed", &c.removed),
        ("updated dirs", &c.updated_dirs),
    ] {
        if !paths.is_empty() {
            lines.push(format!("{what}: {}", paths.join(", ")));
        }
    }
    if lines.is_empty() {
        lines.push("nothing changed".into());
    }
    lines
}
