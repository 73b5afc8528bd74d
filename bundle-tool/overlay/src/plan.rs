//! The commit plan: what each staged path does to the root, decided before
//! anything in the root changes.
//!
//! [`plan`] is pure given a [`RootView`] (what the root has at a path,
//! never following a symlink; the target of one of the root's symlinks;
//! whether a mount point is at or under a path). It checks every conflict
//! first and returns either the whole plan or the first refusal.
//!
//! **Resolution inside the root.** The root's own symlinks are resolved
//! as the kernel will after switch-root with `openat2(RESOLVE_IN_ROOT)`,
//! and the plan's operations name *canonical* paths: real directories
//! only, no symlink anywhere, so the commit can use the strict
//! no-symlink, no-mount-crossing opens (`fsops`) on them. A symlink
//! swapped in after the plan makes the commit fail and undo; it is never
//! followed.
//! - Each payload path is resolved parent by parent (parents sort first,
//!   so each parent's result is reused). Where the parent is a symlink of
//!   the root, its target is read and walked from the link's directory:
//!   an absolute target starts again at the root, `..` at the root stays
//!   at the root, every component is looked up the same way, at most
//!   [`crate::MAX_SYMLINK_HOPS`] symlinks are followed per resolution
//!   ([`ExtractError::SymlinkLoop`]), and a mount point on the way is
//!   refused ([`ExtractError::CrossesMount`]). So `lib/x` with
//!   `lib -> usr/lib` lands in `usr/lib/x`, and a link pointing "outside"
//!   (`/etc`, `../../..`) lands inside the root.
//! - The symlink must resolve to an existing directory (of the root as
//!   the payloads before this one leave it): dangling is refused
//!   ([`ExtractError::DanglingSymlink`]), a file is refused as "under a
//!   file" ([`ExtractError::ParentNotDirectory`]).
//! - The last component is never followed: a payload file or symlink
//!   named `lib` replaces the root's `lib` link. A payload *directory*
//!   over a root symlink keeps the link and merges into the directory it
//!   resolves to, without giving it the payload entry's mode or owner
//!   (they describe the alias, not the directory: list `usr/lib/` to set
//!   them).
//! - Never through a symlink the payload itself makes (refused by
//!   `rules`), nor through a root symlink it replaces or deletes
//!   ([`ExtractError::ResolvedThroughReplaced`]): each payload path means
//!   one path, before and after its commit. An earlier payload's symlinks
//!   are resolved like the root's, as they will be the root's once it
//!   committed, so a boot of several payloads lands where applying them
//!   one after the other would.
//! - Two payload paths landing on the same path of the root are refused
//!   ([`ExtractError::SameInRoot`]), unless both are directories merging
//!   into an existing directory and at most one of them sets its mode.
//!
//! Rules, in order:
//! 1. Whiteouts: the whiteout's parent is resolved as above (a missing or
//!    non-directory parent makes it a no-op), its last component is not
//!    followed (`.wh.lib` deletes the link `lib`). A target that is, or
//!    holds, a mount point is refused ([`ExtractError::WhiteoutOverMount`]);
//!    one that exists is moved aside ([`Op::Remove`]); a missing one is
//!    fine.
//! 2. Staged paths, parents first: where the root has nothing, the staged
//!    path (with its whole subtree) is renamed in ([`Op::Install`]); a
//!    staged directory over a root directory is merged into it (and takes
//!    the entry's mode if the payload lists it: [`Op::SetAttrs`]); a file or
//!    symlink over a root file or symlink replaces it ([`Op::Replace`]).
//!    Refused: a directory over a file, a file over a directory, a symlink
//!    over a directory, a mount point.
//!
//! Several payloads of one boot are planned one after the other, each
//! against the root as the plans before it will leave it ([`Layered`]):
//! what an earlier payload stages is what the root will have there, what it
//! installs or removes hides what the root has beneath, and everything else
//! is the root's. Resolution uses that view too. Nothing is looked up
//! twice and nothing is written: the whole boot is checked before its
//! first rename.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::error::ExtractError;
use crate::path::RelPath;
use crate::MAX_SYMLINK_HOPS;

/// A staged path, as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory; `explicit` when the payload lists it (not only as a parent).
    Dir {
        /// Listed in the payload.
        explicit: bool,
    },
    /// A file or hardlink.
    File,
    /// A symlink.
    Symlink,
}

/// What the root has at a path (the last component is not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// Nothing.
    Missing,
    /// A real directory.
    Dir,
    /// A symlink (to anything).
    Symlink,
    /// A file, device, FIFO or socket.
    Other,
}

/// Looks at the root. Only asked about paths whose parents it said are
/// directories.
pub trait RootView {
    /// What is at `path`; a mount point is refused.
    fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError>;
    /// The target of the symlink at `path` (where [`RootView::kind`] said
    /// [`RootKind::Symlink`]), or `None` when a payload made it: such a
    /// link is never resolved.
    fn read_link(&self, path: &RelPath) -> Result<Option<String>, ExtractError>;
    /// A mount point at `path` or anywhere beneath it, if any.
    fn mount_at_or_under(&self, path: &RelPath) -> Result<Option<String>, ExtractError>;
}

