//! Hostile payloads against the safe overlay, one test per attack.
//!
//! Each archive is built byte for byte (see `overlay_support`), starts with
//! an ordinary file so that staging is not empty when the attack arrives,
//! and must be refused by `apply` with an error naming the attack, leaving
//! the root *and its sibling `outside/`* exactly as they were and no staging
//! directory behind. Attacks that need no root are refused by
//! `check_archive` too. Sources: the Python `tarfile` data filter's list,
//! RUSTSEC-2018-0002 (link then write through the same name),
//! RUSTSEC-2021-0080 (symlink to `..` then directories beneath it),
//! RUSTSEC-2026-0067 (symlink then directory of the same name, chmod
//! through it) and RUSTSEC-2026-0068 / "TARmageddon" (PAX size desync).

mod overlay_support;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;

use overlay_support::{assert_no_staging, set_checksum, Fixture, Hdr, Tar, BLOCK};
use satchel_overlay::{self as extract, ExtractError as E, Options};

/// An archive that begins with a harmless file.
fn start() -> Tar {
    Tar::new().dir("etc").file("etc/ok.conf", b"fine\n")
}

/// Refused by both `apply` and `check_archive`, for the same reason.
fn refused(tar: &[u8], opts: &Options, check: impl Fn(&E) -> bool + Copy) {
    let err =
        extract::check_archive(tar, opts).expect_err("check_archive accepted a hostile payload");
    assert!(
        check(&err),
        "check_archive refused for the wrong reason: {err:?}"
    );
    Fixture::new().refuses(tar, opts, check);
}

fn default() -> Options {
    Options::default()
}

// --- names -------------------------------------------------------------

#[test]
fn absolute_path() {
    let t = start().file("/etc/passwd", b"root::0:0::/:/bin/sh\n").end();
    refused(&t, &default(), |e| matches!(e, E::AbsolutePath { .. }));
}

#[test]
fn parent_dir_traversal() {
    let t = start().file("../outside/secret", b"owned\n").end();
    refused(&t, &default(), |e| matches!(e, E::ParentDir { .. }));
}

#[test]
fn parent_dir_in_the_middle() {
    let t = start().file("etc/../../outside/secret", b"owned\n").end();
    refused(&t, &default(), |e| matches!(e, E::ParentDir { .. }));
}

#[test]
fn nul_in_pax_path() {
    let t = start()
        .pax(&[("path", b"etc/ok\0/../../outside/secret")])
        .file("etc/innocent", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::NulInName { .. }));
}

#[test]
fn hidden_bytes_after_nul_in_header_name() {
    let mut h = Hdr::new("etc/a", b'0').block();
    h[20..40].copy_from_slice(b"/../../outside/evil\0");
    set_checksum(&mut h);
    let t = start().raw(h, b"").end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn invalid_utf8_name() {
    let t = start().file(b"etc/\xff\xfe", b"x").end();
    refused(&t, &default(), |e| matches!(e, E::InvalidName { .. }));
}

#[test]
fn control_characters_in_name() {
    let t = start().file("etc/evil\n\x1b[2Jok", b"x").end();
    refused(&t, &default(), |e| matches!(e, E::InvalidName { .. }));
}

#[test]
fn overlong_name() {
    let long = format!("etc/{}f", "a/".repeat(2100));
    let t = start()
        .gnu_long(b'L', long.as_bytes())
        .file("etc/short", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::NameTooLong { .. }));
}

#[test]
fn overlong_component() {
    let t = start()
        .pax(&[("path", format!("etc/{}", "n".repeat(256)).as_bytes())])
        .file("etc/s", b"")
        .end();
    refused(&t, &default(), |e| matches!(e, E::NameTooLong { .. }));
}

#[test]
fn too_deep() {
    let deep = "d/".repeat(65) + "f";
    let t = start()
        .pax(&[("path", deep.as_bytes())])
        .file("etc/s", b"")
        .end();
    refused(&t, &default(), |e| matches!(e, E::TooDeep { .. }));
}

