//! satchel's one parser of tar headers, shared by its two tar readers: the
//! bundle container's (`satchel-format`) and the payload's
//! (`satchel-overlay`).
//!
//! It looks at one 512-byte header block ([`Header::parse`]), or at the data
//! of one extension header ([`Pax::parse`], [`long_name`]), and says what it
//! holds. It does not read streams, skip data or padding, decide which
//! entry types or PAX keys a reader allows, nor how extension headers may
//! stack: each reader puts its own policy on top (the container takes three
//! regular files, the overlay files, directories and links). But both see a
//! block the same way, by the rules below; before this crate they had a
//! copy each, and the copies disagreed on base-256, NULs and PAX lengths.
//!
//! # Invariants
//!
//! - **Checksum.** A block is parsed only if its checksum matches: the
//!   stored field, read as an octal number (base-256 is refused there),
//!   equals the sum of the block's 512 bytes taken as unsigned bytes with
//!   the eight bytes of the checksum field counted as spaces. The sum of
//!   the bytes taken as signed (`i8`) is accepted too, as historic writers
//!   computed it. An all-zero block is the end-of-archive marker, not a
//!   header ([`Header::parse`] returns `None`).
//! - **Magic.** Only POSIX ustar (`ustar\0` then `00`) and GNU
//!   (`ustar ` then ` \0`) headers are read; a v7 header (no magic) is
//!   refused. The ustar `prefix` is joined to the name (`prefix/name`) in
//!   POSIX headers only: GNU headers keep other fields there.
//! - **Names.** A name field (name, prefix, link name, and a GNU long
//!   name's data) ends at its first NUL, and every byte after that NUL must
//!   be NUL too: a reader that stops at the NUL and one that does not would
//!   see different names. A field without a NUL is used whole. An empty GNU
//!   long name is refused. PAX values are taken as given, NULs included:
//!   they are names like any other, for the caller's name rules.
//! - **Numbers.** A numeric field is octal or base-256. Octal: optional
//!   leading spaces, digits `0`-`7`, then nothing but NULs and spaces to the
//!   field's end; digits may fill the field; a field of only NULs and spaces
//!   is 0. Base-256 (the first byte's top bit set, as GNU tar writes values
//!   too large for octal): the first byte's bit `0x40` set means a negative
//!   number, refused; otherwise its low six bits and the following bytes
//!   are the value, big-endian. A value above `u64::MAX` is refused, never
//!   wrapped.
//! - **PAX records.** Extended header data is a sequence of records
//!   `"<len> <key>=<value>\n"`: `<len>` is 1 to 20 decimal digits giving the
//!   whole record's length, which must lie within the data, end with the
//!   newline and hold a `=`; the key is non-empty UTF-8 and given once per
//!   header. The interpreted keys' values must be well formed: `size`
//!   decimal (`u64`), `uid` and `gid` decimal (`u32`), `mtime` decimal
//!   seconds, optionally negative, with an optional decimal fraction
//!   (dropped), `hdrcharset` UTF-8 only. Keys that cannot move a path or
//!   change a size are inert ([`PaxKey`]); any other key is reported in
//!   [`Pax::unknown`], for the reader to refuse or ignore.
//! - Errors carry no offsets: the reader knows where the block was.

use std::fmt;

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// Largest PAX extended header or GNU long name/link the readers buffer, in
/// bytes: far more than any name the overlay accepts (`PATH_MAX`), and all a
/// hostile archive can make a reader hold for one header.
pub const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// Longest PAX record length prefix, in decimal digits (`u64::MAX` has 20).
pub const MAX_PAX_LENGTH_DIGITS: usize = 20;

/// The `hdrcharset` value that says names are UTF-8 (POSIX pax).
pub const PAX_UTF8_CHARSET: &[u8] = b"ISO-IR 10646 2000 UTF-8";

/// Why a numeric header field was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not octal digits followed by NULs or spaces only.
    #[error("not octal digits followed by NULs or spaces")]
    NotOctal,
    /// A base-256 number with the sign bit set.
    #[error("a negative base-256 number")]
    Negative,
    /// A number above `u64::MAX`.
    #[error("larger than 2^64 - 1")]
    Overflow,
}