/// One step of the commit. Every path is canonical (a real path of the
/// root, no symlink in it); `staged` is the payload's path in staging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Move the root's path aside (whiteout).
    Remove(RelPath),
    /// Give an existing root directory the staged directory's mode and owner.
    SetAttrs {
        /// In staging.
        staged: RelPath,
        /// In the root.
        target: RelPath,
    },
    /// Move the root's file or symlink aside, then rename the staged one in.
    Replace {
        /// In staging.
        staged: RelPath,
        /// In the root.
        target: RelPath,
    },
    /// Rename the staged path (and its subtree) in where the root has nothing.
    Install {
        /// In staging.
        staged: RelPath,
        /// In the root.
        target: RelPath,
    },
}

/// Builds the staged tree's nodes: every entry plus its implicit parents.
pub fn nodes<'a>(
    entries: impl IntoIterator<Item = (&'a RelPath, Node)>,
) -> BTreeMap<RelPath, Node> {
    let mut out = BTreeMap::new();
    // Entries come grouped by directory: the parents of the previous entry
    // are in already (`or_insert` would change nothing).
    let mut last_parent: Option<&str> = None;
    for (path, node) in entries {
        if path.is_root() {
            continue;
        }
        if last_parent != Some(path.parent_str()) {
            for a in path.ancestors() {
                out.entry(a).or_insert(Node::Dir { explicit: false });
            }
            last_parent = Some(path.parent_str());
        }
        out.insert(path.clone(), node);
    }
    out
}

/// Where a walk through the root ended.
enum Walk {
    /// At an existing directory (canonical).
    Dir(RelPath),
    /// At nothing.
    Missing,
    /// At something that is not a directory.
    NotDir,
}

/// The view a payload is planned against, with its own whiteouts applied,
/// and the root symlinks its resolutions followed.
struct Resolver<'a> {
    view: &'a dyn RootView,
    removed: BTreeSet<RelPath>,
    /// Each root symlink followed, with the first payload path resolved
    /// through it.
    followed: BTreeMap<RelPath, RelPath>,
}

impl Resolver<'_> {
    /// Whether this payload's whiteouts remove `p` (or a parent of it).
    fn gone(&self, p: &RelPath) -> bool {
        !self.removed.is_empty()
            && (self.removed.contains(p) || p.ancestors().iter().any(|a| self.removed.contains(a)))
    }

    fn kind(&self, p: &RelPath) -> Result<RootKind, ExtractError> {
        if self.gone(p) {
            return Ok(RootKind::Missing);
        }
        self.view.kind(p)
    }

    /// Walks the components `pending` from the canonical directory `cur`,
    /// resolving the root's symlinks inside the root (for payload `path`).
    fn walk(
        &mut self,
        mut cur: RelPath,
        mut pending: VecDeque<String>,
        path: &RelPath,
    ) -> Result<Walk, ExtractError> {
        let mut hops = 0u32;
        while let Some(c) = pending.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                // The root's parent is the root.
                ".." => {
                    cur = cur.split_last().0;
                    continue;
                }
                _ => {}
            }
            let next = cur.join(&c);
            match self.kind(&next)? {
                RootKind::Dir => cur = next,
                RootKind::Missing => return Ok(Walk::Missing),
                RootKind::Other => return Ok(Walk::NotDir),
                RootKind::Symlink => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(ExtractError::SymlinkLoop {
                            path: path.shown(),
                            symlink: next.shown(),
                            limit: MAX_SYMLINK_HOPS,
                        });
                    }
                    let Some(target) = self.view.read_link(&next)? else {
                        return Err(ExtractError::ThroughSymlink {
                            path: path.shown(),
                            symlink: next.shown(),
                        });
                    };
                    if target.starts_with('/') {
                        cur = RelPath::root();
                    }
                    for part in target.rsplit('/') {
                        pending.push_front(part.to_string());
                    }
                    self.followed.entry(next).or_insert_with(|| path.clone());
                }
            }
        }
        Ok(Walk::Dir(cur))
    }

    /// The directory the root's symlink `link` resolves to, for `path`.
    fn follow(&mut self, link: &RelPath, path: &RelPath) -> Result<RelPath, ExtractError> {
        let (dir, name) = link.split_last();
        match self.walk(dir, VecDeque::from([name.to_string()]), path)? {
            Walk::Dir(d) => Ok(d),
            Walk::Missing => Err(ExtractError::DanglingSymlink {
                path: path.shown(),
                symlink: link.shown(),
            }),
            Walk::NotDir => Err(ExtractError::ParentNotDirectory {
                path: path.shown(),
                parent: link.shown(),
            }),
        }
    }
}

