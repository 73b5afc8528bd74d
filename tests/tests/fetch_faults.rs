//! The fetcher binary against a fault-injecting HTTPS peer and the
//! in-process DNS server: the happy path, network faults, bundle faults and
//! discovery fallbacks. Every fault must leave the root exactly as it was
//! and be reported (to the peer, or to the kernel log when the peer cannot
//! be trusted). Loopback only.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use satchel_format::{Mac, SigningKey, Target};
use satchel_tests::dns::{DnsRecord, DnsServer};
use satchel_tests::harness::{self, Finished};
use satchel_tests::node::{tree, ImageSpec, NodeImage, TestCa};
use satchel_tests::peer::{Peer, Reply, Seen};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

const MAC: &str = "52-54-00-12-34-56";
const DOMAIN: &str = "boot.test";
const TARGET_NAME: &str = "cfg.boot.test";
/// Kill timer of one fetcher run.
const KILL_AFTER: Duration = Duration::from_secs(60);

struct Env {
    tmp: tempfile::TempDir,
    ca: TestCa,
    image: NodeImage,
    root: PathBuf,
    kmsg: PathBuf,
}

impl Env {
    fn new(spec: ImageSpec) -> Env {
        let tmp = harness::tempdir();
        let ca = TestCa::new("satchel test CA");
        let image = NodeImage::create(&tmp.path().join("image"), &ca, &spec);
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("root");
        std::fs::write(root.join("etc/hostname"), "image-default\n").expect("seed");
        let kmsg = tmp.path().join("kmsg");
        std::fs::write(&kmsg, "").expect("kmsg");
        std::fs::create_dir_all(tmp.path().join("sys/class/net")).expect("sysfs");
        std::fs::write(tmp.path().join("resolv.conf"), "").expect("resolv");
        Env {
            tmp,
            ca,
            image,
            root,
            kmsg,
        }
    }

    fn host() -> Env {
        Env::new(ImageSpec::host(MAC, DOMAIN))
    }

    fn tls(&self, names: &[&str]) -> rustls::ServerConfig {
        self.tls_from(&self.ca, names)
    }

    fn tls_from(&self, ca: &TestCa, names: &[&str]) -> rustls::ServerConfig {
        let sk = ca.server(names);
        satchel_pki::tls::server_config(
            sk.cert.as_bytes(),
            sk.key.as_bytes(),
            self.ca.cert_pem.as_bytes(),
            &[],
            &satchel_pki::tls::TlsOptions::default(),
        )
        .expect("server TLS")
    }

    fn bundle(&self, serial: u64) -> Vec<u8> {
        self.image.host_bundle(
            serial,
            &[
                ("etc/hostname", "node-from-bundle\n"),
                ("etc/satchel/role", "compute\n"),
            ],
            &self.tmp.path().join(format!("b{serial}.bundle")),
        )
    }

    fn bundle_path(&self) -> String {
        format!("/v1/bundles/host/{}", self.image.mac)
    }

    fn index(&self, bundle: &[u8], serial: u64) -> serde_json::Value {
        serde_json::json!({"bundles": [{
            "target": format!("host/{}", self.image.mac),
            "serial": serial,
            "sha256": hex::encode(Sha256::digest(bundle)),
            "size": bundle.len(),
            "url": self.bundle_path(),
        }]})
    }

    /// A handler serving `bundle` with `fault` deciding the bundle's replies.
    fn serve(
        &self,
        bundle: Vec<u8>,
        serial: u64,
        fault: impl Fn(&[u8], usize) -> Reply + Send + Sync + 'static,
    ) -> impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static {
        let index = self.index(&bundle, serial);
        let boot = format!("/v1/boot/{}", self.image.mac);
        let bpath = self.bundle_path();
        let reports = format!("/v1/reports/{}", self.image.mac);
        move |req, nth| {
            if req.method == "GET" && req.path == boot {
                Reply::json(&index)
            } else if req.method == "GET" && req.path == bpath {
                fault(&bundle, nth)
            } else if req.method == "POST" && req.path == reports {
                Reply::json(&serde_json::json!({"ok": true}))
            } else {
                Reply::status(404, &[])
            }
        }
    }

    fn dns_for(&self, port: u16) -> (std::net::SocketAddr, DnsServer) {
        DnsServer::for_server(DOMAIN, TARGET_NAME, port).expect("dns")
    }

