//! The approval flow end to end, driven by the real binaries on loopback:
//! an admin creates and publishes a node's bundle with `satchel-bundle`,
//! the node fetches it (`satchel-fetch`), a person changes files on the
//! node and `satchel-fetch capture --upload` sends them to the quarantine;
//! the admin lists and pulls the upload, approves it against the node's
//! current bundle, publishes the result, and the node's next fetch lays the
//! captured files over its root. Rollback (the same serial again) is
//! refused with 409, and `uploads reject` empties the quarantine.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use satchel_format::{Identities, Mac, SigningKey, Target};
use satchel_pki::ca::Ca;
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::dns::DnsServer;
use satchel_tests::harness::{self, Finished};
use satchel_tests::node::tree;

const SERVER_NAME: &str = "cfg.approve.test";
const DOMAIN: &str = "approve.test";
const KILL_AFTER: Duration = Duration::from_secs(90);

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
}

/// `satchel-bundle ARGS…` with a kill timer.
fn bundle(args: &[&str]) -> Finished {
    let mut cmd = Command::new(harness::bin("satchel-bundle"));
    cmd.args(args);
    harness::run(cmd, KILL_AFTER)
}

fn bundle_ok(args: &[&str]) -> String {
    let f = bundle(args);
    assert_eq!(
        f.code(),
        0,
        "satchel-bundle {args:?}:\n{}\n{}",
        f.stdout,
        f.stderr
    );
    f.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The node's fetcher (boot run or capture) with the test's inputs.
fn fetch(d: &Path, extra: &[&str]) -> Finished {
    harness::run(harness::node_fetcher(d, extra), KILL_AFTER)
}

#[test]
fn capture_upload_pull_approve_publish_fetch() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let mac = Mac::parse("52-54-00-ab-cd-02").expect("mac");
    let mac_s = mac.to_string();

    // PKI: CA, server and admin certificates, CRL.
    let (ca, _) = harness::server_pki(d, SERVER_NAME);

    // The admin's signing key and age identity; the node's image.
    SigningKey::generate()
        .write_pair(&d.join("signer"))
        .expect("signing key");
    let admin_id = Identities::generate();
    let admin_rcpt = admin_id.recipients()[0].to_string();
    write(
        &d.join("admin.age"),
        admin_id.to_file_text("test").as_bytes(),
    );
    let enrolled = ca
        .enroll(&EnrollOptions {
            mac: Some(mac),
            signers: vec![d.join("signer.pub")],
            admin_recipients: vec![admin_rcpt.clone()],
            domain: DOMAIN.into(),
            required: Some(vec![Target::Host(mac)]),
            out: d.join("image"),
            ..Default::default()
        })
        .expect("enroll");
    let node_rcpt = enrolled.recipients[0].1.clone();

    // The real server.
    let (addr, server_proc) = harness::start_server(d, "", KILL_AFTER);
    let url = format!("https://127.0.0.1:{}", addr.port());
    let admin_tls: Vec<String> = [
        "--server",
        &url,
        "--server-name",
        SERVER_NAME,
        "--cert",
        s(&d.join("admin.crt")),
        "--key",
        s(&d.join("admin.tls.key")),
        "--ca",
        s(&d.join("ca.pem")),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let with_tls = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|x| x.to_string()).collect();
        v.extend(admin_tls.iter().cloned());
        v
    };
    let run_tls = |args: &[&str]| -> Finished {
        let v = with_tls(args);
        bundle(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // The node's first bundle, created and published with the CLI.
    let src = d.join("src");
    std::fs::create_dir_all(src.join("etc")).expect("src");
    write(&src.join("etc/hostname"), b"node-02\n");
    let current = d.join("host-7.bundle");
    bundle_ok(&[
        "create",
        "--mac",
        &mac_s,
        "--serial",
        "7",
        "--expires",
        "1d",
        "--sign-key",
        s(&d.join("signer.key")),
        "--recipient",
        &node_rcpt,
        "--recipient",
        &admin_rcpt,
        "--from-dir",
        s(&src),
        "-o",
        s(&current),
    ]);
    let p = run_tls(&["publish", s(&current)]);
    assert_eq!(
        p.code(),
        0,
        "publish:\n{}\n{}\nserver:\n{}",
        p.stdout,
        p.stderr,
        server_proc.stderr_so_far()
    );

    // DNS and the node's first boot.
    let (dns, _dns) = DnsServer::for_server(DOMAIN, SERVER_NAME, addr.port()).expect("dns");
    let root = d.join("root");
    std::fs::create_dir_all(&root).expect("root");
    write(
        &d.join("cmdline"),
        format!(
            "ro satchel.dns={dns} satchel.root={} satchel.timeout=30\n",
            root.display()
        )
        .as_bytes(),
    );
    write(&d.join("kmsg"), b"");
    let f = fetch(d, &[]);
    assert_eq!(f.code(), 0, "first fetch:\n{}", f.stderr);
    assert!(tree(&root).contains(&("etc/hostname".into(), "node-02\n".into())));

    // A person configures the node by hand; capture sends it with the node cert.
    let hand = d.join("hand/etc/app.d");
    std::fs::create_dir_all(&hand).expect("mkdir");
    write(&hand.join("local.conf"), b"tuned=by hand\n");
    let c = fetch(d, &["capture", "--path", s(&hand), "--upload"]);
    assert_eq!(c.code(), 0, "capture:\n{}", c.stderr);
    let id = c.stdout.trim().to_string();

    // The admin sees it in the quarantine, pulls it with its metadata.
    let l = run_tls(&["uploads", "list", "--json"]);
    assert_eq!(l.code(), 0, "list:\n{}", l.stderr);
    let v: serde_json::Value = serde_json::from_str(&l.stdout).expect("list JSON");
    let listed = v["uploads"].as_array().expect("uploads");
    let entry = listed
        .iter()
        .find(|u| u["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {v}"));
    assert_eq!(entry["mac"], mac_s.as_str());
    let upload = d.join("upload.bin");
    let pl = run_tls(&["uploads", "pull", &id, "-o", s(&upload)]);
    assert_eq!(pl.code(), 0, "pull:\n{}\n{}", pl.stdout, pl.stderr);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("upload.bin.json")).expect("sidecar"))
            .expect("meta JSON");
    assert_eq!(meta["sha256"], entry["sha256"]);
    assert_eq!(meta["cert_scope"], format!("host/{mac_s}"));

    // Approve it into serial 8, against the current bundle.
    let approved = d.join("host-8.bundle");
    let a = bundle(&[
        "approve",
        s(&upload),
        "--identity",
        s(&d.join("admin.age")),
        "--mac",
        &mac_s,
        "--serial",
        "8",
        "--sign-key",
        s(&d.join("signer.key")),
        "--recipient",
        &node_rcpt,
        "--recipient",
        &admin_rcpt,
        "--current",
        s(&current),
        "--yes",
        "-o",
        s(&approved),
    ]);
    assert_eq!(a.code(), 0, "approve:\n{}\n{}", a.stdout, a.stderr);
    assert!(
        a.stdout.contains("local.conf"),
        "file list shown:\n{}",
        a.stdout
    );
    assert!(
        a.stdout.contains("- etc/hostname"),
        "diff against the current bundle shown:\n{}",
        a.stdout
    );

    // Publish; the same serial again is a rollback: 409 with a clear message.
    let p = run_tls(&["publish", s(&approved)]);
    assert_eq!(p.code(), 0, "publish approved:\n{}\n{}", p.stdout, p.stderr);
    let again = run_tls(&["publish", s(&approved)]);
    assert_eq!(again.code(), 1, "republish must fail:\n{}", again.stdout);
    assert!(
        again.stderr.contains("rollback protection"),
        "{}",
        again.stderr
    );

    // The node's next boot lays the captured files over its root.
    let f = fetch(d, &[]);
    assert_eq!(f.code(), 0, "second fetch:\n{}", f.stderr);
    let rel = hand.strip_prefix("/").expect("absolute").join("local.conf");
    let rel = rel.to_str().expect("utf8").to_string();
    let t = tree(&root);
    assert!(
        t.contains(&(rel.clone(), "tuned=by hand\n".into())),
        "{rel} not in {t:?}"
    );

    // The quarantine is cleared.
    let r = run_tls(&["uploads", "reject", &id]);
    assert_eq!(r.code(), 0, "reject:\n{}", r.stderr);
    let l = run_tls(&["uploads", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&l.stdout).expect("list JSON");
    assert!(
        v["uploads"]
            .as_array()
            .expect("uploads")
            .iter()
            .all(|u| u["id"] != id.as_str()),
        "{v}"
    );
    let r = run_tls(&["uploads", "reject", &id]);
    assert_eq!(r.code(), 1, "a second reject finds nothing");
}

