//! Publish to served everywhere, across replicas on one etcd (a benchmark,
//! not a test).
//!
//! Starts `--replicas` (3) release `satchel-server` processes on the etcd
//! cluster `--etcd-endpoints` names, below a key prefix of this run's own,
//! then publishes `--publishes` (200) serials of one host bundle through
//! replica 1. After each 201 it asks every other replica, over a kept
//! admin connection and without pause, which serial it serves, until each
//! serves the new one: the time from the 201 to the last replica serving it
//! is the publish's latency (one GET's round trip included). Prints p50,
//! p99 and the worst, per replica and for all of them.
//!
//! Run: `cargo bench -p satchel-server --bench replicas -- --etcd-endpoints URL,… [--replicas 3] [--publishes 200] [--payload-bytes 4096]`
//!
//! With `--chunk-sweep SIZE,…` it measures `etcd_chunk_bytes` instead:
//! per size, the time of each publish (`--publishes` of them, of
//! `--payload-bytes` each) and a replica's cold start that loads the
//! bundle from etcd (see [`chunk_sweep`]).
//!
//! The replicas' caches are kept current by etcd's watch (see the
//! consistency model in ARCHITECTURE.md); what this measures is that path:
//! the commit, the watch event, the bytes' load from etcd and check.

use std::net::SocketAddr;
use std::path::Path;
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

/// Longest one replica may take to serve a publish before the run fails.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(30);

/// Longest a replica may take to start.
const START_LIMIT: Duration = Duration::from_secs(30);

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A server process, stopped on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One kept admin connection to a replica (opened again when the server
/// closed it).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
}

impl Conn {
    async fn open(cfg: Arc<rustls::ClientConfig>, addr: SocketAddr) -> Conn {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let cfg2 = cfg.clone();
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(cfg2)
            .connect(name, tcp)
            .await
            .expect("tls");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http");
        tokio::spawn(conn);
        Conn { sender, cfg, addr }
    }