    fn run(&self, cmdline: &str, extra: &[&str]) -> Finished {
        let cmd_path = self.tmp.path().join("cmdline");
        let line = format!(
            "BOOT_IMAGE=/vmlinuz ro satchel.root={} {cmdline}\n",
            self.root.display()
        );
        std::fs::write(&cmd_path, line).expect("cmdline");
        let mut c = Command::new(harness::bin("satchel-fetch"));
        c.arg("--cmdline")
            .arg(&cmd_path)
            .arg("--config")
            .arg(&self.image.config_path)
            .arg("--sysfs")
            .arg(self.tmp.path().join("sys"))
            .arg("--resolv-conf")
            .arg(self.tmp.path().join("resolv.conf"))
            .arg("--kmsg")
            .arg(&self.kmsg)
            .args(["--report-grace", "2", "--connect-timeout", "2"])
            .args(extra);
        let f = harness::run(c, KILL_AFTER);
        assert!(!f.killed, "the fetcher hung:\n{}", f.stderr);
        for line in f.stderr.lines().filter(|l| !l.is_empty()) {
            assert!(line.starts_with("satchel:"), "unprefixed log line {line:?}");
        }
        f
    }

    fn kmsg_text(&self) -> String {
        std::fs::read_to_string(&self.kmsg).expect("kmsg")
    }
}

fn reports(peer: &Peer) -> Vec<serde_json::Value> {
    peer.seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path.starts_with("/v1/reports/"))
        .map(|s| serde_json::from_slice(&s.body).expect("report JSON"))
        .collect()
}

fn assert_failed_report(peer: &Peer, phase: &str, needle: &str) {
    let r = reports(peer);
    assert_eq!(r.len(), 1, "one report expected: {r:?}");
    let r = &r[0];
    assert_eq!(r["status"], "failed", "{r}");
    let p = r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == phase)
        .expect("phase");
    assert_eq!(p["status"], "failed", "{r}");
    let err = r["error"].as_str().expect("error text");
    assert!(err.contains(needle), "error {err:?} lacks {needle:?}");
    assert!(r["report_id"].as_str().is_some_and(|s| s.len() == 32));
    assert!(r["fetcher_version"]
        .as_str()
        .is_some_and(|s| s.starts_with("satchel-fetch/")));
}

fn dns_arg(addr: std::net::SocketAddr) -> String {
    format!("satchel.dns={addr}")
}

