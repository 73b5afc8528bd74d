//! The commit plan: what each staged path does to the root, decided before
//! anything in the root changes.
//!
//! [`plan`] is pure given a [`RootView`] (what the root has at a path, never
//! following a symlink). It checks every conflict first and returns either
//! the whole list of operations or the first conflict; nothing else.
//!
//! Rules, in order:
//! 1. Whiteouts: each deleted path that exists is moved aside ([`Op::Remove`]);
//!    a missing path (or one under a missing or non-directory parent) is
//!    fine; a symlink among its parents is refused.
//! 2. Staged paths, parents first: where the root has nothing, the staged
//!    path (with its whole subtree) is renamed in ([`Op::Install`]); a
//!    staged directory over a root directory is merged into it (and takes
//!    the entry's mode if the payload lists it: [`Op::SetAttrs`]); a file or
//!    symlink over a root file or symlink replaces it ([`Op::Replace`]).
//!    Refused: a directory over a file, a file over a directory, a symlink
//!    over a directory, and anything under a symlink of the root.
//!
//! Several payloads of one boot are planned one after the other, each
//! against the root as the plans before it will leave it ([`Layered`]):
//! what an earlier payload stages is what the root will have there, what it
//! installs or removes hides what the root has beneath, and everything else
//! is the root's. Nothing is looked up twice and nothing is written: the
//! whole boot is checked before its first rename. (The view is where
//! resolving the root's own symlinks inside the root will go, too.)

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ExtractError;
use crate::path::RelPath;

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
    /// What is at `path`.
    fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError>;
}

/// One step of the commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Move the root's path aside (whiteout).
    Remove(RelPath),
    /// Give an existing root directory the staged directory's mode and owner.
    SetAttrs(RelPath),
    /// Move the root's file or symlink aside, then rename the staged one in.
    Replace(RelPath),
    /// Rename the staged path (and its subtree) in where the root has nothing.
    Install(RelPath),
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

/// Plans the commit of `nodes` and `whiteouts` over the root seen by `root`.
pub fn plan(
    nodes: &BTreeMap<RelPath, Node>,
    whiteouts: &BTreeSet<RelPath>,
    root: &dyn RootView,
) -> Result<Vec<Op>, ExtractError> {
    let mut ops = Vec::new();
    // Sorted order visits a parent before anything beneath it.
    let mut removed: BTreeSet<RelPath> = BTreeSet::new();
    'whiteouts: for w in whiteouts {
        if w.ancestors().iter().any(|a| removed.contains(a)) {
            continue;
        }
        for a in w.ancestors() {
            match root.kind(&a)? {
                RootKind::Dir => {}
                RootKind::Symlink => {
                    return Err(ExtractError::ThroughSymlink {
                        path: w.shown(),
                        symlink: a.shown(),
                    })
                }
                RootKind::Missing | RootKind::Other => continue 'whiteouts,
            }
        }
        if root.kind(w)? != RootKind::Missing {
            removed.insert(w.clone());
            ops.push(Op::Remove(w.clone()));
        }
    }

    let mut installed: BTreeSet<RelPath> = BTreeSet::new();
    // The last path installed: what follows it in sorted order is mostly
    // its subtree, known skipped without looking up every ancestor.
    let mut last_installed: Option<&RelPath> = None;
    for (path, node) in nodes {
        if last_installed.is_some_and(|l| path.is_under(l)) {
            continue;
        }
        let ancestors = path.ancestors();
        if ancestors.iter().any(|a| installed.contains(a)) {
            continue;
        }
        let gone = removed.contains(path) || ancestors.iter().any(|a| removed.contains(a));
        let kind = if gone {
            RootKind::Missing
        } else {
            root.kind(path)?
        };
        let conflict = |reason| ExtractError::TypeConflict {
            path: path.shown(),
            reason,
        };
        match (node, kind) {
            (_, RootKind::Missing) => {
                installed.insert(path.clone());
                last_installed = Some(path);
                ops.push(Op::Install(path.clone()));
            }
            (Node::Dir { explicit }, RootKind::Dir) => {
                if *explicit {
                    ops.push(Op::SetAttrs(path.clone()));
                }
            }
            (Node::Dir { .. }, RootKind::Symlink) => {
                return Err(ExtractError::ThroughSymlink {
                    path: path.shown(),
                    symlink: path.shown(),
                })
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
                ops.push(Op::Replace(path.clone()));
            }
        }
    }
    Ok(ops)
}

/// A payload's plan with what later payloads need to see past it.
#[derive(Debug, Default)]
pub struct Planned {
    /// The commit's steps, in order.
    pub ops: Vec<Op>,
    /// The staged tree (entries and implied parents).
    pub nodes: BTreeMap<RelPath, Node>,
    /// Paths renamed in whole ([`Op::Install`]).
    installed: BTreeSet<RelPath>,
    /// Paths moved aside ([`Op::Remove`]).
    removed: BTreeSet<RelPath>,
}

