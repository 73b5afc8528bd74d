//! The archive-wide rules, applied entry by entry as the stream goes by.
//!
//! [`Checker`] is pure: it sees [`RawEntry`]s in order and remembers what
//! each normalised path already is, so it can refuse duplicates, writes
//! through a symlink or under a file of the payload, a directory turned into
//! a symlink, hardlinks to anything but an earlier file, and the limits. Both
//! `check_archive` and `apply` run every entry through it before anything
//! else looks at the entry.
//!
//! Invariant it relies on: a path once seen as a directory (explicit or
//! implied) stays a directory — the only change allowed to a seen path is
//! implied to explicit directory. So the ancestors of an entry in the same
//! directory as the previous one are known good without a lookup.

use std::collections::{BTreeSet, HashMap};

use crate::error::{shown, ExtractError};
use crate::path::{
    check_symlink_target, normalise_entry, normalise_hardlink_target, whiteout_target, PathLimits,
    RelPath,
};
use crate::tar::{RawEntry, RawKind};
use crate::{ArchiveEntry, EntryKind, Options};

/// Permission bits dropped unless `allow_special_bits`: setuid, setgid,
/// sticky and world-writable.
pub const SPECIAL_BITS: u32 = 0o7002;

/// What a path already is in the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// A directory only because something was put under it.
    ImplicitDir,
    Dir,
    File,
    Symlink,
    Hardlink,
}

/// An entry that passed every rule.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Where it goes; for a whiteout, the path it deletes.
    pub path: RelPath,
    /// For a hardlink, the (earlier, regular) file it links to.
    pub hardlink_to: Option<RelPath>,
    /// What is listed for it (mode already filtered by the policy).
    pub entry: ArchiveEntry,
}

/// Applies the archive-wide rules.
#[derive(Debug)]
pub struct Checker<'a> {
    opts: &'a Options,
    limits: PathLimits,
    seen: HashMap<RelPath, Seen>,
    whiteouts: BTreeSet<RelPath>,
    root_seen: bool,
    entries: u64,
    file_bytes: u64,
    /// Bytes of every path remembered (listed, implied parents, whiteouts):
    /// bounds this checker's memory and that of staging.
    name_bytes: u64,
    /// The directory of the last entry whose ancestors were all found or
    /// made directories. A path seen as a directory stays one (the only
    /// change [`Checker::check`] allows to a seen path is implicit to
    /// explicit directory), so the next entry in the same directory needs
    /// no lookup of its ancestors.
    dirs_checked: Option<String>,
}

/// Filters permission bits by the policy.
pub fn filter_mode(mode: u32, kind: EntryKind, allow_special_bits: bool) -> u32 {
    match kind {
        EntryKind::Symlink => 0o777,
        _ if allow_special_bits => mode & 0o7777,
        _ => mode & 0o7777 & !SPECIAL_BITS,
    }
}

impl<'a> Checker<'a> {
    /// A checker for one archive.
    pub fn new(opts: &'a Options) -> Self {
        Checker {
            opts,
            limits: PathLimits {
                max_len: opts.max_path_len,
                max_depth: opts.max_path_depth,
            },
            seen: HashMap::new(),
            whiteouts: BTreeSet::new(),
            root_seen: false,
            entries: 0,
            file_bytes: 0,
            name_bytes: 0,
            dirs_checked: None,
        }
    }

    /// Paths the payload deletes from the root.
    pub fn whiteouts(&self) -> &BTreeSet<RelPath> {
        &self.whiteouts
    }

    /// Bytes of file data seen.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// The end-of-archive checks against what the manifest promised.
    pub fn finish(&self, tar_bytes: u64) -> Result<(), ExtractError> {
        if let Some(expected) = self.opts.expected_entries {
            if expected != self.entries {
                return Err(ExtractError::EntryCountMismatch {
                    expected,
                    actual: self.entries,
                });
            }
        }
        if let Some(expected) = self.opts.expected_size {
            if expected != tar_bytes {
                return Err(ExtractError::SizeMismatch {
                    expected,
                    actual: tar_bytes,
                });
            }
        }
        Ok(())
    }