// --- links -------------------------------------------------------------

#[test]
fn write_through_archive_symlink() {
    let t = start().symlink("etc/l", "ok.d").file("etc/l/x", b"x").end();
    refused(&t, &default(), |e| matches!(e, E::ThroughSymlink { .. }));
}

#[test]
fn symlink_to_parent_then_directories_rustsec_2021_0080() {
    let t = start()
        .symlink("up", "..")
        .file("up/outside/evil/foo/bar", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::LinkOutside { .. }));
}

/// An absolute target is link content (read from the node's root after
/// switch-root), never followed by the overlay: writing under it is a
/// write through the payload's own symlink.
#[test]
fn write_under_an_absolute_symlink_of_the_payload() {
    let fx = Fixture::new();
    let t = start()
        .symlink("etc/out", fx.outside.to_str().expect("utf-8"))
        .file("etc/out/planted", b"owned")
        .end();
    refused(&t, &default(), |e| matches!(e, E::ThroughSymlink { .. }));
}

#[test]
fn symlink_relative_outside() {
    let t = start().symlink("etc/l", "../../outside/secret").end();
    refused(&t, &default(), |e| matches!(e, E::LinkOutside { .. }));
}

#[test]
fn symlink_chain_escape() {
    // l1 -> .. is the root itself (inside); l2 -> l1/.. would climb out
    // through l1 although it looks inside lexically.
    let t = start()
        .symlink("etc/l1", "..")
        .symlink("etc/l2", "l1/../..")
        .end();
    refused(&t, &default(), |e| {
        matches!(e, E::UnnormalisedLinkTarget { .. })
    });
}

#[test]
fn absolute_symlink_climbing_above_root() {
    let t = start().symlink("etc/l", "/../outside/secret").end();
    refused(&t, &default(), |e| matches!(e, E::LinkOutside { .. }));
}

#[test]
fn hardlink_outside() {
    let t = start().hardlink("etc/h", "../outside/secret").end();
    refused(&t, &default(), |e| matches!(e, E::LinkOutside { .. }));
}

#[test]
fn hardlink_absolute() {
    let t = start().hardlink("etc/h", "/etc/shadow").end();
    refused(&t, &default(), |e| matches!(e, E::LinkOutside { .. }));
}

#[test]
fn hardlink_to_a_file_not_in_the_payload() {
    // etc/hostname exists in the root, but a hardlink may only alias a file
    // of the payload itself.
    let t = start().hardlink("etc/h", "etc/hostname").end();
    refused(&t, &default(), |e| matches!(e, E::HardlinkTarget { .. }));
}

#[test]
fn symlink_then_write_same_name_rustsec_2018_0002() {
    let t = start()
        .symlink("etc/x", "ok.conf")
        .file("etc/x", b"overwrite")
        .end();
    refused(&t, &default(), |e| matches!(e, E::Duplicate { .. }));
}

#[test]
fn hardlink_then_write_same_name() {
    let t = start()
        .hardlink("etc/h", "etc/ok.conf")
        .file("etc/h", b"overwrite")
        .end();
    refused(&t, &default(), |e| matches!(e, E::Duplicate { .. }));
}

#[test]
fn hardlink_then_write_beneath_it() {
    let t = start()
        .hardlink("etc/h", "etc/ok.conf")
        .file("etc/h/x", b"x")
        .end();
    refused(&t, &default(), |e| {
        matches!(e, E::ParentNotDirectory { .. })
    });
}

#[test]
fn symlink_then_directory_chmod_rustsec_2026_0067() {
    let mut d = Hdr::new("etc/l", b'5');
    d.mode = 0o777;
    let t = start().symlink("etc/l", "ok.d").entry(d, b"").end();
    refused(&t, &default(), |e| matches!(e, E::Duplicate { .. }));
}

