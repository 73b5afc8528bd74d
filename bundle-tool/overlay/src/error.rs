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
    /// A stable, machine-readable id of the refusal: the variant's name in
    /// `snake_case` (`absolute_path`, `parent_dir`, `through_symlink`, ...).
    ///
    /// **Stable:** an id is never renamed nor reused for another meaning;
    /// a new variant gets a new id. The expectations of the checked-in test
    /// vectors (`tests/vectors/EXPECTED`) are written in these ids, so that
    /// other implementations and tools can compare their refusals with
    /// this crate's without parsing messages. [`ExtractError::RestoreFailed`]
    /// has its own id, not its cause's.
    pub fn kind(&self) -> &'static str {
        // Written out, not derived from `Debug`: renaming a variant must
        // not change its id.
        match self {
            ExtractError::AbsolutePath { .. } => "absolute_path",
            ExtractError::ParentDir { .. } => "parent_dir",
            ExtractError::NulInName { .. } => "nul_in_name",
            ExtractError::InvalidName { .. } => "invalid_name",
            ExtractError::NameTooLong { .. } => "name_too_long",
            ExtractError::TooDeep { .. } => "too_deep",
            ExtractError::LinkOutside { .. } => "link_outside",
            ExtractError::UnnormalisedLinkTarget { .. } => "unnormalised_link_target",
            ExtractError::InvalidLinkTarget { .. } => "invalid_link_target",
            ExtractError::HardlinkTarget { .. } => "hardlink_target",
            ExtractError::ThroughSymlink { .. } => "through_symlink",
            ExtractError::ParentNotDirectory { .. } => "parent_not_directory",
            ExtractError::DirReplacedBySymlink { .. } => "dir_replaced_by_symlink",
            ExtractError::Duplicate { .. } => "duplicate",
            ExtractError::TypeConflict { .. } => "type_conflict",
            ExtractError::InvalidWhiteout { .. } => "invalid_whiteout",
            ExtractError::Device { .. } => "device",
            ExtractError::Fifo { .. } => "fifo",
            ExtractError::UnsupportedEntryType { .. } => "unsupported_entry_type",
            ExtractError::BadChecksum { .. } => "bad_checksum",
            ExtractError::BadMagic { .. } => "bad_magic",
            ExtractError::BadNumber { .. } => "bad_number",
            ExtractError::HeaderTrick { .. } => "header_trick",
            ExtractError::SizeDesync { .. } => "size_desync",
            ExtractError::UnsupportedPaxKey { .. } => "unsupported_pax_key",
            ExtractError::MalformedPax { .. } => "malformed_pax",
            ExtractError::TrailingGarbage { .. } => "trailing_garbage",
            ExtractError::Truncated { .. } => "truncated",
            ExtractError::TooManyEntries { .. } => "too_many_entries",
            ExtractError::TotalSizeExceeded { .. } => "total_size_exceeded",
            ExtractError::NamesTooLarge { .. } => "names_too_large",
            ExtractError::FileTooLarge { .. } => "file_too_large",
            ExtractError::EntryCountMismatch { .. } => "entry_count_mismatch",
            ExtractError::SizeMismatch { .. } => "size_mismatch",
            ExtractError::SymlinkLoop { .. } => "symlink_loop",
            ExtractError::DanglingSymlink { .. } => "dangling_symlink",
            ExtractError::SameInRoot { .. } => "same_in_root",
            ExtractError::ResolvedThroughReplaced { .. } => "resolved_through_replaced",
            ExtractError::WhiteoutOverMount { .. } => "whiteout_over_mount",
            ExtractError::CrossesMount { .. } => "crosses_mount",
            ExtractError::RootNotDirectory { .. } => "root_not_directory",
            ExtractError::Io { .. } => "io",
            ExtractError::RestoreFailed { .. } => "restore_failed",
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        ExtractError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant. The exhaustive match in `kind` makes a
    /// new variant a compile error there; this list must grow with it
    /// (`every_variant_is_sampled` counts the variants by name).
    fn samples() -> Vec<ExtractError> {
        let p = || "etc/x".to_string();
        vec![
            ExtractError::AbsolutePath { path: p() },
            ExtractError::ParentDir { path: p() },
            ExtractError::NulInName { path: p() },
            ExtractError::InvalidName {
                path: p(),
                reason: "r",
            },
            ExtractError::NameTooLong {
                path: p(),
                limit: 1,
            },
            ExtractError::TooDeep {
                path: p(),
                limit: 1,
            },
            ExtractError::LinkOutside {
                path: p(),
                target: p(),
            },
            ExtractError::UnnormalisedLinkTarget {
                path: p(),
                target: p(),
            },
            ExtractError::InvalidLinkTarget {
                path: p(),
                target: p(),
                reason: "r",
            },
            ExtractError::HardlinkTarget {
                path: p(),
                target: p(),
            },
            ExtractError::ThroughSymlink {
                path: p(),
                symlink: p(),
            },
            ExtractError::ParentNotDirectory {
                path: p(),
                parent: p(),
            },
            ExtractError::DirReplacedBySymlink { path: p() },
            ExtractError::Duplicate { path: p() },
            ExtractError::TypeConflict {
                path: p(),
                reason: "r",
            },
            ExtractError::InvalidWhiteout {
                path: p(),
                reason: "r",
            },
            ExtractError::Device { path: p() },
            ExtractError::Fifo { path: p() },
            ExtractError::UnsupportedEntryType {
                path: p(),
                typeflag: 'S',
            },
            ExtractError::BadChecksum { offset: 0 },
            ExtractError::BadMagic { offset: 0 },
            ExtractError::BadNumber {
                offset: 0,
                field: "size",
            },
            ExtractError::HeaderTrick {
                offset: 0,
                path: p(),
                reason: "r",
            },
            ExtractError::SizeDesync {
                path: p(),
                header: 1,
                pax: 0,
            },
            ExtractError::UnsupportedPaxKey {
                offset: 0,
                key: "k".into(),
            },
            ExtractError::MalformedPax {
                offset: 0,
                reason: "r",
            },
            ExtractError::TrailingGarbage { offset: 0 },
            ExtractError::Truncated { offset: 0 },
            ExtractError::TooManyEntries { limit: 1 },
            ExtractError::TotalSizeExceeded { limit: 1 },
            ExtractError::NamesTooLarge { limit: 1 },
            ExtractError::FileTooLarge {
                path: p(),
                size: 2,
                limit: 1,
            },
            ExtractError::EntryCountMismatch {
                expected: 1,
                actual: 2,
            },
            ExtractError::SizeMismatch {
                expected: 1,
                actual: 2,
            },
            ExtractError::SymlinkLoop {
                path: p(),
                symlink: p(),
                limit: 1,
            },
            ExtractError::DanglingSymlink {
                path: p(),
                symlink: p(),
            },
            ExtractError::SameInRoot {
                path: p(),
                other: p(),
                target: p(),
            },
            ExtractError::ResolvedThroughReplaced {
                path: p(),
                symlink: p(),
                by: p(),
            },
            ExtractError::WhiteoutOverMount {
                path: p(),
                mount: p(),
            },
            ExtractError::CrossesMount { path: p() },
            ExtractError::RootNotDirectory {
                path: PathBuf::from("root"),
            },
            ExtractError::io("open", p(), io::Error::other("e")),
            ExtractError::RestoreFailed {
                cause: Box::new(ExtractError::Truncated { offset: 0 }),
                failures: Vec::new(),
                staging: Vec::new(),
            },
        ]
    }

    #[test]
    fn every_variant_has_a_distinct_snake_case_kind() {
        let mut seen = std::collections::BTreeSet::new();
        for e in samples() {
            let kind = e.kind();
            assert!(
                !kind.is_empty()
                    && kind
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && !kind.starts_with('_')
                    && !kind.ends_with('_')
                    && !kind.contains("__"),
                "{kind:?} is not snake_case"
            );
            assert!(seen.insert(kind), "{kind:?} is used twice");
        }
    }

    #[test]
    fn every_variant_is_sampled() {
        // The variants as the source declares them (four-space indented
        // `Name {` lines of the enum), so a new variant without a sample
        // fails here.
        let source = include_str!("error.rs");
        let declared = source
            .lines()
            .filter(|l| {
                l.strip_prefix("    ")
                    .and_then(|l| l.strip_suffix(" {"))
                    .is_some_and(|n| {
                        n.starts_with(|c: char| c.is_ascii_uppercase())
                            && n.chars().all(|c| c.is_ascii_alphanumeric())
                    })
            })
            .count();
        assert_eq!(samples().len(), declared);
    }

    #[test]
    fn restore_failed_keeps_its_own_kind() {
        let e = ExtractError::RestoreFailed {
            cause: Box::new(ExtractError::Truncated { offset: 0 }),
            failures: Vec::new(),
            staging: Vec::new(),
        };
        assert_eq!(e.kind(), "restore_failed");
    }
}
