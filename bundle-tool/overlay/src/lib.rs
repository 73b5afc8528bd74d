//! The safe overlay: lays a payload tar over a root directory, all or nothing.
//!
//! [`apply`] streams a tar into a staging directory, checks every entry as
//! it comes, plans the commit against what the root holds, and renames the
//! staged paths into place. [`Layers`] does the same for the several
//! payloads of one boot (a site's, then a host's over it): each staged and
//! planned over the ones before it, then one commit for all.
//! [`check_archive`] runs the same rules on a stream without touching any
//! disk and lists the entries (for `inspect`, `diff` and `create --from-tar`).
//!
//! # Invariants
//!
//! 1. **Nothing outside the root is ever written, chmod'ed or deleted.**
//!    Every path operation of the commit and of staging opens its directory
//!    with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!    RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` relative to the root's fd
//!    (`fsops`), and acts on a single final name with `*at` calls that do
//!    not follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `renameat2`).
//!    A symlink anywhere on a path the commit uses — planted meanwhile
//!    included — makes the operation fail; it is never followed.
//! 2. **The root's own symlinks are resolved inside the root, by the plan
//!    alone**, as the kernel will after switch-root (`openat2`
//!    `RESOLVE_IN_ROOT`): the link's target is read (`readlinkat`, never
//!    followed) and walked component by component, an absolute target
//!    from the root, `..` at the root staying at the root, at most
//!    [`MAX_SYMLINK_HOPS`] links per path. So `lib/x` with `lib -> usr/lib`
//!    lands in `usr/lib/x`, and a link pointing "outside" (`/etc`,
//!    `../../..`) points at a path of the root. The plan gives the commit
//!    canonical paths — real directories only — so invariant 1 holds for
//!    them unchanged. The last component is never followed (a payload
//!    file, symlink or whiteout named `lib` acts on the link). A payload
//!    directory over a root symlink keeps the link and merges into the
//!    directory it resolves to, without giving it its mode or owner.
//!    Refused: a link resolving to nothing (dangling) or to a file, a loop,
//!    two payload paths landing on one path of the root, a path resolved
//!    through a root link the same payload replaces. A payload is never
//!    resolved through a symlink it makes itself (`rules`); a later payload
//!    of a [`Layers`] resolves through an earlier one's as through the
//!    root's, as it will be once that one committed.
//! 3. **Nothing crosses a mount.** A payload path at or under a mount point
//!    of the root (a mount id other than the root's) is refused; a
//!    whiteout whose target is, or holds, a mount point is refused by the
//!    plan, before anything changes; staging is removed dirfd-relative
//!    without ever entering another mount.
//! 4. **The root is changed only after every payload checked out**: every
//!    header, name, link and limit, the end of the archive, the entry count
//!    and size the manifest promised, and the plan against the root — for
//!    [`Layers`], of every payload staged, each planned over the root as
//!    the payloads before it will leave it. Until then only the staging
//!    directories (inside the root, random names, mode 0700) are written.
//! 5. **All or nothing, across the payloads of a commit.** The plans check
//!    every conflict before the first rename; every rename is
//!    `RENAME_NOREPLACE`; what a step replaces is moved into staging, not
//!    deleted; one undo log covers every payload, so if a step of any
//!    payload fails, the finished steps of all of them are undone in
//!    reverse and the root is as before the commit (paths, kinds, modes,
//!    owners, contents, link targets), the earlier payloads' changes gone
//!    too. Staging is removed on every exit path, except when an undo
//!    fails: then every staging directory is kept (they hold the
//!    originals) and [`ExtractError::RestoreFailed`] names them.
//! 6. **Refuse, never skip.** An unsafe entry refuses the whole payload:
//!    absolute names, `..`, NUL, non-UTF-8, control or invisible Unicode
//!    format characters (bidi controls, zero-width; [`is_format_char`]), over-long
//!    or over-deep names; writes through a symlink of the payload or under
//!    a file; symlink targets climbing above the root (`..` only as a
//!    leading run, counted from the link's directory, or from the root for
//!    an absolute target: `/../x` is refused); hardlinks to anything but an
//!    earlier regular file of the payload; a directory becoming a symlink;
//!    duplicates; devices, FIFOs and other entry types; stacked, mixed,
//!    contradicting or unknown PAX/GNU extensions, a PAX size unequal to
//!    the header's, data on non-files, unsafe names hidden under
//!    extensions; bad checksums; a truncated stream or anything but zero
//!    padding after the end-of-archive blocks; the limits in [`Options`].
//!    Symlink targets are link content: an absolute one is kept as it is
//!    (the node reads it from its root after switch-root), and no link of
//!    the payload is ever followed while writing, so no target can make
//!    the overlay write anywhere.
//! 7. **Permissions**: setuid, setgid, sticky and world-writable bits are
//!    dropped unless [`Options::allow_special_bits`]. Ownership is numeric
//!    only (names in the archive are ignored) and follows [`Ownership`].
//!    The root directory's own mode and owner are never changed.
//! 8. **Whiteouts** (`dir/.wh.NAME`, OCI style) delete `dir/NAME` of the
//!    root — never an entry of the same payload — with `dir` resolved as in
//!    invariant 2 and `NAME` not followed; deleting a missing path (or one
//!    under a missing, dangling or non-directory parent) is fine; opaque
//!    whiteouts are refused.
//!
//! Conflicts with the root, decided by the plan before anything changes
//! (at the canonical path): a file or symlink replaces a file or symlink;
//! a directory merges into a directory (taking the payload's mode and,
//! with [`Ownership::Archive`], its owner, when the payload lists it) or
//! into the directory a root symlink resolves to (keeping the link, not
//! taking the mode); anything else — a file or symlink over a directory,
//! a directory over a file — is refused. Delete first with a whiteout to
//! change a type (`.wh.lib` then `lib/` makes `lib` a real directory).
//!
//! It does not apply extended attributes, ACLs, device numbers or
//! directory times, does not decrypt or decompress (the caller streams the
//! plain tar), and does not survive power loss midway through a commit (a
//! diskless root is RAM). "Untouched" means paths, kinds, modes, owners,
//! contents and link targets: the root directory's own times do change, as
//! staging is created in it.
//!
//! Needs Linux ≥ 5.6 (`openat2`; ≥ 5.8 for mount ids, without which a
//! mount is told by its device only: a bind mount of the root's own
//! filesystem is then not seen, and the files of an overlayfs root over
//! layers on other filesystems look like mounts) and a root filesystem with
//! `renameat2(RENAME_NOREPLACE)` (tmpfs, ext4, xfs, btrfs, overlayfs).
//!
//! # Layout
//! - `path`: pure name, link-target and whiteout rules ([`RelPath`]).
//! - `tar`: a strict streaming tar reader (ustar, PAX, GNU long names): the
//!   overlay's policy over `satchel-tar`, the header parser it shares with
//!   the bundle container's reader.
//! - `rules`: the archive-wide rules, entry by entry (pure).
//! - `plan`: the commit plan against a view of the root (pure), which
//!   resolves payload paths through the root's symlinks into canonical ones.
//! - `fsops`: `openat2`-based primitives, the only code that opens a
//!   multi-component path (never through a symlink or a mount); everything
//!   else acts on one name under an fd.
//! - `stage`: a staging directory. `commit`: the renames of every layer,
//!   with one undo log.
//! - `error`: [`ExtractError`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod commit;
mod error;
mod fsops;
mod path;
mod plan;
mod rules;
mod stage;
mod tar;

