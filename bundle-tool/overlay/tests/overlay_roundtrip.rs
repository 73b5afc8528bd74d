//! The overlay's good path: random safe trees round-trip exactly through
//! tar → apply (and applying twice changes nothing), archives written by
//! GNU tar apply to the same tree they came from, whiteouts delete, and the
//! permission and ownership policies hold.

mod overlay_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use overlay_support::{assert_no_staging, diff, snapshot, Fixture, Hdr, Tar};
use proptest::prelude::*;
use satchel_overlay::{self as extract, EntryKind, Options, Ownership};

/// One node of a generated tree.
#[derive(Clone, Debug)]
enum Gen {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        content: Vec<u8>,
    },
    /// Target: another path of the tree (may not exist: dangling is fine).
    Symlink {
        to: String,
    },
    /// An earlier file of the tree.
    Hardlink {
        to: String,
    },
}

/// A generated tree: paths in creation order, parents first.
#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<(String, Gen, u32)>,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The symlink text that reaches `to` from the directory holding `link`.
fn relative(link: &str, to: &str) -> String {
    let depth = link.matches('/').count();
    let mut s = "../".repeat(depth);
    s.push_str(to);
    s
}

/// A 255-byte name: 85 three-byte characters.
const LONGEST: &str = "日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日日";

const NAMES: &[&str] = &[
    "a",
    "b",
    "etc",
    "données",
    "日本語",
    "with space",
    "-dash",
    ".hidden",
    "emoji-🦀",
    // Longest name a filesystem takes (255 bytes, in UTF-8 too).
    LONGEST,
];

fn tree_strategy() -> impl Strategy<Value = Tree> {
    let item = (
        prop::collection::vec(0..NAMES.len(), 1..14),
        0u8..5,
        prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o400, 0o640, 0o000, 0o750]),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<prop::sample::Index>(),
        prop::sample::select(vec![0u32, 1000, 65534]),
    );
    prop::collection::vec(item, 1..40).prop_map(|items| {
        let mut kinds: BTreeMap<String, bool> = BTreeMap::new(); // path -> is_dir
        let mut nodes = Vec::new();
        let mut files: Vec<String> = Vec::new();
        'items: for (comps, kind, mode, content, pick, owner) in items {
            let comps: Vec<&str> = comps.iter().map(|&i| NAMES[i]).collect();
            // Parents: existing directories or new ones.
            for i in 1..comps.len() {
                let p = comps[..i].join("/");
                match kinds.get(&p) {
                    Some(true) => {}
                    Some(false) => continue 'items,
                    None => {
                        kinds.insert(p.clone(), true);
                        let dmode = [0o755, 0o700, 0o750, 0o555][i % 4];
                        nodes.push((p, Gen::Dir { mode: dmode }, owner));
                    }
                }
            }
            let path = comps.join("/");
            // Stay well below PATH_MAX once under a temp directory.
            if path.len() > 3000 {
                continue;
            }
            if kinds.contains_key(&path) {
                continue;
            }
            let all: Vec<String> = kinds.keys().cloned().collect();
            let g = match kind {
                0 => Gen::Dir { mode: mode | 0o700 },
                1 | 2 => Gen::File { mode, content },
                3 if !all.is_empty() => Gen::Symlink {
                    to: pick.get(&all).clone(),
                },
                4 if !files.is_empty() => Gen::Hardlink {
                    to: pick.get(&files).clone(),
                },
                _ => Gen::File {
                    mode,
                    content: Vec::new(),
                },
            };
            kinds.insert(path.clone(), matches!(g, Gen::Dir { .. }));
            if matches!(g, Gen::File { .. }) {
                files.push(path.clone());
            }
            nodes.push((path, g, owner));
        }
        Tree { nodes }
    })
}

/// The tree as a tar written by the `tar` crate (GNU headers, long names).
fn to_tar(tree: &Tree) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, g, owner) in &tree.nodes {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(u64::from(*owner));
        h.set_gid(u64::from(*owner));
        match g {
            Gen::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).expect("dir");
            }
            Gen::File { mode, content } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(content.len() as u64);
                b.append_data(&mut h, path, &content[..]).expect("file");
            }
            Gen::Symlink { to } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, relative(path, to))
                    .expect("symlink");
            }
            Gen::Hardlink { to } => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, path, to).expect("hardlink");
            }
        }
    }
    b.into_inner().expect("finish")
}

