//! `satchel-bundle initrd` through the real binary, checked with GNU `cpio`
//! and `zstd`.
//!
//! What the concatenation test proves, and what it does not: it splits the
//! combined file with the rules of the kernel's initramfs unpacker
//! (`init/initramfs.c`, `unpack_to_rootfs`: zero padding skipped, an
//! uncompressed member starts with `070701` at a 4-byte boundary, a
//! compressed member is one stream whose end the decompressor reports),
//! then unpacks every member with `cpio -i` into one directory. It proves
//! that our member is a self-contained zstd stream of a newc archive that a
//! reader following those rules finds after another archive, compressed or
//! not. It does not run a kernel: `tests/tests/boot.rs` boots a real one
//! with an overlay concatenated after a base initramfs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_satchel-bundle");

const CONFIG: &str = r#"version = 1
mac = "52-54-00-5a-7c-01"
domain = "example.test"
ca_cert = "ca.pem"
client_cert = "node.pem"
client_key = "keys/node.key"
identities = ["keys/host.age"]
signers = ["signers/alice.pub"]
admin_recipients = []
clock_floor = "2026-01-01T00:00:00Z"
"#;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// An enrollment directory like `satchel-pki enroll` writes, plus a file
/// the config does not name (which must stay out of the overlay).
fn enrollment(dir: &Path) -> PathBuf {
    let e = dir.join("enroll");
    write(&e.join("satchel.toml"), CONFIG, 0o644);
    write(&e.join("ca.pem"), "CA CERT\n", 0o644);
    write(&e.join("node.pem"), "NODE CERT\n", 0o644);
    // Deliberately readable on the workstation: the overlay must still say 0600.
    write(&e.join("keys/node.key"), "NODE KEY\n", 0o644);
    write(&e.join("keys/host.age"), "AGE-SECRET-KEY-TEST\n", 0o600);
    write(&e.join("signers/alice.pub"), "ALICE PUB\n", 0o644);
    write(&e.join("notes.txt"), "not named by the config\n", 0o644);
    e
}

fn fetcher(dir: &Path) -> PathBuf {
    let f = dir.join("satchel-fetch");
    write(&f, "#!/bin/sh\necho stand-in fetcher\n", 0o755);
    f
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run satchel-bundle")
}

