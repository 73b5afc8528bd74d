//! The ledger under attack: every edit, deletion, reordering and forgery
//! must be reported, and the CA must refuse to extend a broken ledger.

use std::path::Path;

use satchel_pki::ca::{Ca, Reason};
use satchel_pki::ledger::{verify_dir, Ledger, LEDGER_FILE};

use crate::harness::{issue_set, test_ca};

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(LEDGER_FILE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn set_lines(dir: &Path, l: &[String]) {
    let mut s = l.join("\n");
    s.push('\n');
    std::fs::write(dir.join(LEDGER_FILE), s).unwrap();
}

/// A CA with a few events: init, 4 issues, a revoke, a CRL.
fn busy_ca() -> (tempfile::TempDir, Ca) {
    let (tmp, ca) = test_ca();
    let set = issue_set(&ca);
    ca.revoke(&set.site.serial_hex, Reason::CessationOfOperation)
        .unwrap();
    ca.crl(None).unwrap();
    (tmp, ca)
}

fn problems(dir: &Path) -> Vec<String> {
    verify_dir(dir)
        .unwrap()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn an_untouched_ledger_verifies() {
    let (_tmp, ca) = busy_ca();
    let r = verify_dir(ca.dir()).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(r.lines, 7);
    assert_eq!(r.head.unwrap().seq, 6);
    assert!(r.missing_files.is_empty());
    let l = Ledger::open(ca.dir()).unwrap();
    assert_eq!(l.entries().len(), 7);
    assert_eq!(l.issued_serials().len(), 5);
    assert_eq!(l.revoked().len(), 1);
    assert_eq!(l.last_crl_number(), 1);
}

#[test]
fn tampering_is_detected() {
    type Tamper = fn(&mut Vec<String>);
    let cases: Vec<(&str, Tamper)> = vec![
        ("edit a subject", |l| l[2] = l[2].replacen("CN=", "CN=x", 1)),
        ("edit a revoke reason", |l| {
            l[5] = l[5].replace("cessationOfOperation", "superseded")
        }),
        ("edit the signature", |l| {
            let n = l[3].len();
            let last = if l[3].as_bytes()[n - 3] == b'0' {
                "1"
            } else {
                "0"
            };
            l[3].replace_range(n - 3..n - 2, last);
        }),
        ("delete a middle line", |l| {
            l.remove(3);
        }),
        ("delete the first line", |l| {
            l.remove(0);
        }),
        ("swap two lines", |l| l.swap(2, 3)),
        ("move the last line first", |l| {
            let last = l.pop().unwrap();
            l.insert(0, last);
        }),
        ("replay a line at the end", |l| {
            let again = l[5].clone();
            l.push(again);
        }),
        ("append a forged line with a wrong signature", |l| {
            let last = l.last().unwrap().clone();
            let forged = last.replace("\"seq\":6", "\"seq\":7");
            l.push(forged);
        }),
        ("empty a line", |l| l[4].clear()),
        ("whitespace inside a line", |l| {
            l[4] = l[4].replacen(',', ", ", 1)
        }),
    ];
    for (name, tamper) in cases {
        let (_tmp, ca) = busy_ca();
        let mut l = lines(ca.dir());
        tamper(&mut l);
        set_lines(ca.dir(), &l);
        let p = problems(ca.dir());
        assert!(!p.is_empty(), "{name}: not detected");
        // The CA refuses to sign on top of a broken ledger.
        let e = ca
            .issue_site(crate::harness::site("dc9"), None)
            .unwrap_err();
        assert!(e.to_string().contains("broken"), "{name}: {e}");
    }
}

#[test]
fn a_correctly_chained_line_forged_without_the_ca_key_is_detected() {
    use rcgen::SigningKey;
    use satchel_pki::ledger::{Entry, Event};
    let (_tmp, ca) = busy_ca();
    let ledger = Ledger::open(ca.dir()).unwrap();
    let head = ledger.head().unwrap();
    let serial = ledger.issued_serials().keys().next().unwrap().clone();
    // Everything right but the key: seq, prev and canonical form are correct.
    let entry = Entry {
        seq: head.seq + 1,
        time: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap(),
        prev: head.hash,
        event: Event::Revoke {
            serial,
            reason: "superseded".into(),
        },
    };
    let body = serde_json::to_string(&entry).unwrap();
    let attacker = rcgen::KeyPair::generate().unwrap();
    let sig = attacker.sign(body.as_bytes()).unwrap();
    let line = format!(
        "{},\"sig\":\"{}\"}}",
        body.strip_suffix('}').unwrap(),
        hex::encode(sig)
    );
    let mut l = lines(ca.dir());
    l.push(line);
    set_lines(ca.dir(), &l);
    let p = problems(ca.dir());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("signature"), "{p:?}");
}

#[test]
fn unledgered_certificates_and_truncation_are_reported() {
    let (_tmp, ca) = busy_ca();
    // A certificate file dropped into DIR by someone else.
    let (_tmp2, other) = test_ca();
    let stray = issue_set(&other).admin;
    std::fs::write(ca.dir().join("certs/stray.pem"), stray.cert_pem.as_bytes()).unwrap();
    std::fs::create_dir_all(ca.dir().join("deep/er")).unwrap();
    std::fs::write(ca.dir().join("deep/er/x.der"), stray.cert_der.as_ref()).unwrap();
    let r = verify_dir(ca.dir()).unwrap();
    assert_eq!(r.unledgered.len(), 2, "{:?}", r.problems);
    assert_eq!(r.problems.len(), 2);

    // A CRL in DIR that the CA never recorded (here: another CA's).
    let (_t, other2) = crate::harness::test_ca_named("Third CA");
    other2.crl(None).unwrap();
    std::fs::copy(other2.dir().join("crl.pem"), ca.dir().join("crl.pem")).unwrap();
    let r = verify_dir(ca.dir()).unwrap();
    assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
    assert!(r.problems[2].message.contains("crl.pem"));
    std::fs::write(ca.dir().join("crl.pem"), b"junk").unwrap();
    assert_eq!(verify_dir(ca.dir()).unwrap().problems.len(), 3);

    // Truncation: the last issue line removed while its certificate stays.
    let (_tmp3, ca2) = test_ca();
    issue_set(&ca2);
    let mut l = lines(ca2.dir());
    l.pop();
    set_lines(ca2.dir(), &l);
    let r = verify_dir(ca2.dir()).unwrap();
    assert_eq!(r.unledgered.len(), 1, "{:?}", r.problems);
    // A removed copy is noted, not a chain problem.
    let (_tmp4, ca3) = busy_ca();
    let set = issue_set(&ca3);
    std::fs::remove_file(&set.host.copy).unwrap();
    let r = verify_dir(ca3.dir()).unwrap();
    assert!(r.is_clean());
    assert_eq!(r.missing_files.len(), 1);
}

#[test]
fn hostile_ledger_bytes_are_reported_not_panicked_on() {
    let (_tmp, ca) = busy_ca();
    let good = std::fs::read(ca.dir().join(LEDGER_FILE)).unwrap();
    let first_line = String::from_utf8(good.clone())
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"\n".to_vec(),
        b"{}\n".to_vec(),
        b"not json\n".to_vec(),
        vec![0xff, 0xfe, b'\n'],
        vec![0u8; 100],
        format!("{}\n", "x".repeat(70 * 1024)).into_bytes(),
        format!("{}\n", first_line.replace("\"sig\":\"", "\"sig\":\"ZZ")).into_bytes(),
        format!("{}\n", first_line.to_ascii_uppercase()).into_bytes(),
        format!(
            "{}\n",
            first_line.replace("\"event\":\"init\"", "\"event\":\"pwn\"")
        )
        .into_bytes(),
        format!("{}\n", first_line.replacen("{", "{\"extra\":1,", 1)).into_bytes(),
        format!("{}\n", first_line.replace("\"seq\":0", "\"seq\":-1")).into_bytes(),
        format!(
            "{}\n",
            first_line.replace("\"seq\":0", "\"seq\":99999999999999999999999")
        )
        .into_bytes(),
        first_line.clone().into_bytes(), // no final newline
        [good.clone(), b"\n".to_vec()].concat(),
        [good.clone(), b"{\"seq\":7}\n".to_vec()].concat(),
    ];
    for (i, c) in cases.iter().enumerate() {
        std::fs::write(ca.dir().join(LEDGER_FILE), c).unwrap();
        let p = problems(ca.dir());
        assert!(!p.is_empty(), "case {i} passed verification");
    }
    // The untouched bytes still parse into every line.
    let l = Ledger::parse(Path::new("x"), &good);
    assert_eq!(l.lines().len(), 7);
    assert!(l.lines().iter().all(|x| x.entry.is_ok()));
}

