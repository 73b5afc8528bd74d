//! `create`: pack a directory (or take a checked tar), compress, encrypt to
//! the recipients, sign, and write the bundle; or, with `--template`, one
//! bundle per inventory row ([`super::template`]). `--enable UNIT` adds
//! the links `systemctl enable` would make ([`satchel_bundle::units`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use satchel_bundle::units::{self, DirPayload, Request};
use satchel_format::container::read_header;
use satchel_format::manifest::{format_time, Policy};
use satchel_format::pack::PackLink;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::SigningKey;
use serde_json::json;
use time::OffsetDateTime;

use super::profile::Profile;
use super::recipients::Recipients;
use super::template::{
    local_serials, read_inventory, source_date_epoch, Job, SerialChoice, Template,
};
use super::uploads::ServerArgs;
use super::{manifest_json, manifest_lines, print_json, TargetArgs, UsageError};

/// Arguments of `create`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_dir", "from_tar", "template"])))]
pub struct Args {
    /// --mac MAC [--site NAME] for a host bundle, --site NAME for a site bundle
    /// (with --template, the inventory names the targets).
    #[command(flatten)]
    pub target: TargetArgs,
    /// The serial, or `auto`: one above the highest the server (when one is
    /// configured) or the existing output has for the target.
    #[arg(long, value_name = "N|auto")]
    pub serial: SerialChoice,
    /// Expiry: a date (2027-01-31), an RFC 3339 time, or a duration from now (30d, 12h).
    #[arg(long, value_name = "DATE|DURATION")]
    pub expires: String,
    /// The admin's signing secret key (PKCS#8 PEM; default: the profile's `sign_key`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// An age recipient (age1…) for every bundle: each admin's, a site's.
    #[arg(long = "recipient", value_name = "AGE1…")]
    pub recipients: Vec<String>,
    /// A recipients file: "<target> <age1…>" lines (an enrollment's
    /// recipients.txt) for that target, bare "age1…" lines for every bundle.
    #[arg(long = "recipients", value_name = "FILE")]
    pub recipient_files: Vec<PathBuf>,
    /// Pack this directory (regular files, directories, symlinks inside it).
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Use this tar as the payload (checked with the overlay's rules first).
    #[arg(long, value_name = "FILE")]
    pub from_tar: Option<PathBuf>,
    /// Render this template directory once per --inventory row (`.j2` files
    /// with minijinja, the rest copied) into --out-dir/host-<mac>.bundle.
    #[arg(long, value_name = "DIR", requires_all = ["inventory", "out_dir"], conflicts_with_all = ["mac", "site", "out", "keep_owners"])]
    pub template: Option<PathBuf>,
    /// The nodes: CSV with a header line, or TOML `[[node]]` tables (`mac`,
    /// optional `site` and `recipient`; every other column is a variable).
    #[arg(long, value_name = "FILE", requires = "template")]
    pub inventory: Option<PathBuf>,
    /// Where --template writes its bundles (created if missing).
    #[arg(long, value_name = "DIR", requires = "template")]
    pub out_dir: Option<PathBuf>,
    /// Bundles sealed at once with --template (default: the number of CPUs).
    #[arg(long, value_name = "N", requires = "template")]
    pub jobs: Option<usize>,
    /// Enable a systemd unit of the payload (repeatable): add the links
    /// `systemctl enable` makes from its [Install] section (WantedBy=,
    /// RequiredBy=, Alias=, Also=). UNIT:TARGET for a unit the node's image
    /// already has: etc/systemd/system/TARGET.wants/UNIT.
    #[arg(
        long = "enable",
        value_name = "UNIT[:TARGET]",
        conflicts_with = "from_tar"
    )]
    pub enable: Vec<String>,
    /// Store the source files' numeric owners instead of 0:0 (--from-dir).
    #[arg(long)]
    pub keep_owners: bool,
    /// Keep setuid, setgid, sticky and world-writable bits (signed policy).
    #[arg(long)]
    pub allow_special_bits: bool,
    /// The bundle file to write.
    #[arg(
        short = 'o',
        long = "out",
        value_name = "OUT",
        required_unless_present = "template"
    )]
    pub out: Option<PathBuf>,
    /// The server asked for `--serial auto` (default: the admin profile's).
    #[command(flatten)]
    pub server: ServerArgs,
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

