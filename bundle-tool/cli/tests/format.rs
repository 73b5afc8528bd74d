//! The bundle format end to end: round trips, tampering, refusals with
//! distinct errors, interop with the standard tools by FORMAT.md's own
//! recipes, the CLI's contract, and bounded memory measured on the real
//! binary.
//!
//! The interop and memory tests need `tar`, `age`, `age-keygen`, `zstd`,
//! `openssl` and `python3` with `cryptography` (CI installs them); a missing
//! tool fails the test with its name, it is never skipped.

// Helpers of this test binary panic on failure by design, like the tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicU64;

use satchel_format::container::{read_header, write_container};
use satchel_format::error::{ContainerError, ManifestError, OpenError, VerifyError};
use satchel_format::manifest::{PayloadInfo, Policy};
use satchel_format::open::{apply_verified, open_into, verify_file, StreamVerifier};
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::verify::Checks;
use satchel_format::{Identities, Mac, Manifest, SigningKey, SiteName, Target, FORMAT_VERSION};
use satchel_overlay::{ExtractError, Options};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_satchel-bundle");
const FORMAT_MD: &str = include_str!("../../FORMAT.md");

fn mac() -> Mac {
    Mac::from_octets([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
}

/// A small tree with files, modes, a symlink, an empty file, unicode and a
/// deep path.
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    fs::create_dir_all(root.join("opt/a/b/c/d/e/f")).unwrap();
    fs::write(root.join("etc/hostname"), "node-12\n").unwrap();
    fs::write(
        root.join("etc/ssh/sshd_config"),
        "PermitRootLogin no\n".repeat(50),
    )
    .unwrap();
    fs::write(root.join("etc/empty"), "").unwrap();
    fs::write(root.join("opt/a/b/c/d/e/f/deep.txt"), "deep").unwrap();
    fs::write(root.join("opt/données-été.txt"), "unicode").unwrap();
    symlink("hostname", root.join("etc/name")).unwrap();
    symlink("../../etc/hostname", root.join("opt/a/up")).unwrap();
    fs::set_permissions(
        root.join("etc/ssh/sshd_config"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(root.join("etc/hostname"), fs::Permissions::from_mode(0o644)).unwrap();
}

/// Every path under `root`: kind, mode, content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    (
                        'l',
                        0,
                        fs::read_link(&p)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    ),
                );
            } else if m.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, ('-', mode, fs::read(&p).unwrap()));
            }
        }
    }
    out
}

