//! `create --enable UNIT`: the symlinks `systemctl enable` would make for
//! a unit, computed from its unit file in the payload, so that a stateless
//! node boots with the unit enabled.
//!
//! - [`UnitName`]: systemd's unit name rules (`[A-Za-z0-9:_.\-]` and one
//!   `@`, a known type suffix, at most [`MAX_UNIT_NAME_LEN`] bytes). A name
//!   never holds `/`, so it is always one path component.
//! - [`parse_install`]: a small, strict reader of systemd's unit file
//!   syntax that keeps the `[Install]` section (below).
//! - [`Request`]: one `--enable` value, `UNIT` or `UNIT:TARGET`.
//! - [`plan`]: the links for some requests against a [`Payload`] (what the
//!   payload holds), pure but for the payload's lookups; [`DirPayload`] is
//!   a directory's.
//!
//! What a unit's `[Install]` section makes (direct links, never presets):
//! `WantedBy=T` → `etc/systemd/system/T.wants/UNIT`, `RequiredBy=T` →
//! `T.requires/`, `UpheldBy=T` → `T.upholds/`, `Alias=A` →
//! `etc/systemd/system/A`; `Also=U` enables `U` too, as `systemctl enable`
//! does. Every link is absolute, pointing at the unit file where the node
//! sees it: `/` + its payload path (`/lib/systemd/system/x.service`, which a
//! merged-`/usr` root resolves through its `lib -> usr/lib`). A template
//! instance (`foo@bar.service`) uses the template's file (`foo@.service`)
//! and names its links after the instance; `--enable foo@.service` takes
//! the file's `DefaultInstance=`. The install specifiers `%n %N %p %i %j %%`
//! are expanded as systemd does; any other is refused, since its value
//! would be the admin's machine's, not the node's.
//!
//! `UNIT:TARGET` is for a unit the node's image already has: one link
//! `etc/systemd/system/TARGET.wants/UNIT`. systemd loads `.wants/` entries
//! by the link's name and only warns when the target's file name differs
//! (it never needs the target to exist), so the link points at
//! [`VENDOR_UNIT_DIR`]`/UNIT` (the template's file for an instance), where
//! distributions install units; if the payload has the unit, at its file.
//!
//! The unit file syntax accepted ([`parse_install`]): UTF-8 text of at most
//! [`MAX_UNIT_FILE_BYTES`]; lines are trimmed; empty lines and lines
//! starting with `#` or `;` are comments; a line ending in `\` continues on
//! the next (the backslash becomes a space; comment lines inside are
//! skipped); `[Section]` headers; `Key=Value` assignments inside a section.
//! In `[Install]`, list values are whitespace-separated words, repeated keys
//! accumulate, an empty assignment (`WantedBy=`) resets the list;
//! `DefaultInstance=` keeps the last value. Refused: control characters, an
//! assignment outside a section, a line that is neither, a continuation at
//! the end of the file, an unknown `[Install]` key. Other sections are read
//! for syntax only.
//!
//! It does not follow symlinks in the payload (a unit file that is a link
//! is refused), read `.d/` drop-ins or presets, or enable user units.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use satchel_names::file::{read_bounded_text, ReadError};

#[cfg(test)]
mod tests;

/// Longest unit name, in bytes (systemd's `UNIT_NAME_MAX` less its NUL).
pub const MAX_UNIT_NAME_LEN: usize = 255;

/// Largest unit file read, in bytes.
pub const MAX_UNIT_FILE_BYTES: u64 = 1 << 20;

/// The unit types systemd knows (a name's suffix after its last `.`).
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "scope",
    "device",
];

/// The persistent system unit directories a payload's units are looked
/// for in, relative to the root (systemd's search path without `/run`).
pub const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

/// Where the links of `--enable` go, relative to the root.
pub const LINK_DIR: &str = "etc/systemd/system";

/// Where `UNIT:TARGET` links point for a unit not in the payload.
pub const VENDOR_UNIT_DIR: &str = "/usr/lib/systemd/system";

