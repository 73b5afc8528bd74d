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
//! 3. A site bundle and a host bundle together (25 MiB / 2,500 files
//!    each, the host replacing 250 of the site's files): the fetcher vs
//!    the two pipelines one after the other.
//! 4. What a check pass before the apply pass would add (the other way
//!    to make a boot all or nothing: decrypt, decompress and check every
//!    payload once, then again to apply): that pass alone, in process, on
//!    the bundle of case 1.
//!
//! With `SATCHEL_FETCH_BASE_BIN` (another build of the fetcher, say the
//! previous revision's), cases 1-3 run it too, interleaved, and print the
//! ratio of the fetcher to it.
//!
//! Prints a Markdown table for BENCHMARKS.md.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use satchel_format::manifest::Policy;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, Recipient, SigningKey, SiteName, Target};
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
    make_tree_in(dir, "srv/data", files, size, seed);
}

/// [`make_tree`] under `prefix`.
fn make_tree_in(dir: &Path, prefix: &str, files: usize, size: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; size];
    for i in 0..files {
        let sub = dir.join(format!("{prefix}/d{:03}", i % 100));
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
    site: SiteName,
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
        let site = SiteName::parse("bench").expect("site");
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
                site: Some(site.clone()),
                // The site bundle is published for case 3 only.
                required: Some(vec![Target::Host(mac)]),
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
            site,
            addr,
            _server: proc,
            dns,
            _dns: dns_handle,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// Seals the tree `src` with `serial` as this host's bundle and
    /// publishes it.
    fn publish(&self, src: &Path, serial: u64) -> u64 {
        self.publish_for(&Target::Host(self.mac), src, serial, false)
    }

    /// Seals the tree `src` with `serial` for `target` and publishes it;
    /// keeps the bundle file (`b<serial>.bundle`) when `keep`.
    fn publish_for(&self, target: &Target, src: &Path, serial: u64, keep: bool) -> u64 {
        let now = OffsetDateTime::now_utc();
        let out = self.bundle_path(serial);
        let sealed = seal_to_file(
            &SealParams {
                target: target.clone(),
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
        let (status, body) = self.admin_request(
            "PUT",
            &format!("/v1/bundles/{target}"),
            std::fs::read(&out).expect("bundle"),
        );
        assert!(
            (200..300).contains(&status),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
        if !keep {
            std::fs::remove_file(&out).expect("rm");
        }
        sealed.bundle_size
    }

    fn bundle_path(&self, serial: u64) -> std::path::PathBuf {
        self.d().join(format!("b{serial}.bundle"))
    }

    fn admin_request(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
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

    fn fresh_root(&self, name: &str) -> std::path::PathBuf {
        let root = self.roots.path().join(name);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("root");
        root
    }

    fn fetcher(&self, root: &Path) -> Command {
        self.fetcher_with(root, None)
    }

    /// The fetcher `bin` (default: the one measured) into `root`.
    fn fetcher_with(&self, root: &Path, bin: Option<&Path>) -> Command {
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
        let bin = bin
            .map(Path::to_path_buf)
            .or_else(|| fetch_bin("SATCHEL_FETCH_BIN"))
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
        self.pipelines(root, &[Target::Host(self.mac)])
    }

    /// `curl | tar | age | zstd | tar` for each of `targets`, one after
    /// the other.
    fn pipelines(&self, root: &Path, targets: &[Target]) -> Command {
        let img = self.d().join("image");
        let script = targets
            .iter()
            .map(|t| {
                let id = match t {
                    Target::Site(_) => "site.agekey",
                    Target::Host(_) => "host.agekey",
                };
                format!(
                    "curl -sSf --cacert {ca} --cert {crt} --key {key} \
                     --resolve {name}:{port}:127.0.0.1 https://{name}:{port}/v1/bundles/{t} \
                     | tar -xOf - payload.age | age -d -i {id} | zstd -dq | tar -x -C {root}",
                    ca = img.join("ca.crt").display(),
                    crt = img.join("client.crt").display(),
                    key = img.join("client.key").display(),
                    id = img.join(id).display(),
                    name = SERVER_NAME,
                    port = self.addr.port(),
                    root = root.display(),
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("set -e; {script}"));
        c
    }
}

/// A fetcher binary named by the environment variable `var`; a relative
/// path is taken from the workspace root (cargo runs benches in the
/// package's directory).
fn fetch_bin(var: &str) -> Option<std::path::PathBuf> {
    std::env::var_os(var).map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p))
}

/// Medians of interleaved runs of the fetcher, the base fetcher (if any)
/// and the pipeline into fresh roots: wall s and peak RSS KiB of each.
struct Measured {
    fetch: (f64, f64),
    base: Option<(f64, f64)>,
    pipe: (f64, f64),
}

fn measure(w: &World, base: Option<&Path>, pipe: &dyn Fn(&Path) -> Command) -> Measured {
    let (mut fw, mut fr, mut bw, mut br, mut pw, mut pr) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let root = w.fresh_root("root-fetch");
        let (t, rss, phases) = timed(w.fetcher(&root));
        eprintln!("fetch {t:.3} s: {phases}");
        fw.push(t);
        fr.push(rss as f64);
        if let Some(b) = base {
            let root = w.fresh_root("root-base");
            let (t, rss, phases) = timed(w.fetcher_with(&root, Some(b)));
            eprintln!("base {t:.3} s: {phases}");
            bw.push(t);
            br.push(rss as f64);
        }
        let root = w.fresh_root("root-pipe");
        let (t, rss, _) = timed(pipe(&root));
        eprintln!("pipeline {t:.3} s");
        pw.push(t);
        pr.push(rss as f64);
    }
    Measured {
        fetch: (median(fw), median(fr)),
        base: base.map(|_| (median(bw), median(br))),
        pipe: (median(pw), median(pr)),
    }
}

fn print_rows(m: &Measured, pipe_name: &str) {
    let (fw, fr) = m.fetch;
    let (pw, pr) = m.pipe;
    println!(
        "| satchel-fetch (verify + overlay + report) | {fw:.3} | {:.1} |",
        fr / 1024.0
    );
    if let Some((bw, br)) = m.base {
        println!(
            "| satchel-fetch, base build | {bw:.3} | {:.1} |",
            br / 1024.0
        );
        println!("| ratio fetch / base | {:.2}× | {:.2}× |", fw / bw, fr / br);
    }
    println!("| {pipe_name} | {pw:.3} | {:.1} |", pr / 1024.0);
    println!(
        "| ratio fetch / pipeline | {:.2}× | {:.2}× |",
        fw / pw,
        fr / pr
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // only `cargo bench` runs it; a test build of all targets does not.
    }
    let base = fetch_bin("SATCHEL_FETCH_BASE_BIN");
    let w = World::new();

    // 1. One 50 MiB bundle.
    let src = w.d().join("src50");
    make_tree(&src, 5_000, 10 * 1024, 1);
    let size = w.publish_for(&Target::Host(w.mac), &src, 1, true);
    std::fs::remove_dir_all(&src).expect("rm src");
    let m = measure(&w, base.as_deref(), &|root| w.pipeline(root));
    println!(
        "| 50 MiB / 5,000 files (bundle {:.1} MiB) | wall s | peak RSS MiB |",
        size as f64 / 1048576.0
    );
    println!("|---|---|---|");
    print_rows(&m, "curl \\| tar \\| age -d \\| zstd -d \\| tar -x");

    // 4. The check pass a check-then-apply boot would add.
    check_pass(&w, &w.bundle_path(1), m.fetch.0);
    std::fs::remove_file(w.bundle_path(1)).expect("rm bundle");

    // 2. 1 GiB.
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
    if let Some(b) = &base {
        let root = w.fresh_root("root-big");
        let (t, rss, _) = timed(w.fetcher_with(&root, Some(b)));
        println!(
            "| 1 GiB payload, satchel-fetch, base build | {t:.2} | {:.1} |",
            rss as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(w.roots.path().join("root-big"));

    // 3. A site and a host bundle together, the host over the site.
    let site_src = w.d().join("src-site");
    make_tree_in(&site_src, "srv/site", 2_500, 10 * 1024, 3);
    let host_src = w.d().join("src-host");
    make_tree_in(&host_src, "srv/host", 2_250, 10 * 1024, 4);
    make_tree_in(&host_src, "srv/site", 250, 10 * 1024, 5);
    let site = Target::Site(w.site.clone());
    let site_size = w.publish_for(&site, &site_src, 3, false);
    let host_size = w.publish_for(&Target::Host(w.mac), &host_src, 4, false);
    std::fs::remove_dir_all(&site_src).expect("rm");
    std::fs::remove_dir_all(&host_src).expect("rm");
    let targets = [site, Target::Host(w.mac)];
    let m = measure(&w, base.as_deref(), &|root| w.pipelines(root, &targets));
    println!(
        "| site + host, 25 MiB / 2,500 files each (bundles {:.1} + {:.1} MiB) | wall s | peak RSS MiB |",
        site_size as f64 / 1048576.0,
        host_size as f64 / 1048576.0
    );
    println!("|---|---|---|");
    print_rows(&m, "the pipeline for the site, then for the host");
}

/// Times what a check-then-apply boot would add to case 1: a pass that
/// decrypts, decompresses and checks the payload against every overlay
/// rule (no disk), in process. Median of [`RUNS`].
fn check_pass(w: &World, bundle: &Path, fetch_wall: f64) {
    use satchel_format::open::{open_file, overlay_options};
    use satchel_format::verify::Checks;
    let text = std::fs::read_to_string(w.d().join("image/host.agekey")).expect("identity");
    let ids = Identities::parse(&text).expect("identity");
    let checks = Checks::new(vec![w.signer.verifying_key()]);
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let (verified, tar) = open_file(bundle, &checks, &ids).expect("open");
        let opts = overlay_options(verified.manifest(), &satchel_overlay::Options::default());
        satchel_overlay::check_archive(tar, &opts).expect("check");
        times.push(t.elapsed().as_secs_f64());
    }
    let t = median(times);
    println!("| check pass alone (verify, decrypt, decompress, every rule; no disk) | {t:.3} | |");
    println!(
        "| check pass / the fetcher's whole boot | {:.2}× | |",
        t / fetch_wall
    );
}