/// Where a payload directory is in the root.
#[derive(Clone, Debug)]
enum Placed {
    /// In an existing directory (canonical path).
    Existing(RelPath),
    /// Inside a path this payload installs whole: everything beneath is new.
    New(RelPath),
}

/// How a payload path takes its place in the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    /// Merges into an existing directory; `attrs` when it sets its mode.
    Merge { attrs: bool },
    /// Anything else (installed, replaced).
    Whole,
}

/// Plans the commit of `nodes` and `whiteouts` over the root seen by
/// `root`; `links` holds the target of every staged symlink, by payload path.
pub fn plan(
    nodes: &BTreeMap<RelPath, Node>,
    links: &BTreeMap<RelPath, String>,
    whiteouts: &BTreeSet<RelPath>,
    root: &dyn RootView,
) -> Result<Planned, ExtractError> {
    let mut res = Resolver {
        view: root,
        removed: BTreeSet::new(),
        followed: BTreeMap::new(),
    };
    let mut ops = Vec::new();
    // Root paths this payload replaces or deletes, with the entry that does.
    let mut replaced: Vec<(RelPath, RelPath)> = Vec::new();
    for w in whiteouts {
        let (parent, name) = w.split_last();
        let parts = parent.components().map(str::to_string).collect();
        let Walk::Dir(dir) = res.walk(RelPath::root(), parts, w)? else {
            continue;
        };
        let target = dir.join(name);
        if res.gone(&target) {
            continue;
        }
        if let Some(mount) = root.mount_at_or_under(&target)? {
            return Err(ExtractError::WhiteoutOverMount {
                path: target.shown(),
                mount,
            });
        }
        if root.kind(&target)? != RootKind::Missing {
            res.removed.insert(target.clone());
            replaced.push((target.clone(), w.clone()));
            ops.push(Op::Remove(target));
        }
    }

    let mut placed: HashMap<RelPath, Placed> = HashMap::new();
    let mut claimed: HashMap<RelPath, (RelPath, Claim)> = HashMap::new();
    let mut after: BTreeMap<RelPath, Node> = BTreeMap::new();
    let mut after_links: BTreeMap<RelPath, String> = BTreeMap::new();
    let mut installed = BTreeSet::new();
    for (path, node) in nodes {
        let (parent, name) = path.split_last();
        let up = if parent.is_root() {
            Placed::Existing(RelPath::root())
        } else {
            placed.get(&parent).cloned().ok_or_else(|| {
                ExtractError::io(
                    "plan",
                    path.shown(),
                    std::io::Error::other("parent not planned"),
                )
            })?
        };
        let conflict = |reason| ExtractError::TypeConflict {
            path: path.shown(),
            reason,
        };
        let (target, claim, next) = match up {
            Placed::New(dir) => {
                let target = dir.join(name);
                (target.clone(), Claim::Whole, Placed::New(target))
            }
            Placed::Existing(dir) => {
                let target = dir.join(name);
                match (node, res.kind(&target)?) {
                    (_, RootKind::Missing) => {
                        installed.insert(target.clone());
                        ops.push(Op::Install {
                            staged: path.clone(),
                            target: target.clone(),
                        });
                        (target.clone(), Claim::Whole, Placed::New(target))
                    }
                    (Node::Dir { explicit }, RootKind::Dir) => {
                        if *explicit {
                            ops.push(Op::SetAttrs {
                                staged: path.clone(),
                                target: target.clone(),
                            });
                        }
                        let claim = Claim::Merge { attrs: *explicit };
                        (target.clone(), claim, Placed::Existing(target))
                    }
                    (Node::Dir { .. }, RootKind::Symlink) => {
                        let d = res.follow(&target, path)?;
                        let claim = Claim::Merge { attrs: false };
                        (d.clone(), claim, Placed::Existing(d))
                    }
                    (Node::Dir { .. }, RootKind::Other) => {
                        return Err(conflict("a directory cannot replace a file of the root"))
                    }
                    (Node::Symlink, RootKind::Dir) => {
                        return Err(ExtractError::DirReplacedBySymlink { path: path.shown() })
                    }
                    (Node::File, RootKind::Dir) => return Err(conflict(
                        "a file cannot replace a directory of the root (delete it with a whiteout first)",
                    )),
                    (Node::File | Node::Symlink, RootKind::Symlink | RootKind::Other) => {
                        ops.push(Op::Replace {
                            staged: path.clone(),
                            target: target.clone(),
                        });
                        replaced.push((target.clone(), path.clone()));
                        (target.clone(), Claim::Whole, Placed::New(target))
                    }
                }
            }
        };
        let merged = match (claimed.get(&target), claim) {
            (None, _) => claim,
            // Directories merging into one directory; one sets its mode.
            (Some((_, Claim::Merge { attrs: a })), Claim::Merge { attrs: b }) if !(*a && b) => {
                Claim::Merge { attrs: *a || b }
            }
            (Some((other, _)), _) => {
                return Err(ExtractError::SameInRoot {
                    path: path.shown(),
                    other: other.shown(),
                    target: target.shown(),
                })
            }
        };
        let first = claimed
            .get(&target)
            .map_or_else(|| path.clone(), |(p, _)| p.clone());
        claimed.insert(target.clone(), (first, merged));
        if let Some(link) = links.get(path) {
            after_links.insert(target.clone(), link.clone());
        }
        if !target.is_root() {
            after.insert(target, *node);
        }
        if matches!(node, Node::Dir { .. }) {
            placed.insert(path.clone(), next);
        }
    }
    // A root symlink a resolution went through must still be that symlink
    // when the commit is done.
    for (target, by) in replaced {
        if let Some(path) = res.followed.get(&target) {
            return Err(ExtractError::ResolvedThroughReplaced {
                path: path.shown(),
                symlink: target.shown(),
                by: by.shown(),
            });
        }
    }
    Ok(Planned {
        ops,
        after,
        links: after_links,
        installed,
        removed: res.removed,
    })
}