pub use commit::Changes;
pub use error::ExtractError;
pub use path::{is_format_char, RelPath, MAX_NAME_LEN, WHITEOUT_PREFIX};
pub use rules::SPECIAL_BITS;
pub use stage::STAGING_PREFIX;
pub use tar::{MAX_META_SIZE, MAX_TRAILING_PADDING};

/// Default most entries (files, directories, links, whiteouts) in a payload.
pub const MAX_ENTRIES: u64 = 100_000;
/// Default most bytes of file data in a payload (8 GiB).
pub const MAX_TOTAL_BYTES: u64 = 8 << 30;
/// Default largest single file (4 GiB).
pub const MAX_FILE_SIZE: u64 = 4 << 30;
/// Default longest entry name or link target, in bytes (`PATH_MAX` - 1).
pub const MAX_PATH_LEN: usize = 4095;
/// Default most components in an entry name.
pub const MAX_PATH_DEPTH: usize = 64;
/// Default most bytes of all the paths a payload makes, implied parent
/// directories included (64 MiB): bounds the overlay's memory, since a
/// 4 KiB name can imply 64 parents.
pub const MAX_NAME_BYTES: u64 = 64 << 20;

/// Most symlinks of the root followed to resolve one payload path inside
/// the root (the kernel's own limit, `MAXSYMLINKS`): a loop is refused.
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// Who owns what the overlay writes. Ownership is always numeric: user
/// and group names in the archive are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ownership {
    /// [`Ownership::Archive`] when running as root, else [`Ownership::Caller`].
    #[default]
    Auto,
    /// The archive's numeric uid/gid (needs root, or only the caller's ids).
    Archive,
    /// Everything belongs to the caller; the archive's ids are not applied.
    Caller,
}