/// The tree made directly with std::fs: what the overlay must produce.
fn materialise(tree: &Tree, dir: &Path) {
    for (path, g, owner) in &tree.nodes {
        let p = dir.join(path);
        match g {
            Gen::Dir { .. } => fs::create_dir(&p).expect("mkdir"),
            Gen::File { content, .. } => fs::write(&p, content).expect("write"),
            Gen::Symlink { to } => symlink(relative(path, to), &p).expect("symlink"),
            Gen::Hardlink { to } => fs::hard_link(dir.join(to), &p).expect("link"),
        }
        // A hardlink shares its file's owner.
        if is_root() && !matches!(g, Gen::Hardlink { .. }) {
            lchown(&p, Some(*owner), Some(*owner)).expect("chown");
        }
    }
    // Modes last, deepest first, so read-only directories do not get in the way.
    for (path, g, _) in tree.nodes.iter().rev() {
        let mode = match g {
            Gen::Dir { mode } | Gen::File { mode, .. } => *mode,
            _ => continue,
        };
        fs::set_permissions(dir.join(path), fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_safe_trees_round_trip_and_apply_idempotently(tree in tree_strategy()) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (want_dir, root) = (tmp.path().join("want"), tmp.path().join("root"));
        fs::create_dir(&want_dir).expect("mkdir");
        fs::create_dir(&root).expect("mkdir");
        materialise(&tree, &want_dir);
        let want = snapshot(&want_dir);
        let bytes = to_tar(&tree);

        let summary = extract::check_archive(&bytes[..], &Options::default()).expect("check");
        prop_assert_eq!(summary.entries.len(), tree.nodes.len());

        extract::apply(&bytes[..], &root, &Options::default()).expect("first apply");
        let got = snapshot(&root);
        prop_assert!(got == want, "{}", diff(&got, &want));
        assert_no_staging(&root);

        extract::apply(&bytes[..], &root, &Options::default()).expect("second apply");
        let got = snapshot(&root);
        prop_assert!(got == want, "{}", diff(&got, &want));
        assert_no_staging(&root);
    }
}

/// Builds a varied tree on disk for the GNU tar interop tests.
fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc/ssh")).expect("mkdir");
    fs::create_dir_all(dir.join("usr/lib/deep/er/and/deeper")).expect("mkdir");
    fs::write(dir.join("etc/hostname"), "node-7\n").expect("write");
    fs::write(
        dir.join("etc/ssh/sshd_config"),
        "PermitRootLogin no\n".repeat(100),
    )
    .expect("write");
    fs::write(dir.join("etc/empty"), "").expect("write");
    fs::write(dir.join("usr/lib/deep/er/and/deeper/f"), "deep").expect("write");
    let long = "l".repeat(120);
    fs::write(dir.join("usr/lib").join(&long), "long name").expect("write");
    fs::write(dir.join("usr/lib/crème brûlée"), "unicode").expect("write");
    symlink("../usr/lib/deep", dir.join("etc/deep")).expect("symlink");
    symlink(
        format!("../../{}", "x/".repeat(60)),
        dir.join("usr/lib/dangling"),
    )
    .expect("symlink");
    fs::hard_link(dir.join("etc/hostname"), dir.join("etc/hostname.bak")).expect("link");
    fs::set_permissions(
        dir.join("etc/ssh/sshd_config"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    fs::set_permissions(dir.join("etc/ssh"), fs::Permissions::from_mode(0o700)).expect("chmod");
}

fn gnu_tar(dir: &Path, format: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg(format!("--format={format}"))
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("run tar (tests/run installs it)");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gnu_tar_archives_apply_to_the_same_tree() {
    for format in ["gnu", "pax", "ustar"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, root) = (tmp.path().join("src"), tmp.path().join("root"));
        fs::create_dir(&src).expect("mkdir");
        fs::create_dir(&root).expect("mkdir");
        sample_tree(&src);
        if format == "ustar" {
            // ustar cannot hold the long name or the long link.
            fs::remove_file(src.join("usr/lib").join("l".repeat(120))).expect("rm");
            fs::remove_file(src.join("usr/lib/dangling")).expect("rm");
        }
        let bytes = gnu_tar(&src, format);
        let summary = extract::check_archive(&bytes[..], &Options::default()).expect("check");
        // Whichever of the two hardlinked names tar met first is the file.
        let hostname = summary
            .entries
            .iter()
            .find(|e| e.path.starts_with("etc/hostname") && e.kind != EntryKind::Hardlink)
            .expect("listed");
        assert_eq!(hostname.kind, EntryKind::File);
        let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"node-7\n"));
        assert_eq!(hostname.sha256.as_deref(), Some(want.as_str()));
        extract::apply(&bytes[..], &root, &Options::default()).expect("apply");
        assert_eq!(snapshot(&src), snapshot(&root), "format {format}");
        assert_no_staging(&root);
    }
}