/// The name fields of a header, for [`HeaderError::HiddenBytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameField {
    /// The 100-byte name.
    Name,
    /// The ustar 155-byte prefix.
    Prefix,
    /// The 100-byte link name.
    Linkname,
    /// The data of a GNU long name or long link header (`L`, `K`).
    LongName,
}

impl NameField {
    /// What the refusal says, as a fixed text.
    pub fn hidden_bytes_reason(self) -> &'static str {
        match self {
            NameField::Name => "bytes after NUL in name",
            NameField::Prefix => "bytes after NUL in prefix",
            NameField::Linkname => "bytes after NUL in link name",
            NameField::LongName => "bytes after NUL in GNU long name",
        }
    }
}

/// Why a header block or a GNU long name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The checksum field is not octal or does not match the block.
    #[error("header checksum does not match the block")]
    Checksum,
    /// Neither POSIX ustar nor GNU magic and version.
    #[error("not a POSIX ustar or GNU tar header")]
    Magic,
    /// Bytes other than NUL after the NUL that ends a name field.
    #[error("{}", .0.hidden_bytes_reason())]
    HiddenBytes(NameField),
    /// A GNU long name or long link header with an empty name.
    #[error("empty GNU long name")]
    EmptyLongName,
    /// A numeric field that is malformed or out of range.
    #[error("{field} field: {problem}")]
    Number {
        /// The field (`mode`, `uid`, `gid`, `size`, `mtime`).
        field: &'static str,
        /// What is wrong with it.
        problem: NumberError,
    },
}

/// Why PAX extended header data was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaxError {
    /// No space within [`MAX_PAX_LENGTH_DIGITS`] bytes of a record's start.
    #[error("record length missing")]
    LengthMissing,
    /// The length prefix is not decimal digits.
    #[error("record length is not a number")]
    LengthNotANumber,
    /// The length is shorter than the record's own prefix or runs past the data.
    #[error("record length out of range")]
    LengthOutOfRange,
    /// The record's last byte (by its length) is not a newline.
    #[error("record does not end with a newline")]
    NoNewline,
    /// No `=` in the record.
    #[error("record has no '='")]
    NoEquals,
    /// The key is not UTF-8.
    #[error("record key is not UTF-8")]
    KeyNotUtf8,
    /// The key is empty.
    #[error("empty record key")]
    EmptyKey,
    /// A key given twice in one header.
    #[error("duplicate record key")]
    DuplicateKey,
    /// An interpreted key (`size`, `uid`, `gid`, `mtime`) whose value is
    /// not a number of its form.
    #[error("bad numeric record")]
    BadNumber,
    /// A `hdrcharset` other than UTF-8.
    #[error("hdrcharset other than UTF-8")]
    Charset,
}

impl PaxError {
    /// What the refusal says, as a fixed text (the same as `Display`).
    pub fn reason(self) -> &'static str {
        match self {
            PaxError::LengthMissing => "record length missing",
            PaxError::LengthNotANumber => "record length is not a number",
            PaxError::LengthOutOfRange => "record length out of range",
            PaxError::NoNewline => "record does not end with a newline",
            PaxError::NoEquals => "record has no '='",
            PaxError::KeyNotUtf8 => "record key is not UTF-8",
            PaxError::EmptyKey => "empty record key",
            PaxError::DuplicateKey => "duplicate record key",
            PaxError::BadNumber => "bad numeric record",
            PaxError::Charset => "hdrcharset other than UTF-8",
        }
    }
}

/// Bytes of zero padding after `size` bytes of member data.
pub fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The sum of `block`'s bytes, unsigned, with the checksum field counted as
/// spaces: what a writer stores in the checksum field.
pub fn checksum(block: &[u8; BLOCK]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if CHKSUM.contains(&i) { b' ' } else { b }))
        .sum()
}

/// The same sum over the bytes taken as signed, as historic writers made it.
fn signed_checksum(block: &[u8; BLOCK]) -> i64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if CHKSUM.contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(b as i8)
            }
        })
        .sum()
}

/// Checks `block`'s checksum by the rule in the crate doc.
pub fn verify_checksum(block: &[u8; BLOCK]) -> Result<(), HeaderError> {
    let stored = octal(&block[CHKSUM]).map_err(|_| HeaderError::Checksum)?;
    if stored == checksum(block) || i64::try_from(stored).ok() == Some(signed_checksum(block)) {
        Ok(())
    } else {
        Err(HeaderError::Checksum)
    }
}