fn build(enroll: &Path, fetch: &Path, out: &Path) -> Output {
    run(&[
        "initrd".as_ref(),
        "--enroll".as_ref(),
        enroll.as_os_str(),
        "--fetcher".as_ref(),
        fetch.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
}

fn sh(cmd: &str, dir: &Path) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const EXPECTED: &[&str] = &[
    "etc",
    "etc/satchel",
    "etc/satchel/ca.pem",
    "etc/satchel/keys",
    "etc/satchel/keys/host.age",
    "etc/satchel/keys/node.key",
    "etc/satchel/node.pem",
    "etc/satchel/satchel.toml",
    "etc/satchel/signers",
    "etc/satchel/signers/alice.pub",
    "usr",
    "usr/lib",
    "usr/lib/satchel",
    "usr/lib/satchel/satchel-fetch",
    "usr/lib/satchel/satchel-hook",
    "usr/lib/systemd",
    "usr/lib/systemd/system",
    "usr/lib/systemd/system/initrd.target.wants",
    "usr/lib/systemd/system/initrd.target.wants/satchel-fetch.service",
    "usr/lib/systemd/system/satchel-fetch.service",
    "var",
    "var/lib",
    "var/lib/dracut",
    "var/lib/dracut/hooks",
    "var/lib/dracut/hooks/pre-pivot",
    "var/lib/dracut/hooks/pre-pivot/50-satchel.sh",
];

#[test]
fn cpio_lists_the_expected_files_parents_first() {
    let t = tempfile::tempdir().expect("tmp");
    let out = t.path().join("overlay.cpio.zst");
    let r = build(&enrollment(t.path()), &fetcher(t.path()), &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        std::fs::metadata(&out).expect("out").mode() & 0o777,
        0o600,
        "the overlay holds keys"
    );
    let listed = sh("zstd -dc overlay.cpio.zst | cpio -t --quiet", t.path());
    let listed: Vec<String> = String::from_utf8(listed.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_string)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, EXPECTED,
        "exactly the expected files (notes.txt is not named by the config)"
    );
    for (i, p) in listed.iter().enumerate() {
        if let Some((parent, _)) = p.rsplit_once('/') {
            let at = listed
                .iter()
                .position(|x| x == parent)
                .expect("parent listed");
            assert!(at < i, "{parent} comes after {p}");
        }
    }
}

#[test]
fn unpacked_overlay_has_the_right_modes_contents_and_link() {
    let t = tempfile::tempdir().expect("tmp");
    let out = t.path().join("overlay.cpio.zst");
    let r = build(&enrollment(t.path()), &fetcher(t.path()), &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::fs::create_dir(t.path().join("root")).expect("mkdir");
    sh(
        "zstd -dc ../overlay.cpio.zst | cpio -i -d --quiet --no-absolute-filenames",
        &t.path().join("root"),
    );
    let root = t.path().join("root");
    let mode = |p: &str| std::fs::symlink_metadata(root.join(p)).expect(p).mode() & 0o7777;
    assert_eq!(mode("etc/satchel/keys/node.key"), 0o600);
    assert_eq!(mode("etc/satchel/keys/host.age"), 0o600);
    assert_eq!(mode("etc/satchel/satchel.toml"), 0o644);
    assert_eq!(mode("etc/satchel"), 0o700);
    assert_eq!(mode("usr/lib/satchel/satchel-fetch"), 0o755);
    assert_eq!(mode("usr/lib/satchel/satchel-hook"), 0o755);
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
    assert_eq!(read("etc/satchel/keys/node.key"), "NODE KEY\n");
    assert_eq!(read("etc/satchel/satchel.toml"), CONFIG);
    assert_eq!(
        read("usr/lib/satchel/satchel-hook"),
        include_str!("../../../contrib/satchel-hook.sh")
    );
    assert_eq!(
        read("usr/lib/systemd/system/satchel-fetch.service"),
        include_str!("../../../contrib/systemd/satchel-fetch.service")
    );
    assert_eq!(
        std::fs::read_link(
            root.join("usr/lib/systemd/system/initrd.target.wants/satchel-fetch.service")
        )
        .expect("link"),
        Path::new("../satchel-fetch.service")
    );
    // The link resolves to the unit inside the unpacked tree.
    assert!(root
        .join("usr/lib/systemd/system/initrd.target.wants/satchel-fetch.service")
        .is_file());
    assert!(!root.join("etc/satchel/notes.txt").exists());
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let t = tempfile::tempdir().expect("tmp");
    let e = enrollment(t.path());
    let f = fetcher(t.path());
    let (a, b) = (t.path().join("a.cpio.zst"), t.path().join("b.cpio.zst"));
    assert!(build(&e, &f, &a).status.success());
    // A newer mtime on the workstation changes nothing.
    std::fs::write(e.join("ca.pem"), "CA CERT\n").expect("touch");
    assert!(build(&e, &f, &b).status.success());
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
}

/// Splits `bytes` into archive members the way the kernel's initramfs
/// unpacker walks them. Returns (compressed?, member bytes).
fn kernel_members(mut bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut members = Vec::new();
    let mut offset = 0usize;
    while !bytes.is_empty() {
        if bytes[0] == 0 {
            bytes = &bytes[1..];
            offset += 1;
            continue;
        }
        if bytes.starts_with(b"070701") {
            assert_eq!(
                offset % 4,
                0,
                "an uncompressed member must start 4-byte aligned"
            );
            // Walk newc headers to the trailer, as the kernel's state machine does.
            let mut pos = 0usize;
            loop {
                let h = &bytes[pos..pos + 110];
                assert_eq!(&h[..6], b"070701", "newc magic at {pos}");
                let field = |i: usize| {
                    usize::from_str_radix(
                        std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).expect("hex"),
                        16,
                    )
                    .expect("hex")
                };
                let (filesize, namesize) = (field(6), field(11));
                let name = &bytes[pos + 110..pos + 110 + namesize - 1];
                let data_at = (pos + 110 + namesize + 3) & !3;
                pos = (data_at + filesize + 3) & !3;
                if name == b"TRAILER!!!" {
                    break;
                }
            }
            members.push((false, bytes[..pos].to_vec()));
            offset += pos;
            bytes = &bytes[pos..];
            continue;
        }
        assert!(
            bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "unknown member at offset {offset}: the kernel would stop here"
        );
        let len = zstd::zstd_safe::find_frame_compressed_size(bytes).expect("a whole zstd frame");
        members.push((true, bytes[..len].to_vec()));
        offset += len;
        bytes = &bytes[len..];
    }
    members
}

fn concatenation_case(compress_base: bool) {
    let t = tempfile::tempdir().expect("tmp");
    let overlay = t.path().join("overlay.cpio.zst");
    let r = build(&enrollment(t.path()), &fetcher(t.path()), &overlay);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // A stand-in distro initrd made by GNU cpio.
    let base_dir = t.path().join("base");
    write(&base_dir.join("init"), "#!/bin/sh\n", 0o755);
    write(&base_dir.join("usr/lib/os-release"), "ID=test\n", 0o644);
    std::os::unix::fs::symlink("usr/lib", base_dir.join("lib")).expect("symlink");
    sh(
        "find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../base.cpio",
        &base_dir,
    );
    let base_name = if compress_base {
        sh("zstd -q -19 base.cpio -o base.cpio.zst", t.path());
        "base.cpio.zst"
    } else {
        "base.cpio"
    };
    sh(
        &format!("cat {base_name} overlay.cpio.zst > combined.img"),
        t.path(),
    );

    let combined = std::fs::read(t.path().join("combined.img")).expect("combined");
    let members = kernel_members(&combined);
    assert_eq!(members.len(), 2, "the base and the overlay");
    assert_eq!(members[0].0, compress_base);
    assert!(members[1].0, "the overlay is compressed");
    let root = t.path().join("root");
    std::fs::create_dir(&root).expect("root");
    for (i, (compressed, bytes)) in members.iter().enumerate() {
        let m = t.path().join(format!("member{i}"));
        std::fs::write(&m, bytes).expect("member");
        let cmd = if *compressed {
            format!("zstd -dc ../member{i} | cpio -i -d --quiet --no-absolute-filenames")
        } else {
            format!("cpio -i -d --quiet --no-absolute-filenames < ../member{i}")
        };
        sh(&cmd, &root);
    }
    assert!(root.join("init").is_file(), "the base was unpacked");
    assert_eq!(
        std::fs::read_link(root.join("lib")).expect("lib link"),
        Path::new("usr/lib")
    );
    assert!(root.join("usr/lib/os-release").is_file());
    assert!(
        root.join("usr/lib/satchel/satchel-fetch").is_file(),
        "the overlay was unpacked"
    );
    assert!(root.join("etc/satchel/satchel.toml").is_file());
    // The base's `lib -> usr/lib` link survived: the overlay never emits `lib`.
    assert!(std::fs::symlink_metadata(root.join("lib"))
        .expect("lib")
        .file_type()
        .is_symlink());
}

#[test]
fn concatenated_after_an_uncompressed_cpio_both_unpack() {
    concatenation_case(false);
}

#[test]
fn concatenated_after_a_zstd_cpio_both_unpack() {
    concatenation_case(true);
}

fn refused(enroll: &Path, fetch: &Path, out: &Path, needle: &str) {
    let r = build(enroll, fetch, out);
    assert_eq!(
        r.status.code(),
        Some(1),
        "must fail: {}",
        String::from_utf8_lossy(&r.stdout)
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!out.exists(), "nothing written on failure");
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("dir"))
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".satchel-initrd-")
        })
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left");
}

