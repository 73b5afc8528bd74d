//! The commit: runs the plans of one boot by renames, logging each step so
//! that a failure midway puts the root back as it was.
//!
//! Every path of a plan is canonical (the plan resolved the root's
//! symlinks inside the root). Every directory is opened through
//! `fsops::open_dir` (beneath the root, no symlinks, no mount crossing)
//! and every rename is `RENAME_NOREPLACE`, so nothing that appeared since
//! the plan is clobbered or followed — a symlink swapped in for a
//! directory included: it makes the step fail, and the undo log restores
//! what was done.
//!
//! Invariant: one undo log for the whole boot. The layers commit in order,
//! each step logged with its layer (whose staging holds what the step moved
//! aside or out); a failing step of any layer undoes every finished step
//! of every layer, last first, so the root is as it was before the first
//! layer's first rename, not merely before the failing layer's.

use std::os::fd::BorrowedFd;

use rustix::fs::{self, Gid, Mode, OFlags, Uid};

use crate::error::ExtractError;
use crate::fsops::{open_dir, rename, resolve_error};
use crate::path::RelPath;
use crate::plan::Op;
use crate::stage::Staging;

/// What a commit changed, by path.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Paths renamed in where the root had nothing (with their subtrees).
    pub installed: Vec<String>,
    /// Files and symlinks of the root replaced.
    pub replaced: Vec<String>,
    /// Paths deleted by whiteouts.
    pub removed: Vec<String>,
    /// Existing directories that took the payload's mode and owner.
    pub updated_dirs: Vec<String>,
}

/// One finished step, with what undoing it needs.
#[derive(Debug)]
enum Done {
    /// The root's `path` was moved to `old/<name>`.
    MovedAside { path: RelPath, name: String },
    /// `tree/<staged>` was moved to the root's `target`.
    Installed { staged: RelPath, target: RelPath },
    /// The root's directory `path` had this mode (and owner, if changed).
    Attrs {
        path: RelPath,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
}

/// One layer to commit: its plan's steps and its staging directory.
#[derive(Debug)]
pub struct Layer<'a> {
    /// The plan's steps.
    pub ops: &'a [Op],
    /// Where its staged tree is, and where what it replaces goes.
    pub staging: &'a mut Staging,
    /// Apply the staged owners to merged directories.
    pub chown: bool,
}

/// A commit that failed in the step of one layer (the root was restored
/// unless the error is [`ExtractError::RestoreFailed`]).
#[derive(Debug)]
pub struct Failed {
    /// Index of the layer whose step failed.
    pub layer: usize,
    /// Why.
    pub error: ExtractError,
}

/// Runs every layer's steps over `root`, in order. On failure every
/// finished step of every layer is undone in reverse; if an undo fails
/// too, every staging directory is kept.
pub fn commit(root: BorrowedFd<'_>, layers: &mut [Layer<'_>]) -> Result<Vec<Changes>, Failed> {
    let mut done: Vec<(usize, Done)> = Vec::new();
    let mut all = Vec::with_capacity(layers.len());
    for i in 0..layers.len() {
        let mut changes = Changes::default();
        let mut log = Vec::new();
        let mut failed = None;
        {
            let l = &mut layers[i];
            for op in l.ops {
                if let Err(cause) = step(op, root, l.staging, l.chown, &mut log, &mut changes) {
                    failed = Some(cause);
                    break;
                }
            }
        }
        done.extend(log.into_iter().map(|d| (i, d)));
        if let Some(cause) = failed {
            let failures = undo(&done, root, layers);
            if failures.is_empty() {
                return Err(Failed {
                    layer: i,
                    error: cause,
                });
            }
            let mut kept = Vec::new();
            for l in layers.iter_mut() {
                l.staging.keep();
                kept.push(l.staging.path().to_path_buf());
            }
            return Err(Failed {
                layer: i,
                error: ExtractError::RestoreFailed {
                    cause: Box::new(cause),
                    failures,
                    staging: kept,
                },
            });
        }
        all.push(changes);
    }
    Ok(all)
}