/// The signing key: the flag's, else the profile's.
pub fn signing_key(flag: &Option<PathBuf>, profile: &Profile) -> anyhow::Result<SigningKey> {
    let path = profile.or_flag(flag, &profile.sign_key).ok_or_else(|| {
        UsageError(format!(
            "no signing key: give --sign-key FILE or set `sign_key` in {}",
            profile.describe()
        ))
    })?;
    SigningKey::read_pem_file(&path)
        .with_context(|| format!("cannot read the signing key {}", path.display()))
}

/// The highest serial the server has ever published per target (empty
/// when no server is configured).
pub fn server_serials(server: &ServerArgs) -> anyhow::Result<BTreeMap<String, u64>> {
    if !server.configured()? {
        return Ok(BTreeMap::new());
    }
    Ok(super::publish::published(server)?.highest)
}

/// One above the highest of `known` for `target` (1 when none is known).
pub fn next_serial(target: &str, known: &[&BTreeMap<String, u64>]) -> anyhow::Result<u64> {
    let highest = known.iter().filter_map(|m| m.get(target)).max().copied();
    match highest {
        None => Ok(1),
        Some(h) => h.checked_add(1).ok_or_else(|| {
            UsageError(format!("{target} already has the largest serial ({h})")).into()
        }),
    }
}

/// Parses the `--enable` values.
fn enable_requests(values: &[String]) -> anyhow::Result<Vec<Request>> {
    values
        .iter()
        .map(|v| Request::parse(v).map_err(|e| UsageError(e.to_string()).into()))
        .collect()
}

/// The links `--enable` adds to the payload directory `dir`, and the
/// plan's lines for the output.
pub fn enable_links(
    requests: &[Request],
    dir: &Path,
) -> anyhow::Result<(Vec<PackLink>, units::Plan)> {
    let plan = units::plan(requests, &DirPayload { root: dir })
        .with_context(|| format!("cannot enable the units asked for in {}", dir.display()))?;
    // The links already in the payload are listed too: the packer accepts
    // their absolute targets only because they are.
    let links = plan
        .add
        .iter()
        .chain(&plan.present)
        .map(|l| PackLink {
            path: l.path.clone(),
            target: l.target.clone(),
        })
        .collect();
    Ok((links, plan))
}

