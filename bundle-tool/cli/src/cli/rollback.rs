//! `rollback TARGET --to SERIAL`: publish an earlier version's exact
//! payload again, at a new serial.
//!
//! The server keeps the last `bundle_history` versions of every target;
//! nodes refuse serials below their floor, so an old bundle cannot simply
//! be served again. Rollback therefore:
//!
//! 1. pulls the version (`GET /v1/bundles/{kind}/{name}/history/{serial}`)
//!    and the current one, checks each payload against its manifest's hash
//!    and decrypts both with the admins' identity (the listing must pass
//!    the overlay's rules: nothing is re-signed that a node would refuse);
//! 2. writes a new manifest — same target, site, policy and payload (hash,
//!    sizes, entries: the `payload.age` bytes are copied unchanged, so every
//!    recipient that could open it still can) — with a serial one above the
//!    highest ever published, created now, expiring after the same lifetime
//!    as the old one (or `--expires`), signed with the admin's key;
//! 3. publishes it and prints the diff it rolled back (current → restored).
//!
//! The re-signed bundle keeps the old payload's sha256, so the inventory
//! sees nodes that still run that payload as current again.

use std::io::Cursor;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use satchel_format::container::{read_header, write_container};
use satchel_format::diff;
use satchel_format::verify::verify_payload;
use satchel_format::Manifest;
use serde_json::json;
use time::OffsetDateTime;

use super::create::{parse_expires, signing_key};
use super::diff::{reader_listing, summary, to_entries};
use super::fleet::{get_json, parse_target};
use super::profile::Profile;
use super::uploads::ServerArgs;
use super::{admin_identities, print_json, UsageError};

/// Arguments of `rollback`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `host/<mac>` or `site/<name>`.
    pub target: String,
    /// The kept version to restore (see `history TARGET`).
    #[arg(long = "to", value_name = "SERIAL")]
    pub to: u64,
    /// Expiry of the re-signed bundle (default: the old one's lifetime from now).
    #[arg(long, value_name = "DATE|DURATION")]
    pub expires: Option<String>,
    /// The admins' age identity (default: the profile's `identity`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The admin's signing secret key (default: the profile's `sign_key`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Also keep the re-signed bundle in this file.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// GETs one kept version's bytes.
fn pull(server: &ServerArgs, target: &str, serial: u64) -> anyhow::Result<Vec<u8>> {
    let r = server.client()?.request(
        Method::GET,
        &format!("/v1/bundles/{target}/history/{serial}"),
        None,
    )?;
    if !r.is_success() {
        anyhow::bail!(
            "cannot pull serial {serial} of {target}: the server answered {}: {}",
            r.status,
            r.error_text()
        );
    }
    Ok(r.body)
}

/// The manifest of `bytes`, its payload checked against the manifest's hash.
fn checked_manifest(bytes: &[u8], what: &str) -> anyhow::Result<Manifest> {
    let (header, payload) =
        read_header(Cursor::new(bytes)).with_context(|| format!("{what} is not a valid bundle"))?;
    verify_payload(&header.manifest, payload)
        .with_context(|| format!("{what}: the payload does not match its manifest"))?;
    Ok(header.manifest)
}

/// Runs `rollback`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let target = parse_target(&a.target)?;
    let t = target.to_string();
    let profile = Profile::load()?;
    let ids = admin_identities(&a.identity, &profile)?;
    let key = signing_key(&a.sign_key, &profile)?;
    let history = get_json(
        &a.server,
        &format!("/v1/bundles/{t}/history"),
        "the history",
    )?;
    let highest = history["highest_serial"].as_u64().unwrap_or(0);
    let current = history["current_serial"].as_u64();
    if current == Some(a.to) {
        return Err(UsageError(format!(
            "serial {} is already the current bundle of {t}",
            a.to
        ))
        .into());
    }
    let old_bytes = pull(&a.server, &t, a.to)?;
    let what = format!("serial {} of {t}", a.to);
    let old = checked_manifest(&old_bytes, &what)?;
    if old.target != target {
        anyhow::bail!("{what} is a bundle for {}, not {t}", old.target);
    }
    let (_, restored) = reader_listing(Cursor::new(old_bytes.clone()), &what, &ids)?;
    let before = match current {
        Some(c) => {
            let bytes = pull(&a.server, &t, c)?;
            reader_listing(Cursor::new(bytes), &format!("serial {c} of {t}"), &ids)?.1
        }
        None => Vec::new(),
    };
    let d = diff::diff(&to_entries(&before), &to_entries(&restored));

    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let expires = match &a.expires {
        Some(e) => parse_expires(e, now)?,
        None => now + (old.expires - old.created),
    };
    if expires <= now {
        return Err(
            UsageError("the re-signed bundle would expire at once: give --expires".into()).into(),
        );
    }
    let serial = highest
        .checked_add(1)
        .ok_or_else(|| UsageError(format!("{t} already has the largest serial")))?;
    let manifest = Manifest {
        serial,
        created: now,
        expires,
        signer: key.key_id(),
        ..old.clone()
    };
    let manifest_bytes = manifest
        .to_bytes()
        .context("cannot write the re-signed manifest")?;
    let signature = key.sign(&manifest_bytes);
    // The old payload.age, streamed from the pulled bytes into the new container.
    let (_, payload) = read_header(Cursor::new(&old_bytes[..]))?;
    let payload_size = payload.size();
    let mtime = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let bundle = write_container(
        Vec::new(),
        &manifest_bytes,
        &signature,
        payload,
        payload_size,
        mtime,
    )?;
    // What goes out is what was checked: the same payload under the new manifest.
    let again = checked_manifest(&bundle, "the re-signed bundle")?;
    if again.payload != old.payload {
        anyhow::bail!(
            "the re-signed bundle's payload differs from serial {}",
            a.to
        );
    }
    if let Some(out) = &a.out {
        std::fs::write(out, &bundle).with_context(|| format!("cannot write {}", out.display()))?;
    }
    let path = super::publish::route(&target);
    let r = a
        .server
        .client()?
        .request(Method::PUT, &path, Some(bundle))?;
    if !r.is_success() {
        anyhow::bail!(
            "the server refused the rollback of {t} to serial {} (as serial {serial}): {}: {}",
            a.to,
            r.status,
            r.error_text()
        );
    }
    if super::json_output() {
        print_json(&json!({
            "target": t,
            "restored": a.to,
            "serial": serial,
            "previous": current,
            "payload_sha256": hex::encode(manifest.payload.sha256),
            "diff": d,
        }))?;
    } else {
        println!(
            "rolled {t} back to the payload of serial {}, published as serial {serial}",
            a.to
        );
        for line in d.lines() {
            println!("  {line}");
        }
        println!("{}", summary(&d));
    }
    Ok(ExitCode::SUCCESS)
}