struct Fixture {
    dir: tempfile::TempDir,
    key: SigningKey,
    node: Identities,
    admin: Identities,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(&dir.path().join("tree"));
        Fixture {
            dir,
            key: SigningKey::generate(),
            node: Identities::generate(),
            admin: Identities::generate(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn params(&self) -> SealParams {
        let now = OffsetDateTime::now_utc();
        SealParams {
            target: Target::Host(mac()),
            site: Some(SiteName::parse("dc1").unwrap()),
            serial: 7,
            created: now,
            expires: now + Duration::days(1),
            policy: Policy::default(),
            recipients: vec![
                self.node.recipients().remove(0),
                self.admin.recipients().remove(0),
            ],
        }
    }

    fn seal(&self, params: &SealParams, out: &str) -> PathBuf {
        let out = self.path(out);
        let src = Source::Dir {
            path: &self.path("tree"),
            keep_owners: false,
        };
        seal_to_file(params, src, &self.key, &out, &AtomicU64::new(0)).unwrap();
        out
    }

    fn checks(&self) -> Checks {
        let mut c = Checks::new(vec![
            SigningKey::generate().verifying_key(),
            self.key.verifying_key(),
        ]);
        c.target = Some(Target::Host(mac()));
        c.serial_floor = 7;
        c
    }

    /// Opens `bundle` over a fresh root holding one file; returns the result
    /// and whether the root is unchanged.
    fn open_fresh(&self, bundle: &Path, checks: &Checks) -> (Result<(), OpenError>, bool) {
        let root = tempfile::tempdir_in(self.dir.path()).unwrap();
        fs::write(root.path().join("keep"), "untouched").unwrap();
        let before = snapshot(root.path());
        let r = open_into(
            bundle,
            checks,
            &self.node,
            root.path(),
            &Options::default(),
            &AtomicU64::new(0),
        );
        let unchanged = snapshot(root.path()) == before;
        (r.map(|_| ()), unchanged)
    }
}

/// Rebuilds a container from parts (manifest bytes, signature, payload).
fn assemble(manifest: &[u8], sig: &[u8; 64], payload: &[u8]) -> Vec<u8> {
    write_container(Vec::new(), manifest, sig, payload, payload.len() as u64, 0).unwrap()
}

fn parts(bundle: &Path) -> (Vec<u8>, [u8; 64], Vec<u8>) {
    let bytes = fs::read(bundle).unwrap();
    let (h, mut p) = read_header(&bytes[..]).unwrap();
    let mut payload = Vec::new();
    std::io::Read::read_to_end(&mut p, &mut payload).unwrap();
    (h.manifest_bytes, h.signature, payload)
}

#[test]
fn round_trip_lays_the_tree_over_a_root() {
    let f = Fixture::new();
    let bundle = f.seal(&f.params(), "b.bundle");
    let root = f.path("root");
    fs::create_dir(&root).unwrap();
    let (v, applied) = open_into(
        &bundle,
        &f.checks(),
        &f.node,
        &root,
        &Options::default(),
        &AtomicU64::new(0),
    )
    .unwrap();
    assert_eq!(*v.signer(), f.key.key_id());
    assert_eq!(
        applied.summary.entries.len() as u64,
        v.manifest().payload.entries
    );
    assert_eq!(snapshot(&root), snapshot(&f.path("tree")));
    // The admin's identity opens it too.
    let root2 = f.path("root2");
    fs::create_dir(&root2).unwrap();
    open_into(
        &bundle,
        &f.checks(),
        &f.admin,
        &root2,
        &Options::default(),
        &AtomicU64::new(0),
    )
    .unwrap();
    assert_eq!(snapshot(&root2), snapshot(&f.path("tree")));
    // Applying twice gives the same tree.
    open_into(
        &bundle,
        &f.checks(),
        &f.node,
        &root,
        &Options::default(),
        &AtomicU64::new(0),
    )
    .unwrap();
    assert_eq!(snapshot(&root), snapshot(&f.path("tree")));
}

#[test]
fn site_bundles_round_trip_and_creation_is_deterministic_but_for_encryption() {
    let f = Fixture::new();
    let mut p = f.params();
    p.target = Target::Site(SiteName::parse("dc1").unwrap());
    p.site = None;
    let bundle = f.seal(&p, "site.bundle");
    let mut c = f.checks();
    c.target = Some(p.target.clone());
    let v = verify_file(&bundle, &c).unwrap();
    assert_eq!(v.manifest().target.to_string(), "site/dc1");
    let again = f.seal(&p, "site2.bundle");
    let (m1, _, _) = parts(&bundle);
    let (m2, _, _) = parts(&again);
    let a = Manifest::parse(&m1).unwrap();
    let b = Manifest::parse(&m2).unwrap();
    assert_eq!(a.payload.uncompressed_size, b.payload.uncompressed_size);
    assert_eq!(a.payload.entries, b.payload.entries);
    assert_ne!(
        a.payload.sha256, b.payload.sha256,
        "age uses a fresh file key"
    );
}

/// Feeds `bytes` to a [`StreamVerifier`] in uneven chunks.
fn stream_verify(bytes: &[u8], checks: &Checks) -> satchel_format::open::Streamed {
    let mut v = StreamVerifier::start(checks.clone()).unwrap();
    let mut rest = bytes;
    let mut n = 1;
    while !rest.is_empty() {
        let k = n.min(rest.len());
        v.write(&rest[..k]).unwrap();
        rest = &rest[k..];
        n = n * 7 % 100_003 + 1;
    }
    v.finish().unwrap()
}

#[test]
fn a_stream_verifies_like_the_file_and_counts_every_byte() {
    let f = Fixture::new();
    let bundle = f.seal(&f.params(), "b.bundle");
    let bytes = fs::read(&bundle).unwrap();

    let s = stream_verify(&bytes, &f.checks());
    assert_eq!(s.len, bytes.len() as u64);
    let v = s.verified.unwrap();
    assert_eq!(
        v.manifest(),
        verify_file(&bundle, &f.checks()).unwrap().manifest()
    );

    // Refusals are the file's refusals, and every byte is still counted
    // (the writer is never left blocked).
    let mut wrong_serial = f.checks();
    wrong_serial.serial_floor = 8;
    let s = stream_verify(&bytes, &wrong_serial);
    assert_eq!(s.len, bytes.len() as u64);
    assert!(
        matches!(s.verified, Err(OpenError::Verify(_))),
        "{:?}",
        s.verified
    );
    let mut flipped = bytes.clone();
    let last = flipped.len() - 2000;
    flipped[last] ^= 1;
    let s = stream_verify(&flipped, &f.checks());
    assert!(s.verified.is_err());
    let s = stream_verify(&bytes[..bytes.len() / 2], &f.checks());
    assert!(s.verified.is_err(), "a truncated stream verified");
    let mut junk = vec![0x5au8; 4 << 20];
    junk[..bytes.len().min(100)].copy_from_slice(&bytes[..bytes.len().min(100)]);
    let s = stream_verify(&junk, &f.checks());
    assert_eq!(s.len, junk.len() as u64);
    assert!(s.verified.is_err());

    // Dropped midway: the thread ends, nothing hangs.
    let mut v = StreamVerifier::start(f.checks()).unwrap();
    v.write(&bytes[..bytes.len() / 3]).unwrap();
    drop(v);
}

#[test]
fn a_file_swapped_after_verification_is_not_applied() {
    let f = Fixture::new();
    // Two seals of the same tree whose payloads have the same size but
    // differ: both decrypt fine. age adds a random "grease" stanza whose
    // encoded length takes fewer than 200 values, so among 400 seals two
    // share a length by pigeonhole; the file keys make them differ.
    let mut by_len: std::collections::HashMap<usize, PathBuf> = Default::default();
    let (good, payload) = (0..400)
        .find_map(|i| {
            let b = f.seal(&f.params(), &format!("seal{i}.bundle"));
            let p = parts(&b).2;
            match by_len.get(&p.len()) {
                Some(first) if parts(first).2 != p => Some((first.clone(), p)),
                Some(_) => None,
                None => {
                    by_len.insert(p.len(), b);
                    None
                }
            }
        })
        .expect("two same-size seals among 400");
    let verified = verify_file(&good, &f.checks()).unwrap();
    let (gm, gsig, _) = parts(&good);
    let swapped = assemble(&gm, &gsig, &payload);
    let root = f.path("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("keep"), "untouched").unwrap();
    let before = snapshot(&root);
    let r = apply_verified(
        std::io::Cursor::new(swapped),
        &verified,
        &f.node,
        &root,
        &Options::default(),
    );
    // Refused by the second pass's hash, not by decryption.
    assert!(matches!(r, Err(OpenError::Verify(_))), "{r:?}");
    assert_eq!(snapshot(&root), before);
    // The file as verified applies.
    apply_verified(
        fs::File::open(&good).unwrap(),
        &verified,
        &f.node,
        &root,
        &Options::default(),
    )
    .unwrap();
    assert!(snapshot(&root).len() > before.len());
}

#[test]
fn every_manifest_field_flipped_is_refused_before_anything_is_written() {
    let f = Fixture::new();
    let bundle = f.seal(&f.params(), "b.bundle");
    let (manifest, sig, payload) = parts(&bundle);
    let text = String::from_utf8(manifest).unwrap();
    let m = Manifest::parse(text.as_bytes()).unwrap();
    let field = |name: &str| -> String {
        let start = text
            .find(&format!("\"{name}\": "))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        let end = start + text[start..].find([',', '\n']).unwrap();
        text[start..end].to_string()
    };
    let other_key = SigningKey::generate().key_id().to_string();
    let edits: Vec<(&str, String, String)> = vec![
        ("format", field("format"), "\"format\": 2".into()),
        (
            "target",
            field("target"),
            "\"target\": \"host/52-54-00-12-34-57\"".into(),
        ),
        ("site", field("site"), "\"site\": \"dc2\"".into()),
        (
            "serial",
            field("serial"),
            format!("\"serial\": {}", m.serial + 1),
        ),
        (
            "created",
            field("created"),
            format!(
                "\"created\": \"{}\"",
                satchel_format::manifest::format_time(m.created - Duration::seconds(1))
            ),
        ),
        (
            "expires",
            field("expires"),
            format!(
                "\"expires\": \"{}\"",
                satchel_format::manifest::format_time(m.expires + Duration::days(365))
            ),
        ),
        (
            "sha256",
            field("sha256"),
            format!("\"sha256\": \"{}\"", hex::encode(Sha256::digest(b"other"))),
        ),
        (
            "compressed_size",
            field("compressed_size"),
            format!("\"compressed_size\": {}", m.payload.compressed_size + 1),
        ),
        (
            "uncompressed_size",
            field("uncompressed_size"),
            format!(
                "\"uncompressed_size\": {}",
                m.payload.uncompressed_size + 512
            ),
        ),
        (
            "entries",
            field("entries"),
            format!("\"entries\": {}", m.payload.entries + 1),
        ),
        (
            "signer",
            field("signer"),
            format!("\"signer\": \"{other_key}\""),
        ),
        (
            "allow_special_bits",
            field("allow_special_bits"),
            "\"allow_special_bits\": true".into(),
        ),
    ];
    for (name, from, to) in edits {
        let edited = text.replacen(&from, &to, 1);
        assert_ne!(edited, text, "{name}");
        let path = f.path(&format!("{name}.bundle"));
        fs::write(&path, assemble(edited.as_bytes(), &sig, &payload)).unwrap();
        let (r, unchanged) = f.open_fresh(&path, &f.checks());
        assert!(unchanged, "{name}: root changed");
        let e = r.expect_err(name);
        match name {
            "format" => assert!(
                matches!(
                    e,
                    OpenError::Container(ContainerError::Manifest(
                        ManifestError::UnsupportedVersion { .. }
                    ))
                ),
                "{name}: {e:?}"
            ),
            "signer" => assert!(
                matches!(e, OpenError::Verify(VerifyError::UntrustedSigner { .. })),
                "{name}: {e:?}"
            ),
            _ => assert!(
                matches!(e, OpenError::Verify(VerifyError::BadSignature { .. })),
                "{name}: {e:?}"
            ),
        }
    }
}

#[test]
fn flipped_signature_and_payload_bytes_are_refused_before_anything_is_written() {
    let f = Fixture::new();
    let bundle = f.seal(&f.params(), "b.bundle");
    let (manifest, sig, payload) = parts(&bundle);
    for i in [0usize, 31, 32, 63] {
        let mut s = sig;
        s[i] ^= 0x01;
        let path = f.path(&format!("sig{i}.bundle"));
        fs::write(&path, assemble(&manifest, &s, &payload)).unwrap();
        let (r, unchanged) = f.open_fresh(&path, &f.checks());
        assert!(unchanged);
        assert!(
            matches!(r, Err(OpenError::Verify(VerifyError::BadSignature { .. }))),
            "{r:?}"
        );
    }
    let n = payload.len();
    for i in [0, 20, n / 3, n / 2, n - 17, n - 1] {
        let mut p = payload.clone();
        p[i] ^= 0x80;
        let path = f.path(&format!("payload{i}.bundle"));
        fs::write(&path, assemble(&manifest, &sig, &p)).unwrap();
        let (r, unchanged) = f.open_fresh(&path, &f.checks());
        assert!(unchanged);
        assert!(
            matches!(
                r,
                Err(OpenError::Verify(VerifyError::PayloadHashMismatch { .. }))
            ),
            "{i}: {r:?}"
        );
    }
    // Truncated and padded-with-garbage containers.
    let bytes = fs::read(&bundle).unwrap();
    for (name, b) in [
        ("truncated", bytes[..bytes.len() - 600].to_vec()),
        ("garbage", [bytes.clone(), b"x".to_vec()].concat()),
    ] {
        let path = f.path(name);
        fs::write(&path, b).unwrap();
        let (r, unchanged) = f.open_fresh(&path, &f.checks());
        assert!(unchanged);
        assert!(matches!(r, Err(OpenError::Container(_))), "{name}: {r:?}");
    }
}

#[test]
fn wrong_key_target_expiry_and_serial_have_distinct_errors() {
    let f = Fixture::new();
    let bundle = f.seal(&f.params(), "b.bundle");
    let mut c = f.checks();
    c.trusted = vec![SigningKey::generate().verifying_key()];
    let (r, ok) = f.open_fresh(&bundle, &c);
    assert!(
        ok && matches!(
            r,
            Err(OpenError::Verify(VerifyError::UntrustedSigner { .. }))
        ),
        "{r:?}"
    );

    let mut c = f.checks();
    c.target = Some(Target::Host(Mac::from_octets([2, 0, 0, 0, 0, 1])));
    let (r, ok) = f.open_fresh(&bundle, &c);
    assert!(
        ok && matches!(r, Err(OpenError::Verify(VerifyError::WrongTarget { .. }))),
        "{r:?}"
    );

    let mut c = f.checks();
    c.target = Some(Target::Site(SiteName::parse("dc1").unwrap()));
    let (r, ok) = f.open_fresh(&bundle, &c);
    assert!(
        ok && matches!(r, Err(OpenError::Verify(VerifyError::WrongTarget { .. }))),
        "{r:?}"
    );

    let mut c = f.checks();
    c.now += Duration::days(2);
    let (r, ok) = f.open_fresh(&bundle, &c);
    assert!(
        ok && matches!(r, Err(OpenError::Verify(VerifyError::Expired { .. }))),
        "{r:?}"
    );

    let mut c = f.checks();
    c.clock_floor = Some(OffsetDateTime::now_utc() + Duration::days(2));
    c.now = OffsetDateTime::UNIX_EPOCH;
    let (r, ok) = f.open_fresh(&bundle, &c);
    assert!(
        ok && matches!(r, Err(OpenError::Verify(VerifyError::Expired { .. }))),
        "{r:?}"
    );

    let mut c = f.checks();
    c.serial_floor = 8;
    let (r, ok) = f.open_fresh(&bundle, &c);
    assert!(
        ok && matches!(
            r,
            Err(OpenError::Verify(VerifyError::SerialBelowFloor {
                serial: 7,
                floor: 8
            }))
        ),
        "{r:?}"
    );

    let other = Identities::generate();
    let root = f.path("r");
    fs::create_dir(&root).unwrap();
    let r = open_into(
        &bundle,
        &f.checks(),
        &other,
        &root,
        &Options::default(),
        &AtomicU64::new(0),
    );
    assert!(matches!(r, Err(OpenError::NoMatchingIdentity)), "{r:?}");
    assert!(snapshot(&root).is_empty());
}

/// A bundle made by hand from a payload tar, with a hook on the manifest
/// and on the compressor, signed with `key`.
fn hand_bundle(
    f: &Fixture,
    tar: &[u8],
    edit: impl FnOnce(&mut Manifest),
    compress: impl FnOnce(&[u8]) -> Vec<u8>,
    encrypt: impl FnOnce(&[u8]) -> Vec<u8>,
) -> PathBuf {
    let payload = encrypt(&compress(tar));
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let mut m = Manifest {
        format: FORMAT_VERSION,
        target: Target::Host(mac()),
        site: None,
        serial: 7,
        created: now,
        expires: now + Duration::days(1),
        payload: PayloadInfo {
            sha256: Sha256::digest(&payload).into(),
            compressed_size: payload.len() as u64,
            uncompressed_size: tar.len() as u64,
            entries: tar::Archive::new(tar).entries().unwrap().count() as u64,
        },
        signer: f.key.key_id(),
        policy: Policy::default(),
    };
    edit(&mut m);
    let bytes = m.to_bytes().unwrap();
    let path = f.path(&format!(
        "hand-{}.bundle",
        hex::encode(&Sha256::digest(&bytes)[..4])
    ));
    fs::write(&path, assemble(&bytes, &f.key.sign(&bytes), &payload)).unwrap();
    path
}

fn zstd3(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

fn to_node(f: &Fixture) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    move |data| {
        let r = f.node.recipients().remove(0);
        let enc =
            age::Encryptor::with_recipients(std::iter::once(r.as_age() as &dyn age::Recipient))
                .unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap();
        out
    }
}

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("etc/a", &b"alpha"[..]), ("etc/b", b"beta")] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hand_made_payloads_that_lie_are_refused_before_anything_is_written() {
    let f = Fixture::new();
    let tar = small_tar();
    // The honest one opens.
    let ok = hand_bundle(&f, &tar, |_| {}, zstd3, to_node(&f));
    let (r, unchanged) = f.open_fresh(&ok, &f.checks());
    assert!(r.is_ok() && !unchanged, "{r:?}");

    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "smaller uncompressed size",
            hand_bundle(
                &f,
                &tar,
                |m| m.payload.uncompressed_size -= 512,
                zstd3,
                to_node(&f),
            ),
        ),
        (
            "larger uncompressed size",
            hand_bundle(
                &f,
                &tar,
                |m| m.payload.uncompressed_size += 512,
                zstd3,
                to_node(&f),
            ),
        ),
        (
            "fewer entries",
            hand_bundle(&f, &tar, |m| m.payload.entries -= 1, zstd3, to_node(&f)),
        ),
        (
            "more entries",
            hand_bundle(&f, &tar, |m| m.payload.entries += 1, zstd3, to_node(&f)),
        ),
        (
            "zstd window over the limit",
            hand_bundle(
                &f,
                &tar,
                |_| {},
                |data| {
                    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
                    e.window_log(27).unwrap();
                    e.write_all(data).unwrap();
                    e.finish().unwrap()
                },
                to_node(&f),
            ),
        ),
        (
            "passphrase payload",
            hand_bundle(
                &f,
                &tar,
                |_| {},
                zstd3,
                |data| {
                    let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
                        "pw".to_string(),
                    ));
                    r.set_work_factor(4);
                    let enc =
                        age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                            .unwrap();
                    let mut out = Vec::new();
                    let mut w = enc.wrap_output(&mut out).unwrap();
                    w.write_all(data).unwrap();
                    w.finish().unwrap();
                    out
                },
            ),
        ),
        (
            "armored age",
            hand_bundle(
                &f,
                &tar,
                |_| {},
                zstd3,
                |data| {
                    let mut v = b"-----BEGIN AGE ENCRYPTED FILE-----\n".to_vec();
                    v.extend_from_slice(data);
                    v
                },
            ),
        ),
        (
            "not zstd",
            hand_bundle(&f, &tar, |_| {}, |d| d.to_vec(), to_node(&f)),
        ),
    ];
    for (name, path) in cases {
        let (r, unchanged) = f.open_fresh(&path, &f.checks());
        assert!(unchanged, "{name}: root changed");
        let e = r.expect_err(name);
        let fits = match name {
            "smaller uncompressed size" => matches!(e, OpenError::UncompressedTooLarge { .. }),
            "larger uncompressed size" => matches!(e, OpenError::UncompressedSizeMismatch { .. }),
            "fewer entries" | "more entries" => {
                matches!(
                    e,
                    OpenError::Extract(ExtractError::EntryCountMismatch { .. })
                )
            }
            "passphrase payload" => matches!(e, OpenError::PassphraseRefused),
            "armored age" => matches!(e, OpenError::InvalidAge(_)),
            _ => matches!(e, OpenError::Payload(_)),
        };
        assert!(fits, "{name}: {e:?}");
    }
}

