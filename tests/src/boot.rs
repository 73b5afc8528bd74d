//! What the QEMU boot tests share (`tests/tests/boot.rs`, the busybox
//! initramfs; `tests/tests/boot_distro.rs`, the real Debian root): tool
//! checks, commands with a kill timer, the static fetcher's build, the
//! satchel CLIs, the guest's loopback-only network, and [`Fleet`] — the
//! host side of a real boot (a fresh PKI, the node's enrollment, bundles
//! made and published with the real CLIs, `satchel-server` on 127.0.0.1).
//!
//! It does not boot anything: each test file drives QEMU its own way.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::Proc;

/// The SRV domain the guest looks up.
pub const DOMAIN: &str = "boot.test";
/// The live server's SRV target; its certificate names it.
pub const SERVER_NAME: &str = "cfg.boot.test";
/// A higher-priority SRV target where nothing answers.
pub const DEAD_NAME: &str = "dead.boot.test";
/// Guest-side address QEMU forwards to the server's port on host loopback.
pub const GUEST_SERVER: &str = "10.0.2.100:443";
/// Guest-side address QEMU forwards to the DNS server's port on host loopback.
pub const GUEST_DNS: &str = "10.0.2.101:53";
/// Guest-side address of the dead target (forwarded to a closed port).
pub const GUEST_DEAD: &str = "10.0.2.102:443";
/// The guest's site.
pub const SITE: &str = "dc1";
/// The guest's MAC, as QEMU takes it, in canonical form, and in `BOOTIF=` form.
pub const GUEST_MAC: &str = "52:54:00:5a:7c:01";
pub const GUEST_MAC_CANON: &str = "52-54-00-5a-7c-01";
pub const GUEST_BOOTIF: &str = "01-52-54-00-5a-7c-01";
/// Hard limit on one run of a satchel CLI.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Hard limit on the static fetcher's build (a cold build of its
/// dependencies for the explicit target).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Time the server gets to write its ready file.
const SERVER_START: Duration = Duration::from_secs(30);
/// Longest a fleet's server may live (its kill timer): past every boot
/// test's own QEMU limits.
const SERVER_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The static fetcher's build flags: static glibc, no debug info (keeps the
/// initrd small). The dev profile, so no LTO.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C strip=debuginfo";
/// The target triple the static fetcher is built for (explicit, so the flags
/// do not reach build scripts and proc macros).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

// --- paths and tools ---------------------------------------------------------

/// The workspace's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/boot/`, the boot tests' scripts.
pub fn boot_dir() -> PathBuf {
    repo().join("tests/boot")
}

/// Fails with the Debian package to install when a tool is missing.
pub fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: the boot tests need the Debian package {package} \
         (tests/run installs it)"
    );
}

/// Runs `cmd` to its end, failing the test with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for `child` up to `limit`; kills it and returns `None` past that.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child (QEMU, whose console and stdin the boot tests wire
/// themselves) if the test panics first.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace's target directory, from this test executable's path
/// (`<target>/debug/deps/boot-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("<target>/debug/deps/exe")
        .to_path_buf()
}

/// A binary of the workspace, built for the host in this test's profile
/// (built first when missing or stale, see `satchel_test_support::bin`).
pub fn host_bin(name: &str) -> PathBuf {
    crate::harness::bin(name)
}

