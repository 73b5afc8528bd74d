//! The directory packer behind `create --from-dir`: a deterministic payload
//! tar holding only what the overlay accepts.
//!
//! Policy (also in `FORMAT.md`):
//! - entries in byte order of their names, each directory before its
//!   contents; the source directory itself is not an entry; names are
//!   relative (`etc/hosts`), UTF-8, without `.` or `..` components;
//! - regular files, directories, and symlinks whose target stays inside
//!   the tree: a relative target checked lexically from the link's
//!   directory, or an absolute one (`/usr/share/zoneinfo/UTC`), kept as it
//!   is: it is link content, read from the node's root after switch-root.
//!   Devices, FIFOs and sockets are refused; hard-linked files are stored as
//!   separate regular files;
//! - permission bits are kept; setuid, setgid, sticky and world-writable
//!   bits are refused unless the bundle's policy allows special bits
//!   (the overlay would drop them, so the packer says so up front);
//! - owners are numeric: `0:0` by default, or the source's uid/gid with
//!   `keep_owners`; user and group names are never stored;
//! - mtimes are the source's (clamped at 0), or one fixed time for every
//!   entry when [`PackOptions::mtime`] says so (rendered templates, whose
//!   files are new at every run); ustar headers, with GNU long names only
//!   for paths that do not fit ustar's 255 bytes.
//!
//! - extra symlinks computed by the caller ([`PackOptions::links`], e.g.
//!   `create --enable`) come after the tree's entries, in byte order of
//!   their names, each preceded by the parent directories the tree lacks
//!   (mode 0755); their targets follow the same rules as the tree's links
//!   (absolute ones, such as `/usr/lib/systemd/system/x.service`, are read
//!   from the node's root after switch-root); a link the tree already holds
//!   with the same target is packed once, in its place; any other entry of
//!   that name is refused.
//!
//! A file whose size changes while it is read makes packing fail rather
//! than produce a tar whose header and data disagree.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::SealError;

/// Most entries a packed tree may have: what the overlay accepts by default.
pub const MAX_PACK_ENTRIES: u64 = satchel_overlay::MAX_ENTRIES;

/// Deepest directory nesting packed: what the overlay accepts by default.
pub const MAX_PACK_DEPTH: usize = satchel_overlay::MAX_PATH_DEPTH;

/// Longest entry name (whole path) packed: what the overlay accepts by default.
pub const MAX_PACK_PATH_LEN: usize = satchel_overlay::MAX_PATH_LEN;

/// Files up to this size are read whole into one reused buffer.
pub const SMALL_FILE_BYTES: u64 = 1024 * 1024;

/// Read size for larger files.
const LARGE_READ_BYTES: usize = 256 * 1024;

/// The bits refused without `allow_special_bits`: setuid, setgid, sticky,
/// world-writable.
pub const SPECIAL_BITS: u32 = 0o7002;

/// How to pack.
#[derive(Clone, Debug, Default)]
pub struct PackOptions {
    /// Store the source's numeric uid/gid instead of 0:0.
    pub keep_owners: bool,
    /// Allow setuid, setgid, sticky and world-writable bits.
    pub allow_special_bits: bool,
    /// Store this mtime for every entry instead of the source's.
    pub mtime: Option<u64>,
    /// Symlinks added after the tree's entries, or accepted with their
    /// absolute target where the tree has them (see the module's policy).
    pub links: Vec<PackLink>,
}

/// A symlink the packer adds to a tree: `path` (relative, `a/b/name`) → `target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackLink {
    /// The link's name in the payload.
    pub path: String,
    /// Where it points: relative and inside the tree, or absolute (from the
    /// node's root).
    pub target: String,
}

/// Writes the tar of `root` to `out`. Returns `out` and the entry count.
pub fn pack_dir<W: Write>(root: &Path, opts: &PackOptions, out: W) -> Result<(W, u64), SealError> {
    let meta = fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(SealError::Unpackable {
            path: root.display().to_string(),
            reason: "not a directory".into(),
        });
    }
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut count = 0u64;
    let mut scratch = Vec::new();
    walk(root, "", 0, opts, &mut b, &mut count, &mut scratch)?;
    append_links(root, opts, &mut b, &mut count)?;
    let out = b.into_inner()?;
    Ok((out, count))
}

