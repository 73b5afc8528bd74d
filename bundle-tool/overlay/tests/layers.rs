//! Several payloads of one boot over one root ([`Layers`]): the result is
//! what applying them one after the other gives, or — when any of them is
//! refused, or a rename of any of them fails midway — the root exactly as
//! it was, the earlier payloads' changes undone too, and no staging left.

mod overlay_support;

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use overlay_support::{assert_no_staging, diff, snapshot, Tar};
use proptest::prelude::*;
use satchel_overlay::{self as extract, ExtractError, Layers, Options, WHITEOUT_PREFIX};

fn opts() -> Options {
    Options::default()
}

/// A root of ordinary files, as a node's image has.
fn root_in(tmp: &Path) -> PathBuf {
    let root = tmp.join("root");
    fs::create_dir_all(root.join("etc")).expect("mkdir");
    fs::write(root.join("etc/hostname"), b"image\n").expect("write");
    fs::write(root.join("etc/motd"), b"image motd\n").expect("write");
    root
}

fn stage_all(root: &Path, payloads: &[&[u8]]) -> Result<Layers, (usize, ExtractError)> {
    let mut layers = Layers::open(root).map_err(|e| (0, e))?;
    for (i, p) in payloads.iter().enumerate() {
        layers.stage(*p, &opts()).map_err(|e| (i, e))?;
    }
    Ok(layers)
}

fn site() -> Vec<u8> {
    Tar::new()
        .dir("etc")
        .file("etc/motd", b"site motd\n")
        .file("etc/ntp.conf", b"server ntp.site\n")
        .dir("etc/site.d")
        .file("etc/site.d/a.conf", b"a\n")
        .end()
}

#[test]
fn a_host_over_a_site_is_the_site_then_the_host() {
    let host = Tar::new()
        .file("etc/motd", b"host motd\n")
        .file("etc/site.d/b.conf", b"b\n")
        .file(format!("etc/site.d/{WHITEOUT_PREFIX}a.conf"), b"")
        .end();
    let tmp = tempfile::tempdir().expect("tmp");
    let seq = root_in(&tmp.path().join("seq"));
    extract::apply(&site()[..], &seq, &opts()).expect("site");
    extract::apply(&host[..], &seq, &opts()).expect("host");
    let both = root_in(&tmp.path().join("both"));
    let applied = stage_all(&both, &[&site(), &host])
        .expect("stage")
        .commit()
        .expect("commit");
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[1].changes.removed, ["etc/site.d/a.conf"]);
    let (a, b) = (snapshot(&seq), snapshot(&both));
    assert!(
        a == b,
        "layered differs from one after the other:\n{}",
        diff(&a, &b)
    );
    assert_eq!(
        fs::read(both.join("etc/motd")).expect("read"),
        b"host motd\n"
    );
    assert_no_staging(&both);
}

/// Staging refuses the host: nothing of the site is in the root, at any
/// point, and its staging is gone when the `Layers` is dropped.
#[test]
fn a_refused_host_payload_leaves_no_site_file_behind() {
    let hostile: Vec<Vec<u8>> = vec![
        Tar::new()
            .file("etc/ok", b"x")
            .file("../escape", b"x")
            .end(),
        Tar::new().file("etc/ok", b"x").file("etc/ok", b"y").end(),
        Tar::new()
            .file("etc/ok", b"x")
            .symlink("etc/l", "/../etc/shadow")
            .end(),
        // Legal alone, a conflict over what the site stages.
        Tar::new().file("etc/site.d", b"not a directory\n").end(),
        Tar::new().file("etc/ntp.conf/x", b"under a file\n").end(),
    ];
    for (n, host) in hostile.iter().enumerate() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = root_in(tmp.path());
        let before = snapshot(&root);
        match stage_all(&root, &[&site(), host]) {
            Ok(_) => panic!("hostile host payload {n} was staged"),
            Err((layer, _)) => assert_eq!(layer, 1, "payload {n} refused in the wrong layer"),
        }
        let after = snapshot(&root);
        assert!(
            before == after,
            "payload {n} changed the root:\n{}",
            diff(&before, &after)
        );
        assert_no_staging(&root);
    }
}

#[test]
fn a_refused_site_payload_stages_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = root_in(tmp.path());
    let before = snapshot(&root);
    let bad = Tar::new().file("etc/ok", b"x").file("/etc/abs", b"x").end();
    let (layer, e) = stage_all(&root, &[&bad, &site()]).expect_err("staged");
    assert_eq!(layer, 0);
    assert!(matches!(e, ExtractError::AbsolutePath { .. }), "{e:?}");
    assert!(before == snapshot(&root));
    assert_no_staging(&root);
}

/// Makes a directory refuse every rename into it, even for root: the
/// immutable attribute (or, for an unprivileged run that may not set it,
/// no write permission). Undone on drop.
#[derive(Debug)]
struct Locked(PathBuf);

