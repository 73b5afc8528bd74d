//! `satchel-bundle approve` through the real binary, with uploads built as
//! `satchel-fetch capture` builds them (FORMAT.md, "Uploads"): a tar of
//! paths relative to the node's root, zstd, then age to the admins'
//! recipients; plus the metadata `uploads pull` writes beside it.
//!
//! Hostile cases, each asserting that no bundle is written: a tampered
//! upload (sha256 differs from the metadata), a pinned `--sha256` that
//! differs, an anonymous upload without `--allow-anonymous`, an upload
//! posted for another MAC, tars with unsafe entries (`..`, a symlink
//! climbing above the root, a device node, a duplicate), an upload not encrypted to the
//! admin, a passphrase-encrypted upload, a `--current` bundle for another
//! node, and no confirmation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_satchel-bundle");
const MAC: &str = "aa-bb-cc-dd-ee-01";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run satchel-bundle")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf8")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The keys of one admin and one node.
struct World {
    dir: tempfile::TempDir,
    sign: PathBuf,
    public: PathBuf,
    admin_id: PathBuf,
    admin_rcpt: String,
    node_id: PathBuf,
    node_rcpt: String,
}

fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = ok(&["keygen", "identity", "--out", s(&path), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    (
        path,
        v["recipient"].as_str().expect("recipient").to_string(),
    )
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tmp");
    ok(&["keygen", "signing", "--out", s(&dir.path().join("admin"))]);
    let (admin_id, admin_rcpt) = identity(dir.path(), "admin.age");
    let (node_id, node_rcpt) = identity(dir.path(), "node.age");
    World {
        sign: dir.path().join("admin.key"),
        public: dir.path().join("admin.pub"),
        admin_id,
        admin_rcpt,
        node_id,
        node_rcpt,
        dir,
    }
}

/// One tar entry of a test upload.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    /// A name written into the header raw, past the tar crate's own checks.
    RawFile(&'a str, &'a [u8]),
    CharDevice(&'a str),
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).expect("dir");
            }
            E::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).expect("file");
            }
            E::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("symlink");
            }
            E::RawFile(name, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                let field = &mut h.as_old_mut().name;
                field.fill(0);
                field[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, *data).expect("raw");
            }
            E::CharDevice(p) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o600);
                h.set_size(0);
                h.set_device_major(1).expect("major");
                h.set_device_minor(3).expect("minor");
                b.append_data(&mut h, p, &[][..]).expect("dev");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// `tar | zstd | age -r RECIPIENT…`, as capture does.
fn seal_upload(tar: &[u8], recipients: &[&str]) -> Vec<u8> {
    let zst = zstd::encode_all(tar, 3).expect("zstd");
    let rcpts: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| age::x25519::Recipient::from_str(r).expect("recipient"))
        .collect();
    let enc = age::Encryptor::with_recipients(rcpts.iter().map(|r| r as &dyn age::Recipient))
        .expect("encryptor");
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).expect("wrap");
    w.write_all(&zst).expect("write");
    w.finish().expect("finish");
    out
}

/// Writes UPLOAD and UPLOAD.json as `uploads pull` does.
fn pulled(w: &World, name: &str, bytes: &[u8], mac: &str, cert_scope: Option<&str>) -> PathBuf {
    let path = w.dir.path().join(name);
    std::fs::write(&path, bytes).expect("upload");
    let meta = serde_json::json!({
        "id": "00000000000000a1",
        "mac": mac,
        "sha256": hex::encode(Sha256::digest(bytes)),
        "size": bytes.len(),
        "source": "127.0.0.1",
        "received": "2026-11-24T00:00:00Z",
        "cert_scope": cert_scope,
        "cert_binds_mac": cert_scope == Some(format!("host/{mac}").as_str()),
    });
    let mut side = path.as_os_str().to_owned();
    side.push(".json");
    std::fs::write(PathBuf::from(side), meta.to_string()).expect("meta");
    path
}

