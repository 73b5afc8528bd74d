//! Downloading, verifying and applying the bundles of a boot index.
//!
//! A bundle is streamed into a temporary file beside the root (same
//! filesystem), hashed on the way; its size and sha256 must match the
//! index before the bundle library sees it. Then the bundle library
//! verifies it (signature, target, expiry against `max(clock, clock
//! floor)`, serial ≥ floor, payload hash and sizes) and only a verified
//! bundle is handed to the safe overlay, which stages and commits it as a
//! whole.
//!
//! Invariant: nothing is written beneath the root for a bundle unless that
//! bundle verified; every bundle of the index verifies before the first one
//! is applied, so a bad host bundle does not leave the site bundle half of
//! a configuration.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use satchel_bundle::extract::Options;
use satchel_bundle::verify::Checks;
use satchel_bundle::{Identities, Target, VerifyingKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::http::Sink;
use crate::index::Entry;

/// Prefix of the temporary download files.
pub const DOWNLOAD_PREFIX: &str = ".satchel-download-";

/// A downloaded bundle in a temporary file, hashed on the way.
#[derive(Debug)]
pub struct FileSink {
    file: tempfile::NamedTempFile,
    hash: Sha256,
    len: u64,
}

impl FileSink {
    /// A new temporary file in `dir`.
    pub fn new_in(dir: &Path) -> std::io::Result<Self> {
        Ok(FileSink {
            file: tempfile::Builder::new()
                .prefix(DOWNLOAD_PREFIX)
                .tempfile_in(dir)?,
            hash: Sha256::new(),
            len: 0,
        })
    }

    /// The sha256 and length of what was written.
    pub fn digest(&self) -> ([u8; 32], u64) {
        (self.hash.clone().finalize().into(), self.len)
    }

    /// The file's path (removed when the sink is dropped).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Flushes and rewinds the file.
    pub fn done(&mut self) -> std::io::Result<&mut File> {
        let f = self.file.as_file_mut();
        f.flush()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(f)
    }
}

impl Sink for FileSink {
    fn reset(&mut self) -> std::io::Result<()> {
        let f = self.file.as_file_mut();
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        self.hash = Sha256::new();
        self.len = 0;
        Ok(())
    }
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.as_file_mut().write_all(chunk)?;
        self.hash.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }
}

/// Checks a download against its index entry.
pub fn check_download(entry: &Entry, sink: &FileSink) -> Result<(), String> {
    let (sha, len) = sink.digest();
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

/// Verifies a downloaded bundle file; returns its manifest serial.
pub fn verify(path: &Path, checks: &Checks) -> Result<u64, String> {
    satchel_bundle::open::verify_file(path, checks)
        .map(|v| v.manifest().serial)
        .map_err(|e| e.to_string())
}

/// What applying one bundle changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries of the payload.
    pub entries: u64,
    /// Paths installed, replaced, removed or updated in the root.
    pub changed: usize,
}

/// Verifies again (the file is read anew), decrypts and lays the bundle
/// over `root` with the safe overlay, told the manifest's entry count, size
/// and special-bits policy.
pub fn apply(path: &Path, checks: &Checks, trust: &Trust, root: &Path) -> Result<Applied, String> {
    let (verified, mut tar) = satchel_bundle::open::open_file(path, checks, &trust.identities)
        .map_err(|e| e.to_string())?;
    let m = verified.manifest();
    let opts = Options {
        allow_special_bits: m.policy.allow_special_bits,
        expected_entries: Some(m.payload.entries),
        expected_size: Some(m.payload.uncompressed_size),
        ..Options::default()
    };
    let entries = m.payload.entries;
    match satchel_bundle::extract::apply(&mut tar, root, &opts) {
        Ok(a) => {
            let c = &a.changes;
            Ok(Applied {
                entries,
                changed: c.installed.len()
                    + c.replaced.len()
                    + c.removed.len()
                    + c.updated_dirs.len(),
            })
        }
        // A decryption or decompression failure is the cause of the
        // overlay's read error: report it first.
        Err(e) => Err(tar
            .take_failure()
            .map(|f| f.to_string())
            .unwrap_or_else(|| e.to_string())),
    }
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
        let mut sink = FileSink::new_in(t.path()).expect("sink");
        Sink::write(&mut sink, b"hello").expect("write");
        let entry = |size, sha256| Entry {
            target: "site/dc1".parse().expect("target"),
            serial: 1,
            sha256,
            size,
            url: "/v1/bundles/site/dc1".into(),
        };
        let good: [u8; 32] = Sha256::digest(b"hello").into();
        assert!(check_download(&entry(5, good), &sink).is_ok());
        assert!(check_download(&entry(6, good), &sink).is_err());
        assert!(check_download(&entry(5, [0; 32]), &sink).is_err());
        // A retry starts over.
        sink.reset().expect("reset");
        Sink::write(&mut sink, b"hel").expect("write");
        assert!(check_download(&entry(5, good), &sink).is_err());
        let path = sink.path().to_path_buf();
        drop(sink);
        assert!(!path.exists(), "the temporary file outlived its sink");
    }
}