/// The admin commands' failures are clear and change nothing: a bundle over
/// the server's size limit (413), a server certificate from another CA, a
/// node certificate used for an admin call (403), an unknown upload (404),
/// a malformed upload id (usage error, no request), an unsigned-by-a-trusted
/// key bundle.
#[test]
fn admin_commands_fail_clearly() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let mac = Mac::parse("52-54-00-ab-cd-03").expect("mac");
    let mac_s = mac.to_string();
    let (ca, _) = harness::server_pki(d, SERVER_NAME);
    let host = ca.issue_host(mac, None, None).expect("host cert");
    write(&d.join("host.crt"), host.cert_pem.as_bytes());
    write(&d.join("host.tls.key"), host.key_pem.expose().as_bytes());
    let other_ca = Ca::init_insecure(&d.join("other-ca"), "another CA").expect("other ca");
    write(&d.join("other-ca.pem"), other_ca.cert_pem().as_bytes());
    SigningKey::generate()
        .write_pair(&d.join("signer"))
        .expect("signing key");
    SigningKey::generate()
        .write_pair(&d.join("stranger"))
        .expect("untrusted key");
    let rcpt = Identities::generate().recipients()[0].to_string();

    let (addr, _server) = harness::start_server(d, "max_bundle_bytes = 4096\n", KILL_AFTER);
    let url = format!("https://127.0.0.1:{}", addr.port());
    let tls = |cert: &str, key: &str, ca: &str| -> Vec<String> {
        [
            "--server",
            &url,
            "--server-name",
            SERVER_NAME,
            "--cert",
            cert,
            "--key",
            key,
            "--ca",
            ca,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let admin_tls = tls(
        s(&d.join("admin.crt")),
        s(&d.join("admin.tls.key")),
        s(&d.join("ca.pem")),
    );
    let run_with = |args: &[&str], tls: &[String]| -> Finished {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(tls.iter().map(String::as_str));
        bundle(&v)
    };

    // A bundle over the server's 4 KiB limit: 413, named as such.
    let big = d.join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&big.join("blob"), &noise);
    let big_bundle = d.join("big.bundle");
    let create = |from: &Path, key: &str, serial: &str, out: &Path| {
        bundle_ok(&[
            "create",
            "--mac",
            &mac_s,
            "--serial",
            serial,
            "--expires",
            "1d",
            "--sign-key",
            s(&d.join(key)),
            "--recipient",
            &rcpt,
            "--from-dir",
            s(from),
            "-o",
            s(out),
        ]);
    };
    create(&big, "signer.key", "1", &big_bundle);
    let p = run_with(&["publish", s(&big_bundle)], &admin_tls);
    assert_eq!(p.code(), 1, "{}", p.stdout);
    assert!(p.stderr.contains("size limit"), "{}", p.stderr);

    // A small bundle signed by a key the server does not trust: refused.
    let small = d.join("small");
    std::fs::create_dir_all(&small).expect("mkdir");
    write(&small.join("motd"), b"hi\n");
    let stranger_bundle = d.join("stranger.bundle");
    create(&small, "stranger.key", "2", &stranger_bundle);
    let p = run_with(&["publish", s(&stranger_bundle)], &admin_tls);
    assert_eq!(p.code(), 1, "{}", p.stdout);
    assert!(p.stderr.contains("refused"), "{}", p.stderr);

    // The server's certificate does not chain to the CA given: no request made.
    let wrong_ca = tls(
        s(&d.join("admin.crt")),
        s(&d.join("admin.tls.key")),
        s(&d.join("other-ca.pem")),
    );
    let l = run_with(&["uploads", "list"], &wrong_ca);
    assert_eq!(l.code(), 1);
    assert!(l.stderr.contains("TLS handshake failed"), "{}", l.stderr);

    // A node certificate cannot act as an admin.
    let host_tls = tls(
        s(&d.join("host.crt")),
        s(&d.join("host.tls.key")),
        s(&d.join("ca.pem")),
    );
    let l = run_with(&["uploads", "list"], &host_tls);
    assert_eq!(l.code(), 1);
    assert!(l.stderr.contains("403"), "{}", l.stderr);
    let small_bundle = d.join("small.bundle");
    create(&small, "signer.key", "3", &small_bundle);
    let p = run_with(&["publish", s(&small_bundle)], &host_tls);
    assert_eq!(p.code(), 1);
    assert!(p.stderr.contains("403"), "{}", p.stderr);

    // Unknown and malformed upload ids.
    let out = d.join("pulled.bin");
    let g = run_with(
        &["uploads", "pull", "00000000000000ff", "-o", s(&out)],
        &admin_tls,
    );
    assert_eq!(g.code(), 1);
    assert!(g.stderr.contains("404"), "{}", g.stderr);
    assert!(!out.exists());
    let g = run_with(&["uploads", "pull", "../../etc", "-o", s(&out)], &admin_tls);
    assert_eq!(g.code(), 2, "{}", g.stderr);

    // The admin's own publish of the small bundle works, and nothing else landed.
    let p = run_with(&["publish", s(&small_bundle)], &admin_tls);
    assert_eq!(p.code(), 0, "{}\n{}", p.stdout, p.stderr);
    assert!(p.stdout.contains("serial 3"), "{}", p.stdout);
}