/// Why enabling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// A unit name breaks systemd's rules.
    #[error("invalid unit name {name:?}: {reason}")]
    InvalidName {
        /// The name (shortened).
        name: String,
        /// Which rule.
        reason: String,
    },
    /// An `--enable` value is neither `UNIT` nor `UNIT:TARGET`.
    #[error("--enable {text:?}: {reason}")]
    InvalidRequest {
        /// The value (shortened).
        text: String,
        /// Why.
        reason: String,
    },
    /// The unit file is not in the payload.
    #[error(
        "unit {unit} is not in the payload (looked in {}); for a unit the node's image \
         already has, give --enable {unit}:TARGET (e.g. {unit}:multi-user.target)",
        UNIT_DIRS.join(", ")
    )]
    NotInPayload {
        /// The unit.
        unit: String,
    },
    /// The payload has the unit in more than one directory.
    #[error("unit {unit} is in the payload more than once ({}): keep one", paths.join(", "))]
    Ambiguous {
        /// The unit.
        unit: String,
        /// Where.
        paths: Vec<String>,
    },
    /// The unit's path in the payload is not a regular file.
    #[error("{path} is {kind} in the payload, not a unit file: enable the unit file itself")]
    NotAFile {
        /// The payload path.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// The unit file's syntax is wrong.
    #[error("{file}:{line}: {reason}")]
    Syntax {
        /// The payload path.
        file: String,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value of `[Install]` is refused.
    #[error("{file}: {key}={value:?}: {reason}")]
    BadValue {
        /// The payload path.
        file: String,
        /// The key.
        key: &'static str,
        /// The value (shortened).
        value: String,
        /// Why.
        reason: String,
    },
    /// The unit has nothing to install.
    #[error(
        "{unit} ({file}) has no WantedBy/RequiredBy/Alias; nothing to enable \
         (add an [Install] section, or give --enable {unit}:TARGET)"
    )]
    NothingToEnable {
        /// The unit.
        unit: String,
        /// Its file.
        file: String,
    },
    /// A template was given without an instance and has no default.
    #[error(
        "{unit} is a template without DefaultInstance= in {file}: give --enable \
         {prefix}@INSTANCE.{suffix}"
    )]
    NoInstance {
        /// The template.
        unit: String,
        /// Its file.
        file: String,
        /// Its prefix.
        prefix: String,
        /// Its type.
        suffix: String,
    },
    /// A link would replace a different entry of the payload, or another link.
    #[error("{path}: {reason}")]
    Conflict {
        /// The link's payload path.
        path: String,
        /// What is in the way.
        reason: String,
    },
    /// Reading the unit file failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Looking at the payload failed.
    #[error("cannot look at {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A valid systemd unit name: `prefix[@instance].type`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitName(String);

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '-')
}

