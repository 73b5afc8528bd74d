//! `publish BUNDLE --server URL --cert C --key K --ca CA`: upload a signed
//! bundle with the admin certificate, to the route of the target its
//! manifest names (`PUT /v1/bundles/host/{mac}` or `/v1/bundles/site/{name}`).
//!
//! `publish --dir DIR` does the same for every `*.bundle` in DIR, with a
//! progress bar and a summary: published, unchanged (the server already
//! serves this serial with this payload: not sent again), refused (with the
//! server's reason, or the local check's). It exits 1 if any was refused.
//! `--dry-run` sends nothing and says per target what would change against
//! what is published: new, unchanged, refused (serial not above the
//! highest), or the files that would change (decrypted with the admins'
//! identity: `--identity` or the profile's; without one, only that the
//! payload differs).
//!
//! The bundle's container and payload hash are checked first (a truncated
//! or corrupt file is not sent); the signature, target, expiry and serial
//! are the server's to check. 409 (a serial not above the highest ever
//! published: rollback) and 413 (over the server's size limit) get their
//! own messages.

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use hyper::Method;
use satchel_bundle::client::Client;
use satchel_format::container::read_header;
use satchel_format::verify::verify_payload;
use satchel_format::Manifest;
use satchel_names::Target;
use serde_json::json;

use super::diff::{reader_listing, summary, to_entries};
use super::profile::Profile;
use super::progress::with_count_progress;
use super::uploads::ServerArgs;
use super::{print_json, UsageError};

/// Largest bundle sent (the server's own default limit is 32 MiB).
pub const MAX_PUBLISH_BYTES: u64 = 512 << 20;

/// Arguments of `publish`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["bundle", "dir"])))]
pub struct Args {
    /// The signed bundle.
    pub bundle: Option<PathBuf>,
    /// Publish every `*.bundle` in this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// With --dir: send nothing, show what would change against what is published.
    #[arg(long, requires = "dir")]
    pub dry_run: bool,
    /// With --dry-run: the admins' identity, to list the files that would change
    /// (default: the profile's `identity`).
    #[arg(long, value_name = "FILE", requires = "dry_run")]
    pub identity: Option<PathBuf>,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The route a bundle for `target` is published to.
pub fn route(target: &Target) -> String {
    match target {
        Target::Host(mac) => format!("/v1/bundles/host/{mac}"),
        Target::Site(site) => format!("/v1/bundles/site/{}", site.as_str()),
    }
}

/// A bundle read and checked locally: its bytes and manifest.
pub struct Local {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Reads a bundle and checks its container and payload hash.
pub fn read_local(path: &Path) -> anyhow::Result<Local> {
    let bytes = satchel_names::file::read_bounded(path, MAX_PUBLISH_BYTES)?;
    let (header, payload) = read_header(BufReader::new(&bytes[..]))
        .with_context(|| format!("{} is not a valid bundle", path.display()))?;
    verify_payload(&header.manifest, payload).with_context(|| {
        format!(
            "{}: the payload does not match its manifest",
            path.display()
        )
    })?;
    Ok(Local {
        bytes,
        manifest: header.manifest,
    })
}

/// The server's answer to one PUT: the status and body, or why it refused.
fn put(client: &Client, b: &Local) -> anyhow::Result<Result<(u16, serde_json::Value), String>> {
    let m = &b.manifest;
    let size = b.bytes.len();
    let r = client.request(Method::PUT, &route(&m.target), Some(b.bytes.clone()))?;
    let answer: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&r.body).into_owned()));
    Ok(match r.status {
        s if (200..300).contains(&s) => Ok((s, answer)),
        409 => Err(format!(
            "serial {} is not above the highest ever published for {} (rollback protection); \
             create it again with a higher --serial ({})",
            m.serial,
            m.target,
            r.error_text()
        )),
        413 => Err(format!(
            "{size} bytes is over the server's bundle size limit (max_bundle_bytes in its config) ({})",
            r.error_text()
        )),
        s => Err(format!("{s}: {}", r.error_text())),
    })
}