#[test]
fn python_tarfile_archives_apply_to_the_same_tree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, root) = (tmp.path().join("src"), tmp.path().join("root"));
    fs::create_dir(&src).expect("mkdir");
    fs::create_dir(&root).expect("mkdir");
    sample_tree(&src);
    // PAX is Python's default format; non-ASCII and long names get PAX records.
    let script = "import sys, tarfile\n\
                  with tarfile.open(fileobj=sys.stdout.buffer, mode='w|') as t:\n\
                  \x20   t.add(sys.argv[1], arcname='.')\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&src)
        .output()
        .expect("run python3 (tests/run installs it)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    extract::apply(&out.stdout[..], &root, &Options::default()).expect("apply");
    assert_eq!(snapshot(&src), snapshot(&root));
    assert_no_staging(&root);
}

#[test]
fn check_archive_hashes_file_contents() {
    let t = Tar::new()
        .file("a", b"abc")
        .dir("d")
        .symlink("d/l", "../a")
        .end();
    let s = extract::check_archive(&t[..], &Options::default()).expect("check");
    assert_eq!(
        s.entries[0].sha256.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(s.entries[2].link_target.as_deref(), Some("../a"));
    assert_eq!(s.tar_bytes, t.len() as u64);
    assert_eq!(s.file_bytes, 3);
}

#[test]
fn whiteouts_delete_files_directories_and_symlinks() {
    let fx = Fixture::new();
    symlink("hostname", fx.root.join("etc/name")).expect("symlink");
    fs::write(fx.root.join("var/lib/state"), "s").expect("write");
    let t = Tar::new()
        .file("etc/.wh.motd", b"")
        .file("etc/.wh.name", b"")
        .file(".wh.var", b"")
        .file("etc/.wh.never-existed", b"")
        .file("nope/.wh.missing-parent", b"")
        .dir("var")
        .file("var/new", b"fresh")
        .end();
    let applied = extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
    assert_eq!(applied.changes.removed, ["etc/motd", "etc/name", "var"]);
    assert!(!fx.root.join("etc/motd").exists());
    assert!(fs::symlink_metadata(fx.root.join("etc/name")).is_err());
    assert!(!fx.root.join("var/lib").exists());
    assert_eq!(fs::read(fx.root.join("var/new")).expect("read"), b"fresh");
    assert_eq!(
        fs::read(fx.root.join("etc/hostname")).expect("read"),
        b"node\n"
    );
    assert!(!fx.root.join("nope").exists(), "a whiteout creates nothing");
    assert_no_staging(&fx.root);
}

#[test]
fn merging_keeps_what_the_payload_does_not_name() {
    let fx = Fixture::new();
    let t = Tar::new()
        .file("etc/hostname", b"renamed\n")
        .file("etc/new.conf", b"n")
        .symlink("etc/link", "hostname")
        .end();
    let applied = extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
    assert_eq!(applied.changes.replaced, ["etc/hostname"]);
    assert_eq!(applied.changes.installed, ["etc/link", "etc/new.conf"]);
    assert_eq!(
        fs::read(fx.root.join("etc/motd")).expect("read"),
        b"hello\n"
    );
    assert_eq!(
        fs::read(fx.root.join("etc/hostname")).expect("read"),
        b"renamed\n"
    );
    assert!(fx.root.join("var/lib").is_dir());
}

#[test]
fn special_bits_are_dropped_unless_allowed() {
    let t = Tar::new()
        .file_mode("suid", b"#!/bin/sh\n", 0o4755)
        .file_mode("world", b"w", 0o666)
        .entry(
            Hdr {
                mode: 0o1777,
                ..Hdr::new("tmp", b'5')
            },
            b"",
        )
        .end();
    let mode =
        |root: &Path, p: &str| fs::symlink_metadata(root.join(p)).expect("stat").mode() & 0o7777;
    let fx = Fixture::new();
    extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
    assert_eq!(mode(&fx.root, "suid"), 0o755);
    assert_eq!(mode(&fx.root, "world"), 0o664);
    assert_eq!(mode(&fx.root, "tmp"), 0o775);
    let fx = Fixture::new();
    let allow = Options {
        allow_special_bits: true,
        ..Options::default()
    };
    extract::apply(&t[..], &fx.root, &allow).expect("apply");
    assert_eq!(mode(&fx.root, "suid"), 0o4755);
    assert_eq!(mode(&fx.root, "world"), 0o666);
    assert_eq!(mode(&fx.root, "tmp"), 0o1777);
}

#[test]
fn ownership_policies() {
    let mut h = Hdr::new("owned", b'0');
    h.uid = 4321;
    h.gid = 8765;
    let t = Tar::new().entry(h, b"").end();
    let fx = Fixture::new();
    let me = fs::metadata(&fx.root).expect("stat");
    let caller = Options {
        ownership: Ownership::Caller,
        ..Options::default()
    };
    extract::apply(&t[..], &fx.root, &caller).expect("apply");
    let m = fs::metadata(fx.root.join("owned")).expect("stat");
    assert_eq!((m.uid(), m.gid()), (me.uid(), me.gid()));
    if is_root() {
        let fx = Fixture::new();
        extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
        let m = fs::metadata(fx.root.join("owned")).expect("stat");
        assert_eq!((m.uid(), m.gid()), (4321, 8765));
    }
}

/// The overlay skips `chown` for files already created with the payload's
/// owner; the result must not depend on that, including under a
/// set-group-ID root whose group new files would inherit.
#[test]
fn owners_are_exact_whether_or_not_chown_was_needed() {
    if !is_root() {
        return;
    }
    let owned = |name: &str, uid: u32, gid: u32| {
        let mut h = Hdr::new(name, b'0');
        (h.uid, h.gid, h.size) = (uid, gid, 1);
        h
    };
    let (mine, half, other) = (
        owned("d/mine", 0, 0),
        owned("d/half", 0, 8765),
        owned("d/other", 4321, 0),
    );
    let t = Tar::new()
        .entry(mine, b"a")
        .entry(half, b"b")
        .entry(other, b"c")
        .end();
    for setgid in [false, true] {
        let fx = Fixture::new();
        if setgid {
            std::os::unix::fs::chown(&fx.root, None, Some(4242)).expect("chgrp");
            fs::set_permissions(&fx.root, fs::Permissions::from_mode(0o2755)).expect("chmod");
        }
        extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
        let owner = |n: &str| {
            let m = fs::metadata(fx.root.join("d").join(n)).expect("stat");
            (m.uid(), m.gid())
        };
        assert_eq!(owner("mine"), (0, 0), "setgid root: {setgid}");
        assert_eq!(owner("half"), (0, 8765), "setgid root: {setgid}");
        assert_eq!(owner("other"), (4321, 0), "setgid root: {setgid}");
    }
}

#[test]
fn root_entry_never_changes_the_root() {
    let fx = Fixture::new();
    fs::set_permissions(&fx.root, fs::Permissions::from_mode(0o750)).expect("chmod");
    let mut h = Hdr::new("./", b'5');
    h.mode = 0o777;
    let t = Tar::new().entry(h, b"").file("./etc/x", b"x").end();
    extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
    assert_eq!(fs::metadata(&fx.root).expect("stat").mode() & 0o7777, 0o750);
    assert!(fx.root.join("etc/x").is_file());
}

#[test]
fn existing_directory_takes_the_listed_mode() {
    let fx = Fixture::new();
    let mut h = Hdr::new("etc", b'5');
    h.mode = 0o700;
    let t = Tar::new().entry(h, b"").end();
    let applied = extract::apply(&t[..], &fx.root, &Options::default()).expect("apply");
    assert_eq!(applied.changes.updated_dirs, ["etc"]);
    assert_eq!(
        fs::metadata(fx.root.join("etc")).expect("stat").mode() & 0o7777,
        0o700
    );
    assert_eq!(
        fs::read(fx.root.join("etc/motd")).expect("read"),
        b"hello\n"
    );
}

#[test]
fn absolute_symlinks_are_link_content() {
    let fx = Fixture::new();
    let opts = Options::default();
    let t = Tar::new()
        .symlink(
            "etc/systemd/system/multi-user.target.wants/x.service",
            "/etc/systemd/system/x.service",
        )
        .symlink("etc/localtime", "/usr/share/zoneinfo/Europe/Berlin")
        .end();
    extract::check_archive(&t[..], &opts).expect("check");
    extract::apply(&t[..], &fx.root, &opts).expect("apply");
    assert_eq!(
        fs::read_link(fx.root.join("etc/localtime")).expect("link"),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    let target = fs::read_link(
        fx.root
            .join("etc/systemd/system/multi-user.target.wants/x.service"),
    )
    .expect("link");
    assert_eq!(target, Path::new("/etc/systemd/system/x.service"));
}

#[test]
fn manifest_counts_match() {
    let t = Tar::new()
        .dir("a")
        .file("a/b", b"12")
        .file(".wh.c", b"")
        .end();
    let opts = Options {
        expected_entries: Some(3),
        expected_size: Some(t.len() as u64),
        ..Options::default()
    };
    let fx = Fixture::new();
    extract::apply(&t[..], &fx.root, &opts).expect("apply");
    assert!(fx.root.join("a/b").is_file());
}

#[test]
fn missing_root_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = Tar::new().file("a", b"").end();
    let err =
        extract::apply(&t[..], &tmp.path().join("nope"), &Options::default()).expect_err("no root");
    assert!(matches!(
        err,
        extract::ExtractError::RootNotDirectory { .. }
    ));
}
