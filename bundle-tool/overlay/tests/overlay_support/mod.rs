//! Shared by the overlay tests: a byte-exact tar writer (so tests can build
//! archives no well-behaved writer would) and a snapshot of a directory
//! tree (paths, kinds, modes, owners, contents, link targets).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use satchel_overlay::{self as extract, ExtractError, Options, STAGING_PREFIX};

pub const BLOCK: usize = 512;

/// Header fields a test may want to set.
#[derive(Clone, Debug)]
pub struct Hdr {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub size: u64,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

impl Hdr {
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8) -> Self {
        Hdr {
            name: name.as_ref().to_vec(),
            typeflag,
            size: 0,
            link: Vec::new(),
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }

    /// The 512-byte POSIX ustar block, checksum included. Names longer than
    /// the field are cut (the caller adds a PAX/GNU header for them).
    pub fn block(&self) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        h[100..108].copy_from_slice(format!("{:07o}\0", self.mode).as_bytes());
        h[108..116].copy_from_slice(format!("{:07o}\0", self.uid).as_bytes());
        h[116..124].copy_from_slice(format!("{:07o}\0", self.gid).as_bytes());
        h[124..136].copy_from_slice(format!("{:011o}\0", self.size).as_bytes());
        h[136..148].copy_from_slice(format!("{:011o}\0", self.mtime).as_bytes());
        h[156] = self.typeflag;
        let l = self.link.len().min(100);
        h[157..157 + l].copy_from_slice(&self.link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        set_checksum(&mut h);
        h
    }
}

pub fn set_checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// PAX records with exact lengths.
pub fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len.to_string().len() + body != len {
            len = len.to_string().len() + body;
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A tar stream built block by block.
#[derive(Default, Clone)]
pub struct Tar(pub Vec<u8>);

impl Tar {
    pub fn new() -> Self {
        Tar(Vec::new())
    }

    /// A header block followed by `data` padded to a block.
    pub fn raw(mut self, block: [u8; BLOCK], data: &[u8]) -> Self {
        self.0.extend_from_slice(&block);
        self.data(data)
    }

    /// Appends data padded to a block.
    pub fn data(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn entry(self, h: Hdr, data: &[u8]) -> Self {
        let block = h.block();
        self.raw(block, data)
    }

    pub fn file(self, name: impl AsRef<[u8]>, data: &[u8]) -> Self {
        let mut h = Hdr::new(name, b'0');
        h.size = data.len() as u64;
        self.entry(h, data)
    }

    pub fn file_mode(self, name: impl AsRef<[u8]>, data: &[u8], mode: u32) -> Self {
        let mut h = Hdr::new(name, b'0');
        h.size = data.len() as u64;
        h.mode = mode;
        self.entry(h, data)
    }

    pub fn dir(self, name: impl AsRef<[u8]>) -> Self {
        self.entry(Hdr::new(name, b'5'), b"")
    }

    pub fn symlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut h = Hdr::new(name, b'2');
        h.link = target.as_ref().to_vec();
        h.mode = 0o777;
        self.entry(h, b"")
    }

    pub fn hardlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut h = Hdr::new(name, b'1');
        h.link = target.as_ref().to_vec();
        self.entry(h, b"")
    }

    /// A PAX extended header (`x`) with these records.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let body = pax_records(records);
        let mut h = Hdr::new("PaxHeaders/entry", b'x');
        h.size = body.len() as u64;
        self.entry(h, &body)
    }

    /// A PAX global header (`g`) with these records.
    pub fn pax_global(self, records: &[(&str, &[u8])]) -> Self {
        let body = pax_records(records);
        let mut h = Hdr::new("pax_global_header", b'g');
        h.size = body.len() as u64;
        self.entry(h, &body)
    }

    /// A GNU long name (`L`) or long link (`K`) header.
    pub fn gnu_long(self, typeflag: u8, value: &[u8]) -> Self {
        let mut body = value.to_vec();
        body.push(0);
        let mut h = Hdr::new("././@LongLink", typeflag);
        h.size = body.len() as u64;
        self.entry(h, &body)
    }

    /// The two zero blocks that end an archive.
    pub fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.0
    }
}

/// One node of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        content: Vec<u8>,
        ino_group: u64,
    },
    Symlink {
        target: PathBuf,
        uid: u32,
        gid: u32,
    },
    Other {
        mode: u32,
    },
}

/// Every path under `dir` (not following symlinks), with what it is.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, u64> = BTreeMap::new();
    walk(dir, dir, &mut out, &mut inodes);
    out
}

fn walk(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut BTreeMap<u64, u64>,
) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(base)
            .expect("under base")
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        let node = if ft.is_dir() {
            walk(base, &path, out, inodes);
            Node::Dir {
                mode,
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if ft.is_symlink() {
            Node::Symlink {
                target: fs::read_link(&path).expect("readlink"),
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if ft.is_file() {
            // Hardlinked files share a group number (first path's order).
            let next = inodes.len() as u64;
            let group = if meta.nlink() > 1 {
                *inodes.entry(meta.ino()).or_insert(next)
            } else {
                u64::MAX
            };
            Node::File {
                mode,
                uid: meta.uid(),
                gid: meta.gid(),
                content: fs::read(&path).expect("read"),
                ino_group: group,
            }
        } else {
            Node::Other { mode }
        };
        out.insert(rel, node);
    }
}

/// A root and an "outside" sibling holding a secret, in one temp dir.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
}

impl Fixture {
    /// A root with a few ordinary files, and `outside/secret`.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        fs::create_dir_all(root.join("var/lib")).expect("mkdir");
        fs::write(root.join("etc/hostname"), b"node\n").expect("write");
        fs::write(root.join("etc/motd"), b"hello\n").expect("write");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(outside.join("secret"), b"do not touch\n").expect("write");
        Fixture { tmp, root, outside }
    }

    /// Snapshot of everything in the temp dir (root and outside).
    pub fn snapshot(&self) -> BTreeMap<String, Node> {
        snapshot(self.tmp.path())
    }

    /// Applies `tar` and asserts it is refused with `check(err)`, that the
    /// whole temp dir (root and outside) is byte-for-byte as before, and
    /// that no staging directory is left; `check_archive` must refuse it too
    /// unless `root_dependent`.
    pub fn refuses(
        &self,
        tar: &[u8],
        opts: &Options,
        check: impl Fn(&ExtractError) -> bool,
    ) -> ExtractError {
        let before = self.snapshot();
        let err = extract::apply(tar, &self.root, opts).expect_err("hostile payload was applied");
        assert!(check(&err), "refused for the wrong reason: {err:?}");
        assert_eq!(
            before,
            self.snapshot(),
            "the tree changed although the payload was refused"
        );
        assert_no_staging(&self.root);
        err
    }
}

/// No staging directory is left in `root`.
pub fn assert_no_staging(root: &Path) {
    for e in fs::read_dir(root).expect("read root") {
        let name = e.expect("entry").file_name();
        assert!(
            !name.to_string_lossy().starts_with(STAGING_PREFIX),
            "staging directory {name:?} left behind"
        );
    }
}

/// The paths on which two snapshots differ, for failure messages.
pub fn diff(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>) -> String {
    let mut out = String::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        if a.get(k) != b.get(k) {
            out.push_str(&format!(
                "{k:?}:\n  got  {:?}\n  want {:?}\n",
                a.get(k),
                b.get(k)
            ));
        }
    }
    out
}
