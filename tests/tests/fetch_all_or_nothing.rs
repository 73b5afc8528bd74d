//! A boot is all or nothing across its bundles, with the real server and
//! the real fetcher: a per-host image in a site applies its site bundle and
//! its host bundle together or not at all. A hostile payload under a valid
//! signature — in the host bundle or in the site bundle — leaves the root
//! byte-identical (tree hash), and a rename failing midway through the
//! host's commit (a directory of the root made immutable, a real
//! filesystem condition) takes the site's files out again too. The console
//! and the report name the bundle and say that nothing was applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use satchel_format::{Mac, Recipient, SigningKey, SiteName, Target};
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::client;
use satchel_tests::harness::{self, Finished, Proc};
use satchel_tests::node::{seal_raw, tree, tree_hash, Immutable, RawEntry};

const SERVER_NAME: &str = "cfg.aon.test";
const KILL_AFTER: Duration = Duration::from_secs(90);
/// The fetcher's exit status when the overlay refused or failed (README).
const EXIT_APPLY: i32 = 7;

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

/// A server with a per-host image of `site`, and what publishing needs.
struct World {
    tmp: tempfile::TempDir,
    site: SiteName,
    mac: Mac,
    signer: SigningKey,
    to: Vec<Recipient>,
    ca_pem: Vec<u8>,
    admin: (String, String),
    addr: std::net::SocketAddr,
    server: Proc,
    root: PathBuf,
    serial: u64,
}

impl World {
    fn new() -> World {
        let tmp = harness::tempdir();
        let d = tmp.path();
        let site = SiteName::parse("dc3").expect("site");
        let mac = Mac::parse("52-54-00-a0-00-01").expect("mac");
        let (ca, admin) = harness::server_pki(d, SERVER_NAME);
        let signer = SigningKey::generate();
        write(
            &d.join("signer.pub"),
            signer.verifying_key().to_pem().as_bytes(),
        );
        let enrolled = ca
            .enroll(&EnrollOptions {
                mac: Some(mac),
                site: Some(site.clone()),
                signers: vec![d.join("signer.pub")],
                domain: "aon.test".into(),
                required: Some(vec![Target::Site(site.clone()), Target::Host(mac)]),
                out: d.join("image"),
                ..Default::default()
            })
            .expect("enroll");
        let to = enrolled
            .recipients
            .iter()
            .map(|(_, r)| Recipient::parse(r).expect("recipient"))
            .collect();
        let (addr, server) = harness::start_server(d, "", KILL_AFTER);
        let root = d.join("root");
        // The image's own root: what a refused boot must leave exactly so.
        write(&root.join("etc/hostname"), b"image-default\n");
        write(&root.join("etc/motd"), b"image motd\n");
        write(&root.join("locked/kept.conf"), b"from the image\n");
        write(
            &d.join("cmdline"),
            format!(
                "satchel.server=127.0.0.1:{} satchel.root={} satchel.required=1 \
                 satchel.timeout=30\n",
                addr.port(),
                root.display()
            )
            .as_bytes(),
        );
        write(&d.join("no-resolv.conf"), b"");
        write(&d.join("kmsg"), b"");
        World {
            site,
            mac,
            signer,
            to,
            ca_pem: ca.cert_pem().as_bytes().to_vec(),
            admin: (admin.cert_pem.clone(), admin.key_pem.expose().to_string()),
            addr,
            server,
            root,
            tmp,
            serial: 0,
        }
    }

    fn d(&self) -> &Path {
        self.tmp.path()
    }

    fn site_target(&self) -> Target {
        Target::Site(self.site.clone())
    }

    fn host_target(&self) -> Target {
        Target::Host(self.mac)
    }

    fn request(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        client::request(
            self.addr,
            SERVER_NAME,
            &self.ca_pem,
            Some((self.admin.0.as_bytes(), self.admin.1.as_bytes())),
            method,
            path,
            body,
        )
        .expect("request")
    }

    /// Seals `entries` as-is for `target` (a higher serial each time) and
    /// publishes it.
    fn publish(&mut self, target: &Target, entries: &[RawEntry]) {
        self.serial += 1;
        let site = matches!(target, Target::Host(_)).then(|| self.site.clone());
        let bundle = seal_raw(
            entries,
            target,
            site,
            self.serial,
            &self.to,
            &self.signer,
            self.d(),
        );
        let route = format!("/v1/bundles/{target}");
        let (status, body) = self.request("PUT", &route, bundle);
        assert!(
            (200..300).contains(&status),
            "PUT {route}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    fn boot(&self) -> Finished {
        harness::run(harness::node_fetcher(self.d(), &[]), KILL_AFTER)
    }

    /// The node's record in the inventory.
    fn node(&self) -> serde_json::Value {
        let (status, body) = self.request("GET", "/v1/nodes", Vec::new());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["mac"] == self.mac.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("node not in inventory: {v}"))
    }

