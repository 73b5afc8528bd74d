//! A real etcd cluster for the tests: Debian's `etcd` binary, members on
//! 127.0.0.1, data in a temporary directory, killed on drop.
//!
//! Ports: etcd's peers must know each other's ports before any of them
//! starts, so etcd cannot pick them (port 0), and a port found free by
//! binding and dropping a socket can be taken before etcd binds it. So the
//! ports come from a range below the kernel's ephemeral range (which is
//! where every `127.0.0.1:0` of the other tests lands), handed out by a
//! counter from a per-process offset, so no two clusters of this process
//! share one; and the member that binds a port is the only judge of
//! whether it was free: a member that exits with "address already in use"
//! (another program holds the port) makes the whole cluster start again on
//! the next ports. Nothing is assumed free; a clash costs a retry.
//!
//! Each member runs under a small `sh` that kills it with SIGKILL when the
//! test process's pipe to it closes, so members die with the test process
//! even when it is killed and no destructor runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The etcd binary (Debian's `etcd-server`; `tests/run` installs it).
pub const ETCD: &str = "/usr/bin/etcd";

/// Ports handed out to members: below the ephemeral range (32768 up).
const PORT_LOW: u32 = 20_000;
const PORT_HIGH: u32 = 32_000;

/// Cluster starts tried before a test fails.
const START_TRIES: usize = 6;

/// Longest a cluster may take to elect a leader.
const START_WITHIN: Duration = Duration::from_secs(30);

fn next_ports(n: u32) -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = PORT_HIGH - PORT_LOW;
    let offset = (std::process::id().wrapping_mul(7919)) % span;
    let i = NEXT.fetch_add(n, Ordering::Relaxed);
    let mut p = PORT_LOW + (offset + i) % span;
    if p + n > PORT_HIGH {
        p = PORT_LOW;
    }
    p
}

/// TLS of the members' client port: their certificate and key, the CA
/// clients must be signed by (etcd's `--client-cert-auth`).
#[derive(Clone, Debug)]
pub struct MemberTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One member.
#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
    /// Plain-HTTP `/health` and `/metrics`, whatever the client port speaks.
    metrics: u16,
    data: PathBuf,
    log: PathBuf,
    /// The `sh` guarding the member; its stdin is the pipe that, once
    /// closed, makes it kill the member.
    guard: Option<(Child, ChildStdin)>,
    /// The member's own pid (for SIGKILL).
    pid: Option<i32>,
}