impl Locked {
    fn new(dir: &Path) -> Locked {
        use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
        let fd = fs::File::open(dir).expect("open the directory to lock");
        let set = ioctl_getflags(fd.as_fd())
            .and_then(|f| ioctl_setflags(fd.as_fd(), f | IFlags::IMMUTABLE));
        if let Err(e) = set {
            assert!(
                !rustix::process::geteuid().is_root(),
                "cannot make {} immutable as root ({e}): the filesystem lacks the attribute \
                 or the process lacks CAP_LINUX_IMMUTABLE",
                dir.display()
            );
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        Locked(dir.to_path_buf())
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
        if let Ok(fd) = fs::File::open(&self.0) {
            if let Ok(f) = ioctl_getflags(fd.as_fd()) {
                let _ = ioctl_setflags(fd.as_fd(), f - IFlags::IMMUTABLE);
            }
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

/// The host's second rename fails (into a directory that refuses it): its
/// first rename and every change of the site are undone.
#[test]
fn a_rename_failing_midway_through_the_host_undoes_the_site_too() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = root_in(tmp.path());
    fs::create_dir(root.join("locked")).expect("mkdir");
    fs::write(root.join("locked/kept"), b"image\n").expect("write");
    let host = Tar::new()
        .file("aaa-first.conf", b"renamed in first\n")
        .file("etc/hostname", b"host\n")
        .file("locked/host.conf", b"cannot go in\n")
        .end();
    let before = snapshot(&root);
    let layers = stage_all(&root, &[&site(), &host]).expect("both stage: the plan is fine");
    let lock = Locked::new(&root.join("locked"));
    let e = layers
        .commit()
        .expect_err("the rename into the locked directory worked");
    drop(lock);
    assert_eq!(e.layer, 1, "{e}");
    assert!(
        matches!(e.error, ExtractError::Io { op: "rename", .. }),
        "{e:?}"
    );
    let after = snapshot(&root);
    assert!(
        before == after,
        "the root was not restored:\n{}",
        diff(&before, &after)
    );
    assert_no_staging(&root);
}

/// The same failure in the site's own commit, before the host's.
#[test]
fn a_rename_failing_in_the_site_commits_nothing_of_the_host() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = root_in(tmp.path());
    fs::create_dir(root.join("locked")).expect("mkdir");
    let site = Tar::new()
        .file("aaa-site.conf", b"x\n")
        .file("locked/site.conf", b"x\n")
        .end();
    let host = Tar::new().file("etc/hostname", b"host\n").end();
    let before = snapshot(&root);
    let layers = stage_all(&root, &[&site, &host]).expect("stage");
    let lock = Locked::new(&root.join("locked"));
    let e = layers.commit().expect_err("committed");
    drop(lock);
    assert_eq!(e.layer, 0, "{e}");
    assert!(before == snapshot(&root));
    assert_no_staging(&root);
}

// --- one after the other, as a property ---------------------------------

const NAMES: [&str; 3] = ["a", "b", "c"];

/// One entry: a path of one or two names, and what it is (0 file, 1
/// directory, 2 symlink, 3 whiteout).
type Item = (Vec<usize>, u8, u8);

fn items() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(
        (prop::collection::vec(0..NAMES.len(), 1..3), 0u8..4, 0u8..3),
        0..6,
    )
}

fn name(comps: &[usize]) -> String {
    comps
        .iter()
        .map(|&i| NAMES[i])
        .collect::<Vec<_>>()
        .join("/")
}

fn payload(items: &[Item]) -> Vec<u8> {
    let mut t = Tar::new();
    for (comps, kind, content) in items {
        let path = name(comps);
        t = match kind {
            0 => t.file(&path, format!("content {content}\n").as_bytes()),
            1 => t.dir(&path),
            2 => t.symlink(&path, NAMES[usize::from(*content)]),
            _ => {
                let (parent, last) = match path.rsplit_once('/') {
                    Some((p, l)) => (format!("{p}/"), l.to_string()),
                    None => (String::new(), path.clone()),
                };
                t.file(format!("{parent}{WHITEOUT_PREFIX}{last}"), b"")
            }
        };
    }
    t.end()
}

/// A root made of `items` (whiteouts skipped, impossible ones too).
fn materialise(items: &[Item], root: &Path) {
    fs::create_dir_all(root).expect("root");
    for (comps, kind, content) in items {
        let p = root.join(name(comps));
        let parent_ok = p
            .parent()
            .is_some_and(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()));
        if !parent_ok || fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match kind {
            0 => fs::write(&p, format!("root {content}\n")).expect("write"),
            1 => fs::create_dir(&p).expect("mkdir"),
            2 => std::os::unix::fs::symlink(NAMES[usize::from(*content)], &p).expect("ln"),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Staging both and committing them together ends where applying the
    /// site then the host ends; where that fails at any point, it fails
    /// and the root is untouched.
    #[test]
    fn two_layers_are_one_after_the_other_or_nothing(
        root_items in items(),
        site_items in items(),
        host_items in items(),
    ) {
        let tmp = tempfile::tempdir().expect("tmp");
        let (seq, both) = (tmp.path().join("seq"), tmp.path().join("both"));
        materialise(&root_items, &seq);
        materialise(&root_items, &both);
        let (site, host) = (payload(&site_items), payload(&host_items));
        let sequential = extract::apply(&site[..], &seq, &opts())
            .and_then(|_| extract::apply(&host[..], &seq, &opts()));
        let before = snapshot(&both);
        let together = stage_all(&both, &[&site, &host])
            .map_err(|(_, e)| e.to_string())
            .and_then(|l| l.commit().map_err(|e| e.to_string()));
        let after = snapshot(&both);
        match (sequential, together) {
            (Ok(_), Ok(_)) => {
                let s = snapshot(&seq);
                prop_assert!(s == after, "differs:\n{}", diff(&s, &after));
            }
            (Err(_), Err(_)) => {
                prop_assert!(before == after, "a refused boot changed the root:\n{}", diff(&before, &after));
            }
            (s, t) => prop_assert!(false, "one after the other: {s:?}; together: {t:?}"),
        }
        assert_no_staging(&both);
    }
}
