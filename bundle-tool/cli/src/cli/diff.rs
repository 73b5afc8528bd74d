//! `diff A B [--identity FILE] [--json]`: what changed from A to B, each a
//! bundle (decrypted with the identity; its signature is **not** checked,
//! as with `inspect`) or a directory (packed as `create --from-dir` packs
//! it). The listings come from the overlay's own checks, so a payload the
//! overlay would refuse cannot be diffed either. `approve` uses the same
//! listings against the node's current bundle.
//!
//! Exit status: 0 when both sides were read (whether or not they differ),
//! 1 when one could not be read, 2 on a usage error.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use satchel_format::diff::{self, Diff, Entry};
use satchel_format::open::{inspect_reader, overlay_options};
use satchel_format::pack::{pack_dir, PackOptions};
use satchel_format::pipe::pipe;
use satchel_format::{Identities, Manifest};
use satchel_overlay::{check_archive, ArchiveEntry, Options};
use serde_json::json;

use super::{load_identities, print_json, UsageError};

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The old side: a bundle or a directory.
    pub a: PathBuf,
    /// The new side: a bundle or a directory.
    pub b: PathBuf,
    /// An age identity that decrypts the bundle(s) (an admin's; default: the
    /// admin profile's `identity`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

/// Converts the overlay's listing to the diff's.
pub fn to_entries(list: &[ArchiveEntry]) -> Vec<Entry> {
    list.iter()
        .map(|e| Entry {
            path: e.path.clone(),
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            sha256: e.sha256.clone(),
            link_target: e.link_target.clone(),
        })
        .collect()
}

/// The listing of a bundle's payload, decrypted with `ids` and checked by
/// the overlay's rules with the manifest's promises. No signature check.
pub fn bundle_listing(
    path: &Path,
    ids: &Identities,
) -> anyhow::Result<(Manifest, Vec<ArchiveEntry>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    reader_listing(file, &path.display().to_string(), ids)
}

/// As [`bundle_listing`], from a reader (`name` for messages).
pub fn reader_listing<R: io::Read + io::Seek + Send>(
    input: R,
    name: &str,
    ids: &Identities,
) -> anyhow::Result<(Manifest, Vec<ArchiveEntry>)> {
    let (header, mut tar) =
        inspect_reader(input, ids).with_context(|| format!("cannot decrypt {name}"))?;
    let opts = overlay_options(&header.manifest, &Options::default());
    match (check_archive(&mut tar, &opts), tar.take_failure()) {
        (Ok(l), _) => Ok((header.manifest, l.entries)),
        (Err(_), Some(e)) => {
            Err(e).with_context(|| format!("the payload of {name} does not match its manifest"))
        }
        (Err(e), None) => {
            Err(e).with_context(|| format!("the payload of {name} is refused by the overlay"))
        }
    }
}

/// The listing of a directory, packed as `create --from-dir` packs it
/// (owners 0:0, special bits kept so that the listing shows them).
pub fn dir_listing(path: &Path) -> anyhow::Result<Vec<ArchiveEntry>> {
    let (w, r) = pipe();
    let pack_opts = PackOptions {
        keep_owners: false,
        allow_special_bits: true,
        ..PackOptions::default()
    };
    let opts = Options {
        allow_special_bits: true,
        ..Options::default()
    };
    let (packed, listed) = std::thread::scope(|s| {
        let packer = s.spawn(move || -> anyhow::Result<()> {
            let (w, _) = pack_dir(path, &pack_opts, w)?;
            w.finish()?;
            Ok(())
        });
        let listed = check_archive(r, &opts);
        (packer.join(), listed)
    });
    match packed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(e).with_context(|| format!("cannot read the directory {}", path.display()))
        }
        Err(_) => anyhow::bail!("packing {} panicked", path.display()),
    }
    Ok(listed
        .with_context(|| {
            format!(
                "the directory {} is refused by the overlay's rules",
                path.display()
            )
        })?
        .entries)
}

/// One side of a diff: a directory, or a bundle decrypted with `ids`.
fn side(path: &Path, ids: Option<&Identities>) -> anyhow::Result<Vec<Entry>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        return Ok(to_entries(&dir_listing(path)?));
    }
    let Some(ids) = ids else {
        return Err(UsageError(format!(
            "{} is a bundle: give --identity FILE (or set `identity` in the admin profile) to decrypt it",
            path.display()
        ))
        .into());
    };
    Ok(to_entries(&bundle_listing(path, ids)?.1))
}

/// Human summary line.
pub fn summary(d: &Diff) -> String {
    format!(
        "{} added, {} removed, {} changed, {} unchanged",
        d.added.len(),
        d.removed.len(),
        d.changed.len(),
        d.unchanged
    )
}

/// Runs `diff`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let profile = super::profile::Profile::load()?;
    let ids = profile
        .or_flag(&a.identity, &profile.identity)
        .as_deref()
        .map(load_identities)
        .transpose()?;
    let old = side(&a.a, ids.as_ref())?;
    let new = side(&a.b, ids.as_ref())?;
    let d = diff::diff(&old, &new);
    if super::json_output() {
        print_json(&json!({ "a": a.a, "b": a.b, "diff": d }))?;
    } else {
        let mut out = io::stdout().lock();
        use io::Write;
        for line in d.lines() {
            writeln!(out, "{line}")?;
        }
        writeln!(out, "{}", summary(&d))?;
    }
    Ok(ExitCode::SUCCESS)
}
