//! Creating a bundle: `tar | zstd -3 | age` streamed into a temporary file
//! beside the output, at the offset where `payload.age` belongs, then the
//! signed manifest and the tar headers written in front of it and the file
//! renamed into place. Room for the manifest is reserved from its widest
//! possible form (sizes of 20 digits); the manifest is padded with spaces
//! before its final newline when it would otherwise end a tar block early,
//! so no byte of the payload is ever copied.
//!
//! The three stages run on their own threads joined by bounded pipes
//! ([`crate::pipe`]), as the shell pipeline would, so memory stays at a few
//! MiB whatever the payload's size: nothing but the temporary payload file
//! ever holds the whole payload. The output appears (by rename) only once
//! complete; on any error both temporary files are removed. The output is
//! not fsync'ed (like `tar` or `age`): a crash can lose it, never half-write
//! it under its name.
//!
//! This module does not validate a `--from-tar` payload: callers pass a tar
//! the overlay's rules already accepted, with its entry count.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::container::{header_region_len, round_up, write_header_region, write_trailer, BLOCK};
use crate::error::SealError;
use crate::keys::{Recipient, SigningKey};
use crate::manifest::{Manifest, PayloadInfo, Policy, FORMAT_VERSION};
use crate::pack::{pack_dir, PackLink, PackOptions};
use crate::pipe::pipe;
use satchel_names::{SiteName, Target};

/// The zstd level payloads are compressed with.
pub const ZSTD_LEVEL: i32 = 3;

/// What the manifest will say, but for what is computed from the payload.
#[derive(Clone, Debug)]
pub struct SealParams {
    /// The bundle's target.
    pub target: Target,
    /// For a host bundle, its site.
    pub site: Option<SiteName>,
    /// The serial.
    pub serial: u64,
    /// Creation time (stored in whole seconds).
    pub created: OffsetDateTime,
    /// Expiry (stored in whole seconds); must be after `created`.
    pub expires: OffsetDateTime,
    /// The overlay policy.
    pub policy: Policy,
    /// Who can decrypt: the node's or site's recipient and the admins'.
    pub recipients: Vec<Recipient>,
}

/// Where the payload comes from.
#[derive(Debug)]
pub enum Source<'a> {
    /// A directory, packed by [`crate::pack`].
    Dir {
        /// The directory.
        path: &'a Path,
        /// Owner policy (the special-bits policy comes from [`SealParams`]).
        keep_owners: bool,
    },
    /// A directory packed with one fixed mtime for every entry, so that the
    /// same content always gives the same tar (rendered templates).
    Rendered {
        /// The directory.
        path: &'a Path,
        /// The mtime stored for every entry (seconds since the epoch).
        mtime: u64,
    },
    /// A directory as [`Source::Dir`] (or, with `mtime`, as
    /// [`Source::Rendered`]) plus symlinks the caller computed, added after
    /// the tree's entries ([`PackOptions::links`]; `create --enable`).
    DirWithLinks {
        /// The directory.
        path: &'a Path,
        /// Owner policy.
        keep_owners: bool,
        /// One mtime for every entry, or the source's.
        mtime: Option<u64>,
        /// The symlinks to add.
        links: Vec<PackLink>,
    },
    /// A tar already checked against the overlay's rules, with its entry count.
    Tar {
        /// The tar file.
        file: File,
        /// Its entry count, as the check found it.
        entries: u64,
    },
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The signed manifest.
    pub manifest: Manifest,
    /// Its exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// Size of the bundle file.
    pub bundle_size: u64,
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
}