/// What the overlay accepts. Every limit has a named default above.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most entries, and most paths the payload makes (implied parent
    /// directories and whiteouts included); default [`MAX_ENTRIES`].
    pub max_entries: u64,
    /// Most bytes of file data in total; default [`MAX_TOTAL_BYTES`].
    pub max_total_bytes: u64,
    /// Largest single file; default [`MAX_FILE_SIZE`].
    pub max_file_size: u64,
    /// Longest name or link target in bytes; default [`MAX_PATH_LEN`].
    pub max_path_len: usize,
    /// Most components in a name; default [`MAX_PATH_DEPTH`].
    pub max_path_depth: usize,
    /// Most bytes of all paths together; default [`MAX_NAME_BYTES`].
    pub max_name_bytes: u64,
    /// Keep setuid/setgid/sticky and world-writable bits (default: dropped).
    pub allow_special_bits: bool,
    /// Who owns the written files; default [`Ownership::Auto`].
    pub ownership: Ownership,
    /// The entry count the manifest promises (every listed entry counts,
    /// whiteouts and a `./` entry included; PAX/GNU extension headers do not).
    pub expected_entries: Option<u64>,
    /// The tar stream's exact length in bytes the manifest promises
    /// (end-of-archive blocks and padding included); the stream is cut off
    /// past it.
    pub expected_size: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_entries: MAX_ENTRIES,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_file_size: MAX_FILE_SIZE,
            max_path_len: MAX_PATH_LEN,
            max_path_depth: MAX_PATH_DEPTH,
            max_name_bytes: MAX_NAME_BYTES,
            allow_special_bits: false,
            ownership: Ownership::Auto,
            expected_entries: None,
            expected_size: None,
        }
    }
}

impl Options {
    /// Whether the archive's owners are applied for this process.
    pub fn applies_owners(&self) -> bool {
        match self.ownership {
            Ownership::Archive => true,
            Ownership::Caller => false,
            Ownership::Auto => rustix::process::geteuid().is_root(),
        }
    }
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier file of the payload.
    Hardlink,
    /// A deletion of a path of the root.
    Whiteout,
}

/// One entry as listed by [`check_archive`] and [`apply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveEntry {
    /// Normalised path (`a/b`; `.` for the root directory itself). For a
    /// whiteout, the path it deletes.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits after the special-bits policy (0o777 for symlinks,
    /// 0 for whiteouts).
    pub mode: u32,
    /// Numeric owner in the archive.
    pub uid: u32,
    /// Numeric group in the archive.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Bytes of data (files only).
    pub size: u64,
    /// Symlink target as stored, or the hardlink's target path.
    pub link_target: Option<String>,
    /// Hex sha256 of a file's content ([`check_archive`] only).
    pub sha256: Option<String>,
}