impl Planned {
    /// Keeps `ops` with the `nodes` they were planned for.
    pub fn new(ops: Vec<Op>, nodes: BTreeMap<RelPath, Node>) -> Self {
        let mut installed = BTreeSet::new();
        let mut removed = BTreeSet::new();
        for op in &ops {
            match op {
                Op::Install(p) => {
                    installed.insert(p.clone());
                }
                Op::Remove(p) => {
                    removed.insert(p.clone());
                }
                Op::Replace(_) | Op::SetAttrs(_) => {}
            }
        }
        Planned {
            ops,
            nodes,
            installed,
            removed,
        }
    }

    /// What the root has at `path` once this plan ran, or `None` when this
    /// plan leaves it as it was below.
    fn kind_after(&self, path: &RelPath) -> Option<RootKind> {
        if let Some(node) = self.nodes.get(path) {
            return Some(match node {
                Node::Dir { .. } => RootKind::Dir,
                Node::File => RootKind::Other,
                Node::Symlink => RootKind::Symlink,
            });
        }
        // Not staged, yet at or under a path this plan renamed in whole
        // (all of which is staged) or moved aside: nothing is there.
        let hidden = |p: &RelPath| self.installed.contains(p) || self.removed.contains(p);
        if hidden(path) || path.ancestors().iter().any(hidden) {
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
    /// parent must never be asked about.
    struct Table(BTreeMap<RelPath, RootKind>);

    impl RootView for Table {
        fn kind(&self, path: &RelPath) -> Result<RootKind, ExtractError> {
            for a in path.ancestors() {
                assert_eq!(
                    self.0.get(&a).copied(),
                    Some(RootKind::Dir),
                    "asked about {path:?} under a non-directory"
                );
            }
            Ok(self.0.get(path).copied().unwrap_or(RootKind::Missing))
        }
    }

    fn run(
        root: &[(&str, RootKind)],
        staged: &[(&str, Node)],
        whiteouts: &[&str],
    ) -> Result<Vec<String>, String> {
        let view = Table(root.iter().map(|(k, v)| (p(k), *v)).collect());
        let staged: Vec<(RelPath, Node)> = staged.iter().map(|(k, v)| (p(k), *v)).collect();
        let n = nodes(staged.iter().map(|(k, v)| (k, *v)));
        let w = whiteouts.iter().map(|s| p(s)).collect();
        plan(&n, &w, &view)
            .map(|ops| {
                ops.iter()
                    .map(|o| match o {
                        Op::Remove(p) => format!("remove {}", p.as_str()),
                        Op::SetAttrs(p) => format!("attrs {}", p.as_str()),
                        Op::Replace(p) => format!("replace {}", p.as_str()),
                        Op::Install(p) => format!("install {}", p.as_str()),
                    })
                    .collect()
            })
            .map_err(|e| {
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
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
            run(&[("etc", SYM)], &[("etc/x", File)], &[]),
            err("ThroughSymlink")
        );
        assert_eq!(
            run(&[("etc", SYM)], &[("etc", D)], &[]),
            err("ThroughSymlink")
        );
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
        // A whiteout may delete a symlink but never go through one.
        assert_eq!(run(&[("l", SYM)], &[], &["l"]), ok(&["remove l"]));
        assert_eq!(run(&[("l", SYM)], &[], &["l/x"]), err("ThroughSymlink"));
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
        let view = Table(root.iter().map(|(k, v)| (p(k), *v)).collect());
        let mut planned: Vec<Planned> = Vec::new();
        let mut out = Vec::new();
        for (staged, whiteouts) in layers {
            let staged: Vec<(RelPath, Node)> = staged.iter().map(|(k, v)| (p(k), *v)).collect();
            let n = nodes(staged.iter().map(|(k, v)| (k, *v)));
            let w = whiteouts.iter().map(|s| p(s)).collect();
            let below: Vec<&Planned> = planned.iter().collect();
            let layered = Layered {
                root: &view,
                layers: &below,
            };
            match plan(&n, &w, &layered) {
                Ok(ops) => {
                    out.push(Ok(ops.iter().map(show).collect()));
                    planned.push(Planned::new(ops, n));
                }
                Err(e) => {
                    out.push(Err(format!("{e:?}")
                        .split([' ', '{'])
                        .next()
                        .unwrap_or("")
                        .to_string()));
                    break;
                }
            }
        }
        out
    }

    fn show(o: &Op) -> String {
        match o {
            Op::Remove(p) => format!("remove {}", p.as_str()),
            Op::SetAttrs(p) => format!("attrs {}", p.as_str()),
            Op::Replace(p) => format!("replace {}", p.as_str()),
            Op::Install(p) => format!("install {}", p.as_str()),
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
            [ok(&["install etc/l"]), err("ThroughSymlink")]
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
