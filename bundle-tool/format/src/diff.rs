//! What changed between two payload listings: added, removed and changed
//! paths (content sha256, mode, link target, kind, owner).
//!
//! A pure function over two lists of [`Entry`] — it reads no file and
//! decrypts nothing. The CLI builds the listings from a bundle (decrypted
//! and checked by the overlay's rules, which hash every file) or from a
//! directory (packed exactly as `create --from-dir` packs it), so a bundle
//! created from a directory diffs empty against that directory. `diff` and
//! `approve` (the upload against the node's current bundle) both use it.
//!
//! Rules:
//! - Entries are matched by their normalised path. A path listed twice in
//!   one listing (the overlay refuses that, so only a hand-made listing can
//!   do it) keeps its last entry, as a tar extractor would.
//! - Two entries of a path are equal when kind, mode, owner, content hash
//!   (files), link target (symlinks, hardlinks) are equal. Times and sizes
//!   are not compared: the hash covers the content, and `create` sets times.
//! - A whiteout (`.wh.NAME`) is listed as the path it deletes, with kind
//!   [`Kind::Whiteout`]; it is compared like any other entry.
//! - The output is sorted by path, so it is stable for scripts and tests.
//!
//! It does not diff file contents line by line (use `open --into` twice
//! and `diff -r` for that) and does not compare times.

use std::collections::BTreeMap;

use serde::Serialize;

/// What an entry is: the overlay's own kinds, so a listing from
/// `check_archive` is compared as the overlay will apply it.
pub use satchel_overlay::EntryKind as Kind;

/// One path of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Normalised path (`etc/hosts`).
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (as the overlay would apply them).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Bytes of content (files); shown, not compared.
    pub size: u64,
    /// Hex sha256 of a file's content.
    pub sha256: Option<String>,
    /// Symlink target, or a hardlink's target path.
    pub link_target: Option<String>,
}

/// What differs for one path present on both sides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Change {
    /// The kind changed (e.g. file → symlink).
    Kind {
        /// Before.
        from: Kind,
        /// After.
        to: Kind,
    },
    /// The content hash changed.
    Content {
        /// Before (hex sha256).
        from: Option<String>,
        /// After (hex sha256).
        to: Option<String>,
    },
    /// The permission bits changed.
    Mode {
        /// Before.
        from: u32,
        /// After.
        to: u32,
    },
    /// The numeric owner or group changed.
    Owner {
        /// Before (`uid:gid`).
        from: String,
        /// After (`uid:gid`).
        to: String,
    },
    /// The link target changed.
    LinkTarget {
        /// Before.
        from: Option<String>,
        /// After.
        to: Option<String>,
    },
}

/// One changed path and everything that differs about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// The path.
    pub path: String,
    /// The old entry.
    pub old: Entry,
    /// The new entry.
    pub new: Entry,
    /// What differs, in the order kind, content, mode, owner, link target.
    pub changes: Vec<Change>,
}

/// The difference between an old and a new listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Only in the new listing.
    pub added: Vec<Entry>,
    /// Only in the old listing.
    pub removed: Vec<Entry>,
    /// In both, different.
    pub changed: Vec<Changed>,
    /// How many paths are in both and equal.
    pub unchanged: usize,
}

impl Diff {
    /// No path was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Human lines: `+ path`, `- path`, `~ path (what changed)`, sorted by path.
    pub fn lines(&self) -> Vec<String> {
        let mut rows: Vec<(&str, String)> = Vec::new();
        for e in &self.added {
            rows.push((&e.path, format!("+ {}", describe(e))));
        }
        for e in &self.removed {
            rows.push((&e.path, format!("- {}", describe(e))));
        }
        for c in &self.changed {
            let what: Vec<String> = c.changes.iter().map(change_text).collect();
            rows.push((&c.path, format!("~ {} ({})", c.path, what.join(", "))));
        }
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows.into_iter().map(|(_, l)| l).collect()
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Hardlink => "hardlink",
        Kind::Whiteout => "whiteout",
    }
}

fn short_hash(h: &Option<String>) -> String {
    match h {
        Some(h) => h.chars().take(12).collect(),
        None => "-".into(),
    }
}

fn describe(e: &Entry) -> String {
    match e.kind {
        Kind::File => format!(
            "{} (file {:04o}, {} bytes, sha256 {})",
            e.path,
            e.mode,
            e.size,
            short_hash(&e.sha256)
        ),
        Kind::Dir => format!("{}/ (dir {:04o})", e.path, e.mode),
        Kind::Symlink | Kind::Hardlink => format!(
            "{} ({} -> {})",
            e.path,
            kind_name(e.kind),
            e.link_target.as_deref().unwrap_or("")
        ),
        Kind::Whiteout => format!("{} (deleted from the root)", e.path),
    }
}

