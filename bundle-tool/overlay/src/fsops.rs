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

use crate::error::ExtractError;
use crate::path::RelPath;
use crate::plan::RootKind;

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
        // No O_NOFOLLOW: with O_PATH it would open a final symlink itself;
        // RESOLVE_NO_SYMLINKS already refuses every symlink, the last too.
        flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
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

impl crate::plan::RootView for Probe<'_> {
    fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError> {
        kind_at(self.0.as_fd(), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{normalise_entry, PathLimits};

    fn p(s: &str) -> RelPath {
        let l = PathLimits {
            max_len: 4095,
            max_depth: 64,
        };
        normalise_entry(s.as_bytes(), l).expect("valid")
    }

    #[test]
    fn resolution_never_follows_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("base");
        std::fs::create_dir_all(base.join("real/sub")).expect("mkdir");
        std::os::unix::fs::symlink(tmp.path(), base.join("up")).expect("symlink");
        std::os::unix::fs::symlink("real", base.join("alias")).expect("symlink");
        let fd =
            fs::open(&base, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("open base");
        let fd = fd.as_fd();

        assert!(open_dir(fd, &p("real/sub"), OFlags::PATH).is_ok());
        for through in ["up", "up/base", "alias", "alias/sub"] {
            assert!(
                matches!(
                    open_dir(fd, &p(through), OFlags::PATH),
                    Err(ExtractError::ThroughSymlink { .. })
                ),
                "{through} was followed"
            );
        }
        assert_eq!(kind_at(fd, &p("alias")).expect("lstat"), RootKind::Symlink);
        assert_eq!(kind_at(fd, &p("real")).expect("lstat"), RootKind::Dir);
        assert_eq!(
            kind_at(fd, &p("nothing")).expect("lstat"),
            RootKind::Missing
        );
        assert!(matches!(
            kind_at(fd, &p("alias/sub")),
            Err(ExtractError::ThroughSymlink { .. })
        ));
    }

    #[test]
    fn rename_never_replaces() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("a"), "a").expect("write");
        std::fs::write(tmp.path().join("b"), "b").expect("write");
        let fd =
            fs::open(tmp.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("open");
        let err = rename(fd.as_fd(), "a", fd.as_fd(), "b", &p("b")).expect_err("b exists");
        assert!(matches!(err, ExtractError::Io { .. }));
        assert_eq!(std::fs::read(tmp.path().join("b")).expect("read"), b"b");
        rename(fd.as_fd(), "a", fd.as_fd(), "c", &p("c")).expect("c is free");
    }
}