#[test]
fn directory_replaced_by_symlink() {
    let t = start().dir("etc/d").symlink("etc/d", "..").end();
    refused(&t, &default(), |e| {
        matches!(e, E::DirReplacedBySymlink { .. })
    });
}

#[test]
fn duplicate_entry() {
    let t = start().file("etc/a", b"one").file("./etc//a", b"two").end();
    refused(&t, &default(), |e| matches!(e, E::Duplicate { .. }));
}

// --- entry types -------------------------------------------------------

#[test]
fn character_device() {
    let t = start().entry(Hdr::new("etc/mem", b'3'), b"").end();
    refused(&t, &default(), |e| matches!(e, E::Device { .. }));
}

#[test]
fn block_device() {
    let t = start().entry(Hdr::new("etc/sda", b'4'), b"").end();
    refused(&t, &default(), |e| matches!(e, E::Device { .. }));
}

#[test]
fn fifo() {
    let t = start().entry(Hdr::new("etc/initctl", b'6'), b"").end();
    refused(&t, &default(), |e| matches!(e, E::Fifo { .. }));
}

#[test]
fn gnu_sparse_entry() {
    let t = start().entry(Hdr::new("etc/sparse", b'S'), b"").end();
    refused(&t, &default(), |e| {
        matches!(e, E::UnsupportedEntryType { .. })
    });
}

// --- PAX / GNU header tricks -------------------------------------------

#[test]
fn pax_size_desync_tarmageddon() {
    // The PAX size says 0, the header says 1024: a reader trusting one of
    // them would read the "data" as the next header and smuggle an entry.
    let mut inner = Hdr::new("../outside/smuggled", b'0');
    inner.size = 5;
    let mut smuggled = inner.block().to_vec();
    smuggled.extend_from_slice(&[b'x'; 512]);
    let mut h = Hdr::new("etc/carrier", b'0');
    h.size = smuggled.len() as u64;
    let t = start().pax(&[("size", b"0")]).entry(h, &smuggled).end();
    refused(&t, &default(), |e| matches!(e, E::SizeDesync { .. }));
}

