//! The audit on a PKI directory made by `satchel_pki::ca`: a freshly issued
//! set is clean, and the ledger lints fire when the ledger and the
//! certificates disagree.

use std::path::Path;

use rcgen::{Issuer, KeyPair};
use satchel_names::{Mac, SiteName};
use satchel_pki::audit::{self, AuditInput, Report, Status};
use satchel_pki::ca::{Ca, Issued, Reason};
use satchel_pki::AdminName;

use super::lints::{global, on};
use super::support::{self, leaf_params, Leaf, LeafKind};

/// A CA with one certificate of every kind and a CRL, all made by the
/// issuing code.
pub fn issued_set(dir: &Path) -> (Ca, Vec<Issued>) {
    let ca = Ca::init_insecure(dir, "Audit Ledger CA").expect("init");
    let issued = vec![
        ca.issue_server(
            &["cfg.example.test".to_string()],
            &["127.0.0.1".parse().expect("ip")],
            None,
        )
        .expect("server"),
        // A host of another site than the site certificate below: a site
        // image beside host images of its own site is warned about.
        ca.issue_host(
            Mac::parse(support::MAC).expect("mac"),
            Some(SiteName::parse("dc0").expect("site")),
            None,
        )
        .expect("host"),
        ca.issue_host(Mac::parse("02-00-00-00-00-01").expect("mac"), None, None)
            .expect("host without site"),
        ca.issue_site(SiteName::parse("dc1").expect("site"), None)
            .expect("site"),
        ca.issue_admin(AdminName::parse("alice").expect("admin"), None)
            .expect("admin"),
    ];
    ca.crl(None).expect("crl");
    (ca, issued)
}

fn audit_dir(dir: &Path) -> Report {
    audit::audit(&AuditInput::new(dir)).expect("audit")
}

#[test]
fn freshly_issued_set_has_no_findings() {
    let t = tempfile::tempdir().unwrap();
    let (_ca, issued) = issued_set(t.path());
    // The certificates as `issue --out` writes them, beside the CA's copies.
    std::fs::create_dir(t.path().join("out")).unwrap();
    for (i, c) in issued.iter().enumerate() {
        c.write(&t.path().join(format!("out/leaf{i}"))).unwrap();
    }
    let r = audit_dir(t.path());
    assert!(
        r.findings.is_empty(),
        "findings on a freshly issued set:\n{}",
        r.to_text()
    );
    assert_eq!(r.certificates.len(), issued.len() + 1);
    assert!(r.certificates.iter().all(|c| c.status == Status::Valid));
    assert!(r.certificates[0].audited_ca);
    assert!(r.certificates[1..]
        .iter()
        .all(|c| c.in_ledger == Some(true) && c.sources.len() == 2));
    assert_eq!(r.ledger.chain_ok, Some(true));
    assert_eq!(r.crl.number, Some(1));
    assert_eq!(r.crl.fresh, Some(true));
    let kinds: Vec<String> = r.certificates.iter().map(|c| c.kind.to_string()).collect();
    assert_eq!(kinds, ["ca", "server", "host", "host", "site", "admin"]);
}

/// Signs a leaf with the CA directory's (plaintext, test-only) key, outside
/// the issuing code, so the ledger never hears of it.
pub fn rogue_leaf(dir: &Path, ca: &Ca) -> Leaf {
    rogue_leaf_from(dir, ca, leaf_params(LeafKind::Admin))
}

fn rogue_leaf_from(dir: &Path, ca: &Ca, params: rcgen::CertificateParams) -> Leaf {
    let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(ca.cert_pem(), key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&leaf_key, &issuer).unwrap();
    Leaf {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key: leaf_key,
    }
}

lint_test!(e_not_in_ledger, {
    let t = tempfile::tempdir().unwrap();
    let (ca, _) = issued_set(t.path());
    let leaf = rogue_leaf(t.path(), &ca);
    std::fs::write(t.path().join("certs/dropped-in.crt"), &leaf.pem).unwrap();
    let r = audit_dir(t.path());
    let entry = r
        .certificates
        .iter()
        .find(|c| c.sha256 == leaf.sha256())
        .unwrap();
    assert_eq!(entry.status, Status::UnknownToLedger);
    assert_eq!(entry.in_ledger, Some(false));
    // Only the dropped-in certificate is unaccounted for.
    assert_eq!(r.finding_ids(), ["e_not_in_ledger"], "{}", r.to_text());
    on(r, &leaf)
});

