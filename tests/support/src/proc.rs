//! Child processes for tests: a kill timer (a hung child cannot hang CI),
//! killed on drop, signals, exit waited for as an event, output captured
//! (or written to files), and the address a child says it bound.
//!
//! A reaper thread per child waits for its exit with `waitid(WNOWAIT)`,
//! which leaves the child a zombie until the reaper takes the lock and reaps
//! it: so a kill (from the timer, a test or drop), made under that lock
//! while no exit is recorded, can never reach another process that reused
//! the pid.

use std::borrow::BorrowMut;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;

/// How often a wait on a child's log file (rather than its pipes, which
/// notify) looks at the file again.
const FILE_POLL: Duration = Duration::from_millis(10);

/// Longest drop waits for a killed child to be reaped.
const REAP_WITHIN: Duration = Duration::from_secs(10);

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
    /// Everything on stdout (invalid UTF-8 replaced).
    pub stdout: String,
    /// Everything on stderr (invalid UTF-8 replaced).
    pub stderr: String,
}

impl Finished {
    /// The exit code, or -1 when killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// What the child's threads and the test share, under one lock.
struct State {
    child: Child,
    /// Set by the reaper once the child is reaped.
    status: Option<ExitStatus>,
    /// Whether the kill timer killed it.
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Pipes at end of file (both `true` for a child logging to files).
    stdout_eof: bool,
    stderr_eof: bool,
}

/// The shared state and the condition variable every change (output,
/// end of file, exit) is announced on, so waits wake on the event.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a child's output goes.
enum Sinks {
    /// Captured in memory.
    Pipes,
    /// Captured in memory, and its stdin a pipe the caller writes.
    PipesAndStdin,
    /// Written to these files (stdout, stderr) by the child itself.
    Files(PathBuf, PathBuf),
}

/// A running child process, killed when its timer fires or when dropped.
pub struct Proc {
    shared: Arc<Shared>,
    pid: u32,
    files: Option<(PathBuf, PathBuf)>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Dropping (or sending on) it stops the kill timer.
    cancel: Option<mpsc::Sender<()>>,
    /// The stdin pipe until [`Proc::spawn_with_stdin`] hands it out.
    stdin: Option<ChildStdin>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc").field("pid", &self.pid).finish()
    }
}

impl Proc {
    /// Spawns `cmd` (stdin closed, stdout and stderr captured) and kills it
    /// after `kill_after`.
    pub fn spawn(cmd: impl BorrowMut<Command>, kill_after: Duration) -> std::io::Result<Proc> {
        Self::start(cmd, kill_after, Sinks::Pipes)
    }

    /// Like [`Proc::spawn`], the child writing stdout and stderr straight
    /// to these files (created), where a test reads them as soon as they
    /// are written.
    pub fn spawn_logging(
        cmd: impl BorrowMut<Command>,
        kill_after: Duration,
        stdout: &Path,
        stderr: &Path,
    ) -> std::io::Result<Proc> {
        Self::start(
            cmd,
            kill_after,
            Sinks::Files(stdout.to_path_buf(), stderr.to_path_buf()),
        )
    }

    /// Like [`Proc::spawn`], with the child's stdin a pipe: returns it, for
    /// the test to type into (close it by dropping it).
    pub fn spawn_with_stdin(
        cmd: impl BorrowMut<Command>,
        kill_after: Duration,
    ) -> std::io::Result<(Proc, ChildStdin)> {
        let mut p = Self::start(cmd, kill_after, Sinks::PipesAndStdin)?;
        let stdin = p
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
        Ok((p, stdin))
    }

