//! The node's initrd overlay: a zstd-compressed newc cpio holding the static
//! fetcher, the node's enrollment (`satchel.toml` and the credentials it
//! names), the initrd hook, its systemd unit and its dracut pre-pivot hook.
//!
//! An operator appends it to a distro initrd (`cat initrd.img
//! overlay.cpio.zst > combined`): the kernel unpacks concatenated archives,
//! each one compressed on its own, one after the other over the same rootfs.
//!
//! # Invariants
//! - **Layout**: the paths are the ones the hook (`contrib/satchel-hook.sh`,
//!   embedded here) declares — [`FETCHER_PATH`], [`HOOK_PATH`],
//!   [`CONFIG_DIR`]`/satchel.toml` — plus the unit [`UNIT_PATH`], its
//!   `initrd.target.wants` link [`UNIT_WANTS_LINK`] and the dracut hook
//!   [`DRACUT_HOOK_PATH`]. A unit test checks that the embedded hook and
//!   unit still name these paths.
//! - **Only what the config names**: `satchel.toml` and the files it names
//!   (`ca_cert`, `client_cert`, `client_key`, `identities`, `signers`) go
//!   into [`CONFIG_DIR`] at the same relative paths; nothing else of the
//!   enrollment directory does. A name that is absolute or has `..` is
//!   refused, and so is a missing file: the image would not boot.
//! - **Secrets stay 0600** (`client_key`, `identities`), whatever their mode
//!   on the workstation; [`CONFIG_DIR`] is 0700; everything is owned 0:0.
//!   The output file itself is written 0600 (it holds the node's keys).
//! - **Deterministic**: entries sorted by path components (so every parent
//!   directory comes before its children), every mtime [`MTIME`], inodes
//!   numbered in order: the same inputs give the same bytes.
//! - **Never clobbers a distro's links**: the kernel replaces an existing
//!   path of another type (a `lib -> usr/lib` symlink would become an empty
//!   directory), so the overlay only creates directories that are real
//!   directories in distro initrds (`etc`, `usr/lib/...`, `var/lib/...`)
//!   and never `lib`, `bin` or `sbin`. It also sets the mode of those
//!   existing directories: they are all 0755.
//!
//! The dracut hook goes to `/var/lib/dracut/hooks/pre-pivot/` (dracut 060
//! and later; there `/lib/dracut/hooks` is a link to it, so it is not
//! created here). Older dracut reads `/lib/dracut/hooks` only; on systemd
//! initrds the unit runs the hook in any case, and the hook does nothing
//! when a run of this boot already succeeded.
//!
//! It does not build a whole initrd, add kernel modules, or check that the
//! fetcher is a static binary.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The static fetcher, as the hook calls it.
pub const FETCHER_PATH: &str = "usr/lib/satchel/satchel-fetch";
/// The hook script (`contrib/satchel-hook.sh`).
pub const HOOK_PATH: &str = "usr/lib/satchel/satchel-hook";
/// The node's enrollment directory (the hook reads `satchel.toml` in it).
pub const CONFIG_DIR: &str = "etc/satchel";
/// The node config's file name.
pub const CONFIG_FILE: &str = "satchel.toml";
/// The systemd unit that runs the hook.
pub const UNIT_PATH: &str = "usr/lib/systemd/system/satchel-fetch.service";
/// The link that makes `initrd.target` want the unit.
pub const UNIT_WANTS_LINK: &str =
    "usr/lib/systemd/system/initrd.target.wants/satchel-fetch.service";
/// Where [`UNIT_WANTS_LINK`] points (relative, as `systemctl enable` writes).
pub const UNIT_WANTS_TARGET: &str = "../satchel-fetch.service";
/// The dracut pre-pivot hook (dracut 060+ hook directory).
pub const DRACUT_HOOK_PATH: &str = "var/lib/dracut/hooks/pre-pivot/50-satchel.sh";

/// The hook script, embedded at build time.
pub const HOOK_SCRIPT: &str = include_str!("../../../contrib/satchel-hook.sh");
/// The systemd unit, embedded at build time.
pub const UNIT_FILE: &str = include_str!("../../../contrib/systemd/satchel-fetch.service");
/// The dracut pre-pivot hook, embedded at build time.
pub const DRACUT_HOOK: &str =
    include_str!("../../../contrib/dracut/95satchel/satchel-pre-pivot.sh");

