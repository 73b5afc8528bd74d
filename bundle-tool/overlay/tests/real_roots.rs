//! Payloads over real distribution roots: merged-/usr (`lib -> usr/lib`),
//! absolute links, the root's symlinks resolved inside the root (as after
//! switch-root), and mounts a whiteout must never cross.
//!
//! Every refusal leaves the root and its sibling `outside/` exactly as they
//! were and no staging behind (`Fixture::refuses`). The mount tests run in
//! a child process of their own, in a private mount namespace
//! (`unshare -m --propagation private`), so no mount outlives them.

mod overlay_support;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::Command;

use overlay_support::{assert_no_staging, diff, snapshot, Fixture, Hdr, Tar};
use satchel_overlay::{self as extract, ExtractError as E, Layers, Options};

fn default() -> Options {
    Options::default()
}

/// A fixture whose root is merged-/usr: `lib`, `bin` and `sbin` link into
/// `usr/`, which holds `lib/systemd/system/`.
fn merged_usr() -> Fixture {
    let fx = Fixture::new();
    for d in ["usr/lib/systemd/system", "usr/bin", "usr/sbin"] {
        fs::create_dir_all(fx.root.join(d)).expect("mkdir");
    }
    for (l, t) in [("lib", "usr/lib"), ("bin", "usr/bin"), ("sbin", "usr/sbin")] {
        symlink(t, fx.root.join(l)).expect("symlink");
    }
    fx
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").mode() & 0o7777
}

