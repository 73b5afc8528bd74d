//! A strict, streaming tar reader: ustar, POSIX PAX and GNU long names.
//!
//! Written here rather than taken from the `tar` crate because the overlay
//! must *refuse* what other readers silently accept or interpret
//! differently: every header's checksum and magic are checked, PAX and GNU
//! extension headers may not stack or contradict each other, a PAX `size`
//! must equal the header's, unknown PAX records are refused, non-file
//! entries carry no data, and after the two zero blocks only zero padding
//! (at most [`MAX_TRAILING_PADDING`] bytes) may follow.
//!
//! It does not validate names (see `path`) nor track entries across the
//! archive (see `rules`): it turns blocks into [`RawEntry`]s and streams
//! their data.

use std::io::{self, BufRead, Write};

use crate::error::{shown, ExtractError};

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// Largest PAX extended header or GNU long name/link we read, in bytes.
pub const MAX_META_SIZE: u64 = 64 * 1024;

/// Most zero bytes accepted after the end-of-archive blocks (tar pads to
/// its record size, 10 KiB by default).
pub const MAX_TRAILING_PADDING: u64 = 1024 * 1024;

/// The kinds of entry the overlay knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawKind {
    /// Regular file (`0` or NUL type flag).
    File,
    /// Directory (`5`).
    Dir,
    /// Symbolic link (`2`).
    Symlink,
    /// Hard link (`1`).
    Hardlink,
}

/// One archive member, with PAX/GNU extensions folded in.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// Where its (first, possibly extension) header starts.
    pub offset: u64,
    /// The name in effect.
    pub path: Vec<u8>,
    /// The name in the ustar header when an extension overrode it: it must be
    /// safe too, so no other reader can be steered by it.
    pub shadow_path: Option<Vec<u8>>,
    /// What kind of member.
    pub kind: RawKind,
    /// Link target for symlinks and hardlinks.
    pub link: Option<Vec<u8>>,
    /// The ustar link field when an extension overrode it.
    pub shadow_link: Option<Vec<u8>>,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Bytes of data that follow (0 unless `File`).
    pub size: u64,
}

/// Overrides collected from a PAX `x` header.
#[derive(Default, Debug)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<i64>,
}

/// Extension headers waiting for their entry.
#[derive(Default, Debug)]
struct Pending {
    offset: Option<u64>,
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// Streams [`RawEntry`]s out of a tar byte stream.
#[derive(Debug)]
pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed so far.
    pos: u64,
    /// Data bytes of the current entry not yet read.
    data_left: u64,
    /// Padding after the current entry's data not yet read.
    pad_left: u64,
    /// The stream is also cut off here (the manifest's size, if known).
    cap: Option<u64>,
}