fn step(
    op: &Op,
    root: BorrowedFd<'_>,
    staging: &mut Staging,
    chown: bool,
    done: &mut Vec<Done>,
    changes: &mut Changes,
) -> Result<(), ExtractError> {
    let move_aside = |path: &RelPath, staging: &mut Staging, done: &mut Vec<Done>| {
        let (parent, name) = path.split_last();
        let dir = open_dir(root, &parent, OFlags::PATH)?;
        let aside = staging.next_old_name();
        rename(dir.as_fd_ref(), name, staging.old(), &aside, path)?;
        done.push(Done::MovedAside {
            path: path.clone(),
            name: aside,
        });
        Ok::<(), ExtractError>(())
    };
    let install = |staged: &RelPath, target: &RelPath, staging: &Staging, done: &mut Vec<Done>| {
        let (from_parent, from_name) = staged.split_last();
        let (to_parent, to_name) = target.split_last();
        let from = open_dir(staging.tree(), &from_parent, OFlags::PATH)?;
        let to = open_dir(root, &to_parent, OFlags::PATH)?;
        rename(from.as_fd_ref(), from_name, to.as_fd_ref(), to_name, target)?;
        done.push(Done::Installed {
            staged: staged.clone(),
            target: target.clone(),
        });
        Ok::<(), ExtractError>(())
    };
    match op {
        Op::Remove(path) => {
            move_aside(path, staging, done)?;
            changes.removed.push(path.shown());
        }
        Op::Replace { staged, target } => {
            move_aside(target, staging, done)?;
            install(staged, target, staging, done)?;
            changes.replaced.push(target.shown());
        }
        Op::Install { staged, target } => {
            install(staged, target, staging, done)?;
            changes.installed.push(target.shown());
        }
        Op::SetAttrs { staged, target } => {
            let path = target;
            let err = |op| move |e| resolve_error(op, path, e);
            let staged = fs::fstat(open_dir(staging.tree(), staged, OFlags::RDONLY)?)
                .map_err(err("stat"))?;
            let target = open_dir(root, path, OFlags::RDONLY)?;
            let old = fs::fstat(&target).map_err(err("stat"))?;
            let (new_mode, old_mode) = (staged.st_mode & 0o7777, old.st_mode & 0o7777);
            let owner_differs = chown && (staged.st_uid, staged.st_gid) != (old.st_uid, old.st_gid);
            if !owner_differs && new_mode == old_mode {
                return Ok(());
            }
            done.push(Done::Attrs {
                path: path.clone(),
                mode: old_mode,
                owner: owner_differs.then_some((old.st_uid, old.st_gid)),
            });
            if owner_differs {
                fs::fchown(
                    &target,
                    Some(Uid::from_raw_unchecked(staged.st_uid)),
                    Some(Gid::from_raw_unchecked(staged.st_gid)),
                )
                .map_err(err("chown"))?;
            }
            fs::fchmod(&target, Mode::from_raw_mode(new_mode)).map_err(err("chmod"))?;
            changes.updated_dirs.push(path.shown());
        }
    }
    Ok(())
}

/// Undoes `done` in reverse; returns what could not be undone.
fn undo(done: &[(usize, Done)], root: BorrowedFd<'_>, layers: &[Layer<'_>]) -> Vec<String> {
    let mut failures = Vec::new();
    for (layer, d) in done.iter().rev() {
        let Some(staging) = layers.get(*layer).map(|l: &Layer<'_>| &*l.staging) else {
            failures.push(format!("no layer {layer}"));
            continue;
        };
        let result = match d {
            Done::Installed { staged, target } => (|| {
                let (from_parent, from_name) = target.split_last();
                let (to_parent, to_name) = staged.split_last();
                let from = open_dir(root, &from_parent, OFlags::PATH)?;
                let to = open_dir(staging.tree(), &to_parent, OFlags::PATH)?;
                rename(from.as_fd_ref(), from_name, to.as_fd_ref(), to_name, target)
            })(),
            Done::MovedAside { path, name: aside } => (|| {
                let (parent, name) = path.split_last();
                let to = open_dir(root, &parent, OFlags::PATH)?;
                rename(staging.old(), aside, to.as_fd_ref(), name, path)
            })(),
            Done::Attrs { path, mode, owner } => (|| {
                let err = |op| move |e| resolve_error(op, path, e);
                let target = open_dir(root, path, OFlags::RDONLY)?;
                if let Some((uid, gid)) = owner {
                    fs::fchown(
                        &target,
                        Some(Uid::from_raw_unchecked(*uid)),
                        Some(Gid::from_raw_unchecked(*gid)),
                    )
                    .map_err(err("chown"))?;
                }
                fs::fchmod(&target, Mode::from_raw_mode(*mode)).map_err(err("chmod"))
            })(),
        };
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    failures
}

/// `OwnedFd` → `BorrowedFd` without naming the trait at each call.
trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl AsFdRef for std::os::fd::OwnedFd {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}