// ---------------------------------------------------------------------------
// The binary and the standard tools.

/// Fails (never skips) when a tool the interop tests need is missing.
fn require_tools() {
    for tool in [
        "tar",
        "age",
        "age-keygen",
        "zstd",
        "openssl",
        "python3",
        "sha256sum",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "missing tool {tool:?}: install it (Debian: apt-get install -y age zstd tar openssl python3-cryptography)");
    }
    let py = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .unwrap();
    assert!(
        py.success(),
        "missing Python module cryptography (Debian: apt-get install -y python3-cryptography)"
    );
}

/// A `sh` recipe of FORMAT.md, by its `<!-- recipe: NAME -->` marker.
fn recipe(name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->\n```sh\n");
    let start = FORMAT_MD
        .find(&marker)
        .unwrap_or_else(|| panic!("FORMAT.md has no recipe {name}"))
        + marker.len();
    let end = start + FORMAT_MD[start..].find("```").unwrap();
    FORMAT_MD[start..end].to_string()
}

fn run_recipe(name: &str, dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(recipe(name)).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "recipe {name} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn bin(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// keygen both kinds with the binary; returns the node's recipient.
/// `create` arguments for a serial-1 host bundle of `tree/`, signed with
/// `admin.key`, for `recipient`, written to `out`.
fn create_host_bundle<'a>(recipient: &'a str, out: &'a str) -> [&'a str; 15] {
    [
        "create",
        "--mac",
        "52-54-00-12-34-56",
        "--serial",
        "1",
        "--expires",
        "1d",
        "--sign-key",
        "admin.key",
        "--recipient",
        recipient,
        "--from-dir",
        "tree",
        "-o",
        out,
    ]
}
fn keygen(dir: &Path) -> String {
    ok(bin(&["keygen", "signing", "--out", "admin"], dir));
    ok(bin(&["keygen", "identity", "--out", "node.age"], dir))
        .trim()
        .to_string()
}