    fn start(
        mut cmd: impl BorrowMut<Command>,
        kill_after: Duration,
        sinks: Sinks,
    ) -> std::io::Result<Proc> {
        let cmd = cmd.borrow_mut();
        cmd.stdin(match sinks {
            Sinks::PipesAndStdin => Stdio::piped(),
            _ => Stdio::null(),
        });
        let files = match sinks {
            Sinks::Pipes | Sinks::PipesAndStdin => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                None
            }
            Sinks::Files(out, err) => {
                cmd.stdout(std::fs::File::create(&out)?)
                    .stderr(std::fs::File::create(&err)?);
                Some((out, err))
            }
        };
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                child,
                status: None,
                timed_out: false,
                stdout: Vec::new(),
                stderr: Vec::new(),
                stdout_eof: out.is_none(),
                stderr_eof: err.is_none(),
            }),
            changed: Condvar::new(),
        });
        let mut readers = Vec::new();
        if let Some(s) = out {
            readers.push(collect(s, shared.clone(), false));
        }
        if let Some(s) = err {
            readers.push(collect(s, shared.clone(), true));
        }
        reaper(pid, shared.clone());
        let (tx, rx) = mpsc::channel::<()>();
        {
            let shared = shared.clone();
            std::thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(kill_after) {
                    let mut st = shared.lock();
                    if st.status.is_none() {
                        let _ = st.child.kill();
                        st.timed_out = true;
                    }
                }
            });
        }
        Ok(Proc {
            shared,
            pid,
            files,
            readers,
            cancel: Some(tx),
            stdin,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Its exit status, once it exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.lock().status
    }

    /// Sends `sig`, unless it already exited.
    pub fn signal(&self, sig: Signal) {
        let st = self.shared.lock();
        if st.status.is_some() {
            return;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// SIGKILLs it now and waits until it is reaped.
    pub fn kill(&self) {
        {
            let mut st = self.shared.lock();
            if st.status.is_none() {
                let _ = st.child.kill();
            }
        }
        self.wait_exit(REAP_WITHIN);
    }

    /// Waits up to `within` for it to exit; its status, if it did.
    pub fn wait_exit(&self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        let mut st = self.shared.lock();
        loop {
            if let Some(s) = st.status {
                return Some(s);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stdout and stderr so far, as text.
    fn texts(&self, st: &State) -> (String, String) {
        match &self.files {
            None => (
                String::from_utf8_lossy(&st.stdout).into_owned(),
                String::from_utf8_lossy(&st.stderr).into_owned(),
            ),
            Some((out, err)) => (
                std::fs::read_to_string(out).unwrap_or_default(),
                std::fs::read_to_string(err).unwrap_or_default(),
            ),
        }
    }

    /// Waits until a stderr or stdout line satisfies `pred` and returns it;
    /// `None` once `within` passed or the process exited without one.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        let mut st = self.shared.lock();
        loop {
            let (out, err) = self.texts(&st);
            if let Some(l) = err.lines().chain(out.lines()).find(|l| pred(l)) {
                return Some(l.to_string());
            }
            // All output is in once the pipes closed (or, for files, once
            // the process exited): nothing more will come.
            let done = match self.files {
                None => st.stdout_eof && st.stderr_eof,
                Some(_) => st.status.is_some(),
            };
            let left = end.saturating_duration_since(Instant::now());
            if done || left.is_zero() {
                return None;
            }
            let step = match self.files {
                None => left,
                Some(_) => left.min(FILE_POLL),
            };
            st = self
                .shared
                .changed
                .wait_timeout(st, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until `f` finds what it looks for in everything on stdout so
    /// far (a prompt without a newline, say) and returns what it found;
    /// `None` once `within` passed or stdout closed without it.
    pub fn wait_for_stdout<T>(
        &self,
        mut f: impl FnMut(&str) -> Option<T>,
        within: Duration,
    ) -> Option<T> {
        let end = Instant::now() + within;
        let mut st = self.shared.lock();
        loop {
            if let Some(found) = f(&self.texts(&st).0) {
                return Some(found);
            }
            let done = match self.files {
                None => st.stdout_eof,
                Some(_) => st.status.is_some(),
            };
            let left = end.saturating_duration_since(Instant::now());
            if done || left.is_zero() {
                return None;
            }
            let step = match self.files {
                None => left,
                Some(_) => left.min(FILE_POLL),
            };
            st = self
                .shared
                .changed
                .wait_timeout(st, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for a line containing an `IP:PORT` after `marker` and returns
    /// the address.
    pub fn wait_for_addr(&self, marker: &str, within: Duration) -> Option<SocketAddr> {
        let line = self.wait_for_line(|l| l.contains(marker) && addr_in(l).is_some(), within)?;
        addr_in(&line)
    }

    /// Waits until `path` exists (a ready file the child writes at once,
    /// by a rename) and returns its text; `Err` with the child's stderr
    /// when it exits first or `within` passes.
    pub fn wait_for_file(&self, path: &Path, within: Duration) -> Result<String, String> {
        let end = Instant::now() + within;
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return Ok(text);
            }
            if let Some(status) = self.exit_status() {
                // It may have written the file just before it exited.
                if let Ok(text) = std::fs::read_to_string(path) {
                    return Ok(text);
                }
                return Err(format!(
                    "exited with {status} before writing {}:\n{}",
                    path.display(),
                    self.stderr_so_far()
                ));
            }
            if Instant::now() >= end {
                return Err(format!(
                    "did not write {} within {within:?}:\n{}",
                    path.display(),
                    self.stderr_so_far()
                ));
            }
            // No event tells of a file appearing without inotify; the exit,
            // which ends the wait early, does wake it.
            self.wait_exit(FILE_POLL);
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        let st = self.shared.lock();
        self.texts(&st).1
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        let st = self.shared.lock();
        self.texts(&st).0
    }

    /// Waits for the process to exit (the kill timer still applies) and
    /// for all its output.
    pub fn wait(self) -> Finished {
        let (output, killed) = self.wait_output();
        Finished {
            status: output.status,
            killed,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Like [`Proc::wait`], the output as bytes; and whether the kill
    /// timer fired.
    pub fn wait_output(mut self) -> (Output, bool) {
        let status = loop {
            if let Some(s) = self.wait_exit(Duration::from_secs(3600)) {
                break s;
            }
        };
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let mut st = self.shared.lock();
        let killed = st.timed_out;
        let (stdout, stderr) = match &self.files {
            None => (
                std::mem::take(&mut st.stdout),
                std::mem::take(&mut st.stderr),
            ),
            Some((out, err)) => (
                std::fs::read(out).unwrap_or_default(),
                std::fs::read(err).unwrap_or_default(),
            ),
        };
        (
            Output {
                status,
                stdout,
                stderr,
            },
            killed,
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        self.kill();
    }
}

/// Reads one of the child's pipes into the shared state until it closes.
fn collect<R: Read + Send + 'static>(
    mut r: R,
    shared: Arc<Shared>,
    is_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut st = shared.lock();
            let into = if is_stderr {
                &mut st.stderr
            } else {
                &mut st.stdout
            };
            into.extend_from_slice(&buf[..n]);
            drop(st);
            shared.changed.notify_all();
        }
        let mut st = shared.lock();
        if is_stderr {
            st.stderr_eof = true;
        } else {
            st.stdout_eof = true;
        }
        drop(st);
        shared.changed.notify_all();
    })
}

/// Waits for the child's exit without reaping it, then reaps it under the
/// lock and records the status.
fn reaper(pid: u32, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
        if let Some(p) = Pid::from_raw(pid as i32) {
            while let Err(rustix::io::Errno::INTR) = waitid(
                WaitId::Pid(p),
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {}
        }
        loop {
            let mut st = shared.lock();
            if let Ok(Some(status)) = st.child.try_wait() {
                st.status = Some(status);
                drop(st);
                shared.changed.notify_all();
                return;
            }
            drop(st);
            // Only when waitid failed (it returned before the exit).
            std::thread::sleep(FILE_POLL);
        }
    });
}

/// Runs `cmd` to completion, killing it after `kill_after`.
pub fn run(cmd: impl BorrowMut<Command>, kill_after: Duration) -> Finished {
    Proc::spawn(cmd, kill_after)
        .expect("spawn the command")
        .wait()
}

/// Runs `cmd` to completion and returns its output as bytes; panics when
/// it ran longer than `kill_after` (it is killed then).
pub fn output(mut cmd: impl BorrowMut<Command>, kill_after: Duration) -> Output {
    let cmd = cmd.borrow_mut();
    let what = format!("{cmd:?}");
    let p = Proc::spawn(cmd, kill_after).unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let (out, killed) = p.wait_output();
    assert!(!killed, "{what} ran longer than {kill_after:?}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn the_kill_timer_kills_a_hung_child_and_says_so() {
        let started = Instant::now();
        let f = run(
            sh("echo before; exec sleep 600"),
            Duration::from_millis(300),
        );
        assert!(f.killed, "{f:?}");
        assert_eq!(f.code(), -1);
        assert_eq!(f.stdout, "before\n");
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn a_child_that_ends_in_time_is_not_marked_killed() {
        let f = run(
            sh("printf 'no newline'; echo err >&2; exit 3"),
            Duration::from_secs(60),
        );
        assert!(!f.killed);
        assert_eq!(f.code(), 3);
        assert_eq!(
            (f.stdout.as_str(), f.stderr.as_str()),
            ("no newline", "err\n")
        );
    }

    #[test]
    fn a_line_and_its_address_are_found_as_they_are_written() {
        let p = Proc::spawn(
            sh("echo starting; echo 'listening on 127.0.0.1:4431' >&2; exec sleep 600"),
            Duration::from_secs(60),
        )
        .expect("spawn");
        let addr = p.wait_for_addr("listening", Duration::from_secs(30));
        assert_eq!(addr, Some("127.0.0.1:4431".parse().expect("addr")));
        // The child still runs: the wait ended on the line, not on its exit.
        assert!(p.exit_status().is_none());
        p.kill();
        assert!(p.exit_status().is_some());
    }

    #[test]
    fn waits_end_when_the_child_exits_without_what_they_wait_for() {
        let p = Proc::spawn(sh("echo nothing useful"), Duration::from_secs(60)).expect("spawn");
        let started = Instant::now();
        assert_eq!(
            p.wait_for_line(|l| l.contains("ready"), Duration::from_secs(60)),
            None
        );
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("ready.json");
        let err = p
            .wait_for_file(&missing, Duration::from_secs(60))
            .expect_err("no ready file");
        assert!(err.contains("exited"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_prompt_without_a_newline_is_answered_through_stdin() {
        let (p, mut stdin) = Proc::spawn_with_stdin(
            sh("printf 'name: '; read n; echo \"hello $n\""),
            Duration::from_secs(60),
        )
        .expect("spawn");
        let at = p.wait_for_stdout(|t| t.find("name: "), Duration::from_secs(30));
        assert_eq!(at, Some(0));
        std::io::Write::write_all(&mut stdin, b"node\n").expect("answer");
        drop(stdin);
        let f = p.wait();
        assert_eq!(f.stdout, "name: hello node\n");
    }

    #[test]
    fn signals_reach_the_child_and_files_hold_its_output() {
        let dir = tempfile::tempdir().expect("tmp");
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let p = Proc::spawn_logging(
            sh("trap 'echo got TERM; exit 7' TERM; echo up >&2; while :; do sleep 0.05; done"),
            Duration::from_secs(60),
            &out,
            &err,
        )
        .expect("spawn");
        assert!(p
            .wait_for_line(|l| l == "up", Duration::from_secs(30))
            .is_some());
        p.signal(Signal::TERM);
        let status = p.wait_exit(Duration::from_secs(30)).expect("exits on TERM");
        assert_eq!(status.code(), Some(7));
        assert_eq!(std::fs::read_to_string(&out).expect("out"), "got TERM\n");
    }

    #[test]
    fn addresses_are_read_from_the_usual_log_shapes() {
        for (line, want) in [
            ("listening on 127.0.0.1:80", Some("127.0.0.1:80")),
            ("addr=\"[::1]:8443\", ok", Some("[::1]:8443")),
            ("bound (127.0.0.2:9)", Some("127.0.0.2:9")),
            ("no address here", None),
        ] {
            assert_eq!(
                addr_in(line),
                want.map(|w| w.parse().expect("addr")),
                "{line}"
            );
        }
    }
}
