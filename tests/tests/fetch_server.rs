//! The fetcher with the real `satchel-server` and the in-process DNS
//! server: credentials from the PKI library's CA and `enroll`, a real
//! bundle published by an admin, discovery by SRV, the bundle laid over a
//! temp root, and the report visible in the server's inventory.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use satchel_format::manifest::Policy;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, Recipient, SigningKey, Target};
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::client;
use satchel_tests::dns::DnsServer;
use satchel_tests::harness::{self};
use satchel_tests::node::tree;
use time::OffsetDateTime;

const SERVER_NAME: &str = "cfg.boot.test";
const DOMAIN: &str = "boot.test";
const KILL_AFTER: Duration = Duration::from_secs(90);

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn fetches_from_the_real_server_and_reports_to_its_inventory() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let mac = Mac::parse("52-54-00-ab-cd-01").expect("mac");

    // The CA, the server's and an admin's certificates, and a CRL.
    let (ca, admin) = harness::server_pki(d, SERVER_NAME);

    // The admin's signing key and age identity, and the node's image.
    let signer = SigningKey::generate();
    write(
        &d.join("signer.pub"),
        signer.verifying_key().to_pem().as_bytes(),
    );
    let admin_id = Identities::generate();
    let admin_rcpt = admin_id.recipients()[0].to_string();
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

    // A real bundle for the node, encrypted to it and the admins.
    let src = d.join("src");
    std::fs::create_dir_all(src.join("etc/satchel")).expect("src");
    write(&src.join("etc/hostname"), b"node-01\n");
    write(&src.join("etc/satchel/role"), b"storage\n");
    let mut recipients: Vec<Recipient> = enrolled
        .recipients
        .iter()
        .map(|(_, r)| Recipient::parse(r).expect("recipient"))
        .collect();
    recipients.push(Recipient::parse(&admin_rcpt).expect("admin recipient"));
    let now = OffsetDateTime::now_utc();
    let bundle_path = d.join("host.bundle");
    seal_to_file(
        &SealParams {
            target: Target::Host(mac),
            site: None,
            serial: 7,
            created: now - time::Duration::minutes(5),
            expires: now + time::Duration::days(1),
            policy: Policy::default(),
            recipients,
        },
        Source::Dir {
            path: &src,
            keep_owners: false,
        },
        &signer,
        &bundle_path,
        &AtomicU64::new(0),
    )
    .expect("seal");

    // The real server, on loopback.
    let (addr, server_proc) = harness::start_server(d, "", KILL_AFTER);

    // The admin publishes the bundle.
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let admin_cert = (admin.cert_pem.as_bytes(), admin.key_pem.expose().as_bytes());
    let admin = client::Admin {
        addr,
        server_name: SERVER_NAME,
        ca_pem: &ca_pem,
        cert: admin_cert,
    };
    admin.publish(
        &format!("/v1/bundles/host/{mac}"),
        std::fs::read(&bundle_path).expect("bundle"),
    );

    // DNS names the server; the fetcher finds it, applies, reports.
    let (dns, _dns) = DnsServer::for_server(DOMAIN, SERVER_NAME, addr.port()).expect("dns");
    let root = d.join("root");
    std::fs::create_dir_all(root.join("etc")).expect("root");
    write(&root.join("etc/hostname"), b"image-default\n");
    write(
        &d.join("cmdline"),
        format!(
            "ro satchel.dns={dns} satchel.root={} satchel.timeout=30\n",
            root.display()
        )
        .as_bytes(),
    );
    write(&d.join("kmsg"), b"");
    let f = harness::run(harness::node_fetcher(d, &[]), KILL_AFTER);
    assert_eq!(
        f.code(),
        0,
        "fetcher:\n{}\nserver:\n{}",
        f.stderr,
        server_proc.stderr_so_far()
    );
    let t = tree(&root);
    assert!(
        t.contains(&("etc/hostname".into(), "node-01\n".into())),
        "{t:?}"
    );
    assert!(
        t.contains(&("etc/satchel/role".into(), "storage\n".into())),
        "{t:?}"
    );
    assert!(f.stderr.contains("report "), "{}", f.stderr);

    // The report is in the inventory.
    let node = admin.node(&mac.to_string());
    assert_eq!(node["last_status"], "applied", "{node}");
    assert_eq!(node["serials"][format!("host/{mac}")], 7, "{node}");
    assert!(
        node["fetcher_version"]
            .as_str()
            .is_some_and(|s| s.contains("satchel-fetch")),
        "{node}"
    );

    // A boot whose bundle is refused removes nothing from the root, not
    // even the download files a killed earlier run left there: nothing in
    // the root changes before every bundle verified.
    let config_path = d.join("image/satchel.toml");
    let config_text = std::fs::read_to_string(&config_path).expect("config");
    let mut raised = satchel_pki::NodeConfig::parse(&config_text).expect("config");
    raised.floors.insert(format!("host/{mac}"), 8);
    write(&config_path, raised.to_toml().as_bytes());
    let stale = root.join(".satchel-download-left-by-a-killed-run");
    write(&stale, b"partial");
    let before = tree(&root);
    let f = harness::run(harness::node_fetcher(d, &[]), KILL_AFTER);
    assert_ne!(f.code(), 0, "serial 7 below floor 8 applied:\n{}", f.stderr);
    assert!(f.stderr.contains("refused"), "{}", f.stderr);
    assert_eq!(tree(&root), before, "the root changed on a refused boot");
    // With the floor back, the next good boot clears the stale file.
    write(&config_path, config_text.as_bytes());
    let f = harness::run(harness::node_fetcher(d, &[]), KILL_AFTER);
    assert_eq!(f.code(), 0, "fetcher:\n{}", f.stderr);
    assert!(
        !stale.exists(),
        "stale download file kept after a good boot"
    );
    // That one file, not this boot's own download besides.
    assert!(
        f.stderr
            .contains("removed 1 download files an earlier run left"),
        "{}",
        f.stderr
    );

    // Capture: files a person changed on the node go to the quarantine,
    // sealed to the admins; the admin can read them, the server cannot.
    std::fs::create_dir_all(d.join("node-etc/app.d")).expect("mkdir");
    write(&d.join("node-etc/app.d/local.conf"), b"tuned=by hand\n");
    let app_d = d.join("node-etc/app.d");
    let cap = harness::node_fetcher(
        d,
        &[
            "capture",
            "--path",
            app_d.to_str().expect("utf8"),
            "--upload",
        ],
    );
    let c = harness::run(cap, KILL_AFTER);
    assert_eq!(c.code(), 0, "capture:\n{}", c.stderr);
    let id = c.stdout.trim().to_string();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{:?}",
        c.stdout
    );
    let (status, sealed) = client::request(
        addr,
        SERVER_NAME,
        &ca_pem,
        Some(admin_cert),
        "GET",
        &format!("/v1/uploads/{id}"),
        Vec::new(),
    )
    .expect("pull");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&sealed));
    let dec = age::Decryptor::new(&sealed[..]).expect("age file");
    let mut r = dec
        .decrypt(admin_id.as_age().iter().map(|i| i as &dyn age::Identity))
        .expect("the admins can decrypt the capture");
    let mut zst = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut zst).expect("read");
    let tar = zstd::decode_all(&zst[..]).expect("zstd");
    let text = String::from_utf8_lossy(&tar);
    assert!(
        text.contains("app.d/local.conf") && text.contains("tuned=by hand"),
        "capture tar lacks the file"
    );

    // An image without a client certificate uploads anonymously.
    std::fs::remove_file(d.join("image/client.crt")).expect("rm cert");
    let mut anon = Command::new(harness::bin("satchel-fetch"));
    anon.arg("capture")
        .arg("--path")
        .arg(d.join("node-etc/app.d/local.conf"))
        .arg("--upload")
        .arg("--cmdline")
        .arg(d.join("cmdline"))
        .arg("--config")
        .arg(d.join("image/satchel.toml"))
        .arg("--kmsg")
        .arg(d.join("kmsg"));
    let c = harness::run(anon, KILL_AFTER);
    assert_eq!(c.code(), 0, "anonymous capture:\n{}", c.stderr);
    assert!(c.stderr.contains("anonymously"), "{}", c.stderr);
    let anon_id = c.stdout.trim().to_string();
    let (status, list) = client::request(
        addr,
        SERVER_NAME,
        &ca_pem,
        Some(admin_cert),
        "GET",
        "/v1/uploads",
        Vec::new(),
    )
    .expect("list");
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&list).expect("JSON");
    let uploads = list["uploads"].as_array().expect("uploads");
    assert!(uploads.iter().any(|u| u["id"] == id.as_str()), "{list}");
    let a = uploads
        .iter()
        .find(|u| u["id"] == anon_id.as_str())
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        a["cert_scope"].is_null(),
        "the anonymous upload carries a scope: {a}"
    );
}
