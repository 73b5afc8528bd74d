//! Downloading, verifying and applying the bundles of a boot index.
//!
//! A bundle is streamed into a temporary file beside the root (same
//! filesystem) and, byte for byte, to the bundle library's
//! [`StreamVerifier`], which hashes the whole download and verifies it
//! (signature, target, expiry against `max(clock, clock floor)`, serial ≥
//! floor, payload hash and sizes) on its own thread while it arrives. Its
//! size and sha256 must match the index, and only a verified bundle is
//! handed to the safe overlay, which decrypts the file — hashing the
//! payload again as it reads it, so a file changed after verification is
//! refused before the commit — and stages and commits it as a whole.
//!
//! Invariant: nothing is written beneath the root for a bundle unless that
//! bundle verified; every bundle of the index verifies before the first one
//! is applied, so a bad host bundle does not leave the site bundle half of
//! a configuration.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use satchel_bundle::extract::Options;
use satchel_bundle::open::{StreamVerifier, Streamed, Verified};
use satchel_bundle::verify::Checks;
use satchel_bundle::{Identities, Target, VerifyingKey};
use time::OffsetDateTime;

use crate::http::Sink;
use crate::index::Entry;

/// Prefix of the temporary download files.
pub const DOWNLOAD_PREFIX: &str = ".satchel-download-";

/// A bundle being downloaded into a temporary file. The same bytes go to a
/// [`StreamVerifier`], which hashes them as a whole and runs the bundle
/// library's whole verification on them while they arrive.
#[derive(Debug)]
pub struct FileSink {
    file: tempfile::NamedTempFile,
    checks: Checks,
    verifier: Option<StreamVerifier>,
    streamed: Option<Streamed>,
}

impl FileSink {
    /// A new temporary file in `dir`; the bundle will be verified with `checks`.
    pub fn new_in(dir: &Path, checks: Checks) -> std::io::Result<Self> {
        Ok(FileSink {
            file: tempfile::Builder::new()
                .prefix(DOWNLOAD_PREFIX)
                .tempfile_in(dir)?,
            verifier: Some(StreamVerifier::start(checks.clone())?),
            checks,
            streamed: None,
        })
    }

    /// The file's path (removed when the sink is dropped).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Ends the download: flushes the file and waits for the verdict on
    /// what was written. Idempotent.
    pub fn finish(&mut self) -> std::io::Result<&Streamed> {
        if let Some(v) = self.verifier.take() {
            self.file.as_file_mut().flush()?;
            self.streamed = Some(v.finish()?);
        }
        self.streamed
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the download was not verified"))
    }

    /// The verification of the downloaded bundle (after [`FileSink::finish`]).
    pub fn take_verified(&mut self) -> Result<Verified, String> {
        match self.streamed.as_mut().map(|s| {
            std::mem::replace(
                &mut s.verified,
                Err(satchel_bundle::OpenError::Payload("already taken".into())),
            )
        }) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the download was not verified".into()),
        }
    }
}

impl Sink for FileSink {
    fn reset(&mut self) -> std::io::Result<()> {
        let f = self.file.as_file_mut();
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        self.streamed = None;
        // Dropping the old verifier stops its thread.
        self.verifier = Some(StreamVerifier::start(self.checks.clone())?);
        Ok(())
    }
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.as_file_mut().write_all(chunk)?;
        match &mut self.verifier {
            Some(v) => v.write(chunk),
            None => Err(std::io::Error::other("the download already finished")),
        }
    }
}

/// Ends a download and checks it against its index entry.
pub fn check_download(entry: &Entry, sink: &mut FileSink) -> Result<(), String> {
    let s = sink.finish().map_err(|e| format!("{}: {e}", entry.url))?;
    let (sha, len) = (s.sha256, s.len);
    if len != entry.size {
        return Err(format!(
            "{} is {len} bytes, the index says {}",
            entry.url, entry.size
        ));
    }
    if sha != entry.sha256 {
        return Err(format!(
            "{} has sha256 {}, the index says {}",
            entry.url,
            hex::encode(sha),
            hex::encode(entry.sha256)
        ));
    }
    Ok(())
}