#[test]
fn merged_usr_paths_land_in_usr() {
    let fx = merged_usr();
    let t = Tar::new()
        .file("lib/systemd/system/x.service", b"[Unit]\n")
        .file("bin/tool", b"#!/bin/sh\n")
        .file("sbin/daemon", b"#!/bin/sh\n")
        .symlink("etc/localtime", "/usr/share/zoneinfo/Europe/Berlin")
        .end();
    let applied = extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(
        fs::read(fx.root.join("usr/lib/systemd/system/x.service")).expect("read"),
        b"[Unit]\n"
    );
    assert!(fx.root.join("usr/bin/tool").is_file());
    assert!(fx.root.join("usr/sbin/daemon").is_file());
    for l in ["lib", "bin", "sbin"] {
        assert!(is_symlink(&fx.root.join(l)), "{l} is still a symlink");
    }
    assert_eq!(
        fs::read_link(fx.root.join("etc/localtime")).expect("link"),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    // Changes name where things landed.
    assert_eq!(
        applied.changes.installed,
        [
            "usr/bin/tool",
            "etc/localtime",
            "usr/lib/systemd/system/x.service",
            "usr/sbin/daemon"
        ]
    );
    assert_no_staging(&fx.root);
}

#[test]
fn a_directory_entry_keeps_the_roots_symlink_and_its_targets_mode() {
    let fx = merged_usr();
    let before = mode(&fx.root.join("usr/lib"));
    let mut lib = Hdr::new("lib", b'5');
    lib.mode = 0o700;
    let mut systemd = Hdr::new("lib/systemd", b'5');
    systemd.mode = 0o750;
    let t = Tar::new()
        .entry(lib, b"")
        .entry(systemd, b"")
        .file("lib/new.conf", b"n")
        .end();
    let applied = extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert!(is_symlink(&fx.root.join("lib")));
    assert_eq!(
        fs::read_link(fx.root.join("lib")).expect("link"),
        Path::new("usr/lib")
    );
    // The alias's mode is not the directory's; a real directory's is.
    assert_eq!(mode(&fx.root.join("usr/lib")), before);
    assert_eq!(mode(&fx.root.join("usr/lib/systemd")), 0o750);
    assert_eq!(applied.changes.updated_dirs, ["usr/lib/systemd"]);
    assert!(fx.root.join("usr/lib/new.conf").is_file());
}

#[test]
fn a_payload_file_or_symlink_replaces_the_link_itself() {
    let fx = merged_usr();
    let t = Tar::new().symlink("lib", "usr/lib64").end();
    extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(
        fs::read_link(fx.root.join("lib")).expect("link"),
        Path::new("usr/lib64")
    );
    assert!(fx.root.join("usr/lib/systemd").is_dir());
    // A whiteout deletes the link, never what it points at.
    let t = Tar::new().file(".wh.lib", b"").end();
    extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert!(fs::symlink_metadata(fx.root.join("lib")).is_err());
    assert!(fx.root.join("usr/lib/systemd/system").is_dir());
}

#[test]
fn whiteouts_resolve_their_parent_in_the_root() {
    let fx = merged_usr();
    fs::write(fx.root.join("usr/lib/systemd/system/old.service"), b"old").expect("write");
    let t = Tar::new()
        .file("lib/systemd/system/.wh.old.service", b"")
        .end();
    let applied = extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(
        applied.changes.removed,
        ["usr/lib/systemd/system/old.service"]
    );
    assert!(!fx.root.join("usr/lib/systemd/system/old.service").exists());
}

/// Links that point "outside" (absolute, or `..` past the top) are read
/// in the root, as the node will after switch-root: they land inside.
#[test]
fn root_symlinks_pointing_outside_are_resolved_inside() {
    let fx = Fixture::new();
    // The absolute path of outside/, re-created inside the root.
    let outside_abs = fx.outside.to_str().expect("utf-8").to_string();
    let inside = fx.root.join(outside_abs.trim_start_matches('/'));
    fs::create_dir_all(&inside).expect("mkdir");
    fs::create_dir_all(fx.root.join("outside")).expect("mkdir");
    symlink(&outside_abs, fx.root.join("abs")).expect("symlink");
    symlink("/etc", fx.root.join("conf")).expect("symlink");
    symlink("../../../../../../outside", fx.root.join("etc/up")).expect("symlink");
    let t = Tar::new()
        .file("abs/planted", b"a")
        .file("conf/planted.conf", b"c")
        .file("etc/up/planted", b"u")
        .end();
    extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(fs::read(inside.join("planted")).expect("read"), b"a");
    assert_eq!(
        fs::read(fx.root.join("etc/planted.conf")).expect("read"),
        b"c"
    );
    assert_eq!(
        fs::read(fx.root.join("outside/planted")).expect("read"),
        b"u"
    );
    assert!(
        !fx.outside.join("planted").exists(),
        "wrote outside the root"
    );
    assert_eq!(fs::read_dir(&fx.outside).expect("ls").count(), 1);
}

#[test]
fn dot_dot_through_root_symlinks_is_physical() {
    let fx = merged_usr();
    // lib/.. is usr (the parent of where lib leads), so this is usr/bin.
    symlink("lib/../bin", fx.root.join("tools")).expect("symlink");
    symlink("../../lib/systemd", fx.root.join("usr/bin/units")).expect("symlink");
    let t = Tar::new()
        .file("tools/sh", b"sh")
        .file("bin/units/system/y.service", b"y")
        .end();
    extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert!(fx.root.join("usr/bin/sh").is_file());
    assert!(fx.root.join("usr/lib/systemd/system/y.service").is_file());
}

#[test]
fn root_symlink_to_a_file_is_refused() {
    let fx = Fixture::new();
    symlink("etc/hostname", fx.root.join("name")).expect("symlink");
    let t = Tar::new().file("etc/ok", b"x").file("name/x", b"x").end();
    fx.refuses(&t, &default(), |e| {
        matches!(e, E::ParentNotDirectory { .. })
    });
}

#[test]
fn dangling_root_symlink_is_refused() {
    let fx = Fixture::new();
    symlink("usr/lib", fx.root.join("lib")).expect("symlink");
    let t = Tar::new().file("etc/ok", b"x").file("lib/x", b"x").end();
    fx.refuses(&t, &default(), |e| matches!(e, E::DanglingSymlink { .. }));
}

#[test]
fn a_symlink_loop_is_refused() {
    let fx = Fixture::new();
    symlink("b", fx.root.join("a")).expect("symlink");
    symlink("a", fx.root.join("b")).expect("symlink");
    symlink("self", fx.root.join("self")).expect("symlink");
    for p in ["a/x", "self/x"] {
        let t = Tar::new().file("etc/ok", b"x").file(p, b"x").end();
        fx.refuses(&t, &default(), |e| {
            matches!(e, E::SymlinkLoop { limit: 40, .. })
        });
    }
}

#[test]
fn two_paths_landing_on_one_path_of_the_root_are_refused() {
    let fx = merged_usr();
    for t in [
        Tar::new().file("lib/x", b"1").file("usr/lib/x", b"2").end(),
        Tar::new()
            .file("lib/d/x", b"1")
            .file("usr/lib/d/y", b"2")
            .end(),
        Tar::new().dir("lib/systemd").dir("usr/lib/systemd").end(),
    ] {
        fx.refuses(&t, &default(), |e| matches!(e, E::SameInRoot { .. }));
    }
}

#[test]
fn a_root_link_the_payload_replaces_is_not_resolved_through() {
    let fx = merged_usr();
    symlink("lib", fx.root.join("alias")).expect("symlink");
    // alias/x goes through lib, which the same payload turns into another link.
    let t = Tar::new()
        .file("alias/x", b"x")
        .symlink("lib", "usr/lib64")
        .end();
    fx.refuses(&t, &default(), |e| {
        matches!(e, E::ResolvedThroughReplaced { .. })
    });
}

/// A symlink swapped in for a directory between the plan and the commit:
/// the commit refuses to follow it, and undoes what it did.
#[test]
fn a_symlink_swapped_in_after_the_plan_fails_the_commit_and_restores() {
    let fx = merged_usr();
    fs::create_dir(fx.root.join("decoy")).expect("mkdir");
    let t = Tar::new()
        .file("etc/hostname", b"replaced\n")
        .file("lib/systemd/system/x.service", b"x")
        .end();
    let mut layers = Layers::open(&fx.root).expect("open");
    layers
        .stage(&t[..], &default())
        .expect("staged and planned");
    // usr/lib/systemd becomes a link to decoy/.
    fs::rename(
        fx.root.join("usr/lib/systemd"),
        fx.root.join("usr/lib/systemd.real"),
    )
    .expect("rename");
    symlink("../../decoy", fx.root.join("usr/lib/systemd")).expect("symlink");
    fs::create_dir(fx.root.join("decoy/system")).expect("mkdir");
    // The root as the commit found it (staging aside).
    let mut before = fx.snapshot();
    before.retain(|k, _| !k.contains(extract::STAGING_PREFIX));
    let err = layers
        .commit()
        .expect_err("the commit must not follow the link");
    assert!(matches!(err.error, E::ThroughSymlink { .. }), "{err:?}");
    let after = fx.snapshot();
    assert!(before == after, "not restored:\n{}", diff(&after, &before));
    assert!(!fx.root.join("decoy/system/x.service").exists());
    assert_no_staging(&fx.root);
}

/// Site then host: the host resolves against the root the site leaves.
#[test]
fn layers_resolve_against_the_root_the_site_leaves() {
    let fx = merged_usr();
    let seq = tempfile::tempdir().expect("tmp");
    let seq_root = seq.path().join("root");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&fx.root)
        .arg(&seq_root)
        .status()
        .expect("cp");
    assert!(cp.success());
    // The site lays down usr/lib/site.d and turns sbin into a real
    // directory; the host writes through lib into the site's directory and
    // into the new sbin.
    let site = Tar::new()
        .file(".wh.sbin", b"")
        .file("sbin/site-tool", b"s")
        .file("usr/lib/site.d/base.conf", b"base")
        .symlink("opt/current", "v1")
        .file("opt/v1/app", b"v1")
        .end();
    let host = Tar::new()
        .file("lib/site.d/host.conf", b"host")
        .file("sbin/host-tool", b"h")
        .file("opt/current/host.conf", b"on v1")
        .end();

    let mut layers = Layers::open(&fx.root).expect("open");
    layers.stage(&site[..], &default()).expect("site");
    layers.stage(&host[..], &default()).expect("host");
    layers.commit().expect("commit");

    let r = &fx.root;
    assert_eq!(
        fs::read(r.join("usr/lib/site.d/host.conf")).expect("read"),
        b"host"
    );
    assert!(r.join("sbin").is_dir() && !is_symlink(&r.join("sbin")));
    assert!(r.join("sbin/host-tool").is_file());
    assert!(!r.join("usr/sbin/host-tool").exists());
    assert_eq!(
        fs::read(r.join("opt/v1/host.conf")).expect("read"),
        b"on v1"
    );

    // The same as applying them one after the other.
    extract::apply(&site[..], &seq_root, &default()).expect("site alone");
    extract::apply(&host[..], &seq_root, &default()).expect("host alone");
    let (a, b) = (snapshot(&fx.root), snapshot(&seq_root));
    assert!(a == b, "differs:\n{}", diff(&a, &b));
}

