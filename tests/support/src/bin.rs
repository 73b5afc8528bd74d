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
//! built the test (`cargo build --locked --bin NAME`, same profile and
//! target directory; the build lock is free while tests run) before the
//! test gets its path. Cargo's own fingerprint then decides: a source cargo
//! does not compile (a README beside the code) makes a no-op build, and the
//! binary is taken as current. A failed build fails the test with cargo's
//! output, never falls back to the old binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

/// The crates every binary but the CA's is built from.
const LIBS: [&str; 4] = [
    "bundle-tool/names",
    "bundle-tool/format",
    "bundle-tool/overlay",
    "pki",
];

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

/// Makes sure `binary` (a workspace binary's path in this test's profile
/// directory) is current, building it when it is not; once per binary and
/// test process (every spawn asks).
pub fn ensure_current(binary: &Path) {
    // Binaries already checked (or built) by this process. Held across the
    // build, so two tests of one process never build the same binary at once.
    static CHECKED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if checked.iter().any(|c| c == binary) {
        return;
    }
    if let Some(why) = stale(binary) {
        build(binary, &why);
    }
    checked.push(binary.to_path_buf());
}

/// `cargo build --locked --bin NAME` in the profile and target directory
/// `binary` lives in.
fn build(binary: &Path, why: &str) {
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let profile_dir = binary.parent().unwrap_or(Path::new("."));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir.parent().unwrap_or(Path::new("target"));
    eprintln!("{why}: building it (cargo build --bin {name} --profile {profile})");
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["build", "--locked", "--bin", name, "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("{why}, and cargo could not be run to build it: {e}"));
    assert!(
        out.status.success(),
        "{why}, and `cargo build --bin {name}` failed (run `cargo build --workspace --bins` \
         and look):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        binary.is_file(),
        "`cargo build --bin {name}` succeeded but {} is not there",
        binary.display()
    );
}
