//! Test harness: a throwaway PKI (the PKI library's CA), signed bundles (the
//! bundle library), the real `satchel-server` binary on 127.0.0.1 port 0
//! (a `satchel-test-support` process: kill timer, killed on drop, logs in
//! files), and a small mutual-TLS HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, SigningKey, SiteName, Target};
use satchel_pki::ca::{Ca, Reason};
use satchel_pki::AdminName;
use time::OffsetDateTime;

/// Longest a server process may live in a test.
pub const KILL_AFTER: Duration = Duration::from_secs(120);

pub use satchel_test_support::{eventually, output, workspace_bin, Proc, Signal};

pub fn mac(n: u8) -> Mac {
    Mac::from_octets([0x02, 0, 0, 0, 0, n])
}

pub fn site(s: &str) -> SiteName {
    SiteName::parse(s).expect("site")
}

/// A client credential on disk.
#[derive(Clone, Debug)]
pub struct Cred {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
}

impl Cred {
    pub fn pem(&self) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(&self.cert).expect("cert"),
            std::fs::read(&self.key).expect("key"),
        )
    }
}

/// Everything a test needs on disk.
pub struct World {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_pem: PathBuf,
    pub crl: PathBuf,
    pub server: Cred,
    pub admin: Cred,
    pub signer: SigningKey,
    pub signer_pub: PathBuf,
    pub node_ids: Identities,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = Ca::init_insecure(&dir.path().join("ca"), "satchel test CA").expect("ca");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.cert_pem()).expect("ca.pem");
        let issued = ca
            .issue_server(
                &["localhost".to_string()],
                &["127.0.0.1".parse().expect("ip")],
                None,
            )
            .expect("server cert");
        let server = write_cred(dir.path(), "server", &issued);
        let admin = ca
            .issue_admin(AdminName::parse("alice").expect("admin"), None)
            .expect("admin");
        let admin = write_cred(dir.path(), "admin", &admin);
        let signer = SigningKey::generate();
        let signer_pub = dir.path().join("signer.pub.pem");
        std::fs::write(&signer_pub, signer.verifying_key().to_pem()).expect("pub");
        let mut w = World {
            crl: dir.path().join("crl.pem"),
            dir,
            ca,
            ca_pem,
            server,
            admin,
            signer,
            signer_pub,
            node_ids: Identities::generate(),
        };
        w.write_crl();
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Signs a fresh CRL of every revocation and writes it atomically.
    pub fn write_crl(&mut self) {
        let crl = self.ca.crl(None).expect("crl");
        let tmp = self.crl.with_extension("tmp");
        std::fs::write(&tmp, crl.pem).expect("crl tmp");
        std::fs::rename(&tmp, &self.crl).expect("crl rename");
    }

    pub fn revoke(&mut self, cred: &Cred) {
        self.ca
            .revoke(&cred.serial, Reason::KeyCompromise)
            .expect("revoke");
        self.write_crl();
    }

    pub fn host(&self, n: u8, site: Option<&str>) -> Cred {
        let issued = self
            .ca
            .issue_host(mac(n), site.map(self::site), None)
            .expect("host cert");
        let name = format!("host{n}-{}", site.unwrap_or("nosite"));
        write_cred(self.path(), &name, &issued)
    }

    pub fn site_cert(&self, s: &str) -> Cred {
        let issued = self.ca.issue_site(site(s), None).expect("site cert");
        write_cred(self.path(), &format!("site-{s}"), &issued)
    }

    /// A signed bundle for `target` (host bundles may name `site`).
    pub fn bundle(&self, target: &Target, site: Option<&str>, serial: u64) -> Vec<u8> {
        self.bundle_sized(target, site, serial, 64)
    }

    pub fn bundle_sized(
        &self,
        target: &Target,
        site: Option<&str>,
        serial: u64,
        payload_bytes: usize,
    ) -> Vec<u8> {
        let src = tempfile::tempdir_in(self.path()).expect("src");
        std::fs::create_dir_all(src.path().join("etc")).expect("etc");
        // Incompressible content so the bundle really has the asked size.
        let mut content = Vec::with_capacity(payload_bytes);
        let mut x: u64 = serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        while content.len() < payload_bytes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            content.extend_from_slice(&x.to_le_bytes());
        }
        content.truncate(payload_bytes);
        std::fs::write(src.path().join("etc/hostname"), &content).expect("file");
        let out = src.path().join("out.bundle");
        let now = OffsetDateTime::now_utc();
        let params = SealParams {
            target: target.clone(),
            site: site.map(self::site),
            serial,
            created: now,
            expires: now + time::Duration::days(7),
            policy: Default::default(),
            recipients: self.node_ids.recipients(),
        };
        seal_to_file(
            &params,
            Source::Dir {
                path: &src.path().join("etc"),
                keep_owners: false,
            },
            &self.signer,
            &out,
            &AtomicU64::new(0),
        )
        .expect("seal");
        std::fs::read(&out).expect("bundle")
    }

    /// The server config file for this world, with `extra` TOML lines.
    /// The store is the one the run asks for ([`crate::etcd::etcd_mode`]):
    /// sled in `data`, or the shared etcd cluster below a prefix named
    /// after `data`, so a restarted server finds its store again.
    pub fn config(&self, data: &Path, extra: &str) -> PathBuf {
        let store = if crate::etcd::etcd_mode() {
            etcd_store_lines(&crate::etcd::shared().endpoints(), data)
        } else {
            String::new()
        };
        self.config_with_store(data, &format!("{store}{extra}"))
    }

    /// Like [`World::config`], with the store chosen by `extra` alone.
    pub fn config_with_store(&self, data: &Path, extra: &str) -> PathBuf {
        let p = self
            .path()
            .join(format!("server-{}.toml", rand::random::<u32>()));
        let text = format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             data_dir = {data:?}\nca_cert = {ca:?}\nserver_cert = {cert:?}\n\
             server_key = {key:?}\ncrl = {crl:?}\ntrusted_signers = [{signer:?}]\n\
             crl_poll_secs = 1\n{extra}\n",
            ca = self.ca_pem,
            cert = self.server.cert,
            key = self.server.key,
            crl = self.crl,
            signer = self.signer_pub,
        );
        std::fs::write(&p, text).expect("config");
        p
    }
}