/// A payload's plan with what later payloads need to see past it.
#[derive(Debug, Default)]
pub struct Planned {
    /// The commit's steps, in order.
    pub ops: Vec<Op>,
    /// What the staged tree puts where, by canonical path in the root
    /// (merged directories included).
    after: BTreeMap<RelPath, Node>,
    /// The targets of the symlinks in `after`.
    links: BTreeMap<RelPath, String>,
    /// Canonical paths renamed in whole ([`Op::Install`]).
    installed: BTreeSet<RelPath>,
    /// Canonical paths moved aside ([`Op::Remove`]).
    removed: BTreeSet<RelPath>,
}

impl Planned {
    /// Whether this plan renames in or moves aside `path` or a parent of it.
    fn hides(&self, path: &RelPath) -> bool {
        let hidden = |p: &RelPath| self.installed.contains(p) || self.removed.contains(p);
        hidden(path) || path.ancestors().iter().any(hidden)
    }

    /// What the root has at `path` once this plan ran, or `None` when this
    /// plan leaves it as it was below.
    fn kind_after(&self, path: &RelPath) -> Option<RootKind> {
        if let Some(node) = self.after.get(path) {
            return Some(match node {
                Node::Dir { .. } => RootKind::Dir,
                Node::File => RootKind::Other,
                Node::Symlink => RootKind::Symlink,
            });
        }
        // Not staged, yet at or under a path this plan renamed in whole
        // (all of which is staged) or moved aside: nothing is there.
        if self.hides(path) {
            return Some(RootKind::Missing);
        }
        None
    }
}

/// The root as it will be after `layers` committed, in order, over `root`.
pub struct Layered<'a> {
    /// The root as it is.
    pub root: &'a dyn RootView,
    /// The plans that commit first, earliest first.
    pub layers: &'a [&'a Planned],
}