#[test]
fn created_by_satchel_opens_with_the_standard_tools_per_format_md() {
    require_tools();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    sample_tree(&dir.join("tree"));
    let recipient = keygen(dir);
    ok(bin(
        &[
            "create",
            "--mac",
            "52:54:00:12:34:56",
            "--site",
            "dc1",
            "--serial",
            "3",
            "--expires",
            "7d",
            "--sign-key",
            "admin.key",
            "--recipient",
            &recipient,
            "--from-dir",
            "tree",
            "-o",
            "b.bundle",
        ],
        dir,
    ));
    let env = [
        ("BUNDLE", dir.join("b.bundle")),
        ("TRUST", dir.join("admin.pub")),
        ("IDENTITY", dir.join("node.age")),
        ("OUT", dir.join("out")),
    ];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let out = run_recipe("check", dir, &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid: host/52-54-00-12-34-56 serial 3"));
    run_recipe("check-python", dir, &env);
    fs::create_dir(dir.join("out")).unwrap();
    run_recipe("open", dir, &env);
    assert_eq!(snapshot(&dir.join("out")), snapshot(&dir.join("tree")));

    // The recipe's check catches a signature made by another key.
    ok(bin(&["keygen", "signing", "--out", "other"], dir));
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(recipe("check")).current_dir(dir);
    cmd.env("BUNDLE", dir.join("b.bundle"))
        .env("TRUST", dir.join("other.pub"));
    assert!(!cmd.output().unwrap().status.success());
}

#[test]
fn assembled_by_the_standard_tools_per_format_md_is_accepted() {
    require_tools();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    sample_tree(&dir.join("tree"));
    let sh = |script: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh("openssl genpkey -algorithm ed25519 -out admin.key && openssl pkey -in admin.key -pubout -out admin.pub && age-keygen -o node.age 2>/dev/null");
    let (tree, out, macp, serial) = (
        dir.join("tree"),
        dir.join("hand.bundle"),
        PathBuf::from("52-54-00-12-34-56"),
        PathBuf::from("9"),
    );
    run_recipe(
        "assemble",
        dir,
        &[
            ("TREE", &tree),
            ("OUT", &out),
            ("MAC", &macp),
            ("SERIAL", &serial),
        ],
    );
    let v = ok(bin(
        &[
            "verify",
            "hand.bundle",
            "--trust",
            "admin.pub",
            "--mac",
            "52:54:00:12:34:56",
            "--serial-floor",
            "9",
        ],
        dir,
    ));
    assert!(v.contains("valid"), "{v}");
    fs::create_dir(dir.join("root")).unwrap();
    ok(bin(
        &[
            "open",
            "hand.bundle",
            "--identity",
            "node.age",
            "--trust",
            "admin.pub",
            "--into",
            "root",
        ],
        dir,
    ));
    assert_eq!(snapshot(&dir.join("root")), snapshot(&tree));

    // Re-signed with Python's cryptography, in a PAX outer container.
    sh("mkdir x && tar -xf hand.bundle -C x");
    let (m, s) = (dir.join("x/manifest.json"), dir.join("x/manifest.sig"));
    fs::remove_file(&s).unwrap();
    run_recipe("sign-python", dir, &[("MANIFEST", &m), ("SIG", &s)]);
    sh("tar -c --format=pax -f pax.bundle -C x manifest.json manifest.sig payload.age");
    ok(bin(
        &[
            "verify",
            "pax.bundle",
            "--trust",
            "admin.pub",
            "--mac",
            "52-54-00-12-34-56",
        ],
        dir,
    ));
    fs::create_dir(dir.join("root2")).unwrap();
    ok(bin(
        &[
            "open",
            "pax.bundle",
            "--identity",
            "node.age",
            "--trust",
            "admin.pub",
            "--into",
            "root2",
        ],
        dir,
    ));
    assert_eq!(snapshot(&dir.join("root2")), snapshot(&tree));

    // The same container with the members in another order is refused.
    sh("tar -c --format=ustar -f order.bundle -C x manifest.sig manifest.json payload.age");
    let o = bin(&["verify", "order.bundle", "--trust", "admin.pub"], dir);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // A `zstd --long` payload (window over the limit) is refused at open.
    sh("age -d -i node.age x/payload.age | zstd -d -q | zstd -q --long=27 -c | age -r $(age-keygen -y node.age) > long.age");
    let long = fs::read(dir.join("long.age")).unwrap();
    let text = fs::read_to_string(&m).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let new_text = text
        .replace(
            manifest["payload"]["sha256"].as_str().unwrap(),
            &hex::encode(Sha256::digest(&long)),
        )
        .replace(
            &format!(
                "\"compressed_size\":{}",
                manifest["payload"]["compressed_size"]
            ),
            &format!("\"compressed_size\":{}", long.len()),
        );
    fs::write(&m, &new_text).unwrap();
    fs::write(dir.join("x/payload.age"), &long).unwrap();
    sh("openssl pkeyutl -sign -inkey admin.key -rawin -in x/manifest.json -out x/manifest.sig && tar -c --format=ustar -f long.bundle -C x manifest.json manifest.sig payload.age");
    ok(bin(&["verify", "long.bundle", "--trust", "admin.pub"], dir));
    fs::create_dir(dir.join("root3")).unwrap();
    let o = bin(
        &[
            "open",
            "long.bundle",
            "--identity",
            "node.age",
            "--trust",
            "admin.pub",
            "--into",
            "root3",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("long.bundle"),
        "{o:?}"
    );
    assert!(snapshot(&dir.join("root3")).is_empty());
}

#[test]
fn cli_verify_exit_codes_and_distinct_json_kinds() {
    let f = Fixture::new();
    let dir = f.dir.path();
    fs::write(dir.join("admin.pub"), f.key.verifying_key().to_pem()).unwrap();
    let good = f.seal(&f.params(), "good.bundle");
    let mut expired = f.params();
    expired.created = OffsetDateTime::now_utc() - Duration::days(3);
    expired.expires = OffsetDateTime::now_utc() - Duration::days(1);
    f.seal(&expired, "expired.bundle");
    let other = SigningKey::generate();
    fs::write(dir.join("other.pub"), other.verifying_key().to_pem()).unwrap();
    let (manifest, mut sig, payload) = parts(&good);
    sig[5] ^= 1;
    fs::write(
        dir.join("badsig.bundle"),
        assemble(&manifest, &sig, &payload),
    )
    .unwrap();

    let kind = |args: &[&str]| -> (Option<i32>, String) {
        let mut all = vec!["verify", "--json"];
        all.extend_from_slice(args);
        let o = bin(&all, dir);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        let k = if v["valid"] == true {
            "valid".into()
        } else {
            v["error"]["kind"].as_str().unwrap_or("").to_string()
        };
        (o.status.code(), k)
    };
    let cases = [
        (
            vec![
                "good.bundle",
                "--trust",
                "admin.pub",
                "--mac",
                "52-54-00-12-34-56",
            ],
            0,
            "valid",
        ),
        (
            vec!["good.bundle", "--trust", "other.pub"],
            1,
            "untrusted_signer",
        ),
        (
            vec!["badsig.bundle", "--trust", "admin.pub"],
            1,
            "bad_signature",
        ),
        (
            vec![
                "good.bundle",
                "--trust",
                "admin.pub",
                "--mac",
                "02:00:00:00:00:01",
            ],
            1,
            "wrong_target",
        ),
        (vec!["expired.bundle", "--trust", "admin.pub"], 1, "expired"),
        (
            vec!["good.bundle", "--trust", "admin.pub", "--serial-floor", "8"],
            1,
            "serial_below_floor",
        ),
    ];
    for (args, code, want) in cases {
        assert_eq!(kind(&args), (Some(code), want.to_string()), "{args:?}");
    }
    // Human output names the file and the reason.
    let o = bin(&["verify", "expired.bundle", "--trust", "admin.pub"], dir);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.code() == Some(1) && text.contains("expired.bundle") && text.contains("expired"),
        "{text}"
    );
    // An unreadable bundle is not an invalid one: exit 2, naming the file.
    let o = bin(&["verify", "missing.bundle", "--trust", "admin.pub"], dir);
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("missing.bundle"), "{said}");
    // Usage errors exit 2.
    for args in [
        vec!["verify", "good.bundle"],
        vec![
            "verify",
            "good.bundle",
            "--trust",
            "admin.pub",
            "--mac",
            "nonsense",
        ],
        vec!["frobnicate"],
    ] {
        assert_eq!(bin(&args, dir).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn cli_keygen_create_inspect_and_refusals() {
    require_tools();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    sample_tree(&dir.join("tree"));
    let out = ok(bin(&["keygen", "signing", "--out", "admin", "--json"], dir));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let o = Command::new("sh")
        .args([
            "-c",
            "openssl pkey -pubin -in admin.pub -outform DER | tail -c 32 | sha256sum | cut -c1-16",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(
        v["key_id"].as_str().unwrap(),
        String::from_utf8_lossy(&o.stdout).trim(),
        "key id rule"
    );
    assert_eq!(
        fs::metadata(dir.join("admin.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // OpenSSL reads the secret key and derives the same public key.
    let o = Command::new("openssl")
        .args(["pkey", "-in", "admin.key", "-pubout"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl cannot read admin.key: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        fs::read_to_string(dir.join("admin.pub")).unwrap()
    );
    let recipient = ok(bin(&["keygen", "identity", "--out", "node.age"], dir))
        .trim()
        .to_string();
    assert_eq!(
        fs::metadata(dir.join("node.age"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let o = Command::new("age-keygen")
        .args(["-y", "node.age"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        recipient,
        "age-keygen reads our identity"
    );
    // Refuses to overwrite a key.
    assert_eq!(
        bin(&["keygen", "signing", "--out", "admin"], dir)
            .status
            .code(),
        Some(1)
    );

    let create = |extra: &[&str]| {
        let mut args = vec![
            "create",
            "--serial",
            "1",
            "--sign-key",
            "admin.key",
            "--recipient",
            recipient.as_str(),
        ];
        args.extend_from_slice(extra);
        bin(&args, dir)
    };
    for expires in ["30d", "2099-01-31", "2099-01-31T12:00:00Z"] {
        ok(create(&[
            "--site",
            "dc1",
            "--expires",
            expires,
            "--from-dir",
            "tree",
            "-o",
            "s.bundle",
        ]));
    }
    // Inspect with the identity lists the files.
    let out = ok(bin(
        &["inspect", "s.bundle", "--identity", "node.age", "--json"],
        dir,
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["manifest"]["target"], "site/dc1");
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"etc/ssh/sshd_config") && files.contains(&"opt/données-été.txt"),
        "{files:?}"
    );
    // Usage errors: past expiry, both sources, no target, bad recipient.
    for bad in [
        vec![
            "--site",
            "dc1",
            "--expires",
            "2001-01-01",
            "--from-dir",
            "tree",
            "-o",
            "x.bundle",
        ],
        vec![
            "--site",
            "dc1",
            "--expires",
            "1d",
            "--from-dir",
            "tree",
            "--from-tar",
            "t.tar",
            "-o",
            "x.bundle",
        ],
        vec!["--expires", "1d", "--from-dir", "tree", "-o", "x.bundle"],
        vec![
            "--site",
            "DC1",
            "--expires",
            "1d",
            "--from-dir",
            "tree",
            "-o",
            "x.bundle",
        ],
    ] {
        assert_eq!(create(&bad).status.code(), Some(2), "{bad:?}");
    }
    // --from-tar: a good tar is taken, an unsafe one refused with its name.
    let o = Command::new("tar")
        .args(["-cf", "good.tar", "-C", "tree", "etc"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(o.success());
    ok(create(&[
        "--mac",
        "52-54-00-12-34-56",
        "--expires",
        "1d",
        "--from-tar",
        "good.tar",
        "-o",
        "t.bundle",
    ]));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    fs::write(dir.join("evil.tar"), b.into_inner().unwrap()).unwrap();
    let o = create(&[
        "--mac",
        "52-54-00-12-34-56",
        "--expires",
        "1d",
        "--from-tar",
        "evil.tar",
        "-o",
        "e.bundle",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("evil.tar") && err.contains(".."),
        "{err}"
    );
    assert!(!dir.join("e.bundle").exists());
    // A tree with a FIFO is refused, naming the file; no output is left behind.
    let st = Command::new("mkfifo")
        .arg(dir.join("tree/etc/fifo"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = create(&[
        "--site",
        "dc1",
        "--expires",
        "1d",
        "--from-dir",
        "tree",
        "-o",
        "f.bundle",
    ]);
    assert!(
        o.status.code() == Some(1) && String::from_utf8_lossy(&o.stderr).contains("etc/fifo"),
        "{o:?}"
    );
    assert!(!dir.join("f.bundle").exists());
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".satchel-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn demo_runs_the_whole_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(bin(&["demo", "--dir", "demo"], d.path()));
    assert!(out.contains("valid, signed by"), "{out}");
    assert!(
        out.contains("refused: bundle is for host/52-54-00-12-34-56"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(d.path().join("demo/root/etc/hostname")).unwrap(),
        "node-12\n"
    );
    assert!(
        !d.path().join("demo/root/etc/old.conf").exists(),
        "the whiteout deleted it"
    );
}

// ---------------------------------------------------------------------------
// Bounded memory, measured on the real binary.

/// The RSS cap a create or open must stay under, whatever the bundle's size.
const RSS_CAP_KIB: u64 = 48 * 1024;

/// Runs the binary under python3 and returns its peak RSS in KiB
/// (`getrusage(RUSAGE_CHILDREN).ru_maxrss`).
fn peak_rss(args: &[&str], dir: &Path) -> u64 {
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:])\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.exit(r.returncode)";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn create_and_open_of_a_bundle_four_times_the_rss_cap_stay_under_it() {
    require_tools();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // 192 MiB of incompressible data in three files, plus small ones.
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("data")).unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..3 {
        let mut f = fs::File::create(tree.join(format!("data/blob{i}"))).unwrap();
        for _ in 0..64 {
            rand::RngCore::fill_bytes(&mut rng, &mut buf);
            f.write_all(&buf).unwrap();
        }
    }
    for i in 0..200 {
        fs::write(tree.join(format!("data/small{i}")), format!("{i}\n")).unwrap();
    }
    let recipient = keygen(dir);
    let rss_create = peak_rss(&create_host_bundle(&recipient, "big.bundle"), dir);
    let size = fs::metadata(dir.join("big.bundle")).unwrap().len();
    assert!(
        size > 4 * RSS_CAP_KIB * 1024,
        "bundle {size} bytes is not 4× the cap"
    );
    fs::create_dir(dir.join("root")).unwrap();
    let rss_open = peak_rss(
        &[
            "open",
            "big.bundle",
            "--identity",
            "node.age",
            "--trust",
            "admin.pub",
            "--into",
            "root",
        ],
        dir,
    );
    assert_eq!(
        fs::metadata(dir.join("root/data/blob2")).unwrap().len(),
        64 << 20
    );
    assert!(
        rss_create < RSS_CAP_KIB,
        "create peaked at {rss_create} KiB (cap {RSS_CAP_KIB} KiB)"
    );
    assert!(
        rss_open < RSS_CAP_KIB,
        "open peaked at {rss_open} KiB (cap {RSS_CAP_KIB} KiB)"
    );
    eprintln!(
        "bundle {} MiB: create {} KiB, open {} KiB peak RSS",
        size >> 20,
        rss_create,
        rss_open
    );
}

/// The overlay skips `chmod` when creating a file with its mode already
/// gives that mode; under any umask the modes must still come out exact.
#[test]
fn opened_modes_are_exact_under_any_umask() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let modes = [
        0o644, 0o600, 0o755, 0o640, 0o444, 0o775, 0o000, 0o701, 0o070,
    ];
    fs::create_dir(dir.join("tree")).unwrap();
    for m in modes {
        let p = dir.join(format!("tree/f{m:03o}"));
        fs::write(&p, format!("{m:o}")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
    }
    let recipient = keygen(dir);
    ok(bin(&create_host_bundle(&recipient, "b.bundle"), dir));
    for umask in ["000", "022", "027", "077", "777"] {
        let root = format!("root{umask}");
        fs::create_dir(dir.join(&root)).unwrap();
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" open b.bundle --identity node.age --trust admin.pub --into {root}"
            ))
            .arg(BIN)
            .current_dir(dir)
            .output()
            .unwrap();
        ok(o);
        for m in modes {
            let got = fs::metadata(dir.join(format!("{root}/f{m:03o}")))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(got, m, "umask {umask}: f{m:03o} came out {got:03o}");
        }
    }
}
