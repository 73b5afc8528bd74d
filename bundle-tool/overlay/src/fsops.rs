//! The only filesystem primitives the overlay uses: opening a directory
//! beneath a directory fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//! | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, looking at a name without
//! following it, and renaming between directory fds without replacing.
//!
//! Every other module goes through these, so a symlink anywhere on a path
//! (already in the root or planted concurrently) makes the operation fail
//! instead of redirecting it, and no path ever leaves its base directory.
//! The root's own symlinks are *read* here ([`read_link_at`]) so that the
//! plan can resolve them inside the root; they are never followed.
//!
//! Mounts: every multi-component path is opened with `RESOLVE_NO_XDEV`,
//! and [`kind_at`] also refuses a final name that is a mount point (a
//! directory or a bind-mounted file: its mount id differs from the
//! root's). [`mount_at_or_under`] finds a mount point anywhere in a tree,
//! and [`remove_tree`] deletes a tree dirfd-relative without ever entering
//! another mount.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, StatxFlags};
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

/// Which mount a file is on: the mount id (Linux ≥ 5.8) and the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountOf {
    mnt_id: Option<u64>,
    dev: (u32, u32),
}

impl MountOf {
    fn of(st: &fs::Statx) -> Self {
        MountOf {
            mnt_id: (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id),
            dev: (st.stx_dev_major, st.stx_dev_minor),
        }
    }

    /// Whether both are on the same mount. The mount id decides: the
    /// device alone would not see a bind mount of the same filesystem, and
    /// overlayfs reports a lower layer's device for files. Only a kernel
    /// without mount ids (< 5.8) falls back to the device.
    fn same(&self, other: &MountOf) -> bool {
        match (self.mnt_id, other.mnt_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.dev == other.dev,
        }
    }
}

/// `statx` of `name` in `dir`, never following it nor triggering an automount.
fn statx_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<fs::Statx, Errno> {
    fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::TYPE | StatxFlags::MNT_ID,
    )
}

/// The mount the directory `fd` is on.
pub fn mount_of(fd: BorrowedFd<'_>) -> Result<MountOf, ExtractError> {
    fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::TYPE | StatxFlags::MNT_ID,
    )
    .map(|st| MountOf::of(&st))
    .map_err(|e| ExtractError::io("stat", ".", e.into()))
}

fn kind_of(st: &fs::Statx) -> RootKind {
    match FileType::from_raw_mode(st.stx_mode.into()) {
        FileType::Directory => RootKind::Dir,
        FileType::Symlink => RootKind::Symlink,
        _ => RootKind::Other,
    }
}

/// What is at `path` beneath `base`, without following a final symlink;
/// a mount point (not on `mount`, the root's) is refused.
pub fn kind_at(
    base: BorrowedFd<'_>,
    path: &RelPath,
    mount: &MountOf,
) -> Result<RootKind, ExtractError> {
    let (parent, name) = path.split_last();
    let dir = open_dir(base, &parent, OFlags::PATH)?;
    match statx_at(dir.as_fd(), &cstr(name, path)?) {
        Ok(st) if !MountOf::of(&st).same(mount) => {
            Err(ExtractError::CrossesMount { path: path.shown() })
        }
        Ok(st) => Ok(kind_of(&st)),
        Err(Errno::NOENT) => Ok(RootKind::Missing),
        Err(e) => Err(resolve_error("stat", path, e)),
    }
}

fn cstr(name: &str, path: &RelPath) -> Result<std::ffi::CString, ExtractError> {
    std::ffi::CString::new(name).map_err(|_| ExtractError::NulInName { path: path.shown() })
}

/// The target of the symlink `path` beneath `base` (read, never followed).
pub fn read_link_at(base: BorrowedFd<'_>, path: &RelPath) -> Result<String, ExtractError> {
    let (parent, name) = path.split_last();
    let dir = open_dir(base, &parent, OFlags::PATH)?;
    let target = fs::readlinkat(&dir, name, Vec::new())
        .map_err(|e| resolve_error("read symlink", path, e))?;
    target
        .into_string()
        .map_err(|_| ExtractError::InvalidLinkTarget {
            path: path.shown(),
            target: String::new(),
            reason: "the root's symlink target is not UTF-8",
        })
}