// --- mounts ----------------------------------------------------------------

/// Runs `body` in a child process in a private mount namespace (the test
/// binary again, this test only); returns whether this process is that
/// child. Needs root; without it the test says so and passes.
fn in_mount_namespace(test: &str) -> bool {
    if std::env::var_os("SATCHEL_TEST_MOUNT_NS").is_some() {
        return true;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("{test}: skipped, mounting a tmpfs needs root");
        return false;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SATCHEL_TEST_MOUNT_NS", "1")
        .output()
        .expect("run unshare");
    assert!(
        out.status.success(),
        "{test} in its mount namespace:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the test did not run in the child"
    );
    false
}

/// A fixture with a tmpfs at `root/var/lib/scratch` holding `keep`.
fn with_tmpfs() -> Fixture {
    let fx = Fixture::new();
    let m = fx.root.join("var/lib/scratch");
    fs::create_dir_all(&m).expect("mkdir");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&m)
        .status()
        .expect("mount");
    assert!(st.success(), "mount tmpfs");
    fs::write(m.join("keep"), b"on the tmpfs\n").expect("write");
    fx
}

#[test]
fn a_whiteout_never_removes_a_mount_point_or_what_holds_one() {
    if !in_mount_namespace("a_whiteout_never_removes_a_mount_point_or_what_holds_one") {
        return;
    }
    let fx = with_tmpfs();
    symlink("var/lib", fx.root.join("state")).expect("symlink");
    for wh in [
        "var/lib/.wh.scratch",
        "var/.wh.lib",
        ".wh.var",
        "state/.wh.scratch",
    ] {
        let t = Tar::new().file("etc/ok", b"x").file(wh, b"").end();
        let err = fx.refuses(&t, &default(), |e| matches!(e, E::WhiteoutOverMount { .. }));
        assert!(err.to_string().contains("var/lib/scratch"), "{err}");
    }
    // A whiteout inside the mount crosses it: refused too.
    let t = Tar::new().file("var/lib/scratch/.wh.keep", b"").end();
    fx.refuses(&t, &default(), |e| matches!(e, E::CrossesMount { .. }));
    assert_eq!(
        fs::read(fx.root.join("var/lib/scratch/keep")).expect("the tmpfs is intact"),
        b"on the tmpfs\n"
    );
}