fn pad_of(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The bytes of a NUL-terminated header field; anything after the first
/// NUL must be NUL too (hidden bytes there are a parser-differential trick).
fn field_str(f: &[u8]) -> Option<&[u8]> {
    match f.iter().position(|&b| b == 0) {
        Some(n) if f[n..].iter().all(|&b| b == 0) => Some(&f[..n]),
        Some(_) => None,
        None => Some(f),
    }
}

/// A numeric header field: octal (space/NUL terminated) or GNU base-256.
fn field_num(f: &[u8]) -> Option<u64> {
    if f.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256: positive only.
        if f[0] != 0x80 {
            return None;
        }
        let mut v: u64 = 0;
        for &b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let start = f.iter().position(|&b| b != b' ').unwrap_or(f.len());
    let rest = &f[start..];
    let end = rest
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(rest.len());
    if !rest[end..].iter().all(|&b| b == 0 || b == b' ') {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &rest[..end] {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Parses PAX records `"<len> <key>=<value>\n"`; lengths must be exact.
fn parse_pax(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, &'static str> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    while !data.is_empty() {
        let sp = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("record length missing")?;
        let digits = &data[..sp];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err("record length is not a number");
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("record length is not a number")?;
        if len < sp + 3 || len > data.len() {
            return Err("record length out of range");
        }
        let record = &data[sp + 1..len];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err("record does not end with a newline");
        };
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record has no '='")?;
        let key = std::str::from_utf8(&body[..eq]).map_err(|_| "record key is not UTF-8")?;
        if key.is_empty() {
            return Err("empty record key");
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err("duplicate record key");
        }
        out.push((key.to_string(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

fn pax_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// PAX `mtime`: decimal seconds, optionally negative and with a fraction
/// (dropped).
fn pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let int = s.split_once('.').map_or(s, |(i, _)| i);
    let (neg, digits) = match int.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, int),
    };
    let n = i64::try_from(pax_decimal(digits.as_bytes())?).ok()?;
    Some(if neg { -n } else { n })
}

/// PAX keys that are read but not applied (times other than mtime, names
/// of owners, extended attributes, file flags, the source's inode numbers
/// and comments): none of them can move a path or change a size.
fn ignored_pax_key(key: &str) -> bool {
    matches!(
        key,
        "atime"
            | "ctime"
            | "uname"
            | "gname"
            | "comment"
            | "LIBARCHIVE.creationtime"
            | "SCHILY.dev"
            | "SCHILY.ino"
            | "SCHILY.nlink"
            | "SCHILY.fflags"
    ) || key.starts_with("SCHILY.xattr.")
        || key.starts_with("LIBARCHIVE.xattr.")
}

impl<R: BufRead> TarReader<R> {
    /// Reads tar from `inner`; with `cap`, refuses a stream longer than it.
    /// Entry data goes from `inner`'s buffer straight to its sink.
    pub fn new(inner: R, cap: Option<u64>) -> Self {
        TarReader {
            inner,
            pos: 0,
            data_left: 0,
            pad_left: 0,
            cap,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Counts `n` more bytes consumed, refusing to pass the cap.
    fn advance(&mut self, n: usize) -> Result<(), ExtractError> {
        self.pos += n as u64;
        match self.cap {
            Some(cap) if self.pos > cap => Err(ExtractError::SizeMismatch {
                expected: cap,
                actual: self.pos,
            }),
            _ => Ok(()),
        }
    }

    /// The next bytes of the stream, as many as `inner` has buffered (empty
    /// only at EOF), without consuming them.
    fn available(&mut self) -> Result<&[u8], ExtractError> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ExtractError::io("read payload", "", e)),
            }
        }
        // Buffered now, so this returns at once (the slice cannot be
        // returned from inside the loop above).
        self.inner
            .fill_buf()
            .map_err(|e| ExtractError::io("read payload", "", e))
    }

    /// Reads as much of `buf` as the stream has; fewer bytes only at EOF.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ExtractError> {
        let mut n = 0;
        while n < buf.len() {
            let avail = self.available()?;
            if avail.is_empty() {
                break;
            }
            let k = avail.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&avail[..k]);
            self.inner.consume(k);
            n += k;
        }
        self.advance(n)?;
        Ok(n)
    }

    /// The next block, or `None` at a clean end of stream.
    fn block(&mut self) -> Result<Option<[u8; BLOCK]>, ExtractError> {
        let mut b = [0u8; BLOCK];
        match self.fill(&mut b)? {
            0 => Ok(None),
            BLOCK => Ok(Some(b)),
            _ => Err(ExtractError::Truncated { offset: self.pos }),
        }
    }

    /// Copies the current entry's data to `sink` (all of it) and skips its
    /// padding.
    pub fn copy_data(&mut self, sink: &mut dyn Write) -> Result<u64, ExtractError> {
        let mut copied = 0;
        while self.data_left > 0 {
            let n = self.pass(self.data_left, Some(&mut *sink))?;
            self.data_left -= n;
            copied += n;
        }
        while self.pad_left > 0 {
            self.pad_left -= self.pass(self.pad_left, None)?;
        }
        Ok(copied)
    }

    /// Passes up to `left` bytes of what `inner` has buffered to `sink` (or
    /// drops them) and consumes them; returns how many.
    fn pass(&mut self, left: u64, sink: Option<&mut dyn Write>) -> Result<u64, ExtractError> {
        let avail = self.available()?;
        if avail.is_empty() {
            return Err(ExtractError::Truncated { offset: self.pos });
        }
        let n = usize::try_from(left).map_or(avail.len(), |l| l.min(avail.len()));
        if let Some(sink) = sink {
            sink.write_all(&avail[..n])
                .map_err(|e| ExtractError::io("write", "", e))?;
        }
        self.inner.consume(n);
        self.advance(n)?;
        Ok(n as u64)
    }

    /// Reads an extension header's data (bounded by [`MAX_META_SIZE`]).
    fn meta_data(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, ExtractError> {
        if size > MAX_META_SIZE {
            return Err(ExtractError::HeaderTrick {
                offset,
                path: String::new(),
                reason: "extension header larger than allowed",
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        self.data_left = size;
        self.pad_left = pad_of(size);
        self.copy_data(&mut data)?;
        Ok(data)
    }

    /// After the first zero block: a second one, then only zero padding.
    fn finish(&mut self, pending: &Pending) -> Result<(), ExtractError> {
        if let Some(offset) = pending.offset {
            return Err(ExtractError::HeaderTrick {
                offset,
                path: String::new(),
                reason: "extension header without an entry",
            });
        }
        let at = self.pos;
        match self.block()? {
            Some(b) if b.iter().all(|&x| x == 0) => {}
            Some(_) => return Err(ExtractError::TrailingGarbage { offset: at }),
            None => return Err(ExtractError::Truncated { offset: at }),
        }
        let mut buf = [0u8; BLOCK];
        let mut padding = 0u64;
        loop {
            let at = self.pos;
            let n = self.fill(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            padding += n as u64;
            if padding > MAX_TRAILING_PADDING || buf[..n].iter().any(|&x| x != 0) {
                return Err(ExtractError::TrailingGarbage { offset: at });
            }
        }
    }

    /// The next entry, or `None` after a well-formed end of archive. Any
    /// unread data of the previous entry is skipped first.
    pub fn next_entry(&mut self) -> Result<Option<RawEntry>, ExtractError> {
        self.copy_data(&mut io::sink())?;
        let mut pending = Pending::default();
        loop {
            let offset = self.pos;
            let Some(h) = self.block()? else {
                return Err(ExtractError::Truncated { offset });
            };
            if h.iter().all(|&b| b == 0) {
                self.finish(&pending)?;
                return Ok(None);
            }
            let trick = |reason: &'static str, path: &[u8]| ExtractError::HeaderTrick {
                offset,
                path: shown(path),
                reason,
            };
            // Checksum: the field counts as spaces; unsigned sum (signed
            // accepted too, as historic writers used it).
            let stored = field_num(&h[148..156]).ok_or(ExtractError::BadChecksum { offset })?;
            let unsigned: u64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
                .sum();
            let signed: i64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    i64::from(if (148..156).contains(&i) {
                        b' ' as i8
                    } else {
                        b as i8
                    })
                })
                .sum();
            if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
                return Err(ExtractError::BadChecksum { offset });
            }
            let posix = match (&h[257..263], &h[263..265]) {
                (b"ustar\0", b"00") => true,
                (b"ustar ", b" \0") => false,
                _ => return Err(ExtractError::BadMagic { offset }),
            };
            let name = field_str(&h[0..100])
                .ok_or_else(|| trick("bytes after NUL in name", &h[0..100]))?;
            let mut header_path = name.to_vec();
            if posix {
                let prefix = field_str(&h[345..500])
                    .ok_or_else(|| trick("bytes after NUL in prefix", name))?;
                if !prefix.is_empty() {
                    header_path = [prefix, b"/", name].concat();
                }
            }
            let header_link = field_str(&h[157..257])
                .ok_or_else(|| trick("bytes after NUL in link name", name))?
                .to_vec();
            let num = |range: std::ops::Range<usize>, field: &'static str| {
                field_num(&h[range]).ok_or(ExtractError::BadNumber { offset, field })
            };
            let size = num(124..136, "size")?;
            let typeflag = h[156];
            match typeflag {
                b'x' => {
                    if pending.pax.is_some() {
                        return Err(trick("two PAX headers for one entry", &header_path));
                    }
                    if pending.long_name.is_some() || pending.long_link.is_some() {
                        return Err(trick("PAX and GNU extension headers mixed", &header_path));
                    }
                    let data = self.meta_data(size, offset)?;
                    let records = parse_pax(&data)
                        .map_err(|reason| ExtractError::MalformedPax { offset, reason })?;
                    let mut pax = Pax::default();
                    for (key, value) in records {
                        let bad = |_| ExtractError::MalformedPax {
                            offset,
                            reason: "bad numeric record",
                        };
                        match key.as_str() {
                            "path" if value.is_empty() => {
                                return Err(trick("empty PAX path", &header_path))
                            }
                            "linkpath" if value.is_empty() => {
                                return Err(trick("empty PAX linkpath", &header_path))
                            }
                            "path" => pax.path = Some(value),
                            "linkpath" => pax.linkpath = Some(value),
                            "size" => pax.size = Some(pax_decimal(&value).ok_or(()).map_err(bad)?),
                            "uid" => {
                                pax.uid = Some(
                                    pax_decimal(&value)
                                        .and_then(|v| u32::try_from(v).ok())
                                        .ok_or(())
                                        .map_err(bad)?,
                                )
                            }
                            "gid" => {
                                pax.gid = Some(
                                    pax_decimal(&value)
                                        .and_then(|v| u32::try_from(v).ok())
                                        .ok_or(())
                                        .map_err(bad)?,
                                )
                            }
                            "mtime" => pax.mtime = Some(pax_time(&value).ok_or(()).map_err(bad)?),
                            "hdrcharset" if value == b"ISO-IR 10646 2000 UTF-8" => {}
                            k if ignored_pax_key(k) => {}
                            _ => return Err(ExtractError::UnsupportedPaxKey { offset, key }),
                        }
                    }
                    pending.pax = Some(pax);
                    pending.offset.get_or_insert(offset);
                }
                b'g' => {
                    if pending.offset.is_some() {
                        return Err(trick(
                            "global header between an entry's headers",
                            &header_path,
                        ));
                    }
                    let data = self.meta_data(size, offset)?;
                    let records = parse_pax(&data)
                        .map_err(|reason| ExtractError::MalformedPax { offset, reason })?;
                    // Only comments (as `git archive` writes): a global path,
                    // size or owner would silently change later entries.
                    if let Some((key, _)) = records.into_iter().find(|(k, _)| k != "comment") {
                        return Err(ExtractError::UnsupportedPaxKey { offset, key });
                    }
                }
                b'L' | b'K' => {
                    let slot = if typeflag == b'L' {
                        &pending.long_name
                    } else {
                        &pending.long_link
                    };
                    if slot.is_some() {
                        return Err(trick(
                            "two GNU long-name headers for one entry",
                            &header_path,
                        ));
                    }
                    // A PAX `size` would apply to this header for some readers
                    // and to the entry for others.
                    if pending.pax.is_some() {
                        return Err(trick("PAX and GNU extension headers mixed", &header_path));
                    }
                    let data = self.meta_data(size, offset)?;
                    let value = field_str(&data)
                        .ok_or_else(|| trick("bytes after NUL in GNU long name", &data))?
                        .to_vec();
                    if value.is_empty() {
                        return Err(trick("empty GNU long name", &header_path));
                    }
                    if typeflag == b'L' {
                        pending.long_name = Some(value);
                    } else {
                        pending.long_link = Some(value);
                    }
                    pending.offset.get_or_insert(offset);
                }
                _ => {
                    let first = pending.offset.unwrap_or(offset);
                    let pax = pending.pax.take().unwrap_or_default();
                    if pax.path.is_some() && pending.long_name.is_some() {
                        return Err(trick("both a PAX path and a GNU long name", &header_path));
                    }
                    if pax.linkpath.is_some() && pending.long_link.is_some() {
                        return Err(trick(
                            "both a PAX linkpath and a GNU long link",
                            &header_path,
                        ));
                    }
                    let ext_path = pax.path.or(pending.long_name.take());
                    let ext_link = pax.linkpath.or(pending.long_link.take());
                    let path = ext_path.clone().unwrap_or_else(|| header_path.clone());
                    let kind = match typeflag {
                        b'0' | 0 => RawKind::File,
                        b'5' => RawKind::Dir,
                        b'2' => RawKind::Symlink,
                        b'1' => RawKind::Hardlink,
                        b'3' | b'4' => return Err(ExtractError::Device { path: shown(&path) }),
                        b'6' => return Err(ExtractError::Fifo { path: shown(&path) }),
                        other => {
                            return Err(ExtractError::UnsupportedEntryType {
                                path: shown(&path),
                                typeflag: char::from(other),
                            })
                        }
                    };
                    if let Some(p) = pax.size {
                        if p != size {
                            return Err(ExtractError::SizeDesync {
                                path: shown(&path),
                                header: size,
                                pax: p,
                            });
                        }
                    }
                    if kind != RawKind::File && size != 0 {
                        return Err(trick("data on an entry that is not a file", &path));
                    }
                    if kind == RawKind::File && path.ends_with(b"/") {
                        return Err(trick("file name ends with '/'", &path));
                    }
                    let is_link = matches!(kind, RawKind::Symlink | RawKind::Hardlink);
                    if !is_link && (ext_link.is_some() || !header_link.is_empty()) {
                        return Err(trick("link name on an entry that is not a link", &path));
                    }
                    let link =
                        is_link.then(|| ext_link.clone().unwrap_or_else(|| header_link.clone()));
                    let mode = num(100..108, "mode")?;
                    if mode > 0o7777 && mode & !0o177777 != 0 {
                        return Err(ExtractError::BadNumber {
                            offset,
                            field: "mode",
                        });
                    }
                    let id = |range, field| {
                        num(range, field).and_then(|v| {
                            u32::try_from(v).map_err(|_| ExtractError::BadNumber { offset, field })
                        })
                    };
                    let uid = match pax.uid {
                        Some(u) => u,
                        None => id(108..116, "uid")?,
                    };
                    let gid = match pax.gid {
                        Some(g) => g,
                        None => id(116..124, "gid")?,
                    };
                    let mtime = match pax.mtime {
                        Some(t) => t,
                        None => i64::try_from(num(136..148, "mtime")?).map_err(|_| {
                            ExtractError::BadNumber {
                                offset,
                                field: "mtime",
                            }
                        })?,
                    };
                    if kind == RawKind::File {
                        self.data_left = size;
                        self.pad_left = pad_of(size);
                    }
                    return Ok(Some(RawEntry {
                        offset: first,
                        shadow_path: ext_path.map(|_| header_path),
                        path,
                        kind,
                        shadow_link: if is_link && ext_link.is_some() {
                            Some(header_link)
                        } else {
                            None
                        },
                        link,
                        mode: u32::try_from(mode & 0o7777).unwrap_or(0),
                        uid,
                        gid,
                        mtime,
                        size,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header block with a correct checksum.
    pub(crate) fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"14500000000");
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        fix_checksum(&mut h);
        h
    }

    pub(crate) fn fix_checksum(h: &mut [u8; BLOCK]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    fn data(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.resize(bytes.len() + pad_of(bytes.len() as u64) as usize, 0);
        v
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 3;
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            out.extend_from_slice(format!("{len} {k}=").as_bytes());
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    fn end() -> Vec<u8> {
        vec![0u8; 2 * BLOCK]
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<RawEntry>, ExtractError> {
        let mut r = TarReader::new(bytes, None);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn reads_the_tar_crates_output() {
        let mut b = ::tar::Builder::new(Vec::new());
        let mut h = ::tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        h.set_cksum();
        b.append_data(&mut h, "d/".repeat(60) + "f", &b"abc"[..])
            .expect("append");
        let bytes = b.into_inner().expect("finish");
        let mut r = TarReader::new(&bytes[..], Some(bytes.len() as u64));
        let e = r.next_entry().expect("ok").expect("entry");
        assert_eq!(e.path, ("d/".repeat(60) + "f").into_bytes());
        assert!(e.shadow_path.is_some());
        assert_eq!(e.mode, 0o640);
        let mut got = Vec::new();
        r.copy_data(&mut got).expect("data");
        assert_eq!(got, b"abc");
        assert!(r.next_entry().expect("ok").is_none());
    }

    #[test]
    fn pax_path_size_and_owner_apply() {
        let p = pax(&[
            ("path", b"long/name"),
            ("size", b"2"),
            ("uid", b"7"),
            ("mtime", b"12.5"),
        ]);
        let bytes = cat(&[
            &header(b"PaxHeaders/x", b'x', p.len() as u64, b""),
            &data(&p),
            &header(b"short", b'0', 2, b""),
            &data(b"hi"),
            &end(),
        ]);
        let e = read_all(&bytes).expect("valid");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, b"long/name");
        assert_eq!(e[0].shadow_path.as_deref(), Some(&b"short"[..]));
        assert_eq!((e[0].uid, e[0].mtime, e[0].size), (7, 12, 2));
    }

    fn err_name(r: Result<Vec<RawEntry>, ExtractError>) -> String {
        format!("{:?}", r.expect_err("must be refused"))
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_string()
    }

    #[test]
    fn hostile_streams_table() {
        let f = header(b"f", b'0', 1, b"");
        let p_size = pax(&[("size", b"600")]);
        let mut bad_sum = f;
        bad_sum[0] = b'g';
        let mut not_ustar = f;
        not_ustar[257..263].copy_from_slice(b"ustaR\0");
        fix_checksum(&mut not_ustar);
        let mut hidden = header(b"a", b'0', 0, b"");
        hidden[50] = b'x';
        fix_checksum(&mut hidden);
        let mut bad_num = f;
        bad_num[124..136].copy_from_slice(b"00000000009\0");
        fix_checksum(&mut bad_num);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("BadChecksum", cat(&[&bad_sum, &data(b"x"), &end()])),
            ("BadMagic", cat(&[&not_ustar, &data(b"x"), &end()])),
            ("HeaderTrick", cat(&[&hidden, &end()])),
            ("BadNumber", cat(&[&bad_num, &end()])),
            ("Truncated", cat(&[&f, &data(b"x")])),
            ("Truncated", cat(&[&f, &data(b"x"), &[0u8; BLOCK]])),
            ("Truncated", f[..100].to_vec()),
            ("TrailingGarbage", cat(&[&f, &data(b"x"), &end(), b"junk"])),
            (
                "TrailingGarbage",
                cat(&[&f, &data(b"x"), &[0u8; BLOCK], &f, &data(b"x"), &end()]),
            ),
            (
                "SizeDesync",
                cat(&[
                    &header(b"P", b'x', p_size.len() as u64, b""),
                    &data(&p_size),
                    &f,
                    &data(b"x"),
                    &end(),
                ]),
            ),
            (
                "HeaderTrick",
                cat(&[
                    &header(b"P", b'x', p_size.len() as u64, b""),
                    &data(&p_size),
                    &end(),
                ]),
            ),
            ("Device", cat(&[&header(b"dev", b'3', 0, b""), &end()])),
            ("Device", cat(&[&header(b"dev", b'4', 0, b""), &end()])),
            ("Fifo", cat(&[&header(b"fifo", b'6', 0, b""), &end()])),
            (
                "UnsupportedEntryType",
                cat(&[&header(b"sparse", b'S', 0, b""), &end()]),
            ),
            (
                "HeaderTrick",
                cat(&[&header(b"d", b'5', 1, b""), &data(b"x"), &end()]),
            ),
            (
                "HeaderTrick",
                cat(&[&header(b"f", b'0', 0, b"target"), &end()]),
            ),
            ("HeaderTrick", cat(&[&header(b"f/", b'0', 0, b""), &end()])),
        ];
        for (want, bytes) in cases {
            assert_eq!(err_name(read_all(&bytes)), want, "case {want}");
        }
    }

    #[test]
    fn malformed_pax_records_are_refused() {
        for body in [
            &b"4 a=\n"[..],
            b"9 path=x",
            b"x path=y\n",
            b"99 path=x\n",
            b"10 =empty\n",
            b"7 path\n",
        ] {
            let bytes = cat(&[
                &header(b"P", b'x', body.len() as u64, b""),
                &data(body),
                &header(b"f", b'0', 0, b""),
                &end(),
            ]);
            let got = err_name(read_all(&bytes));
            assert!(
                got == "MalformedPax" || got == "HeaderTrick",
                "{:?} gave {got}",
                String::from_utf8_lossy(body)
            );
        }
        let dup = pax(&[("uid", b"1"), ("uid", b"2")]);
        let bytes = cat(&[
            &header(b"P", b'x', dup.len() as u64, b""),
            &data(&dup),
            &header(b"f", b'0', 0, b""),
            &end(),
        ]);
        assert_eq!(err_name(read_all(&bytes)), "MalformedPax");
        let unknown = pax(&[("GNU.sparse.map", b"0,1")]);
        let bytes = cat(&[
            &header(b"P", b'x', unknown.len() as u64, b""),
            &data(&unknown),
            &header(b"f", b'0', 0, b""),
            &end(),
        ]);
        assert_eq!(err_name(read_all(&bytes)), "UnsupportedPaxKey");
    }

    #[test]
    fn global_headers_may_only_comment() {
        let c = pax(&[("comment", b"deadbeef")]);
        let ok = cat(&[
            &header(b"g", b'g', c.len() as u64, b""),
            &data(&c),
            &header(b"f", b'0', 0, b""),
            &end(),
        ]);
        assert_eq!(read_all(&ok).expect("comment only").len(), 1);
        let p = pax(&[("path", b"evil")]);
        let bad = cat(&[
            &header(b"g", b'g', p.len() as u64, b""),
            &data(&p),
            &header(b"f", b'0', 0, b""),
            &end(),
        ]);
        assert_eq!(err_name(read_all(&bad)), "UnsupportedPaxKey");
    }

    #[test]
    fn zero_padding_after_the_end_is_fine_and_bounded() {
        let mut ok = cat(&[&header(b"f", b'0', 0, b""), &end()]);
        ok.resize(10240, 0);
        assert_eq!(read_all(&ok).expect("padded").len(), 1);
        let mut long = cat(&[&header(b"f", b'0', 0, b""), &end()]);
        long.resize(long.len() + MAX_TRAILING_PADDING as usize + BLOCK, 0);
        assert_eq!(err_name(read_all(&long)), "TrailingGarbage");
    }

    #[test]
    fn cap_stops_an_overlong_stream() {
        let bytes = cat(&[&header(b"f", b'0', 1, b""), &data(b"x"), &end()]);
        let mut r = TarReader::new(&bytes[..], Some(600));
        let e = (|| {
            while r.next_entry()?.is_some() {}
            Ok::<_, ExtractError>(())
        })();
        assert!(matches!(
            e,
            Err(ExtractError::SizeMismatch { expected: 600, .. })
        ));
    }

    #[test]
    fn numbers() {
        assert_eq!(field_num(b"0000644\0"), Some(0o644));
        assert_eq!(field_num(b"  644 \0"), Some(0o644));
        assert_eq!(field_num(b"\0\0\0"), Some(0));
        assert_eq!(field_num(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(field_num(&[0xff, 0xff]), None);
        assert_eq!(field_num(b"12a\0"), None);
        assert_eq!(field_num(b"12 3\0"), None);
        assert_eq!(pax_time(b"-12.7"), Some(-12));
        assert_eq!(pax_time(b"1e5"), None);
    }
}