/// Builds `satchel-fetch` statically for the guest (once per test process;
/// cargo makes later builds no-ops).
pub fn static_fetcher() -> &'static Path {
    static FETCHER: OnceLock<PathBuf> = OnceLock::new();
    FETCHER.get_or_init(|| {
        let t = Instant::now();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(repo())
            .args([
                "build",
                "--locked",
                "-p",
                "satchel-fetch",
                "--target",
                STATIC_TARGET,
            ])
            .env("RUSTFLAGS", STATIC_RUSTFLAGS)
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        // Files, not pipes: the kill timer must apply even if cargo hangs.
        let logs = tempfile::tempdir().expect("temp dir");
        let (out, log) = (logs.path().join("out"), logs.path().join("err"));
        let f = Proc::spawn_logging(cargo, BUILD_TIMEOUT, &out, &log)
            .expect("spawn cargo")
            .wait();
        assert!(
            !f.killed && f.code() == 0,
            "static build of satchel-fetch failed or ran past {BUILD_TIMEOUT:?}:\n{}",
            f.stderr
        );
        let bin = target_dir().join(STATIC_TARGET).join("debug/satchel-fetch");
        let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
        let text = String::from_utf8_lossy(&ldd.stdout).into_owned()
            + &String::from_utf8_lossy(&ldd.stderr);
        assert!(
            !text.contains("=>"),
            "{} is dynamically linked:\n{text}",
            bin.display()
        );
        eprintln!(
            "static satchel-fetch ready in {:.1?} ({} bytes)",
            t.elapsed(),
            std::fs::metadata(&bin).expect("stat").len()
        );
        bin
    })
}

/// Runs a satchel CLI in `dir`, failing the test with its output if it fails.
pub fn cli(bin: &str, args: &[&str], dir: &Path) -> String {
    let mut cmd = Command::new(host_bin(bin));
    cmd.current_dir(dir).args(args);
    let f = Proc::spawn_logging(cmd, CLI_TIMEOUT, &dir.join(".out"), &dir.join(".err"))
        .expect("spawn")
        .wait();
    assert!(
        !f.killed && f.code() == 0,
        "{bin} {args:?} failed:\n{}\n{}",
        f.stdout,
        f.stderr
    );
    f.stdout
}

/// A file of a test tree: path, contents, mode.
pub type FileSpec = (&'static str, &'static [u8], u32);

/// Writes `files` under `root`, making parent directories.
pub fn write_tree(root: &Path, files: &[FileSpec]) {
    for (p, data, mode) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, data).expect("write");
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
}

// --- the guest's network -------------------------------------------------------

/// One `guestfwd`: guest TCP connections to `guest` (IP:PORT on QEMU's
/// user network) become new connections to 127.0.0.1:`host_port`.
#[derive(Clone, Debug)]
pub struct Forward {
    pub guest: &'static str,
    pub host_port: u16,
}

/// QEMU's `-netdev` value: user networking with `restrict=on` (no host
/// network at all) and one forward per entry of `forwards`.
pub fn netdev(forwards: &[Forward]) -> String {
    let mut netdev = "user,id=n0,restrict=on,ipv6=off".to_string();
    // A fresh relay per guest connection. QEMU hands the relay's stderr to
    // the guest too, so nc's "connection refused" is silenced: a forward to
    // a closed port then looks to the guest like a peer that hangs up.
    for f in forwards {
        netdev.push_str(&format!(
            ",guestfwd=tcp:{}-cmd:sh -c 'exec busybox nc 127.0.0.1 {} 2>/dev/null'",
            f.guest, f.host_port
        ));
    }
    netdev
}

/// The DNS server and the closed port a boot needs, with the forwards
/// that reach them and the server; they live until this is dropped.
pub struct GuestServices {
    pub forwards: Vec<Forward>,
    _dns: crate::dns::DnsServer,
    _reserved: tokio::net::TcpSocket,
}

impl std::fmt::Debug for GuestServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestServices")
            .field("forwards", &self.forwards)
            .finish_non_exhaustive()
    }
}

/// Starts the DNS server the guest asks (over TCP) for `_satchel._tcp` of
/// [`DOMAIN`]: the dead target first (priority 10), the live server (on
/// `server_port`) second (20); reserves a port that refuses connections for
/// the dead target.
pub fn guest_services(server_port: u16) -> GuestServices {
    use crate::dns::{DnsRecord, DnsServer};
    let srv = format!("_satchel._tcp.{DOMAIN}");
    let (dns_addr, dns) = DnsServer::start(vec![
        DnsRecord::srv(&srv, 10, 100, 443, DEAD_NAME),
        DnsRecord::srv(&srv, 20, 100, 443, SERVER_NAME),
        DnsRecord::a(DEAD_NAME, [10, 0, 2, 102]),
        DnsRecord::a(SERVER_NAME, [10, 0, 2, 100]),
    ])
    .expect("start DNS");
    let (reserved, dead) = crate::harness::refused_tcp_port();
    let forwards = vec![
        Forward {
            guest: GUEST_SERVER,
            host_port: server_port,
        },
        Forward {
            guest: GUEST_DNS,
            host_port: dns_addr.port(),
        },
        Forward {
            guest: GUEST_DEAD,
            host_port: dead.port(),
        },
    ];
    GuestServices {
        forwards,
        _dns: dns,
        _reserved: reserved,
    }
}