/// The first mount point found at `path` beneath `base` or anywhere
/// beneath it (shown relative to `base`), or `None`; nothing is followed
/// and no other mount is entered. `mount` is the root's.
pub fn mount_at_or_under(
    base: BorrowedFd<'_>,
    path: &RelPath,
    mount: &MountOf,
) -> Result<Option<String>, ExtractError> {
    let (parent, name) = path.split_last();
    let dir = open_dir(base, &parent, OFlags::PATH)?;
    let name = cstr(name, path)?;
    let st = match statx_at(dir.as_fd(), &name) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(resolve_error("stat", path, e)),
    };
    if !MountOf::of(&st).same(mount) {
        return Ok(Some(path.shown()));
    }
    if kind_of(&st) != RootKind::Dir {
        return Ok(None);
    }
    let fd = open_dir(base, path, OFlags::RDONLY)?;
    mount_in(fd, path.shown(), mount)
        .map_err(|e| ExtractError::io("read directory", path.shown(), e.into()))
}

/// [`mount_at_or_under`] inside the open directory `dir`, shown as `shown`.
/// Recursion is as deep as the tree (one open directory per level).
fn mount_in(dir: OwnedFd, shown: String, mount: &MountOf) -> Result<Option<String>, Errno> {
    let mut subdirs = Vec::new();
    for entry in fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let here = format!("{shown}/{}", name.to_string_lossy());
        let st = match statx_at(dir.as_fd(), name) {
            Ok(st) => st,
            // Gone since it was listed: nothing to look at.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        if !MountOf::of(&st).same(mount) {
            return Ok(Some(here));
        }
        if kind_of(&st) == RootKind::Dir {
            subdirs.push((name.to_owned(), here));
        }
    }
    for (name, here) in subdirs {
        match open_sub(dir.as_fd(), &name, OFlags::RDONLY) {
            Ok(sub) => {
                if let Some(found) = mount_in(sub, here, mount)? {
                    return Ok(Some(found));
                }
            }
            Err(Errno::XDEV) => return Ok(Some(here)),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Opens the subdirectory `name` of `dir` (one component, never a symlink,
/// never another mount).
fn open_sub(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    fs::openat2(
        dir,
        name,
        flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
}

/// Deletes `name` in `dir` and everything beneath it, dirfd-relative,
/// never following a symlink and never entering another mount: a mount
/// point met on the way makes it fail with `EXDEV`, and what is on that
/// mount is left alone. Directories the caller cannot read are made
/// readable by their owner first.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    match fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = match open_sub(dir, name, OFlags::RDONLY) {
        Err(Errno::ACCESS) => {
            // `name` is a directory of ours (staging); only its owner bits change.
            fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            open_sub(dir, name, OFlags::RDONLY)?
        }
        other => other?,
    };
    if fs::fstat(&sub)?.st_mode & 0o700 != 0o700 {
        fs::fchmod(&sub, Mode::from_raw_mode(0o700))?;
    }
    let mut names = Vec::new();
    for entry in fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    for n in names {
        remove_tree(sub.as_fd(), &n)?;
    }
    fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
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

/// The root looked at through [`kind_at`], [`read_link_at`] and
/// [`mount_at_or_under`].
#[derive(Debug)]
pub struct Probe<'a> {
    root: BorrowedFd<'a>,
    mount: MountOf,
}

impl<'a> Probe<'a> {
    /// Looks at the root `root`; a path on another mount than it is refused.
    pub fn new(root: BorrowedFd<'a>) -> Result<Self, ExtractError> {
        Ok(Probe {
            root,
            mount: mount_of(root)?,
        })
    }
}

impl crate::plan::RootView for Probe<'_> {
    fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError> {
        kind_at(self.root, path, &self.mount)
    }
    fn read_link(&self, path: &RelPath) -> Result<Option<String>, ExtractError> {
        read_link_at(self.root, path).map(Some)
    }
    fn mount_at_or_under(&self, path: &RelPath) -> Result<Option<String>, ExtractError> {
        mount_at_or_under(self.root, path, &self.mount)
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
        let m = mount_of(fd).expect("mount");
        assert_eq!(
            kind_at(fd, &p("alias"), &m).expect("lstat"),
            RootKind::Symlink
        );
        assert_eq!(kind_at(fd, &p("real"), &m).expect("lstat"), RootKind::Dir);
        assert_eq!(
            kind_at(fd, &p("nothing"), &m).expect("lstat"),
            RootKind::Missing
        );
        assert_eq!(read_link_at(fd, &p("alias")).expect("readlink"), "real");
        assert!(matches!(
            kind_at(fd, &p("alias/sub"), &m),
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