impl UnitName {
    /// Checks `name` against systemd's rules.
    pub fn parse(name: &str) -> Result<UnitName, UnitError> {
        let bad = |reason: &str| UnitError::InvalidName {
            name: shown(name),
            reason: reason.into(),
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > MAX_UNIT_NAME_LEN {
            return Err(bad(&format!("longer than {MAX_UNIT_NAME_LEN} bytes")));
        }
        let Some((stem, suffix)) = name.rsplit_once('.') else {
            return Err(bad("no type suffix such as .service or .target"));
        };
        if !UNIT_TYPES.contains(&suffix) {
            return Err(bad(&format!(
                "unknown type .{}; expected one of .{}",
                shown(suffix),
                UNIT_TYPES.join(", .")
            )));
        }
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, Some(i)),
            None => (stem, None),
        };
        if prefix.is_empty() {
            return Err(bad("nothing before the type suffix or the @"));
        }
        if !prefix.chars().all(valid_char) {
            return Err(bad(
                "only letters, digits and : _ . \\ - may appear (and one @ before an instance)",
            ));
        }
        if let Some(i) = instance {
            if !i.chars().all(|c| valid_char(c) || c == '@') {
                return Err(bad(
                    "the instance has characters other than letters, digits and : _ . \\ - @",
                ));
            }
        }
        Ok(UnitName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn stem(&self) -> &str {
        self.0.rsplit_once('.').map(|(s, _)| s).unwrap_or(&self.0)
    }

    /// The type suffix, without the dot (`service`).
    pub fn suffix(&self) -> &str {
        self.0.rsplit_once('.').map(|(_, s)| s).unwrap_or("")
    }

    /// What comes before `@` (or the suffix): `foo` of `foo@bar.service`.
    pub fn prefix(&self) -> &str {
        let stem = self.stem();
        stem.split_once('@').map(|(p, _)| p).unwrap_or(stem)
    }

    /// The instance: `Some("bar")` for `foo@bar.service`, `Some("")` for
    /// the template `foo@.service`, `None` for a plain unit.
    pub fn instance(&self) -> Option<&str> {
        self.stem().split_once('@').map(|(_, i)| i)
    }

    /// Whether this is a template (`foo@.service`).
    pub fn is_template(&self) -> bool {
        self.instance() == Some("")
    }

    /// Whether this is an instance of a template (`foo@bar.service`).
    pub fn is_instance(&self) -> bool {
        self.instance().is_some_and(|i| !i.is_empty())
    }

    /// The template of an instance (`foo@.service`), or the name itself.
    pub fn template(&self) -> UnitName {
        match self.instance() {
            Some(_) => UnitName(format!("{}@.{}", self.prefix(), self.suffix())),
            None => self.clone(),
        }
    }

    /// This template's (or instance's) unit for `instance`.
    pub fn with_instance(&self, instance: &str) -> Result<UnitName, UnitError> {
        UnitName::parse(&format!("{}@{instance}.{}", self.prefix(), self.suffix()))
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `--enable` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `UNIT`: a unit in the payload, by its `[Install]` section.
    Unit(UnitName),
    /// `UNIT:TARGET`: `TARGET.wants/UNIT`, for a unit the image has.
    WantedBy {
        /// The unit.
        unit: UnitName,
        /// The unit that wants it.
        target: UnitName,
    },
}

impl Request {
    /// Parses `UNIT` or `UNIT:TARGET`. Unit names may hold `:`, so the
    /// value is split at its last `:` only when both sides are valid unit
    /// names (a unit whose own name is `a.service:b.target` cannot be given).
    pub fn parse(text: &str) -> Result<Request, UnitError> {
        let bad = |e: UnitError| UnitError::InvalidRequest {
            text: shown(text),
            reason: e.to_string(),
        };
        if let Some((unit, target)) = text.rsplit_once(':') {
            if let (Ok(unit), Ok(target)) = (UnitName::parse(unit), UnitName::parse(target)) {
                if unit.is_template() {
                    return Err(UnitError::InvalidRequest {
                        text: shown(text),
                        reason: format!(
                            "{unit} is a template: name an instance ({}@INSTANCE.{})",
                            unit.prefix(),
                            unit.suffix()
                        ),
                    });
                }
                return Ok(Request::WantedBy { unit, target });
            }
        }
        UnitName::parse(text).map(Request::Unit).map_err(bad)
    }
}

/// The `[Install]` section of a unit file, values as written (specifiers
/// not yet expanded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Install {
    /// `WantedBy=` words.
    pub wanted_by: Vec<String>,
    /// `RequiredBy=` words.
    pub required_by: Vec<String>,
    /// `UpheldBy=` words.
    pub upheld_by: Vec<String>,
    /// `Alias=` words.
    pub alias: Vec<String>,
    /// `Also=` words.
    pub also: Vec<String>,
    /// `DefaultInstance=`, the last one.
    pub default_instance: Option<String>,
}

/// Parses a unit file's text (`file` names it in errors) and returns its
/// `[Install]` section (empty when there is none). See the module's doc.
pub fn parse_install(text: &str, file: &str) -> Result<Install, UnitError> {
    let syntax = |line: usize, reason: String| UnitError::Syntax {
        file: file.to_string(),
        line,
        reason,
    };
    let mut install = Install::default();
    let mut section: Option<String> = None;
    let mut joined = String::new();
    let mut start = 0usize;
    let mut continued = false;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        if let Some(c) = raw
            .chars()
            .find(|&c| c.is_control() && c != '\t' && c != '\r')
        {
            return Err(syntax(
                n,
                format!("control character {c:?}: not a text unit file"),
            ));
        }
        let line = raw.trim();
        if continued && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if !continued {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            start = n;
            joined.clear();
        }
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continued = true;
            continue;
        }
        joined.push_str(line);
        continued = false;
        let line = joined.trim();
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| syntax(start, "a section header must end with `]`".into()))?;
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(syntax(
                    start,
                    format!("invalid section name {:?}", shown(name)),
                ));
            }
            section = Some(name.to_string());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax(
                start,
                format!("{:?} is neither [Section] nor Key=Value", shown(line)),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(syntax(start, format!("invalid key {:?}", shown(key))));
        }
        let Some(sec) = &section else {
            return Err(syntax(start, format!("{key}= is outside any [Section]")));
        };
        if sec != "Install" {
            continue;
        }
        let list = match key {
            "WantedBy" => &mut install.wanted_by,
            "RequiredBy" => &mut install.required_by,
            "UpheldBy" => &mut install.upheld_by,
            "Alias" => &mut install.alias,
            "Also" => &mut install.also,
            "DefaultInstance" => {
                install.default_instance = (!value.is_empty()).then(|| value.to_string());
                continue;
            }
            other => {
                return Err(syntax(
                    start,
                    format!(
                        "unknown [Install] key {:?} (known: WantedBy, RequiredBy, UpheldBy, \
                         Alias, Also, DefaultInstance)",
                        shown(other)
                    ),
                ))
            }
        };
        if value.is_empty() {
            list.clear();
        } else {
            list.extend(value.split_whitespace().map(str::to_string));
        }
    }
    if continued {
        return Err(syntax(
            start,
            "the file ends inside a line continuation (a trailing `\\`)".into(),
        ));
    }
    Ok(install)
}