/// A numeric header field, octal or base-256 (see the crate doc).
pub fn number(field: &[u8]) -> Result<u64, NumberError> {
    match field.split_first() {
        Some((&first, rest)) if first & 0x80 != 0 => {
            if first & 0x40 != 0 {
                return Err(NumberError::Negative);
            }
            rest.iter().try_fold(u64::from(first & 0x3f), |v, &b| {
                v.checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or(NumberError::Overflow)
            })
        }
        _ => octal(field),
    }
}

/// An octal field: leading spaces, digits, then only NULs and spaces.
fn octal(field: &[u8]) -> Result<u64, NumberError> {
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let text = &field[start..];
    let end = text
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(text.len());
    if !text[end..].iter().all(|&b| b == 0 || b == b' ') {
        return Err(NumberError::NotOctal);
    }
    text[..end].iter().try_fold(0u64, |v, &b| {
        if !(b'0'..=b'7').contains(&b) {
            return Err(NumberError::NotOctal);
        }
        v.checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(NumberError::Overflow)
    })
}

/// The bytes of a NUL-terminated name field (see the crate doc).
pub fn name_field(field: &[u8], which: NameField) -> Result<&[u8], HeaderError> {
    match field.iter().position(|&b| b == 0) {
        Some(n) if field[n..].iter().all(|&b| b == 0) => Ok(&field[..n]),
        Some(_) => Err(HeaderError::HiddenBytes(which)),
        None => Ok(field),
    }
}

/// The name a GNU long name or long link header's data carries (its
/// trailing NULs removed; empty refused).
pub fn long_name(data: &[u8]) -> Result<&[u8], HeaderError> {
    let name = name_field(data, NameField::LongName)?;
    if name.is_empty() {
        return Err(HeaderError::EmptyLongName);
    }
    Ok(name)
}

// Field positions of the ustar header.
const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CHKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: std::ops::Range<usize> = 157..257;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const PREFIX: std::ops::Range<usize> = 345..500;

/// Which header dialect a block is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// POSIX ustar (and pax, which is ustar with extended headers).
    Ustar,
    /// GNU tar's own (`--format=gnu`, also the `tar` crate's default).
    Gnu,
}

/// What a header's type flag says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    /// Regular file (`0`, or NUL as old writers put it).
    Regular,
    /// Hard link (`1`).
    Hardlink,
    /// Symbolic link (`2`).
    Symlink,
    /// Character device (`3`).
    CharDevice,
    /// Block device (`4`).
    BlockDevice,
    /// Directory (`5`).
    Directory,
    /// FIFO (`6`).
    Fifo,
    /// Contiguous file (`7`).
    Contiguous,
    /// PAX extended header for the next entry (`x`).
    PaxLocal,
    /// PAX global extended header (`g`).
    PaxGlobal,
    /// GNU long name for the next entry (`L`).
    GnuLongName,
    /// GNU long link name for the next entry (`K`).
    GnuLongLink,
    /// Anything else (GNU sparse `S`, multi-volume `M`, ...), with its flag.
    Other(u8),
}

impl EntryType {
    /// The type a flag byte names.
    pub fn from_flag(flag: u8) -> Self {
        match flag {
            b'0' | 0 => EntryType::Regular,
            b'1' => EntryType::Hardlink,
            b'2' => EntryType::Symlink,
            b'3' => EntryType::CharDevice,
            b'4' => EntryType::BlockDevice,
            b'5' => EntryType::Directory,
            b'6' => EntryType::Fifo,
            b'7' => EntryType::Contiguous,
            b'x' => EntryType::PaxLocal,
            b'g' => EntryType::PaxGlobal,
            b'L' => EntryType::GnuLongName,
            b'K' => EntryType::GnuLongLink,
            other => EntryType::Other(other),
        }
    }

    /// An extension header: it describes the entry after it.
    pub fn is_extension(self) -> bool {
        matches!(
            self,
            EntryType::PaxLocal
                | EntryType::PaxGlobal
                | EntryType::GnuLongName
                | EntryType::GnuLongLink
        )
    }
}