fn good_tar() -> Vec<u8> {
    tar_of(&[
        E::Dir("etc"),
        E::File("etc/hostname", b"node1-typed-by-hand\n", 0o644),
        E::File("etc/app.conf", b"level = 3\n", 0o600),
        E::Symlink("etc/app.link", "app.conf"),
        // Absolute targets are link content, kept as they are.
        E::Symlink("etc/localtime", "/usr/share/zoneinfo/Europe/Berlin"),
    ])
}

fn approve_args<'a>(w: &'a World, upload: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "approve",
        s(upload),
        "--identity",
        s(&w.admin_id),
        "--mac",
        MAC,
        "--serial",
        "7",
        "--sign-key",
        s(&w.sign),
        "--recipient",
        &w.node_rcpt,
        "--recipient",
        &w.admin_rcpt,
        "-o",
        s(out),
    ]
}

fn approve(w: &World, upload: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = approve_args(w, upload, out);
    args.extend_from_slice(extra);
    run(&args)
}

fn refused(o: &Output, out: &Path, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "must be refused; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!out.exists(), "no bundle written");
    let parent = out.parent().expect("dir");
    let left: Vec<_> = std::fs::read_dir(parent)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".satchel-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn an_approved_upload_becomes_a_signed_bundle_the_node_opens() {
    let w = world();
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    let out = w.dir.path().join("approved.bundle");
    let o = approve(&w, &upload, &out, &["--yes"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("etc/hostname"), "file list shown: {stdout}");
    assert!(
        stdout.contains("approved upload 00000000000000a1"),
        "{stdout}"
    );

    ok(&["verify", s(&out), "--trust", s(&w.public), "--mac", MAC]);
    let root = w.dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    ok(&[
        "open",
        s(&out),
        "--identity",
        s(&w.node_id),
        "--trust",
        s(&w.public),
        "--mac",
        MAC,
        "--into",
        s(&root),
    ]);
    assert_eq!(
        std::fs::read(root.join("etc/hostname")).expect("hostname"),
        b"node1-typed-by-hand\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/app.link")).expect("link"),
        Path::new("app.conf")
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).expect("link"),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&out), "--json"])).expect("json");
    assert_eq!(inspect["manifest"]["serial"], 7);
    assert_eq!(inspect["manifest"]["target"], format!("host/{MAC}"));
}

#[test]
fn approve_shows_the_diff_against_the_current_bundle() {
    let w = world();
    let cur_dir = w.dir.path().join("current-src");
    std::fs::create_dir_all(cur_dir.join("etc")).expect("mkdir");
    std::fs::write(cur_dir.join("etc/hostname"), "node1\n").expect("w");
    std::fs::write(cur_dir.join("etc/old.conf"), "x\n").expect("w");
    let current = w.dir.path().join("current.bundle");
    ok(&[
        "create",
        "--mac",
        MAC,
        "--serial",
        "6",
        "--expires",
        "1d",
        "--sign-key",
        s(&w.sign),
        "--recipient",
        &w.node_rcpt,
        "--recipient",
        &w.admin_rcpt,
        "--from-dir",
        s(&cur_dir),
        "-o",
        s(&current),
    ]);
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    let out = w.dir.path().join("approved.bundle");
    let o = approve(&w, &upload, &out, &["--yes", "--current", s(&current)]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("~ etc/hostname (content"), "{stdout}");
    assert!(stdout.contains("- etc/old.conf"), "{stdout}");
    assert!(stdout.contains("+ etc/app.conf"), "{stdout}");

    // JSON carries the same diff.
    let out2 = w.dir.path().join("approved2.bundle");
    let o = approve(
        &w,
        &upload,
        &out2,
        &["--yes", "--current", s(&current), "--json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let removed: Vec<&str> = v["diff"]["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|e| e["path"].as_str().expect("p"))
        .collect();
    assert_eq!(removed, ["etc/old.conf"]);
    assert_eq!(v["approved"]["sha256"].as_str().map(str::len), Some(64));

    // A --current bundle of another node is refused.
    let other = w.dir.path().join("other.bundle");
    ok(&[
        "create",
        "--mac",
        "aa-bb-cc-dd-ee-02",
        "--serial",
        "6",
        "--expires",
        "1d",
        "--sign-key",
        s(&w.sign),
        "--recipient",
        &w.admin_rcpt,
        "--from-dir",
        s(&cur_dir),
        "-o",
        s(&other),
    ]);
    let out3 = w.dir.path().join("approved3.bundle");
    refused(
        &approve(&w, &upload, &out3, &["--yes", "--current", s(&other)]),
        &out3,
        "not for host/",
    );
}

#[test]
fn a_tampered_upload_is_refused() {
    let w = world();
    let mut bytes = seal_upload(&good_tar(), &[&w.admin_rcpt]);
    let upload = pulled(&w, "up.bin", &bytes, MAC, Some("host/aa-bb-cc-dd-ee-01"));
    // Another upload under the same id and metadata.
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&upload, &bytes).expect("tamper");
    let out = w.dir.path().join("o.bundle");
    refused(
        &approve(&w, &upload, &out, &["--yes"]),
        &out,
        "is not the upload the server received",
    );

    // Same for a whole different (valid) upload swapped in.
    let other = seal_upload(
        &tar_of(&[E::File("etc/evil", b"x", 0o644)]),
        &[&w.admin_rcpt],
    );
    std::fs::write(&upload, &other).expect("swap");
    refused(
        &approve(&w, &upload, &out, &["--yes"]),
        &out,
        "is not the upload the server received",
    );
}