/// The config lines of an etcd store on `endpoints`, below a prefix of its own
/// derived from `name` (a path unique to the test).
pub fn etcd_store_lines(endpoints: &str, name: &Path) -> String {
    use sha2::Digest;
    let tag = hex::encode(&sha2::Sha256::digest(name.display().to_string().as_bytes())[..8]);
    let list: Vec<String> = endpoints.split(',').map(|e| format!("{e:?}")).collect();
    format!(
        "store = \"etcd\"\netcd_endpoints = [{}]\netcd_prefix = \"/satchel-test/{tag}/\"\n",
        list.join(", ")
    )
}

pub fn write_cred(dir: &Path, name: &str, issued: &satchel_pki::ca::Issued) -> Cred {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &issued.cert_pem).expect("cert");
    std::fs::write(&key, issued.key_pem.expose()).expect("key");
    Cred {
        cert,
        key,
        serial: issued.serial_hex.clone(),
    }
}

/// A running `satchel-server`, killed on drop or after [`KILL_AFTER`].
pub struct Server {
    proc: Proc,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub log: PathBuf,
    pub out: PathBuf,
}

/// Longest a started server may take to write its ready file.
const READY_WITHIN: Duration = Duration::from_secs(30);

impl Server {
    pub fn start(config: &Path) -> Server {
        Self::start_args(config, &[])
    }

    pub fn start_args(config: &Path, args: &[&str]) -> Server {
        let dir = config.parent().expect("dir");
        let mut all: Vec<std::ffi::OsString> = vec!["--config".into(), config.into()];
        all.extend(args.iter().map(|a| a.into()));
        Self::launch(dir, all)
    }

