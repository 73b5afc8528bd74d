//! A site-wide image (enrolled with `--site` alone, no MAC in it) against
//! the real `satchel-server`: the node applies its site bundle, then the
//! host bundle its admins made for the MAC it booted with — a host bundle
//! whose signed manifest names the site, encrypted to the site's identity —
//! and never a host bundle of another site.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use satchel_format::manifest::Policy;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Mac, Recipient, SigningKey, SiteName, Target};
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::client;
use satchel_tests::harness::{self};
use satchel_tests::node::tree;
use time::OffsetDateTime;

const SERVER_NAME: &str = "cfg.site.test";
const KILL_AFTER: Duration = Duration::from_secs(90);

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

/// Seals `files` for `target` (naming `site` for a host bundle), to `to`.
fn seal(
    d: &Path,
    name: &str,
    target: Target,
    site: Option<SiteName>,
    files: &[(&str, &str)],
    to: &[Recipient],
    signer: &SigningKey,
) -> Vec<u8> {
    let src = d.join(format!("src-{name}"));
    for (p, content) in files {
        write(&src.join(p), content.as_bytes());
    }
    let now = OffsetDateTime::now_utc();
    let out = d.join(format!("{name}.bundle"));
    seal_to_file(
        &SealParams {
            target,
            site,
            serial: 3,
            created: now - time::Duration::minutes(5),
            expires: now + time::Duration::days(1),
            policy: Policy::default(),
            recipients: to.to_vec(),
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
    std::fs::read(&out).expect("bundle")
}

#[test]
fn a_site_image_applies_its_site_then_the_host_bundle_naming_that_site() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let site = SiteName::parse("dc7").expect("site");
    let mac = Mac::parse("52-54-00-5e-00-07").expect("mac");
    let other_mac = Mac::parse("52-54-00-5e-00-08").expect("mac");

    let (ca, admin) = harness::server_pki(d, SERVER_NAME);
    let signer = SigningKey::generate();
    write(
        &d.join("signer.pub"),
        signer.verifying_key().to_pem().as_bytes(),
    );

    // One image for every node of the site: no MAC in it.
    let enrolled = ca
        .enroll(&EnrollOptions {
            site: Some(site.clone()),
            signers: vec![d.join("signer.pub")],
            domain: "site.test".into(),
            out: d.join("image"),
            ..Default::default()
        })
        .expect("enroll");
    assert!(enrolled.config.mac.is_none());
    let to: Vec<Recipient> = enrolled
        .recipients
        .iter()
        .map(|(_, r)| Recipient::parse(r).expect("recipient"))
        .collect();

    // The site bundle, this node's host bundle (naming the site) which
    // overrides one file, and another node's host bundle.
    let site_bundle = seal(
        d,
        "site",
        Target::Site(site.clone()),
        None,
        &[("etc/motd", "site\n"), ("etc/ntp.conf", "server ntp.dc7\n")],
        &to,
        &signer,
    );
    let host_bundle = seal(
        d,
        "host",
        Target::Host(mac),
        Some(site.clone()),
        &[("etc/motd", "node 07\n"), ("etc/hostname", "n07\n")],
        &to,
        &signer,
    );
    let other_bundle = seal(
        d,
        "other",
        Target::Host(other_mac),
        Some(site.clone()),
        &[("etc/hostname", "n08\n")],
        &to,
        &signer,
    );

    let (addr, server_proc) = harness::start_server(d, "", KILL_AFTER);

    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let admin_cert = (admin.cert_pem.as_bytes(), admin.key_pem.expose().as_bytes());
    let admin = client::Admin {
        addr,
        server_name: SERVER_NAME,
        ca_pem: &ca_pem,
        cert: admin_cert,
    };
    for (route, body) in [
        (format!("/v1/bundles/site/{site}"), site_bundle),
        (format!("/v1/bundles/host/{mac}"), host_bundle),
        (format!("/v1/bundles/host/{other_mac}"), other_bundle),
    ] {
        admin.publish(&route, body);
    }

    // The node boots with its MAC on the command line (BOOTIF), the server
    // named directly (this test is about scope, not discovery).
    let root = d.join("root");
    std::fs::create_dir_all(&root).expect("root");
    write(
        &d.join("cmdline"),
        format!(
            "BOOTIF=01-{mac} satchel.server=127.0.0.1:{} satchel.root={} satchel.timeout=30\n",
            addr.port(),
            root.display()
        )
        .as_bytes(),
    );
    // No nameserver at all: discovery fails at once and the named server is used.
    write(&d.join("no-resolv.conf"), b"");
    let f = harness::run(harness::node_fetcher(d, &[]), KILL_AFTER);
    assert_eq!(
        f.code(),
        0,
        "fetcher:\n{}\nserver:\n{}",
        f.stderr,
        server_proc.stderr_so_far()
    );
    let t = tree(&root);
    let want: Vec<(String, String)> = vec![
        ("etc".into(), "<dir>".into()),
        ("etc/hostname".into(), "n07\n".into()),
        ("etc/motd".into(), "node 07\n".into()),
        ("etc/ntp.conf".into(), "server ntp.dc7\n".into()),
    ];
    let mut got = t.clone();
    got.sort();
    assert_eq!(got, want, "fetcher:\n{}", f.stderr);

    // The inventory has both serials under the booted MAC.
    let node = admin.node(&mac.to_string());
    assert_eq!(node["last_status"], "applied", "{node}");
    assert_eq!(node["serials"][format!("site/{site}")], 3, "{node}");
    assert_eq!(node["serials"][format!("host/{mac}")], 3, "{node}");
}