#[test]
fn applies_through_srv_reports_and_is_idempotent() {
    let env = Env::host();
    let bundle = env.bundle(3);
    let peer = Peer::start(
        env.tls(&[TARGET_NAME]),
        env.serve(bundle, 3, |b, _| Reply::bytes(b.to_vec())),
    );
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=30", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    let after = tree(&env.root);
    assert!(
        after.contains(&("etc/hostname".into(), "node-from-bundle\n".into())),
        "{after:?}"
    );
    assert!(
        after.contains(&("etc/satchel/role".into(), "compute\n".into())),
        "{after:?}"
    );
    let r = reports(&peer);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["status"], "applied");
    assert_eq!(r[0]["mac"], MAC);
    assert_eq!(r[0]["serials"][format!("host/{MAC}")], 3);
    assert!(
        peer.seen().iter().all(|s| s.client_cert),
        "the node cert was not presented"
    );
    assert!(
        env.kmsg_text().contains("<6>satchel: "),
        "{}",
        env.kmsg_text()
    );

    let f = env.run(&format!("{} satchel.timeout=30", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    assert_eq!(tree(&env.root), after, "a second run changed the tree");
}

#[test]
fn one_connection_carries_the_boot_and_a_dropped_one_is_replaced() {
    let env = Env::host();
    let bundle = env.bundle(3);
    let index = env.index(&bundle, 3);
    let boot = format!("/v1/boot/{}", env.image.mac);
    let bpath = env.bundle_path();
    // Every reply keeps the connection; the first bundle request is hung
    // up on instead, as a server closing an idle kept connection would.
    let peer = Peer::start(env.tls(&[TARGET_NAME]), move |req, nth| {
        if req.path == boot {
            Reply::KeepOpen {
                status: 200,
                body: index.to_string().into_bytes(),
            }
        } else if req.path == bpath && nth == 0 {
            Reply::Hangup
        } else if req.path == bpath {
            Reply::KeepOpen {
                status: 200,
                body: bundle.clone(),
            }
        } else {
            Reply::KeepOpen {
                status: 200,
                body: b"{}".to_vec(),
            }
        }
    });
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=30", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    assert!(!f.stderr.contains("retrying"), "{}", f.stderr);
    let seen: Vec<(String, usize)> = peer
        .seen()
        .iter()
        .map(|s| (s.path.clone(), s.conn))
        .collect();
    let bundle_path = env.bundle_path();
    assert_eq!(
        seen,
        [
            (format!("/v1/boot/{}", env.image.mac), 0),
            (bundle_path.clone(), 0),
            (bundle_path, 1),
            (format!("/v1/reports/{}", env.image.mac), 1),
        ],
        "{}",
        f.stderr
    );
    assert_eq!(reports(&peer)[0]["status"], "applied");
}

fn network_fault(
    fault: impl Fn(&[u8], usize) -> Reply + Send + Sync + 'static,
    extra: &[&str],
    needle: &str,
) {
    let env = Env::host();
    let before = tree(&env.root);
    let bundle = env.bundle(3);
    let peer = Peer::start(env.tls(&[TARGET_NAME]), env.serve(bundle, 3, fault));
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=4", dns_arg(dns)), extra);
    assert_eq!(f.code(), 5, "{}", f.stderr);
    assert_eq!(tree(&env.root), before, "the root changed");
    assert_failed_report(&peer, "download", needle);
    let tries = peer
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/v1/bundles/"))
        .count();
    assert!(tries >= 2, "the download was not retried ({tries})");
}

#[test]
fn truncated_body_leaves_the_root_untouched() {
    network_fault(
        |b, _| Reply::Truncate {
            body: b.to_vec(),
            send: b.len() / 2,
        },
        &[],
        "GET /v1/bundles/",
    );
}

#[test]
fn reset_mid_stream_leaves_the_root_untouched() {
    network_fault(
        |b, _| Reply::Reset {
            body: b.to_vec(),
            send: b.len() / 3,
        },
        &[],
        "GET /v1/bundles/",
    );
}

#[test]
fn a_body_longer_than_the_index_says_is_refused() {
    network_fault(
        |b, _| {
            let mut longer = b.to_vec();
            longer.extend_from_slice(&[0u8; 4096]);
            Reply::bytes(longer)
        },
        &[],
        "exceeds",
    );
}

#[test]
fn one_byte_per_second_does_not_hold_the_boot() {
    network_fault(
        |b, _| Reply::Trickle {
            body: b.to_vec(),
            every: Duration::from_secs(1),
        },
        &["--min-rate", "256", "--stall-window", "1"],
        "minimum",
    );
}

#[test]
fn a_503_storm_then_success_honours_retry_after() {
    let env = Env::host();
    let bundle = env.bundle(4);
    let peer = Peer::start(
        env.tls(&[TARGET_NAME]),
        env.serve(bundle, 4, |b, nth| {
            if nth < 3 {
                Reply::status(503, &[("retry-after", "1")])
            } else {
                Reply::bytes(b.to_vec())
            }
        }),
    );
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=30", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    let times: Vec<_> = peer
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/v1/bundles/"))
        .map(|s| s.at)
        .collect();
    assert_eq!(times.len(), 4);
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(950),
            "Retry-After: 1 not honoured: {gap:?}"
        );
    }
    assert_eq!(reports(&peer)[0]["status"], "applied");
}

fn tls_fault(server_tls: impl FnOnce(&Env) -> rustls::ServerConfig) {
    let env = Env::host();
    let before = tree(&env.root);
    let bundle = env.bundle(3);
    let peer = Peer::start(
        server_tls(&env),
        env.serve(bundle, 3, |b, _| Reply::bytes(b.to_vec())),
    );
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=3", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 5, "{}", f.stderr);
    assert_eq!(tree(&env.root), before, "the root changed");
    assert!(
        peer.seen().is_empty(),
        "a request went to an untrusted server: {:?}",
        peer.seen()
    );
    let k = env.kmsg_text();
    assert!(
        k.contains("<3>satchel: report {"),
        "undelivered report not in kmsg:\n{k}"
    );
    assert!(k.contains("\"status\":\"failed\""), "{k}");
}

#[test]
fn wrong_ca_is_refused() {
    tls_fault(|env| env.tls_from(&TestCa::new("someone else's CA"), &[TARGET_NAME]));
}

#[test]
fn server_cert_without_the_srv_target_name_is_refused() {
    tls_fault(|env| env.tls(&["other.boot.test", "127.0.0.1"]));
}