#[test]
fn pax_path_hides_unsafe_header_name() {
    let t = start()
        .pax(&[("path", b"etc/harmless")])
        .file("../outside/secret", b"owned")
        .end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn pax_linkpath_hides_unsafe_header_link() {
    let mut h = Hdr::new("etc/l", b'2');
    h.link = b"../../etc/shadow".to_vec();
    let t = start().pax(&[("linkpath", b"ok.conf")]).entry(h, b"").end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn pax_linkpath_on_a_regular_file() {
    let t = start()
        .pax(&[("linkpath", b"/etc/shadow")])
        .file("etc/f", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn stacked_pax_headers() {
    let t = start()
        .pax(&[("path", b"etc/first")])
        .pax(&[("path", b"etc/second")])
        .file("etc/f", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn gnu_long_name_and_pax_path_disagree() {
    let t = start()
        .gnu_long(b'L', b"etc/gnu-name")
        .pax(&[("path", b"etc/pax-name")])
        .file("etc/f", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn pax_size_before_a_gnu_long_name() {
    // Some readers apply the PAX size to the GNU header that follows, others
    // to the entry: the two would parse different archives.
    let t = start()
        .pax(&[("size", b"0")])
        .gnu_long(b'L', b"etc/long-name")
        .file("etc/f", b"")
        .end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn global_pax_header_sets_path() {
    let t = start()
        .pax_global(&[("path", b"../outside/secret")])
        .file("etc/f", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::UnsupportedPaxKey { .. }));
}

#[test]
fn unknown_pax_record() {
    let t = start()
        .pax(&[("GNU.sparse.map", b"0,4096")])
        .file("etc/f", b"x")
        .end();
    refused(&t, &default(), |e| matches!(e, E::UnsupportedPaxKey { .. }));
}

#[test]
fn data_on_a_directory_entry() {
    // Readers that skip a directory's size would parse the data as headers.
    let inner = Hdr::new("../outside/smuggled", b'0').block();
    let mut h = Hdr::new("etc/d", b'5');
    h.size = BLOCK as u64;
    let t = start().entry(h, &inner).end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn extension_header_without_an_entry() {
    let t = start().pax(&[("path", b"etc/dangling")]).end();
    refused(&t, &default(), |e| matches!(e, E::HeaderTrick { .. }));
}

#[test]
fn bad_checksum() {
    let mut h = Hdr::new("etc/f", b'0').block();
    h[0] = b'E';
    let t = start().raw(h, b"").end();
    refused(&t, &default(), |e| matches!(e, E::BadChecksum { .. }));
}

#[test]
fn trailing_garbage_after_end_of_archive() {
    let mut t = start().end();
    t.extend_from_slice(&Tar::new().file("../outside/secret", b"owned").end());
    refused(&t, &default(), |e| matches!(e, E::TrailingGarbage { .. }));
}

#[test]
fn truncated_stream() {
    let mut t = start().file("etc/big", &[7u8; 4096]).end();
    t.truncate(3 * BLOCK + 1000);
    refused(&t, &default(), |e| matches!(e, E::Truncated { .. }));
}

#[test]
fn missing_end_of_archive() {
    let t = start().0;
    refused(&t, &default(), |e| matches!(e, E::Truncated { .. }));
}

// --- limits ------------------------------------------------------------

#[test]
fn too_many_entries() {
    let opts = Options {
        max_entries: 10,
        ..Options::default()
    };
    let mut t = start();
    for i in 0..20 {
        t = t.file(format!("etc/f{i}"), b"");
    }
    refused(&t.end(), &opts, |e| {
        matches!(e, E::TooManyEntries { limit: 10 })
    });
}

#[test]
fn implied_parents_blow_up_memory() {
    // Each 4 KiB name implies 63 new parent directories (~127 KiB of paths):
    // a few hundred such entries would hold gigabytes of names without the
    // bound on all paths together (64 MiB by default, 1 MiB here to keep
    // the test quick).
    let opts = Options {
        max_name_bytes: 1 << 20,
        ..Options::default()
    };
    let mut t = start();
    for i in 0..10 {
        let comp = format!("{i:04}{}", "x".repeat(58));
        let path = vec![comp; 64].join("/");
        t = t.pax(&[("path", path.as_bytes())]).file("etc/short", b"");
    }
    refused(&t.end(), &opts, |e| matches!(e, E::NamesTooLarge { .. }));
}

#[test]
fn total_size_limit() {
    let opts = Options {
        max_total_bytes: 10_000,
        ..Options::default()
    };
    let t = start()
        .file("etc/a", &[1u8; 6000])
        .file("etc/b", &[2u8; 6000])
        .end();
    refused(&t, &opts, |e| matches!(e, E::TotalSizeExceeded { .. }));
}

#[test]
fn single_file_too_large() {
    let opts = Options {
        max_file_size: 1000,
        ..Options::default()
    };
    let t = start().file("etc/big", &[1u8; 1001]).end();
    refused(&t, &opts, |e| matches!(e, E::FileTooLarge { .. }));
}

#[test]
fn entry_count_differs_from_manifest() {
    let t = start().file("etc/extra", b"x").end();
    let opts = Options {
        expected_entries: Some(2),
        ..Options::default()
    };
    refused(&t, &opts, |e| {
        matches!(e, E::EntryCountMismatch { expected: 2, .. })
    });
    let opts = Options {
        expected_entries: Some(4),
        ..Options::default()
    };
    refused(&t, &opts, |e| {
        matches!(
            e,
            E::EntryCountMismatch {
                expected: 4,
                actual: 3
            }
        )
    });
}

#[test]
fn stream_longer_than_manifest_size() {
    let t = start().file("etc/extra", &[0u8; 5000]).end();
    let opts = Options {
        expected_size: Some(2048),
        ..Options::default()
    };
    refused(&t, &opts, |e| {
        matches!(e, E::SizeMismatch { expected: 2048, .. })
    });
}

// --- whiteouts ---------------------------------------------------------

#[test]
fn whiteout_climbing_out() {
    let t = start().file("etc/.wh...", b"").end();
    refused(&t, &default(), |e| matches!(e, E::ParentDir { .. }));
}

#[test]
fn opaque_whiteout() {
    let t = start().file("etc/.wh..wh..opq", b"").end();
    refused(&t, &default(), |e| matches!(e, E::InvalidWhiteout { .. }));
}

#[test]
fn whiteout_with_content() {
    let t = start().file("etc/.wh.motd", b"not empty").end();
    refused(&t, &default(), |e| matches!(e, E::InvalidWhiteout { .. }));
}

// --- hostile state already in the root ----------------------------------

// The root's own symlinks are resolved inside the root (as after
// switch-root), so a link "pointing outside" points at a path of the root;
// where that path does not exist the link dangles and is refused.

#[test]
fn root_symlink_pointing_outside() {
    let fx = Fixture::new();
    symlink("../outside", fx.root.join("conf")).expect("symlink");
    let t = start().file("conf/secret", b"owned").end();
    fx.refuses(&t, &default(), |e| matches!(e, E::DanglingSymlink { .. }));
    assert_eq!(
        fs::read(fx.outside.join("secret")).expect("read"),
        b"do not touch\n"
    );
}

#[test]
fn root_absolute_symlink_pointing_outside() {
    let fx = Fixture::new();
    symlink(&fx.outside, fx.root.join("host")).expect("symlink");
    let t = start().file("host/planted", b"owned").end();
    fx.refuses(&t, &default(), |e| matches!(e, E::DanglingSymlink { .. }));
    assert!(!fx.outside.join("planted").exists());
}

#[test]
fn root_symlink_where_a_directory_is_expected() {
    let fx = Fixture::new();
    // var/lib/data -> ../../etc: an explicit directory entry there merges
    // into etc but must not chmod it through the link (RUSTSEC-2026-0067
    // against the root); the link stays.
    symlink("../../etc", fx.root.join("var/lib/data")).expect("symlink");
    let mode = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(fx.root.join(p)).expect("stat").mode() & 0o7777
    };
    let etc_mode = mode("etc");
    let mut d = Hdr::new("var/lib/data", b'5');
    d.mode = 0o777;
    let t = start().entry(d, b"").file("var/lib/data/new", b"n").end();
    extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(mode("etc"), etc_mode);
    assert!(fs::symlink_metadata(fx.root.join("var/lib/data"))
        .expect("lstat")
        .is_symlink());
    assert_eq!(fs::read(fx.root.join("etc/new")).expect("read"), b"n");
    assert_no_staging(&fx.root);
}

#[test]
fn whiteout_through_root_symlink() {
    let fx = Fixture::new();
    symlink("../outside", fx.root.join("conf")).expect("symlink");
    let before = fx.snapshot();
    // conf/secret is <root>/outside/secret: missing, so nothing to delete.
    let t = Tar::new().file("conf/.wh.secret", b"").end();
    let applied = extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert!(applied.changes.removed.is_empty());
    assert_eq!(before, fx.snapshot());
    assert!(fx.outside.join("secret").exists());
}

#[test]
fn file_over_existing_directory() {
    let t = start().file("var/lib", b"flat").end();
    Fixture::new().refuses(&t, &default(), |e| matches!(e, E::TypeConflict { .. }));
}

#[test]
fn directory_over_existing_file() {
    let t = start().dir("etc/hostname").end();
    Fixture::new().refuses(&t, &default(), |e| matches!(e, E::TypeConflict { .. }));
}

#[test]
fn symlink_over_existing_directory() {
    let t = start().symlink("var/lib", "../etc").end();
    Fixture::new().refuses(&t, &default(), |e| {
        matches!(e, E::DirReplacedBySymlink { .. })
    });
}

#[test]
fn file_under_existing_file() {
    let t = start().file("etc/hostname/x", b"x").end();
    Fixture::new().refuses(&t, &default(), |e| matches!(e, E::TypeConflict { .. }));
}

// --- a commit that fails midway is undone --------------------------------

/// Runs `hook` once, when the payload stream first reports its end: after
/// every entry is staged, before the plan and the commit.
struct AtEnd<R, F: FnMut()> {
    inner: R,
    hook: Option<F>,
}

impl<R: Read, F: FnMut()> Read for AtEnd<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let Some(mut hook) = self.hook.take() {
                hook();
            }
        }
        Ok(n)
    }
}

fn staging_dir(root: &std::path::Path) -> std::path::PathBuf {
    fs::read_dir(root)
        .expect("read root")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(extract::STAGING_PREFIX))
        })
        .expect("staging directory exists while streaming")
}

#[test]
fn commit_failure_midway_restores_everything() {
    let fx = Fixture::new();
    fs::create_dir(fx.root.join("opt")).expect("mkdir");
    fs::write(fx.root.join("opt/old"), b"old").expect("write");
    let before = fx.snapshot();
    // Whiteout etc/motd, replace etc/hostname, change etc's mode, install
    // new/ — then the rename of zzz fails: its staged file vanished (as
    // if removed by a concurrent process), which no plan can foresee.
    let mut etc = Hdr::new("etc", b'5');
    etc.mode = 0o700;
    let t = Tar::new()
        .entry(etc, b"")
        .file("etc/hostname", b"replaced\n")
        .file("etc/.wh.motd", b"")
        .file(".wh.opt", b"")
        .dir("new")
        .file("new/a", b"a")
        .file("zzz", b"last")
        .end();
    let root = fx.root.clone();
    let reader = AtEnd {
        inner: &t[..],
        hook: Some(move || {
            fs::remove_file(staging_dir(&root).join("tree/zzz")).expect("remove staged file");
        }),
    };
    let err = extract::apply(reader, &fx.root, &default()).expect_err("commit must fail");
    assert!(matches!(err, E::Io { op: "rename", .. }), "{err:?}");
    assert_eq!(before, fx.snapshot(), "root not restored");
    assert_no_staging(&fx.root);

    // The same payload without the sabotage applies fine.
    let applied = extract::apply(&t[..], &fx.root, &default()).expect("applies");
    assert_eq!(applied.changes.removed, ["etc/motd", "opt"]);
    assert_eq!(applied.changes.replaced, ["etc/hostname"]);
    assert_eq!(applied.changes.installed, ["new", "zzz"]);
    assert_eq!(applied.changes.updated_dirs, ["etc"]);
}

#[test]
fn conflict_planted_while_streaming_is_caught_before_commit() {
    let fx = Fixture::new();
    let t = start()
        .file("var/lib/state", b"new")
        .file("zzz", b"z")
        .end();
    let root = fx.root.clone();
    let outside = fx.outside.clone();
    let reader = AtEnd {
        inner: &t[..],
        hook: Some(move || {
            // Swap var/lib for a symlink to outside/ at the last moment.
            fs::rename(root.join("var/lib"), root.join("var/lib.orig")).expect("rename");
            symlink(&outside, root.join("var/lib")).expect("symlink");
        }),
    };
    let err = extract::apply(reader, &fx.root, &default()).expect_err("must refuse");
    // Resolved inside the root, the absolute link points at nothing.
    assert!(matches!(err, E::DanglingSymlink { .. }), "{err:?}");
    assert!(!fx.outside.join("state").exists());
    assert!(!fx.root.join("zzz").exists());
    assert_no_staging(&fx.root);
}
