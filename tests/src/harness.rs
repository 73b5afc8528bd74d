//! Test harness: temp dirs, the workspace's built binaries, child processes
//! with a kill timer (a hung binary cannot hang CI), and reading a bound
//! address from a log line.
//!
//! Binaries are found next to the test executable's `deps/` directory.
//! Cargo builds a package's binary for `cargo test` only when that package
//! has integration tests of its own; every satchel binary's package does, so
//! `cargo test --workspace` has built them all before any test runs (run
//! `cargo build --bins` first when testing this package alone); a binary
//! older than any source of the workspace's binaries is refused, never run.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use satchel_pki::ca::{Ca, Issued};
use satchel_pki::AdminName;

/// How often a waiting loop looks at a child (also the resolution of the
/// wall times the benchmarks take through [`run`]).
const POLL: Duration = Duration::from_millis(1);

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("satchel-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// The path of a workspace binary (`satchel-fetch`, `satchel-server`, …).
/// Panics with a hint when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --bins` (cargo test --workspace does it)",
        p.display()
    );
    assert_fresh(&p);
    p
}

/// The source folders each workspace binary is built from (its package
/// and the workspace crates it depends on).
fn sources_of(binary: &str) -> &'static [&'static str] {
    const LIBS: [&str; 4] = [
        "bundle-tool/names",
        "bundle-tool/format",
        "bundle-tool/overlay",
        "pki",
    ];
    match binary {
        "satchel-fetch" => &["fetcher", LIBS[0], LIBS[1], LIBS[2], LIBS[3]],
        "satchel-server" => &["server", LIBS[0], LIBS[1], LIBS[2], LIBS[3]],
        "satchel-bundle" => &[
            "bundle-tool/cli",
            "contrib",
            LIBS[0],
            LIBS[1],
            LIBS[2],
            LIBS[3],
        ],
        "satchel-pki" => &["pki", LIBS[0]],
        _ => &[],
    }
}

/// Panics when a source file `binary` is built from changed after it was
/// built: `cargo test -p satchel-tests` alone does not rebuild the other
/// packages' binaries, and a test must never run a stale one.
pub fn assert_fresh(binary: &Path) {
    // Checked once per binary and test process: bin() is called per spawn.
    static CHECKED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if checked.iter().any(|c| c == binary) {
        return;
    }
    checked.push(binary.to_path_buf());
    let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() else {
        return;
    };
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut todo: Vec<PathBuf> = sources_of(name).iter().map(|d| root.join(d)).collect();
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            let skip = p
                .file_name()
                .is_some_and(|n| n == "target" || n == "tests" || n == "benches" || n == "fuzz");
            if !skip {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    todo.extend(rd.flatten().map(|e| e.path()));
                }
            }
        } else if let Ok(t) = meta.modified() {
            if newest.as_ref().is_none_or(|(b, _)| t > *b) {
                newest = Some((t, p));
            }
        }
    }
    let built = std::fs::metadata(binary).and_then(|m| m.modified());
    if let (Some((changed, source)), Ok(built)) = (newest, built) {
        assert!(
            changed <= built,
            "{} is older than {}, which changed after it was built: run `cargo build --bins` \
             (README's tests/run and `cargo test --workspace` build them first)",
            binary.display(),
            source.display()
        );
    }
}

/// Finds the first `IP:PORT` in a line (e.g. "listening on 127.0.0.1:4431").
pub fn addr_in(line: &str) -> Option<SocketAddr> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == '"' || c == '=')
        .find_map(|w| w.trim_matches(|c: char| c == '(' || c == ')').parse().ok())
}

/// What a finished process left.
#[derive(Debug)]
pub struct Finished {
    /// Exit status (a killed process has no code).
    pub status: ExitStatus,
    /// Whether the kill timer fired.
    pub killed: bool,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit code, or -1 when killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

fn collect<R: Read + Send + 'static>(r: R, into: Arc<Lines>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut g) = into.lines.lock() {
                g.0.push(line);
            }
            into.changed.notify_all();
        }
        if let Ok(mut g) = into.lines.lock() {
            g.1 = true;
        }
        into.changed.notify_all();
    })
}