/// Expands the install specifiers of `value` for `unit` (`%n` its name,
/// `%N` without the suffix, `%p` the prefix, `%i` the instance, `%j` the
/// prefix's last `-` component, `%%` a percent sign).
pub fn expand(value: &str, unit: &UnitName) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push_str(unit.as_str()),
            Some('N') => out.push_str(unit.stem()),
            Some('p') => out.push_str(unit.prefix()),
            Some('i') => out.push_str(unit.instance().unwrap_or("")),
            Some('j') => out.push_str(unit.prefix().rsplit('-').next().unwrap_or("")),
            Some('%') => out.push('%'),
            Some(other) => {
                return Err(format!(
                    "specifier %{other} is not expanded here (only %n %N %p %i %j %%): its \
                     value would be this machine's, not the node's"
                ))
            }
            None => return Err("a lone % at the end".into()),
        }
    }
    Ok(out)
}

/// What a payload path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Nothing.
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink, with its target.
    Symlink(String),
    /// Anything else.
    Other,
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::File => "a file",
            Kind::Dir => "a directory",
            Kind::Symlink(_) => "a symlink",
            Kind::Other => "a special file",
        }
    }
}

/// What [`plan`] needs to know about the payload (paths are relative:
/// `etc/systemd/system/x.service`).
pub trait Payload {
    /// What `path` is, without following a symlink.
    fn kind(&self, path: &str) -> Result<Kind, UnitError>;
    /// The text of the unit file at `path` (at most [`MAX_UNIT_FILE_BYTES`]).
    fn read(&self, path: &str) -> Result<String, UnitError>;
}

/// A payload directory (`create --from-dir`).
#[derive(Debug)]
pub struct DirPayload<'a> {
    /// The directory.
    pub root: &'a Path,
}

impl Payload for DirPayload<'_> {
    fn kind(&self, path: &str) -> Result<Kind, UnitError> {
        // A path under a symlink of the tree is not in the payload as such
        // (the packer stores the link, not what it points at).
        if let Some((parent, _)) = path.rsplit_once('/') {
            if self.kind(parent)? != Kind::Dir {
                return Ok(Kind::Missing);
            }
        }
        let full = self.root.join(path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            // Under a file: the check of the link's parents names the file.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Kind::Missing)
            }
            Err(source) => return Err(UnitError::Io { path: full, source }),
        };
        let ft = meta.file_type();
        Ok(if ft.is_symlink() {
            let target = std::fs::read_link(&full)
                .map_err(|source| UnitError::Io {
                    path: full.clone(),
                    source,
                })?
                .to_string_lossy()
                .into_owned();
            Kind::Symlink(target)
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        })
    }

    fn read(&self, path: &str) -> Result<String, UnitError> {
        Ok(read_bounded_text(
            &self.root.join(path),
            MAX_UNIT_FILE_BYTES,
        )?)
    }
}