/// The kernel parameters that point the fetcher at [`guest_services`].
pub fn satchel_params(required: &str) -> Vec<String> {
    vec![
        format!("satchel.domain={DOMAIN}"),
        "satchel.dns=10.0.2.101".into(),
        "satchel.dns_tcp=1".into(),
        format!("satchel.required={required}"),
    ]
}

// --- the host side of a real boot ----------------------------------------------

/// Which boot image the node gets.
#[derive(Clone, Copy, Debug)]
pub enum Image {
    /// `enroll --mac … --site …`: the node's own image; site and host bundles.
    Host,
    /// `enroll --site …`: one image for the whole site, no MAC in it; only
    /// the site bundle.
    Site,
}

/// A running `satchel-server` on 127.0.0.1.
struct Server {
    _proc: Proc,
    port: u16,
}

/// The host side of a real boot, in one temp dir: a fresh PKI (`pki/`,
/// `server.*`, `admin.*`, `crl.pem`), the admin signing key `alice`, the
/// node's enrollment (`enroll/`), and `satchel-server` once started.
/// Bundles are made from `site-tree/` and `host-tree/` in that dir.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    server: Option<Server>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("dir", &self.dir.path())
            .field("port", &self.server.as_ref().map(|s| s.port))
            .finish()
    }
}

impl Fleet {
    /// The PKI, the signing key and the node's enrollment for `image`.
    pub fn new(image: Image) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let pki = |args: &[&str]| {
            let mut v = vec!["--dir", "pki"];
            v.extend_from_slice(args);
            cli("satchel-pki", &v, d)
        };
        pki(&[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "boot test CA",
            "--insecure-plaintext-key",
        ]);
        pki(&["issue", "server", "--dns", SERVER_NAME, "--out", "server"]);
        pki(&["issue", "admin", "--name", "alice", "--out", "admin"]);
        pki(&["crl", "--out", "crl.pem"]);
        cli(
            "satchel-bundle",
            &["keygen", "signing", "--out", "alice"],
            d,
        );
        let scope: &[&str] = match image {
            Image::Host => &["--mac", GUEST_MAC, "--site", SITE],
            Image::Site => &["--site", SITE],
        };
        let mut enroll = vec!["enroll"];
        enroll.extend_from_slice(scope);
        pki(&[
            &enroll[..],
            &[
                "--signer",
                "alice.pub",
                "--domain",
                DOMAIN,
                "--out",
                "enroll",
            ],
        ]
        .concat());
        Fleet { dir, server: None }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn s(&self, p: &str) -> String {
        self.path(p).display().to_string()
    }

    /// The age recipient `enroll` wrote for `target` (`site/dc1`, `host/<mac>`).
    pub fn recipient(&self, target: &str) -> String {
        let text = std::fs::read_to_string(self.path("enroll/recipients.txt")).expect("recipients");
        text.lines()
            .find_map(|l| l.strip_prefix(target).map(|r| r.trim().to_string()))
            .unwrap_or_else(|| panic!("no recipient for {target} in:\n{text}"))
    }

