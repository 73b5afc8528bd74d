//! The outer container: a tar holding exactly `manifest.json`,
//! `manifest.sig` and `payload.age`, in that order, then zero blocks only.
//!
//! Reading is streaming and bounded: [`read_header`] reads the first two
//! members (the manifest at most [`MAX_MANIFEST_BYTES`], the signature exactly
//! 64 bytes), parses the manifest, and hands back [`Payload`], a reader over
//! the third member; [`Payload::finish`] then checks that nothing but zero
//! blocks follows. Only regular-file members (type `0`, or NUL as old tars
//! write it) are accepted; before each, at most one PAX header (`x`), one
//! global PAX header (`g`, which may not set `path` or `size`) and one GNU
//! long name (`L`) are understood, and only their `path` and `size` keys
//! change anything. GNU long link names (`K`), contiguous files (`7`) and
//! every other type are refused. The writer emits plain ustar.
//!
//! Header blocks, numbers, names and PAX records are read by `satchel-tar`,
//! the one header parser the payload's reader (the overlay) uses too: the
//! checksum and the ustar or GNU magic are checked, a name's NUL hides no
//! bytes, base-256 numbers are bounded, PAX records are exact. This module
//! is the container's policy on top, in a thin `Read` loop.
//!
//! This module does not check signatures, hashes or targets: that is
//! [`crate::verify`].

use std::io::{self, Read, Write};

use satchel_tar::{EntryType, HeaderError, Pax};

use crate::error::ContainerError;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};

/// Name of the first member.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Name of the second member.
pub const SIGNATURE_NAME: &str = "manifest.sig";
/// Name of the third member.
pub const PAYLOAD_NAME: &str = "payload.age";

/// Tar block size.
pub const BLOCK: usize = satchel_tar::BLOCK;

/// Largest PAX or GNU extension header read (member names are short; this
/// only bounds what a hostile container can make the reader buffer). The
/// payload's reader has the same bound.
pub const MAX_EXTENSION_BYTES: u64 = satchel_tar::MAX_EXTENSION_BYTES;

/// Most zero bytes accepted after the last member. Tools pad archives to
/// their record size (GNU tar and Python: 10 KiB by default; `tar -b` up to
/// a few hundred KiB).
pub const MAX_TRAILING_ZERO_BYTES: u64 = 1024 * 1024;

/// The first two members, parsed and checked for shape (not yet verified).
#[derive(Clone, Debug)]
pub struct Header {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes, as signed.
    pub manifest_bytes: Vec<u8>,
    /// The ed25519 signature over `manifest_bytes`.
    pub signature: [u8; 64],
    /// Size of the `payload.age` member, from its tar header.
    pub payload_size: u64,
    /// Offset of the first byte of `payload.age` in the container.
    pub payload_offset: u64,
}

/// A header refused by `satchel-tar`, as the container names it.
fn header_error(e: HeaderError, offset: u64) -> ContainerError {
    match e {
        HeaderError::Checksum => ContainerError::BadChecksum { offset },
        other => ContainerError::BadHeader {
            offset,
            reason: other.to_string(),
        },
    }
}

/// A reader that counts the bytes it has read.
#[derive(Debug)]
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counting<R> {
    fn read_block(&mut self, what: &'static str) -> Result<[u8; BLOCK], ContainerError> {
        let mut block = [0u8; BLOCK];
        self.read_exact_or(&mut block, what)?;
        Ok(block)
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), ContainerError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(ContainerError::Truncated(what))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a member's data of `size` bytes plus padding.
    fn read_data(&mut self, size: u64, what: &'static str) -> Result<Vec<u8>, ContainerError> {
        let len = usize::try_from(size).map_err(|_| ContainerError::Truncated(what))?;
        let mut data = vec![0u8; len];
        self.read_exact_or(&mut data, what)?;
        self.skip_padding(size, what)?;
        Ok(data)
    }

    fn skip_padding(&mut self, size: u64, what: &'static str) -> Result<(), ContainerError> {
        let pad = padding(size);
        let mut buf = [0u8; BLOCK];
        self.read_exact_or(&mut buf[..pad], what)
    }
}

