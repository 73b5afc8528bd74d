//! The staging directory: where checked entries are written as they stream
//! in, before anything in the root changes.
//!
//! It is created inside the root (so renames stay on one filesystem) with an
//! unguessable name and mode 0700, holds `tree/` (the payload as it will
//! be) and `old/` (what the commit moved aside), and is removed when
//! [`Staging`] is dropped unless [`Staging::keep`] was called (only when a
//! restore failed and `old/` holds the root's originals). Removal is
//! dirfd-relative from the root's fd and never enters another mount
//! (`fsops::remove_tree`): should a mount point end up in `old/` anyway,
//! what is on it stays and the staging directory is kept, with a warning.
//!
//! Entries arrive grouped by directory, so the parent directory of the last
//! entry stays open for the next one (an `O_PATH` fd of a directory this
//! module created in its private tree, opened with the same
//! [`open_dir`] rules). A file is only `chown`ed when the owner it was
//! created with differs from the payload's, and only `chmod`ed when
//! creating it with its mode could not give that mode exactly: a probe
//! file made once per staging measures which permission bits creation
//! keeps (the umask, or a default ACL's mask, both act as a bitwise and).
//!
//! Written files are closed on a helper thread, in batches ([`Closer`]):
//! a close has nothing to report for a file already written and stamped
//! (std ignores its result too), and on a tmpfs root it is a good part of
//! the kernel's work per file. Every file is closed before the
//! directories get their final modes and before the commit.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use rustix::fs::{self, AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::ExtractError;
use crate::fsops::{open_dir, remove_tree, resolve_error};
use crate::path::RelPath;
use crate::rules::Checked;
use crate::tar::TarReader;
use crate::EntryKind;

/// Prefix of the staging directory's name inside the root.
pub const STAGING_PREFIX: &str = ".satchel-staging-";

/// Mode of directories created only as parents of entries.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Final attributes of a staged directory.
#[derive(Clone, Copy, Debug)]
struct DirAttrs {
    mode: u32,
    owner: Option<(u32, u32)>,
}

/// A staging directory inside the root; removed on drop.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    /// The root (a descriptor of its own) and the staging directory's name
    /// in it: what [`Drop`] removes.
    root: OwnedFd,
    name: String,
    tree: OwnedFd,
    old: OwnedFd,
    keep: bool,
    chown: bool,
    created: HashSet<RelPath>,
    dirs: BTreeMap<RelPath, DirAttrs>,
    moved_aside: u64,
    /// The last parent directory opened in the tree, kept for the next entry.
    last_parent: Option<(RelPath, OwnedFd)>,
    /// Who owns a new file in the tree: `(euid, egid)`, or `None` when the
    /// tree is set-group-ID (new files take its group).
    new_owner: Option<(u32, u32)>,
    /// The permission bits a file created in the tree with mode 0o777
    /// keeps (0 if unknown: then every file is `chmod`ed).
    create_keeps: u32,
    closer: Closer,
}

/// Files written in the tree wait in a batch of this many, then are closed
/// on the closing thread.
pub const CLOSE_BATCH: usize = 32;
/// Batches handed to the closing thread and not yet closed, at most: with
/// the batch being filled, at most `CLOSE_BATCH * (CLOSE_QUEUE + 2)` file
/// descriptors are open at once.
pub const CLOSE_QUEUE: usize = 4;

/// Closes written files on a thread of its own (started with the first
/// full batch, so a small payload starts none).
#[derive(Debug, Default)]
struct Closer {
    batch: Vec<OwnedFd>,
    queue: Option<(SyncSender<Vec<OwnedFd>>, JoinHandle<()>)>,
}

impl Closer {
    fn push(&mut self, fd: OwnedFd) {
        self.batch.push(fd);
        if self.batch.len() < CLOSE_BATCH {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(CLOSE_BATCH));
        if self.queue.is_none() {
            let (tx, rx) = sync_channel::<Vec<OwnedFd>>(CLOSE_QUEUE);
            let spawned = std::thread::Builder::new()
                .name("close".into())
                .spawn(move || rx.iter().for_each(drop));
            // Without a thread, files are closed here.
            if let Ok(thread) = spawned {
                self.queue = Some((tx, thread));
            }
        }
        match &self.queue {
            // A send only fails if the thread is gone; the batch is then
            // handed back and closed here.
            Some((tx, _)) => drop(tx.send(batch)),
            None => drop(batch),
        }
    }