fn change_text(c: &Change) -> String {
    match c {
        Change::Kind { from, to } => format!("kind {} -> {}", kind_name(*from), kind_name(*to)),
        Change::Content { from, to } => {
            format!("content {} -> {}", short_hash(from), short_hash(to))
        }
        Change::Mode { from, to } => format!("mode {from:04o} -> {to:04o}"),
        Change::Owner { from, to } => format!("owner {from} -> {to}"),
        Change::LinkTarget { from, to } => format!(
            "link {} -> {}",
            from.as_deref().unwrap_or("-"),
            to.as_deref().unwrap_or("-")
        ),
    }
}

/// What differs between two entries of the same path (empty: equal).
pub fn compare(old: &Entry, new: &Entry) -> Vec<Change> {
    let mut out = Vec::new();
    if old.kind != new.kind {
        out.push(Change::Kind {
            from: old.kind,
            to: new.kind,
        });
    }
    if (old.kind == Kind::File || new.kind == Kind::File) && old.sha256 != new.sha256 {
        out.push(Change::Content {
            from: old.sha256.clone(),
            to: new.sha256.clone(),
        });
    }
    if old.mode != new.mode {
        out.push(Change::Mode {
            from: old.mode,
            to: new.mode,
        });
    }
    if (old.uid, old.gid) != (new.uid, new.gid) {
        out.push(Change::Owner {
            from: format!("{}:{}", old.uid, old.gid),
            to: format!("{}:{}", new.uid, new.gid),
        });
    }
    if old.link_target != new.link_target {
        out.push(Change::LinkTarget {
            from: old.link_target.clone(),
            to: new.link_target.clone(),
        });
    }
    out
}

fn by_path(list: &[Entry]) -> BTreeMap<&str, &Entry> {
    // Later entries of the same path win, as in a tar extractor.
    list.iter().map(|e| (e.path.as_str(), e)).collect()
}