/// Creates the bundle `out`. `progress` counts payload tar bytes produced.
pub fn seal_to_file(
    params: &SealParams,
    source: Source<'_>,
    key: &SigningKey,
    out: &Path,
    progress: &AtomicU64,
) -> Result<Sealed, SealError> {
    let created = whole_seconds(params.created);
    let expires = whole_seconds(params.expires);
    if expires <= created {
        return Err(SealError::InvalidParameters(
            "the expiry must be after the creation time".into(),
        ));
    }
    if matches!(params.target, Target::Site(_)) && params.site.is_some() {
        return Err(SealError::InvalidParameters(
            "a site bundle cannot name a site of its own (--site with --mac only)".into(),
        ));
    }
    if params.recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut manifest = Manifest {
        format: FORMAT_VERSION,
        target: params.target.clone(),
        site: params.site.clone(),
        serial: params.serial,
        created,
        expires,
        // The widest values: the room reserved for the manifest fits any payload.
        payload: PayloadInfo {
            sha256: [0; 32],
            compressed_size: u64::MAX,
            uncompressed_size: u64::MAX,
            entries: u64::MAX,
        },
        signer: key.key_id(),
        policy: params.policy.clone(),
    };
    let widest = manifest
        .to_bytes()
        .map_err(|e| SealError::InvalidParameters(e.to_string()))?;
    let manifest_room = round_up(widest.len() as u64);
    let payload_offset = header_region_len(manifest_room);

    // The payload goes straight to its place in the output's temporary file;
    // the headers are written in front of it once the manifest is known.
    let mut bundle = tempfile::Builder::new()
        .prefix(".satchel-bundle-")
        .tempfile_in(dir)?;
    let file = bundle.as_file_mut();
    file.seek(SeekFrom::Start(payload_offset))?;
    let (info, _) = encrypt_payload(
        params,
        source,
        BufWriter::with_capacity(256 * 1024, &mut *file),
        progress,
    )?;
    manifest.payload = info;
    let manifest_bytes = pad_manifest(
        manifest
            .to_bytes()
            .map_err(|e| SealError::InvalidParameters(e.to_string()))?,
        manifest_room,
    );
    if round_up(manifest_bytes.len() as u64) != manifest_room {
        return Err(SealError::InvalidParameters(
            "the manifest outgrew the room reserved for it".into(),
        ));
    }
    let signature = key.sign(&manifest_bytes);
    let mtime = u64::try_from(created.unix_timestamp()).unwrap_or(0);
    let size = manifest.payload.compressed_size;
    file.seek(SeekFrom::Start(payload_offset + size))?;
    write_trailer(&mut *file, size)?;
    file.seek(SeekFrom::Start(0))?;
    write_header_region(&mut *file, &manifest_bytes, &signature, size, mtime)?;
    let bundle_size = payload_offset + round_up(size) + 2 * BLOCK as u64;
    bundle.persist(out).map_err(|e| SealError::Io(e.error))?;
    Ok(Sealed {
        manifest,
        manifest_bytes,
        bundle_size,
    })
}

/// Pads the manifest with spaces before its final newline so that it fills
/// as many tar blocks as `room` (it never needs more: `room` was computed
/// for the widest values). Most manifests need no padding.
fn pad_manifest(mut bytes: Vec<u8>, room: u64) -> Vec<u8> {
    let len = bytes.len() as u64;
    if round_up(len) < room {
        let want = room - BLOCK as u64 + 1;
        let newline = bytes.pop();
        bytes.resize((want - 1) as usize, b' ');
        bytes.extend(newline);
    }
    bytes
}

/// Counts bytes written through it.
struct CountingWriter<'a, W> {
    inner: W,
    count: &'a AtomicU64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts bytes written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Arc<Mutex<(Sha256, u64)>>,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Ok(mut h) = self.hasher.lock() {
            h.0.update(&buf[..n]);
            h.1 += n as u64;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Runs `source → tar → zstd → age → out` on three threads. Returns the
