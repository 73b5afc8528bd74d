//! Benchmark (not a test): applying a bundle with `satchel-fetch` against
//! the equivalent shell pipeline, measured in the same run on the same
//! loopback server.
//!
//! Run (the fetcher measured is the shipped static build; the server is
//! the release build, as deployed, and serves both sides alike):
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" cargo build -p satchel-fetch \
//!     --profile fetcher --target x86_64-unknown-linux-gnu
//! cargo build --release -p satchel-server
//! SATCHEL_FETCH_BIN=target/x86_64-unknown-linux-gnu/fetcher/satchel-fetch \
//!     cargo bench -p satchel-fetch --bench apply
//! ```
//!
//! The roots both sides unpack into are on a tmpfs (`/dev/shm`, or
//! `SATCHEL_BENCH_ROOTS`), as a diskless node's root is; the server's
//! store is in the temporary directory. It needs `curl`, `age`, `zstd`,
//! `tar` and GNU `time` on PATH.
//!
//! 1. A 50 MiB / 5,000-file bundle from the real `satchel-server`:
//!    `satchel-fetch` (discover, download, verify, decrypt, overlay,
//!    report) vs `curl --cert … | tar -xO payload.age | age -d | zstd -d |
//!    tar -x` (download and unpack only, no checks): wall time and peak RSS,
//!    median of [`RUNS`] runs each, interleaved.
//! 2. The fetcher's peak RSS applying a 1 GiB bundle.
//!
//! Prints a Markdown table for BENCHMARKS.md.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use satchel_format::manifest::Policy;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, Recipient, SigningKey, Target};
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::client;
use satchel_tests::dns::DnsServer;
use satchel_tests::harness::{self, Proc};
use time::OffsetDateTime;

const RUNS: usize = 31;
const SERVER_NAME: &str = "cfg.boot.test";
const DOMAIN: &str = "boot.test";
const KILL_AFTER: Duration = Duration::from_secs(1800);

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
}

/// A tree of `files` files of `size` bytes each, half random, half text.
fn make_tree(dir: &Path, files: usize, size: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; size];
    for i in 0..files {
        let sub = dir.join(format!("srv/data/d{:03}", i % 100));
        std::fs::create_dir_all(&sub).expect("mkdir");
        rng.fill(&mut buf[..size / 2]);
        for (j, b) in buf[size / 2..].iter_mut().enumerate() {
            *b = b"satchel configuration line\n"[j % 27];
        }
        write(&sub.join(format!("f{i:05}.conf")), &buf);
    }
}

/// Runs `cmd` under GNU time; returns (wall seconds, peak RSS KiB, the
/// fetcher's phase-timing line if it printed one).
fn timed(cmd: Command) -> (f64, u64, String) {
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("%e %M")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            t.env(k, v);
        }
    }
    let start = Instant::now();
    let f = harness::run(t, KILL_AFTER);
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(f.code(), 0, "{}", f.stderr);
    let last = f
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let rss = last
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time output: {}", f.stderr));
    let phases = f
        .stderr
        .lines()
        .find(|l| l.starts_with("satchel: applied in "))
        .unwrap_or("")
        .to_string();
    (wall, rss, phases)
}