    /// Closes every file pushed so far; returns when they are closed.
    fn finish(&mut self) {
        self.batch.clear();
        if let Some((tx, thread)) = self.queue.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn io_err<'a>(op: &'static str, path: &'a RelPath) -> impl Fn(Errno) -> ExtractError + 'a {
    move |e| resolve_error(op, path, e)
}

impl Staging {
    /// Creates `<root>/.satchel-staging-<random>` with `tree/` and `old/`.
    /// `chown`: apply the payload's numeric owners.
    pub fn create(
        root: BorrowedFd<'_>,
        root_path: &Path,
        chown: bool,
    ) -> Result<Self, ExtractError> {
        let name = format!("{STAGING_PREFIX}{:032x}", rand::random::<u128>());
        let shown = RelPath::root().join(&name);
        fs::mkdirat(root, name.as_str(), Mode::from_raw_mode(0o700))
            .map_err(io_err("create staging", &shown))?;
        let open = || -> Result<(OwnedFd, OwnedFd, u32, OwnedFd), ExtractError> {
            let dir = open_dir(root, &shown, OFlags::PATH)?;
            for sub in ["tree", "old"] {
                fs::mkdirat(&dir, sub, Mode::from_raw_mode(0o700))
                    .map_err(io_err("create staging", &shown))?;
            }
            Ok((
                open_dir(dir.as_fd(), &RelPath::root().join("tree"), OFlags::PATH)?,
                open_dir(dir.as_fd(), &RelPath::root().join("old"), OFlags::PATH)?,
                // Beside `tree`, never in it: a probe left behind by a
                // failed unlink is removed with the staging directory.
                create_keeps(dir.as_fd()),
                open_dir(root, &RelPath::root(), OFlags::PATH)?,
            ))
        };
        match open() {
            Ok((tree, old, create_keeps, root)) => Ok(Staging {
                new_owner: new_file_owner(tree.as_fd()),
                create_keeps,
                path: root_path.join(&name),
                root,
                name,
                tree,
                old,
                keep: false,
                chown,
                created: HashSet::new(),
                dirs: BTreeMap::new(),
                moved_aside: 0,
                last_parent: None,
                closer: Closer::default(),
            }),
            Err(e) => {
                if let Ok(n) = std::ffi::CString::new(name) {
                    let _ = remove_tree(root, &n);
                }
                Err(e)
            }
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staged tree.
    pub fn tree(&self) -> BorrowedFd<'_> {
        self.tree.as_fd()
    }

    /// Where moved-aside originals go.
    pub fn old(&self) -> BorrowedFd<'_> {
        self.old.as_fd()
    }

    /// A fresh name in `old/`.
    pub fn next_old_name(&mut self) -> String {
        self.moved_aside += 1;
        self.moved_aside.to_string()
    }

    /// Keeps the directory on drop (it holds originals a failed restore
    /// could not put back).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Creates the missing parents of `path` in the tree and opens its
    /// parent, or takes the one kept from the previous entry when it is the
    /// same ([`Staging::write`] puts it back).
    fn parent(&mut self, path: &RelPath) -> Result<(RelPath, OwnedFd, String), ExtractError> {
        let (parent, name) = path.split_last();
        if let Some((p, fd)) = self.last_parent.take() {
            if p == parent {
                // Kept open from the previous entry: it and its ancestors exist.
                return Ok((parent, fd, name.to_string()));
            }
        }
        for a in path.ancestors() {
            if self.created.contains(&a) {
                continue;
            }
            let (pp, name) = a.split_last();
            let dir = open_dir(self.tree(), &pp, OFlags::PATH)?;
            match fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(resolve_error("create directory", &a, e)),
            }
            self.dirs.entry(a.clone()).or_insert(DirAttrs {
                mode: IMPLICIT_DIR_MODE,
                owner: None,
            });
            self.created.insert(a);
        }
        let fd = open_dir(self.tree(), &parent, OFlags::PATH)?;
        Ok((parent, fd, name.to_string()))
    }

    fn owner(&self, c: &Checked) -> (Option<Uid>, Option<Gid>) {
        if self.chown {
            (
                Some(Uid::from_raw_unchecked(c.entry.uid)),
                Some(Gid::from_raw_unchecked(c.entry.gid)),
            )
        } else {
            (None, None)
        }
    }

    /// Writes one checked entry; file data comes from `tar`.
    pub fn write<R: std::io::BufRead>(
        &mut self,
        c: &Checked,
        tar: &mut TarReader<R>,
    ) -> Result<(), ExtractError> {
        let e = &c.entry;
        if c.path.is_root() || e.kind == EntryKind::Whiteout {
            return Ok(());
        }
        let (uid, gid) = self.owner(c);
        let (parent, dir, name) = self.parent(&c.path)?;
        self.write_in(c, tar, dir.as_fd(), &name, uid, gid)?;
        self.last_parent = Some((parent, dir));
        Ok(())
    }

    /// [`Staging::write`] in the entry's opened parent `dir`.
    fn write_in<R: std::io::BufRead>(
        &mut self,
        c: &Checked,
        tar: &mut TarReader<R>,
        dir: BorrowedFd<'_>,
        name: &str,
        uid: Option<Uid>,
        gid: Option<Gid>,
    ) -> Result<(), ExtractError> {
        let e = &c.entry;
        match e.kind {
            EntryKind::Dir => {
                match fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(err) => return Err(resolve_error("create directory", &c.path, err)),
                }
                self.created.insert(c.path.clone());
                self.dirs.insert(
                    c.path.clone(),
                    DirAttrs {
                        mode: e.mode,
                        owner: self.chown.then_some((e.uid, e.gid)),
                    },
                );
            }
            EntryKind::File => {
                let exact = e.mode & !0o777 == 0 && e.mode & !self.create_keeps == 0;
                let fd = fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(if exact { e.mode } else { 0o600 }),
                )
                .map_err(io_err("create file", &c.path))?;
                let mut file = std::fs::File::from(fd);
                tar.copy_data(&mut file)?;
                file.flush()
                    .map_err(|err| ExtractError::io("write", c.path.shown(), err))?;
                if uid.is_some() && self.new_owner != Some((e.uid, e.gid)) {
                    fs::fchown(&file, uid, gid).map_err(io_err("chown", &c.path))?;
                }
                if !exact {
                    fs::fchmod(&file, Mode::from_raw_mode(e.mode))
                        .map_err(io_err("chmod", &c.path))?;
                }
                let t = Timespec {
                    tv_sec: e.mtime,
                    tv_nsec: 0,
                };
                fs::futimens(
                    &file,
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                )
                .map_err(io_err("set times", &c.path))?;
                self.closer.push(file.into());
            }
            EntryKind::Symlink => {
                let target = e.link_target.as_deref().unwrap_or_default();
                fs::symlinkat(target, dir, name).map_err(io_err("create symlink", &c.path))?;
                if uid.is_some() {
                    fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_err("chown", &c.path))?;
                }
            }
            EntryKind::Hardlink => {
                let Some(target) = &c.hardlink_to else {
                    return Err(ExtractError::HardlinkTarget {
                        path: c.path.shown(),
                        target: String::new(),
                    });
                };
                let (tparent, tname) = target.split_last();
                let tdir = open_dir(self.tree(), &tparent, OFlags::PATH)?;
                fs::linkat(&tdir, tname, dir, name, AtFlags::empty())
                    .map_err(io_err("hardlink", &c.path))?;
            }
            EntryKind::Whiteout => {}
        }
        Ok(())
    }

    /// Closes every written file, then gives every staged directory its
    /// final mode and owner (after all its children are written).
    pub fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        self.closer.finish();
        for (path, attrs) in self.dirs.iter().rev() {
            let fd = open_dir(self.tree(), path, OFlags::RDONLY)?;
            if let Some((uid, gid)) = attrs.owner {
                fs::fchown(
                    &fd,
                    Some(Uid::from_raw_unchecked(uid)),
                    Some(Gid::from_raw_unchecked(gid)),
                )
                .map_err(io_err("chown", path))?;
            }
            fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode)).map_err(io_err("chmod", path))?;
        }
        Ok(())
    }
}