fn bundle_fault(env: Env, bundle: Vec<u8>, serial: u64, needle: &str) {
    let before = tree(&env.root);
    let peer = Peer::start(
        env.tls(&[TARGET_NAME]),
        env.serve(bundle, serial, |b, _| Reply::bytes(b.to_vec())),
    );
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=20", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 6, "{}", f.stderr);
    assert_eq!(tree(&env.root), before, "the root changed");
    assert_failed_report(&peer, "verify", needle);
}

/// Flips a byte of the `manifest.sig` member of a bundle.
fn corrupt_signature(mut b: Vec<u8>) -> Vec<u8> {
    let mut off = 0;
    while off + 512 <= b.len() {
        let name_end = b[off..off + 100]
            .iter()
            .position(|c| *c == 0)
            .unwrap_or(100);
        let name = String::from_utf8_lossy(&b[off..off + name_end]).into_owned();
        let size_field = String::from_utf8_lossy(&b[off + 124..off + 136]).into_owned();
        let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .expect("size") as usize;
        if name == "manifest.sig" {
            b[off + 512 + 7] ^= 0x40;
            return b;
        }
        off += 512 + size.div_ceil(512) * 512;
    }
    panic!("no manifest.sig in the bundle");
}

#[test]
fn bad_signature_is_refused() {
    let env = Env::host();
    let bundle = corrupt_signature(env.bundle(3));
    bundle_fault(env, bundle, 3, "signature");
}

#[test]
fn untrusted_signer_is_refused() {
    let env = Env::host();
    let exp = OffsetDateTime::now_utc() + time::Duration::days(1);
    let out = env.tmp.path().join("untrusted.bundle");
    let bundle = env.image.bundle_with(
        &Target::Host(env.image.mac),
        3,
        &[("etc/hostname", "evil\n")],
        exp,
        &SigningKey::generate(),
        &out,
    );
    bundle_fault(env, bundle, 3, "not a trusted key");
}

#[test]
fn another_nodes_bundle_is_refused() {
    let env = Env::host();
    let exp = OffsetDateTime::now_utc() + time::Duration::days(1);
    let other = Target::Host(Mac::parse("52-54-00-99-99-99").expect("mac"));
    let out = env.tmp.path().join("other.bundle");
    let bundle = env.image.bundle_with(
        &other,
        3,
        &[("etc/hostname", "other\n")],
        exp,
        &env.image.signer,
        &out,
    );
    bundle_fault(env, bundle, 3, "52-54-00-99-99-99");
}

#[test]
fn expired_bundle_is_refused() {
    let env = Env::host();
    let exp = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let out = env.tmp.path().join("expired.bundle");
    let bundle = env.image.bundle_with(
        &Target::Host(env.image.mac),
        3,
        &[("etc/hostname", "stale\n")],
        exp,
        &env.image.signer,
        &out,
    );
    bundle_fault(env, bundle, 3, "expired");
}

#[test]
fn serial_below_the_floor_is_refused() {
    let mut spec = ImageSpec::host(MAC, DOMAIN);
    spec.floors.insert(format!("host/{MAC}"), 5);
    let env = Env::new(spec);
    let bundle = env.bundle(4);
    bundle_fault(env, bundle, 4, "below the floor");
}

#[test]
fn dns_unreachable_falls_back_to_satchel_server() {
    let env = Env::host();
    let bundle = env.bundle(3);
    let peer = Peer::start(
        env.tls(&[TARGET_NAME, "127.0.0.1"]),
        env.serve(bundle, 3, |b, _| Reply::bytes(b.to_vec())),
    );
    // A DNS port that refuses every query, reserved for the whole test.
    let (_reserved, dead) = satchel_tests::harness::refused_udp_port();
    let f = env.run(
        &format!(
            "satchel.dns={dead} satchel.server=127.0.0.1:{} satchel.timeout=30",
            peer.addr().port()
        ),
        &[],
    );
    assert_eq!(f.code(), 0, "{}", f.stderr);
    assert!(
        f.stderr.contains("falling back to 127.0.0.1:"),
        "{}",
        f.stderr
    );
    assert!(tree(&env.root).contains(&("etc/hostname".into(), "node-from-bundle\n".into())));
    assert_eq!(reports(&peer)[0]["status"], "applied");
}