fn unpackable(path: &str, reason: impl Into<String>) -> SealError {
    SealError::Unpackable {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn walk<W: Write>(
    dir: &Path,
    rel: &str,
    depth: usize,
    opts: &PackOptions,
    b: &mut tar::Builder<W>,
    count: &mut u64,
    scratch: &mut Vec<u8>,
) -> Result<(), SealError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let name_str = name.to_str().ok_or_else(|| {
            unpackable(
                &format!("{rel}{}", name.to_string_lossy()),
                "name is not UTF-8",
            )
        })?;
        if name_str
            .chars()
            .any(|c| c.is_control() || satchel_overlay::is_format_char(c))
            || name_str.len() > MAX_NAME_LEN
        {
            return Err(unpackable(
                &format!("{rel}{}", name_str.escape_debug()),
                format!(
                    "name has control or invisible format characters, or is longer than \
                     {MAX_NAME_LEN} bytes"
                ),
            ));
        }
        let path = format!("{rel}{name_str}");
        if depth + 1 > MAX_PACK_DEPTH {
            return Err(unpackable(
                &path,
                format!("nested deeper than {MAX_PACK_DEPTH} components"),
            ));
        }
        if path.len() + 1 > MAX_PACK_PATH_LEN {
            return Err(unpackable(
                &path,
                format!("path longer than {MAX_PACK_PATH_LEN} bytes"),
            ));
        }
        let full = dir.join(&name);
        let meta = fs::symlink_metadata(&full)?;
        *count += 1;
        if *count > MAX_PACK_ENTRIES {
            return Err(unpackable(
                &path,
                format!("more than {MAX_PACK_ENTRIES} entries"),
            ));
        }
        let ft = meta.file_type();
        let mut h = tar::Header::new_ustar();
        h.set_mtime(
            opts.mtime
                .unwrap_or_else(|| u64::try_from(meta.mtime()).unwrap_or(0)),
        );
        if opts.keep_owners {
            h.set_uid(u64::from(meta.uid()));
            h.set_gid(u64::from(meta.gid()));
        } else {
            h.set_uid(0);
            h.set_gid(0);
        }
        if ft.is_symlink() {
            let target = fs::read_link(&full)?;
            let target = target
                .to_str()
                .ok_or_else(|| unpackable(&path, "symlink target is not UTF-8"))?;
            check_link_target(rel, target).map_err(|why| unpackable(&path, why))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, &path, target)?;
            continue;
        }
        let mode = meta.mode() & 0o7777;
        if mode & SPECIAL_BITS != 0 && !opts.allow_special_bits {
            return Err(unpackable(
                &path,
                format!(
                    "mode {mode:04o} has setuid/setgid/sticky or world-writable bits; \
                     change the mode or allow special bits in the bundle's policy"
                ),
            ));
        }
        h.set_mode(mode);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{path}/"), io::empty())?;
            walk(
                &full,
                &format!("{path}/"),
                depth + 1,
                opts,
                b,
                count,
                scratch,
            )?;
        } else if ft.is_file() {
            let size = meta.len();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            let mut file = fs::File::open(&full)?;
            if size <= SMALL_FILE_BYTES {
                // One read for the whole file. A file that shrank fails here;
                // bytes appended meanwhile are not taken (as `tar` does).
                scratch.clear();
                scratch.resize(size as usize, 0);
                file.read_exact(scratch)
                    .map_err(|_| unpackable(&path, "the file changed size while being packed"))?;
                b.append_data(&mut h, &path, &scratch[..])?;
            } else {
                let exact = Exact {
                    inner: file.take(size + 1),
                    remaining: size,
                    path: &path,
                };
                b.append_data(
                    &mut h,
                    &path,
                    io::BufReader::with_capacity(LARGE_READ_BYTES, exact),
                )?;
            }
        } else {
            let kind = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "not a regular file, directory or symlink"
            };
            return Err(unpackable(
                &path,
                format!("{kind}; bundles hold files, directories and symlinks only"),
            ));
        }
    }
    Ok(())
}