    /// `satchel-bundle create` of `<which>-tree/` into `<which>.bundle`, for
    /// the site or the guest's host, signed by `signer`, with `extra`
    /// arguments.
    pub fn make_bundle_with(&self, which: &str, serial: u64, signer: &str, extra: &[&str]) {
        let (target_args, recipient) = match which {
            "site" => (
                vec!["--site", SITE],
                self.recipient(&format!("site/{SITE}")),
            ),
            _ => (
                vec!["--mac", GUEST_MAC, "--site", SITE],
                self.recipient(&format!("host/{GUEST_MAC_CANON}")),
            ),
        };
        let serial = serial.to_string();
        let from = format!("{which}-tree");
        let out = format!("{which}.bundle");
        let key = format!("{signer}.key");
        let mut args = vec!["create"];
        args.extend(target_args);
        args.extend([
            "--serial",
            &serial,
            "--expires",
            "1d",
            "--sign-key",
            &key,
            "--recipient",
            &recipient,
            "--from-dir",
            &from,
            "-o",
            &out,
        ]);
        args.extend_from_slice(extra);
        cli("satchel-bundle", &args, self.dir.path());
    }

    /// (Re)starts the server trusting `signers`, on a new port, same store.
    pub fn start_server(&mut self, signers: &[&str]) {
        self.server = None;
        let ready = self.path("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(host_bin("satchel-server"));
        cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--data-dir", &self.s("store")])
            .args(["--ca-cert", &self.s("pki/ca.crt")])
            .args(["--server-cert", &self.s("server.crt")])
            .args(["--server-key", &self.s("server.key")])
            .args(["--crl", &self.s("crl.pem")])
            .args(
                signers
                    .iter()
                    .flat_map(|s| ["--trusted-signers".to_string(), self.s(s)]),
            )
            .args(["--ready-file", &self.s("ready.json")]);
        let proc = Proc::spawn_logging(
            cmd,
            SERVER_LIFETIME,
            &self.path("server.out"),
            &self.path("server.err"),
        )
        .expect("spawn satchel-server");
        let text = proc
            .wait_for_file(&ready, SERVER_START)
            .unwrap_or_else(|e| panic!("satchel-server did not start: {e}"));
        let port = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["listen"].as_str()?.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
            .unwrap_or_else(|| panic!("satchel-server's ready file: {text}"));
        self.server = Some(Server { _proc: proc, port });
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().expect("server running").port
    }

    /// The server's log so far, for a failed assertion.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.err")).unwrap_or_default()
    }

    /// `GET path` with the admin certificate (curl: no satchel command reads
    /// the inventory).
    pub fn admin_get(&self, path: &str) -> String {
        need("curl", "curl");
        run(Command::new("curl")
            .args(["-sS", "--fail-with-body", "--max-time", "30"])
            .args(["--cacert", &self.s("pki/ca.crt")])
            .args([
                "--cert",
                &self.s("admin.crt"),
                "--key",
                &self.s("admin.key"),
            ])
            .arg("--resolve")
            .arg(format!("{SERVER_NAME}:{}:127.0.0.1", self.port()))
            .arg(format!("https://{SERVER_NAME}:{}{path}", self.port())))
    }

    /// Publishes `site.bundle` or `host.bundle` with `satchel-bundle publish`.
    pub fn publish(&self, which: &str) {
        let server = format!("https://127.0.0.1:{}", self.port());
        let bundle = format!("{which}.bundle");
        cli(
            "satchel-bundle",
            &[
                "publish",
                &bundle,
                "--server",
                &server,
                "--server-name",
                SERVER_NAME,
                "--cert",
                "admin.crt",
                "--key",
                "admin.key",
                "--ca",
                "pki/ca.crt",
            ],
            self.dir.path(),
        );
    }

    /// The guest's inventory record, if the server has one.
    pub fn node_record(&self) -> Option<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&self.admin_get("/v1/nodes")).expect("nodes JSON");
        v["nodes"]
            .as_array()
            .expect("nodes array")
            .iter()
            .find(|n| n["mac"] == GUEST_MAC_CANON)
            .cloned()
    }

    /// Re-signs the host bundle with a new key `rogue` that the server
    /// trusts (it is restarted trusting it) but the image does not, and
    /// publishes it as serial 2.
    pub fn publish_rogue_host_bundle(&mut self) {
        cli(
            "satchel-bundle",
            &["keygen", "signing", "--out", "rogue"],
            self.dir.path(),
        );
        self.make_bundle_with("host", 2, "rogue", &[]);
        self.start_server(&["alice.pub", "rogue.pub"]);
        self.publish("host");
    }
}