    /// Status and `x-satchel-serial` of one request.
    async fn send(&mut self, method: http::Method, path: &str, body: Bytes) -> (u16, Option<u64>) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(body))
            .expect("request");
        if self.sender.ready().await.is_err() {
            *self = Conn::open(self.cfg.clone(), self.addr).await;
        }
        let resp = self.sender.send_request(req).await.expect("answer");
        let status = resp.status().as_u16();
        let serial = resp
            .headers()
            .get("x-satchel-serial")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let _ = resp.into_body().collect().await;
        (status, serial)
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(endpoints) = get("--etcd-endpoints") else {
        eprintln!("--etcd-endpoints URL[,URL…] is required (a running etcd cluster)");
        std::process::exit(2);
    };
    let replicas: usize = get("--replicas").and_then(|n| n.parse().ok()).unwrap_or(3);
    let publishes: u64 = get("--publishes")
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let payload_bytes: usize = get("--payload-bytes")
        .and_then(|n| n.parse().ok())
        .unwrap_or(4096);
    assert!(replicas >= 2, "--replicas must be at least 2");

    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    let ca = Ca::init_insecure(&p.join("ca"), "replicas bench CA").expect("ca");
    let ca_pem = p.join("ca.pem");
    write(&ca_pem, ca.cert_pem());
    let srv = ca
        .issue_server(
            &["localhost".into()],
            &["127.0.0.1".parse().expect("ip")],
            None,
        )
        .expect("server cert");
    write(&p.join("server.crt"), &srv.cert_pem);
    write(&p.join("server.key"), srv.key_pem.expose());
    write(&p.join("crl.pem"), ca.crl(None).expect("crl").pem);
    let admin = ca
        .issue_admin(AdminName::parse("bench").expect("name"), None)
        .expect("admin");
    let admin = Arc::new(
        satchel_pki::tls::client_config(
            ca.cert_pem().as_bytes(),
            Some((admin.cert_pem.as_bytes(), admin.key_pem.expose().as_bytes())),
        )
        .expect("client config"),
    );
    let signer = SigningKey::generate();
    write(&p.join("signer.pub"), signer.verifying_key().to_pem());

    // Every serial's bundle, sealed before any replica starts.
    let m = Mac::from_octets([0x02, 0x5b, 0, 0, 0, 1]);
    let target = Target::Host(m);
    let ids = Identities::generate();
    let src = p.join("src");
    std::fs::create_dir_all(&src).expect("src");
    let mut bundles = Vec::new();
    eprint!("sealing {publishes} bundles of {payload_bytes} bytes");
    for serial in 1..=publishes {
        // Incompressible, so the bundle is about as large as the payload.
        let mut x = serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let content: Vec<u8> = (0..payload_bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write(&src.join("payload"), &content);
        let out = p.join("bundle.tmp");
        let now = time::OffsetDateTime::now_utc();
        seal_to_file(
            &SealParams {
                target: target.clone(),
                site: None,
                serial,
                created: now,
                expires: now + time::Duration::days(1),
                policy: Default::default(),
                recipients: ids.recipients(),
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
        bundles.push(Bytes::from(std::fs::read(&out).expect("bundle")));
    }
    eprintln!();

    let list: Vec<String> = endpoints.split(',').map(|u| format!("{u:?}")).collect();
    let list = list.join(", ");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(sizes) = get("--chunk-sweep") {
        let sizes: Vec<usize> = sizes.split(',').filter_map(|n| n.parse().ok()).collect();
        chunk_sweep(p, &list, &sizes, &bundles, &admin, &target, &rt);
        return;
    }
    let prefix = format!("/bench-replicas-{}/", std::process::id());
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..replicas {
        let (proc_, addr, _) = start_replica(p, &format!("r{i}"), &list, &prefix, "");
        procs.push(proc_);
        addrs.push(addr);
    }
    let url = format!("/v1/bundles/{target}");
    let per_replica: Vec<Vec<Duration>> = rt.block_on(async {
        let mut conns = Vec::new();
        for a in &addrs {
            conns.push(Conn::open(admin.clone(), *a).await);
        }
        let mut first = conns.remove(0);
        let mut lags = vec![Vec::new(); conns.len()];
        for (serial, bundle) in (1..).zip(bundles) {
            let (st, _) = first.send(http::Method::PUT, &url, bundle).await;
            assert_eq!(st, 201, "publish of serial {serial}");
            let acked = Instant::now();
            // Every other replica asked at once, each over its own connection.
            let mut asking = tokio::task::JoinSet::new();
            for (i, mut c) in conns.drain(..).enumerate() {
                let url = url.clone();
                asking.spawn(async move {
                    loop {
                        let (st, got) = c.send(http::Method::GET, &url, Bytes::new()).await;
                        if st == 200 && got == Some(serial) {
                            return (i, acked.elapsed(), c);
                        }
                        assert!(
                            acked.elapsed() < PROPAGATION_LIMIT,
                            "serial {serial} not served within {PROPAGATION_LIMIT:?}"
                        );
                    }
                });
            }
            let mut back: Vec<(usize, Duration, Conn)> = Vec::new();
            while let Some(r) = asking.join_next().await {
                back.push(r.expect("poller"));
            }
            back.sort_by_key(|(i, _, _)| *i);
            for (i, d, c) in back {
                lags[i].push(d);
                conns.push(c);
            }
        }
        lags
    });
    drop(procs);
    let mut everywhere: Vec<Duration> = (0..per_replica[0].len())
        .map(|k| per_replica.iter().map(|l| l[k]).max().unwrap_or_default())
        .collect();
    everywhere.sort();
    println!("| served by | publishes | p50 | p99 | worst |");
    println!("|---|---:|---:|---:|---:|");
    for (i, l) in per_replica.iter().enumerate() {
        let mut l = l.clone();
        l.sort();
        println!(
            "| replica {} | {} | {} | {} | {} |",
            i + 2,
            l.len(),
            ms(pct(&l, 0.5)),
            ms(pct(&l, 0.99)),
            ms(pct(&l, 1.0))
        );
    }
    println!(
        "| every replica | {} | {} | {} | {} |",
        everywhere.len(),
        ms(pct(&everywhere, 0.5)),
        ms(pct(&everywhere, 0.99)),
        ms(pct(&everywhere, 1.0))
    );
}

/// Starts a replica named `name` on the etcd `list`, below `prefix`, with
/// `extra` settings; its address and how long it took to be ready (which
/// includes loading every current bundle from etcd into its cache).
fn start_replica(
    p: &Path,
    name: &str,
    list: &str,
    prefix: &str,
    extra: &str,
) -> (Proc, SocketAddr, Duration) {
    let cfg = p.join(format!("{name}.toml"));
    write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
             ca_cert = {ca:?}\nserver_cert = {crt:?}\nserver_key = {key:?}\ncrl = {crl:?}\n\
             trusted_signers = [{signer:?}]\nstore = \"etcd\"\netcd_endpoints = [{list}]\n\
             etcd_prefix = {prefix:?}\n{extra}\n",
            data = p.join(format!("data-{name}")),
            ca = p.join("ca.pem"),
            crt = p.join("server.crt"),
            key = p.join("server.key"),
            crl = p.join("crl.pem"),
            signer = p.join("signer.pub"),
        ),
    );
    let ready = p.join(format!("ready-{name}.json"));
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_satchel-server"))
        .arg("--config")
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("satchel-server");
    let proc_ = Proc(child);
    let deadline = started + START_LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("ready file");
            let addr = v["listen"].as_str().expect("listen").parse().expect("addr");
            return (proc_, addr, started.elapsed());
        }
        assert!(Instant::now() < deadline, "replica {name} did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// For each chunk size: publish every bundle through a replica with that
/// `etcd_chunk_bytes` (time of each PUT to its 201), then start a second
/// replica on the same prefix and time it to ready (cold: it loads the
/// current bundle's chunks from etcd). Prints one row per size.
fn chunk_sweep(
    p: &Path,
    list: &str,
    sizes: &[usize],
    bundles: &[Bytes],
    admin: &Arc<rustls::ClientConfig>,
    target: &Target,
    rt: &tokio::runtime::Runtime,
) {
    let url = format!("/v1/bundles/{target}");
    let bytes = bundles.first().map(|b| b.len()).unwrap_or(0);
    // The same empty store, for the start of a replica with nothing to load.
    let empty = format!("/bench-chunks-{}-empty/", std::process::id());
    let (bare, _, _) = start_replica(p, "bare", list, &empty, "");
    drop(bare);
    let (bare, _, empty_start) = start_replica(p, "bare2", list, &empty, "");
    drop(bare);
    println!(
        "bundle of {bytes} bytes; a replica with nothing to load starts in {}",
        ms(empty_start)
    );
    println!("| etcd_chunk_bytes | chunks | publishes | publish p50 | publish worst | cold start, loading it |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &size in sizes {
        let prefix = format!("/bench-chunks-{}-{size}/", std::process::id());
        let extra = format!("etcd_chunk_bytes = {size}");
        let (first, addr, _) = start_replica(p, &format!("w{size}"), list, &prefix, &extra);
        let mut times: Vec<Duration> = rt.block_on(async {
            let mut c = Conn::open(admin.clone(), addr).await;
            let mut out = Vec::new();
            for b in bundles {
                let t0 = Instant::now();
                let (st, _) = c.send(http::Method::PUT, &url, b.clone()).await;
                assert_eq!(st, 201, "publish with chunks of {size}");
                out.push(t0.elapsed());
            }
            out
        });
        times.sort();
        let (second, _, cold) = start_replica(p, &format!("c{size}"), list, &prefix, &extra);
        drop((first, second));
        println!(
            "| {size} | {} | {} | {} | {} | {} |",
            bytes.div_ceil(size.max(1)),
            times.len(),
            ms(pct(&times, 0.5)),
            ms(pct(&times, 1.0)),
            ms(cold)
        );
    }
}