/// One header block that passed the checksum, magic, name and size rules.
///
/// Mode, owner and mtime are parsed on demand ([`Header::mode`], ...): a
/// PAX record may stand in for them, and the container reader has no use
/// for them.
#[derive(Clone)]
pub struct Header {
    block: [u8; BLOCK],
    /// The dialect.
    pub format: Format,
    /// The raw type flag byte.
    pub typeflag: u8,
    /// What the type flag says.
    pub entry_type: EntryType,
    /// The name, with the ustar prefix joined in POSIX headers.
    pub name: Vec<u8>,
    /// The link name field (empty when none).
    pub linkname: Vec<u8>,
    /// The size field: bytes of data after the header.
    pub size: u64,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("format", &self.format)
            .field("entry_type", &self.entry_type)
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("linkname", &String::from_utf8_lossy(&self.linkname))
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Header {
    /// Parses one block: `Ok(None)` for an all-zero block, else the header
    /// if its checksum, magic, name fields and size are well formed, checked
    /// in that order.
    pub fn parse(block: &[u8; BLOCK]) -> Result<Option<Header>, HeaderError> {
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        verify_checksum(block)?;
        let format = match (&block[MAGIC], &block[VERSION]) {
            (b"ustar\0", b"00") => Format::Ustar,
            (b"ustar ", b" \0") => Format::Gnu,
            _ => return Err(HeaderError::Magic),
        };
        let mut name = name_field(&block[NAME], NameField::Name)?.to_vec();
        if format == Format::Ustar {
            let prefix = name_field(&block[PREFIX], NameField::Prefix)?;
            if !prefix.is_empty() {
                name = [prefix, b"/", &name].concat();
            }
        }
        let linkname = name_field(&block[LINKNAME], NameField::Linkname)?.to_vec();
        let size = numeric(block, SIZE, "size")?;
        let typeflag = block[TYPEFLAG];
        Ok(Some(Header {
            block: *block,
            format,
            typeflag,
            entry_type: EntryType::from_flag(typeflag),
            name,
            linkname,
            size,
        }))
    }

    /// The mode field (all its bits; the caller masks).
    pub fn mode(&self) -> Result<u64, HeaderError> {
        numeric(&self.block, MODE, "mode")
    }

    /// The uid field.
    pub fn uid(&self) -> Result<u64, HeaderError> {
        numeric(&self.block, UID, "uid")
    }

    /// The gid field.
    pub fn gid(&self) -> Result<u64, HeaderError> {
        numeric(&self.block, GID, "gid")
    }

    /// The mtime field, seconds since the epoch (negative times are refused:
    /// they need base-256's sign, which [`number`] refuses).
    pub fn mtime(&self) -> Result<u64, HeaderError> {
        numeric(&self.block, MTIME, "mtime")
    }
}

fn numeric(
    block: &[u8; BLOCK],
    range: std::ops::Range<usize>,
    field: &'static str,
) -> Result<u64, HeaderError> {
    number(&block[range]).map_err(|problem| HeaderError::Number { field, problem })
}

/// How a PAX key is treated (see [`Pax`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaxKey {
    /// Parsed into a field of [`Pax`]: `path`, `linkpath`, `size`, `uid`,
    /// `gid`, `mtime`, and `hdrcharset` (which must say UTF-8).
    Interpreted,
    /// Read but not applied: times other than mtime, owner names, comments,
    /// extended attributes, file flags, the source's device and inode
    /// numbers. None of them can move a path or change a size.
    Inert,
    /// Any other key (`GNU.sparse.*`, ...): the reader decides.
    Unknown,
}

impl PaxKey {
    /// The class of `key`.
    pub fn of(key: &str) -> PaxKey {
        match key {
            "path" | "linkpath" | "size" | "uid" | "gid" | "mtime" | "hdrcharset" => {
                PaxKey::Interpreted
            }
            "atime"
            | "ctime"
            | "uname"
            | "gname"
            | "comment"
            | "LIBARCHIVE.creationtime"
            | "SCHILY.dev"
            | "SCHILY.ino"
            | "SCHILY.nlink"
            | "SCHILY.fflags" => PaxKey::Inert,
            k if k.starts_with("SCHILY.xattr.") || k.starts_with("LIBARCHIVE.xattr.") => {
                PaxKey::Inert
            }
            _ => PaxKey::Unknown,
        }
    }
}

