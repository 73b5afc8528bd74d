//! Pure path rules: entry names, link targets and whiteout names.
//!
//! Nothing here touches a filesystem. A [`RelPath`] is the only form in
//! which a path leaves this module, and it cannot be absolute, climb with
//! `..`, hold NUL or control characters, or exceed the limits given.

use crate::error::{shown, ExtractError};

/// Longest single path component a Linux filesystem accepts (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// The prefix that marks an OCI-style whiteout: `dir/.wh.NAME` deletes `dir/NAME`.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// A normalised path relative to the root: components joined by `/`, no
/// empty, `.` or `..` component. The empty path is the root itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelPath(String);

impl RelPath {
    /// The root itself.
    pub fn root() -> Self {
        RelPath(String::new())
    }

    /// The path as `a/b/c` (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as shown to people: `.` for the root.
    pub fn shown(&self) -> String {
        if self.0.is_empty() {
            ".".to_string()
        } else {
            self.0.clone()
        }
    }

    /// Whether this is the root itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// Whether `self` is strictly beneath `dir` (`a/b` is under `a`, not
    /// under `a/b` nor `ab`; everything but the root is under the root).
    pub fn is_under(&self, dir: &RelPath) -> bool {
        if dir.is_root() {
            return !self.is_root();
        }
        self.0.len() > dir.0.len()
            && self.0.starts_with(&dir.0)
            && self.0.as_bytes()[dir.0.len()] == b'/'
    }

    /// The parent as text (empty for the root and its children).
    pub fn parent_str(&self) -> &str {
        self.0.rfind('/').map_or("", |i| &self.0[..i])
    }

    /// The parent (the root's parent is the root) and the last component.
    pub fn split_last(&self) -> (RelPath, &str) {
        match self.0.rfind('/') {
            Some(i) => (RelPath(self.0[..i].to_string()), &self.0[i + 1..]),
            None => (RelPath::root(), &self.0),
        }
    }

    /// Every proper ancestor except the root, outermost first: `a`, `a/b` for `a/b/c`.
    pub fn ancestors(&self) -> Vec<RelPath> {
        let mut out = Vec::new();
        for (i, b) in self.0.char_indices() {
            if b == '/' {
                out.push(RelPath(self.0[..i].to_string()));
            }
        }
        out
    }

    /// `self/name`; `name` must be one valid component.
    pub fn join(&self, name: &str) -> RelPath {
        if self.0.is_empty() {
            RelPath(name.to_string())
        } else {
            RelPath(format!("{}/{}", self.0, name))
        }
    }

    /// Whether `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

/// Limits the path rules need.
#[derive(Clone, Copy, Debug)]
pub struct PathLimits {
    /// Longest entry name or link target, in bytes.
    pub max_len: usize,
    /// Most components in an entry name.
    pub max_depth: usize,
}

/// Whether `c` is an invisible Unicode format character (category Cf):
/// bidirectional controls such as U+202E, zero-width characters, the soft
/// hyphen, the byte-order mark, invisible operators and tags. Names holding
/// one can be shown as another name (`cod\u{202E}fdp.sh` reads `codhs.pdf`),
/// so the overlay, the packers and capture refuse them rather than escape
/// them in every listing.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Checks the characters of a name or target: UTF-8, no NUL, no control,
/// no invisible format character ([`is_format_char`]).
fn check_text(raw: &[u8]) -> Result<&str, &'static str> {
    if raw.is_empty() {
        return Err("empty");
    }
    if raw.contains(&0) {
        return Err("NUL");
    }
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8")?;
    if text.chars().any(char::is_control) {
        return Err("control character");
    }
    if text.chars().any(is_format_char) {
        return Err("invisible Unicode format character (bidi control, zero-width)");
    }
    Ok(text)
}