fn padding(size: u64) -> usize {
    // Below one block: the cast cannot truncate.
    satchel_tar::padding(size) as usize
}

/// One regular-file member's header, extensions applied.
struct Member {
    name: Vec<u8>,
    size: u64,
}

/// Reads headers (extensions included) up to the next regular member.
/// `Ok(None)` at the end-of-archive zero block.
fn next_member<R: Read>(
    r: &mut Counting<R>,
    what: &'static str,
) -> Result<Option<Member>, ContainerError> {
    let (mut path, mut size_override) = (None::<Vec<u8>>, None::<u64>);
    // At most one of each extension header before a member: a run of them
    // is bounded (three headers of MAX_EXTENSION_BYTES each) and never
    // ambiguous about which one counts.
    let (mut seen_x, mut seen_g, mut seen_l) = (false, false, false);
    loop {
        let offset = r.pos;
        let block = r.read_block(what)?;
        let Some(header) =
            satchel_tar::Header::parse(&block).map_err(|e| header_error(e, offset))?
        else {
            if seen_x || seen_g || seen_l {
                return Err(ContainerError::BadExtension {
                    offset,
                    reason: "extension header not followed by a member".into(),
                });
            }
            return Ok(None);
        };
        let refuse = |reason: &str| ContainerError::BadExtension {
            offset,
            reason: reason.into(),
        };
        if header.entry_type.is_extension() && header.size > MAX_EXTENSION_BYTES {
            return Err(refuse(&format!(
                "extension header larger than {MAX_EXTENSION_BYTES} bytes"
            )));
        }
        match header.entry_type {
            EntryType::PaxLocal | EntryType::PaxGlobal => {
                let local = header.entry_type == EntryType::PaxLocal;
                let seen = if local { &mut seen_x } else { &mut seen_g };
                if std::mem::replace(seen, true) {
                    return Err(refuse(if local {
                        "two PAX headers (type x) for one member"
                    } else {
                        "two global PAX headers (type g) in a row"
                    }));
                }
                let data = r.read_data(header.size, what)?;
                // Records other than path and size are ignored (FORMAT.md),
                // but read by the same rules as the payload's.
                let pax = Pax::parse(&data).map_err(|e| refuse(&format!("PAX header: {e}")))?;
                if !local {
                    if pax.path.is_some() || pax.size.is_some() {
                        return Err(refuse("global PAX header sets path or size"));
                    }
                    continue;
                }
                if pax.path.is_some() && path.is_some() {
                    return Err(refuse("a PAX path and a GNU long name for one member"));
                }
                path = path.or(pax.path);
                size_override = pax.size;
            }
            EntryType::GnuLongName => {
                if std::mem::replace(&mut seen_l, true) {
                    return Err(refuse("two GNU long names (type L) for one member"));
                }
                let data = r.read_data(header.size, what)?;
                if path.is_some() {
                    return Err(refuse("a PAX path and a GNU long name for one member"));
                }
                let name = satchel_tar::long_name(&data)
                    .map_err(|e| refuse(&format!("GNU long name: {e}")))?;
                path = Some(name.to_vec());
            }
            EntryType::GnuLongLink => {
                return Err(refuse(
                    "GNU long link name (type K): bundle members are regular files, not links",
                ))
            }
            EntryType::Regular => {
                return Ok(Some(Member {
                    name: path.unwrap_or(header.name),
                    size: size_override.unwrap_or(header.size),
                }));
            }
            _ => {
                return Err(ContainerError::NotARegularFile {
                    name: String::from_utf8_lossy(&path.unwrap_or(header.name))
                        .chars()
                        .take(100)
                        .collect(),
                    typeflag: char::from(header.typeflag),
                })
            }
        }
    }
}