impl RootView for Layered<'_> {
    fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError> {
        for layer in self.layers.iter().rev() {
            if let Some(kind) = layer.kind_after(path) {
                return Ok(kind);
            }
        }
        self.root.kind(path)
    }

    fn read_link(&self, path: &RelPath) -> Result<Option<String>, ExtractError> {
        // A symlink an earlier payload stages is resolved as the root's
        // will be once that payload committed: one after the other.
        for layer in self.layers.iter().rev() {
            if layer.kind_after(path).is_some() {
                return Ok(layer.links.get(path).cloned());
            }
        }
        self.root.read_link(path)
    }

    fn mount_at_or_under(&self, path: &RelPath) -> Result<Option<String>, ExtractError> {
        // What an earlier payload renamed in holds no mount point.
        if self.layers.iter().any(|l| l.hides(path)) {
            return Ok(None);
        }
        self.root.mount_at_or_under(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{normalise_entry, PathLimits};

    const L: PathLimits = PathLimits {
        max_len: 4095,
        max_depth: 64,
    };

    fn p(s: &str) -> RelPath {
        normalise_entry(s.as_bytes(), L).expect("valid")
    }

    /// A root described by a table; paths under a non-directory or missing
    /// parent must never be asked about. A symlink is `("l", SYM)` with
    /// its target in the links table; mount points are listed apart.
    struct Table {
        kinds: BTreeMap<RelPath, RootKind>,
        links: BTreeMap<RelPath, String>,
        mounts: Vec<RelPath>,
    }

    impl Table {
        fn new(root: &[(&str, RootKind)], links: &[(&str, &str)], mounts: &[&str]) -> Self {
            let mut kinds: BTreeMap<RelPath, RootKind> =
                root.iter().map(|(k, v)| (p(k), *v)).collect();
            for (l, _) in links {
                kinds.insert(p(l), RootKind::Symlink);
            }
            Table {
                kinds,
                links: links.iter().map(|(l, t)| (p(l), t.to_string())).collect(),
                mounts: mounts.iter().map(|m| p(m)).collect(),
            }
        }

        fn check_parents(&self, path: &RelPath) {
            for a in path.ancestors() {
                assert_eq!(
                    self.kinds.get(&a).copied(),
                    Some(RootKind::Dir),
                    "asked about {path:?} under a non-directory"
                );
            }
        }
    }

    impl RootView for Table {
        fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError> {
            self.check_parents(path);
            if self.mounts.contains(path) {
                return Err(ExtractError::CrossesMount { path: path.shown() });
            }
            Ok(self.kinds.get(path).copied().unwrap_or(RootKind::Missing))
        }
        fn read_link(&self, path: &RelPath) -> Result<Option<String>, ExtractError> {
            self.check_parents(path);
            Ok(Some(
                self.links
                    .get(path)
                    .cloned()
                    .expect("a symlink has a target"),
            ))
        }
        fn mount_at_or_under(&self, path: &RelPath) -> Result<Option<String>, ExtractError> {
            self.check_parents(path);
            Ok(self
                .mounts
                .iter()
                .find(|m| m.starts_with(path))
                .map(RelPath::shown))
        }
    }

    /// Staged symlinks all point at `t` in the table tests.
    fn test_links(staged: &[(RelPath, Node)]) -> BTreeMap<RelPath, String> {
        staged
            .iter()
            .filter(|(_, n)| *n == Node::Symlink)
            .map(|(p, _)| (p.clone(), "t".to_string()))
            .collect()
    }

    fn err_name(e: &ExtractError) -> String {
        format!("{e:?}")
            .split([' ', '{'])
            .next()
            .unwrap_or("")
            .to_string()
    }

    fn run(
        root: &[(&str, RootKind)],
        staged: &[(&str, Node)],
        whiteouts: &[&str],
    ) -> Result<Vec<String>, String> {
        run_in(&Table::new(root, &[], &[]), staged, whiteouts)
    }

    fn run_in(
        view: &Table,
        staged: &[(&str, Node)],
        whiteouts: &[&str],
    ) -> Result<Vec<String>, String> {
        let staged: Vec<(RelPath, Node)> = staged.iter().map(|(k, v)| (p(k), *v)).collect();
        let n = nodes(staged.iter().map(|(k, v)| (k, *v)));
        let w = whiteouts.iter().map(|s| p(s)).collect();
        plan(&n, &test_links(&staged), &w, view)
            .map(|planned| planned.ops.iter().map(show).collect())
            .map_err(|e| err_name(&e))
    }

    use Node::{File, Symlink};
    use RootKind::{Dir, Other};
    const D: Node = Node::Dir { explicit: true };
    const SYM: RootKind = RootKind::Symlink;

    #[test]
    fn plan_table() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = |s: &str| Err(s.to_string());
        // Empty root: one rename per top-level path.
        assert_eq!(
            run(&[], &[("a/b/c", File), ("a/d", Symlink)], &[]),
            ok(&["install a"])
        );
        // A sibling sorting inside another subtree ("a-b" between "a" and
        // "a/c") does not hide that subtree's install.
        assert_eq!(
            run(
                &[("x", Dir)],
                &[
                    ("a/c", File),
                    ("a-b", File),
                    ("x/y/z", File),
                    ("x/y-1", File)
                ],
                &[]
            ),
            ok(&["install a", "install a-b", "install x/y", "install x/y-1"])
        );
        // Merge into existing directories, replace files.
        assert_eq!(
            run(
                &[("etc", Dir), ("etc/hosts", Other)],
                &[("etc", D), ("etc/hosts", File), ("etc/new", File)],
                &[]
            ),
            ok(&["attrs etc", "replace etc/hosts", "install etc/new"])
        );
        // Implicit parents do not change the root directory's attributes.
        assert_eq!(
            run(&[("etc", Dir)], &[("etc/x", File)], &[]),
            ok(&["install etc/x"])
        );
        // A symlink replaces a symlink or a file.
        assert_eq!(
            run(&[("l", SYM)], &[("l", Symlink)], &[]),
            ok(&["replace l"])
        );
        // Conflicts.
        assert_eq!(
            run(&[("etc", Other)], &[("etc/x", File)], &[]),
            err("TypeConflict")
        );
        assert_eq!(run(&[("d", Dir)], &[("d", File)], &[]), err("TypeConflict"));
        assert_eq!(
            run(&[("d", Dir)], &[("d", Symlink)], &[]),
            err("DirReplacedBySymlink")
        );
        // Whiteouts: delete first, then install in the freed place.
        assert_eq!(
            run(&[("d", Dir), ("d/x", Other)], &[("d", File)], &["d"]),
            ok(&["remove d", "install d"])
        );
        assert_eq!(
            run(&[("d", Dir)], &[("d", Symlink)], &["d"]),
            ok(&["remove d", "install d"])
        );
        // Missing or non-directory parents make a whiteout a no-op.
        assert_eq!(run(&[], &[], &["a/b"]), ok(&[]));
        assert_eq!(run(&[("a", Other)], &[], &["a/b"]), ok(&[]));
        assert_eq!(run(&[("a", Dir)], &[], &["a/b"]), ok(&[]));
        // A whiteout below another one is covered by it.
        assert_eq!(
            run(&[("a", Dir), ("a/b", Other)], &[], &["a", "a/b"]),
            ok(&["remove a"])
        );
        // A whiteout deletes a symlink itself, never what it points at.
        assert_eq!(run(&[("l", SYM)], &[], &["l"]), ok(&["remove l"]));
        // Removing a whole directory makes everything beneath it new.
        assert_eq!(
            run(&[("a", Dir), ("a/b", Dir)], &[("a/b/c", File)], &["a"]),
            ok(&["remove a", "install a"])
        );
    }

    /// A layer of a table test: its staged paths and its whiteouts.
    type TestLayer<'a> = (&'a [(&'a str, Node)], &'a [&'a str]);

    /// Plans `layers` one over the other on `root`; each layer's ops (or
    /// the first refusal's name, after which nothing more is planned).
    fn run_layers(
        root: &[(&str, RootKind)],
        layers: &[TestLayer<'_>],
    ) -> Vec<Result<Vec<String>, String>> {
        run_layers_in(&Table::new(root, &[], &[]), layers)
    }

    fn run_layers_in(view: &Table, layers: &[TestLayer<'_>]) -> Vec<Result<Vec<String>, String>> {
        let mut planned: Vec<Planned> = Vec::new();
        let mut out = Vec::new();
        for (staged, whiteouts) in layers {
            let staged: Vec<(RelPath, Node)> = staged.iter().map(|(k, v)| (p(k), *v)).collect();
            let n = nodes(staged.iter().map(|(k, v)| (k, *v)));
            let w = whiteouts.iter().map(|s| p(s)).collect();
            let below: Vec<&Planned> = planned.iter().collect();
            let layered = Layered {
                root: view,
                layers: &below,
            };
            match plan(&n, &test_links(&staged), &w, &layered) {
                Ok(pl) => {
                    out.push(Ok(pl.ops.iter().map(show).collect()));
                    planned.push(pl);
                }
                Err(e) => {
                    out.push(Err(err_name(&e)));
                    break;
                }
            }
        }
        out
    }

    fn show(o: &Op) -> String {
        let two = |verb: &str, staged: &RelPath, target: &RelPath| {
            if staged == target {
                format!("{verb} {}", target.as_str())
            } else {
                format!("{verb} {} -> {}", staged.as_str(), target.as_str())
            }
        };
        match o {
            Op::Remove(p) => format!("remove {}", p.as_str()),
            Op::SetAttrs { staged, target } => two("attrs", staged, target),
            Op::Replace { staged, target } => two("replace", staged, target),
            Op::Install { staged, target } => two("install", staged, target),
        }
    }

    #[test]
    fn a_later_layer_is_planned_over_the_root_the_earlier_ones_leave() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = |s: &str| Err(s.to_string());
        let etc: &[(&str, RootKind)] = &[("etc", Dir), ("etc/hosts", Other)];
        // What the site installs, the host replaces, merges into or deletes.
        assert_eq!(
            run_layers(
                etc,
                &[
                    (&[("etc/site/a", File), ("etc/motd", File)], &[]),
                    (
                        &[("etc/site/a", File), ("etc/site/b", File), ("etc/site", D)],
                        &["etc/motd"]
                    ),
                ]
            ),
            [
                ok(&["install etc/motd", "install etc/site"]),
                ok(&[
                    "remove etc/motd",
                    "attrs etc/site",
                    "replace etc/site/a",
                    "install etc/site/b"
                ]),
            ]
        );
        // Conflicts with what the site staged are the host's conflicts.
        assert_eq!(
            run_layers(
                etc,
                &[(&[("etc/d/x", File)], &[]), (&[("etc/d", File)], &[])]
            ),
            [ok(&["install etc/d"]), err("TypeConflict")]
        );
        assert_eq!(
            run_layers(etc, &[(&[("etc/d", D)], &[]), (&[("etc/d", Symlink)], &[])]),
            [ok(&["install etc/d"]), err("DirReplacedBySymlink")]
        );
        assert_eq!(
            run_layers(
                etc,
                &[(&[("etc/l", Symlink)], &[]), (&[("etc/l/x", File)], &[])]
            ),
            [ok(&["install etc/l"]), err("DanglingSymlink")]
        );
        assert_eq!(
            run_layers(
                etc,
                &[(&[("etc/f", File)], &[]), (&[("etc/f/x", File)], &[])]
            ),
            [ok(&["install etc/f"]), err("TypeConflict")]
        );
        // What the site removed is gone for the host, and what the site
        // installed whole holds nothing the site did not stage.
        assert_eq!(
            run_layers(
                &[("etc", Dir), ("etc/old", Dir), ("etc/old/x", Other)],
                &[(&[], &["etc/old"]), (&[("etc/old/x", D)], &[])]
            ),
            [ok(&["remove etc/old"]), ok(&["install etc/old"])]
        );
        assert_eq!(
            run_layers(
                &[("etc", Dir), ("etc/old", Dir), ("etc/old/x", Other)],
                &[(&[], &["etc/old"]), (&[], &["etc/old/x"])]
            ),
            [ok(&["remove etc/old"]), ok(&[])]
        );
        // The root's own file under a merged directory is still there.
        assert_eq!(
            run_layers(
                etc,
                &[(&[("etc/new", File)], &[]), (&[("etc/hosts", File)], &[])]
            ),
            [ok(&["install etc/new"]), ok(&["replace etc/hosts"])]
        );
        // Three layers: the last sees both.
        assert_eq!(
            run_layers(
                etc,
                &[
                    (&[("a/x", File)], &[]),
                    (&[], &["a/x"]),
                    (&[("a/x", D), ("a/y", File)], &[])
                ]
            ),
            [
                ok(&["install a"]),
                ok(&["remove a/x"]),
                ok(&["install a/x", "install a/y"])
            ]
        );
    }

    /// A merged-/usr root with a few hostile links.
    fn merged_usr() -> Table {
        Table::new(
            &[
                ("etc", Dir),
                ("etc/hostname", Other),
                ("usr", Dir),
                ("usr/bin", Dir),
                ("usr/lib", Dir),
                ("usr/lib/systemd", Dir),
                ("usr/lib/systemd/system", Dir),
                ("a", Dir),
                ("a/b", Dir),
                ("var", Dir),
                ("var/lib", Dir),
                ("var/lib/scratch", Dir),
            ],
            &[
                ("lib", "usr/lib"),
                ("bin", "usr/bin"),
                ("conf", "/etc"),
                ("up", "../../../etc"),
                ("a/b/deep", "../../../../usr"),
                ("tools", "lib/../bin"),
                ("to-file", "etc/hostname"),
                ("dangling", "nowhere"),
                ("loop1", "loop2"),
                ("loop2", "loop1"),
                ("top", "/"),
                ("via", "lib2"),
                ("lib2", "usr/lib"),
                ("alias", "zlink"),
                ("zlink", "usr/lib"),
            ],
            &["var/lib/scratch"],
        )
    }

    #[test]
    fn root_symlinks_are_resolved_inside_the_root() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = |s: &str| Err(s.to_string());
        let t = merged_usr();
        let run = |staged: &[(&str, Node)], wh: &[&str]| run_in(&t, staged, wh);
        assert_eq!(
            run(&[("lib/systemd/system/x.service", File)], &[]),
            ok(&["install lib/systemd/system/x.service -> usr/lib/systemd/system/x.service"])
        );
        // A directory entry over the link keeps it and sets no mode.
        assert_eq!(
            run(&[("lib", D), ("lib/new/a", File)], &[]),
            ok(&["install lib/new -> usr/lib/new"])
        );
        // The last component is not followed.
        assert_eq!(run(&[("lib", File)], &[]), ok(&["replace lib"]));
        assert_eq!(run(&[("lib", Symlink)], &[]), ok(&["replace lib"]));
        assert_eq!(run(&[], &["lib"]), ok(&["remove lib"]));
        assert_eq!(run(&[], &["lib/systemd"]), ok(&["remove usr/lib/systemd"]));
        // Links pointing "outside" land inside the root.
        assert_eq!(
            run(&[("conf/x", File)], &[]),
            ok(&["install conf/x -> etc/x"])
        );
        assert_eq!(run(&[("up/x", File)], &[]), ok(&["install up/x -> etc/x"]));
        assert_eq!(
            run(&[("a/b/deep/lib/x", File)], &[]),
            ok(&["install a/b/deep/lib/x -> usr/lib/x"])
        );
        assert_eq!(
            run(&[("top/etc/x", File)], &[]),
            ok(&["install top/etc/x -> etc/x"])
        );
        assert_eq!(run(&[("top", D)], &[]), ok(&[]));
        // `..` after a link is the parent of where the link leads.
        assert_eq!(
            run(&[("tools/sh", File)], &[]),
            ok(&["install tools/sh -> usr/bin/sh"])
        );
        assert_eq!(
            run(&[("via/x", File)], &[]),
            ok(&["install via/x -> usr/lib/x"])
        );
        // Refusals.
        assert_eq!(run(&[("to-file/x", File)], &[]), err("ParentNotDirectory"));
        assert_eq!(run(&[("dangling/x", File)], &[]), err("DanglingSymlink"));
        assert_eq!(run(&[("loop1/x", File)], &[]), err("SymlinkLoop"));
        assert_eq!(
            run(&[("lib/x", File), ("usr/lib/x", File)], &[]),
            err("SameInRoot")
        );
        assert_eq!(
            run(&[("lib/n/a", File), ("usr/lib/n/b", File)], &[]),
            err("SameInRoot")
        );
        assert_eq!(
            run(&[("lib/systemd", D), ("usr/lib/systemd", D)], &[]),
            err("SameInRoot")
        );
        assert_eq!(
            run(&[("lib/x", File), ("usr/lib", Symlink)], &[]),
            err("DirReplacedBySymlink")
        );
        // Directories merging into one directory: one sets the mode.
        assert_eq!(
            run(&[("lib/systemd/a", File), ("usr/lib/systemd", D)], &[]),
            ok(&[
                "install lib/systemd/a -> usr/lib/systemd/a",
                "attrs usr/lib/systemd"
            ])
        );
        // A link the same payload replaces or deletes cannot also be
        // resolved through.
        assert_eq!(
            run(&[("via/x", File), ("lib2", Symlink)], &[]),
            err("ResolvedThroughReplaced")
        );
        assert_eq!(
            run(&[], &["alias/x", "zlink"]),
            err("ResolvedThroughReplaced")
        );
        // Deleted first, the link is not resolved at all.
        assert_eq!(run(&[], &["via/x", "lib2"]), ok(&["remove lib2"]));
        // Deleting the link first makes the path a real directory.
        assert_eq!(
            run(&[("lib/x", File)], &["lib"]),
            ok(&["remove lib", "install lib"])
        );
        // ... and a link whose target the payload deletes dangles.
        assert_eq!(
            run(&[("lib/x", File)], &["usr/lib"]),
            err("DanglingSymlink")
        );
        // Whiteouts resolve their parent; missing or dangling is a no-op.
        assert_eq!(run(&[], &["conf/hostname"]), ok(&["remove etc/hostname"]));
        assert_eq!(run(&[], &["dangling/x"]), ok(&[]));
        assert_eq!(run(&[], &["loop1/x"]), err("SymlinkLoop"));
        // Mounts: never removed, never written through.
        assert_eq!(run(&[], &["var/lib"]), err("WhiteoutOverMount"));
        assert_eq!(run(&[], &["var/lib/scratch"]), err("WhiteoutOverMount"));
        assert_eq!(run(&[], &["var"]), err("WhiteoutOverMount"));
        assert_eq!(
            run(&[("var/lib/scratch/x", File)], &[]),
            err("CrossesMount")
        );
    }

    #[test]
    fn resolution_uses_the_root_the_earlier_layers_leave() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = |s: &str| Err(s.to_string());
        // The root's `lib` dangles until the site lays down `usr/lib`.
        let t = Table::new(&[("usr", Dir)], &[("lib", "usr/lib")], &[]);
        assert_eq!(
            run_layers_in(
                &t,
                &[(&[("usr/lib/a", File)], &[]), (&[("lib/b", File)], &[])]
            ),
            [
                ok(&["install usr/lib"]),
                ok(&["install lib/b -> usr/lib/b"])
            ]
        );
        assert_eq!(
            run_layers_in(&t, &[(&[("lib/b", File)], &[])]),
            [err("DanglingSymlink")]
        );
        // The site turns `lib` into a real directory: the host writes there.
        let t = merged_usr();
        assert_eq!(
            run_layers_in(
                &t,
                &[(&[("lib/a", File)], &["lib"]), (&[("lib/b", File)], &[])]
            ),
            [ok(&["remove lib", "install lib"]), ok(&["install lib/b"])]
        );
        // A link the site makes is resolved as the root's will be (the
        // table's staged links point at `t`).
        assert_eq!(
            run_layers_in(&t, &[(&[("lib", Symlink)], &[]), (&[("lib/b", File)], &[])]),
            [ok(&["replace lib"]), err("DanglingSymlink")]
        );
        assert_eq!(
            run_layers_in(
                &t,
                &[
                    (&[("lib", Symlink), ("t/x", File)], &[]),
                    (&[("lib/b", File)], &[])
                ]
            ),
            [
                ok(&["replace lib", "install t"]),
                ok(&["install lib/b -> t/b"])
            ]
        );
        // What the site puts in the resolved directory is the host's conflict.
        assert_eq!(
            run_layers_in(
                &t,
                &[(&[("usr/lib/d/x", File)], &[]), (&[("lib/d", File)], &[])]
            ),
            [ok(&["install usr/lib/d"]), err("TypeConflict")]
        );
        assert_eq!(
            run_layers_in(
                &t,
                &[(&[("lib/f", File)], &[]), (&[("usr/lib/f", File)], &[])]
            ),
            [
                ok(&["install lib/f -> usr/lib/f"]),
                ok(&["replace usr/lib/f"])
            ]
        );
    }

    #[test]
    fn plan_is_ordered_parents_first() {
        let got = run(
            &[("a", Dir), ("a-b", Dir)],
            &[("a-b/x", File), ("a/y", File), ("a/z/w", File)],
            &[],
        )
        .expect("plans");
        assert_eq!(got, ["install a-b/x", "install a/y", "install a/z"]);
    }
}