/// A running child process, killed when its timer fires or when dropped.
pub struct Proc {
    child: Arc<Mutex<Child>>,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    readers: Vec<std::thread::JoinHandle<()>>,
    cancel: Option<mpsc::Sender<()>>,
    killed: Arc<Mutex<bool>>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proc")
    }
}

impl Proc {
    /// Spawns `cmd` (stdin closed, stdout/stderr captured) and kills it
    /// after `kill_after`.
    pub fn spawn(mut cmd: Command, kill_after: Duration) -> std::io::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let out = Arc::new(Lines::default());
        let err = Arc::new(Lines::default());
        let mut readers = Vec::new();
        if let Some(s) = child.stdout.take() {
            readers.push(collect(s, out.clone()));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(collect(s, err.clone()));
        }
        let child = Arc::new(Mutex::new(child));
        let killed = Arc::new(Mutex::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        {
            let child = child.clone();
            let killed = killed.clone();
            std::thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(kill_after) {
                    if let Ok(mut c) = child.lock() {
                        if let Ok(None) = c.try_wait() {
                            let _ = c.kill();
                            if let Ok(mut k) = killed.lock() {
                                *k = true;
                            }
                        }
                    }
                }
            });
        }
        Ok(Proc {
            child,
            stdout: out,
            stderr: err,
            readers,
            cancel: Some(tx),
            killed,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits until a stderr or stdout line satisfies `pred`; returns it.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        loop {
            for src in [&self.stderr, &self.stdout] {
                if let Ok(g) = src.lines.lock() {
                    if let Some(l) = g.0.iter().find(|l| pred(l)) {
                        return Some(l.clone());
                    }
                }
            }
            let now = Instant::now();
            if now >= end || self.has_exited() {
                // One last look after exit, then give up.
                if now >= end {
                    return None;
                }
                std::thread::sleep(POLL);
                for src in [&self.stderr, &self.stdout] {
                    if let Ok(g) = src.lines.lock() {
                        if let Some(l) = g.0.iter().find(|l| pred(l)) {
                            return Some(l.clone());
                        }
                    }
                }
                return None;
            }
            if let Ok(g) = self.stderr.lines.lock() {
                let _ = self.stderr.changed.wait_timeout(g, POLL);
            }
        }
    }

    /// Waits for a line containing an `IP:PORT` after `marker` and returns
    /// the address.
    pub fn wait_for_addr(&self, marker: &str, within: Duration) -> Option<SocketAddr> {
        let line = self.wait_for_line(|l| l.contains(marker) && addr_in(l).is_some(), within)?;
        addr_in(&line)
    }

    fn has_exited(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| !matches!(c.try_wait(), Ok(None)))
            .unwrap_or(true)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr
            .lines
            .lock()
            .map(|g| g.0.join("\n"))
            .unwrap_or_default()
    }

    /// Waits for the process to exit (the kill timer still applies).
    pub fn wait(mut self) -> Finished {
        let status = loop {
            if let Ok(mut c) = self.child.lock() {
                if let Ok(Some(s)) = c.try_wait() {
                    break s;
                }
            }
            std::thread::sleep(POLL);
        };
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text = |l: &Arc<Lines>| {
            l.lines
                .lock()
                .map(|g| {
                    let mut s = g.0.join("\n");
                    s.push('\n');
                    s
                })
                .unwrap_or_default()
        };
        let killed = self.killed.lock().map(|k| *k).unwrap_or(false);
        Finished {
            status,
            killed,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }

    /// Kills the process now.
    pub fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        if let Ok(mut c) = self.child.lock() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs `cmd` to completion, killing it after `kill_after`.
pub fn run(cmd: Command, kill_after: Duration) -> Finished {
    Proc::spawn(cmd, kill_after)
        .expect("spawn the command")
        .wait()
}

/// The real `satchel-fetch` with `extra` first (a subcommand and its
/// flags, if any), then a node's inputs under their usual names in `dir`:
/// `cmdline`, `image/satchel.toml`, `kmsg`, `no-resolv.conf`, `no-sys`.
pub fn node_fetcher(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin("satchel-fetch"));
    cmd.args(extra)
        .arg("--cmdline")
        .arg(dir.join("cmdline"))
        .arg("--config")
        .arg(dir.join("image/satchel.toml"))
        .arg("--kmsg")
        .arg(dir.join("kmsg"))
        .arg("--resolv-conf")
        .arg(dir.join("no-resolv.conf"))
        .arg("--sysfs")
        .arg(dir.join("no-sys"));
    cmd
}

