//! The `satchel-pki` binary end to end, and hostile command-line values.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use satchel_pki::node_config::NodeConfig;

use crate::harness::{openssl, run, text};

const BIN: &str = env!("CARGO_BIN_EXE_satchel-pki");
const RECIPIENT: &str = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";

fn pki(dir: &Path, passphrase: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.env_remove("SATCHEL_PKI_DIR")
        .env_remove("SATCHEL_PKI_PASSPHRASE")
        .arg("--dir")
        .arg(dir)
        .args(args);
    if let Some(p) = passphrase {
        c.env("SATCHEL_PKI_PASSPHRASE", p);
    }
    run(&mut c)
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn signer_pub(dir: &Path) -> String {
    let key = dir.join("signer.key");
    let pubf = dir.join("signer.pub");
    let o = openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        pubf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    pubf.to_str().unwrap().to_string()
}

fn serial_of(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "serial")
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn init_issue_revoke_crl_verify_enroll() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("ca");
    let out = |n: &str| t.join(n).to_str().unwrap().to_string();
    // Plaintext key: the passphrase path is `passphrase_protects_the_ca_key`.
    let pass = None;
    ok(pki(
        &dir,
        pass,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Example Boot CA",
            "--insecure-plaintext-key",
        ],
    ));
    assert!(!pki(
        &dir,
        pass,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Again",
            "--insecure-plaintext-key"
        ]
    )
    .status
    .success());

    let server = ok(pki(
        &dir,
        pass,
        &[
            "issue",
            "server",
            "--dns",
            "boot.example.test",
            "boot2.example.test",
            "--ip",
            "127.0.0.1",
            "--out",
            &out("srv"),
        ],
    ));
    let host = ok(pki(
        &dir,
        pass,
        &[
            "issue",
            "host",
            "--mac",
            "AA:BB:CC:DD:EE:FF",
            "--site",
            "dc1",
            "--out",
            &out("host"),
        ],
    ));
    ok(pki(
        &dir,
        pass,
        &["issue", "site", "--site", "dc1", "--out", &out("site")],
    ));
    ok(pki(
        &dir,
        pass,
        &[
            "issue",
            "admin",
            "--name",
            "alice",
            "--validity-days",
            "7",
            "--out",
            &out("admin"),
        ],
    ));
    for n in ["srv", "host", "site", "admin"] {
        assert_eq!(mode(&t.join(format!("{n}.key"))), 0o600);
        let o = openssl(&[
            "verify",
            "-CAfile",
            dir.join("ca.crt").to_str().unwrap(),
            t.join(format!("{n}.crt")).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{n}: {}", text(&o));
    }
    let san = text(&openssl(&[
        "x509",
        "-in",
        t.join("srv.crt").to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]));
    assert!(
        san.contains("DNS:boot.example.test, DNS:boot2.example.test, IP Address:127.0.0.1"),
        "{san}"
    );
    // Never overwrite a key.
    assert!(!pki(
        &dir,
        pass,
        &["issue", "site", "--site", "dc1", "--out", &out("site")]
    )
    .status
    .success());

    let hs = serial_of(&host);
    let upper = hs.to_ascii_uppercase();
    ok(pki(
        &dir,
        pass,
        &["revoke", &upper, "--reason", "keyCompromise"],
    ));
    assert!(
        !pki(&dir, pass, &["revoke", &hs, "--reason", "keyCompromise"])
            .status
            .success()
    );
    let crl = out("crl.pem");
    let o = ok(pki(&dir, pass, &["crl", "--out", &crl]));
    assert!(o.contains("CRL number 1"), "{o}");
    let t2 = text(&openssl(&["crl", "-in", &crl, "-noout", "-text"]));
    assert!(t2.to_ascii_lowercase().contains(&hs), "{t2}");
    assert!(Path::new(&format!("{crl}.der")).exists());
    let o = ok(pki(
        &dir,
        pass,
        &["crl", "--out", &out("crl2.der"), "--der"],
    ));
    assert!(o.contains("CRL number 2"), "{o}");
    let crl2 = satchel_pki::crl::load_crl(&t.join("crl2.der")).unwrap();
    assert_eq!(crl2.number, Some(2));
    assert!(crl2.is_revoked(&hs));
    // The server certificate is not revoked.
    assert!(!crl2.is_revoked(&serial_of(&server)));

    let head = ok(pki(&dir, None, &["ledger", "head"]));
    let v = ok(pki(
        &dir,
        None,
        &["ledger", "verify", "--expect-head", head.trim()],
    ));
    assert!(v.contains("ledger OK"), "{v}");

    // Enroll a host of dc1, another host of dc1, and a site image.
    let signer = signer_pub(t);
    let enroll = |args: &[&str], outdir: &str| {
        let mut a = vec![
            "enroll",
            "--signer",
            signer.as_str(),
            "--admin-recipient",
            RECIPIENT,
            "--domain",
            "boot.example.test",
            "--out",
            outdir,
        ];
        a.extend_from_slice(args);
        pki(&dir, pass, &a)
    };
    let img1 = out("img1");
    let o = ok(enroll(
        &[
            "--mac",
            "aa-bb-cc-dd-ee-01",
            "--site",
            "dc1",
            "--floor",
            "host/aa-bb-cc-dd-ee-01=4",
            "--server",
            "127.0.0.1:8443",
        ],
        &img1,
    ));
    assert!(o.contains("site/dc1 age1"), "{o}");
    let img = Path::new(&img1);
    let cfg = NodeConfig::load(&img.join("satchel.toml")).unwrap();
    assert_eq!(cfg.mac.unwrap().to_string(), "aa-bb-cc-dd-ee-01");
    assert_eq!(cfg.site.as_ref().unwrap().as_str(), "dc1");
    assert_eq!(cfg.required, vec!["site/dc1", "host/aa-bb-cc-dd-ee-01"]);
    assert_eq!(cfg.floors.get("host/aa-bb-cc-dd-ee-01"), Some(&4));
    assert_eq!(cfg.server.as_deref(), Some("127.0.0.1:8443"));
    assert!(time::OffsetDateTime::now_utc() - cfg.clock_floor < time::Duration::minutes(5));
    for secret in ["client.key", "host.agekey", "site.agekey"] {
        assert_eq!(mode(&img.join(secret)), 0o600, "{secret}");
    }
    for p in cfg.identities.iter().chain(&cfg.signers).chain([
        &cfg.ca_cert,
        &cfg.client_cert,
        &cfg.client_key,
    ]) {
        assert!(cfg.resolve(img, p).exists(), "{}", p.display());
    }
    let o = openssl(&[
        "verify",
        "-CAfile",
        img.join("ca.crt").to_str().unwrap(),
        img.join("client.crt").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let img2 = out("img2");
    ok(enroll(
        &["--mac", "aa-bb-cc-dd-ee-02", "--site", "dc1"],
        &img2,
    ));
    let img3 = out("img3");
    ok(enroll(&["--site", "dc1", "--require", "site/dc1"], &img3));
    let rec = |d: &str| std::fs::read_to_string(Path::new(d).join("recipients.txt")).unwrap();
    let site_line = |d: &str| {
        rec(d)
            .lines()
            .find(|l| l.starts_with("site/"))
            .unwrap()
            .to_string()
    };
    // One site identity, reused; a new host identity per host.
    assert_eq!(site_line(&img1), site_line(&img2));
    assert_eq!(site_line(&img1), site_line(&img3));
    assert_eq!(
        std::fs::read(Path::new(&img1).join("site.agekey")).unwrap(),
        std::fs::read(Path::new(&img3).join("site.agekey")).unwrap()
    );
    assert_ne!(rec(&img1), rec(&img2));
    // The bundle tool and the fetcher read what enroll wrote: signer keys
    // (named by their key id) and age identities matching recipients.txt.
    for s in &cfg.signers {
        let k = satchel_format::VerifyingKey::read_pem_file(&cfg.resolve(img, s)).unwrap();
        assert_eq!(
            s.file_stem().unwrap().to_str().unwrap(),
            k.key_id().to_string()
        );
    }
    for id in &cfg.identities {
        satchel_format::Identities::read_file(&cfg.resolve(img, id)).unwrap();
    }
    for line in std::fs::read_to_string(img.join("recipients.txt"))
        .unwrap()
        .lines()
    {
        let (target, recipient) = line.split_once(' ').unwrap();
        let file = if target.starts_with("host/") {
            "host.agekey"
        } else {
            "site.agekey"
        };
        let r: age::x25519::Recipient = recipient.parse().unwrap();
        let sealed = age::encrypt(&r, b"bundle").unwrap();
        let text = std::fs::read_to_string(img.join(file)).unwrap();
        let id: age::x25519::Identity = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(age::decrypt(&id, &sealed).unwrap(), b"bundle");
    }
    let site_cfg = NodeConfig::load(&Path::new(&img3).join("satchel.toml")).unwrap();
    assert!(site_cfg.mac.is_none());
    assert_eq!(site_cfg.identities.len(), 1);
    // Enrolling into a non-empty directory is refused.
    assert!(!enroll(&["--site", "dc1"], &img3).status.success());

    // Everything issued is in the ledger, and the ledger verifies.
    let v = ok(pki(
        &dir,
        None,
        &["ledger", "verify", "--expect-head", head.trim()],
    ));
    assert!(v.contains("ledger OK"), "{v}");
    // The reviewers' audit finds no error in what the CA issued.
    let o = pki(&dir, None, &["audit"]);
    assert!(o.status.success(), "{}", text(&o));
    // It warns that dc1 has a site-wide image beside per-host images
    // naming dc1: a node of the site image can fetch those hosts' bundles.
    assert!(
        text(&o).contains("w_site_image_beside_host_images") && text(&o).contains("site dc1"),
        "{}",
        text(&o)
    );
    // A stray certificate in DIR fails verification with exit status 3.
    std::fs::copy(t.join("srv.crt"), dir.join("copy-of-srv.crt")).unwrap();
    let stray = tempfile::tempdir().unwrap();
    let other = stray.path().join("other");
    ok(pki(
        &other,
        None,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Other",
            "--insecure-plaintext-key",
        ],
    ));
    std::fs::copy(other.join("ca.crt"), dir.join("stray.crt")).unwrap();
    let o = pki(&dir, None, &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("stray.crt"), "{}", text(&o));
    assert!(!text(&o).contains("copy-of-srv.crt"), "{}", text(&o));
    std::fs::remove_file(dir.join("stray.crt")).unwrap();
    // Truncation below a recorded head is caught.
    let ledger = dir.join("ledger.jsonl");
    let all = std::fs::read_to_string(&ledger).unwrap();
    let kept: String = all.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&ledger, kept).unwrap();
    let o = pki(
        &dir,
        None,
        &["ledger", "verify", "--expect-head", head.trim()],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn plaintext_key_warns_loudly_and_p384_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let o = pki(
        &dir,
        None,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Test",
            "--p384",
            "--insecure-plaintext-key",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("UNENCRYPTED"));
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    let o = pki(
        &dir,
        None,
        &[
            "issue",
            "site",
            "--site",
            "dc2",
            "--out",
            tmp.path().join("s").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("UNENCRYPTED"));
    // SATCHEL_PKI_DIR is the default directory.
    let o = run(Command::new(BIN)
        .env("SATCHEL_PKI_DIR", &dir)
        .args(["ledger", "verify"]));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn hostile_command_line_values_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let o = pki(
        &dir,
        None,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Test",
            "--insecure-plaintext-key",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let signer = signer_pub(tmp.path());
    let ec_key = tmp.path().join("ec.pem");
    let o = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        ec_key.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let ec_pub = tmp.path().join("ec.pub");
    openssl(&[
        "pkey",
        "-in",
        ec_key.to_str().unwrap(),
        "-pubout",
        "-out",
        ec_pub.to_str().unwrap(),
    ]);
    let ec_pub = ec_pub.to_str().unwrap().to_string();
    let out = tmp.path().join("x").to_str().unwrap().to_string();
    let img = tmp.path().join("img").to_str().unwrap().to_string();
    // One case per line, split on whitespace; {out} {img} {s} {ec} are filled in.
    let e = "enroll --domain boot.example.test --out {img}";
    let m = "--mac aa-bb-cc-dd-ee-ff --signer {s}";
    let long_serial = "ab".repeat(21);
    let cases: Vec<String> = [
        "init --name x".to_string(),
        "init --domain localhost --name x".into(),
        "init --domain example..net --name x".into(),
        "issue server --out {out}".into(),
        "issue server --dns *.example.test --out {out}".into(),
        "issue server --dns a..b --out {out}".into(),
        "issue server --dns ok.test --ip 300.1.1.1 --out {out}".into(),
        "issue server --dns ok.test --validity-days 0 --out {out}".into(),
        "issue server --dns ok.test --validity-days 100000 --out {out}".into(),
        "issue server --dns ok.test --validity-days -1 --out {out}".into(),
        "issue host --mac aa-bb-cc-dd-ee --out {out}".into(),
        "issue host --mac gg-bb-cc-dd-ee-ff --out {out}".into(),
        "issue host --mac aa-bb-cc-dd-ee-ff --site DC1 --out {out}".into(),
        "issue site --site ../etc --out {out}".into(),
        "issue admin --name Alice --out {out}".into(),
        "issue admin --name a/b --out {out}".into(),
        "issue admin --name alice".into(),
        "revoke zz".into(),
        "revoke 0".into(),
        format!("revoke {long_serial}"),
        "revoke 0123456789abcdef".into(),
        "revoke 01 --reason certificateHold".into(),
        "revoke 01 --reason because".into(),
        "crl --out {out} --next-update-days 0".into(),
        "crl --out {out} --next-update-days 5000".into(),
        "ledger verify --expect-head nonsense".into(),
        "ledger verify --expect-head 1:abc".into(),
        format!(
            "ledger verify --expect-head 18446744073709551615:{}",
            "0".repeat(64)
        ),
        format!(
            "ledger verify --expect-head 99999999999999999999:{}",
            "0".repeat(64)
        ),
        format!("{e} --signer {{s}}"),
        format!("{e} --mac aa-bb-cc-dd-ee-ff"),
        format!("{e} --mac aa-bb-cc-dd-ee-ff --signer {{ec}}"),
        format!("{e} --mac aa-bb-cc-dd-ee-ff --signer /nonexistent.pub"),
        // A private key where a public key belongs is never copied into an image.
        format!("{e} --mac aa-bb-cc-dd-ee-ff --signer {{sk}}"),
        format!("{e} {m} --admin-recipient AGE-SECRET-KEY-1QQQ"),
        format!("{e} {m} --floor site/dc1=1"),
        format!("{e} {m} --floor host/aa-bb-cc-dd-ee-ff=-1"),
        format!("{e} {m} --floor host/aa-bb-cc-dd-ee-ff"),
        format!("{e} {m} --floor host/aa-bb-cc-dd-ee-ff=1 --floor host/aa-bb-cc-dd-ee-ff=2"),
        format!("{e} {m} --require site/dc1"),
        format!("{e} {m} --server host-without-port"),
        format!("enroll --domain bad_domain! --out {{img}} {m}"),
    ]
    .iter()
    .map(|c| {
        c.replace("{out}", &out)
            .replace("{img}", &img)
            .replace("{s}", &signer)
            .replace("{ec}", &ec_pub)
            .replace("{sk}", tmp.path().join("signer.key").to_str().unwrap())
    })
    .collect();
    let before = std::fs::read(dir.join("ledger.jsonl")).unwrap();
    for c in &cases {
        let args: Vec<&str> = c.split_whitespace().collect();
        let o = pki(&dir, None, &args);
        assert!(!o.status.success(), "{args:?} succeeded: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?}: {}", text(&o));
    }
    // Nothing was recorded, nothing was left behind.
    assert_eq!(std::fs::read(dir.join("ledger.jsonl")).unwrap(), before);
    assert!(!Path::new(&format!("{out}.key")).exists());
    assert!(!Path::new(&img).join("satchel.toml").exists());
}

#[test]
fn a_failed_enrollment_leaves_no_image_behind() {
    let (tmp, ca) = crate::harness::test_ca();
    let signer = signer_pub(tmp.path());
    let out = tmp.path().join("img");
    let opts = satchel_pki::enroll::EnrollOptions {
        mac: Some(crate::harness::mac("aa-bb-cc-dd-ee-03")),
        site: Some(crate::harness::site("dc1")),
        signers: vec![signer.into()],
        domain: "boot.example.test".into(),
        out: out.clone(),
        ..Default::default()
    };
    // A broken ledger stops the enrollment after the directory was made.
    let ledger = ca.dir().join("ledger.jsonl");
    let good = std::fs::read(&ledger).unwrap();
    std::fs::write(&ledger, [&good[..], b"forged\n"].concat()).unwrap();
    assert!(ca.enroll(&opts).is_err());
    assert!(!out.exists());
    // Repaired, the same enrollment succeeds.
    std::fs::write(&ledger, &good).unwrap();
    let done = ca.enroll(&opts).unwrap();
    assert_eq!(done.recipients.len(), 2);
    assert!(out.join("satchel.toml").exists());
}

#[test]
fn passphrase_protects_the_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("ca");
    let out = |n: &str| t.join(n).to_str().unwrap().to_string();
    let pass = Some("correct horse battery staple");

    let o = pki(
        &dir,
        pass,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "Example Boot CA",
            "--validity-days",
            "1000",
        ],
    );
    ok(o);
    assert!(dir.join("ca.key.age").exists());
    assert!(!dir.join("ca.key").exists());
    assert_eq!(mode(&dir.join("ca.key.age")), 0o600);
    // The key file is an age file, not a PEM key.
    let enc = std::fs::read(dir.join("ca.key.age")).unwrap();
    assert!(enc.starts_with(b"age-encryption.org/v1"));
    // Without the passphrase, or with a wrong one, nothing is signed.
    let o = pki(
        &dir,
        None,
        &["issue", "admin", "--name", "bob", "--out", &out("bob")],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("SATCHEL_PKI_PASSPHRASE"), "{}", text(&o));
    let o = pki(
        &dir,
        Some("wrong"),
        &["issue", "admin", "--name", "bob", "--out", &out("bob")],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("passphrase"), "{}", text(&o));
    // init twice is refused.
    assert!(!pki(
        &dir,
        pass,
        &["init", "--domain", "satchel.test", "--name", "Again"]
    )
    .status
    .success());

    let o = ok(pki(
        &dir,
        pass,
        &["issue", "admin", "--name", "bob", "--out", &out("bob")],
    ));
    assert!(o.contains("issued admin certificate"), "{o}");
    let v = ok(pki(&dir, None, &["ledger", "verify"]));
    assert!(v.contains("ledger OK: 2 lines"), "{v}");
}

/// Runs `satchel-pki` on a pseudo-terminal (util-linux `script`) and types
/// `answers`, each after its prompt appears. Returns everything the
/// terminal showed.
fn on_terminal(args: &str, answers: &[(&str, &str)]) -> String {
    use std::io::Write;
    let timeout = crate::harness::PROCESS_TIMEOUT;
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .env_remove("SATCHEL_PKI_PASSPHRASE");
    let (child, mut stdin) = satchel_test_support::Proc::spawn_with_stdin(cmd, timeout).unwrap();
    let mut seen = 0;
    for (prompt, answer) in answers {
        match child.wait_for_stdout(|text| text.get(seen..)?.find(prompt), timeout) {
            Some(i) => seen += i + prompt.len(),
            None => panic!(
                "no {prompt:?} prompt; the terminal showed {:?}",
                child.stdout_so_far()
            ),
        }
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    assert!(
        child.wait_exit(timeout).is_some(),
        "satchel-pki on a terminal did not finish"
    );
    drop(stdin);
    child.wait().stdout
}

#[test]
fn the_passphrase_prompt_does_not_echo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let secret = "typed-on-a-terminal";
    let shown = on_terminal(
        &format!(
            "--dir {} init --domain satchel.test --name Terminal",
            dir.display()
        ),
        &[("CA key passphrase:", secret), ("again:", secret)],
    );
    assert!(shown.contains("CA created"), "{shown:?}");
    assert!(!shown.contains(secret), "{shown:?}");
    satchel_pki::ca::Ca::open(&dir, &satchel_pki::ca::KeySecret::passphrase(secret)).unwrap();
    // Two different answers: refused, nothing created.
    let dir2 = tmp.path().join("ca2");
    let shown = on_terminal(
        &format!(
            "--dir {} init --domain satchel.test --name Terminal",
            dir2.display()
        ),
        &[("CA key passphrase:", "one"), ("again:", "two")],
    );
    assert!(shown.contains("differ"), "{shown:?}");
    assert!(!dir2.join("ca.crt").exists());
}

#[test]
fn completions_man_and_json_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let script = ok(pki(&dir, None, &["completions", "bash"]));
    assert!(script.contains("satchel-pki") && script.contains("revoke"));
    let page = ok(pki(&dir, None, &["man"]));
    assert!(page.contains(".TH satchel-pki 1"));
    let mandir = tmp.path().join("man");
    ok(pki(&dir, None, &["man", "--out", mandir.to_str().unwrap()]));
    assert!(mandir.join("satchel-pki-revoke.1").is_file());

    let json = |o: Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
    };
    ok(pki(
        &dir,
        None,
        &[
            "init",
            "--domain",
            "satchel.test",
            "--name",
            "J CA",
            "--insecure-plaintext-key",
        ],
    ));
    let out = tmp.path().join("h");
    let issued = json(pki(
        &dir,
        None,
        &[
            "--json",
            "issue",
            "host",
            "--mac",
            "52:54:00:00:00:01",
            "--out",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(issued["kind"], "host");
    assert_eq!(issued["scope"], "host/52-54-00-00-00-01");
    let serial = issued["serial"].as_str().unwrap().to_string();
    // Reasons are a typed value: RFC names, any case, kebab-case too.
    let revoked = json(pki(
        &dir,
        None,
        &["revoke", &serial, "--reason", "KEY-compromise", "--json"],
    ));
    assert_eq!(revoked["reason"], "keyCompromise");
    let bad = pki(&dir, None, &["revoke", &serial, "--reason", "bogus"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("cessationOfOperation"),
        "{}",
        text(&bad)
    );
    let verified = json(pki(&dir, None, &["--json", "ledger", "verify"]));
    assert_eq!(verified["ok"], true);
    // A failure with --json is a JSON error object, same exit status.
    let missing = tmp.path().join("nothing");
    let failed = pki(&missing, None, &["--json", "ledger", "head"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(json(failed)["error"]["message"].is_string());
}