#[test]
fn a_pinned_sha256_must_match() {
    let w = world();
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    let out = w.dir.path().join("o.bundle");
    let wrong = "0".repeat(64);
    refused(
        &approve(&w, &upload, &out, &["--yes", "--sha256", &wrong]),
        &out,
        "not the --sha256",
    );
    let o = approve(&w, &upload, &out, &["--yes", "--sha256", "XYZ"]);
    assert_eq!(o.status.code(), Some(2), "a malformed pin is a usage error");
}

#[test]
fn an_anonymous_upload_needs_allow_anonymous() {
    let w = world();
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        MAC,
        None,
    );
    let out = w.dir.path().join("o.bundle");
    refused(
        &approve(&w, &upload, &out, &["--yes"]),
        &out,
        "--allow-anonymous",
    );
    let o = approve(&w, &upload, &out, &["--yes", "--allow-anonymous"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());
}

#[test]
fn an_upload_under_a_site_certificate_needs_allow_unbound_certificate() {
    let w = world();
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        MAC,
        Some("site/dc1"),
    );
    let out = w.dir.path().join("o.bundle");
    let o = approve(&w, &upload, &out, &["--yes"]);
    refused(&o, &out, "--allow-unbound-certificate");
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("site/dc1 proves only"), "{said}");
    let o = approve(&w, &upload, &out, &["--yes", "--allow-unbound-certificate"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("the certificate proves: certificate site/dc1"),
        "{said}"
    );
}

#[test]
fn an_upload_for_another_mac_is_refused() {
    let w = world();
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        "aa-bb-cc-dd-ee-02",
        Some("host/aa-bb-cc-dd-ee-02"),
    );
    let out = w.dir.path().join("o.bundle");
    refused(
        &approve(&w, &upload, &out, &["--yes"]),
        &out,
        "for another node",
    );
}