#[test]
fn second_priority_is_used_when_the_first_is_down() {
    let env = Env::host();
    let bundle = env.bundle(3);
    let peer = Peer::start(
        env.tls(&["cfg2.boot.test"]),
        env.serve(bundle, 3, |b, _| Reply::bytes(b.to_vec())),
    );
    // A target that refuses connections, reserved for the whole test.
    let (_reserved, dead) = satchel_tests::harness::refused_tcp_port();
    let (dns, _d) = DnsServer::start(vec![
        DnsRecord::srv(
            &format!("_satchel._tcp.{DOMAIN}"),
            20,
            1,
            peer.addr().port(),
            "cfg2.boot.test",
        ),
        DnsRecord::srv(
            &format!("_satchel._tcp.{DOMAIN}"),
            10,
            100,
            dead.port(),
            "cfg1.boot.test",
        ),
        DnsRecord::a("cfg1.boot.test", [127, 0, 0, 1]),
        DnsRecord::a("cfg2.boot.test", [127, 0, 0, 1]),
    ])
    .expect("dns");
    let f = env.run(&format!("{} satchel.timeout=30", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    let first = f.stderr.find(&format!("cfg1.boot.test:{}", dead.port()));
    let second = f
        .stderr
        .find(&format!("cfg2.boot.test:{}", peer.addr().port()));
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("connect to 127.0.0.1:"),
        "the first target was not tried: {}",
        f.stderr
    );
    assert_eq!(
        reports(&peer)[0]["server"],
        format!("cfg2.boot.test:{}", peer.addr().port())
    );
}

#[test]
fn tcp_only_dns_mode_works() {
    let env = Env::host();
    let bundle = env.bundle(3);
    let peer = Peer::start(
        env.tls(&[TARGET_NAME]),
        env.serve(bundle, 3, |b, _| Reply::bytes(b.to_vec())),
    );
    let (dns, _d) = DnsServer::start_tcp_only(vec![
        DnsRecord::srv(
            &format!("_satchel._tcp.{DOMAIN}"),
            10,
            10,
            peer.addr().port(),
            TARGET_NAME,
        ),
        DnsRecord::a(TARGET_NAME, [127, 0, 0, 1]),
    ])
    .expect("dns");
    let f = env.run(
        &format!("{} satchel.dns_tcp=1 satchel.timeout=30", dns_arg(dns)),
        &[],
    );
    assert_eq!(f.code(), 0, "{}", f.stderr);
}

#[test]
fn required_bundle_missing_from_the_index_fails() {
    let env = Env::host();
    let before = tree(&env.root);
    let boot = format!("/v1/boot/{}", env.image.mac);
    let peer = Peer::start(env.tls(&[TARGET_NAME]), move |req, _| {
        if req.path == boot {
            Reply::json(&serde_json::json!({"bundles": []}))
        } else if req.method == "POST" {
            Reply::json(&serde_json::json!({"ok": true}))
        } else {
            Reply::status(404, &[])
        }
    });
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=20", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 8, "{}", f.stderr);
    assert_eq!(tree(&env.root), before);
    assert_failed_report(&peer, "download", "requires");

    // With satchel.required=0 the boot goes on (exit 0) with a warning.
    let f = env.run(
        &format!("{} satchel.timeout=20 satchel.required=0", dns_arg(dns)),
        &[],
    );
    assert_eq!(f.code(), 0, "{}", f.stderr);
    assert!(f.stderr.contains("satchel.required=0"), "{}", f.stderr);
}

#[test]
fn a_final_404_is_not_retried() {
    let env = Env::host();
    let peer = Peer::start(env.tls(&[TARGET_NAME]), |req, _| {
        if req.method == "POST" {
            Reply::json(&serde_json::json!({"ok": true}))
        } else {
            Reply::status(404, &[])
        }
    });
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=20", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 5, "{}", f.stderr);
    let gets = peer.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 1, "a 404 was retried");
}

#[test]
fn bad_command_line_and_config_exit_3() {
    let env = Env::host();
    let f = env.run("satchel.timeout=forever", &[]);
    assert_eq!(f.code(), 3, "{}", f.stderr);
    assert!(f.stderr.contains("satchel.timeout"), "{}", f.stderr);
    let f = env.run("", &["--bogus"]);
    assert_eq!(f.code(), 2, "{}", f.stderr);
    let f = env.run("", &["--min-rate", "fast"]);
    assert_eq!(f.code(), 2, "{}", f.stderr);
    let f = env.run("satchel.root=/nonexistent-satchel-root", &[]);
    assert_eq!(f.code(), 3, "{}", f.stderr);
    assert!(f.stderr.contains("not a directory"), "{}", f.stderr);
    std::fs::write(&env.image.config_path, "version = 1\n").expect("break config");
    let f = env.run("", &[]);
    assert_eq!(f.code(), 3, "{}", f.stderr);
}