fn expect_member<R: Read>(
    r: &mut Counting<R>,
    index: usize,
    expected: &'static str,
) -> Result<u64, ContainerError> {
    match next_member(r, expected)? {
        None => Err(ContainerError::Truncated(expected)),
        Some(m) if m.name == expected.as_bytes() => Ok(m.size),
        Some(m) => Err(ContainerError::UnexpectedMember {
            index,
            expected,
            found: String::from_utf8_lossy(&m.name).chars().take(100).collect(),
        }),
    }
}

/// Reads `manifest.json` and `manifest.sig` from `input`, parses the
/// manifest (bounded), and returns the header and a reader over
/// `payload.age`. Reads nothing past the payload's tar header.
pub fn read_header<R: Read>(input: R) -> Result<(Header, Payload<R>), ContainerError> {
    let mut r = Counting {
        inner: input,
        pos: 0,
    };

    let size = expect_member(&mut r, 0, MANIFEST_NAME)?;
    if size > MAX_MANIFEST_BYTES as u64 {
        return Err(ContainerError::MemberTooLarge {
            name: MANIFEST_NAME,
            size,
            max: MAX_MANIFEST_BYTES as u64,
        });
    }
    let manifest_bytes = r.read_data(size, MANIFEST_NAME)?;

    let size = expect_member(&mut r, 1, SIGNATURE_NAME)?;
    if size != 64 {
        return Err(ContainerError::BadSignatureLength { len: size });
    }
    let sig = r.read_data(size, SIGNATURE_NAME)?;
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&sig);

    let payload_size = expect_member(&mut r, 2, PAYLOAD_NAME)?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let header = Header {
        manifest,
        manifest_bytes,
        signature,
        payload_size,
        payload_offset: r.pos,
    };
    Ok((
        header,
        Payload {
            inner: r,
            size: payload_size,
            remaining: payload_size,
        },
    ))
}

/// A reader over the `payload.age` member. Call [`Payload::finish`] after
/// reading it to check the container's end.
#[derive(Debug)]
pub struct Payload<R> {
    inner: Counting<R>,
    size: u64,
    remaining: u64,
}

impl<R: Read> Payload<R> {
    /// The member's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Skips whatever of the payload was not read, then checks that the
    /// container ends with zero blocks only (at least the two of the
    /// end-of-archive marker, at most
    /// [`MAX_TRAILING_ZERO_BYTES`]). Returns the underlying reader.
    pub fn finish(mut self) -> Result<R, ContainerError> {
        io::copy(&mut self, &mut io::sink())?;
        let mut r = self.inner;
        r.skip_padding(self.size, PAYLOAD_NAME)?;
        let end = r.pos;
        for _ in 0..2 {
            let at = r.pos;
            let block = r.read_block("the end-of-archive blocks")?;
            if block.iter().any(|b| *b != 0) {
                return Err(ContainerError::TrailingGarbage { offset: at });
            }
        }
        let mut buf = [0u8; 8192];
        loop {
            let n = match r.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
                return Err(ContainerError::TrailingGarbage {
                    offset: r.pos + i as u64,
                });
            }
            r.pos += n as u64;
            if r.pos - end > MAX_TRAILING_ZERO_BYTES {
                return Err(ContainerError::TrailingGarbage { offset: r.pos });
            }
        }
        Ok(r.inner)
    }
}

impl<R: Read> Read for Payload<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bundle is truncated: it ends inside payload.age",
            ));
        }
        self.remaining -= n as u64;
        self.inner.pos += n as u64;
        Ok(n)
    }
}

/// A ustar header block for a regular file (mode 0644, owner 0:0).
pub fn ustar_header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum = satchel_tar::checksum(&h);
    put_octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// Writes `value` as zero-padded octal filling the field but its last byte