/// payload's info and `out`.
pub fn encrypt_payload<W: Write + Send>(
    params: &SealParams,
    source: Source<'_>,
    out: W,
    progress: &AtomicU64,
) -> Result<(PayloadInfo, W), SealError> {
    let recipients: Vec<&dyn age::Recipient> = params
        .recipients
        .iter()
        .map(|r| r.as_age() as &dyn age::Recipient)
        .collect();
    let encryptor = age::Encryptor::with_recipients(recipients.into_iter())
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let allow_special_bits = params.policy.allow_special_bits;
    let tar_bytes = AtomicU64::new(0);
    let hashed = Arc::new(Mutex::new((Sha256::new(), 0u64)));

    let (tar_w, mut tar_r) = pipe();
    let (zst_w, mut zst_r) = pipe();

    let (produced, compressed, encrypted) = std::thread::scope(|s| {
        let tar_bytes = &tar_bytes;
        let producer = s.spawn(move || -> Result<u64, SealError> {
            let counting = CountingWriter {
                inner: tar_w,
                count: tar_bytes,
            };
            let (counting, entries) = match source {
                Source::Dir { path, keep_owners } => {
                    let opts = PackOptions {
                        keep_owners,
                        allow_special_bits,
                        mtime: None,
                        links: Vec::new(),
                    };
                    pack_dir(path, &opts, counting)?
                }
                Source::DirWithLinks {
                    path,
                    keep_owners,
                    mtime,
                    links,
                } => {
                    let opts = PackOptions {
                        keep_owners,
                        allow_special_bits,
                        mtime,
                        links,
                    };
                    pack_dir(path, &opts, counting)?
                }
                Source::Rendered { path, mtime } => {
                    let opts = PackOptions {
                        keep_owners: false,
                        allow_special_bits,
                        mtime: Some(mtime),
                        links: Vec::new(),
                    };
                    pack_dir(path, &opts, counting)?
                }
                Source::Tar { file, entries } => {
                    let mut counting = counting;
                    io::copy(
                        &mut io::BufReader::with_capacity(256 * 1024, file),
                        &mut counting,
                    )?;
                    (counting, entries)
                }
            };
            counting.inner.finish()?;
            Ok(entries)
        });
        let compressor = s.spawn(move || -> io::Result<()> {
            let mut enc = zstd::stream::write::Encoder::new(zst_w, ZSTD_LEVEL)?;
            enc.include_checksum(true)?;
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = match tar_r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                enc.write_all(&buf[..n])?;
                progress.fetch_add(n as u64, Ordering::Relaxed);
            }
            enc.finish()?.finish()
        });
        let hashing = HashingWriter {
            inner: out,
            hasher: Arc::clone(&hashed),
        };
        let encrypted = (|| -> io::Result<W> {
            let mut stream = encryptor.wrap_output(hashing)?;
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = match zst_r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                stream.write_all(&buf[..n])?;
            }
            let mut hashing = stream.finish()?;
            hashing.flush()?;
            Ok(hashing.inner)
        })();
        // Dropping the reader unblocks the compressor if this stage failed.
        drop(zst_r);
        let compressed = compressor.join();
        let produced = producer.join();
        (produced, compressed, encrypted)
    });
    // The earliest stage's error is the real cause; later ones are broken pipes.
    let entries = match produced {
        Ok(r) => r?,
        Err(_) => {
            return Err(SealError::Io(io::Error::other(
                "the packing thread panicked",
            )))
        }
    };
    match compressed {
        Ok(r) => r?,
        Err(_) => {
            return Err(SealError::Io(io::Error::other(
                "the compression thread panicked",
            )))
        }
    }
    let out = encrypted?;
    let (hasher, compressed_size) = {
        let guard = hashed
            .lock()
            .map_err(|_| SealError::Io(io::Error::other("hash state poisoned")))?;
        (guard.0.clone(), guard.1)
    };
    Ok((
        PayloadInfo {
            sha256: hasher.finalize().into(),
            compressed_size,
            uncompressed_size: tar_bytes.load(Ordering::Relaxed),
            entries,
        },
        out,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_fills_the_reserved_blocks_and_keeps_the_json() {
        let mut m = crate::manifest::sample();
        for (size, room) in [(1u64, 1024u64), (99_999_999_999, 1024), (5, 1536)] {
            m.payload.compressed_size = size;
            let bytes = m.to_bytes().unwrap();
            let padded = pad_manifest(bytes.clone(), room);
            assert_eq!(
                round_up(padded.len() as u64),
                room.max(round_up(bytes.len() as u64))
            );
            assert!(padded.ends_with(b"\n"));
            assert_eq!(Manifest::parse(&padded).unwrap(), m);
            if round_up(bytes.len() as u64) == room {
                assert_eq!(padded, bytes, "no padding when it already fills the room");
            }
        }
    }

    #[test]
    fn a_sealed_container_reads_back_with_a_padded_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tree")).unwrap();
        std::fs::write(dir.path().join("tree/f"), "x").unwrap();
        let key = SigningKey::generate();
        let ids = crate::keys::Identities::generate();
        let now = OffsetDateTime::now_utc();
        let params = SealParams {
            target: Target::Site(SiteName::parse("dc1").unwrap()),
            site: None,
            serial: 1,
            created: now,
            expires: now + time::Duration::days(1),
            policy: Policy::default(),
            recipients: ids.recipients(),
        };
        let out = dir.path().join("b.bundle");
        let src = Source::Dir {
            path: &dir.path().join("tree"),
            keep_owners: false,
        };
        let sealed = seal_to_file(&params, src, &key, &out, &AtomicU64::new(0)).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len() as u64, sealed.bundle_size);
        let (h, mut p) = crate::container::read_header(&bytes[..]).unwrap();
        assert_eq!(h.manifest_bytes, sealed.manifest_bytes);
        assert!(key.verifying_key().verify(&h.manifest_bytes, &h.signature));
        let mut payload = Vec::new();
        p.read_to_end(&mut payload).unwrap();
        p.finish().unwrap();
        assert_eq!(
            payload.len() as u64,
            sealed.manifest.payload.compressed_size
        );
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(&payload)),
            sealed.manifest.payload.sha256
        );
        // No temporary file is left beside the output.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
