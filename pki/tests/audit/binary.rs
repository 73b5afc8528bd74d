//! `satchel-pki audit` through the real binary: a directory built with the
//! binary's own `init`/`issue`/`crl` audits clean (exit 0), a dropped-in
//! certificate fails it (exit 1), an unusable directory is exit 2. Every
//! child process runs under a kill timer.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::ledger::rogue_leaf;

/// Longest a child process may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn pki(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_satchel-pki"));
    cmd.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("SATCHEL_PKI_PASSPHRASE");
    let f = satchel_test_support::run(cmd, CHILD_TIMEOUT);
    assert!(
        !f.killed,
        "satchel-pki {args:?} did not finish within {CHILD_TIMEOUT:?}"
    );
    Output {
        code: f.code(),
        stdout: f.stdout,
        stderr: f.stderr,
    }
}

fn ok(dir: &Path, args: &[&str]) {
    let o = pki(dir, args);
    assert_eq!(o.code, 0, "satchel-pki {args:?}: {}", o.stderr);
}

#[test]
fn the_binary_audits_what_it_issued() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("pki");
    ok(
        &d,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Binary CA",
            "--insecure-plaintext-key",
        ],
    );
    let out = |name: &str| d.join(name).to_str().unwrap().to_string();
    ok(
        &d,
        &[
            "issue",
            "server",
            "--dns",
            "cfg.example.test",
            "--ip",
            "127.0.0.1",
            "--out",
            &out("server"),
        ],
    );
    ok(
        &d,
        &[
            "issue",
            "host",
            "--mac",
            "AA:BB:CC:DD:EE:FF",
            "--site",
            "dc0",
            "--out",
            &out("host"),
        ],
    );
    ok(
        &d,
        &["issue", "site", "--site", "dc1", "--out", &out("site")],
    );
    ok(
        &d,
        &["issue", "admin", "--name", "alice", "--out", &out("admin")],
    );
    ok(&d, &["crl", "--out", &out("published-crl.pem")]);
    // Boot images written inside the CA directory carry copies of the CA and
    // client certificates, keys and age identities: still nothing to report.
    let signer = t.path().join("signer");
    std::fs::create_dir(&signer).unwrap();
    super::support::openssl(
        &signer,
        &["genpkey", "-algorithm", "ed25519", "-out", "signer.key"],
    );
    super::support::openssl(
        &signer,
        &["pkey", "-in", "signer.key", "-pubout", "-out", "signer.pub"],
    );
    let signer_pub = signer.join("signer.pub");
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    // (Another node and site than the certificates above: two live
    // certificates for one MAC or site would rightly be reported, and so
    // would a site-wide image beside host images of its own site.)
    for target in [
        &["--mac", "02-00-00-00-00-09", "--site", "dc3"][..],
        &["--site", "dc2"],
    ] {
        let image = out(&format!("images/{}", target.len()));
        let mut a = vec!["enroll"];
        a.extend_from_slice(target);
        a.extend_from_slice(&[
            "--signer",
            signer_pub.to_str().unwrap(),
            "--admin-recipient",
            &recipient,
            "--domain",
            "example.test",
            "--out",
            &image,
        ]);
        ok(&d, &a);
    }

    let o = pki(&d, &["audit", "--json", "--fail-on", "notice"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["findings"], Value::Array(vec![]), "{}", o.stdout);
    // The CA and four leaves from `issue`, two client certificates from `enroll`.
    assert_eq!(v["certificates"].as_array().unwrap().len(), 7);
    assert_eq!(v["ledger"]["chain_ok"], true);
    assert_eq!(v["crl"]["fresh"], true);

    let page = t.path().join("report.html");
    let o = pki(&d, &["audit", "--html", page.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o
        .stdout
        .contains("Findings: 0 error(s), 0 warning(s), 0 notice(s)"));
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains("CN=host/aa-bb-cc-dd-ee-ff"));

    // A certificate signed with the CA key behind the tool's back.
    let ca = satchel_pki::ca::Ca::open_insecure(&d).unwrap();
    let rogue = rogue_leaf(&d, &ca);
    std::fs::write(d.join("certs/rogue.crt"), rogue.pem).unwrap();
    let o = pki(&d, &["audit"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stdout.contains("e_not_in_ledger"));
    assert_eq!(pki(&d, &["audit", "--fail-on", "never"]).code, 0);

    // Unusable inputs.
    let o = pki(&t.path().join("absent"), &["audit"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("error"), "{}", o.stderr);
    assert_eq!(pki(&d, &["audit", "--fail-on", "maybe"]).code, 2);
}
