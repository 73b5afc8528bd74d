//! What reviewers' tools see: `openssl verify`, `x509 -text`, `crl -text`.

use std::path::Path;

use satchel_pki::ca::{Issued, Reason};

use crate::harness::{issue_set, openssl, test_ca, text, write};

fn x509_text(path: &Path) -> String {
    let o = openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The lines under an extension's header in `openssl x509 -text`.
fn extension<'a>(text: &'a str, name: &str) -> (bool, &'a str) {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix(name) {
            let critical = rest.contains("critical");
            return (critical, lines.next().unwrap_or("").trim());
        }
    }
    panic!("no {name} extension in:\n{text}");
}

fn has_extension(text: &str, name: &str) -> bool {
    text.lines().any(|l| l.trim().starts_with(name))
}

fn save(dir: &Path, name: &str, i: &Issued) -> std::path::PathBuf {
    write(dir, name, i.cert_pem.as_bytes())
}

#[test]
fn every_kind_verifies_and_shows_its_profile() {
    let (tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let ca_file = write(tmp.path(), "ca.pem", ca.cert_pem().as_bytes());
    let ca_text = x509_text(&ca_file);
    assert_eq!(
        extension(&ca_text, "X509v3 Basic Constraints:"),
        (true, "CA:TRUE, pathlen:0")
    );
    assert_eq!(
        extension(&ca_text, "X509v3 Key Usage:"),
        (true, "Certificate Sign, CRL Sign")
    );
    assert!(has_extension(&ca_text, "X509v3 Subject Key Identifier:"));
    assert!(!has_extension(&ca_text, "X509v3 Extended Key Usage:"));
    assert!(ca_text.contains("ASN1 OID: prime256v1"), "{ca_text}");

    let cases = [
        (
            &set.server,
            "TLS Web Server Authentication",
            "DNS:localhost, IP Address:127.0.0.1",
        ),
        (
            &set.host,
            "TLS Web Client Authentication",
            "URI:https://satchel.test/satchel/host/aa-bb-cc-dd-ee-ff, URI:https://satchel.test/satchel/site/dc1",
        ),
        (
            &set.site,
            "TLS Web Client Authentication",
            "URI:https://satchel.test/satchel/site/dc1",
        ),
        (
            &set.admin,
            "TLS Web Client Authentication",
            "URI:https://satchel.test/satchel/admin/alice",
        ),
    ];
    for (i, (issued, eku, san)) in cases.iter().enumerate() {
        let f = save(tmp.path(), &format!("leaf{i}.pem"), issued);
        let o = openssl(&[
            "verify",
            "-CAfile",
            ca_file.to_str().unwrap(),
            "-purpose",
            if i == 0 { "sslserver" } else { "sslclient" },
            f.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}: {}", issued.kind, text(&o));
        let t = x509_text(&f);
        assert_eq!(
            extension(&t, "X509v3 Extended Key Usage:"),
            (false, *eku),
            "{t}"
        );
        assert_eq!(
            extension(&t, "X509v3 Key Usage:"),
            (true, "Digital Signature")
        );
        assert_eq!(
            extension(&t, "X509v3 Basic Constraints:"),
            (true, "CA:FALSE")
        );
        assert_eq!(extension(&t, "X509v3 Subject Alternative Name:").1, *san);
        assert!(has_extension(&t, "X509v3 Subject Key Identifier:"));
        assert!(has_extension(&t, "X509v3 Authority Key Identifier:"));
        // The serial openssl prints is the library's, and it is 16 octets.
        let serial_line = t
            .lines()
            .skip_while(|l| !l.contains("Serial Number:"))
            .nth(1)
            .unwrap()
            .trim()
            .replace(':', "");
        assert_eq!(serial_line.trim_start_matches("00"), issued.serial_hex);
        assert!(issued.serial_hex.len() >= 30, "{}", issued.serial_hex);
        // Validity per kind: notAfter - notBefore is exactly the default.
        let days = (issued.not_after - issued.not_before).whole_days();
        let want = satchel_pki::profile::default_validity_days(issued.kind);
        assert_eq!(days, i64::from(want));
    }
}

#[test]
fn p384_ca_signs_verifiable_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = satchel_pki::ca::InitOptions::insecure("P384 CA");
    opts.curve = satchel_pki::profile::Curve::P384;
    let ca = satchel_pki::ca::Ca::init(&tmp.path().join("ca"), opts).unwrap();
    let host = ca
        .issue_host(crate::harness::mac("00-11-22-33-44-55"), None, None)
        .unwrap();
    let ca_file = write(tmp.path(), "ca.pem", ca.cert_pem().as_bytes());
    let leaf = save(tmp.path(), "host.pem", &host);
    assert!(x509_text(&ca_file).contains("secp384r1"));
    let o = openssl(&[
        "verify",
        "-CAfile",
        ca_file.to_str().unwrap(),
        leaf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The ledger signed with a P-384 key verifies too.
    let report = satchel_pki::ledger::verify_dir(ca.dir()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn crl_lists_the_revoked_serial_and_openssl_enforces_it() {
    let (tmp, ca) = test_ca();
    let set = issue_set(&ca);
    ca.revoke(&set.host.serial_hex, Reason::KeyCompromise)
        .unwrap();
    let crl = ca.crl(None).unwrap();
    assert_eq!(crl.number, 1);
    let crl_file = write(tmp.path(), "crl.pem", crl.pem.as_bytes());
    let o = openssl(&["crl", "-in", crl_file.to_str().unwrap(), "-noout", "-text"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8(o.stdout).unwrap();
    let listed: Vec<String> = t
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.to_ascii_lowercase().trim_start_matches("00").to_string())
        .collect();
    assert_eq!(listed, vec![set.host.serial_hex.clone()]);
    assert!(t.contains("Key Compromise"), "{t}");
    assert!(t.contains("X509v3 CRL Number:"), "{t}");
    assert!(t.contains("X509v3 Authority Key Identifier:"), "{t}");
    // DER parses too, and the number grows.
    let crl2 = ca.crl(None).unwrap();
    assert_eq!(crl2.number, 2);
    let der_file = write(tmp.path(), "crl.der", &crl2.der);
    let o = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der_file.to_str().unwrap(),
        "-noout",
        "-crlnumber",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "crlNumber=0x02");

    let ca_file = write(tmp.path(), "ca.pem", ca.cert_pem().as_bytes());
    let check = |leaf: &Issued, name: &str| {
        let f = save(tmp.path(), name, leaf);
        openssl(&[
            "verify",
            "-CAfile",
            ca_file.to_str().unwrap(),
            "-crl_check",
            "-CRLfile",
            crl_file.to_str().unwrap(),
            f.to_str().unwrap(),
        ])
    };
    let revoked = check(&set.host, "host.pem");
    assert!(!revoked.status.success());
    assert!(text(&revoked).contains("revoked"), "{}", text(&revoked));
    let fine = check(&set.site, "site.pem");
    assert!(fine.status.success(), "{}", text(&fine));
}
