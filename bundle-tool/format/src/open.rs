//! The full verified open of a bundle.
//!
//! Order, fixed: read the container's header (bounded manifest parse) →
//! [`verify_header`] (signature, target, expiry, serial) → the payload's
//! size and sha256 over the whole `payload.age` member, and the container's
//! end → only then decrypt (X25519 identities only; passphrase files are
//! refused) and decompress (zstd window at most 2^[`MAX_ZSTD_WINDOW_LOG`]),
//! handing out a [`PayloadTar`] reader that never yields more than the
//! manifest's uncompressed size and, before it hands out the last promised
//! byte, checks that the stream ends there and that the `payload.age` bytes
//! read this second time hash to the manifest's value (so a file swapped
//! between the passes is caught before the overlay commits). A stream that
//! ends early is refused too.
//!
//! The input must be seekable (a file): the payload is read twice, once to
//! hash it and once to decrypt it, so that nothing is decrypted before its
//! hash is known good, in bounded memory.
//!
//! [`open_into`] runs the whole path: decryption and decompression on one
//! thread, the overlay on the other, joined by a bounded pipe; the overlay
//! is told the manifest's entry count, size and special-bits policy and
//! commits only after the whole stream checked out. [`stage_verified`]
//! stops before the commit, so that the bundles of one boot are staged one
//! over the other and committed together ([`satchel_overlay::Layers`]).

use std::fs::File;
use std::io::Write;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::container::{read_header, Header, Payload};
use crate::error::OpenError;
use crate::keys::{Identities, KeyId};
use crate::manifest::Manifest;
use crate::pipe::{pipe, FillError};
use crate::verify::{check_payload_size, verify_header, Checks, PayloadCheck};
use satchel_overlay::{Applied, Layers, Options};

/// Largest zstd window accepted when decompressing (2^23 = 8 MiB, what
/// `zstd -19` uses; `--long` and `--ultra` payloads are refused).
pub const MAX_ZSTD_WINDOW_LOG: u32 = 23;

/// Read buffer for the bundle file.
const READ_BUFFER: usize = 256 * 1024;
/// The buffer in front of an encrypted payload that is decrypted on its
/// way to the overlay: smaller than age's 64 KiB chunk, so that age's reads
/// bypass it and only its header goes through it.
const PAYLOAD_READ_BUFFER: usize = 16 * 1024;

/// The `payload.age` bytes of a seekable bundle, as [`PayloadTar`] reads them.
pub type TakenPayload<R> = BufReader<io::Take<R>>;

/// What [`open_reader`] returns: the verified header and the payload tar.
pub type Opened<R> = (Verified, PayloadTar<TakenPayload<R>>);

/// A bundle whose header and payload hash checked out. Only verification
/// makes one, so holding it means the checks passed.
#[derive(Clone, Debug)]
pub struct Verified {
    header: Header,
    signer: KeyId,
}

impl Verified {
    /// The container header (manifest, its bytes, signature, payload position).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trusted key that signed it.
    pub fn signer(&self) -> &KeyId {
        &self.signer
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.header.manifest
    }
}

/// Verifies a whole bundle from `input`: header checks, then payload size
/// and sha256, then the container's end. Reads `input` once, to its end.
pub fn verify_reader<R: Read>(input: R, checks: &Checks) -> Result<Verified, OpenError> {
    let (header, payload) = read_header(input)?;
    let signer = verify_header(&header, checks)?.key_id();
    check_payload(&header, payload)?;
    Ok(Verified { header, signer })
}

/// Checks the payload's size and sha256 against the manifest, then the
/// container's end.
fn check_payload<R: Read>(header: &Header, mut payload: Payload<R>) -> Result<(), OpenError> {
    check_payload_size(&header.manifest, payload.size())?;
    let mut check = PayloadCheck::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match payload.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        check.update(&buf[..n]);
    }
    check.finish(&header.manifest)?;
    payload.finish()?;
    Ok(())
}

/// What a [`StreamVerifier`] found: the length of every byte it was
/// given, and the verification of those bytes as a bundle.
#[derive(Debug)]
pub struct Streamed {
    /// How many bytes were written.
    pub len: u64,
    /// [`verify_reader`] over those bytes.
    pub verified: Result<Verified, OpenError>,
}