/// What a node trusts, loaded from its config.
#[derive(Clone)]
pub struct Trust {
    /// Signing keys.
    pub signers: Vec<VerifyingKey>,
    /// age identities.
    pub identities: Identities,
    /// The clock floor.
    pub clock_floor: OffsetDateTime,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("signers", &self.signers.len())
            .field("clock_floor", &self.clock_floor)
            .finish_non_exhaustive()
    }
}

/// The checks for one target.
pub fn checks(trust: &Trust, target: &Target, serial_floor: u64) -> Checks {
    Checks {
        trusted: trust.signers.clone(),
        target: Some(target.clone()),
        now: OffsetDateTime::now_utc(),
        clock_floor: Some(trust.clock_floor),
        serial_floor,
    }
}

/// What applying one bundle changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries of the payload.
    pub entries: u64,
    /// Paths installed, replaced, removed or updated in the root.
    pub changed: usize,
}

/// Decrypts the verified bundle at `path` and lays it over `root` with the
/// safe overlay, told the manifest's entry count, size and special-bits
/// policy. Decryption runs on its own thread and hashes `payload.age`
/// again as it reads it: the overlay commits only if those bytes still
/// match the verified manifest.
pub fn apply(
    path: &Path,
    verified: &Verified,
    trust: &Trust,
    root: &Path,
) -> Result<Applied, String> {
    let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let a = satchel_bundle::open::apply_verified(
        file,
        verified,
        &trust.identities,
        root,
        &Options::default(),
    )
    .map_err(|e| e.to_string())?;
    let c = &a.changes;
    Ok(Applied {
        entries: verified.manifest().payload.entries,
        changed: c.installed.len() + c.replaced.len() + c.removed.len() + c.updated_dirs.len(),
    })
}

/// Removes download files a killed earlier run left directly in `dir`
/// (regular files named [`DOWNLOAD_PREFIX`]…, never followed through a
/// symlink). Returns how many were removed.
pub fn remove_stale_downloads(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let ours = name
            .to_str()
            .is_some_and(|s| s.starts_with(DOWNLOAD_PREFIX));
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        if ours && regular && std::fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// Where temporary downloads go: the root itself (same filesystem as the
/// commit's staging; RAM in a diskless initrd).
pub fn download_dir(root: &Path) -> PathBuf {
    root.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn stale_downloads_and_nothing_else_are_removed() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path();
        std::fs::write(d.join(format!("{DOWNLOAD_PREFIX}abc")), "x").expect("w");
        std::fs::write(d.join("keep-me"), "x").expect("w");
        std::fs::create_dir(d.join(format!("{DOWNLOAD_PREFIX}dir"))).expect("mkdir");
        std::fs::write(d.join("target"), "x").expect("w");
        std::os::unix::fs::symlink(d.join("target"), d.join(format!("{DOWNLOAD_PREFIX}link")))
            .expect("ln");
        assert_eq!(remove_stale_downloads(d), 1);
        assert!(d.join("keep-me").exists());
        assert!(d.join("target").exists());
        assert!(d.join(format!("{DOWNLOAD_PREFIX}dir")).is_dir());
        assert_eq!(remove_stale_downloads(&d.join("missing")), 0);
    }

    #[test]
    fn downloads_are_checked_against_the_index() {
        let t = tempfile::tempdir().expect("tmp");
        let mut sink = FileSink::new_in(t.path(), Checks::new(vec![])).expect("sink");
        Sink::write(&mut sink, b"hello").expect("write");
        let entry = |size, sha256| Entry {
            target: "site/dc1".parse().expect("target"),
            serial: 1,
            sha256,
            size,
            url: "/v1/bundles/site/dc1".into(),
        };
        let good: [u8; 32] = Sha256::digest(b"hello").into();
        assert!(check_download(&entry(5, good), &mut sink).is_ok());
        assert!(check_download(&entry(6, good), &mut sink).is_err());
        assert!(check_download(&entry(5, [0; 32]), &mut sink).is_err());
        assert!(
            sink.take_verified().is_err(),
            "\"hello\" verified as a bundle"
        );
        // A retry starts over.
        sink.reset().expect("reset");
        Sink::write(&mut sink, b"hel").expect("write");
        assert!(check_download(&entry(5, good), &mut sink).is_err());
        let path = sink.path().to_path_buf();
        drop(sink);
        assert!(!path.exists(), "the temporary file outlived its sink");
    }
}