    /// Starts the binary with `args` plus `--ready-file`; logs and the ready
    /// file go to `dir`.
    pub fn launch(dir: &Path, args: Vec<std::ffi::OsString>) -> Server {
        let ready = dir.join(format!("ready-{}.json", rand::random::<u32>()));
        let log = dir.join(format!("server-{}.log", rand::random::<u32>()));
        let out = dir.join(format!("server-{}.out", rand::random::<u32>()));
        let mut cmd = Command::new(workspace_bin("satchel-server"));
        cmd.args(args)
            .arg("--ready-file")
            .arg(&ready)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn_logging(cmd, KILL_AFTER, &out, &log).expect("spawn satchel-server");
        let text = proc
            .wait_for_file(&ready, READY_WITHIN)
            .unwrap_or_else(|e| panic!("satchel-server did not become ready: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("ready json");
        let addr = |k: &str| -> SocketAddr {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} in the ready file"))
                .parse()
                .expect("addr")
        };
        Server {
            addr: addr("listen"),
            metrics: addr("metrics"),
            proc,
            log,
            out,
        }
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let sig = match sig {
            "TERM" => Signal::TERM,
            "HUP" => Signal::HUP,
            "INT" => Signal::INT,
            other => panic!("signal {other} not used by the tests"),
        };
        self.proc.signal(sig);
    }

    /// SIGKILL and reap.
    pub fn kill9(&self) {
        self.proc.kill();
    }

    /// Waits for the process to exit on its own; its exit code (None when
    /// it did not exit within `within`, or was killed by a signal).
    pub fn wait_exit(&self, within: Duration) -> Option<i32> {
        self.proc.wait_exit(within).and_then(|s| s.code())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of the unlabelled metric `name`, if the server shows it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
    }

    /// The Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let (status, _, body) = plain_request(self.metrics, "GET", "/metrics", Bytes::new()).await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).expect("utf8")
    }
}

/// A response: status, headers, body.
pub type Reply = (u16, http::HeaderMap, Bytes);

/// A mutual-TLS client for one identity (or none).
#[derive(Clone)]
pub struct Client {
    connector: tokio_rustls::TlsConnector,
    pub addr: SocketAddr,
    /// Loopback source address to connect from (rate limits are per source).
    source: Option<std::net::IpAddr>,
}

impl Client {
    pub fn new(world: &World, addr: SocketAddr, cred: Option<&Cred>) -> Client {
        let ca = std::fs::read(&world.ca_pem).expect("ca");
        let pems = cred.map(|c| c.pem());
        let cfg = satchel_pki::tls::client_config(
            &ca,
            pems.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
        .expect("client config");
        Client {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            addr,
            source: None,
        }
    }

    /// A client connecting from 127.0.0.`n`.
    pub fn with_source(world: &World, addr: SocketAddr, cred: Option<&Cred>, n: u8) -> Client {
        let mut c = Client::new(world, addr, cred);
        c.source = Some(std::net::IpAddr::from([127, 0, 0, n]));
        c
    }

    pub async fn tcp(&self) -> std::io::Result<tokio::net::TcpStream> {
        match self.source {
            None => tokio::net::TcpStream::connect(self.addr).await,
            Some(ip) => {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(self.addr).await
            }
        }
    }

    /// A TLS connection, for raw HTTP tests.
    pub async fn raw_tls(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
        let tcp = self.tcp().await.map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))
    }

    /// One request on a new connection. `Err` when TLS or HTTP fails.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let fut = async {
            let tls = self.raw_tls().await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req
                .body(Full::new(body.into()))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, headers, body))
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .map_err(|_| "timeout".to_string())?
    }

    pub async fn request(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Reply {
        self.try_request(method, path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn status(&self, method: &str, path: &str, body: impl Into<Bytes>) -> u16 {
        self.request(method, path, body).await.0
    }

    pub async fn json(&self, method: &str, path: &str) -> serde_json::Value {
        let (s, _, b) = self.request(method, path, Bytes::new()).await;
        assert_eq!(s, 200, "{method} {path}: {}", String::from_utf8_lossy(&b));
        serde_json::from_slice(&b).expect("json")
    }
}

/// A plain HTTP/1.1 request (metrics listener).
pub async fn plain_request(addr: SocketAddr, method: &str, path: &str, body: Bytes) -> Reply {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(body))
        .expect("req");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// Error code of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["error"]["code"].as_str().unwrap_or("").to_string()
}