#[test]
fn site_then_host_and_a_bad_host_bundle_stops_both() {
    let mut spec = ImageSpec::host(MAC, DOMAIN);
    spec.site = Some(satchel_names::SiteName::parse("dc1").expect("site"));
    spec.required = vec![format!("host/{MAC}")];
    let env = Env::new(spec);
    let exp = OffsetDateTime::now_utc() + time::Duration::days(1);
    let site_target = Target::Site(satchel_names::SiteName::parse("dc1").expect("site"));
    let site = env.image.bundle_with(
        &site_target,
        9,
        &[("etc/hostname", "site-default\n"), ("etc/site", "dc1\n")],
        exp,
        &env.image.signer,
        &env.tmp.path().join("site.bundle"),
    );
    let good_host = env.bundle(3);
    let bad_host = corrupt_signature(good_host.clone());
    let entry = |target: &str, serial: u64, b: &[u8]| {
        serde_json::json!({"target": target, "serial": serial,
            "sha256": hex::encode(Sha256::digest(b)), "size": b.len(),
            "url": format!("/v1/bundles/{target}")})
    };
    let host_t = format!("host/{MAC}");
    let start = |host: Vec<u8>| {
        // The index lists the host first: the fetcher must still apply the site first.
        let index =
            serde_json::json!({"bundles": [entry(&host_t, 3, &host), entry("site/dc1", 9, &site)]});
        let (site, boot) = (site.clone(), format!("/v1/boot/{MAC}"));
        let host_path = format!("/v1/bundles/{host_t}");
        Peer::start(env.tls(&[TARGET_NAME]), move |req, _| {
            if req.path == boot {
                Reply::json(&index)
            } else if req.path == host_path {
                Reply::bytes(host.clone())
            } else if req.path == "/v1/bundles/site/dc1" {
                Reply::bytes(site.clone())
            } else if req.method == "POST" {
                Reply::json(&serde_json::json!({"ok": true}))
            } else {
                Reply::status(404, &[])
            }
        })
    };

    let before = tree(&env.root);
    let peer = start(bad_host);
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=20", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 6, "{}", f.stderr);
    assert_eq!(
        tree(&env.root),
        before,
        "the site bundle was applied without its host bundle"
    );
    assert_failed_report(&peer, "verify", "signature");
    drop(peer);

    let peer = start(good_host);
    let (dns, _d) = env.dns_for(peer.addr().port());
    let f = env.run(&format!("{} satchel.timeout=20", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    let t = tree(&env.root);
    assert!(
        t.contains(&("etc/hostname".into(), "node-from-bundle\n".into())),
        "host must win: {t:?}"
    );
    assert!(t.contains(&("etc/site".into(), "dc1\n".into())), "{t:?}");
    let r = &reports(&peer)[0];
    assert_eq!(r["serials"]["site/dc1"], 9, "{r}");
    assert_eq!(r["serials"][&host_t], 3, "{r}");
}

#[test]
fn a_truncated_udp_answer_falls_back_to_tcp() {
    // 40 SRV records (about 2.4 KB) do not fit the resolver's 1232-byte EDNS
    // UDP answer: the server truncates it and the resolver must ask again
    // over TCP to see them all.
    let env = Env::host();
    let bundle = env.bundle(3);
    let peer = Peer::start(
        env.tls(&[TARGET_NAME]),
        env.serve(bundle, 3, |b, _| Reply::bytes(b.to_vec())),
    );
    let srv = format!("_satchel._tcp.{DOMAIN}");
    let mut records = vec![
        DnsRecord::srv(&srv, 10, 10, peer.addr().port(), TARGET_NAME),
        DnsRecord::a(TARGET_NAME, [127, 0, 0, 1]),
    ];
    for i in 0..39 {
        let name = format!("spare-{i:02}.a-long-label-to-fill-the-answer.{DOMAIN}");
        records.push(DnsRecord::srv(&srv, 50, 1, 9, &name));
    }
    let (dns, _d) = DnsServer::start(records).expect("dns");
    let f = env.run(&format!("{} satchel.timeout=30", dns_arg(dns)), &[]);
    assert_eq!(f.code(), 0, "{}", f.stderr);
    let line = f
        .stderr
        .lines()
        .find(|l| l.contains(&format!("SRV {srv}")))
        .unwrap_or_else(|| panic!("no SRV line: {}", f.stderr));
    assert!(
        line.contains(": 40 targets, in order: "),
        "not every record arrived: {line}"
    );
}