#[test]
fn a_damaged_ca_directory_is_refused() {
    use satchel_pki::ca::KeySecret;
    let (_tmp, ca) = busy_ca();
    let dir = ca.dir().to_path_buf();
    let (_tmp2, other) = crate::harness::test_ca_named("Other CA");
    let good_key = std::fs::read(dir.join("ca.key")).unwrap();
    // Another CA's key beside our certificate.
    std::fs::copy(other.dir().join("ca.key"), dir.join("ca.key")).unwrap();
    let e = Ca::open_insecure(&dir).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    // Damaged key files.
    for bad in [
        &b""[..],
        b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        &[0xffu8; 64][..],
    ] {
        std::fs::write(dir.join("ca.key"), bad).unwrap();
        assert!(Ca::open_insecure(&dir).is_err());
    }
    std::fs::write(dir.join("ca.key"), &good_key).unwrap();
    Ca::open_insecure(&dir).unwrap();
    // A passphrase for a plaintext CA, a damaged certificate, a missing CA.
    assert!(Ca::open(&dir, &KeySecret::passphrase("x")).is_err());
    let cert = std::fs::read(dir.join("ca.crt")).unwrap();
    for bad in [
        &b""[..],
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"junk",
    ] {
        std::fs::write(dir.join("ca.crt"), bad).unwrap();
        assert!(Ca::open_insecure(&dir).is_err());
        assert!(verify_dir(&dir).is_err());
    }
    std::fs::write(dir.join("ca.crt"), &cert).unwrap();
    assert!(Ca::open_insecure(&dir.join("nowhere")).is_err());
    // init refuses a directory that holds a CA.
    assert!(Ca::init_insecure(&dir, "Again").is_err());
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = satchel_pki::ca::InitOptions::insecure("Short CA");
    opts.validity_days = 60;
    let ca = Ca::init(&tmp.path().join("ca"), opts).unwrap();
    let e = ca
        .issue_server(&["localhost".into()], &[], None)
        .unwrap_err();
    assert!(e.to_string().contains("CA expires"), "{e}");
    let ok = ca
        .issue_server(&["localhost".into()], &[], Some(30))
        .unwrap();
    assert!(ok.not_after < ca.not_after().unwrap());
    // The refused request left no trace.
    assert_eq!(Ledger::open(ca.dir()).unwrap().entries().len(), 2);
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let (_tmp, ca) = test_ca();
    let dir = ca.dir().to_path_buf();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                // Each worker opens the CA itself, as separate commands would.
                let ca = Ca::open_insecure(&dir).unwrap();
                for i in 0..5 {
                    let s = crate::harness::site(&format!("w{w}s{i}"));
                    let issued = ca.issue_site(s.clone(), None).unwrap();
                    if i == 4 {
                        ca.revoke(&issued.serial_hex, Reason::Superseded).unwrap();
                        ca.crl(None).unwrap();
                    }
                    ca.site_identity(&crate::harness::site("shared")).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let r = verify_dir(&dir).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    let l = Ledger::open(&dir).unwrap();
    // init + 20 issues + 4 revokes + 4 CRLs + one shared site identity.
    assert_eq!(r.lines, 1 + 20 + 4 + 4 + 1);
    assert_eq!(l.last_crl_number(), 4);
    assert!(l.site_recipient("shared").is_some());
}