/// How long a started server gets to write its ready file.
const SERVER_READY_WITHIN: Duration = Duration::from_secs(30);

/// Starts the real `satchel-server` on 127.0.0.1 (API and metrics on port
/// 0) from the files a test wrote into `dir` under their usual names —
/// `ca.pem`, `server.crt`, `server.key`, `crl.pem`, `signer.pub`, the store
/// in `data/` — plus `extra` TOML lines, and waits until it is listening.
/// Returns the API address and the process (killed after `kill_after`).
pub fn start_server(dir: &Path, extra: &str, kill_after: Duration) -> (SocketAddr, Proc) {
    let cfg = dir.join("server.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\
         ca_cert = {:?}\nserver_cert = {:?}\nserver_key = {:?}\ncrl = {:?}\n\
         trusted_signers = [{:?}]\n{extra}",
        dir.join("data"),
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("crl.pem"),
        dir.join("signer.pub"),
    );
    std::fs::write(&cfg, text).expect("write server.toml");
    let ready = dir.join("ready.json");
    let mut cmd = Command::new(bin("satchel-server"));
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready);
    let server = Proc::spawn(cmd, kill_after).expect("spawn satchel-server");
    let end = Instant::now() + SERVER_READY_WITHIN;
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("ready JSON");
            let addr = v["listen"].as_str().expect("listen").parse().expect("addr");
            return (addr, server);
        }
        assert!(
            Instant::now() < end,
            "satchel-server not ready:\n{}",
            server.stderr_so_far()
        );
        std::thread::sleep(POLL);
    }
}

/// A throwaway CA in `dir/ca` (plaintext key) and the files
/// [`start_server`] reads: `ca.pem`, `server.crt`/`server.key` (for
/// `server_name` and 127.0.0.1) and `crl.pem`; plus an admin certificate
/// (`admin/alice`) in `admin.crt`/`admin.tls.key`. Returns the CA, for more
/// issuance and enrollment, and the admin certificate.
pub fn server_pki(dir: &Path, server_name: &str) -> (Ca, Issued) {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    };
    let ca = Ca::init_insecure(&dir.join("ca"), "satchel test CA").expect("test CA");
    write("ca.pem", ca.cert_pem());
    let server = ca
        .issue_server(
            &[server_name.to_string()],
            &[std::net::Ipv4Addr::LOCALHOST.into()],
            None,
        )
        .expect("server certificate");
    write("server.crt", &server.cert_pem);
    write("server.key", server.key_pem.expose());
    let admin = ca
        .issue_admin(AdminName::parse("alice").expect("admin name"), None)
        .expect("admin certificate");
    write("admin.crt", &admin.cert_pem);
    write("admin.tls.key", admin.key_pem.expose());
    write("crl.pem", &ca.crl(None).expect("CRL").pem);
    (ca, admin)
}

/// A TCP port on 127.0.0.1 that refuses every connection for as long as the
/// returned socket lives: the socket is bound but never listens, so a
/// connection gets a reset and no other program can take the port meanwhile
/// (a port bound and dropped could be taken by anyone before the test uses it).
pub fn refused_tcp_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = s.local_addr().expect("addr");
    (s, addr)
}

/// A UDP port on 127.0.0.1 that answers every datagram with "port
/// unreachable" for as long as the returned socket lives: the socket is
/// connected to one peer (itself), so the kernel delivers it nothing from
/// anyone else and refuses them, while the port stays reserved.
pub fn refused_udp_port() -> (std::net::UdpSocket, SocketAddr) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = s.local_addr().expect("addr");
    s.connect(addr).expect("connect to itself");
    (s, addr)
}