/// Every entry of a payload that passed every rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// The entries, in archive order.
    pub entries: Vec<ArchiveEntry>,
    /// Bytes of file data.
    pub file_bytes: u64,
    /// Length of the tar stream.
    pub tar_bytes: u64,
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The payload's entries (without content hashes).
    pub summary: ArchiveSummary,
    /// What changed in the root.
    pub changes: Changes,
}

/// A `Write` that hashes.
struct HashSink(Sha256);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks a payload tar against every rule without touching any disk, and
/// lists its entries (with the sha256 of each file).
pub fn check_archive<R: Read>(tar: R, opts: &Options) -> Result<ArchiveSummary, ExtractError> {
    let tar = BufReader::with_capacity(READ_BUFFER, tar);
    let mut reader = tar::TarReader::new(tar, opts.expected_size);
    let mut checker = rules::Checker::new(opts);
    let mut entries = Vec::new();
    while let Some(raw) = reader.next_entry()? {
        let mut checked = checker.check(&raw)?;
        if checked.entry.kind == EntryKind::File {
            let mut sink = HashSink(Sha256::new());
            reader.copy_data(&mut sink)?;
            checked.entry.sha256 = Some(hex::encode(sink.0.finalize()));
        }
        entries.push(checked.entry);
    }
    checker.finish(reader.position())?;
    Ok(ArchiveSummary {
        entries,
        file_bytes: checker.file_bytes(),
        tar_bytes: reader.position(),
    })
}

/// Bytes read ahead from a plain reader given to [`apply`] or
/// [`check_archive`].
pub const READ_BUFFER: usize = 64 * 1024;

/// Lays a payload tar over `root`, all or nothing (see the module
/// invariants). `root` must be an existing directory; paths inside it are
/// never followed through symlinks, but `root` itself may be one.
pub fn apply<R: Read>(tar: R, root: &Path, opts: &Options) -> Result<Applied, ExtractError> {
    apply_buffered(BufReader::with_capacity(READ_BUFFER, tar), root, opts)
}

/// [`apply`] from a reader that buffers already (a pipe from the
/// decrypting thread): file data goes from its buffer to the files, with
/// no copy in between. One payload is a boot of one layer.
pub fn apply_buffered<R: BufRead>(
    tar: R,
    root: &Path,
    opts: &Options,
) -> Result<Applied, ExtractError> {
    let mut layers = Layers::open(root)?;
    layers.stage(tar, opts)?;
    match layers.commit() {
        Ok(mut applied) => applied.pop().ok_or_else(|| {
            ExtractError::io("commit", ".", io::Error::other("no layer was committed"))
        }),
        Err(f) => Err(f.error),
    }
}

/// One staged payload of a [`Layers`].
#[derive(Debug)]
struct Layer {
    staging: stage::Staging,
    planned: plan::Planned,
    chown: bool,
    summary: ArchiveSummary,
}

/// The payloads of one boot, laid over one root together: all or nothing
/// across them (invariant 5 over the whole boot).
///
/// [`Layers::stage`] streams a payload into its own staging directory,
/// checks every entry, and plans its commit against the root as the
/// payloads staged before it will leave it — so each payload is checked
/// in the order it will be applied, and a later payload over an earlier
/// one gives the same root as applying them one after the other. The root
/// is not changed by staging. [`Layers::commit`] then runs every plan, in
/// order, with one undo log: if any step of any payload fails, every
/// finished step of every payload is undone and the root is as it was
/// before. Dropping a `Layers` without committing removes every staging
/// directory and changes nothing else.
#[derive(Debug)]
pub struct Layers {
    root_fd: std::os::fd::OwnedFd,
    root: std::path::PathBuf,
    layers: Vec<Layer>,
}