#[test]
fn uploads_with_unsafe_entries_are_refused() {
    let w = world();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot escape",
            tar_of(&[E::RawFile("../../etc/shadow", b"root::0:0\n")]),
        ),
        (
            "absolute name",
            tar_of(&[E::RawFile("/etc/shadow", b"root::0:0\n")]),
        ),
        (
            "absolute symlink climbing above the root",
            tar_of(&[E::Symlink("etc/link", "/../etc/shadow")]),
        ),
        (
            "symlink leaving the root",
            tar_of(&[E::Symlink("etc/link", "../../../etc/shadow")]),
        ),
        (
            "write through a symlink",
            tar_of(&[E::Symlink("etc", "/"), E::File("etc/shadow", b"x", 0o644)]),
        ),
        ("device node", tar_of(&[E::CharDevice("dev/null")])),
        (
            "duplicate entry",
            tar_of(&[E::File("etc/a", b"1", 0o644), E::File("etc/a", b"2", 0o644)]),
        ),
    ];
    for (name, tar) in cases {
        let upload = pulled(
            &w,
            "up.bin",
            &seal_upload(&tar, &[&w.admin_rcpt]),
            MAC,
            Some("host/aa-bb-cc-dd-ee-01"),
        );
        let out = w.dir.path().join("o.bundle");
        let o = approve(&w, &upload, &out, &["--yes"]);
        assert!(!o.status.success(), "{name}: approved");
        refused(&o, &out, "refused by the overlay's archive rules");
    }
    // Trailing garbage after the tar is refused too.
    let mut tar = good_tar();
    tar.extend_from_slice(b"garbage after the end of the archive");
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&tar, &[&w.admin_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    let out = w.dir.path().join("o.bundle");
    refused(
        &approve(&w, &upload, &out, &["--yes"]),
        &out,
        "refused by the overlay's archive rules",
    );
}

#[test]
fn an_upload_not_for_this_admin_or_with_a_passphrase_is_refused() {
    let w = world();
    let out = w.dir.path().join("o.bundle");
    // Encrypted to the node only.
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.node_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    refused(
        &approve(&w, &upload, &out, &["--yes"]),
        &out,
        "not encrypted to this identity",
    );
    // A passphrase (scrypt) file.
    let enc =
        age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from("pw".to_string()));
    let mut bytes = Vec::new();
    let mut wr = enc.wrap_output(&mut bytes).expect("wrap");
    wr.write_all(&zstd::encode_all(&good_tar()[..], 3).expect("zstd"))
        .expect("write");
    wr.finish().expect("finish");
    let upload = pulled(&w, "up.bin", &bytes, MAC, Some("host/aa-bb-cc-dd-ee-01"));
    refused(&approve(&w, &upload, &out, &["--yes"]), &out, "passphrase");
    // Not zstd inside.
    let upload = pulled(
        &w,
        "up.bin",
        &{
            let rcpt = age::x25519::Recipient::from_str(&w.admin_rcpt).expect("r");
            let enc =
                age::Encryptor::with_recipients(std::iter::once(&rcpt as &dyn age::Recipient))
                    .expect("enc");
            let mut b = Vec::new();
            let mut wr = enc.wrap_output(&mut b).expect("wrap");
            wr.write_all(&good_tar()).expect("write");
            wr.finish().expect("finish");
            b
        },
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    refused(&approve(&w, &upload, &out, &["--yes"]), &out, "decompress");
}

#[test]
fn approve_without_confirmation_writes_nothing() {
    let w = world();
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&good_tar(), &[&w.admin_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    let out = w.dir.path().join("o.bundle");
    // stdin is not a terminal and no --yes: a usage error before anything is read.
    let o = approve(&w, &upload, &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    assert!(!out.exists());
}

#[test]
fn approve_keeps_special_bits_only_when_allowed() {
    let w = world();
    let tar = tar_of(&[E::Dir("usr"), E::File("usr/tool", b"#!/bin/sh\n", 0o4755)]);
    let upload = pulled(
        &w,
        "up.bin",
        &seal_upload(&tar, &[&w.admin_rcpt]),
        MAC,
        Some("host/aa-bb-cc-dd-ee-01"),
    );
    for (flag, mode) in [(None, "0755"), (Some("--allow-special-bits"), "4755")] {
        let out = w.dir.path().join(format!("o{mode}.bundle"));
        let mut extra = vec!["--yes"];
        extra.extend(flag);
        let o = approve(&w, &upload, &out, &extra);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains(mode), "mode {mode} shown: {stdout}");
        let listing = ok(&["inspect", s(&out), "--identity", s(&w.admin_id), "--json"]);
        let v: serde_json::Value = serde_json::from_str(&listing).expect("json");
        let tool = v["files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["path"] == "usr/tool")
            .expect("tool")
            .clone();
        assert_eq!(
            format!("{:o}", tool["mode"].as_u64().expect("mode")),
            mode.trim_start_matches('0')
        );
    }
}