    /// A name that hides under a PAX/GNU extension must be safe on its own:
    /// a reader that ignores the extension would use it.
    fn check_shadows(&self, raw: &RawEntry, at: &RelPath) -> Result<(), ExtractError> {
        let relaxed = PathLimits {
            max_len: usize::MAX,
            max_depth: usize::MAX,
        };
        let trick = |reason| ExtractError::HeaderTrick {
            offset: raw.offset,
            path: shown(&raw.path),
            reason,
        };
        if let Some(s) = &raw.shadow_path {
            if let Err(
                ExtractError::AbsolutePath { .. }
                | ExtractError::ParentDir { .. }
                | ExtractError::NulInName { .. },
            ) = normalise_entry(s, relaxed)
            {
                return Err(trick("the header name under the extension is unsafe"));
            }
        }
        if let Some(s) = raw.shadow_link.as_deref().filter(|s| !s.is_empty()) {
            let unsafe_link = match raw.kind {
                RawKind::Symlink => matches!(
                    check_symlink_target(at, s, relaxed),
                    Err(ExtractError::LinkOutside { .. } | ExtractError::NulInName { .. })
                ),
                _ => matches!(
                    normalise_hardlink_target(at, s, relaxed),
                    Err(ExtractError::LinkOutside { .. } | ExtractError::NulInName { .. })
                ),
            };
            if unsafe_link {
                return Err(trick("the header link name under the extension is unsafe"));
            }
        }
        Ok(())
    }

    /// Counts a path about to be remembered against the limits: the number
    /// of paths the payload makes (implied parents included) and their bytes.
    fn remember(&mut self, path: &RelPath) -> Result<(), ExtractError> {
        if self.seen.len() + self.whiteouts.len()
            >= usize::try_from(self.opts.max_entries).unwrap_or(usize::MAX)
        {
            return Err(ExtractError::TooManyEntries {
                limit: self.opts.max_entries,
            });
        }
        self.name_bytes += path.as_str().len() as u64;
        if self.name_bytes > self.opts.max_name_bytes {
            return Err(ExtractError::NamesTooLarge {
                limit: self.opts.max_name_bytes,
            });
        }
        Ok(())
    }

    /// Every ancestor of `path` must be a directory of the payload or not
    /// in it yet; with `mark`, absent ones become implicit directories.
    fn check_ancestors(&mut self, path: &RelPath, mark: bool) -> Result<(), ExtractError> {
        let parent = path.parent_str();
        if mark && self.dirs_checked.as_deref() == Some(parent) {
            return Ok(());
        }
        for a in path.ancestors() {
            match self.seen.get(&a) {
                Some(Seen::Symlink) => {
                    return Err(ExtractError::ThroughSymlink {
                        path: path.shown(),
                        symlink: a.shown(),
                    })
                }
                Some(Seen::File | Seen::Hardlink) => {
                    return Err(ExtractError::ParentNotDirectory {
                        path: path.shown(),
                        parent: a.shown(),
                    })
                }
                Some(Seen::Dir | Seen::ImplicitDir) => {}
                None if mark => {
                    self.remember(&a)?;
                    self.seen.insert(a, Seen::ImplicitDir);
                }
                None => {}
            }
        }
        if mark {
            self.dirs_checked = Some(parent.to_string());
        }
        Ok(())
    }

