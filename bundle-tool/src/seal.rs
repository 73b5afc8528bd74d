//! Creating a bundle: `tar | zstd -3 | age` streamed to a temporary file
//! beside the output, then the signed container assembled around it.
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

use crate::container::write_container;
use crate::error::SealError;
use crate::keys::{Recipient, SigningKey};
use crate::mac::{SiteName, Target};
use crate::manifest::{Manifest, PayloadInfo, Policy, FORMAT_VERSION};
use crate::pack::{pack_dir, PackOptions};
use crate::pipe::pipe;

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
    let mut payload_file = tempfile::Builder::new()
        .prefix(".satchel-payload-")
        .tempfile_in(dir)?;
    let (info, _) = encrypt_payload(
        params,
        source,
        BufWriter::with_capacity(256 * 1024, payload_file.as_file_mut()),
        progress,
    )?;

    let manifest = Manifest {
        format: FORMAT_VERSION,
        target: params.target.clone(),
        site: params.site.clone(),
        serial: params.serial,
        created,
        expires,
        payload: info,
        signer: key.key_id(),
        policy: params.policy.clone(),
    };
    let manifest_bytes = manifest
        .to_bytes()
        .map_err(|e| SealError::InvalidParameters(e.to_string()))?;
    let signature = key.sign(&manifest_bytes);

    let mut bundle = tempfile::Builder::new()
        .prefix(".satchel-bundle-")
        .tempfile_in(dir)?;
    let payload = payload_file.as_file_mut();
    payload.seek(SeekFrom::Start(0))?;
    let mtime = u64::try_from(created.unix_timestamp()).unwrap_or(0);
    write_container(
        bundle.as_file_mut(),
        &manifest_bytes,
        &signature,
        payload,
        manifest.payload.compressed_size,
        mtime,
    )?;
    let bundle_size = bundle.as_file().metadata()?.len();
    bundle.persist(out).map_err(|e| SealError::Io(e.error))?;
    Ok(Sealed {
        manifest,
        manifest_bytes,
        bundle_size,
    })
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
            io::copy(&mut zst_r, &mut stream)?;
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