/// What one PAX extended header's records say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pax {
    /// `path`, as given.
    pub path: Option<Vec<u8>>,
    /// `linkpath`, as given.
    pub linkpath: Option<Vec<u8>>,
    /// `size`.
    pub size: Option<u64>,
    /// `uid`.
    pub uid: Option<u32>,
    /// `gid`.
    pub gid: Option<u32>,
    /// `mtime`, whole seconds (a fraction is dropped, toward zero).
    pub mtime: Option<i64>,
    /// Every key, in the order given.
    pub keys: Vec<String>,
    /// The [`PaxKey::Unknown`] keys, in the order given.
    pub unknown: Vec<String>,
}

impl Pax {
    /// Parses the data of a PAX header (`x` or `g`) by the rules in the
    /// crate doc.
    pub fn parse(data: &[u8]) -> Result<Pax, PaxError> {
        let mut pax = Pax::default();
        for record in Records(data) {
            let (key, value) = record?;
            if pax.keys.iter().any(|k| k == key) {
                return Err(PaxError::DuplicateKey);
            }
            pax.keys.push(key.to_string());
            match key {
                "path" => pax.path = Some(value.to_vec()),
                "linkpath" => pax.linkpath = Some(value.to_vec()),
                "size" => pax.size = Some(decimal(value).ok_or(PaxError::BadNumber)?),
                "uid" => pax.uid = Some(decimal_u32(value)?),
                "gid" => pax.gid = Some(decimal_u32(value)?),
                "mtime" => pax.mtime = Some(seconds(value).ok_or(PaxError::BadNumber)?),
                "hdrcharset" if value != PAX_UTF8_CHARSET => return Err(PaxError::Charset),
                k if PaxKey::of(k) == PaxKey::Unknown => pax.unknown.push(k.to_string()),
                _ => {}
            }
        }
        Ok(pax)
    }
}

/// The records of PAX data, as `(key, value)`, checked for form.
struct Records<'a>(&'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = Result<(&'a str, &'a [u8]), PaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = record(self.0);
        match item {
            Ok((len, key, value)) => {
                self.0 = &self.0[len..];
                Some(Ok((key, value)))
            }
            Err(e) => {
                self.0 = &[];
                Some(Err(e))
            }
        }
    }
}

/// The first record of `data`: its whole length, key and value.
fn record(data: &[u8]) -> Result<(usize, &str, &[u8]), PaxError> {
    let sp = data
        .iter()
        .take(MAX_PAX_LENGTH_DIGITS + 1)
        .position(|&b| b == b' ')
        .ok_or(PaxError::LengthMissing)?;
    let len = usize::try_from(decimal(&data[..sp]).ok_or(PaxError::LengthNotANumber)?)
        .map_err(|_| PaxError::LengthOutOfRange)?;
    // At least the prefix, the space, a '=' and the newline.
    if len < sp + 3 || len > data.len() {
        return Err(PaxError::LengthOutOfRange);
    }
    let Some((&b'\n', body)) = data[sp + 1..len].split_last() else {
        return Err(PaxError::NoNewline);
    };
    let eq = body
        .iter()
        .position(|&b| b == b'=')
        .ok_or(PaxError::NoEquals)?;
    let key = std::str::from_utf8(&body[..eq]).map_err(|_| PaxError::KeyNotUtf8)?;
    if key.is_empty() {
        return Err(PaxError::EmptyKey);
    }
    Ok((len, key, &body[eq + 1..]))
}

/// Decimal digits only (at least one), as `u64`.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn decimal_u32(v: &[u8]) -> Result<u32, PaxError> {
    decimal(v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(PaxError::BadNumber)
}

