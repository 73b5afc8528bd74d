//! The workspace's binaries, never stale.
//!
//! A test finds `satchel-fetch`, `satchel-server`, `satchel-bundle` and
//! `satchel-pki` beside its own executable's `deps/` directory, where cargo
//! puts them. Cargo builds a package's binaries for `cargo test` only for
//! that package's own integration tests, so `cargo test -p satchel-tests`
//! alone would find whatever binary an earlier build left. So a binary is
//! checked against the sources it is built from (its package and the
//! workspace crates it uses): when one of them changed after the binary
//! was written, or the binary is missing, it is rebuilt with the cargo that
//! built the test (`cargo build --locked --bin NAME…`, same profile and
//! target directory; the build lock is free while tests run) before the
//! test gets its path. A process's first lookup checks all four binaries
//! and builds the stale ones in one go, so no build happens later, while a
//! process the test started runs on its kill timer. Cargo's own fingerprint
//! then decides: a source cargo does not compile (a README beside the code)
//! makes a no-op build, and the binary is taken as current. A failed build
//! fails the test with cargo's output, never falls back to the old binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The crates every binary but the CA's is built from (a folder that does
/// not exist is skipped: `bundle-tool/tarhdr` comes with the shared tar
/// header crate).
const LIBS: [&str; 5] = [
    "bundle-tool/names",
    "bundle-tool/format",
    "bundle-tool/overlay",
    "pki",
    "bundle-tool/tarhdr",
];

/// Longest the rebuild of one stale binary may take (a cold build of its
/// dependencies on a loaded 2-core machine) before it is killed.
pub const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Folders below a source folder that no binary is built from.
const NOT_SOURCES: [&str; 4] = ["target", "tests", "benches", "fuzz"];

/// The source folders (relative to the workspace root) `binary` is built
/// from: its package and the workspace crates it depends on.
fn sources_of(binary: &str) -> Vec<&'static str> {
    let own: &[&str] = match binary {
        "satchel-fetch" => &["fetcher"],
        "satchel-server" => &["server"],
        "satchel-bundle" => &["bundle-tool/cli", "contrib"],
        "satchel-pki" => return vec!["pki", LIBS[0]],
        _ => &[],
    };
    own.iter().chain(LIBS.iter()).copied().collect()
}

/// The workspace root (this crate is `tests/support`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// `<target>/<profile>`, the directory of the test executable (or of its
/// `deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of workspace binary `name` (`satchel-fetch`, `satchel-server`,
/// …), built now when it is missing or older than its sources. Panics when
/// the build fails.
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    ensure_current(&p);
    p
}

/// The newest modification time among the files below `dirs`, and that file.
fn newest_source(dirs: &[&str]) -> Option<(SystemTime, PathBuf)> {
    let root = workspace_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut todo: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            let skip = p
                .file_name()
                .is_some_and(|n| NOT_SOURCES.iter().any(|s| n == *s));
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
    newest
}

/// Why `binary` needs a build, if it does.
fn stale(binary: &Path) -> Option<String> {
    let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let built = match std::fs::metadata(binary).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => return Some(format!("{} is not built", binary.display())),
    };
    let (changed, source) = newest_source(&sources_of(name))?;
    (changed > built).then(|| {
        format!(
            "{} is older than {}, which changed after it was built",
            binary.display(),
            source.display()
        )
    })
}

/// The workspace's binaries, all checked (and the stale ones built, in one
/// cargo run) at a process's first lookup.
pub const BINARIES: [&str; 4] = [
    "satchel-fetch",
    "satchel-server",
    "satchel-bundle",
    "satchel-pki",
];

/// Makes sure `binary` (a workspace binary's path in this test's profile
/// directory) is current, building it when it is not. The first call of a
/// process checks every one of [`BINARIES`] beside it too and builds the
/// stale ones together: a test looks its binaries up before it starts
/// them, so a build never eats into the kill timer of a process the test
/// already started (a server waiting for a fetcher that is still being
/// compiled).
pub fn ensure_current(binary: &Path) {
    // Binaries already checked (or built) by this process. Held across the
    // build, so two tests of one process never build at once.
    static CHECKED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if checked.iter().any(|c| c == binary) {
        return;
    }
    let dir = binary.parent().unwrap_or(Path::new("."));
    let mut todo: Vec<PathBuf> = vec![binary.to_path_buf()];
    if checked.is_empty() {
        todo.extend(BINARIES.iter().map(|b| dir.join(b)).filter(|p| p != binary));
    }
    let stale: Vec<(PathBuf, String)> = todo
        .iter()
        .filter_map(|p| stale(p).map(|why| (p.clone(), why)))
        .collect();
    if !stale.is_empty() {
        build(dir, &stale);
    }
    checked.extend(todo);
}

/// `cargo build --locked --bin NAME…` of the `stale` binaries (with why
/// each is), in the profile and target directory `profile_dir` names.
fn build(profile_dir: &Path, stale: &[(PathBuf, String)]) {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir.parent().unwrap_or(Path::new("target"));
    let names: Vec<&str> = stale
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str())
        .collect();
    let why = stale
        .iter()
        .map(|(_, w)| w.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let bins: Vec<String> = names.iter().map(|n| format!("--bin {n}")).collect();
    let bins = bins.join(" ");
    eprintln!("{why}: building (cargo build {bins} --profile {profile})");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--locked", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir);
    for n in &names {
        cargo.args(["--bin", n]);
    }
    let (out, killed) = crate::proc::Proc::spawn(cargo, BUILD_LIMIT)
        .unwrap_or_else(|e| panic!("{why}, and cargo could not be run to build it: {e}"))
        .wait_output();
    assert!(
        !killed && out.status.success(),
        "{why}, and `cargo build {bins}` failed or ran past {BUILD_LIMIT:?} (run \
         `cargo build --workspace --bins` and look):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (p, _) in stale {
        assert!(
            p.is_file(),
            "`cargo build {bins}` succeeded but {} is not there",
            p.display()
        );
    }
}