/// The difference from `old` to `new` (see the module rules).
pub fn diff(old: &[Entry], new: &[Entry]) -> Diff {
    let old = by_path(old);
    let new = by_path(new);
    let mut d = Diff::default();
    for (path, o) in &old {
        match new.get(path) {
            None => d.removed.push((*o).clone()),
            Some(n) => {
                let changes = compare(o, n);
                if changes.is_empty() {
                    d.unchanged += 1;
                } else {
                    d.changed.push(Changed {
                        path: (*path).to_string(),
                        old: (*o).clone(),
                        new: (*n).clone(),
                        changes,
                    });
                }
            }
        }
    }
    for (path, n) in &new {
        if !old.contains_key(path) {
            d.added.push((*n).clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32, hash: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode,
            uid: 0,
            gid: 0,
            size: 3,
            sha256: Some(hash.into()),
            link_target: None,
        }
    }

    fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            link_target: None,
        }
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            link_target: Some(target.into()),
        }
    }

    fn paths(v: &[Entry]) -> Vec<&str> {
        v.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            old: Vec<Entry>,
            new: Vec<Entry>,
            added: Vec<&'static str>,
            removed: Vec<&'static str>,
            changed: Vec<(&'static str, Vec<Change>)>,
            unchanged: usize,
        }
        let mut owned = file("etc/a", 0o644, "aa");
        owned.uid = 1000;
        let cases = vec![
            Case {
                name: "both empty",
                old: vec![],
                new: vec![],
                added: vec![],
                removed: vec![],
                changed: vec![],
                unchanged: 0,
            },
            Case {
                name: "identical",
                old: vec![
                    dir("etc", 0o755),
                    file("etc/a", 0o644, "aa"),
                    link("etc/l", "a"),
                ],
                new: vec![
                    link("etc/l", "a"),
                    file("etc/a", 0o644, "aa"),
                    dir("etc", 0o755),
                ],
                added: vec![],
                removed: vec![],
                changed: vec![],
                unchanged: 3,
            },
            Case {
                name: "added and removed",
                old: vec![file("etc/old", 0o644, "aa")],
                new: vec![file("etc/new", 0o644, "aa")],
                added: vec!["etc/new"],
                removed: vec!["etc/old"],
                changed: vec![],
                unchanged: 0,
            },
            Case {
                name: "content",
                old: vec![file("etc/a", 0o644, "aa")],
                new: vec![file("etc/a", 0o644, "bb")],
                added: vec![],
                removed: vec![],
                changed: vec![(
                    "etc/a",
                    vec![Change::Content {
                        from: Some("aa".into()),
                        to: Some("bb".into()),
                    }],
                )],
                unchanged: 0,
            },
            Case {
                name: "mode only",
                old: vec![file("etc/a", 0o644, "aa")],
                new: vec![file("etc/a", 0o600, "aa")],
                added: vec![],
                removed: vec![],
                changed: vec![(
                    "etc/a",
                    vec![Change::Mode {
                        from: 0o644,
                        to: 0o600,
                    }],
                )],
                unchanged: 0,
            },
            Case {
                name: "directory mode",
                old: vec![dir("etc", 0o755)],
                new: vec![dir("etc", 0o700)],
                added: vec![],
                removed: vec![],
                changed: vec![(
                    "etc",
                    vec![Change::Mode {
                        from: 0o755,
                        to: 0o700,
                    }],
                )],
                unchanged: 0,
            },
            Case {
                name: "link target",
                old: vec![link("etc/l", "a")],
                new: vec![link("etc/l", "b")],
                added: vec![],
                removed: vec![],
                changed: vec![(
                    "etc/l",
                    vec![Change::LinkTarget {
                        from: Some("a".into()),
                        to: Some("b".into()),
                    }],
                )],
                unchanged: 0,
            },
            Case {
                name: "file becomes symlink",
                old: vec![file("etc/a", 0o644, "aa")],
                new: vec![link("etc/a", "b")],
                added: vec![],
                removed: vec![],
                changed: vec![(
                    "etc/a",
                    vec![
                        Change::Kind {
                            from: Kind::File,
                            to: Kind::Symlink,
                        },
                        Change::Content {
                            from: Some("aa".into()),
                            to: None,
                        },
                        Change::Mode {
                            from: 0o644,
                            to: 0o777,
                        },
                        Change::LinkTarget {
                            from: None,
                            to: Some("b".into()),
                        },
                    ],
                )],
                unchanged: 0,
            },
            Case {
                name: "owner",
                old: vec![file("etc/a", 0o644, "aa")],
                new: vec![owned],
                added: vec![],
                removed: vec![],
                changed: vec![(
                    "etc/a",
                    vec![Change::Owner {
                        from: "0:0".into(),
                        to: "1000:0".into(),
                    }],
                )],
                unchanged: 0,
            },
            Case {
                name: "a duplicate keeps its last entry",
                old: vec![file("etc/a", 0o644, "aa")],
                new: vec![file("etc/a", 0o644, "bb"), file("etc/a", 0o644, "aa")],
                added: vec![],
                removed: vec![],
                changed: vec![],
                unchanged: 1,
            },
            Case {
                name: "whiteout appears",
                old: vec![file("etc/a", 0o644, "aa")],
                new: vec![Entry {
                    kind: Kind::Whiteout,
                    mode: 0,
                    sha256: None,
                    size: 0,
                    ..file("etc/b", 0, "")
                }],
                added: vec!["etc/b"],
                removed: vec!["etc/a"],
                changed: vec![],
                unchanged: 0,
            },
        ];
        for c in cases {
            let d = diff(&c.old, &c.new);
            assert_eq!(paths(&d.added), c.added, "{}: added", c.name);
            assert_eq!(paths(&d.removed), c.removed, "{}: removed", c.name);
            let changed: Vec<(&str, Vec<Change>)> = d
                .changed
                .iter()
                .map(|x| (x.path.as_str(), x.changes.clone()))
                .collect();
            assert_eq!(changed, c.changed, "{}: changed", c.name);
            assert_eq!(d.unchanged, c.unchanged, "{}: unchanged", c.name);
            assert_eq!(
                d.is_empty(),
                c.added.is_empty() && c.removed.is_empty() && c.changed.is_empty()
            );
        }
    }

    #[test]
    fn diff_is_antisymmetric() {
        let a = vec![
            file("x", 0o644, "aa"),
            file("y", 0o644, "bb"),
            link("z", "x"),
        ];
        let b = vec![
            file("x", 0o600, "aa"),
            file("w", 0o644, "cc"),
            link("z", "y"),
        ];
        let ab = diff(&a, &b);
        let ba = diff(&b, &a);
        assert_eq!(paths(&ab.added), paths(&ba.removed));
        assert_eq!(paths(&ab.removed), paths(&ba.added));
        assert_eq!(ab.changed.len(), ba.changed.len());
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn lines_are_sorted_by_path() {
        let old = vec![file("b", 0o644, "aa"), file("c", 0o644, "aa")];
        let new = vec![file("a", 0o644, "aa"), file("c", 0o600, "aa")];
        let lines = diff(&old, &new).lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("+ a "), "{lines:?}");
        assert!(lines[1].starts_with("- b "), "{lines:?}");
        assert_eq!(lines[2], "~ c (mode 0644 -> 0600)");
    }
}