/// Runs `create`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let requests = enable_requests(&a.enable)?;
    let now = OffsetDateTime::now_utc();
    let expires = parse_expires(&a.expires, now)?;
    if expires <= now {
        return Err(
            UsageError(format!("--expires {} is in the past", format_time(expires))).into(),
        );
    }
    let profile = Profile::load()?;
    let recipients = Recipients::gather(&a.recipients, &a.recipient_files, &profile)?;
    if let Some(template) = &a.template {
        return run_template(a, template, &profile, &recipients, &requests, now, expires);
    }
    let Some((target, site)) = a.target.parse()? else {
        return Err(UsageError("give --mac MAC [--site NAME] or --site NAME".into()).into());
    };
    let Some(out) = &a.out else {
        return Err(UsageError("give -o FILE".into()).into());
    };
    let (recipients, own) = recipients.for_target(&target);
    if !a.recipient_files.is_empty() && !own {
        return Err(UsageError(format!(
            "none of the --recipients files has a line for {target}: is it the node's enrollment?"
        ))
        .into());
    }
    if recipients.is_empty() {
        return Err(UsageError(format!(
            "no recipient: give --recipient AGE1… or --recipients FILE, or set `recipients` in {}",
            profile.describe()
        ))
        .into());
    }
    let key = signing_key(&a.sign_key, &profile)?;
    let serial = match a.serial {
        SerialChoice::Fixed(n) => n,
        SerialChoice::Auto => {
            let mut local = BTreeMap::new();
            if let Ok(f) = std::fs::File::open(out) {
                if let Ok((h, _)) = read_header(std::io::BufReader::new(f)) {
                    local.insert(h.manifest.target.to_string(), h.manifest.serial);
                }
            }
            next_serial(&target.to_string(), &[&server_serials(&a.server)?, &local])?
        }
    };
    let params = SealParams {
        target,
        site,
        serial,
        created: now,
        expires,
        policy: Policy {
            allow_special_bits: a.allow_special_bits,
        },
        recipients,
    };
    let mut enabled = None;
    let (source, total) = match (&a.from_dir, &a.from_tar) {
        (Some(dir), _) if !requests.is_empty() => {
            let (links, plan) = enable_links(&requests, dir)?;
            enabled = Some(plan);
            (
                Source::DirWithLinks {
                    path: dir,
                    keep_owners: a.keep_owners,
                    mtime: None,
                    links,
                },
                None,
            )
        }
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
        seal_to_file(&params, source, &key, out, &counter)
    })
    .with_context(|| {
        let from = a
            .from_dir
            .as_ref()
            .or(a.from_tar.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("cannot create {} from {from}", out.display())
    })?;
    if super::json_output() {
        print_json(&json!({
            "bundle": out,
            "size": sealed.bundle_size,
            "manifest": manifest_json(&sealed.manifest),
            "enabled": enabled.as_ref().map(enabled_json),
        }))?;
    } else {
        println!("wrote {} ({} bytes)", out.display(), sealed.bundle_size);
        for line in manifest_lines(&sealed.manifest) {
            println!("  {line}");
        }
        if let Some(plan) = &enabled {
            for l in &plan.add {
                println!("  enabled:      {} -> {}", l.path, l.target);
            }
            for l in &plan.present {
                println!(
                    "  enabled:      {} -> {} (already in the payload)",
                    l.path, l.target
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--json` form of what `--enable` made.
fn enabled_json(plan: &units::Plan) -> serde_json::Value {
    let one = |l: &units::Link, added: bool| json!({ "path": l.path, "target": l.target, "added": added });
    plan.add
        .iter()
        .map(|l| one(l, true))
        .chain(plan.present.iter().map(|l| one(l, false)))
        .collect()
}

/// `create --template`: every row checked first, then sealed in parallel.
fn run_template(
    a: &Args,
    template: &Path,
    profile: &Profile,
    recipients: &Recipients,
    enable: &[Request],
    now: OffsetDateTime,
    expires: OffsetDateTime,
) -> anyhow::Result<ExitCode> {
    let (Some(inventory), Some(out_dir)) = (&a.inventory, &a.out_dir) else {
        return Err(
            UsageError("--template needs --inventory FILE and --out-dir DIR".into()).into(),
        );
    };
    let t = Template::load(template)?;
    let rows = read_inventory(inventory)?;
    if rows.is_empty() {
        return Err(
            UsageError(format!("the inventory {} has no rows", inventory.display())).into(),
        );
    }
    let key = signing_key(&a.sign_key, profile)?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut serials = BTreeMap::new();
    let known = match a.serial {
        SerialChoice::Auto => Some((server_serials(&a.server)?, local_serials(out_dir)?)),
        SerialChoice::Fixed(_) => None,
    };
    for row in &rows {
        let target = row.target().to_string();
        let serial = match (&known, a.serial) {
            (Some((server, local)), _) => next_serial(&target, &[server, local])?,
            (None, SerialChoice::Fixed(n)) => n,
            (None, SerialChoice::Auto) => 1,
        };
        serials.insert(target, serial);
    }
    let job = Job {
        template: &t,
        rows: &rows,
        out_dir,
        serials,
        created: now,
        expires,
        policy: Policy {
            allow_special_bits: a.allow_special_bits,
        },
        recipients,
        key: &key,
        mtime: source_date_epoch()?,
        enable,
    };
    job.check()?;
    let threads = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let done = AtomicU64::new(0);
    let written =
        super::progress::with_count_progress("sealing", rows.len() as u64, &done, || {
            job.run(threads, &done)
        })?;
    if super::json_output() {
        print_json(&json!({ "out_dir": out_dir, "bundles": written }))?;
    } else {
        let bytes: u64 = written.iter().map(|w| w.size).sum();
        println!(
            "wrote {} bundles ({bytes} bytes) to {} from {} and {}",
            written.len(),
            out_dir.display(),
            template.display(),
            inventory.display()
        );
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