    /// Boots, expecting the overlay to refuse (or fail) `target`'s bundle
    /// and the root to be exactly as it was.
    fn boot_refused(&self, target: &Target, case: &str) {
        let before = tree_hash(&self.root);
        let listing = tree(&self.root);
        let f = self.boot();
        assert_eq!(
            f.code(),
            EXIT_APPLY,
            "{case}: fetcher:\n{}\nserver:\n{}",
            f.stderr,
            self.server.stderr_so_far()
        );
        assert_eq!(
            tree_hash(&self.root),
            before,
            "{case}: the root changed on a refused boot: {:?} became {:?}\n{}",
            listing,
            tree(&self.root),
            f.stderr
        );
        let named = f
            .stderr
            .lines()
            .find(|l| l.contains(&target.to_string()) && l.contains("nothing was applied"));
        assert!(
            named.is_some(),
            "{case}: the console does not name {target} and say nothing was applied:\n{}",
            f.stderr
        );
        let node = self.node();
        assert_eq!(node["last_status"], "failed", "{case}: {node}");
        let error = node["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&target.to_string()) && error.contains("nothing was applied"),
            "{case}: the report's error does not name {target}: {node}"
        );
        assert_eq!(
            node["last_refused"],
            target.to_string(),
            "{case}: the report's refused field does not name {target}: {node}"
        );
        // Nothing applied: the report names no serial, not even the site's.
        assert!(
            node["serials"].as_object().is_none_or(|m| m.is_empty()),
            "{case}: the report says something was applied: {node}"
        );
    }
}

fn good_site() -> Vec<RawEntry> {
    vec![
        RawEntry::special("etc/", b'5', ""),
        RawEntry::file("etc/motd", "site motd\n"),
        RawEntry::file("etc/ntp.conf", "server ntp.dc3\n"),
        RawEntry::special("etc/site.d/", b'5', ""),
        RawEntry::file("etc/site.d/service.conf", "needs the host's key\n"),
    ]
}

fn good_host() -> Vec<RawEntry> {
    vec![
        RawEntry::file("etc/hostname", "node-a0\n"),
        RawEntry::file("etc/site.d/host.key", "host key\n"),
    ]
}

/// Hostile payloads: each is refused by the overlay's rules (alone, or
/// over what the site stages).
fn hostile() -> Vec<(&'static str, Vec<RawEntry>)> {
    let ok = || RawEntry::file("etc/ok.conf", "fine\n");
    vec![
        (
            "parent traversal",
            vec![ok(), RawEntry::file("../escape", "x\n")],
        ),
        (
            "absolute name",
            vec![ok(), RawEntry::file("/etc/passwd", "x\n")],
        ),
        (
            "duplicate",
            vec![ok(), RawEntry::file("etc/ok.conf", "again\n")],
        ),
        (
            "character device",
            vec![ok(), RawEntry::special("dev/null", b'3', "")],
        ),
        ("fifo", vec![ok(), RawEntry::special("run/fifo", b'6', "")]),
        (
            "symlink out of the root",
            vec![
                ok(),
                RawEntry::special("etc/l", b'2', "../../../etc/shadow"),
            ],
        ),
        (
            "write through its own symlink",
            vec![
                RawEntry::special("etc/up", b'2', ".."),
                RawEntry::file("etc/up/escape", "x\n"),
            ],
        ),
    ]
}

#[test]
fn a_hostile_host_payload_applies_nothing_not_even_the_site() {
    let mut w = World::new();
    w.publish(&w.site_target(), &good_site());
    let host = w.host_target();
    let mut cases = hostile();
    // Legal alone, but a conflict over what the site lays down first.
    cases.push((
        "a file over the site's directory",
        vec![RawEntry::file("etc/site.d", "not a directory\n")],
    ));
    for (case, entries) in cases {
        w.publish(&host, &entries);
        w.boot_refused(&host, case);
    }
    // With a good host bundle the same site applies, host over site.
    w.publish(&host, &good_host());
    let f = w.boot();
    assert_eq!(f.code(), 0, "fetcher:\n{}", f.stderr);
    let t = tree(&w.root);
    for (path, content) in [
        ("etc/hostname", "node-a0\n"),
        ("etc/motd", "site motd\n"),
        ("etc/site.d/host.key", "host key\n"),
        ("etc/site.d/service.conf", "needs the host's key\n"),
    ] {
        assert!(t.contains(&(path.into(), content.into())), "{path}: {t:?}");
    }
    let node = w.node();
    assert_eq!(node["last_status"], "applied", "{node}");
    assert_eq!(node["serials"][w.site_target().to_string()], 1, "{node}");
}

#[test]
fn a_hostile_site_payload_applies_nothing_of_the_host() {
    let mut w = World::new();
    let site = w.site_target();
    w.publish(&w.host_target(), &good_host());
    for (case, entries) in hostile() {
        w.publish(&site, &entries);
        w.boot_refused(&site, case);
    }
}

#[test]
fn a_rename_failing_midway_through_the_host_commit_takes_the_site_out_again() {
    let mut w = World::new();
    w.publish(&w.site_target(), &good_site());
    // The host's steps in order: a new file (renamed in first), a file of
    // the image replaced, then a file into the locked directory, which
    // fails. The plan is fine: only the rename itself is refused.
    let host = w.host_target();
    w.publish(
        &host,
        &[
            RawEntry::file("aaa-first.conf", "renamed in, then out again\n"),
            RawEntry::file("etc/hostname", "node-a0\n"),
            RawEntry::file("locked/host.conf", "cannot go in\n"),
        ],
    );
    let lock = Immutable::new(&w.root.join("locked"));
    w.boot_refused(&host, "a rename into an immutable directory");
    let f = w.boot();
    drop(lock);
    assert!(
        f.stderr.contains("the root was restored"),
        "the console does not say the root was restored:\n{}",
        f.stderr
    );
    // Unlocked, the same bundles apply.
    let f = w.boot();
    assert_eq!(f.code(), 0, "fetcher:\n{}", f.stderr);
    let t = tree(&w.root);
    assert!(
        t.contains(&("locked/host.conf".into(), "cannot go in\n".into())),
        "{t:?}"
    );
    assert!(
        t.contains(&("etc/ntp.conf".into(), "server ntp.dc3\n".into())),
        "{t:?}"
    );
}