    /// Checks one entry against every rule.
    pub fn check(&mut self, raw: &RawEntry) -> Result<Checked, ExtractError> {
        self.entries += 1;
        if self.entries > self.opts.max_entries {
            return Err(ExtractError::TooManyEntries {
                limit: self.opts.max_entries,
            });
        }
        if let Some(expected) = self.opts.expected_entries {
            if self.entries > expected {
                return Err(ExtractError::EntryCountMismatch {
                    expected,
                    actual: self.entries,
                });
            }
        }
        let path = normalise_entry(&raw.path, self.limits)?;
        self.check_shadows(raw, &path)?;
        let kind = match raw.kind {
            RawKind::File => EntryKind::File,
            RawKind::Dir => EntryKind::Dir,
            RawKind::Symlink => EntryKind::Symlink,
            RawKind::Hardlink => EntryKind::Hardlink,
        };
        let mut entry = ArchiveEntry {
            path: path.shown(),
            kind,
            mode: filter_mode(raw.mode, kind, self.opts.allow_special_bits),
            uid: raw.uid,
            gid: raw.gid,
            mtime: raw.mtime,
            size: raw.size,
            link_target: None,
            sha256: None,
        };

        if path.is_root() {
            if kind != EntryKind::Dir {
                return Err(ExtractError::TypeConflict {
                    path: path.shown(),
                    reason: "only a directory entry may name the root",
                });
            }
            if std::mem::replace(&mut self.root_seen, true) {
                return Err(ExtractError::Duplicate { path: path.shown() });
            }
            return Ok(Checked {
                path,
                hardlink_to: None,
                entry,
            });
        }

        if let Some(target) = whiteout_target(&path)? {
            if kind != EntryKind::File || raw.size != 0 {
                return Err(ExtractError::InvalidWhiteout {
                    path: path.shown(),
                    reason: "a whiteout must be an empty regular file",
                });
            }
            self.check_ancestors(&target, false)?;
            if self.whiteouts.contains(&target) {
                return Err(ExtractError::Duplicate { path: path.shown() });
            }
            self.remember(&target)?;
            if !self.whiteouts.insert(target.clone()) {
                return Err(ExtractError::Duplicate { path: path.shown() });
            }
            entry.path = target.shown();
            entry.kind = EntryKind::Whiteout;
            entry.mode = 0;
            return Ok(Checked {
                path: target,
                hardlink_to: None,
                entry,
            });
        }

        self.check_ancestors(&path, true)?;
        match (self.seen.get(&path), kind) {
            (None, _) | (Some(Seen::ImplicitDir), EntryKind::Dir) => {}
            (Some(Seen::Dir | Seen::ImplicitDir), EntryKind::Symlink) => {
                return Err(ExtractError::DirReplacedBySymlink { path: path.shown() })
            }
            (Some(_), _) => return Err(ExtractError::Duplicate { path: path.shown() }),
        }

        let mut hardlink_to = None;
        let link = raw.link.as_deref().unwrap_or_default();
        let seen = match kind {
            EntryKind::Dir => Seen::Dir,
            EntryKind::Symlink => {
                check_symlink_target(&path, link, self.limits)?;
                // Checked to be UTF-8 above; the full text, never a shortened one.
                let target = String::from_utf8(link.to_vec()).map_err(|_| {
                    ExtractError::InvalidLinkTarget {
                        path: path.shown(),
                        target: shown(link),
                        reason: "not UTF-8",
                    }
                })?;
                entry.link_target = Some(target);
                Seen::Symlink
            }
            EntryKind::Hardlink => {
                let target = normalise_hardlink_target(&path, link, self.limits)?;
                if !matches!(self.seen.get(&target), Some(Seen::File | Seen::Hardlink)) {
                    return Err(ExtractError::HardlinkTarget {
                        path: path.shown(),
                        target: target.shown(),
                    });
                }
                entry.link_target = Some(target.shown());
                hardlink_to = Some(target);
                Seen::Hardlink
            }
            EntryKind::File | EntryKind::Whiteout => {
                if raw.size > self.opts.max_file_size {
                    return Err(ExtractError::FileTooLarge {
                        path: path.shown(),
                        size: raw.size,
                        limit: self.opts.max_file_size,
                    });
                }
                self.file_bytes = self.file_bytes.saturating_add(raw.size);
                if self.file_bytes > self.opts.max_total_bytes {
                    return Err(ExtractError::TotalSizeExceeded {
                        limit: self.opts.max_total_bytes,
                    });
                }
                Seen::File
            }
        };
        if !self.seen.contains_key(&path) {
            self.remember(&path)?;
        }
        self.seen.insert(path.clone(), seen);
        Ok(Checked {
            path,
            hardlink_to,
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(path: &str, kind: RawKind, link: Option<&str>, size: u64, mode: u32) -> RawEntry {
        RawEntry {
            offset: 0,
            path: path.as_bytes().to_vec(),
            shadow_path: None,
            kind,
            link: link.map(|l| l.as_bytes().to_vec()),
            shadow_link: None,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size,
        }
    }

    fn f(p: &str) -> RawEntry {
        raw(p, RawKind::File, None, 1, 0o644)
    }
    fn w(p: &str) -> RawEntry {
        raw(p, RawKind::File, None, 0, 0o644)
    }
    fn d(p: &str) -> RawEntry {
        raw(p, RawKind::Dir, None, 0, 0o755)
    }
    fn s(p: &str, t: &str) -> RawEntry {
        raw(p, RawKind::Symlink, Some(t), 0, 0o777)
    }
    fn h(p: &str, t: &str) -> RawEntry {
        raw(p, RawKind::Hardlink, Some(t), 0, 0o644)
    }

    fn run(entries: &[RawEntry], opts: &Options) -> Result<Vec<Checked>, String> {
        let mut c = Checker::new(opts);
        entries
            .iter()
            .map(|e| c.check(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
    }

    #[test]
    fn archive_rules_table() {
        let o = Options::default();
        let cases: Vec<(&str, Vec<RawEntry>, Result<(), &str>)> = vec![
            (
                "plain tree",
                vec![d("a"), f("a/b"), s("a/l", "b"), h("a/h", "a/b")],
                Ok(()),
            ),
            (
                "implicit parent then explicit dir",
                vec![f("a/b"), d("a")],
                Ok(()),
            ),
            ("root entry", vec![d("./"), f("x")], Ok(())),
            // The ancestors of an entry in the directory just checked are
            // not looked up again: that directory must stay one.
            (
                "a checked directory replaced by a file",
                vec![f("a/b/1"), f("a/b/2"), f("a/b"), f("a/b/3")],
                Err("Duplicate"),
            ),
            (
                "a checked directory replaced by a symlink",
                vec![f("a/b/1"), s("a/b", "."), f("a/b/2")],
                Err("DirReplacedBySymlink"),
            ),
            (
                "a file then entries beneath it",
                vec![f("a/1"), f("a/2"), f("a/2/x")],
                Err("ParentNotDirectory"),
            ),
            (
                "an ancestor checked earlier",
                vec![f("a/b/1"), s("a/l", "b"), f("a/b/2"), f("a/l/x")],
                Err("ThroughSymlink"),
            ),
            ("root entry twice", vec![d("./"), d(".")], Err("Duplicate")),
            ("root as a file", vec![f(".")], Err("TypeConflict")),
            ("duplicate file", vec![f("a"), f("./a")], Err("Duplicate")),
            ("duplicate dir", vec![d("a"), d("a/")], Err("Duplicate")),
            (
                "write through archive symlink",
                vec![s("l", "a"), f("l/x")],
                Err("ThroughSymlink"),
            ),
            (
                "symlink then same name",
                vec![s("l", "a"), f("l")],
                Err("Duplicate"),
            ),
            (
                "hardlink then write",
                vec![f("a"), h("b", "a"), f("b")],
                Err("Duplicate"),
            ),
            (
                "dir then symlink",
                vec![d("d"), s("d", "x")],
                Err("DirReplacedBySymlink"),
            ),
            (
                "implicit dir then symlink",
                vec![f("d/x"), s("d", "x")],
                Err("DirReplacedBySymlink"),
            ),
            (
                "file as parent",
                vec![f("a"), f("a/b")],
                Err("ParentNotDirectory"),
            ),
            (
                "hardlink to missing",
                vec![h("b", "a")],
                Err("HardlinkTarget"),
            ),
            (
                "hardlink to dir",
                vec![d("a"), h("b", "a")],
                Err("HardlinkTarget"),
            ),
            (
                "hardlink to symlink",
                vec![s("a", "x"), h("b", "a")],
                Err("HardlinkTarget"),
            ),
            (
                "hardlink outside",
                vec![h("b", "../etc/shadow")],
                Err("LinkOutside"),
            ),
            (
                "hardlink absolute",
                vec![h("b", "/etc/shadow")],
                Err("LinkOutside"),
            ),
            (
                "symlink outside",
                vec![s("a/l", "../../x")],
                Err("LinkOutside"),
            ),
            ("whiteout", vec![w("a/.wh.b")], Ok(())),
            (
                "whiteout then re-add",
                vec![w(".wh.a"), d("a"), f("a/x")],
                Ok(()),
            ),
            (
                "whiteout twice",
                vec![w(".wh.a"), w(".wh.a")],
                Err("Duplicate"),
            ),
            (
                "two whiteouts",
                vec![
                    raw(".wh.a", RawKind::File, None, 0, 0),
                    raw(".wh.b", RawKind::File, None, 0, 0),
                ],
                Ok(()),
            ),
            ("whiteout as dir", vec![d(".wh.a")], Err("InvalidWhiteout")),
            (
                "whiteout under symlink",
                vec![s("l", "a"), w("l/.wh.x")],
                Err("ThroughSymlink"),
            ),
        ];
        for (name, entries, want) in cases {
            let got = run(&entries, &o).map(|_| ());
            assert_eq!(got, want.map_err(str::to_string), "case {name}");
        }
    }

    #[test]
    fn whiteout_with_data_is_refused() {
        let o = Options::default();
        let e = run(&[raw(".wh.a", RawKind::File, None, 3, 0)], &o);
        assert_eq!(e.map(|_| ()), Err("InvalidWhiteout".to_string()));
    }

    #[test]
    fn limits() {
        let o = Options {
            max_entries: 2,
            ..Options::default()
        };
        assert_eq!(
            run(&[f("a"), f("b"), f("c")], &o).map(|_| ()),
            Err("TooManyEntries".into())
        );
        let o = Options {
            max_entries: 5,
            ..Options::default()
        };
        // Two entries, but six paths once their parents are counted.
        assert_eq!(
            run(&[f("a/b/c/d"), f("e/f")], &o).map(|_| ()),
            Err("TooManyEntries".into())
        );
        let o = Options {
            max_name_bytes: 20,
            ..Options::default()
        };
        assert_eq!(
            run(&[f("abcdefgh/ijklmnop/q")], &o).map(|_| ()),
            Err("NamesTooLarge".into())
        );
        let o = Options {
            max_total_bytes: 1,
            ..Options::default()
        };
        assert_eq!(
            run(&[f("a"), f("b")], &o).map(|_| ()),
            Err("TotalSizeExceeded".into())
        );
        let o = Options {
            max_file_size: 0,
            ..Options::default()
        };
        assert_eq!(run(&[f("a")], &o).map(|_| ()), Err("FileTooLarge".into()));
        let o = Options {
            expected_entries: Some(1),
            ..Options::default()
        };
        assert_eq!(
            run(&[f("a"), f("b")], &o).map(|_| ()),
            Err("EntryCountMismatch".into())
        );
    }

    #[test]
    fn long_symlink_targets_are_kept_whole() {
        let o = Options::default();
        let target = "t/".repeat(500) + "end";
        let got = run(&[s("l", &target)], &o).expect("valid");
        assert_eq!(got[0].entry.link_target.as_deref(), Some(target.as_str()));
    }

    #[test]
    fn special_bits_are_dropped_unless_allowed() {
        assert_eq!(filter_mode(0o4755, EntryKind::File, false), 0o755);
        assert_eq!(filter_mode(0o2777, EntryKind::Dir, false), 0o775);
        assert_eq!(filter_mode(0o1777, EntryKind::Dir, false), 0o775);
        assert_eq!(filter_mode(0o4755, EntryKind::File, true), 0o4755);
        assert_eq!(filter_mode(0o600, EntryKind::Symlink, false), 0o777);
    }

    #[test]
    fn unsafe_shadow_names_are_tricks() {
        let o = Options::default();
        let mut e = f("safe");
        e.shadow_path = Some(b"../../etc/passwd".to_vec());
        assert_eq!(run(&[e], &o).map(|_| ()), Err("HeaderTrick".into()));
        let mut e = s("l", "inside");
        e.shadow_link = Some(b"/../etc".to_vec());
        assert_eq!(run(&[e], &o).map(|_| ()), Err("HeaderTrick".into()));
        let mut e = f("fine/long/name");
        e.shadow_path = Some(b"fine/lo".to_vec());
        assert!(run(&[e], &o).is_ok());
    }
}