#[test]
fn a_certificate_reusing_an_issued_serial_is_not_accounted_for() {
    let t = tempfile::tempdir().unwrap();
    let (ca, issued) = issued_set(t.path());
    let mut p = leaf_params(LeafKind::Server);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(
        &hex::decode(&issued[0].serial_hex).unwrap(),
    ));
    let twin = rogue_leaf_from(t.path(), &ca, p);
    std::fs::write(t.path().join("twin.crt"), &twin.pem).unwrap();
    let r = audit_dir(t.path());
    let about_twin: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.certificate.as_deref() == Some(twin.sha256().as_str()))
        .map(|f| (f.id, f.message.as_str()))
        .collect();
    assert!(about_twin.contains(&(
        "e_not_in_ledger",
        format!(
            "serial 0x{} is in the ledger, but for a different certificate",
            issued[0].serial_hex
        )
        .as_str()
    )));
    assert!(about_twin.iter().any(|(id, _)| *id == "e_duplicate_serial"));
}

/// The ledger's lines, rewritten by `f`.
fn tamper(dir: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let p = dir.join("ledger.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    f(&mut lines);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
}

lint_test!(e_ledger_chain_broken, {
    let t = tempfile::tempdir().unwrap();
    issued_set(t.path());
    tamper(t.path(), |l| l[5] = l[5].replace("alice", "mallory"));
    global(audit_dir(t.path()))
});

#[test]
fn every_kind_of_ledger_tampering_is_reported() {
    type Edit = fn(&mut Vec<String>);
    let edits: [(&str, Edit); 5] = [
        ("edit", |l| l[2] = l[2].replace("dc0", "dc2")),
        ("delete", |l| {
            l.remove(2);
        }),
        ("reorder", |l| l.swap(2, 3)),
        ("forged append", |l| {
            let last = l.last().unwrap().clone();
            l.push(last.replace("\"seq\":", "\"seq\":1"));
        }),
        ("garbage line", |l| l.insert(1, "{not json".into())),
    ];
    for (what, edit) in edits {
        let t = tempfile::tempdir().unwrap();
        issued_set(t.path());
        tamper(t.path(), edit);
        let r = audit_dir(t.path());
        assert!(
            r.finding_ids().contains(&"e_ledger_chain_broken"),
            "{what}: {}",
            r.to_text()
        );
        assert_eq!(r.ledger.chain_ok, Some(false), "{what}");
        // A broken ledger proves nothing, so no certificate is judged by it.
        assert!(
            r.certificates.iter().all(|c| c.in_ledger.is_none()),
            "{what}"
        );
    }
}

lint_test!(w_crl_behind_ledger, {
    let t = tempfile::tempdir().unwrap();
    let (ca, issued) = issued_set(t.path());
    ca.revoke(&issued[4].serial_hex, Reason::KeyCompromise)
        .unwrap();
    let r = audit_dir(t.path());
    // The ledger's revocation counts even before the CRL lists it.
    let admin = r
        .certificates
        .iter()
        .find(|c| c.serial == issued[4].serial_hex)
        .unwrap();
    assert_eq!(admin.status, Status::Revoked);
    global(r)
});

#[test]
fn revoked_certificate_shows_as_revoked_and_the_crl_lists_it() {
    let t = tempfile::tempdir().unwrap();
    let (ca, issued) = issued_set(t.path());
    ca.revoke(&issued[0].serial_hex, Reason::Superseded)
        .unwrap();
    ca.crl(None).unwrap();
    let r = audit_dir(t.path());
    assert_eq!(r.crl.number, Some(2));
    assert_eq!(r.crl.revoked_serials, [issued[0].serial_hex.clone()]);
    let server = r
        .certificates
        .iter()
        .find(|c| c.serial == issued[0].serial_hex)
        .unwrap();
    assert_eq!(server.status, Status::Revoked);
    assert!(r.findings.is_empty(), "{}", r.to_text());
}

#[test]
fn deleted_ledger_is_reported_and_certificates_are_not_trusted_to_it() {
    let t = tempfile::tempdir().unwrap();
    issued_set(t.path());
    std::fs::remove_file(t.path().join("ledger.jsonl")).unwrap();
    let r = audit_dir(t.path());
    assert_eq!(r.finding_ids(), ["e_ledger_missing"]);
    assert!(!r.ledger.present);
}