#[test]
fn refuses_an_enrollment_without_satchel_toml() {
    let t = tempfile::tempdir().expect("tmp");
    let e = enrollment(t.path());
    std::fs::remove_file(e.join("satchel.toml")).expect("rm");
    refused(
        &e,
        &fetcher(t.path()),
        &t.path().join("o.cpio.zst"),
        "has no satchel.toml",
    );
}

#[test]
fn refuses_an_enrollment_missing_a_credential() {
    let t = tempfile::tempdir().expect("tmp");
    let e = enrollment(t.path());
    std::fs::remove_file(e.join("keys/node.key")).expect("rm");
    refused(
        &e,
        &fetcher(t.path()),
        &t.path().join("o.cpio.zst"),
        "client_key names",
    );
}

#[test]
fn refuses_a_config_naming_a_file_outside_the_enrollment() {
    let t = tempfile::tempdir().expect("tmp");
    let e = enrollment(t.path());
    write(&t.path().join("outside.key"), "OTHER NODE KEY\n", 0o600);
    let text = CONFIG.replace("\"keys/node.key\"", "\"../outside.key\"");
    write(&e.join("satchel.toml"), &text, 0o644);
    refused(
        &e,
        &fetcher(t.path()),
        &t.path().join("o.cpio.zst"),
        "inside the enrollment directory",
    );
    let text = CONFIG.replace("\"ca.pem\"", "\"/etc/ssl/certs/ca.pem\"");
    write(&e.join("satchel.toml"), &text, 0o644);
    refused(
        &e,
        &fetcher(t.path()),
        &t.path().join("o.cpio.zst"),
        "inside the enrollment directory",
    );
}

#[test]
fn refuses_a_missing_fetcher_and_a_directory_as_credential() {
    let t = tempfile::tempdir().expect("tmp");
    let e = enrollment(t.path());
    refused(
        &e,
        &t.path().join("no-such-fetcher"),
        &t.path().join("o.cpio.zst"),
        "--fetcher",
    );
    std::fs::remove_file(e.join("ca.pem")).expect("rm");
    std::fs::create_dir(e.join("ca.pem")).expect("mkdir");
    refused(
        &e,
        &fetcher(t.path()),
        &t.path().join("o.cpio.zst"),
        "ca_cert names",
    );
}
