//! Downloading, verifying and applying the bundles of a boot index.
//!
//! A bundle is streamed into a temporary file beside the root (same
//! filesystem) and, byte for byte, to the bundle library's
//! [`StreamVerifier`], which verifies it (signature, target, expiry against
//! `max(clock, clock floor)`, serial ≥ floor, payload hash and sizes) on
//! its own thread while it arrives. Its size and its signed serial must be
//! the index's, and only a verified bundle is handed to the safe overlay,
//! which decrypts the file — hashing the payload again as it reads it, so
//! a file changed after verification is refused before the commit — and
//! stages it; the boot's bundles are then committed together.
//!
//! The index's sha256 of the whole file is not computed again: it comes
//! from the same server as the file, so it proves nothing the signature
//! and the signed payload hash do not, and hashing every byte a second
//! time during the download costs a node's boot a few milliseconds per
//! 25 MiB. A bundle replaced between the index and the download shows as
//! another serial (serials only grow) or another size.
//!
//! Invariants:
//! - nothing is decrypted, and nothing is written beneath the root but the
//!   download files, for a bundle before that bundle verified; every bundle
//!   of the index verifies before the first one is decrypted;
//! - a boot is all or nothing across its bundles: each is staged ([`stage`])
//!   over the ones before it, in apply order (site, then host), and the
//!   root changes only when every one of them staged, in one commit with
//!   one undo log (`satchel_overlay::Layers`). A refused host bundle leaves
//!   no site file behind, and neither does a rename failing midway through
//!   the host's commit.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use satchel_format::open::{StreamVerifier, Streamed, Verified};
use satchel_format::verify::Checks;
use satchel_format::{Identities, Target, VerifyingKey};
use satchel_overlay::{Layers, Options};
use time::OffsetDateTime;

use crate::http::Sink;
use crate::index::Entry;

/// Prefix of the temporary download files.
pub const DOWNLOAD_PREFIX: &str = ".satchel-download-";

/// A bundle being downloaded into a temporary file. The same bytes go to a
/// [`StreamVerifier`], which runs the bundle library's whole verification
/// on them while they arrive.
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
                Err(satchel_format::OpenError::Payload("already taken".into())),
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
    if s.len != entry.size {
        return Err(format!(
            "{} is {} bytes, the index says {}",
            entry.url, s.len, entry.size
        ));
    }
    // A bundle that did not verify is refused as such by the caller.
    match &s.verified {
        Ok(v) if v.manifest().serial != entry.serial => Err(format!(
            "{} is serial {}, the index says {}",
            entry.url,
            v.manifest().serial,
            entry.serial
        )),
        _ => Ok(()),
    }
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

impl Applied {
    /// Counts what the overlay's commit of one payload did.
    pub fn of(a: &satchel_overlay::Applied) -> Applied {
        let c = &a.changes;
        Applied {
            entries: a.summary.entries.len() as u64,
            changed: c.installed.len() + c.replaced.len() + c.removed.len() + c.updated_dirs.len(),
        }
    }
}

/// Decrypts the verified bundle in `sink` and stages it in `layers` over
/// the bundles staged before it, with the safe overlay told the manifest's
/// entry count, size and special-bits policy; the root does not change
/// (the caller commits every bundle of the boot together). Decryption runs
/// on its own thread and hashes `payload.age` again as it reads it: the
/// payload is kept staged only if those bytes still match the verified
/// manifest. The download's memory is given back as it is read
/// ([`FreeBehind`]): it is spent after this, whatever the outcome.
pub fn stage(
    sink: &FileSink,
    verified: &Verified,
    trust: &Trust,
    layers: &mut Layers,
) -> Result<(), String> {
    let file = sink
        .file
        .as_file()
        .try_clone()
        .and_then(FreeBehind::new)
        .map_err(|e| format!("open {}: {e}", sink.path().display()))?;
    satchel_format::open::stage_verified(
        file,
        verified,
        &trust.identities,
        layers,
        &Options::default(),
    )
    .map_err(|e| e.to_string())
}

/// Reads a spent download and gives its pages back as it goes: on a
/// diskless node the download is RAM, as is the tree being unpacked from
/// it, so freeing what was read keeps the peak near the size of the tree
/// alone, and the kernel's freeing runs beside the unpacking rather than
/// after it. Every [`FreeBehind::STEP`] bytes read, the range already read
/// becomes a hole (`fallocate(PUNCH_HOLE)`); where the filesystem cannot,
/// nothing changes. Reading a range again after that reads zeros, which
/// the second hash of the payload refuses, so it is only for a stream
/// read once, front to back.
#[derive(Debug)]
pub struct FreeBehind {
    file: File,
    /// Bytes before this offset are freed.
    freed: u64,
    /// The read position.
    pos: u64,
}

impl FreeBehind {
    /// Bytes read between two punches.
    pub const STEP: u64 = 4 << 20;

    /// Wraps `file` (opened for writing: punching needs it) and rewinds it.
    pub fn new(mut file: File) -> std::io::Result<Self> {
        file.seek(SeekFrom::Start(0))?;
        Ok(FreeBehind {
            file,
            freed: 0,
            pos: 0,
        })
    }

    fn punch(&mut self) {
        let end = self.pos - self.pos % Self::STEP;
        if end > self.freed {
            use rustix::fs::FallocateFlags;
            // Best effort: a filesystem without holes keeps the bytes.
            let _ = rustix::fs::fallocate(
                &self.file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                self.freed,
                end - self.freed,
            );
            self.freed = end;
        }
    }
}