/// Normalises an entry name: drops `.` and empty components (so `./a//b/`
/// is `a/b`), refuses absolute names, `..`, NUL, non-UTF-8, control
/// characters and names over the limits.
pub fn normalise_entry(raw: &[u8], limits: PathLimits) -> Result<RelPath, ExtractError> {
    // The name as shown in an error, made only for one.
    let path = || shown(raw);
    let text = match check_text(raw) {
        Ok(t) => t,
        Err("NUL") => return Err(ExtractError::NulInName { path: path() }),
        Err(reason) => {
            return Err(ExtractError::InvalidName {
                path: path(),
                reason,
            })
        }
    };
    if text.starts_with('/') {
        return Err(ExtractError::AbsolutePath { path: path() });
    }
    if text.len() > limits.max_len {
        return Err(ExtractError::NameTooLong {
            path: path(),
            limit: limits.max_len,
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut depth = 0;
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(ExtractError::ParentDir { path: path() }),
            c if c.len() > MAX_NAME_LEN => {
                return Err(ExtractError::NameTooLong {
                    path: path(),
                    limit: MAX_NAME_LEN,
                })
            }
            c => {
                if depth > 0 {
                    out.push('/');
                }
                out.push_str(c);
                depth += 1;
            }
        }
    }
    if depth > limits.max_depth {
        return Err(ExtractError::TooDeep {
            path: path(),
            limit: limits.max_depth,
        });
    }
    Ok(RelPath(out))
}

/// Checks a symlink target as the kernel will resolve it from the link's
/// directory: it must stay inside the root. `..` is allowed only as a
/// leading run (`../../x`), so the climb is decided by real directories
/// alone and never by another symlink's target. An absolute target is
/// link content, read from the node's root after switch-root (`/etc/x`
/// means `<root>/etc/x`): accepted, but `/..` is refused like a relative
/// climb above the root. The overlay itself never follows a link of the
/// payload, so no target can make it write anywhere.
pub fn check_symlink_target(
    link: &RelPath,
    raw: &[u8],
    limits: PathLimits,
) -> Result<(), ExtractError> {
    let path = link.shown();
    let target = shown(raw);
    let text = match check_text(raw) {
        Ok(t) => t,
        Err("NUL") => return Err(ExtractError::NulInName { path }),
        Err(reason) => {
            return Err(ExtractError::InvalidLinkTarget {
                path,
                target,
                reason,
            })
        }
    };
    if text.len() > limits.max_len {
        return Err(ExtractError::NameTooLong {
            path,
            limit: limits.max_len,
        });
    }
    let absolute = text.starts_with('/');
    // Depth of the directory the kernel starts from.
    let start = if absolute {
        0
    } else {
        link.depth().saturating_sub(1)
    };
    let mut ups = 0usize;
    let mut seen_name = false;
    for c in text.split('/') {
        match c {
            "" | "." => {}
            ".." if seen_name => return Err(ExtractError::UnnormalisedLinkTarget { path, target }),
            ".." => ups += 1,
            c if c.len() > MAX_NAME_LEN => {
                return Err(ExtractError::NameTooLong {
                    path,
                    limit: MAX_NAME_LEN,
                })
            }
            _ => seen_name = true,
        }
    }
    if ups > start {
        return Err(ExtractError::LinkOutside { path, target });
    }
    Ok(())
}

/// Normalises a hardlink target (a name from the archive's root).
pub fn normalise_hardlink_target(
    link: &RelPath,
    raw: &[u8],
    limits: PathLimits,
) -> Result<RelPath, ExtractError> {
    let outside = || ExtractError::LinkOutside {
        path: link.shown(),
        target: shown(raw),
    };
    match normalise_entry(raw, limits) {
        Ok(p) if p.is_root() => Err(outside()),
        Ok(p) => Ok(p),
        Err(ExtractError::AbsolutePath { .. } | ExtractError::ParentDir { .. }) => Err(outside()),
        Err(ExtractError::InvalidName { reason, .. }) => Err(ExtractError::InvalidLinkTarget {
            path: link.shown(),
            target: shown(raw),
            reason,
        }),
        Err(e) => Err(e),
    }
}

/// If `path` is a whiteout (`dir/.wh.NAME`), the path it deletes (`dir/NAME`).
/// Opaque whiteouts (`.wh..wh..opq`) and names that would delete `.`/`..`
/// are refused.
pub fn whiteout_target(path: &RelPath) -> Result<Option<RelPath>, ExtractError> {
    let (parent, name) = path.split_last();
    let Some(rest) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(None);
    };
    let reason = match rest {
        "" | "." => "names no file",
        ".." => return Err(ExtractError::ParentDir { path: path.shown() }),
        r if r.starts_with(WHITEOUT_PREFIX) => "opaque and nested whiteouts are not supported",
        r => return Ok(Some(parent.join(r))),
    };
    Err(ExtractError::InvalidWhiteout {
        path: path.shown(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: PathLimits = PathLimits {
        max_len: 4095,
        max_depth: 8,
    };

    fn norm(s: &[u8]) -> Result<String, String> {
        normalise_entry(s, L)
            .map(|p| p.as_str().to_string())
            .map_err(|e| {
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
    }

    #[test]
    fn entry_names_table() {
        let long_component = "x".repeat(256);
        let deep = "a/".repeat(9);
        let cases: Vec<(&[u8], Result<&str, &str>)> = vec![
            (b"a/b/c", Ok("a/b/c")),
            (b"./a//b/", Ok("a/b")),
            (b"./", Ok("")),
            (b".", Ok("")),
            (b"a/./b", Ok("a/b")),
            (b"caf\xc3\xa9", Ok("caf\u{e9}")),
            (b"a\\b", Ok("a\\b")),
            (b"...", Ok("...")),
            (b"..a", Ok("..a")),
            (b"/etc/passwd", Err("AbsolutePath")),
            (b"//etc", Err("AbsolutePath")),
            (b"..", Err("ParentDir")),
            (b"a/../../b", Err("ParentDir")),
            (b"a/..", Err("ParentDir")),
            (b"./../x", Err("ParentDir")),
            (b"a\0b", Err("NulInName")),
            (b"", Err("InvalidName")),
            (b"\xff\xfe", Err("InvalidName")),
            (b"a\nb", Err("InvalidName")),
            (b"a\x1b[31m", Err("InvalidName")),
            (long_component.as_bytes(), Err("NameTooLong")),
            (deep.as_bytes(), Err("TooDeep")),
        ];
        for (input, want) in cases {
            let want = want.map(str::to_string).map_err(str::to_string);
            assert_eq!(
                norm(input),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn under_and_parent() {
        let p = |s: &str| normalise_entry(s.as_bytes(), L).expect("valid");
        let root = RelPath::root();
        assert!(p("a/b").is_under(&p("a")));
        assert!(p("a/b/c").is_under(&p("a")));
        assert!(!p("a/b").is_under(&p("a/b")));
        assert!(!p("ab").is_under(&p("a")));
        assert!(!p("a-b/c").is_under(&p("a")));
        assert!(!p("a").is_under(&p("a/b")));
        assert!(p("a").is_under(&root));
        assert!(!root.is_under(&root));
        assert_eq!(p("a/b/c").parent_str(), "a/b");
        assert_eq!(p("a").parent_str(), "");
        assert_eq!(root.parent_str(), "");
    }

    #[test]
    fn overlong_total_path_is_refused() {
        let limits = PathLimits {
            max_len: 10,
            max_depth: 8,
        };
        assert!(matches!(
            normalise_entry(b"abcdef/ghijk", limits),
            Err(ExtractError::NameTooLong { limit: 10, .. })
        ));
    }

    fn link(at: &str, target: &str) -> Result<(), String> {
        let at = normalise_entry(at.as_bytes(), L).expect("valid link name");
        check_symlink_target(&at, target.as_bytes(), L).map_err(|e| {
            format!("{e:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or("")
                .to_string()
        })
    }

    #[test]
    fn symlink_targets_table() {
        let ok = Ok(());
        let err = |s: &str| Err(s.to_string());
        assert_eq!(link("a/b/l", "../../x"), ok);
        assert_eq!(link("a/b/l", "../c"), ok);
        assert_eq!(link("a/b/l", "c/d"), ok);
        assert_eq!(link("a/b/l", "./c"), ok);
        assert_eq!(link("a/b/l", "."), ok);
        assert_eq!(link("a/b/l", ".."), ok);
        assert_eq!(link("a/b/l", "../.."), ok);
        assert_eq!(link("a/b/l", "../../.."), err("LinkOutside"));
        assert_eq!(link("l", ".."), err("LinkOutside"));
        assert_eq!(link("l", "../x"), err("LinkOutside"));
        assert_eq!(link("a/l", "c/../../.."), err("UnnormalisedLinkTarget"));
        assert_eq!(link("a/l", "c/../d"), err("UnnormalisedLinkTarget"));
        // Absolute targets are link content, read from the root.
        assert_eq!(link("l", "/etc/passwd"), ok);
        assert_eq!(link("a/b/l", "/usr/share/zoneinfo/Europe/Berlin"), ok);
        assert_eq!(link("l", "/"), ok);
        assert_eq!(link("l", "/../etc"), err("LinkOutside"));
        assert_eq!(link("a/b/l", "/a/../../x"), err("UnnormalisedLinkTarget"));
        assert_eq!(link("l", ""), err("InvalidLinkTarget"));
        assert_eq!(link("l", "a\0b"), err("NulInName"));
        assert_eq!(link("l", "a\nb"), err("InvalidLinkTarget"));
    }

    #[test]
    fn hardlink_targets() {
        let at = normalise_entry(b"x/l", L).expect("valid");
        assert_eq!(
            normalise_hardlink_target(&at, b"./a/b", L)
                .expect("inside")
                .as_str(),
            "a/b"
        );
        for bad in [&b"/etc/shadow"[..], b"../x", b"a/../../x", b"."] {
            assert!(matches!(
                normalise_hardlink_target(&at, bad, L),
                Err(ExtractError::LinkOutside { .. })
            ));
        }
    }

    #[test]
    fn whiteouts_table() {
        let w = |s: &str| whiteout_target(&normalise_entry(s.as_bytes(), L).expect("valid"));
        assert_eq!(w("a/.wh.b").expect("ok").expect("whiteout").as_str(), "a/b");
        assert_eq!(w(".wh.x").expect("ok").expect("whiteout").as_str(), "x");
        assert!(w("a/b.wh.c").expect("ok").is_none());
        assert!(matches!(
            w("a/.wh."),
            Err(ExtractError::InvalidWhiteout { .. })
        ));
        assert!(matches!(
            w("a/.wh..wh..opq"),
            Err(ExtractError::InvalidWhiteout { .. })
        ));
        assert!(matches!(
            w("a/.wh.."),
            Err(ExtractError::InvalidWhiteout { .. })
        ));
        assert!(matches!(w("a/.wh..."), Err(ExtractError::ParentDir { .. })));
    }

    #[test]
    fn relpath_helpers() {
        let p = normalise_entry(b"a/b/c", L).expect("valid");
        let anc: Vec<String> = p
            .ancestors()
            .iter()
            .map(|a| a.as_str().to_string())
            .collect();
        assert_eq!(anc, ["a", "a/b"]);
        assert_eq!(p.split_last().1, "c");
        assert!(p.starts_with(&normalise_entry(b"a/b", L).expect("valid")));
        assert!(!p.starts_with(&normalise_entry(b"a/bc", L).expect("valid")));
        assert!(!normalise_entry(b"a/bc", L)
            .expect("valid")
            .starts_with(&normalise_entry(b"a/b", L).expect("valid")));
        assert!(p.starts_with(&RelPath::root()));
    }

    #[test]
    fn names_and_targets_with_invisible_format_characters_are_refused() {
        let limits = PathLimits {
            max_len: 4095,
            max_depth: 64,
        };
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{200B}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{061C}',
        ] {
            let name = format!("etc/cod{c}fdp.sh");
            assert!(
                normalise_entry(name.as_bytes(), limits).is_err(),
                "{:?}",
                name.escape_unicode().to_string()
            );
            assert!(is_format_char(c));
        }
        // Ordinary non-ASCII names stay fine.
        for ok in ["etc/café", "srv/日本語", "opt/Ελλάδα"] {
            assert!(normalise_entry(ok.as_bytes(), limits).is_ok(), "{ok}");
        }
        assert!(!is_format_char('é') && !is_format_char('a') && !is_format_char('\u{2010}'));
    }
}