#[test]
fn writes_never_cross_a_mount_point() {
    if !in_mount_namespace("writes_never_cross_a_mount_point") {
        return;
    }
    let fx = with_tmpfs();
    symlink("var/lib/scratch", fx.root.join("scratch")).expect("symlink");
    for t in [
        Tar::new().file("var/lib/scratch/new", b"x").end(),
        Tar::new().file("scratch/new", b"x").end(),
        Tar::new().dir("var/lib/scratch").end(),
        Tar::new().file("var/lib/scratch", b"flat").end(),
    ] {
        fx.refuses(&t, &default(), |e| matches!(e, E::CrossesMount { .. }));
    }
    assert!(!fx.root.join("var/lib/scratch/new").exists());
}

/// A live image's root is an overlayfs over layers on other filesystems:
/// its files report a lower layer's device, yet they are on the root's
/// mount and are written over like any other.
#[test]
fn an_overlayfs_root_is_one_mount() {
    if !in_mount_namespace("an_overlayfs_root_is_one_mount") {
        return;
    }
    let fx = Fixture::new();
    let lower = fx.tmp.path().join("lower");
    fs::rename(&fx.root, &lower).expect("rename");
    fs::create_dir(&fx.root).expect("mkdir");
    let upper = fx.tmp.path().join("upper");
    fs::create_dir(&upper).expect("mkdir");
    let mount = |args: &[&str], at: &Path| {
        let st = Command::new("mount")
            .args(args)
            .arg(at)
            .status()
            .expect("mount");
        assert!(st.success(), "mount {args:?}");
    };
    mount(&["-t", "tmpfs", "tmpfs"], &upper);
    for d in ["u", "w"] {
        fs::create_dir(upper.join(d)).expect("mkdir");
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.join("u").display(),
        upper.join("w").display()
    );
    mount(&["-t", "overlay", "overlay", "-o", &opts], &fx.root);
    let t = Tar::new()
        .file("etc/hostname", b"replaced\n")
        .file("etc/.wh.motd", b"")
        .file("etc/new", b"n")
        .end();
    let applied = extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(applied.changes.replaced, ["etc/hostname"]);
    assert_eq!(applied.changes.removed, ["etc/motd"]);
    assert_eq!(
        fs::read(fx.root.join("etc/hostname")).expect("read"),
        b"replaced\n"
    );
    assert!(!fx.root.join("etc/motd").exists());
    assert_no_staging(&fx.root);
}