/// PAX seconds: `-`?, digits, then optionally `.` and digits (dropped).
fn seconds(v: &[u8]) -> Option<i64> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], Some(&v[dot + 1..])),
        None => (v, None),
    };
    if let Some(frac) = frac {
        decimal(frac)?;
    }
    let (negative, digits) = match int.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, int),
    };
    let n = i64::try_from(decimal(digits)?).ok()?;
    Some(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POSIX ustar header with a correct checksum.
    fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        h[MODE][..7].copy_from_slice(b"0000644");
        h[UID][..7].copy_from_slice(b"0001750");
        h[GID][..7].copy_from_slice(b"0001750");
        h[SIZE][..11].copy_from_slice(format!("{size:011o}").as_bytes());
        h[MTIME][..11].copy_from_slice(b"14500000000");
        h[TYPEFLAG] = typeflag;
        h[MAGIC].copy_from_slice(b"ustar\0");
        h[VERSION].copy_from_slice(b"00");
        fix(&mut h);
        h
    }

    fn fix(h: &mut [u8; BLOCK]) {
        let sum = checksum(h);
        h[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn parse(h: &[u8; BLOCK]) -> Result<Header, HeaderError> {
        Header::parse(h).map(|o| o.expect("not a zero block"))
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3;
            let mut len = body + 1;
            while len.to_string().len() + body != len {
                len = len.to_string().len() + body;
            }
            out.extend_from_slice(format!("{len} {k}=").as_bytes());
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn a_good_header_parses_and_a_zero_block_is_the_end() {
        let h = parse(&header(b"etc/motd", b'0', 5)).expect("valid");
        assert_eq!(h.name, b"etc/motd");
        assert_eq!(
            (h.size, h.entry_type, h.format),
            (5, EntryType::Regular, Format::Ustar)
        );
        assert_eq!(h.mode(), Ok(0o644));
        assert_eq!(
            (h.uid(), h.gid(), h.mtime()),
            (Ok(1000), Ok(1000), Ok(0o14500000000))
        );
        assert!(Header::parse(&[0u8; BLOCK]).expect("zero").is_none());
    }

    #[test]
    fn checksum_rule() {
        let good = header(b"f", b'0', 0);
        // One byte changed.
        let mut bad = good;
        bad[0] = b'g';
        assert_eq!(parse(&bad).err(), Some(HeaderError::Checksum));
        // The field unreadable, or base-256.
        let mut bad = good;
        bad[CHKSUM].copy_from_slice(b"0x1234\0 ");
        assert_eq!(parse(&bad).err(), Some(HeaderError::Checksum));
        let mut bad = good;
        bad[CHKSUM].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&bad).err(), Some(HeaderError::Checksum));
        // The signed sum, as historic writers stored it, for a name with
        // bytes above 0x7f.
        let mut signed = header("é".as_bytes(), b'0', 0);
        let sum = signed_checksum(&signed);
        assert_ne!(u64::try_from(sum).ok(), Some(checksum(&signed)));
        signed[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert!(parse(&signed).is_ok());
        // Digits filling the field, space-terminated, leading spaces: fine.
        let mut spaced = good;
        let sum = checksum(&spaced);
        spaced[CHKSUM].copy_from_slice(format!(" {sum:06o} ").as_bytes());
        assert!(parse(&spaced).is_ok());
    }

    #[test]
    fn magic_rule() {
        let mut gnu = header(b"f", b'0', 0);
        gnu[MAGIC].copy_from_slice(b"ustar ");
        gnu[VERSION].copy_from_slice(b" \0");
        gnu[PREFIX][..3].copy_from_slice(b"xyz");
        fix(&mut gnu);
        let h = parse(&gnu).expect("GNU");
        // GNU headers keep other fields in the prefix's place.
        assert_eq!((h.format, &h.name[..]), (Format::Gnu, &b"f"[..]));
        for (magic, version) in [
            (b"ustar\0", b" \0"),
            (b"ustaR\0", b"00"),
            (b"\0\0\0\0\0\0", b"\0\0"),
        ] {
            let mut h = header(b"f", b'0', 0);
            h[MAGIC].copy_from_slice(magic);
            h[VERSION].copy_from_slice(version);
            fix(&mut h);
            assert_eq!(parse(&h).err(), Some(HeaderError::Magic));
        }
        let mut joined = header(b"name", b'0', 0);
        joined[PREFIX][..3].copy_from_slice(b"dir");
        fix(&mut joined);
        assert_eq!(parse(&joined).expect("ustar").name, b"dir/name");
    }

    #[test]
    fn hidden_bytes_after_a_nul_are_refused_in_every_name_field() {
        for (range, field) in [
            (NAME, NameField::Name),
            (PREFIX, NameField::Prefix),
            (LINKNAME, NameField::Linkname),
        ] {
            let mut h = header(b"a", b'0', 0);
            h[range.start] = b'a';
            h[range.start + 2] = b'x';
            fix(&mut h);
            assert_eq!(parse(&h).err(), Some(HeaderError::HiddenBytes(field)));
        }
        // A name filling its field has no NUL, and is whole.
        let h = parse(&header(&[b'n'; 100], b'0', 0)).expect("full name");
        assert_eq!(h.name.len(), 100);
        assert_eq!(long_name(b"etc/a\0\0\0"), Ok(&b"etc/a"[..]));
        assert_eq!(long_name(b"etc/a"), Ok(&b"etc/a"[..]));
        assert_eq!(
            long_name(b"etc/a\0/../../x\0"),
            Err(HeaderError::HiddenBytes(NameField::LongName))
        );
        assert_eq!(long_name(b"\0\0"), Err(HeaderError::EmptyLongName));
        assert_eq!(long_name(b""), Err(HeaderError::EmptyLongName));
    }

    #[test]
    fn octal_numbers() {
        assert_eq!(number(b"0000644\0"), Ok(0o644));
        assert_eq!(number(b"  644 \0"), Ok(0o644));
        assert_eq!(number(b"644\0\0 \0"), Ok(0o644));
        assert_eq!(number(b"\0\0\0"), Ok(0));
        assert_eq!(number(b"    "), Ok(0));
        assert_eq!(number(b""), Ok(0));
        // Twelve digits, no terminator: GNU tar's sizes of 8 GiB and more.
        assert_eq!(number(b"100000000000"), Ok(1 << 33));
        assert_eq!(number(b"12a\0"), Err(NumberError::NotOctal));
        assert_eq!(number(b"0009\0"), Err(NumberError::NotOctal));
        assert_eq!(number(b"-12\0"), Err(NumberError::NotOctal));
        // Bytes after the terminator: hidden digits.
        assert_eq!(number(b"12 3\0"), Err(NumberError::NotOctal));
        assert_eq!(number(b"12\0x"), Err(NumberError::NotOctal));
        assert_eq!(number(b"\x0012"), Err(NumberError::NotOctal));
        // 23 digits: above 2^64 - 1.
        assert_eq!(number(b"1777777777777777777777"), Ok(u64::MAX));
        assert_eq!(
            number(b"2000000000000000000000"),
            Err(NumberError::Overflow)
        );
        assert_eq!(number(&[b'7'; 30]), Err(NumberError::Overflow));
    }

    #[test]
    fn base_256_numbers() {
        assert_eq!(number(&[0x80, 0, 0, 1, 0]), Ok(256));
        // The first byte's low six bits belong to the value.
        assert_eq!(number(&[0x81, 0]), Ok(256));
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(number(&f), Ok(u64::MAX));
        f[3] = 1;
        assert_eq!(number(&f), Err(NumberError::Overflow));
        // Negative (GNU's two's complement, -1 and -2^63).
        assert_eq!(number(&[0xff; 12]), Err(NumberError::Negative));
        assert_eq!(number(&[0xc0, 0, 0, 0]), Err(NumberError::Negative));
        // A huge header size in base-256 is reported as the size field.
        let mut h = header(b"f", b'0', 0);
        h[SIZE].fill(0);
        h[SIZE][0] = 0xbf;
        h[SIZE][1..].fill(0xff);
        fix(&mut h);
        assert_eq!(
            parse(&h).err(),
            Some(HeaderError::Number {
                field: "size",
                problem: NumberError::Overflow
            })
        );
    }

    #[test]
    fn lazy_fields_report_their_name() {
        let mut h = header(b"f", b'0', 0);
        h[MTIME].fill(0xff);
        fix(&mut h);
        let h = parse(&h).expect("mtime is parsed on demand");
        assert_eq!(
            h.mtime(),
            Err(HeaderError::Number {
                field: "mtime",
                problem: NumberError::Negative
            })
        );
        assert_eq!(h.mode(), Ok(0o644));
    }

    #[test]
    fn entry_types() {
        for (flag, t) in [
            (0, EntryType::Regular),
            (b'0', EntryType::Regular),
            (b'5', EntryType::Directory),
            (b'7', EntryType::Contiguous),
            (b'x', EntryType::PaxLocal),
            (b'K', EntryType::GnuLongLink),
            (b'S', EntryType::Other(b'S')),
        ] {
            assert_eq!(EntryType::from_flag(flag), t);
        }
        assert!(EntryType::PaxGlobal.is_extension());
        assert!(!EntryType::Symlink.is_extension());
    }

    #[test]
    fn pax_records_parse_into_their_fields() {
        let data = pax(&[
            ("path", "etc/crème".as_bytes()),
            ("linkpath", b"a\0b"),
            ("size", b"00012"),
            ("uid", b"4294967295"),
            ("gid", b"0"),
            ("mtime", b"-12.75"),
            ("hdrcharset", PAX_UTF8_CHARSET),
            ("atime", b"anything"),
            ("SCHILY.xattr.user.x", b"\0\xff"),
            ("GNU.sparse.map", b"0,1"),
        ]);
        let p = Pax::parse(&data).expect("valid");
        assert_eq!(p.path.as_deref(), Some("etc/crème".as_bytes()));
        // NULs in values are kept: the caller's name rules refuse them.
        assert_eq!(p.linkpath.as_deref(), Some(&b"a\0b"[..]));
        assert_eq!(
            (p.size, p.uid, p.gid, p.mtime),
            (Some(12), Some(u32::MAX), Some(0), Some(-12))
        );
        assert_eq!(p.keys.len(), 10);
        assert_eq!(p.unknown, ["GNU.sparse.map"]);
        assert_eq!(Pax::parse(b"").expect("empty"), Pax::default());
    }

    #[test]
    fn hostile_pax_records_are_refused() {
        use PaxError as E;
        let cases: Vec<(&[u8], PaxError)> = vec![
            // Length lies: past the data, shorter than its own prefix, zero.
            (b"99 path=x\n", E::LengthOutOfRange),
            (b"3 path=x\n", E::LengthOutOfRange),
            (b"0 =\n", E::LengthOutOfRange),
            (b"18446744073709551616 x=y\n", E::LengthNotANumber),
            // Ends one byte early or late: the newline is not where it says.
            (b"9 path=xy\n", E::NoNewline),
            (b"8 path=x\n", E::NoNewline),
            (b"9 path=x", E::LengthOutOfRange),
            (b"x path=y\n", E::LengthNotANumber),
            (b"+9 path=\n", E::LengthNotANumber),
            (b" 8 path=\n", E::LengthNotANumber),
            (b"path=x\n", E::LengthMissing),
            (b"000000000000000000000009 a=b\n", E::LengthMissing),
            (b"7 path\n", E::NoEquals),
            (b"5 =x\n", E::EmptyKey),
            (b"6 \xff=x\n", E::KeyNotUtf8),
            (b"6 a=1\n6 a=2\n", E::DuplicateKey),
            (b"9 size=x\n", E::BadNumber),
            (b"8 size=\n", E::BadNumber),
            (b"11 size=-1\n", E::BadNumber),
            (b"29 size=99999999999999999999\n", E::BadNumber),
            (b"18 uid=4294967296\n", E::BadNumber),
            (b"13 mtime=1e5\n", E::BadNumber),
            (b"14 mtime=1.5x\n", E::BadNumber),
            (b"12 mtime=1.\n", E::BadNumber),
            (b"21 hdrcharset=BINARY\n", E::Charset),
        ];
        for (data, want) in cases {
            assert_eq!(
                Pax::parse(data),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        // A good record, then a lying one: the header is refused whole.
        assert_eq!(
            Pax::parse(b"11 path=ok\n99 x=y\n"),
            Err(E::LengthOutOfRange)
        );
    }

    #[test]
    fn inert_and_unknown_keys() {
        assert_eq!(PaxKey::of("comment"), PaxKey::Inert);
        assert_eq!(PaxKey::of("SCHILY.xattr.security.selinux"), PaxKey::Inert);
        assert_eq!(PaxKey::of("size"), PaxKey::Interpreted);
        assert_eq!(PaxKey::of("GNU.sparse.size"), PaxKey::Unknown);
        assert_eq!(PaxKey::of("SCHILY.xattr"), PaxKey::Unknown);
    }

    #[test]
    fn padding_rounds_to_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(u64::MAX), 1);
    }
}