/// (a NUL). Values too large for the field use GNU base-256.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        // GNU base-256: 0x80 then the value big-endian in the remaining bytes.
        field.fill(0);
        field[0] = 0x80;
        let len = field.len();
        for (i, b) in value.to_be_bytes().iter().rev().enumerate().take(len - 1) {
            field[len - 1 - i] = *b;
        }
        return;
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// `n` rounded up to whole tar blocks.
pub fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Bytes in front of `payload.age`'s data for a manifest occupying
/// `manifest_room` bytes of blocks: three headers, the manifest, the signature.
pub fn header_region_len(manifest_room: u64) -> u64 {
    BLOCK as u64 + manifest_room + 2 * BLOCK as u64 + BLOCK as u64
}

/// Writes everything in front of `payload.age`'s data: the manifest's header
/// and data (zero-padded), the signature's header and data, the payload's
/// header (ustar, mode 0644, owner 0:0, mtime `mtime`).
pub fn write_header_region<W: Write>(
    mut out: W,
    manifest_bytes: &[u8],
    signature: &[u8; 64],
    payload_size: u64,
    mtime: u64,
) -> Result<W, ContainerError> {
    let zeros = [0u8; BLOCK];
    for (name, data) in [
        (MANIFEST_NAME, manifest_bytes),
        (SIGNATURE_NAME, &signature[..]),
    ] {
        out.write_all(&ustar_header(name, data.len() as u64, mtime))?;
        out.write_all(data)?;
        out.write_all(&zeros[..padding(data.len() as u64)])?;
    }
    out.write_all(&ustar_header(PAYLOAD_NAME, payload_size, mtime))?;
    Ok(out)
}

/// Writes what follows `payload.age`'s data: its zero padding and the two
/// end-of-archive blocks.
pub fn write_trailer<W: Write>(mut out: W, payload_size: u64) -> Result<W, ContainerError> {
    let zeros = [0u8; BLOCK];
    out.write_all(&zeros[..padding(payload_size)])?;
    out.write_all(&zeros)?;
    out.write_all(&zeros)?;
    out.flush()?;
    Ok(out)
}