/// A link to add: `path` (relative) → `target` (absolute).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    /// The link's payload path.
    pub path: String,
    /// Its target.
    pub target: String,
}

/// What enabling makes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The links to add, sorted.
    pub add: Vec<Link>,
    /// The links the payload already has, as they should be, sorted.
    pub present: Vec<Link>,
}

/// Finds a unit's file in the payload's unit directories: the name's own
/// file, else for an instance its template's. `None` when absent.
pub fn find_unit(unit: &UnitName, payload: &dyn Payload) -> Result<Option<String>, UnitError> {
    let mut names = vec![unit.clone()];
    if unit.is_instance() {
        names.push(unit.template());
    }
    for name in names {
        let mut found = Vec::new();
        for dir in UNIT_DIRS {
            let path = format!("{dir}/{name}");
            match payload.kind(&path)? {
                Kind::Missing => {}
                Kind::File => found.push(path),
                k => {
                    return Err(UnitError::NotAFile {
                        path,
                        kind: k.describe(),
                    })
                }
            }
        }
        match found.len() {
            0 => continue,
            1 => return Ok(found.pop()),
            _ => {
                return Err(UnitError::Ambiguous {
                    unit: name.to_string(),
                    paths: found,
                })
            }
        }
    }
    Ok(None)
}

/// The links for `requests` against `payload`: every link computed,
/// checked against the payload (an entry of the same name must be the same
/// link) and against the others (one name, one target).
pub fn plan(requests: &[Request], payload: &dyn Payload) -> Result<Plan, UnitError> {
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut add = |path: String, target: String| -> Result<(), UnitError> {
        match links.get(&path) {
            Some(t) if *t != target => Err(UnitError::Conflict {
                reason: format!("would point at both {t} and {target}"),
                path,
            }),
            _ => {
                links.insert(path, target);
                Ok(())
            }
        }
    };
    let mut done = BTreeSet::new();
    for r in requests {
        match r {
            Request::WantedBy { unit, target } => {
                let file = find_unit(unit, payload)?
                    .map(|p| format!("/{p}"))
                    .unwrap_or_else(|| format!("{VENDOR_UNIT_DIR}/{}", unit.template()));
                add(format!("{LINK_DIR}/{target}.wants/{unit}"), file)?;
            }
            Request::Unit(unit) => {
                let mut queue = vec![unit.clone()];
                while let Some(u) = queue.pop() {
                    if !done.insert(u.clone()) {
                        continue;
                    }
                    let Some(file) = find_unit(&u, payload)? else {
                        return Err(UnitError::NotInPayload {
                            unit: u.to_string(),
                        });
                    };
                    let text = payload.read(&file)?;
                    let install = parse_install(&text, &file)?;
                    let (made, also) = unit_links(&u, &file, &install)?;
                    for l in made {
                        add(l.path, l.target)?;
                    }
                    queue.extend(also.into_iter().rev());
                }
            }
        }
    }
    let mut out = Plan::default();
    for (path, target) in links {
        check_place(&path, &target, payload)?;
        let link = Link {
            path: path.clone(),
            target: target.clone(),
        };
        match payload.kind(&path)? {
            Kind::Missing => out.add.push(link),
            Kind::Symlink(t) if t == target => out.present.push(link),
            Kind::Symlink(t) => {
                return Err(UnitError::Conflict {
                    path,
                    reason: format!(
                        "the payload already has this link pointing at {t}, not {target}: \
                         remove it or drop the --enable"
                    ),
                })
            }
            k => {
                return Err(UnitError::Conflict {
                    path,
                    reason: format!(
                        "the payload has {} here, where the link to {target} belongs",
                        k.describe()
                    ),
                })
            }
        }
    }
    Ok(out)
}

/// Every parent of a link must be a directory of the payload or absent.
fn check_place(path: &str, target: &str, payload: &dyn Payload) -> Result<(), UnitError> {
    let mut parent = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        if !parent.is_empty() {
            parent.push('/');
        }
        parent.push_str(c);
        match payload.kind(&parent)? {
            Kind::Missing => return Ok(()),
            Kind::Dir => {}
            k => {
                return Err(UnitError::Conflict {
                    path: path.to_string(),
                    reason: format!(
                        "{parent} is {} in the payload, so the link to {target} cannot be made",
                        k.describe()
                    ),
                })
            }
        }
    }
    Ok(())
}