/// Largest fetcher binary accepted (a static fetcher is about 3-4 MiB).
pub const MAX_FETCHER_BYTES: u64 = 64 << 20;
/// Largest `satchel.toml` or credential file accepted.
pub const MAX_ENROLL_FILE_BYTES: u64 = 1 << 20;
/// zstd level of the overlay (what dracut uses by default).
pub const ZSTD_LEVEL: i32 = 15;
/// The mtime of every entry (the epoch: builds are reproducible).
pub const MTIME: u32 = 0;

/// Mode of directories the overlay creates.
const DIR_MODE: u32 = 0o755;
/// Mode of [`CONFIG_DIR`].
const CONFIG_DIR_MODE: u32 = 0o700;
/// Mode of secret files.
const SECRET_MODE: u32 = 0o600;
/// Mode of public files.
const PUBLIC_MODE: u32 = 0o644;
/// Mode of programs.
const EXEC_MODE: u32 = 0o755;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Why an overlay could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitrdError {
    /// The enrollment directory has no `satchel.toml`.
    #[error("{dir} has no satchel.toml: give the directory `satchel-pki enroll` wrote")]
    NoConfig {
        /// The directory.
        dir: PathBuf,
    },
    /// `satchel.toml` is not valid for this purpose.
    #[error("{path}: {reason}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file the config names is absolute or leaves the directory.
    #[error("{field} = {name:?} in satchel.toml must be a path inside the enrollment directory (relative, no `..`)")]
    UnsafeName {
        /// The config field.
        field: String,
        /// The name.
        name: String,
    },
    /// A file the config names is missing or not a regular file.
    #[error("{field} names {path}, which is missing or not a regular file: the node could not boot with this overlay")]
    MissingFile {
        /// The config field.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// A file is over its limit.
    #[error("{path} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// What one entry of the overlay is.
#[derive(Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symlink and its target.
    Symlink(String),
}

impl std::fmt::Debug for NodeKind {
    // File contents are keys: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeKind::Dir => write!(f, "Dir"),
            NodeKind::File(b) => write!(f, "File({} bytes)", b.len()),
            NodeKind::Symlink(t) => write!(f, "Symlink({t:?})"),
        }
    }
}

/// One entry of the overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Path without a leading `/` (`etc/satchel/satchel.toml`).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: NodeKind,
}

/// One file of the enrollment: its relative path and whether it is secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollFile {
    /// The config field naming it (`client_key`, `identities`, ...).
    pub field: &'static str,
    /// Path relative to the enrollment directory.
    pub rel: String,
    /// Written 0600.
    pub secret: bool,
}

/// Checks that `name` is a plain relative path; returns it normalised.
fn relative_name(field: &str, name: &str) -> Result<String, InitrdError> {
    let unsafe_name = || InitrdError::UnsafeName {
        field: field.to_string(),
        name: name.to_string(),
    };
    let mut parts = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(unsafe_name)?.to_string()),
            Component::CurDir => {}
            _ => return Err(unsafe_name()),
        }
    }
    if parts.is_empty() || name.contains('\0') {
        return Err(unsafe_name());
    }
    Ok(parts.join("/"))
}

