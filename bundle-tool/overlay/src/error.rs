//! [`ExtractError`]: every way a payload is refused, named after the attack.
//!
//! Paths in errors are the archive's own names, shown lossily as UTF-8 and
//! truncated to [`SHOWN_PATH_MAX`] characters so that a hostile name cannot
//! flood a log; `Debug` quoting escapes control characters.

use std::io;
use std::path::PathBuf;

/// How many characters of an offending path an error keeps.
pub const SHOWN_PATH_MAX: usize = 256;

/// Shows hostile bytes as a bounded, printable string.
pub(crate) fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(SHOWN_PATH_MAX)
        .collect()
}

/// Why a payload was refused or could not be applied.
///
/// Every variant but [`ExtractError::Io`] and [`ExtractError::RestoreFailed`]
/// means "the archive is hostile or malformed": nothing was changed in the
/// root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// An entry name starts with `/`.
    #[error("absolute path {path:?} in payload")]
    AbsolutePath {
        /// The entry name.
        path: String,
    },
    /// An entry name has a `..` component.
    #[error("path {path:?} climbs out with `..`")]
    ParentDir {
        /// The entry name.
        path: String,
    },
    /// An entry name or link target contains a NUL byte.
    #[error("NUL byte in name {path:?}")]
    NulInName {
        /// The entry name.
        path: String,
    },
    /// An entry name is empty, not UTF-8 or holds control characters.
    #[error("invalid name {path:?}: {reason}")]
    InvalidName {
        /// The entry name.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A name, a component or a link target is longer than allowed.
    #[error("name {path:?} is longer than {limit} bytes")]
    NameTooLong {
        /// The entry name.
        path: String,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An entry is nested deeper than allowed.
    #[error("path {path:?} is deeper than {limit} components")]
    TooDeep {
        /// The entry name.
        path: String,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A symlink or hardlink points outside the root.
    #[error("link {path:?} points outside the root: {target:?}")]
    LinkOutside {
        /// The link's name.
        path: String,
        /// Its target.
        target: String,
    },
    /// A symlink target has `..` after a name (`a/../b`), which could climb
    /// out through another symlink.
    #[error("symlink {path:?} target {target:?} has `..` after a name")]
    UnnormalisedLinkTarget {
        /// The link's name.
        path: String,
        /// Its target.
        target: String,
    },
    /// A link target is empty, not UTF-8 or holds control characters.
    #[error("link {path:?} has an invalid target {target:?}: {reason}")]
    InvalidLinkTarget {
        /// The link's name.
        path: String,
        /// Its target.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A hardlink's target is not a regular file earlier in the same payload.
    #[error(
        "hardlink {path:?} must point at an earlier regular file of the payload, not {target:?}"
    )]
    HardlinkTarget {
        /// The link's name.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry would be written through a symlink: one of the payload,
    /// or one that appeared in the root after the plan resolved the root's
    /// own links (the commit never follows a link).
    #[error("{path:?} would be written through the symlink {symlink:?}")]
    ThroughSymlink {
        /// The entry name.
        path: String,
        /// The symlink in the way.
        symlink: String,
    },
    /// An entry's parent is a file: in the payload, or in the root (a
    /// root symlink leading to a file included).
    #[error("{path:?} is under {parent:?}, which is not a directory (nor a symlink to one)")]
    ParentNotDirectory {
        /// The entry name.
        path: String,
        /// The non-directory parent.
        parent: String,
    },
    /// A directory (from the payload or in the root) would become a symlink.
    #[error("directory {path:?} would be replaced by a symlink")]
    DirReplacedBySymlink {
        /// The entry name.
        path: String,
    },
    /// The same path appears twice in the payload.
    #[error("duplicate entry {path:?}")]
    Duplicate {
        /// The entry name.
        path: String,
    },
    /// An entry cannot replace what the root has at its path.
    #[error("{path:?}: {reason}")]
    TypeConflict {
        /// The entry name.
        path: String,
        /// Which conflict.
        reason: &'static str,
    },
    /// A `.wh.` entry is not a plain whiteout.
    #[error("invalid whiteout {path:?}: {reason}")]
    InvalidWhiteout {
        /// The entry name.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A character or block device entry.
    #[error("device node {path:?} in payload")]
    Device {
        /// The entry name.
        path: String,
    },
    /// A FIFO entry.
    #[error("FIFO {path:?} in payload")]
    Fifo {
        /// The entry name.
        path: String,
    },
    /// Any other tar entry type (sparse, multi-volume, contiguous, ...).
    #[error("unsupported tar entry type {typeflag:?} for {path:?}")]
    UnsupportedEntryType {
        /// The entry name.
        path: String,
        /// The header's type flag.
        typeflag: char,
    },
    /// A header block's checksum is wrong.
    #[error("bad tar header checksum at byte {offset}")]
    BadChecksum {
        /// Where the header starts in the tar stream.
        offset: u64,
    },
    /// A header block is not ustar, POSIX or GNU.
    #[error("not a ustar/GNU header at byte {offset}")]
    BadMagic {
        /// Where the header starts in the tar stream.
        offset: u64,
    },
    /// A numeric header field is malformed or out of range.
    #[error("malformed {field} field in the tar header at byte {offset}")]
    BadNumber {
        /// Where the header starts in the tar stream.
        offset: u64,
        /// Which field.
        field: &'static str,
    },
    /// PAX or GNU extension headers disagree with the entry or each other.
    #[error("tar header trick at byte {offset} ({path:?}): {reason}")]
    HeaderTrick {
        /// Where the header starts in the tar stream.
        offset: u64,
        /// The entry name as far as known.
        path: String,
        /// Which trick.
        reason: &'static str,
    },
    /// A PAX `size` record disagrees with the header's size field.
    #[error("size desync for {path:?}: header says {header} bytes, PAX says {pax}")]
    SizeDesync {
        /// The entry name.
        path: String,
        /// The header's size field.
        header: u64,
        /// The PAX `size` record.
        pax: u64,
    },
    /// A PAX record this reader does not know; unknown records are refused,
    /// never ignored.
    #[error("unsupported PAX record {key:?} at byte {offset}")]
    UnsupportedPaxKey {
        /// Where the header starts in the tar stream.
        offset: u64,
        /// The record's key.
        key: String,
    },
    /// A PAX extended header is not well formed.
    #[error("malformed PAX header at byte {offset}: {reason}")]
    MalformedPax {
        /// Where the header starts in the tar stream.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes other than zero padding follow the end-of-archive blocks.
    #[error("trailing garbage after the end of the archive at byte {offset}")]
    TrailingGarbage {
        /// Where the garbage starts.
        offset: u64,
    },
    /// The stream ends before the end-of-archive blocks.
    #[error("truncated tar stream at byte {offset}")]
    Truncated {
        /// Where the stream ended.
        offset: u64,
    },
    /// More entries than [`crate::Options::max_entries`].
    #[error("more than {limit} entries in payload")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// File data totals more than [`crate::Options::max_total_bytes`].
    #[error("payload holds more than {limit} bytes of file data")]
    TotalSizeExceeded {
        /// The limit.
        limit: u64,
    },
    /// The payload's paths together are longer than
    /// [`crate::Options::max_name_bytes`].
    #[error("the payload's paths take more than {limit} bytes")]
    NamesTooLarge {
        /// The limit.
        limit: u64,
    },
    /// One file is larger than [`crate::Options::max_file_size`].
    #[error("file {path:?} is {size} bytes, more than {limit}")]
    FileTooLarge {
        /// The entry name.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The entry count differs from what the manifest promised.
    #[error("payload has {actual} entries, the manifest says {expected}")]
    EntryCountMismatch {
        /// From the manifest.
        expected: u64,
        /// Counted.
        actual: u64,
    },
    /// The tar stream's length differs from what the manifest promised.
    #[error("payload tar is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        /// From the manifest.
        expected: u64,
        /// Counted (at least; counting stops once over).
        actual: u64,
    },
    /// Resolving a path through the root's own symlinks followed more
    /// than [`crate::MAX_SYMLINK_HOPS`] of them (a loop, like `a -> b`,
    /// `b -> a`).
    #[error("{path:?}: resolving the root's symlink {symlink:?} follows more than {limit} symlinks (a loop?); fix the root's links or write to the real directory")]
    SymlinkLoop {
        /// The payload path being resolved.
        path: String,
        /// The symlink of the root where the limit was reached.
        symlink: String,
        /// The limit.
        limit: u32,
    },
    /// A payload path goes through a symlink of the root whose target does
    /// not exist in the root (as the payloads before it leave it).
    #[error("{path:?} goes through the root's symlink {symlink:?}, which points at nothing in the root; create its target first or write to the real directory")]
    DanglingSymlink {
        /// The payload path.
        path: String,
        /// The dangling symlink of the root.
        symlink: String,
    },
    /// Two payload paths are the same path of the root once the root's
    /// symlinks are resolved (`lib/x` and `usr/lib/x` with `lib -> usr/lib`).
    #[error("{path:?} and {other:?} are both {target:?} in the root (through its symlinks); keep one of them")]
    SameInRoot {
        /// The later payload path.
        path: String,
        /// The earlier payload path.
        other: String,
        /// Where both land.
        target: String,
    },
    /// A payload path was resolved through a symlink of the root that the
    /// same payload replaces or deletes: after the commit it would mean
    /// another path.
    #[error("{path:?} goes through the root's symlink {symlink:?}, which {by:?} of the same payload replaces or deletes; write to the real directory or keep the link")]
    ResolvedThroughReplaced {
        /// The payload path resolved through the link.
        path: String,
        /// The root's symlink.
        symlink: String,
        /// The payload entry that replaces it.
        by: String,
    },
    /// A whiteout would remove a mount point, or a directory holding one.
    #[error("whiteout of {path:?} would remove the mount point {mount:?} or what is on it; unmount it first or drop the whiteout")]
    WhiteoutOverMount {
        /// What the whiteout deletes (in the root, symlinks resolved).
        path: String,
        /// The mount point found at or under it.
        mount: String,
    },
    /// A path of the payload is a mount point of the root or beneath one.
    #[error("{path:?} is a mount point of the root or beneath one; the overlay never writes across a mount: leave it out of the payload or unmount it")]
    CrossesMount {
        /// The path.
        path: String,
    },
    /// The root given to [`crate::apply`] is not a directory.
    #[error("root {path:?} is not a directory")]
    RootNotDirectory {
        /// The root.
        path: PathBuf,
    },
    /// A filesystem operation failed; the root was restored.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path (relative to the root, or the staging name).
        path: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The commit failed and putting the root back failed too. The staging
    /// directories are kept: they hold what was moved aside.
    #[error("{cause}; restoring the root failed ({failures:?}); what was moved aside is kept in {staging:?}")]
    RestoreFailed {
        /// Why the commit failed.
        cause: Box<ExtractError>,
        /// Each restore step that failed.
        failures: Vec<String>,
        /// The kept staging directories (one per payload of the commit).
        staging: Vec<PathBuf>,
    },
}

impl ExtractError {
    pub(crate) fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        ExtractError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