/// The links one unit's `[Install]` section makes, and the units its
/// `Also=` names. `unit` is the name enabled (an instance, a template
/// with `DefaultInstance=`, or a plain unit); `file` its unit file's path.
pub fn unit_links(
    unit: &UnitName,
    file: &str,
    install: &Install,
) -> Result<(Vec<Link>, Vec<UnitName>), UnitError> {
    let bad = |key: &'static str, value: &str, reason: String| UnitError::BadValue {
        file: file.to_string(),
        key,
        value: shown(value),
        reason,
    };
    let unit = if unit.is_template() {
        match &install.default_instance {
            Some(i) => unit
                .with_instance(i)
                .map_err(|e| bad("DefaultInstance", i, e.to_string()))?,
            None => {
                return Err(UnitError::NoInstance {
                    unit: unit.to_string(),
                    file: file.to_string(),
                    prefix: unit.prefix().to_string(),
                    suffix: unit.suffix().to_string(),
                })
            }
        }
    } else {
        unit.clone()
    };
    let name_of = |key: &'static str, value: &str| -> Result<UnitName, UnitError> {
        let expanded = expand(value, &unit).map_err(|why| bad(key, value, why))?;
        let name = UnitName::parse(&expanded).map_err(|e| bad(key, value, e.to_string()))?;
        // A template target takes the enabled unit's instance, as systemd does.
        match (name.is_template(), unit.instance()) {
            (true, Some(i)) => name
                .with_instance(i)
                .map_err(|e| bad(key, value, e.to_string())),
            (true, None) => Err(bad(
                key,
                value,
                format!("a template, but {unit} has no instance to give it"),
            )),
            (false, _) => Ok(name),
        }
    };
    let target = format!("/{file}");
    let mut links = Vec::new();
    for (key, list, dir) in [
        ("WantedBy", &install.wanted_by, "wants"),
        ("RequiredBy", &install.required_by, "requires"),
        ("UpheldBy", &install.upheld_by, "upholds"),
    ] {
        for v in list {
            let by = name_of(key, v)?;
            links.push(Link {
                path: format!("{LINK_DIR}/{by}.{dir}/{unit}"),
                target: target.clone(),
            });
        }
    }
    for v in &install.alias {
        let expanded = expand(v, &unit).map_err(|why| bad("Alias", v, why))?;
        let alias = UnitName::parse(&expanded).map_err(|e| bad("Alias", v, e.to_string()))?;
        if alias.suffix() != unit.suffix() {
            return Err(bad(
                "Alias",
                v,
                format!("an alias keeps the unit's type (.{})", unit.suffix()),
            ));
        }
        let alias = match (unit.instance(), alias.instance()) {
            (None, None) => alias,
            (Some(i), Some("")) => alias
                .with_instance(i)
                .map_err(|e| bad("Alias", v, e.to_string()))?,
            (Some(i), Some(j)) if i == j => alias,
            _ => {
                return Err(bad(
                    "Alias",
                    v,
                    format!(
                        "{unit}'s alias must be {} (a template alias for an instance, a plain \
                         name for a plain unit)",
                        if unit.instance().is_some() {
                            "a template"
                        } else {
                            "a plain name"
                        }
                    ),
                ))
            }
        };
        if alias == unit {
            return Err(bad(
                "Alias",
                v,
                "an alias must differ from the unit's name".into(),
            ));
        }
        links.push(Link {
            path: format!("{LINK_DIR}/{alias}"),
            target: target.clone(),
        });
    }
    let mut also = Vec::new();
    for v in &install.also {
        let expanded = expand(v, &unit).map_err(|why| bad("Also", v, why))?;
        also.push(UnitName::parse(&expanded).map_err(|e| bad("Also", v, e.to_string()))?);
    }
    if links.is_empty() && also.is_empty() {
        return Err(UnitError::NothingToEnable {
            unit: unit.to_string(),
            file: file.to_string(),
        });
    }
    Ok((links, also))
}