/// The files a `satchel.toml` text names, checked to be relative (pure).
/// `satchel.toml` itself comes first; a file named twice is listed once.
pub fn enrollment_files(
    config_text: &str,
    config_path: &Path,
) -> Result<Vec<EnrollFile>, InitrdError> {
    // The fetcher's own parser and checks: an image never carries a
    // config the fetcher would refuse.
    let named =
        satchel_pki::NodeConfig::parse(config_text).map_err(|e| InitrdError::BadConfig {
            path: config_path.to_path_buf(),
            reason: format!("not a node config: {e}"),
        })?;
    if named.identities.is_empty() || named.signers.is_empty() {
        return Err(InitrdError::BadConfig {
            path: config_path.to_path_buf(),
            reason: "needs at least one identity and one signer".into(),
        });
    }
    let text = |p: &std::path::Path, field: &str| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| InitrdError::UnsafeName {
                field: field.to_string(),
                name: p.display().to_string(),
            })
    };
    let (ca_cert, client_cert, client_key) = (
        text(&named.ca_cert, "ca_cert")?,
        text(&named.client_cert, "client_cert")?,
        text(&named.client_key, "client_key")?,
    );
    let identities = named
        .identities
        .iter()
        .map(|p| text(p, "identities"))
        .collect::<Result<Vec<_>, _>>()?;
    let signers = named
        .signers
        .iter()
        .map(|p| text(p, "signers"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = vec![EnrollFile {
        field: "satchel.toml",
        rel: CONFIG_FILE.into(),
        secret: false,
    }];
    let mut named_list: Vec<(&'static str, &str, bool)> = vec![
        ("ca_cert", &ca_cert, false),
        ("client_cert", &client_cert, false),
        ("client_key", &client_key, true),
    ];
    named_list.extend(identities.iter().map(|i| ("identities", i.as_str(), true)));
    named_list.extend(signers.iter().map(|s| ("signers", s.as_str(), false)));
    for (field, name, secret) in named_list {
        let rel = relative_name(field, name)?;
        match out.iter_mut().find(|f| f.rel == rel) {
            // Named twice: secret if either use is.
            Some(f) => f.secret |= secret,
            None => out.push(EnrollFile { field, rel, secret }),
        }
    }
    Ok(out)
}

/// Components of a path, for ordering parents before children.
fn components(path: &str) -> Vec<&str> {
    path.split('/').collect()
}

/// The overlay's entries (pure): the fixed files, the enrollment files
/// (`(relative path, secret, bytes)`) under [`CONFIG_DIR`], and every parent
/// directory, sorted so that parents come first.
pub fn plan(fetcher: Vec<u8>, enrollment: Vec<(String, bool, Vec<u8>)>) -> Vec<Node> {
    let mut nodes = vec![
        Node {
            path: FETCHER_PATH.into(),
            mode: EXEC_MODE,
            kind: NodeKind::File(fetcher),
        },
        Node {
            path: HOOK_PATH.into(),
            mode: EXEC_MODE,
            kind: NodeKind::File(HOOK_SCRIPT.as_bytes().to_vec()),
        },
        Node {
            path: UNIT_PATH.into(),
            mode: PUBLIC_MODE,
            kind: NodeKind::File(UNIT_FILE.as_bytes().to_vec()),
        },
        Node {
            path: UNIT_WANTS_LINK.into(),
            mode: 0o777,
            kind: NodeKind::Symlink(UNIT_WANTS_TARGET.into()),
        },
        Node {
            path: DRACUT_HOOK_PATH.into(),
            mode: EXEC_MODE,
            kind: NodeKind::File(DRACUT_HOOK.as_bytes().to_vec()),
        },
    ];
    for (rel, secret, bytes) in enrollment {
        nodes.push(Node {
            path: format!("{CONFIG_DIR}/{rel}"),
            mode: if secret { SECRET_MODE } else { PUBLIC_MODE },
            kind: NodeKind::File(bytes),
        });
    }
    let mut dirs: Vec<String> = Vec::new();
    for n in &nodes {
        let parts = components(&n.path);
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    for d in dirs {
        let mode = if d == CONFIG_DIR || d.starts_with(&format!("{CONFIG_DIR}/")) {
            CONFIG_DIR_MODE
        } else {
            DIR_MODE
        };
        nodes.push(Node {
            path: d,
            mode,
            kind: NodeKind::Dir,
        });
    }
    nodes.sort_by(|a, b| components(&a.path).cmp(&components(&b.path)));
    nodes
}

/// Writes `nodes` as a newc cpio (with its trailer) to `out`.
pub fn write_newc<W: Write>(nodes: &[Node], mut out: W) -> io::Result<W> {
    for (i, n) in nodes.iter().enumerate() {
        let ino = u32::try_from(i + 1).map_err(|_| io::Error::other("too many entries"))?;
        let (type_bits, data, nlink): (u32, &[u8], u32) = match &n.kind {
            NodeKind::Dir => (S_IFDIR, &[], 2),
            NodeKind::File(b) => (S_IFREG, b, 1),
            NodeKind::Symlink(t) => (S_IFLNK, t.as_bytes(), 1),
        };
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{} is over 4 GiB", n.path)))?;
        let mut w = cpio::newc::Builder::new(&n.path)
            .ino(ino)
            .mode(type_bits | (n.mode & 0o7777))
            .uid(0)
            .gid(0)
            .nlink(nlink)
            .mtime(MTIME)
            .write(out, size);
        // The crate's `finish` does not check that the whole size was
        // written: `write_all` of exactly `size` bytes does.
        w.write_all(data)?;
        out = w.finish()?;
    }
    cpio::newc::trailer(out)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InitrdError + '_ {
    move |source| InitrdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a regular file (following links) of at most `max` bytes.
fn read_limited(path: &Path, field: &str, max: u64) -> Result<Vec<u8>, InitrdError> {
    let missing = || InitrdError::MissingFile {
        field: field.to_string(),
        path: path.to_path_buf(),
    };
    let meta = std::fs::metadata(path).map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    if meta.len() > max {
        return Err(InitrdError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(io_err(path))?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > max {
        return Err(InitrdError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// Reads the enrollment directory and the fetcher and returns the overlay's
/// entries ([`plan`]).
pub fn collect(enroll_dir: &Path, fetcher: &Path) -> Result<Vec<Node>, InitrdError> {
    let config = enroll_dir.join(CONFIG_FILE);
    if !config.is_file() {
        return Err(InitrdError::NoConfig {
            dir: enroll_dir.to_path_buf(),
        });
    }
    let text = read_limited(&config, CONFIG_FILE, MAX_ENROLL_FILE_BYTES)?;
    let text = String::from_utf8(text).map_err(|_| InitrdError::BadConfig {
        path: config.clone(),
        reason: "not UTF-8".into(),
    })?;
    let files = enrollment_files(&text, &config)?;
    let mut enrollment = Vec::new();
    for f in files {
        let path = enroll_dir.join(&f.rel);
        let bytes = read_limited(&path, f.field, MAX_ENROLL_FILE_BYTES)?;
        enrollment.push((f.rel, f.secret, bytes));
    }
    let fetcher_bytes = read_limited(fetcher, "--fetcher", MAX_FETCHER_BYTES)?;
    Ok(plan(fetcher_bytes, enrollment))
}

/// Builds the overlay of `enroll_dir` and `fetcher` into `out` (zstd newc
/// cpio, mode 0600, written beside `out` and renamed into place).
/// Returns the entries written.
pub fn build(enroll_dir: &Path, fetcher: &Path, out: &Path) -> Result<Vec<Node>, InitrdError> {
    let nodes = collect(enroll_dir, fetcher)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".satchel-initrd-")
        .tempfile_in(dir)
        .map_err(io_err(out))?;
    let enc =
        zstd::stream::write::Encoder::new(tmp.as_file_mut(), ZSTD_LEVEL).map_err(io_err(out))?;
    let enc = write_newc(&nodes, enc).map_err(io_err(out))?;
    enc.finish().map_err(io_err(out))?;
    tmp.as_file_mut().sync_all().map_err(io_err(out))?;
    tmp.persist(out).map_err(|e| InitrdError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
version = 1
mac = "aa-bb-cc-dd-ee-ff"
domain = "example.test"
ca_cert = "ca.pem"
client_cert = "node.pem"
client_key = "./keys/node.key"
identities = ["keys/host.age", "keys/site.age"]
signers = ["signers/alice.pub"]
clock_floor = "2026-01-01T00:00:00Z"
"#;

    fn read_back(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r: &[u8] = bytes;
        loop {
            let mut e = cpio::newc::Reader::new(r).expect("entry");
            if e.entry().is_trailer() {
                break;
            }
            let name = e.entry().name().to_string();
            let mode = e.entry().mode();
            assert_eq!(e.entry().mtime(), MTIME);
            assert_eq!((e.entry().uid(), e.entry().gid()), (0, 0));
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("data");
            out.push((name, mode, data));
            r = e.finish().expect("next");
        }
        out
    }

    #[test]
    fn the_embedded_hook_and_unit_name_these_paths() {
        assert!(HOOK_SCRIPT.contains(&format!(
            "SATCHEL_FETCH=${{SATCHEL_FETCH:-/{FETCHER_PATH}}}"
        )));
        assert!(HOOK_SCRIPT.contains(&format!(
            "SATCHEL_CONFIG=${{SATCHEL_CONFIG:-/{CONFIG_DIR}/{CONFIG_FILE}}}"
        )));
        assert!(UNIT_FILE.contains(&format!("ExecStart=/{HOOK_PATH}\n")));
        assert!(UNIT_FILE.contains("WantedBy=initrd.target"));
        assert!(DRACUT_HOOK.contains(&format!("/{HOOK_PATH}")));
        assert!(UNIT_WANTS_LINK.ends_with(UNIT_WANTS_TARGET.trim_start_matches("../")));
    }

    #[test]
    fn enrollment_files_lists_what_the_config_names() {
        let files = enrollment_files(CONFIG, Path::new("satchel.toml")).expect("valid");
        let got: Vec<(&str, bool)> = files.iter().map(|f| (f.rel.as_str(), f.secret)).collect();
        assert_eq!(
            got,
            vec![
                ("satchel.toml", false),
                ("ca.pem", false),
                ("node.pem", false),
                ("keys/node.key", true),
                ("keys/host.age", true),
                ("keys/site.age", true),
                ("signers/alice.pub", false),
            ]
        );
    }

    #[test]
    fn enrollment_files_refuses_hostile_names() {
        for (field, bad) in [
            ("ca_cert", "/etc/ssl/ca.pem"),
            ("client_key", "../other-node/node.key"),
            ("client_key", "keys/../../x"),
            ("ca_cert", ""),
            ("ca_cert", "."),
        ] {
            let text = CONFIG.replace(
                match field {
                    "ca_cert" => "ca_cert = \"ca.pem\"",
                    _ => "client_key = \"./keys/node.key\"",
                },
                &format!("{field} = {bad:?}"),
            );
            let err = enrollment_files(&text, Path::new("satchel.toml")).expect_err(bad);
            assert!(
                matches!(err, InitrdError::UnsafeName { .. }),
                "{bad}: {err}"
            );
        }
        let err =
            enrollment_files("version = 1", Path::new("satchel.toml")).expect_err("incomplete");
        assert!(matches!(err, InitrdError::BadConfig { .. }), "{err}");
        let no_id = CONFIG.replace(
            "identities = [\"keys/host.age\", \"keys/site.age\"]",
            "identities = []",
        );
        assert!(matches!(
            enrollment_files(&no_id, Path::new("satchel.toml")),
            Err(InitrdError::BadConfig { .. })
        ));
    }

    #[test]
    fn a_file_named_as_public_and_secret_is_secret() {
        let text = CONFIG.replace("ca_cert = \"ca.pem\"", "ca_cert = \"keys/node.key\"");
        let files = enrollment_files(&text, Path::new("satchel.toml")).expect("valid");
        let key: Vec<_> = files.iter().filter(|f| f.rel == "keys/node.key").collect();
        assert_eq!(key.len(), 1);
        assert!(key[0].secret);
    }

    #[test]
    fn plan_orders_parents_first_and_keeps_secrets_0600() {
        let nodes = plan(
            b"fetcher".to_vec(),
            vec![
                ("satchel.toml".into(), false, b"cfg".to_vec()),
                ("keys/node.key".into(), true, b"secret".to_vec()),
            ],
        );
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        for (i, n) in nodes.iter().enumerate() {
            if let Some((parent, _)) = n.path.rsplit_once('/') {
                let p = paths
                    .iter()
                    .position(|x| *x == parent)
                    .expect("parent emitted");
                assert!(p < i, "{parent} after {}", n.path);
            }
        }
        let mut sorted = paths.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), paths.len(), "no duplicates");
        for top in ["lib", "bin", "sbin", "lib64"] {
            assert!(!paths.contains(&top), "{top} must never be emitted");
        }
        let mode = |p: &str| nodes.iter().find(|n| n.path == p).map(|n| n.mode);
        assert_eq!(mode("etc/satchel/keys/node.key"), Some(0o600));
        assert_eq!(mode("etc/satchel/satchel.toml"), Some(0o644));
        assert_eq!(mode("etc/satchel"), Some(0o700));
        assert_eq!(mode(FETCHER_PATH), Some(0o755));
        assert_eq!(mode("usr/lib"), Some(0o755));
    }

    #[test]
    fn write_newc_round_trips_and_is_deterministic() {
        let mk = || {
            plan(
                b"\x7fELF fetcher".to_vec(),
                vec![("satchel.toml".into(), false, b"cfg".to_vec())],
            )
        };
        let a = write_newc(&mk(), Vec::new()).expect("write");
        let b = write_newc(&mk(), Vec::new()).expect("write");
        assert_eq!(a, b);
        let entries = read_back(&a);
        let find = |p: &str| entries.iter().find(|e| e.0 == p).expect(p);
        assert_eq!(find(FETCHER_PATH).2, b"\x7fELF fetcher");
        assert_eq!(find(FETCHER_PATH).1, S_IFREG | 0o755);
        assert_eq!(find(UNIT_WANTS_LINK).1, S_IFLNK | 0o777);
        assert_eq!(find(UNIT_WANTS_LINK).2, UNIT_WANTS_TARGET.as_bytes());
        assert_eq!(find("etc").1, S_IFDIR | 0o755);
        assert_eq!(find(HOOK_PATH).2, HOOK_SCRIPT.as_bytes());
    }

    #[test]
    fn debug_never_shows_file_bytes() {
        let n = Node {
            path: "k".into(),
            mode: 0o600,
            kind: NodeKind::File(b"AGE-SECRET-KEY-1XYZ".to_vec()),
        };
        assert!(!format!("{n:?}").contains("AGE-SECRET"));
    }
}