/// A running etcd cluster, killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    tls: Option<MemberTls>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until they have a leader.
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, None)
    }

    /// Like [`EtcdCluster::start`], clients speaking mutual TLS with `tls`.
    pub fn start_with(n: usize, tls: Option<MemberTls>) -> EtcdCluster {
        let mut c = EtcdCluster {
            dir: tempfile::tempdir().expect("etcd tmp"),
            members: Vec::new(),
            tls,
        };
        for attempt in 0..START_TRIES {
            c.kill_all();
            let base = next_ports(3 * n as u32) as u16;
            c.members = (0..n)
                .map(|i| {
                    let name = format!("m{i}-{attempt}");
                    Member {
                        client: base + 3 * i as u16,
                        peer: base + 3 * i as u16 + 1,
                        metrics: base + 3 * i as u16 + 2,
                        data: c.dir.path().join(&name),
                        log: c.dir.path().join(format!("{name}.log")),
                        name,
                        guard: None,
                        pid: None,
                    }
                })
                .collect();
            for i in 0..n {
                c.spawn(i);
            }
            match c.wait_ready() {
                Ok(()) => return c,
                Err(why) if why.contains("address already in use") => {
                    eprintln!("etcd harness: a port was taken ({why}); retrying on others");
                }
                Err(why) => panic!("etcd cluster did not start: {why}"),
            }
        }
        panic!("etcd cluster did not start: every port range tried was in use");
    }

    /// Makes the cluster's folder go when this process does, even when the
    /// cluster is never dropped (one kept in a `static` for a whole test
    /// binary) or the process is killed: a `sh` blocks on a pipe only this
    /// process holds, and removes the folder once the pipe closes. Without
    /// it every such run left its members' data (about 430 MB: three WAL
    /// preallocations) in the temporary directory.
    pub fn remove_data_at_exit(&self) {
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(r#"read _; rm -rf -- "$1""#)
            .arg("sh")
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            // The pipe's end is kept open for the rest of the process on
            // purpose: its closing, at exit, is the signal.
            Ok(mut child) => std::mem::forget(child.stdin.take()),
            Err(e) => eprintln!(
                "etcd harness: cannot arrange the removal of {} at exit: {e}",
                self.dir.path().display()
            ),
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again: a member with data ignores the
    /// `--initial-*` flags and rejoins).
    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let tls = self.tls.clone();
        let m = &mut self.members[i];
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut args: Vec<String> = vec![
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            m.data.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            initial,
            "--initial-cluster-token".into(),
            format!("satchel-test-{}", std::process::id()),
            "--initial-cluster-state".into(),
            "new".into(),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
            // Small, quick elections on loopback.
            "--heartbeat-interval".into(),
            "50".into(),
            "--election-timeout".into(),
            "500".into(),
            "--listen-metrics-urls".into(),
            format!("http://127.0.0.1:{}", m.metrics),
        ];
        if let Some(t) = tls {
            for (flag, path) in [
                ("--cert-file", &t.cert),
                ("--key-file", &t.key),
                ("--trusted-ca-file", &t.ca),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
            args.push("--client-cert-auth".into());
        }
        // The guard: start the member, say its pid, and kill it once
        // stdin (the test process's pipe) closes.
        let script = r#"exec 3<&0
"$ETCD_BIN" "$@" >>"$ETCD_LOG" 2>&1 </dev/null &
pid=$!
echo "$pid"
(read _ <&3; kill -9 "$pid" 2>/dev/null) &
wait "$pid"
"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(&args)
            .env("ETCD_BIN", ETCD)
            .env("ETCD_LOG", &m.log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd (is etcd-server installed? tests/run installs it)");
        let stdin = child.stdin.take().expect("stdin");
        let mut out = child.stdout.take().expect("stdout");
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
            line.push(b[0]);
        }
        m.pid = String::from_utf8_lossy(&line).trim().parse().ok();
        m.guard = Some((child, stdin));
    }

    /// Waits until every running member answers `/health` with a leader.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            let mut all = true;
            for m in &mut self.members {
                if let Some((child, _)) = &mut m.guard {
                    if let Ok(Some(_)) = child.try_wait() {
                        let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                        return Err(format!("{} exited: {}", m.name, tail(&log)));
                    }
                    all &= healthy(m.metrics);
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("no leader within the time allowed".into());
            }
            std::thread::sleep(crate::wait::POLL);
        }
    }

    /// Client URLs, comma-separated (the form of `--etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(pid) = m.pid.take() {
            use rustix::process::{kill_process, Pid, Signal};
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        if let Some((mut child, stdin)) = m.guard.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// SIGKILLs every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// How many members the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether member `i` runs (it was not killed, or was restarted).
    pub fn is_running(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.guard.is_some())
    }

    /// Starts member `i` again on its ports and data, if it was killed, and
    /// waits until the cluster is healthy again.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].guard.is_none() {
            self.spawn(i);
        }
        if let Err(why) = self.wait_ready() {
            panic!("etcd member {i} did not come back: {why}");
        }
    }

    /// Starts every stopped member again on its ports and data, and waits
    /// for a leader.
    pub fn restart_stopped(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].guard.is_none() {
                self.spawn(i);
            }
        }
        if let Err(why) = self.wait_ready() {
            panic!("etcd cluster did not come back: {why}");
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..].join("\n")
}

/// Whether the member whose metrics listener is `port` reports a healthy
/// cluster (a leader).
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