impl Read for FreeBehind {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        if self.pos >= self.freed + Self::STEP {
            self.punch();
        }
        Ok(n)
    }
}

impl Seek for FreeBehind {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

/// Removes download files a killed earlier run left directly in `dir`
/// (regular files named [`DOWNLOAD_PREFIX`]…, never followed through a
/// symlink), but not this run's own downloads, named in `ours`. Returns
/// how many were removed.
pub fn remove_stale_downloads(dir: &Path, ours: &[&Path]) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let download = name
            .to_str()
            .is_some_and(|s| s.starts_with(DOWNLOAD_PREFIX));
        let this_run = ours.iter().any(|p| p.file_name() == Some(name.as_os_str()));
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        if download && !this_run && regular && std::fs::remove_file(e.path()).is_ok() {
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
        let current = d.join(format!("{DOWNLOAD_PREFIX}current"));
        std::fs::write(&current, "this run's").expect("w");
        assert_eq!(remove_stale_downloads(d, &[current.as_path()]), 1);
        assert!(current.exists(), "this run's own download is kept");
        assert!(d.join("keep-me").exists());
        assert!(d.join("target").exists());
        assert!(d.join(format!("{DOWNLOAD_PREFIX}dir")).is_dir());
        assert_eq!(remove_stale_downloads(&d.join("missing"), &[]), 0);
    }

    fn entry(target: &str, serial: u64, size: u64) -> Entry {
        Entry {
            target: target.parse().expect("target"),
            serial,
            sha256: [0; 32],
            size,
            url: format!("/v1/bundles/{target}"),
        }
    }

    #[test]
    fn downloads_are_checked_against_the_index() {
        let t = tempfile::tempdir().expect("tmp");
        let mut sink = FileSink::new_in(t.path(), Checks::new(vec![])).expect("sink");
        Sink::write(&mut sink, b"hello").expect("write");
        assert!(check_download(&entry("site/dc1", 1, 5), &mut sink).is_ok());
        let e = check_download(&entry("site/dc1", 1, 6), &mut sink).expect_err("size");
        assert!(e.contains("is 5 bytes, the index says 6"), "{e}");
        assert!(
            sink.take_verified().is_err(),
            "\"hello\" verified as a bundle"
        );
        // A retry starts over.
        sink.reset().expect("reset");
        Sink::write(&mut sink, b"hel").expect("write");
        assert!(check_download(&entry("site/dc1", 1, 5), &mut sink).is_err());
        let path = sink.path().to_path_buf();
        drop(sink);
        assert!(!path.exists(), "the temporary file outlived its sink");
    }

    #[test]
    fn free_behind_reads_every_byte_and_frees_what_it_read() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().expect("tmp");
        let path = t.path().join("download");
        let len = (FreeBehind::STEP * 2 + 12345) as usize;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &data).expect("write");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open")
        };
        let mut positioned = open();
        positioned.seek(SeekFrom::End(0)).expect("seek");
        let mut r = FreeBehind::new(positioned).expect("rewind");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 100_000];
        loop {
            let n = r.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == data, "the bytes read differ from the file");
        // Where holes exist, the first two steps are gone: reading again
        // gives zeros there and the file holds fewer blocks.
        let blocks = std::fs::metadata(&path).expect("stat").blocks();
        let mut again = vec![0u8; 16];
        let mut f = open();
        f.read_exact(&mut again).expect("read");
        if again.iter().all(|&b| b == 0) {
            assert!(blocks * 512 < len as u64 / 2, "{blocks} blocks left");
        } else {
            assert_eq!(again, data[..16], "neither freed nor kept");
        }
    }

    #[test]
    fn a_verified_bundle_must_carry_the_index_serial() {
        use satchel_format::manifest::Policy;
        use satchel_format::seal::{seal_to_file, SealParams, Source};
        use satchel_format::SigningKey;
        let t = tempfile::tempdir().expect("tmp");
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
        std::fs::write(tree.join("etc/motd"), "hi\n").expect("write");
        let key = SigningKey::generate();
        let now = OffsetDateTime::now_utc();
        let out = t.path().join("b.bundle");
        seal_to_file(
            &SealParams {
                target: "site/dc1".parse().expect("target"),
                site: None,
                serial: 7,
                created: now - time::Duration::minutes(1),
                expires: now + time::Duration::days(1),
                policy: Policy::default(),
                recipients: Identities::generate().recipients(),
            },
            Source::Dir {
                path: &tree,
                keep_owners: false,
            },
            &key,
            &out,
            &std::sync::atomic::AtomicU64::new(0),
        )
        .expect("seal");
        let bytes = std::fs::read(&out).expect("read");
        let size = bytes.len() as u64;
        let mut checks = Checks::new(vec![key.verifying_key()]);
        checks.target = Some("site/dc1".parse().expect("target"));
        let download = |index: Entry| {
            let mut sink = FileSink::new_in(t.path(), checks.clone()).expect("sink");
            Sink::write(&mut sink, &bytes).expect("write");
            (check_download(&index, &mut sink), sink.take_verified())
        };
        let (checked, verified) = download(entry("site/dc1", 7, size));
        assert_eq!(checked, Ok(()));
        assert_eq!(verified.expect("verified").manifest().serial, 7);
        // Republished between the index and the download: another serial.
        let (checked, _) = download(entry("site/dc1", 6, size));
        assert_eq!(
            checked,
            Err("/v1/bundles/site/dc1 is serial 7, the index says 6".into())
        );
    }
}