/// Who owns a file newly created in `tree`: the effective user and group,
/// unless `tree` is set-group-ID (inherited from the root's directory), in
/// which case the group is not known in advance and `None` says "always
/// chown".
fn new_file_owner(tree: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let st = fs::fstat(tree).ok()?;
    if st.st_mode & 0o2000 != 0 {
        return None;
    }
    Some((
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    ))
}

/// Name of the probe file [`create_keeps`] makes in the staging directory.
const PROBE: &str = "mode-probe";

/// Which permission bits a file created in `dir` (and so in the tree
/// beside it, which inherits the same default ACL if any) with mode 0o777
/// keeps; 0 (so every file is `chmod`ed) if the probe fails.
fn create_keeps(dir: BorrowedFd<'_>) -> u32 {
    let probe = || -> Result<u32, Errno> {
        let fd = fs::openat(
            dir,
            PROBE,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o777),
        )?;
        let st = fs::fstat(&fd);
        fs::unlinkat(dir, PROBE, AtFlags::empty())?;
        Ok(st?.st_mode & 0o777)
    };
    probe().unwrap_or(0)
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.closer.finish();
        if self.keep {
            return;
        }
        let removed = std::ffi::CString::new(self.name.as_str())
            .map_err(|_| Errno::INVAL)
            .and_then(|n| remove_tree(self.root.as_fd(), &n));
        if let Err(e) = removed {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the staging directory (nothing on another mount is removed)");
        }
    }
}