/// Writes a whole container: the three members (ustar, mode 0644, owner 0:0,
/// mtime `mtime`) then two zero blocks. `payload` must yield exactly
/// `payload_size` bytes.
pub fn write_container<W: Write, P: Read>(
    out: W,
    manifest_bytes: &[u8],
    signature: &[u8; 64],
    payload: P,
    payload_size: u64,
    mtime: u64,
) -> Result<W, ContainerError> {
    let mut out = write_header_region(out, manifest_bytes, signature, payload_size, mtime)?;
    let copied = io::copy(&mut payload.take(payload_size), &mut out)?;
    if copied != payload_size {
        return Err(ContainerError::Truncated(PAYLOAD_NAME));
    }
    write_trailer(out, payload_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_bytes() -> Vec<u8> {
        crate::manifest::sample().to_bytes().unwrap()
    }

    fn good(payload: &[u8]) -> Vec<u8> {
        write_container(
            Vec::new(),
            &manifest_bytes(),
            &[9u8; 64],
            payload,
            payload.len() as u64,
            0,
        )
        .unwrap()
    }

    /// Builds a tar with the tar crate from (name, type, data) triples.
    fn custom(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(Header, Vec<u8>), ContainerError> {
        let (h, mut p) = read_header(bytes)?;
        let mut data = Vec::new();
        p.read_to_end(&mut data)?;
        p.finish()?;
        Ok((h, data))
    }

    #[test]
    fn round_trip() {
        for len in [0usize, 1, 511, 512, 513, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (h, data) = read_all(&good(&payload)).unwrap();
            assert_eq!(data, payload);
            assert_eq!(h.payload_size, len as u64);
            assert_eq!(
                h.payload_offset,
                512 + h.manifest_bytes.len().div_ceil(512) as u64 * 512 + 1024 + 512
            );
            assert_eq!(h.signature, [9u8; 64]);
            assert_eq!(h.manifest_bytes, manifest_bytes());
        }
    }

    #[test]
    fn tar_crate_reads_what_we_write() {
        let bytes = good(b"hello");
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, [MANIFEST_NAME, SIGNATURE_NAME, PAYLOAD_NAME]);
    }

    #[test]
    fn tar_crate_containers_with_gnu_and_pax_headers_are_read() {
        let m = manifest_bytes();
        let sig = [1u8; 64];
        // GNU headers and record padding, as `tar` writes them.
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            (MANIFEST_NAME, &m[..]),
            (SIGNATURE_NAME, &sig[..]),
            (PAYLOAD_NAME, b"p"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            b.append_data(&mut h, name, data).unwrap();
        }
        let mut bytes = b.into_inner().unwrap();
        bytes.resize(bytes.len().div_ceil(10240) * 10240, 0);
        assert_eq!(read_all(&bytes).unwrap().1, b"p");

        // A PAX header giving the path.
        let mut pax = Vec::new();
        let rec = format!("path={PAYLOAD_NAME}\n");
        let rec = format!("{} {rec}", rec.len() + 3);
        let mut h = ustar_header("PaxHeaders/x", rec.len() as u64, 0);
        h[156] = b'x';
        fix_checksum(&mut h);
        pax.extend_from_slice(&h);
        pax.extend_from_slice(rec.as_bytes());
        pax.resize(pax.len().div_ceil(512) * 512, 0);
        let bytes = good(b"data");
        let at = bytes.len() - 512 * 4;
        let mut renamed = bytes[..at].to_vec();
        renamed.extend_from_slice(&pax);
        let mut h = ustar_header("other-name", 4, 0);
        fix_checksum(&mut h);
        renamed.extend_from_slice(&h);
        renamed.extend_from_slice(&bytes[at + 512..]);
        assert_eq!(read_all(&renamed).unwrap().1, b"data");
    }

    fn fix_checksum(h: &mut [u8; BLOCK]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        put_octal(&mut h[148..155], sum);
        h[155] = b' ';
    }

    #[test]
    fn hostile_containers_are_refused() {
        let m = manifest_bytes();
        let sig = [1u8; 64];
        use tar::EntryType as T;
        let reg = T::Regular;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("only zero blocks", vec![0u8; 1024]),
            (
                "wrong order",
                custom(&[
                    (SIGNATURE_NAME, reg, &sig),
                    (MANIFEST_NAME, reg, &m),
                    (PAYLOAD_NAME, reg, b"p"),
                ]),
            ),
            (
                "missing payload",
                custom(&[(MANIFEST_NAME, reg, &m), (SIGNATURE_NAME, reg, &sig)]),
            ),
            (
                "extra member",
                custom(&[
                    (MANIFEST_NAME, reg, &m),
                    (SIGNATURE_NAME, reg, &sig),
                    (PAYLOAD_NAME, reg, b"p"),
                    ("x", reg, b"x"),
                ]),
            ),
            (
                "other name",
                custom(&[
                    ("manifest.jsn", reg, &m),
                    (SIGNATURE_NAME, reg, &sig),
                    (PAYLOAD_NAME, reg, b"p"),
                ]),
            ),
            (
                "short signature",
                custom(&[
                    (MANIFEST_NAME, reg, &m),
                    (SIGNATURE_NAME, reg, &sig[..63]),
                    (PAYLOAD_NAME, reg, b"p"),
                ]),
            ),
            (
                "symlink member",
                custom(&[
                    (MANIFEST_NAME, T::Symlink, b""),
                    (SIGNATURE_NAME, reg, &sig),
                    (PAYLOAD_NAME, reg, b"p"),
                ]),
            ),
            (
                "directory member",
                custom(&[
                    (MANIFEST_NAME, T::Directory, b""),
                    (SIGNATURE_NAME, reg, &sig),
                    (PAYLOAD_NAME, reg, b"p"),
                ]),
            ),
            (
                "huge manifest",
                custom(&[
                    (MANIFEST_NAME, reg, &vec![b' '; MAX_MANIFEST_BYTES + 1]),
                    (SIGNATURE_NAME, reg, &sig),
                    (PAYLOAD_NAME, reg, b"p"),
                ]),
            ),
        ];
        for (what, bytes) in cases {
            assert!(read_all(&bytes).is_err(), "{what} was accepted");
        }
        let bytes = good(b"payload");
        // Bad checksum, truncations, trailing garbage.
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(
            read_all(&bad),
            Err(ContainerError::BadChecksum { .. })
        ));
        for cut in [
            100,
            600,
            bytes.len() - 1025,
            bytes.len() - 1024,
            bytes.len() - 512,
            bytes.len() - 1,
        ] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"x");
        assert!(matches!(
            read_all(&extra),
            Err(ContainerError::TrailingGarbage { .. })
        ));
        let mut extra = bytes.clone();
        extra.extend_from_slice(&vec![0u8; MAX_TRAILING_ZERO_BYTES as usize + 4096]);
        assert!(matches!(
            read_all(&extra),
            Err(ContainerError::TrailingGarbage { .. })
        ));
        // Payload size in the header larger than the data.
        let (h, _) = read_header(&bytes[..]).unwrap();
        let at = (h.payload_offset - 512) as usize;
        let mut grown = bytes.clone();
        let mut block: [u8; 512] = grown[at..at + 512].try_into().unwrap();
        put_octal(&mut block[124..136], 1 << 20);
        fix_checksum(&mut block);
        grown[at..at + 512].copy_from_slice(&block);
        assert!(read_all(&grown).is_err());
    }

    /// One extension header block of `kind` carrying `data`, padded.
    fn ext(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut h = ustar_header("ext", data.len() as u64, 0);
        h[156] = kind;
        fix_checksum(&mut h);
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn pax(record: &str) -> Vec<u8> {
        let rec = format!("{record}\n");
        let mut len = rec.len() + 2;
        if format!("{len} {rec}").len() != len {
            len += 1;
        }
        format!("{len} {rec}").into_bytes()
    }

    /// `good(b"data")` with `blocks` inserted in front of the payload's header.
    fn before_payload(blocks: &[Vec<u8>]) -> Vec<u8> {
        let bytes = good(b"data");
        let (h, _) = read_header(&bytes[..]).unwrap();
        let at = (h.payload_offset - 512) as usize;
        let mut out = bytes[..at].to_vec();
        for b in blocks {
            out.extend_from_slice(b);
        }
        out.extend_from_slice(&bytes[at..]);
        out
    }

    #[test]
    fn extension_headers_are_exactly_as_strict_as_format_md() {
        // One of each, as tools write them: accepted.
        let ok = before_payload(&[
            ext(b'g', &pax("comment=made by hand")),
            ext(b'x', &pax("mtime=1")),
            ext(b'L', format!("{PAYLOAD_NAME}\0").as_bytes()),
        ]);
        assert_eq!(read_all(&ok).unwrap().1, b"data");
        let refused = |blocks: &[Vec<u8>], want: &str| {
            let bytes = before_payload(blocks);
            match read_all(&bytes) {
                Err(ContainerError::BadExtension { reason, .. }) => {
                    assert!(reason.contains(want), "{reason:?}, wanted {want:?}")
                }
                other => panic!("{want}: {:?}", other.map(|_| ())),
            }
        };
        let x = ext(b'x', &pax("mtime=1"));
        refused(&[x.clone(), x.clone()], "two PAX headers (type x)");
        // Without the limit, a run of them was read without end.
        refused(&vec![x; 1000], "two PAX headers (type x)");
        let g = ext(b'g', &pax("comment=x"));
        refused(&[g.clone(), g], "two global PAX headers");
        let l = ext(b'L', format!("{PAYLOAD_NAME}\0").as_bytes());
        refused(&[l.clone(), l.clone()], "two GNU long names");
        refused(
            &[ext(b'x', &pax(&format!("path={PAYLOAD_NAME}"))), l],
            "a PAX path and a GNU long name",
        );
        refused(&[ext(b'K', b"target\0")], "GNU long link name (type K)");
        refused(
            &[ext(b'g', &pax(&format!("path={PAYLOAD_NAME}")))],
            "global PAX header sets path",
        );

        // A contiguous file (type 7) is not a regular file here.
        let bytes = good(b"data");
        let (h, _) = read_header(&bytes[..]).unwrap();
        let at = (h.payload_offset - 512) as usize;
        let mut seven = bytes.clone();
        let mut block: [u8; 512] = seven[at..at + 512].try_into().unwrap();
        block[156] = b'7';
        fix_checksum(&mut block);
        seven[at..at + 512].copy_from_slice(&block);
        assert!(matches!(
            read_all(&seven),
            Err(ContainerError::NotARegularFile { typeflag: '7', .. })
        ));
        let e = read_all(&before_payload(&[ext(b'K', b"t\0")])).unwrap_err();
        assert!(e.to_string().contains("bundle container"), "{e}");
    }

    #[test]
    fn written_numbers_read_back_octal_or_base_256() {
        for value in [0, 0o644, 1 << 33, (1 << 33) - 1, 1 << 40, u64::MAX] {
            let mut f = [0u8; 12];
            put_octal(&mut f, value);
            assert_eq!(satchel_tar::number(&f), Ok(value), "{value}");
        }
        let h = ustar_header(PAYLOAD_NAME, 1 << 40, 7);
        let parsed = satchel_tar::Header::parse(&h).unwrap().unwrap();
        assert_eq!((parsed.size, parsed.mtime()), (1 << 40, Ok(7)));
    }

    /// The container's reader and the payload's (the overlay's) see a header
    /// block the same way: each variant is refused by both or read by both.
    #[test]
    fn container_and_payload_readers_agree_on_header_blocks() {
        type Mutation = fn(&mut [u8; BLOCK]);
        let refused: Vec<(&str, Mutation)> = vec![
            ("bytes hidden after a name's NUL", |h| h[90] = b'x'),
            ("a v7 header without magic", |h| h[257..265].fill(0)),
            ("a digit hidden after the size's terminator", |h| {
                h[124..136].copy_from_slice(b"1 5\0\0\0\0\0\0\0\0\0")
            }),
            ("a negative base-256 size", |h| h[124..136].fill(0xff)),
            ("a size beyond 2^64 - 1", |h| {
                h[124..136].fill(0xff);
                h[124] = 0xbf;
            }),
            ("no checksum", |h| h[148..156].fill(b' ')),
        ];
        let accepted: Vec<(&str, Mutation)> = vec![
            ("a base-256 size", |h| {
                h[124..136].fill(0);
                h[124] = 0x80;
                h[135] = 1;
            }),
            ("space-terminated numbers with leading spaces", |h| {
                h[124..136].copy_from_slice(b"          1 ")
            }),
            ("GNU magic", |h| {
                h[257..263].copy_from_slice(b"ustar ");
                h[263..265].copy_from_slice(b" \0");
            }),
        ];
        let (h, _) = read_header(&good(b"x")[..]).unwrap();
        let at = (h.payload_offset - 512) as usize;
        let both = |mutate: Mutation, signed: bool| {
            let block = |name: &str| {
                let mut b = ustar_header(name, 1, 0);
                mutate(&mut b);
                if b[148..156] != *b"        " {
                    let sum = satchel_tar::checksum(&b);
                    put_octal(&mut b[148..155], sum);
                }
                if signed {
                    // A byte above 0x7f where neither reader looks (the
                    // owner's name), and the signed sum historic tars stored.
                    b[265] = 0xff;
                    b[148..156].fill(b' ');
                    let sum: i64 = b.iter().map(|&x| i64::from(x as i8)).sum();
                    assert_ne!(sum, i64::try_from(satchel_tar::checksum(&b)).unwrap());
                    put_octal(&mut b[148..155], u64::try_from(sum).unwrap());
                }
                b
            };
            let mut container = good(b"x");
            container[at..at + 512].copy_from_slice(&block(PAYLOAD_NAME));
            let mut payload = block("f").to_vec();
            payload.push(b'x');
            payload.resize(4 * BLOCK, 0);
            (
                read_all(&container).map(|_| ()),
                satchel_overlay::check_archive(&payload[..], &satchel_overlay::Options::default())
                    .map(|_| ()),
            )
        };
        for (what, mutate) in refused {
            let (container, payload) = both(mutate, false);
            assert!(
                container.is_err() && payload.is_err(),
                "{what}: {container:?} {payload:?}"
            ); // Refused as a header, not for anything after it.
            assert!(
                matches!(
                    container,
                    Err(ContainerError::BadHeader { offset, .. } | ContainerError::BadChecksum { offset })
                        if offset == at as u64
                ),
                "{what}: {container:?}"
            );
            let kind = payload.err().map_or("", |e| e.kind());
            assert!(
                ["bad_checksum", "bad_magic", "bad_number", "header_trick"].contains(&kind),
                "{what}: {kind}"
            );
        }
        for (what, mutate) in accepted {
            for signed in [false, true] {
                let (container, payload) = both(mutate, signed);
                assert!(
                    container.is_ok() && payload.is_ok(),
                    "{what}: {container:?} {payload:?}"
                );
            }
        }
    }

    #[test]
    fn pax_records_are_read_by_the_shared_rules() {
        let refused = |data: &[u8]| match read_all(&before_payload(&[ext(b'x', data)])) {
            Err(ContainerError::BadExtension { reason, .. }) => {
                assert!(reason.starts_with("PAX header"), "{reason}")
            }
            other => panic!(
                "{:?}: {:?}",
                String::from_utf8_lossy(data),
                other.map(|_| ())
            ),
        };
        for bad in [
            &b"13 size=12x4\n"[..],
            b"99 size=1\n",
            b"size=1\n",
            b"8 size=1\n",
            b"9 size=1\n9 size=2\n",
            b"7 size\n",
            // Read as lengths before: "+9", a key twice, an empty key.
            b"+9 size=4\n",
            b"11 mtime=1\n11 mtime=2\n",
            b"6 =abc\n",
        ] {
            refused(bad);
        }
        // A record only the payload's reader applies is ignored here.
        assert_eq!(
            read_all(&before_payload(&[ext(b'x', &pax("uid=7"))]))
                .unwrap()
                .1,
            b"data"
        );
    }

    proptest::proptest! {
        /// Any bytes: never a panic, and a container that parses ends well.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = read_all(&bytes);
        }

        /// Flipping a bit of a member's header block is refused or harmless
        /// (fields the format ignores, such as mtime or mode: same members);
        /// flipping a bit of the end-of-archive blocks is always refused.
        #[test]
        fn flipped_header_bits_are_refused_or_harmless(block in 0usize..5, off in 0usize..512, bit in 0u8..8) {
            let payload = vec![7u8; 600];
            let good_bytes = good(&payload);
            // Header blocks of the three members, then the two end blocks.
            let starts = [0, 1024, 2048, good_bytes.len() - 1024, good_bytes.len() - 512];
            let mut bytes = good_bytes.clone();
            bytes[starts[block] + off] ^= 1 << bit;
            let got = read_all(&bytes);
            if block >= 3 {
                proptest::prop_assert!(got.is_err());
            } else if let Ok((h, data)) = got {
                let (g, gdata) = read_all(&good_bytes).unwrap();
                proptest::prop_assert_eq!(h.signature, g.signature);
                proptest::prop_assert_eq!(h.manifest_bytes, g.manifest_bytes);
                proptest::prop_assert_eq!(data, gdata);
            }
        }
    }
}
