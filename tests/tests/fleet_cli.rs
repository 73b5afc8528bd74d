//! The admin's fleet commands against the real server, with every
//! connection setting from the admin profile: `publish`, then `nodes`
//! (current, stale, failed, never seen), `bundles`, `history`, `audit-log`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, SigningKey, Target};
use satchel_tests::client;
use satchel_tests::harness;
use time::OffsetDateTime;

const SERVER_NAME: &str = "cfg.boot.test";
const KILL_AFTER: Duration = Duration::from_secs(90);

fn bundle(
    d: &Path,
    signer: &SigningKey,
    ids: &Identities,
    mac: Mac,
    serial: u64,
) -> std::path::PathBuf {
    let src = d.join(format!("src-{mac}-{serial}"));
    std::fs::create_dir_all(src.join("etc")).expect("src");
    std::fs::write(src.join("etc/hostname"), format!("{mac} {serial}\n")).expect("file");
    let out = d.join(format!("{mac}-{serial}.bundle"));
    let now = OffsetDateTime::now_utc();
    seal_to_file(
        &SealParams {
            target: Target::Host(mac),
            site: None,
            serial,
            created: now - time::Duration::minutes(1),
            expires: now + time::Duration::days(3),
            policy: Default::default(),
            recipients: ids.recipients(),
        },
        Source::Dir {
            path: &src,
            keep_owners: false,
        },
        signer,
        &out,
        &AtomicU64::new(0),
    )
    .expect("seal");
    out
}

fn admin_cli(d: &Path, args: &[&str]) -> harness::Finished {
    let mut cmd = Command::new(harness::bin("satchel-bundle"));
    cmd.args(args)
        .env("SATCHEL_ADMIN_CONFIG", d.join("admin.toml"));
    harness::run(cmd, KILL_AFTER)
}

fn json(f: &harness::Finished) -> serde_json::Value {
    assert_eq!(f.code(), 0, "{}", f.stderr);
    serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {}", f.stdout))
}

#[test]
fn an_admin_sees_current_stale_failed_and_never_seen_nodes() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let (ca, _admin) = harness::server_pki(d, SERVER_NAME);
    let signer = SigningKey::generate();
    std::fs::write(d.join("signer.pub"), signer.verifying_key().to_pem()).expect("pub");
    let (addr, server) = harness::start_server(d, "", KILL_AFTER);
    // The profile names the server and the admin's files (relative paths
    // are beside the profile); no command below repeats them.
    std::fs::write(
        d.join("admin.toml"),
        format!(
            "server = \"https://127.0.0.1:{}\"\nserver_name = \"{SERVER_NAME}\"\n\
             cert = \"admin.crt\"\nkey = \"admin.tls.key\"\nca = \"ca.pem\"\n",
            addr.port()
        ),
    )
    .expect("profile");

    let ids = Identities::generate();
    let macs: Vec<Mac> = (1..=4)
        .map(|n| Mac::from_octets([0x52, 0x54, 0, 0, 0, n]))
        .collect();
    for m in &macs {
        let b = bundle(d, &signer, &ids, *m, 1);
        let f = admin_cli(d, &["publish", b.to_str().expect("utf8"), "--json"]);
        assert_eq!(json(&f)["status"], 201, "{}", f.stdout);
    }
    // Nodes 1 and 2 report the payload they applied; node 3 failed.
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let hist = |m: &Mac| json(&admin_cli(d, &["history", &format!("host/{m}"), "--json"]));
    for m in &macs[..3] {
        let cert = ca.issue_host(*m, None, None).expect("host cert");
        let payload = hist(m)["versions"][0]["payload_sha256"]
            .as_str()
            .expect("payload")
            .to_string();
        let body = if *m == macs[2] {
            r#"{"status":"failed","error":"host bundle refused: bad signature"}"#.to_string()
        } else {
            format!(
                r#"{{"status":"applied","serials":{{"host/{m}":1}},"payloads":{{"host/{m}":"{payload}"}}}}"#
            )
        };
        let (st, b) = client::request(
            addr,
            SERVER_NAME,
            &ca_pem,
            Some((cert.cert_pem.as_bytes(), cert.key_pem.expose().as_bytes())),
            "POST",
            &format!("/v1/reports/{m}"),
            body.into_bytes(),
        )
        .expect("report");
        assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    }
    // A republish of node 2 makes it stale.
    let b = bundle(d, &signer, &ids, macs[1], 2);
    assert_eq!(
        json(&admin_cli(
            d,
            &["publish", b.to_str().expect("utf8"), "--json"]
        ))["status"],
        201
    );

    let v = json(&admin_cli(d, &["nodes", "--json"]));
    let state = |m: &Mac| {
        let n = v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["mac"] == m.to_string());
        n.map(|n| (n["stale"].as_bool(), n["failed"].as_bool()))
    };
    assert_eq!(state(&macs[0]), Some((Some(false), Some(false))), "{v}");
    assert_eq!(state(&macs[1]), Some((Some(true), Some(false))), "{v}");
    assert_eq!(state(&macs[2]).map(|s| s.1), Some(Some(true)), "{v}");
    assert_eq!(v["never_seen"][0]["mac"], macs[3].to_string(), "{v}");
    let stale = json(&admin_cli(d, &["nodes", "--stale", "--json"]));
    let stale: Vec<_> = stale["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["mac"].clone())
        .collect();
    assert!(
        stale.contains(&macs[1].to_string().into()) && !stale.contains(&macs[0].to_string().into())
    );
    let failed = json(&admin_cli(d, &["nodes", "--failed", "--json"]));
    assert_eq!(
        failed["nodes"].as_array().map(Vec::len),
        Some(1),
        "{failed}"
    );
    // The table says the same to a person.
    let t = admin_cli(d, &["nodes"]);
    assert_eq!(t.code(), 0, "{}", t.stderr);
    assert!(
        t.stdout.contains("STALE (host/")
            && t.stdout.contains("FAILED")
            && t.stdout.contains("never seen"),
        "{}",
        t.stdout
    );

    // History, bundles and the audit log.
    let h = hist(&macs[1]);
    assert_eq!(h["versions"].as_array().map(Vec::len), Some(2), "{h}");
    let bundles = json(&admin_cli(d, &["bundles", "--json"]));
    assert_eq!(bundles["bundles"].as_array().map(Vec::len), Some(4));
    let t = admin_cli(d, &["bundles", "--expiring-days", "7"]);
    assert!(t.stdout.contains("EXPIRES WITHIN 7 DAYS"), "{}", t.stdout);
    let audit = json(&admin_cli(d, &["audit-log", "--log", "admin", "--json"]));
    assert!(audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["who"] == "admin/alice"));

    // Without the profile, a command says what is missing and where to set it.
    let mut cmd = Command::new(harness::bin("satchel-bundle"));
    cmd.args(["nodes"])
        .env("SATCHEL_ADMIN_CONFIG", d.join("missing.toml"));
    let f = harness::run(cmd, KILL_AFTER);
    assert_ne!(f.code(), 0);
    assert!(f.stderr.contains("missing.toml"), "{}", f.stderr);
    drop(server);
}