/// Runs `publish`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let Some(bundle) = &a.bundle else {
        return run_dir(a);
    };
    let b = read_local(bundle)?;
    let m = &b.manifest;
    let path = route(&m.target);
    let size = b.bytes.len();
    let client = a.server.client()?;
    match put(&client, &b)? {
        Ok((s, answer)) => {
            if super::json_output() {
                print_json(
                    &json!({ "published": bundle, "route": path, "status": s, "answer": answer }),
                )?;
            } else {
                println!(
                    "published {} ({} serial {}, {size} bytes) to {}{path}: {s}",
                    bundle.display(),
                    m.target,
                    m.serial,
                    client.url()
                );
                println!("{}", serde_json::to_string_pretty(&answer)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => anyhow::bail!("the server refused {}: {why}", bundle.display()),
    }
}

/// What is published now, per target: serial and payload sha256, and the
/// highest serial ever.
pub struct Published {
    /// Per target: the current serial and its payload sha256 (hex).
    pub current: BTreeMap<String, (u64, String)>,
    /// Per target: the highest serial ever published (kept across DELETE).
    pub highest: BTreeMap<String, u64>,
}

/// `GET /v1/bundles`, as [`Published`].
pub fn published(server: &ServerArgs) -> anyhow::Result<Published> {
    let v = super::fleet::get_json(server, "/v1/bundles", "the published bundles")?;
    let current = v["bundles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| {
                    Some((
                        b["target"].as_str()?.to_string(),
                        (
                            b["serial"].as_u64()?,
                            b["payload_sha256"].as_str().unwrap_or("").to_string(),
                        ),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let highest = v["highest_serials"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(t, s)| Some((t.clone(), s.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Published { current, highest })
}

/// The `*.bundle` files of `dir`, sorted.
fn bundle_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("bundle") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// One bundle's outcome in `publish --dir`.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    bundle: PathBuf,
    target: Option<String>,
    serial: Option<u64>,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<satchel_format::diff::Diff>,
}

fn run_dir(a: &Args) -> anyhow::Result<ExitCode> {
    let Some(dir) = &a.dir else {
        return Err(UsageError("give BUNDLE or --dir DIR".into()).into());
    };
    let files = bundle_files(dir)?;
    if files.is_empty() {
        return Err(UsageError(format!("{} holds no *.bundle file", dir.display())).into());
    }
    let now = published(&a.server)?;
    let ids = if a.dry_run {
        let profile = Profile::load()?;
        match profile.or_flag(&a.identity, &profile.identity) {
            Some(p) => Some(super::load_identities(&p)?),
            None => None,
        }
    } else {
        None
    };
    let client = if a.dry_run {
        None
    } else {
        Some(a.server.client()?)
    };
    let done = AtomicU64::new(0);
    let label = if a.dry_run { "comparing" } else { "publishing" };
    let outcomes: Vec<Outcome> = with_count_progress(label, files.len() as u64, &done, || {
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for f in &files {
            let o = one(a, f, &now, ids.as_ref(), client.as_ref(), &mut seen);
            out.push(o.unwrap_or_else(|e| Outcome {
                bundle: f.clone(),
                target: None,
                serial: None,
                result: "refused",
                reason: Some(format!("{e:#}")),
                diff: None,
            }));
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        out
    });
    let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
    let refused = count("refused") + count("would be refused");
    if super::json_output() {
        print_json(&json!({ "dry_run": a.dry_run, "bundles": outcomes }))?;
    } else {
        for o in &outcomes {
            let target = o.target.clone().unwrap_or_else(|| "?".into());
            let serial = o.serial.map(|s| format!(" serial {s}")).unwrap_or_default();
            let reason = o
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            if o.result != "unchanged" || a.dry_run {
                println!(
                    "{target}{serial}: {}{reason} ({})",
                    o.result,
                    o.bundle.display()
                );
            }
            if let Some(d) = &o.diff {
                for line in d.lines() {
                    println!("    {line}");
                }
            }
        }
        if a.dry_run {
            println!(
                "dry run: {} new, {} would change, {} unchanged, {refused} would be refused",
                count("new"),
                count("would change"),
                count("unchanged"),
            );
        } else {
            println!(
                "{} published, {} unchanged, {refused} refused",
                count("published"),
                count("unchanged"),
            );
        }
    }
    Ok(if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn one(
    a: &Args,
    f: &Path,
    now: &Published,
    ids: Option<&satchel_format::Identities>,
    client: Option<&Client>,
    seen: &mut BTreeMap<String, PathBuf>,
) -> anyhow::Result<Outcome> {
    let b = read_local(f)?;
    let m = &b.manifest;
    let t = m.target.to_string();
    let mut o = Outcome {
        bundle: f.to_path_buf(),
        target: Some(t.clone()),
        serial: Some(m.serial),
        result: "refused",
        reason: None,
        diff: None,
    };
    if let Some(first) = seen.insert(t.clone(), f.to_path_buf()) {
        o.reason = Some(format!(
            "{} is also for {t}: one bundle per target",
            first.display()
        ));
        return Ok(o);
    }
    let payload = hex::encode(m.payload.sha256);
    let current = now.current.get(&t);
    if current.is_some_and(|(s, p)| *s == m.serial && *p == payload) {
        o.result = "unchanged";
        return Ok(o);
    }
    let Some(client) = client else {
        // Dry run: say what the server would do.
        let highest = now.highest.get(&t).copied();
        if highest.is_some_and(|h| m.serial <= h) {
            o.result = "would be refused";
            o.reason = Some(format!(
                "serial {} is not above {} (the highest ever published)",
                m.serial,
                highest.unwrap_or(0)
            ));
            return Ok(o);
        }
        let Some((cur_serial, _)) = current else {
            o.result = "new";
            return Ok(o);
        };
        o.result = "would change";
        match ids {
            Some(ids) => {
                let r = a.server.client()?.request(
                    Method::GET,
                    &format!("/v1/bundles/{t}/history/{cur_serial}"),
                    None,
                )?;
                if !r.is_success() {
                    o.reason = Some(format!(
                        "cannot pull the published serial {cur_serial}: {}",
                        r.error_text()
                    ));
                    return Ok(o);
                }
                let name = format!("the published serial {cur_serial} of {t}");
                let (_, old) = reader_listing(Cursor::new(r.body), &name, ids)?;
                let (_, new) = reader_listing(Cursor::new(b.bytes), &f.display().to_string(), ids)?;
                let d = satchel_format::diff::diff(&to_entries(&old), &to_entries(&new));
                o.reason = Some(format!("from serial {cur_serial}: {}", summary(&d)));
                o.diff = Some(d);
            }
            None => {
                o.reason = Some(format!(
                    "the payload differs from serial {cur_serial} (give --identity to list the files)"
                ));
            }
        }
        return Ok(o);
    };
    match put(client, &b)? {
        Ok(_) => o.result = "published",
        Err(why) => o.reason = Some(why),
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel_names::{Mac, SiteName};

    #[test]
    fn routes_follow_the_target() {
        let mac = Mac::parse("AA:BB:CC:DD:EE:FF").expect("mac");
        assert_eq!(
            route(&Target::Host(mac)),
            "/v1/bundles/host/aa-bb-cc-dd-ee-ff"
        );
        let site = SiteName::parse("dc1").expect("site");
        assert_eq!(route(&Target::Site(site)), "/v1/bundles/site/dc1");
    }
}
