//! Boot-storm load generator (a benchmark, not a test).
//!
//! Every simulated node opens a **new** mutual-TLS connection, GETs its
//! 100 KiB bundle, POSTs a report on the same connection and closes. The
//! same generator runs, in the same process and run, against
//! `satchel-server` (release build, embedded store, authorization, audit,
//! reports) and against nginx (TLS 1.3, `ssl_verify_client on`, the same
//! certificates and CRL, the same bundle files served statically, report
//! POSTs answered 204, as many workers as the server has runtime threads).
//!
//! Run: `cargo bench -p satchel-server --bench boot_storm -- [--nodes 100,1000,5000] [--identities 200] [--etcd-endpoints URL,…] [--compare-bin PATH] [--peers sled,etcd,nginx]`
//!
//! With `--etcd-endpoints` (a running etcd cluster), satchel-server is also
//! measured on the etcd store, in the same run: a row `satchel-server
//! (etcd)` per level, each level below a key prefix of its own.
//! `--compare-bin PATH` (a `satchel-server` of another build, say the
//! commit before) adds a row `satchel-server (etcd, compared build)`, run
//! first at each level, so two builds are compared in one run;
//! `--compare-config 'LINE\nLINE'` adds settings to that row's server
//! (alone, it compares this build with itself under other settings).
//! `--peers sled,etcd,nginx` (the default) chooses the other rows.
//! `--etcd-pids PID,…` (the members' processes) adds the etcd members'
//! CPU per node to the etcd rows.
//!
//! Identities: issuing thousands of certificates through the CA's signed
//! ledger dominates setup, so `--identities` distinct host certificates (and
//! bundles) are issued and node `i` uses identity `i % identities`; every
//! node still makes its own new TLS connection with a full handshake.
//! Prints a Markdown table: nodes/s, p50/p99 latency, peak RSS of each peer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, SigningKey, Target};
use satchel_pki::ca::Ca;
use satchel_pki::AdminName;

const BUNDLE_PAYLOAD_BYTES: usize = 100 * 1024;
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

fn mac(i: usize) -> Mac {
    let b = (i as u32).to_be_bytes();
    Mac::from_octets([0x02, 0x5a, b[0], b[1], b[2], b[3]])
}

struct Identity {
    mac: Mac,
    client: Arc<rustls::ClientConfig>,
    bundle_len: usize,
}

struct Setup {
    dir: tempfile::TempDir,
    ca_pem: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    crl: PathBuf,
    signer_pub: PathBuf,
    admin: Arc<rustls::ClientConfig>,
    ids: Vec<Identity>,
    bundles: Vec<(Target, Vec<u8>)>,
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn setup(identities: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    let ca = Ca::init_insecure(&p.join("ca"), "boot storm CA").expect("ca");
    let ca_pem = p.join("ca.pem");
    write(&ca_pem, ca.cert_pem());
    let srv = ca
        .issue_server(
            &["localhost".into()],
            &["127.0.0.1".parse().expect("ip")],
            None,
        )
        .expect("server cert");
    let (server_crt, server_key) = (p.join("server.crt"), p.join("server.key"));
    write(&server_crt, &srv.cert_pem);
    write(&server_key, srv.key_pem.expose());
    let crl = p.join("crl.pem");
    write(&crl, ca.crl(None).expect("crl").pem);
    let ca_bytes = std::fs::read(&ca_pem).expect("ca");
    let cfg = |cert: &str, key: &str| {
        let mut c =
            satchel_pki::tls::client_config(&ca_bytes, Some((cert.as_bytes(), key.as_bytes())))
                .expect("client config");
        // A booting node has no session to resume: every connection makes
        // a full handshake, against both peers.
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    };
    let admin = ca
        .issue_admin(AdminName::parse("bench").expect("name"), None)
        .expect("admin");
    let admin = cfg(&admin.cert_pem, admin.key_pem.expose());
    let signer = SigningKey::generate();
    let signer_pub = p.join("signer.pub");
    write(&signer_pub, signer.verifying_key().to_pem());
    let node_ids = Identities::generate();
    let src = p.join("src");
    std::fs::create_dir_all(&src).expect("src");
    let mut ids = Vec::new();
    let mut bundles = Vec::new();
    eprint!("issuing {identities} identities and sealing their bundles");
    for i in 0..identities {
        let m = mac(i);
        let issued = ca.issue_host(m, None, None).expect("host cert");
        let mut content = vec![0u8; BUNDLE_PAYLOAD_BYTES];
        let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for c in content.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            c.copy_from_slice(&b[..c.len()]);
        }
        write(&src.join("payload"), &content);
        let out = p.join("bundle.tmp");
        let now = time::OffsetDateTime::now_utc();
        seal_to_file(
            &SealParams {
                target: Target::Host(m),
                site: None,
                serial: 1,
                created: now,
                expires: now + time::Duration::days(1),
                policy: Default::default(),
                recipients: node_ids.recipients(),
            },
            Source::Dir {
                path: &src,
                keep_owners: false,
            },
            &signer,
            &out,
            &AtomicU64::new(0),
        )
        .expect("seal");
        let bytes = std::fs::read(&out).expect("bundle");
        ids.push(Identity {
            mac: m,
            client: cfg(&issued.cert_pem, issued.key_pem.expose()),
            bundle_len: bytes.len(),
        });
        bundles.push((Target::Host(m), bytes));
        if i % 50 == 0 {
            eprint!(".");
        }
    }
    eprintln!();
    Setup {
        dir,
        ca_pem,
        server_crt,
        server_key,
        crl,
        signer_pub,
        admin,
        ids,
        bundles,
    }
}

