//! Test harness: what the `satchel-tests` flows share beyond the
//! process machinery of `satchel-test-support` (re-exported here: temp
//! dirs, the workspace's binaries rebuilt when stale, child processes with
//! a kill timer, bound addresses from a log line, reserved ports): a node's
//! fetcher command, the real server from the files a test wrote, and the
//! server's PKI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use satchel_pki::ca::{Ca, Issued};
use satchel_pki::AdminName;
pub use satchel_test_support::bin::ensure_current as assert_fresh;
pub use satchel_test_support::{
    addr_in, refused_tcp_port, refused_udp_port, run, tempdir, Finished, Proc, Signal,
};

/// The path of a workspace binary (`satchel-fetch`, `satchel-server`, …),
/// built first when it is missing or older than its sources.
pub fn bin(name: &str) -> PathBuf {
    satchel_test_support::workspace_bin(name)
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
    let text = server
        .wait_for_file(&ready, SERVER_READY_WITHIN)
        .unwrap_or_else(|e| panic!("satchel-server not ready: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("ready JSON");
    let addr = v["listen"].as_str().expect("listen").parse().expect("addr");
    (addr, server)
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