/// [`verify_reader`] run on its own thread over bytes as they arrive (a
/// download), so that verification costs no time after the last byte.
/// Every byte written is counted, including any after the container.
///
/// Writes block while the verifying thread is more than a few chunks
/// behind (memory stays bounded). Dropping it without [`finish`] stops the
/// thread. Verifying a stream is not permission to decrypt a *copy* of it:
/// [`apply_verified`] hashes the payload it decrypts again.
///
/// [`finish`]: StreamVerifier::finish
pub struct StreamVerifier {
    pipe: Option<crate::pipe::PipeWriter>,
    thread: Option<std::thread::JoinHandle<Streamed>>,
}

impl std::fmt::Debug for StreamVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamVerifier").finish_non_exhaustive()
    }
}

/// Counts everything read through it.
struct Counting<R> {
    inner: R,
    len: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.len += n as u64;
        Ok(n)
    }
}

impl StreamVerifier {
    /// Starts the verifying thread.
    pub fn start(checks: Checks) -> io::Result<Self> {
        let (w, r) = pipe();
        let thread = std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                let mut input = Counting { inner: r, len: 0 };
                let verified = verify_reader(&mut input, &checks);
                // Whatever follows the container (or follows the point where
                // verification failed) still counts, and the writer must
                // never block on a reader that left.
                let _ = io::copy(&mut input, &mut io::sink());
                Streamed {
                    len: input.len,
                    verified,
                }
            })?;
        Ok(StreamVerifier {
            pipe: Some(w),
            thread: Some(thread),
        })
    }

    /// Passes the next bytes to the verifying thread.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.pipe {
            Some(p) => p.write_all(data),
            None => Err(io::Error::other("the stream verifier already finished")),
        }
    }

    /// Marks the end of the stream and waits for the verdict.
    pub fn finish(mut self) -> io::Result<Streamed> {
        let pipe = self.pipe.take();
        let thread = self.thread.take();
        if let Some(p) = pipe {
            p.finish()?;
        }
        match thread.map(|t| t.join()) {
            Some(Ok(s)) => Ok(s),
            _ => Err(io::Error::other("the verifying thread failed")),
        }
    }
}

impl Drop for StreamVerifier {
    fn drop(&mut self) {
        // Dropping the writer unfinished makes the reader fail, which ends
        // the thread; wait for it so no thread outlives its verifier.
        drop(self.pipe.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// For `inspect` only: checks the container and the payload's size and
/// sha256 against the manifest, then decrypts — but checks **no signature,
/// target, expiry or serial**. Never apply what this returns.
pub fn inspect_reader<R: Read + Seek + Send>(
    mut input: R,
    identities: &Identities,
) -> Result<(Header, PayloadTar<TakenPayload<R>>), OpenError> {
    let start = input.stream_position()?;
    let (header, payload) = read_header(BufReader::with_capacity(READ_BUFFER, &mut input))?;
    check_payload(&header, payload)?;
    input.seek(SeekFrom::Start(start + header.payload_offset))?;
    let payload = BufReader::with_capacity(READ_BUFFER, input.take(header.payload_size));
    let tar = decrypt_payload(&header.manifest, payload, identities)?;
    Ok((header, tar))
}

/// Verifies the bundle file at `path` (see [`verify_reader`]).
pub fn verify_file(path: &Path, checks: &Checks) -> Result<Verified, OpenError> {
    let f = File::open(path)?;
    verify_reader(BufReader::with_capacity(READ_BUFFER, f), checks)
}

/// Verifies a seekable bundle, then returns a reader over its payload tar.
pub fn open_reader<R: Read + Seek + Send>(
    mut input: R,
    checks: &Checks,
    identities: &Identities,
) -> Result<Opened<R>, OpenError> {
    let start = input.stream_position()?;
    let verified = verify_reader(BufReader::with_capacity(READ_BUFFER, &mut input), checks)?;
    input.seek(SeekFrom::Start(start + verified.header.payload_offset))?;
    let payload = BufReader::with_capacity(READ_BUFFER, input.take(verified.header.payload_size));
    let tar = decrypt_payload(&verified.header.manifest, payload, identities)?;
    Ok((verified, tar))
}

/// Verifies the bundle file at `path`, then returns a reader over its payload tar.
pub fn open_file(
    path: &Path,
    checks: &Checks,
    identities: &Identities,
) -> Result<Opened<File>, OpenError> {
    open_reader(File::open(path)?, checks, identities)
}

/// Hashes what is read through it (the second pass over `payload.age`).
struct Rehash<R> {
    inner: R,
    check: Arc<Mutex<PayloadCheck>>,
}

impl<R: Read> Read for Rehash<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut c) = self.check.lock() {
            c.update(&buf[..n]);
        }
        Ok(n)
    }
}

