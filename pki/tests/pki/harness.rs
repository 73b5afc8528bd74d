//! Shared helpers: a test CA in a temp dir; processes with a kill timer
//! (`satchel-test-support`'s).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use satchel_names::{Mac, SiteName};
use satchel_pki::ca::{Ca, Issued};
use satchel_pki::scope::AdminName;

/// Longest any child process may run before it is killed.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

pub fn mac(s: &str) -> Mac {
    Mac::parse(s).unwrap()
}

pub fn site(s: &str) -> SiteName {
    SiteName::parse(s).unwrap()
}

pub fn admin(s: &str) -> AdminName {
    AdminName::parse(s).unwrap()
}

/// A CA with a plaintext key in a fresh temp dir.
pub fn test_ca() -> (tempfile::TempDir, Ca) {
    test_ca_named("Test CA")
}

/// A CA with this name and a plaintext key in a fresh temp dir.
pub fn test_ca_named(name: &str) -> (tempfile::TempDir, Ca) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::init_insecure(&tmp.path().join("ca"), name).unwrap();
    (tmp, ca)
}

/// One certificate of each kind.
pub struct Set {
    pub server: Issued,
    pub host: Issued,
    pub site: Issued,
    pub admin: Issued,
}

pub fn issue_set(ca: &Ca) -> Set {
    Set {
        server: ca
            .issue_server(
                &["localhost".to_string()],
                &["127.0.0.1".parse().unwrap()],
                None,
            )
            .unwrap(),
        host: ca
            .issue_host(mac("aa-bb-cc-dd-ee-ff"), Some(site("dc1")), None)
            .unwrap(),
        site: ca.issue_site(site("dc1"), None).unwrap(),
        admin: ca.issue_admin(admin("alice"), None).unwrap(),
    }
}

/// Runs a command with stdin closed; kills it after [`PROCESS_TIMEOUT`]
/// and fails the test then. Output is drained while it runs, so a chatty
/// child cannot block on a full pipe.
pub fn run(cmd: &mut Command) -> Output {
    satchel_test_support::output(cmd, PROCESS_TIMEOUT)
}

/// Runs openssl with these arguments.
pub fn openssl(args: &[&str]) -> Output {
    run(Command::new("openssl").args(args))
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes a file and returns its path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}