/// Where the roots go: `SATCHEL_BENCH_ROOTS`, else `/dev/shm` (a tmpfs,
/// like a diskless node's root), else the temporary directory.
fn roots_base() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("SATCHEL_BENCH_ROOTS") {
        return d.into();
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct World {
    dir: tempfile::TempDir,
    /// Where the roots are laid out: RAM, as on a diskless node.
    roots: tempfile::TempDir,
    ca_pem: Vec<u8>,
    admin: (String, String),
    signer: SigningKey,
    recipients: Vec<Recipient>,
    mac: Mac,
    addr: std::net::SocketAddr,
    _server: Proc,
    dns: std::net::SocketAddr,
    _dns: DnsServer,
}

impl World {
    fn new() -> World {
        let dir = harness::tempdir();
        let d = dir.path();
        let mac = Mac::parse("52-54-00-be-ec-01").expect("mac");
        let (ca, admin) = harness::server_pki(d, SERVER_NAME);
        let signer = SigningKey::generate();
        write(
            &d.join("signer.pub"),
            signer.verifying_key().to_pem().as_bytes(),
        );
        let admin_id = Identities::generate();
        let enrolled = ca
            .enroll(&EnrollOptions {
                mac: Some(mac),
                signers: vec![d.join("signer.pub")],
                admin_recipients: vec![admin_id.recipients()[0].to_string()],
                domain: DOMAIN.into(),
                out: d.join("image"),
                ..Default::default()
            })
            .expect("enroll");
        let mut recipients: Vec<Recipient> = enrolled
            .recipients
            .iter()
            .map(|(_, r)| Recipient::parse(r).expect("r"))
            .collect();
        recipients.extend(admin_id.recipients());
        let (addr, proc) = harness::start_server(
            d,
            &format!("max_bundle_bytes = {}\n", 2u64 << 30),
            KILL_AFTER,
        );
        let (dns, dns_handle) =
            DnsServer::for_server(DOMAIN, SERVER_NAME, addr.port()).expect("dns");
        World {
            roots: tempfile::Builder::new()
                .prefix("satchel-bench-roots-")
                .tempdir_in(roots_base())
                .expect("roots dir"),
            ca_pem: ca.cert_pem().as_bytes().to_vec(),
            admin: (admin.cert_pem.clone(), admin.key_pem.expose().to_string()),
            dir,
            signer,
            recipients,
            mac,
            addr,
            _server: proc,
            dns,
            _dns: dns_handle,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// Seals the tree `src` with `serial` and publishes it.
    fn publish(&self, src: &Path, serial: u64) -> u64 {
        let now = OffsetDateTime::now_utc();
        let out = self.d().join(format!("b{serial}.bundle"));
        let sealed = seal_to_file(
            &SealParams {
                target: Target::Host(self.mac),
                site: None,
                serial,
                created: now - time::Duration::minutes(1),
                expires: now + time::Duration::days(1),
                policy: Policy::default(),
                recipients: self.recipients.clone(),
            },
            Source::Dir {
                path: src,
                keep_owners: false,
            },
            &self.signer,
            &out,
            &AtomicU64::new(0),
        )
        .expect("seal");
        let (status, body) = client::request(
            self.addr,
            SERVER_NAME,
            &self.ca_pem,
            Some((self.admin.0.as_bytes(), self.admin.1.as_bytes())),
            "PUT",
            &format!("/v1/bundles/host/{}", self.mac),
            std::fs::read(&out).expect("bundle"),
        )
        .expect("publish");
        assert!(
            (200..300).contains(&status),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
        std::fs::remove_file(&out).expect("rm");
        sealed.bundle_size
    }

    fn fresh_root(&self, name: &str) -> std::path::PathBuf {
        let root = self.roots.path().join(name);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("root");
        root
    }

    fn fetcher(&self, root: &Path) -> Command {
        write(
            &self.d().join("cmdline"),
            format!(
                "satchel.dns={} satchel.root={} satchel.timeout=900\n",
                self.dns,
                root.display()
            )
            .as_bytes(),
        );
        write(&self.d().join("kmsg"), b"");
        // A relative path is taken from the workspace root (cargo runs
        // benches in the package's directory).
        let bin = std::env::var_os("SATCHEL_FETCH_BIN")
            .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p))
            .unwrap_or_else(|| harness::bin("satchel-fetch"));
        let mut c = Command::new(bin);
        c.arg("--cmdline")
            .arg(self.d().join("cmdline"))
            .arg("--config")
            .arg(self.d().join("image/satchel.toml"))
            .arg("--kmsg")
            .arg(self.d().join("kmsg"));
        c
    }

    fn pipeline(&self, root: &Path) -> Command {
        let img = self.d().join("image");
        let script = format!(
            "set -e; curl -sSf --cacert {ca} --cert {crt} --key {key} \
             --resolve {name}:{port}:127.0.0.1 https://{name}:{port}/v1/bundles/host/{mac} \
             | tar -xOf - payload.age | age -d -i {id} | zstd -dq | tar -x -C {root}",
            ca = img.join("ca.crt").display(),
            crt = img.join("client.crt").display(),
            key = img.join("client.key").display(),
            id = img.join("host.agekey").display(),
            name = SERVER_NAME,
            port = self.addr.port(),
            mac = self.mac,
            root = root.display(),
        );
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // only `cargo bench` runs it; a test build of all targets does not.
    }
    let w = World::new();
    let src = w.d().join("src50");
    make_tree(&src, 5_000, 10 * 1024, 1);
    let size = w.publish(&src, 1);
    let (mut fw, mut fr, mut pw, mut pr) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let root = w.fresh_root("root-fetch");
        let (t, rss, phases) = timed(w.fetcher(&root));
        eprintln!("fetch {t:.3} s: {phases}");
        fw.push(t);
        fr.push(rss as f64);
        let root = w.fresh_root("root-pipe");
        let (t, rss, _) = timed(w.pipeline(&root));
        eprintln!("pipeline {t:.3} s");
        pw.push(t);
        pr.push(rss as f64);
    }
    let (fw, fr, pw, pr) = (median(fw), median(fr), median(pw), median(pr));
    println!(
        "| 50 MiB / 5,000 files (bundle {:.1} MiB) | wall s | peak RSS MiB |",
        size as f64 / 1048576.0
    );
    println!("|---|---|---|");
    println!(
        "| satchel-fetch (verify + overlay + report) | {fw:.3} | {:.1} |",
        fr / 1024.0
    );
    println!(
        "| curl \\| tar \\| age -d \\| zstd -d \\| tar -x | {pw:.3} | {:.1} |",
        pr / 1024.0
    );
    println!(
        "| ratio fetch / pipeline | {:.2}× | {:.2}× |",
        fw / pw,
        fr / pr
    );

    std::fs::remove_dir_all(&src).expect("rm src");
    let big = w.d().join("src1g");
    make_tree(&big, 64, 16 << 20, 2);
    let size = w.publish(&big, 2);
    std::fs::remove_dir_all(&big).expect("rm big");
    let root = w.fresh_root("root-big");
    let (t, rss, phases) = timed(w.fetcher(&root));
    eprintln!("{phases}");
    println!(
        "| 1 GiB payload (bundle {:.0} MiB), satchel-fetch | {t:.2} | {:.1} |",
        size as f64 / 1048576.0,
        rss as f64 / 1024.0
    );
}
