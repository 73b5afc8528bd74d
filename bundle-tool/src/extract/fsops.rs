//! The only filesystem primitives the overlay uses: opening a directory
//! beneath a directory fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//! | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, looking at a name without
//! following it, and renaming between directory fds without replacing.
//!
//! Every other module goes through these, so a symlink anywhere on a path
//! (already in the root or planted concurrently) makes the operation fail
//! instead of redirecting it, and no path ever leaves its base directory.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::ExtractError;
use super::path::RelPath;
use super::plan::RootKind;

/// How every path beneath a base is resolved.
pub const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Maps a resolution failure to the attack or the conflict it reveals.
pub fn resolve_error(op: &'static str, path: &RelPath, e: Errno) -> ExtractError {
    match e {
        Errno::LOOP => ExtractError::ThroughSymlink {
            path: path.shown(),
            symlink: "a symlink on the way".to_string(),
        },
        Errno::XDEV => ExtractError::CrossesMount { path: path.shown() },
        Errno::NOTDIR => ExtractError::TypeConflict {
            path: path.shown(),
            reason: "a parent is not a directory",
        },
        e => ExtractError::io(op, path.shown(), e.into()),
    }
}

/// Opens the directory `path` beneath `base` (never through a symlink).
/// `flags` adds e.g. `O_PATH` or `O_RDONLY`.
pub fn open_dir(
    base: BorrowedFd<'_>,
    path: &RelPath,
    flags: OFlags,
) -> Result<OwnedFd, ExtractError> {
    let name = if path.is_root() { "." } else { path.as_str() };
    fs::openat2(
        base,
        name,
        flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
    .map_err(|e| resolve_error("open directory", path, e))
}

/// What is at `path` beneath `base`, without following a final symlink.
pub fn kind_at(base: BorrowedFd<'_>, path: &RelPath) -> Result<RootKind, ExtractError> {
    let (parent, name) = path.split_last();
    let dir = open_dir(base, &parent, OFlags::PATH)?;
    match fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => RootKind::Dir,
            FileType::Symlink => RootKind::Symlink,
            _ => RootKind::Other,
        }),
        Err(Errno::NOENT) => Ok(RootKind::Missing),
        Err(e) => Err(resolve_error("stat", path, e)),
    }
}

/// Renames `from_name` in `from` to `to_name` in `to`, never replacing
/// anything (`RENAME_NOREPLACE`).
pub fn rename(
    from: BorrowedFd<'_>,
    from_name: &str,
    to: BorrowedFd<'_>,
    to_name: &str,
    shown: &RelPath,
) -> Result<(), ExtractError> {
    fs::renameat_with(from, from_name, to, to_name, RenameFlags::NOREPLACE)
        .map_err(|e| resolve_error("rename", shown, e))
}

/// The root looked at through [`kind_at`].
#[derive(Debug)]
pub struct Probe<'a>(pub BorrowedFd<'a>);

impl super::plan::RootView for Probe<'_> {
    fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError> {
        kind_at(self.0.as_fd(), path)
    }
}