type Decoder<R> =
    zstd::stream::read::Decoder<'static, BufReader<age::stream::StreamReader<Rehash<R>>>>;

/// The decrypted, decompressed payload tar, capped at the manifest's
/// uncompressed size. See the module doc for the checks at its end.
pub struct PayloadTar<R: Read> {
    inner: Decoder<R>,
    rehash: Arc<Mutex<PayloadCheck>>,
    manifest: Manifest,
    seen: u64,
    finished: bool,
    failure: Option<OpenError>,
}

impl<R: Read> std::fmt::Debug for PayloadTar<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadTar")
            .field("seen", &self.seen)
            .field("expected", &self.manifest.payload.uncompressed_size)
            .finish_non_exhaustive()
    }
}

impl<R: Read> PayloadTar<R> {
    /// The typed error behind the last `io::Error` this reader returned, if
    /// it was one of its own checks (size or second-pass hash) rather than a
    /// decryption or decompression failure.
    pub fn take_failure(&mut self) -> Option<OpenError> {
        self.failure.take()
    }

    /// Bytes of tar produced so far.
    pub fn bytes_read(&self) -> u64 {
        self.seen
    }

    /// The manifest this payload is checked against.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn fail(&mut self, e: OpenError) -> io::Error {
        let err = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        self.failure = Some(e);
        err
    }

    /// Runs when the last byte the manifest promises has been produced,
    /// before that byte is handed out: the decompressed stream must end
    /// here, and the `payload.age` bytes read this second time must hash to
    /// the manifest's value.
    fn at_end(&mut self) -> io::Result<()> {
        let expected = self.manifest.payload.uncompressed_size;
        let mut probe = [0u8; 1];
        if self.inner.read(&mut probe)? != 0 {
            return Err(self.fail(OpenError::UncompressedTooLarge { expected }));
        }
        let check = match self.rehash.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return Err(io::Error::other("hash state poisoned")),
        };
        if let Err(e) = check.finish(&self.manifest) {
            return Err(self.fail(OpenError::Verify(e)));
        }
        self.finished = true;
        Ok(())
    }
}

impl<R: Read> Read for PayloadTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let expected = self.manifest.payload.uncompressed_size;
        if self.seen == expected {
            self.at_end()?;
            return Ok(0);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let room = expected - self.seen;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.fail(OpenError::UncompressedSizeMismatch {
                expected,
                found: self.seen,
            }));
        }
        self.seen += n as u64;
        if self.seen == expected {
            // Check the end before handing out the last bytes, so a consumer
            // that stops reading at the promised size still gets the checks.
            self.at_end()?;
        }
        Ok(n)
    }
}

/// Decrypts and decompresses `payload` (the `payload.age` bytes, already
/// verified against `manifest`). Refuses passphrase-encrypted files.
pub fn decrypt_payload<R: Read>(
    manifest: &Manifest,
    payload: R,
    identities: &Identities,
) -> Result<PayloadTar<R>, OpenError> {
    let rehash = Arc::new(Mutex::new(PayloadCheck::new()));
    let reader = Rehash {
        inner: payload,
        check: Arc::clone(&rehash),
    };
    let decryptor =
        age::Decryptor::new(reader).map_err(|e| OpenError::InvalidAge(e.to_string()))?;
    if decryptor.is_scrypt() {
        return Err(OpenError::PassphraseRefused);
    }
    let ids = identities.as_age().iter().map(|i| i as &dyn age::Identity);
    let stream = decryptor.decrypt(ids).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => OpenError::NoMatchingIdentity,
        e => OpenError::InvalidAge(e.to_string()),
    })?;
    let mut decoder = zstd::stream::read::Decoder::new(stream)
        .map_err(|e| OpenError::Payload(format!("zstd: {e}")))?;
    decoder
        .window_log_max(MAX_ZSTD_WINDOW_LOG)
        .map_err(|e| OpenError::Payload(format!("zstd: {e}")))?;
    Ok(PayloadTar {
        inner: decoder,
        rehash,
        manifest: manifest.clone(),
        seen: 0,
        finished: false,
        failure: None,
    })
}

/// Reads a whole payload tar to its end, discarding it: for tests and for
/// `verify`-style callers that want the size and hash checks of the end.
pub fn drain<R: Read>(tar: &mut PayloadTar<R>) -> Result<u64, OpenError> {
    match io::copy(tar, &mut io::sink()) {
        Ok(n) => Ok(n),
        Err(e) => Err(tar
            .take_failure()
            .unwrap_or_else(|| OpenError::Payload(e.to_string()))),
    }
}