/// A [`Layers::commit`] that failed: which payload's step failed, and why.
/// Unless [`ExtractError::RestoreFailed`], the root is as it was before the
/// commit, the earlier payloads' changes undone too.
#[derive(Debug, thiserror::Error)]
#[error("payload {layer} of the commit: {error}")]
pub struct CommitError {
    /// Index of the payload (in staging order) whose step failed.
    pub layer: usize,
    /// Why.
    #[source]
    pub error: ExtractError,
}

impl Layers {
    /// Starts a boot over `root`, an existing directory (paths inside it
    /// are never followed through symlinks, but `root` itself may be one).
    pub fn open(root: &Path) -> Result<Self, ExtractError> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| ExtractError::RootNotDirectory {
            path: root.to_path_buf(),
        })?;
        Ok(Layers {
            root_fd,
            root: root.to_path_buf(),
            layers: Vec::new(),
        })
    }

    /// How many payloads are staged.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether no payload is staged.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Stages the payload `tar` over the ones staged before it: every entry
    /// checked and written to a staging directory, the end of the archive
    /// and `opts`' counts checked, the commit planned. A refused payload is
    /// not kept (its staging is removed); the ones before it stay staged.
    pub fn stage<R: BufRead>(&mut self, tar: R, opts: &Options) -> Result<(), ExtractError> {
        let chown = opts.applies_owners();
        let mut staging = stage::Staging::create(self.root_fd.as_fd(), &self.root, chown)?;

        let mut reader = tar::TarReader::new(tar, opts.expected_size);
        let mut checker = rules::Checker::new(opts);
        let mut checked = Vec::new();
        while let Some(raw) = reader.next_entry()? {
            let c = checker.check(&raw)?;
            staging.write(&c, &mut reader)?;
            checked.push(c);
        }
        checker.finish(reader.position())?;
        staging.finish_dirs()?;

        let nodes = plan::nodes(checked.iter().filter_map(|c| {
            let node = match c.entry.kind {
                EntryKind::Dir => plan::Node::Dir { explicit: true },
                EntryKind::File | EntryKind::Hardlink => plan::Node::File,
                EntryKind::Symlink => plan::Node::Symlink,
                EntryKind::Whiteout => return None,
            };
            Some((&c.path, node))
        }));
        let links = checked
            .iter()
            .filter(|c| c.entry.kind == EntryKind::Symlink)
            .filter_map(|c| Some((c.path.clone(), c.entry.link_target.clone()?)))
            .collect();
        let below: Vec<&plan::Planned> = self.layers.iter().map(|l| &l.planned).collect();
        let view = plan::Layered {
            root: &fsops::Probe::new(self.root_fd.as_fd())?,
            layers: &below,
        };
        let planned = plan::plan(&nodes, &links, checker.whiteouts(), &view)?;
        self.layers.push(Layer {
            staging,
            planned,
            chown,
            summary: ArchiveSummary {
                entries: checked.into_iter().map(|c| c.entry).collect(),
                file_bytes: checker.file_bytes(),
                tar_bytes: reader.position(),
            },
        });
        Ok(())
    }

    /// Commits every staged payload, in order, all or nothing; returns what
    /// each one did. Every staging directory is removed on return, except
    /// when a restore failed (see [`ExtractError::RestoreFailed`]).
    pub fn commit(mut self) -> Result<Vec<Applied>, CommitError> {
        let mut steps: Vec<commit::Layer<'_>> = self
            .layers
            .iter_mut()
            .map(|l| commit::Layer {
                ops: &l.planned.ops,
                staging: &mut l.staging,
                chown: l.chown,
            })
            .collect();
        let changes =
            commit::commit(self.root_fd.as_fd(), &mut steps).map_err(|f| CommitError {
                layer: f.layer,
                error: f.error,
            })?;
        drop(steps);
        Ok(self
            .layers
            .into_iter()
            .zip(changes)
            .map(|(l, changes)| Applied {
                summary: l.summary,
                changes,
            })
            .collect())
    }
}
