//! The admins' status page in a real browser: Debian's chromium, headless,
//! with the admin's client certificate in an NSS database and picked by
//! the `AutoSelectCertificateForUrls` policy; a node certificate refused.
//!
//! Needs `chromium` and `certutil`/`pk12util` (`libnss3-tools`), which
//! README's test command installs, and root (the policy lives in
//! `/etc/chromium/policies/managed/`, the only place chromium reads it).
//! `SATCHEL_UPDATE_SCREENSHOT=1` also writes the page's screenshot to
//! `server/ui/screenshot.png`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use satchel_names::Target;

use crate::harness::*;

/// Longest a browser run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
const POLICY_DIR: &str = "/etc/chromium/policies/managed";

/// Longest certutil or pk12util may take before it is killed.
const TOOL_LIMIT: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command, what: &str) -> String {
    let p = Proc::spawn(cmd, TOOL_LIMIT)
        .unwrap_or_else(|e| panic!("{what}: {e} (tests/run installs chromium and libnss3-tools)"));
    let (out, killed) = p.wait_output();
    assert!(!killed, "{what} did not finish within {TOOL_LIMIT:?}");
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A HOME whose NSS database trusts the test CA and holds `cred`.
fn nss_home(w: &World, name: &str, cred: &Cred) -> PathBuf {
    let home = w.path().join(format!("home-{name}"));
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb");
    let db_arg = format!("sql:{}", db.display());
    run(
        Command::new("certutil").args(["-N", "--empty-password", "-d", &db_arg]),
        "certutil -N",
    );
    run(
        Command::new("certutil")
            .args([
                "-A",
                "-n",
                "satchel test CA",
                "-t",
                "C,,",
                "-d",
                &db_arg,
                "-i",
            ])
            .arg(&w.ca_pem),
        "certutil -A",
    );
    let p12 = home.join("client.p12");
    run(
        Command::new("openssl")
            .args(["pkcs12", "-export", "-passout", "pass:", "-in"])
            .arg(&cred.cert)
            .arg("-inkey")
            .arg(&cred.key)
            .arg("-out")
            .arg(&p12),
        "openssl pkcs12",
    );
    run(
        Command::new("pk12util")
            .args(["-W", "", "-d", &db_arg, "-i"])
            .arg(&p12),
        "pk12util",
    );
    home
}

/// The managed policy that makes chromium present a client certificate of
/// the test CA to this server without asking; removed on drop.
///
/// chromium reads every file in [`POLICY_DIR`] and, of two files setting
/// the same policy, keeps one: with two of these tests running at once
/// (two checkouts' suites on one machine), one test's server was not in
/// the list, and chromium waited for someone to pick a certificate until
/// the test's limit. So a policy is installed only under an exclusive lock
/// on [`POLICY_LOCK`], held until it is removed: the browser runs of
/// concurrent suites take turns.
struct Policy {
    path: PathBuf,
    _lock: std::fs::File,
}

/// The lock file beside the policy folder, which chromium does not read
/// (see [`Policy`]).
const POLICY_LOCK: &str = "/etc/chromium/policies/.satchel-test.lock";

impl Policy {
    fn install(port: u16) -> Policy {
        assert!(
            rustix::process::geteuid().is_root(),
            "the status page test installs a chromium policy in {POLICY_DIR} and needs root"
        );
        std::fs::create_dir_all(POLICY_DIR).expect("policy dir");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(POLICY_LOCK)
            .unwrap_or_else(|e| panic!("{POLICY_LOCK}: {e}"));
        // Blocks this test's thread only: each test has its own runtime.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("lock {POLICY_LOCK}: {e}"));
        let path = Path::new(POLICY_DIR).join(format!("satchel-test-{}.json", std::process::id()));
        let rule = serde_json::json!({
            "pattern": format!("https://127.0.0.1:{port}"),
            "filter": { "ISSUER": { "CN": "satchel test CA" } },
        });
        let policy = serde_json::json!({ "AutoSelectCertificateForUrls": [rule.to_string()] });
        std::fs::write(&path, policy.to_string()).expect("policy");
        Policy { path, _lock: lock }
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        // Removed before the lock is released (fields drop after this).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Headless chromium with `home`'s NSS database: `args`, then `url`.
fn chromium(home: &Path, profile: &Path, args: &[String], url: &str) -> String {
    let mut cmd = Command::new("chromium");
    cmd.env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url);
    // Its output is read while it runs, so a large DOM dump cannot fill
    // the pipe and stall it.
    let p = Proc::spawn(cmd, BROWSER_LIMIT)
        .unwrap_or_else(|e| panic!("chromium: {e} (tests/run installs it)"));
    let f = p.wait();
    // What chromium said last is what tells a hang's cause.
    let said: Vec<&str> = f.stderr.lines().rev().take(40).collect();
    assert!(
        !f.killed,
        "chromium did not finish within {BROWSER_LIMIT:?}; the end of its stderr:\n{}",
        said.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    f.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_stale_and_failed_nodes_to_admins_only() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));

    // Four hosts: one current, one stale, one failed, one never seen.
    for n in 1..=4 {
        let t = Target::Host(mac(n));
        let url = format!("/v1/bundles/{t}");
        assert_eq!(admin.status("PUT", &url, w.bundle(&t, None, 1)).await, 201);
    }
    let payload = |h: &serde_json::Value| {
        h["versions"][0]["payload_sha256"]
            .as_str()
            .map(str::to_string)
    };
    for n in 1..=2 {
        let t = Target::Host(mac(n));
        let p = payload(&admin.json("GET", &format!("/v1/bundles/{t}/history")).await)
            .expect("payload");
        let node = Client::new(&w, srv.addr, Some(&w.host(n, None)));
        let report =
            format!(r#"{{"status":"applied","serials":{{"{t}":1}},"payloads":{{"{t}":"{p}"}}}}"#);
        assert_eq!(
            node.status("POST", &format!("/v1/reports/{}", mac(n)), report)
                .await,
            202
        );
    }
    let t2 = Target::Host(mac(2));
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t2}"), w.bundle(&t2, None, 2))
            .await,
        201
    );
    let node3 = Client::new(&w, srv.addr, Some(&w.host(3, None)));
    let failed = format!(
        r#"{{"status":"failed","error":"host/{} refused: signature by an untrusted key"}}"#,
        mac(3)
    );
    assert_eq!(
        node3
            .status("POST", &format!("/v1/reports/{}", mac(3)), failed)
            .await,
        202
    );
    // The server refuses the page to a node over the API client, too.
    assert_eq!(node3.status("GET", "/ui/", Bytes::new()).await, 403);

    let _policy = Policy::install(srv.addr.port());
    let base = format!("https://127.0.0.1:{}/ui/", srv.addr.port());
    let admin_home = nss_home(&w, "admin", &w.admin);
    let dom = chromium(
        &admin_home,
        &w.path().join("profile-1"),
        &["--dump-dom".into()],
        &base,
    );
    assert!(dom.contains("<h1>satchel</h1>"), "{dom}");
    let row = |mac: &str| {
        dom.split("<tr")
            .find(|r| r.contains(mac))
            .unwrap_or_else(|| panic!("no row for {mac}:\n{dom}"))
            .to_string()
    };
    assert!(
        row(&mac(1).to_string()).contains("current"),
        "{}",
        row(&mac(1).to_string())
    );
    assert!(
        row(&mac(2).to_string()).contains("stale: host/"),
        "{}",
        row(&mac(2).to_string())
    );
    let failed_row = row(&mac(3).to_string());
    assert!(
        failed_row.contains("failed") && failed_row.contains("signature by an untrusted key"),
        "{failed_row}"
    );
    assert!(
        dom.contains("1 host bundle(s) whose node never reported"),
        "{dom}"
    );
    // The filter narrows the table to the failed node.
    let filtered = chromium(
        &admin_home,
        &w.path().join("profile-2"),
        &["--dump-dom".into()],
        &format!("{base}?failed=1"),
    );
    let body = filtered.split("<tbody>").nth(1).unwrap_or_default();
    assert!(
        body.contains(&mac(3).to_string()) && !body.contains(&mac(1).to_string()),
        "{filtered}"
    );

    // A screenshot of the page, as the browser rendered it.
    let shot = w.path().join("status.png");
    chromium(
        &admin_home,
        &w.path().join("profile-3"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,900".into(),
        ],
        &base,
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("SATCHEL_UPDATE_SCREENSHOT").is_some() {
        let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/screenshot.png");
        std::fs::write(&dest, &png).expect("write screenshot");
    }

    // A node's certificate, auto-selected the same way, gets no page.
    let node_home = nss_home(&w, "node", &w.host(1, None));
    let dom = chromium(
        &node_home,
        &w.path().join("profile-4"),
        &["--dump-dom".into()],
        &base,
    );
    assert!(
        dom.contains("forbidden") && !dom.contains("<h1>satchel</h1>"),
        "{dom}"
    );
}