/// Counts the bytes read through it into a shared counter (for progress).
#[derive(Debug)]
pub struct Counted<'a, R> {
    inner: R,
    count: &'a AtomicU64,
}

impl<'a, R> Counted<'a, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, count: &'a AtomicU64) -> Self {
        Counted { inner, count }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counted<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The overlay options for a verified manifest: `base` (limits, ownership)
/// with the manifest's entry count, size and special-bits policy.
pub fn overlay_options(manifest: &Manifest, base: &Options) -> Options {
    Options {
        allow_special_bits: manifest.policy.allow_special_bits,
        expected_entries: Some(manifest.payload.entries),
        expected_size: Some(manifest.payload.uncompressed_size),
        ..base.clone()
    }
}

/// The whole verified open: [`verify_reader`] on the file at `path`, then
/// [`apply_verified`] on the same file. `progress` counts bundle bytes read
/// (about twice its size).
pub fn open_into(
    path: &Path,
    checks: &Checks,
    identities: &Identities,
    root: &Path,
    base: &Options,
    progress: &AtomicU64,
) -> Result<(Verified, Applied), OpenError> {
    let mut file = Counted::new(File::open(path)?, progress);
    let verified = verify_reader(BufReader::with_capacity(READ_BUFFER, &mut file), checks)?;
    file.seek(SeekFrom::Start(0))?;
    let applied = apply_verified(file, &verified, identities, root, base)?;
    Ok((verified, applied))
}

/// Lays the payload of a bundle that [`verify_reader`] (or
/// [`verify_file`]) already verified over `root`, all or nothing: a boot
/// of one bundle ([`stage_verified`], then the commit).
pub fn apply_verified<R: Read + Seek + Send>(
    input: R,
    verified: &Verified,
    identities: &Identities,
    root: &Path,
    base: &Options,
) -> Result<Applied, OpenError> {
    let mut layers = Layers::open(root)?;
    stage_verified(input, verified, identities, &mut layers, base)?;
    let mut applied = layers.commit().map_err(|e| e.error)?;
    applied
        .pop()
        .ok_or_else(|| OpenError::Payload("no payload was committed".into()))
}

/// Stages the payload of a bundle that [`verify_reader`] (or
/// [`verify_file`]) already verified into `layers`, over the bundles staged
/// before it, without changing the root: seeks `input` (the same bundle,
/// positioned at its start) to `payload.age`, decrypts and decompresses it
/// on its own thread, and runs [`Layers::stage`] with [`overlay_options`]
/// on the calling one, joined by a bounded pipe. The caller commits every
/// staged bundle together ([`Layers::commit`]).
///
/// The payload is not trusted to be the bytes verified earlier: this second
/// pass hashes them again as they are decrypted (see [`PayloadTar`]), and
/// the overlay keeps the staged payload only after that hash matched the
/// verified manifest.
pub fn stage_verified<R: Read + Seek + Send>(
    mut input: R,
    verified: &Verified,
    identities: &Identities,
    layers: &mut Layers,
    base: &Options,
) -> Result<(), OpenError> {
    let start = input.stream_position()?;
    input.seek(SeekFrom::Start(start + verified.header.payload_offset))?;
    // age reads its 64 KiB chunks past a buffer smaller than them, straight
    // from the file (a larger one made every byte one more copy).
    let payload = BufReader::with_capacity(
        PAYLOAD_READ_BUFFER,
        input.take(verified.header.payload_size),
    );
    let mut tar = decrypt_payload(verified.manifest(), payload, identities)?;
    let opts = overlay_options(verified.manifest(), base);
    let (mut w, r) = pipe();
    let (produced, staged) = std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<(), OpenError> {
            loop {
                // Decompressed straight into the pipe's chunk.
                match w.fill_from(&mut tar) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(FillError::Read(e)) => {
                        return Err(tar
                            .take_failure()
                            .unwrap_or_else(|| OpenError::Payload(e.to_string())))
                    }
                    // The overlay stopped reading: its error is the cause.
                    Err(FillError::Closed) => return Ok(()),
                }
            }
            w.finish().or(Ok(()))
        });
        let staged = layers.stage(r, &opts);
        (producer.join(), staged)
    });
    // A failure to decrypt or decompress is the cause of the overlay's
    // read error, so it is reported first.
    match produced {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(OpenError::Payload("the decryption thread panicked".into())),
    }
    Ok(staged?)
}