async fn exchange(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    reqs: Vec<(http::Method, String, Bytes)>,
) -> Result<Vec<(u16, usize)>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let mut out = Vec::new();
    for (method, path, body) in reqs {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        out.push((status, body.len()));
    }
    drop(sender);
    driver.abort();
    Ok(out)
}

struct Outcome {
    nodes_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
    peak_rss_kib: u64,
    /// CPU time (user + system) per node: the peer's, the generator's.
    cpu_ms_per_node: (f64, f64),
    /// The etcd members' CPU time per node (`--etcd-pids`, etcd rows).
    etcd_ms_per_node: Option<f64>,
}

/// CPU seconds (user + system) `pid` has used so far (`/proc/PID/stat`,
/// clock ticks of 1/100 s as on Linux x86).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// CPU seconds of a process and its children (nginx's workers).
fn tree_cpu_secs(pid: u32) -> f64 {
    cpu_secs(pid) + children(pid).into_iter().map(cpu_secs).sum::<f64>()
}

async fn storm(
    s: &Setup,
    addr: SocketAddr,
    nodes: usize,
    report_status: u16,
) -> (f64, Vec<Duration>, usize) {
    let start = Arc::new(tokio::sync::Barrier::new(nodes + 1));
    let mut tasks = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let id = &s.ids[i % s.ids.len()];
        let (cfg, m, len) = (id.client.clone(), id.mac, id.bundle_len);
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let t0 = Instant::now();
            let report = format!(
                r#"{{"report_id":"bench-{i}","mac":"{m}","status":"applied","fetcher_version":"satchel-fetch/bench","serials":{{"host/{m}":1}}}}"#
            );
            let r = tokio::time::timeout(
                NODE_TIMEOUT,
                exchange(
                    cfg,
                    addr,
                    vec![
                        (http::Method::GET, format!("/v1/bundles/host/{m}"), Bytes::new()),
                        (http::Method::POST, format!("/v1/reports/{m}"), Bytes::from(report)),
                    ],
                ),
            )
            .await;
            match r {
                Ok(Ok(v)) if v.len() == 2 && v[0] == (200, len) && v[1].0 == report_status => Some(t0.elapsed()),
                _ => None,
            }
        }));
    }
    start.wait().await;
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(nodes);
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Some(d)) => lat.push(d),
            _ => errors += 1,
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    lat.sort();
    (lat.len() as f64 / wall, lat, errors)
}