/// Appends [`PackOptions::links`] after the tree's entries, with the
/// parent directories the tree does not have.
fn append_links<W: Write>(
    root: &Path,
    opts: &PackOptions,
    b: &mut tar::Builder<W>,
    count: &mut u64,
) -> Result<(), SealError> {
    let mut links = opts.links.clone();
    links.sort();
    let mut made = BTreeSet::new();
    let mtime = opts.mtime.unwrap_or(0);
    let mut bump = |path: &str| {
        *count += 1;
        if *count > MAX_PACK_ENTRIES {
            return Err(unpackable(
                path,
                format!("more than {MAX_PACK_ENTRIES} entries"),
            ));
        }
        Ok(())
    };
    for link in &links {
        let path = link.path.as_str();
        check_added_name(path).map_err(|why| unpackable(path, why))?;
        let components: Vec<&str> = path.split('/').collect();
        let mut parent = String::new();
        for c in &components[..components.len() - 1] {
            parent.push_str(c);
            parent.push('/');
            if made.contains(&parent) {
                continue;
            }
            match fs::symlink_metadata(root.join(parent.trim_end_matches('/'))) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(unpackable(
                        path,
                        format!("{parent} is not a directory in the tree"),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    bump(&parent)?;
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_mtime(mtime);
                    h.set_size(0);
                    b.append_data(&mut h, &parent, io::empty())?;
                }
                Err(e) => return Err(e.into()),
            }
            made.insert(parent.clone());
        }
        match fs::symlink_metadata(root.join(path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // The tree has this very link: the walk packed it.
            Ok(m)
                if m.file_type().is_symlink()
                    && fs::read_link(root.join(path))?.to_str() == Some(link.target.as_str()) =>
            {
                continue
            }
            Ok(_) => {
                return Err(unpackable(
                    path,
                    "the tree already has an entry of this name",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let target = link.target.as_str();
        check_link_target(&parent, target).map_err(|why| unpackable(path, why))?;
        if target.len() + 1 > MAX_PACK_PATH_LEN {
            return Err(unpackable(
                path,
                format!("symlink target longer than {MAX_PACK_PATH_LEN} bytes"),
            ));
        }
        bump(path)?;
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_link(&mut h, path, target)?;
    }
    Ok(())
}

/// The name of an added link: relative, normal components, within the limits.
fn check_added_name(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        return Err("an added link needs a relative name like dir/name".into());
    }
    if path.len() + 1 > MAX_PACK_PATH_LEN {
        return Err(format!("path longer than {MAX_PACK_PATH_LEN} bytes"));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_PACK_DEPTH {
        return Err(format!("nested deeper than {MAX_PACK_DEPTH} components"));
    }
    for c in components {
        if c.is_empty() || c == "." || c == ".." || c.len() > MAX_NAME_LEN {
            return Err(format!(
                "component {c:?} is empty, `.`, `..` or longer than {MAX_NAME_LEN} bytes"
            ));
        }
        if c.chars()
            .any(|ch| ch.is_control() || satchel_overlay::is_format_char(ch))
        {
            return Err("name has control or invisible format characters".into());
        }
    }
    Ok(())
}

/// Checks a symlink target as the overlay does: non-empty, no control
/// characters, `..` only as a leading run (`../../x`), and never climbing
/// above the tree's root, from the link's directory `rel` (`""` or `a/b/`)
/// for a relative target, from the root for an absolute one (`/etc/x`,
/// which the node reads from its own root: `/..` is refused).
pub fn check_link_target(rel: &str, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("empty symlink target".into());
    }
    if target
        .chars()
        .any(|c| c.is_control() || satchel_overlay::is_format_char(c))
    {
        return Err(format!(
            "symlink target {target:?} has control or invisible format characters"
        ));
    }
    let start = if target.starts_with('/') {
        0
    } else {
        rel.split('/').filter(|c| !c.is_empty()).count()
    };
    let (mut ups, mut seen_name) = (0usize, false);
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if seen_name => {
                return Err(format!(
                    "symlink target {target:?} has `..` after a name; normalise it"
                ))
            }
            ".." => ups += 1,
            c if c.len() > MAX_NAME_LEN => {
                return Err(format!(
                    "symlink target has a component longer than {MAX_NAME_LEN} bytes"
                ))
            }
            _ => seen_name = true,
        }
    }
    if ups > start {
        return Err(format!("symlink target {target:?} points outside the tree"));
    }
    Ok(())
}

/// Longest path component (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = satchel_overlay::MAX_NAME_LEN;

/// Reads exactly `remaining` bytes or fails: a file that shrinks or grows
/// while being packed is an error, never a tar whose sizes disagree.
struct Exact<'a, R> {
    inner: R,
    remaining: u64,
    path: &'a str,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One byte more than the size means the file grew.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::other(format!(
                    "{} grew while being packed",
                    self.path
                )));
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while being packed",
                self.path
            )));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("etc/ssh")).unwrap();
        fs::write(p.join("etc/hostname"), "node1\n").unwrap();
        fs::write(p.join("etc/ssh/sshd_config"), "PermitRootLogin no\n").unwrap();
        fs::write(p.join("empty"), "").unwrap();
        symlink("hostname", p.join("etc/name")).unwrap();
        symlink("../etc/hostname", p.join("etc/ssh/up")).unwrap();
        for f in ["etc", "etc/ssh"] {
            fs::set_permissions(p.join(f), fs::Permissions::from_mode(0o755)).unwrap();
        }
        for f in ["etc/hostname", "etc/ssh/sshd_config", "empty"] {
            fs::set_permissions(p.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        d
    }

    fn list(tar_bytes: &[u8]) -> Vec<(String, char, u32, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    char::from(h.entry_type().as_byte()),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn packs_sorted_with_root_owner_by_default() {
        let d = tree();
        let (bytes, n) = pack_dir(d.path(), &PackOptions::default(), Vec::new()).unwrap();
        let got = list(&bytes);
        assert_eq!(n, got.len() as u64);
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "empty",
                "etc/",
                "etc/hostname",
                "etc/name",
                "etc/ssh/",
                "etc/ssh/sshd_config",
                "etc/ssh/up"
            ]
        );
        assert!(got.iter().all(|e| e.3 == 0));
        assert_eq!(got[1].1, '5');
        assert_eq!(got[3].1, '2');
        assert_eq!(got[2].2, 0o644);
        // Deterministic.
        let (again, _) = pack_dir(d.path(), &PackOptions::default(), Vec::new()).unwrap();
        assert_eq!(bytes, again);
    }

    #[test]
    fn refuses_what_the_overlay_would_refuse() {
        let d = tree();
        symlink("../../../outside", d.path().join("etc/ssh/bad")).unwrap();
        let Err(e) = pack_dir(d.path(), &PackOptions::default(), Vec::new()) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("etc/ssh/bad"), "{e}");

        let d = tree();
        symlink("/../etc/passwd", d.path().join("abs")).unwrap();
        assert!(pack_dir(d.path(), &PackOptions::default(), Vec::new()).is_err());

        let d = tree();
        fs::set_permissions(d.path().join("empty"), fs::Permissions::from_mode(0o4755)).unwrap();
        let Err(e) = pack_dir(d.path(), &PackOptions::default(), Vec::new()) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("4755"), "{e}");
        let opts = PackOptions {
            allow_special_bits: true,
            ..Default::default()
        };
        let (bytes, _) = pack_dir(d.path(), &opts, Vec::new()).unwrap();
        assert_eq!(list(&bytes)[0].2, 0o4755);

        let d = tree();
        fs::set_permissions(d.path().join("empty"), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(pack_dir(d.path(), &PackOptions::default(), Vec::new()).is_err());

        let d = tree();
        let fifo = d.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let Err(e) = pack_dir(d.path(), &PackOptions::default(), Vec::new()) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn link_targets() {
        for (rel, target) in [
            ("", "a"),
            ("a/", ".."),
            ("a/b/", "../../c"),
            ("", "./x/./y"),
            ("", "/etc"),
            ("etc/", "/usr/share/zoneinfo/Europe/Berlin"),
            ("", "/"),
        ] {
            assert!(check_link_target(rel, target).is_ok(), "{rel} {target}");
        }
        for (rel, target) in [
            ("", ".."),
            ("a/", "../.."),
            ("a/", "/../etc"),
            ("", "/a/../../etc"),
            ("", ""),
            ("a/", "x/../y"),
            ("", "a\nb"),
        ] {
            assert!(check_link_target(rel, target).is_err(), "{rel} {target}");
        }
    }

    fn link_entries(tar_bytes: &[u8]) -> Vec<(String, char, String)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let target = e
                    .link_name()
                    .unwrap()
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                (
                    e.path().unwrap().display().to_string(),
                    char::from(e.header().entry_type().as_byte()),
                    target,
                )
            })
            .collect()
    }

    #[test]
    fn added_links_follow_the_tree_with_the_parents_it_lacks() {
        let d = tree();
        let link = |path: &str, target: &str| PackLink {
            path: path.into(),
            target: target.into(),
        };
        let opts = PackOptions {
            links: vec![
                link(
                    "etc/systemd/system/b.target.wants/x.service",
                    "/lib/x.service",
                ),
                link(
                    "etc/systemd/system/a.target.wants/x.service",
                    "/lib/x.service",
                ),
                link("etc/alias", "hostname"),
            ],
            ..Default::default()
        };
        let (bytes, n) = pack_dir(d.path(), &opts, Vec::new()).unwrap();
        let got = link_entries(&bytes);
        assert_eq!(n, got.len() as u64);
        let added: Vec<(&str, char, &str)> = got[7..]
            .iter()
            .map(|(p, k, t)| (p.as_str(), *k, t.as_str()))
            .collect();
        assert_eq!(
            added,
            [
                ("etc/alias", '2', "hostname"),
                ("etc/systemd/", '5', ""),
                ("etc/systemd/system/", '5', ""),
                ("etc/systemd/system/a.target.wants/", '5', ""),
                (
                    "etc/systemd/system/a.target.wants/x.service",
                    '2',
                    "/lib/x.service"
                ),
                ("etc/systemd/system/b.target.wants/", '5', ""),
                (
                    "etc/systemd/system/b.target.wants/x.service",
                    '2',
                    "/lib/x.service"
                ),
            ]
        );
        // The tree's own entries are unchanged, and first.
        let (plain, _) = pack_dir(d.path(), &PackOptions::default(), Vec::new()).unwrap();
        assert_eq!(link_entries(&plain), got[..7]);

        // A listed link the tree already has is packed once, in its place.
        let d = tree();
        symlink("/lib/x.service", d.path().join("etc/x.service")).unwrap();
        assert!(pack_dir(d.path(), &PackOptions::default(), Vec::new()).is_ok());
        let opts = PackOptions {
            links: vec![link("etc/x.service", "/lib/x.service")],
            ..Default::default()
        };
        let (bytes, n) = pack_dir(d.path(), &opts, Vec::new()).unwrap();
        let got = link_entries(&bytes);
        assert_eq!(n, 8);
        assert_eq!(
            got.iter().filter(|e| e.0 == "etc/x.service").count(),
            1,
            "{got:?}"
        );

        let d = tree();
        for (path, target, why) in [
            ("etc/hostname", "/x", "already has an entry"),
            ("etc/hostname/x", "/x", "not a directory"),
            ("../x", "/x", "`..`"),
            ("/etc/x", "/x", "relative name"),
            ("etc//x", "/x", "empty"),
            ("etc/x", "/../etc/passwd", "outside"),
            ("etc/x", "../../up", "outside"),
            (
                "etc/x
", "/x", "control",
            ),
        ] {
            let opts = PackOptions {
                links: vec![link(path, target)],
                ..Default::default()
            };
            let Err(e) = pack_dir(d.path(), &opts, Vec::new()) else {
                panic!("accepted {path} -> {target}")
            };
            assert!(e.to_string().contains(why), "{path} -> {target}: {e}");
        }
    }

    #[test]
    fn long_names_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let deep = "d".repeat(120);
        fs::create_dir_all(d.path().join(&deep).join(&deep).join(&deep)).unwrap();
        fs::write(d.path().join(&deep).join(&deep).join(&deep).join("f"), "x").unwrap();
        let (bytes, n) = pack_dir(d.path(), &PackOptions::default(), Vec::new()).unwrap();
        assert_eq!(n, 4);
        let got = list(&bytes);
        assert_eq!(got[3].0, format!("{deep}/{deep}/{deep}/f"));
    }
}