fn pct(lat: &[Duration], p: f64) -> Duration {
    if lat.is_empty() {
        return Duration::ZERO;
    }
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    lat[i.min(lat.len() - 1)]
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers (a SIGKILLed
        // master leaves them running, orphaned); then make sure.
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
}

fn start_satchel(s: &Setup, bin: &Path, threads: usize, store: &str) -> (Proc, SocketAddr) {
    let addr = free_port();
    let cfg = s.dir.path().join("server.toml");
    write(
        &cfg,
        format!(
            "listen = \"{addr}\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
             ca_cert = {ca:?}\nserver_cert = {crt:?}\nserver_key = {key:?}\ncrl = {crl:?}\n\
             trusted_signers = [{signer:?}]\nmax_connections = 12000\nhandshake_timeout_secs = 60\n\
             header_read_timeout_secs = 60\n\
             # Every simulated node connects from 127.0.0.1: lift the per-source caps.\n\
             max_handshakes_per_source = 12000\nmax_handshakes = 12000\n\
             node_burst_per_source = 1000000\nnode_per_minute_per_source = 1000000\n{store}",
            data = s.dir.path().join("data"),
            ca = s.ca_pem,
            crt = s.server_crt,
            key = s.server_key,
            crl = s.crl,
            signer = s.signer_pub,
        ),
    );
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env("TOKIO_WORKER_THREADS", threads.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("satchel-server");
    wait_port(addr);
    (Proc(child), addr)
}

fn start_nginx(s: &Setup, workers: usize) -> Option<(Proc, SocketAddr)> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let addr = free_port();
    let d = s.dir.path().join("nginx");
    let www = d.join("www/v1/bundles/host");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::create_dir_all(d.join("tmp")).expect("tmp");
    for (t, bytes) in &s.bundles {
        write(&www.join(t.name()), bytes);
    }
    let conf = d.join("nginx.conf");
    write(
        &conf,
        format!(
            "daemon off;\nmaster_process on;\nworker_processes {workers};\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 12000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             server {{\n    listen {addr} ssl backlog=4096;\n    ssl_protocols TLSv1.3;\n\
             ssl_certificate {crt};\n    ssl_certificate_key {key};\n    ssl_client_certificate {ca};\n\
             ssl_verify_client on;\n    ssl_crl {crl};\n    root {d}/www;\n\
             location /v1/bundles/ {{ default_type application/x-tar; }}\n\
             location /v1/reports/ {{ return 204; }}\n  }}\n}}\n",
            d = d.display(),
            crt = s.server_crt.display(),
            key = s.server_key.display(),
            ca = s.ca_pem.display(),
            crl = s.crl.display(),
        ),
    );
    let child = Command::new(nginx)
        .arg("-e")
        .arg(d.join("error.log"))
        .arg("-p")
        .arg(&d)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_port(addr);
    Some((Proc(child), addr))
}

async fn publish(s: &Setup, addr: SocketAddr) {
    for (t, bytes) in &s.bundles {
        let r = exchange(
            s.admin.clone(),
            addr,
            vec![(
                http::Method::PUT,
                format!("/v1/bundles/{t}"),
                Bytes::from(bytes.clone()),
            )],
        )
        .await
        .expect("publish");
        assert!(r[0].0 == 201 || r[0].0 == 409, "publish {t}: {}", r[0].0);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let levels: Vec<usize> = get("--nodes")
        .unwrap_or_else(|| "100,1000,5000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let identities: usize = get("--identities")
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = setup(identities);
    let mut results: BTreeMap<(usize, &str), Outcome> = BTreeMap::new();
    let etcd = get("--etcd-endpoints");
    let peers: Vec<String> = get("--peers")
        .unwrap_or_else(|| "sled,etcd,nginx".into())
        .split(',')
        .map(|p| p.trim().to_string())
        .collect();
    let wants = |p: &str| peers.iter().any(|q| q == p);
    let this_build = PathBuf::from(env!("CARGO_BIN_EXE_satchel-server"));
    // The etcd members' processes, to count their CPU too.
    let etcd_pids: Vec<u32> = get("--etcd-pids")
        .map(|p| p.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default();
    let etcd_cpu = || etcd_pids.iter().map(|p| cpu_secs(*p)).sum::<f64>();
    let compared_config = get("--compare-config").map(|c| c.replace("\\n", "\n"));
    let compared = get("--compare-bin")
        .map(PathBuf::from)
        .or_else(|| compared_config.as_ref().map(|_| this_build.clone()));
    for &nodes in &levels {
        let mut stores: Vec<(&str, PathBuf, String)> = Vec::new();
        if wants("sled") {
            stores.push(("satchel-server", this_build.clone(), String::new()));
        }
        if let Some(e) = &etcd {
            let list: Vec<String> = e.split(',').map(|u| format!("{u:?}")).collect();
            let store = |tag: &str| {
                format!(
                    "store = \"etcd\"\netcd_endpoints = [{}]\netcd_prefix = \"/bench-{}-{tag}{nodes}/\"\n",
                    list.join(", "),
                    std::process::id()
                )
            };
            // The compared build first: neither gets an etcd warmed by the other.
            if let Some(bin) = &compared {
                let extra = compared_config.clone().unwrap_or_default();
                stores.push((
                    "satchel-server (etcd, compared build)",
                    bin.clone(),
                    format!("{}{extra}\n", store("c")),
                ));
            }
            if wants("etcd") {
                stores.push(("satchel-server (etcd)", this_build.clone(), store("")));
            }
        }
        for (label, bin, store) in stores {
            // satchel-server: a fresh process per level, so its peak RSS is this level's.
            let (proc_, addr) = start_satchel(&s, &bin, threads, &store);
            rt.block_on(publish(&s, addr));
            let me = std::process::id();
            let on_etcd = !store.is_empty() && !etcd_pids.is_empty();
            let (peer0, gen0, etcd0) = (cpu_secs(proc_.0.id()), cpu_secs(me), etcd_cpu());
            let (nps, lat, errors) = rt.block_on(storm(&s, addr, nodes, 202));
            let cpu = (
                (cpu_secs(proc_.0.id()) - peer0) * 1000.0 / nodes as f64,
                (cpu_secs(me) - gen0) * 1000.0 / nodes as f64,
            );
            let etcd_ms = on_etcd.then(|| (etcd_cpu() - etcd0) * 1000.0 / nodes as f64);
            let rss = vm_hwm_kib(proc_.0.id());
            drop(proc_);
            results.insert(
                (nodes, label),
                Outcome {
                    nodes_per_sec: nps,
                    p50: pct(&lat, 0.5),
                    p99: pct(&lat, 0.99),
                    errors,
                    peak_rss_kib: rss,
                    cpu_ms_per_node: cpu,
                    etcd_ms_per_node: etcd_ms,
                },
            );
            eprintln!("{label} {nodes}: {nps:.0} nodes/s, {errors} errors");
        }
        if !wants("nginx") {
            continue;
        }
        if let Some((proc_, addr)) = start_nginx(&s, threads) {
            let pid = proc_.0.id();
            let me = std::process::id();
            let (peer0, gen0) = (tree_cpu_secs(pid), cpu_secs(me));
            let (nps, lat, errors) = rt.block_on(storm(&s, addr, nodes, 204));
            let cpu = (
                (tree_cpu_secs(pid) - peer0) * 1000.0 / nodes as f64,
                (cpu_secs(me) - gen0) * 1000.0 / nodes as f64,
            );
            let rss = vm_hwm_kib(pid) + children(pid).into_iter().map(vm_hwm_kib).sum::<u64>();
            drop(proc_);
            results.insert(
                (nodes, "nginx"),
                Outcome {
                    nodes_per_sec: nps,
                    p50: pct(&lat, 0.5),
                    p99: pct(&lat, 0.99),
                    errors,
                    peak_rss_kib: rss,
                    cpu_ms_per_node: cpu,
                    etcd_ms_per_node: None,
                },
            );
            eprintln!("nginx {nodes}: {nps:.0} nodes/s, {errors} errors");
        } else {
            eprintln!("nginx not found: only satchel-server measured");
        }
    }
    println!(
        "| nodes | peer | nodes/s | p50 | p99 | errors | peak RSS | CPU ms/node, peer | CPU ms/node, generator | CPU ms/node, etcd |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((nodes, peer), o) in &results {
        let etcd = o
            .etcd_ms_per_node
            .map(|e| format!("{e:.2}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {nodes} | {peer} | {:.0} | {:.0} ms | {:.0} ms | {} | {:.1} MiB | {:.2} | {:.2} | {etcd} |",
            o.nodes_per_sec,
            o.p50.as_secs_f64() * 1000.0,
            o.p99.as_secs_f64() * 1000.0,
            o.errors,
            o.peak_rss_kib as f64 / 1024.0,
            o.cpu_ms_per_node.0,
            o.cpu_ms_per_node.1
        );
    }
    for &nodes in &levels {
        println!();
        let row = |peer: &'static str| results.get(&(nodes, peer));
        for peer in ["satchel-server", "satchel-server (etcd)"] {
            if let (Some(a), Some(b)) = (row(peer), row("nginx")) {
                println!(
                    "{nodes} nodes: {peer} / nginx = {:.2}× nodes/s, p99 {:.2}×",
                    a.nodes_per_sec / b.nodes_per_sec.max(1e-9),
                    a.p99.as_secs_f64() / b.p99.as_secs_f64().max(1e-9)
                );
            }
        }
        for (a, b) in [
            ("satchel-server (etcd)", "satchel-server"),
            (
                "satchel-server (etcd)",
                "satchel-server (etcd, compared build)",
            ),
        ] {
            if let (Some(x), Some(y)) = (row(a), row(b)) {
                println!(
                    "{nodes} nodes: {a} / {b} = {:.2}× server CPU per node, {:.2}× nodes/s",
                    x.cpu_ms_per_node.0 / y.cpu_ms_per_node.0.max(1e-9),
                    x.nodes_per_sec / y.nodes_per_sec.max(1e-9)
                );
            }
        }
    }
}
