//! One test per lint id: each crafts the defect and checks the lint fires
//! (on the crafted certificate, when the lint is about one). `every_lint_has_a_test`
//! keeps this list complete.

use rcgen::{
    BasicConstraints, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber, PKCS_ED25519,
};
use satchel_pki::audit::{self, lints::LINTS, AuditInput, PresentedChain, Report};
use time::Duration;

use super::support::*;

/// What a lint test produced: the report, and the certificate the finding
/// must be about (None for findings about files, the ledger or the CRL).
pub struct Crafted {
    pub report: Report,
    pub cert: Option<String>,
}

pub fn on(report: Report, leaf: &Leaf) -> Crafted {
    Crafted {
        report,
        cert: Some(leaf.sha256()),
    }
}

pub fn global(report: Report) -> Crafted {
    Crafted { report, cert: None }
}

pub fn check(id: &str, c: Crafted) {
    assert!(
        LINTS.iter().any(|l| l.id == id),
        "{id} is not a registered lint"
    );
    let hits: Vec<_> = c.report.findings.iter().filter(|f| f.id == id).collect();
    assert!(
        !hits.is_empty(),
        "{id} did not fire; findings: {:?}",
        c.report.finding_ids()
    );
    if let Some(sha) = &c.cert {
        assert!(
            hits.iter().any(|f| f.certificate.as_ref() == Some(sha)),
            "{id} fired but not on the crafted certificate: {hits:?}"
        );
    }
    for f in hits {
        assert!(!f.hint.is_empty() && !f.message.is_empty());
    }
}

macro_rules! lint_test {
    ($id:ident, $body:block) => {
        #[test]
        fn $id() {
            let crafted: $crate::lints::Crafted = $body;
            $crate::lints::check(stringify!($id), crafted);
        }
    };
}

/// A CA directory with one crafted leaf in `certs/`.
fn leaf_in_dir(p: rcgen::CertificateParams) -> Crafted {
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&p);
    let d = Dir::with_ca(&ca);
    d.write("certs/leaf.crt", &leaf.pem);
    on(d.audit(), &leaf)
}

/// A directory whose audited CA is built from `p`.
fn ca_in_dir(p: rcgen::CertificateParams) -> Crafted {
    let ca = Ca::from_params(p);
    let d = Dir::new();
    d.write("ca.crt", &ca.pem);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&ca.der))
    };
    Crafted {
        report: d.audit(),
        cert: Some(sha),
    }
}

/// A directory holding a certificate made by openssl.
fn openssl_in_dir(pem: String) -> Crafted {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    d.write("certs/crafted.crt", &pem);
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.as_ref().to_vec())
        .expect("pem");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&der))
    };
    Crafted {
        report: d.audit(),
        cert: Some(sha),
    }
}

lint_test!(e_cert_unparseable, {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    d.write(
        "certs/garbage.crt",
        "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
    );
    d.write("certs/binary.der", [0x30u8, 0x82, 0xff, 0xff, 0x01]);
    let r = d.audit();
    assert!(
        r.findings
            .iter()
            .filter(|f| f.id == "e_cert_unparseable")
            .count()
            >= 2
    );
    global(r)
});

lint_test!(w_file_not_read, {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    let big = usize::try_from(satchel_pki::audit::limits::MAX_FILE_BYTES).unwrap() + 1;
    d.write("certs/huge.pem", vec![b'-'; big]);
    global(d.audit())
});

lint_test!(n_symlink_not_followed, {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    std::os::unix::fs::symlink(d.path().join("ca.crt"), d.path().join("ca-link.crt")).unwrap();
    global(d.audit())
});

lint_test!(e_extension_invalid, {
    let mut p = leaf_params(LeafKind::Admin);
    // keyUsage whose content is a NULL, not a BIT STRING.
    p.key_usages.clear();
    p.custom_extensions
        .push(ext(OID_KEY_USAGE, vec![0x05, 0x00], true));
    leaf_in_dir(p)
});

lint_test!(e_ca_missing_key_cert_sign, {
    let mut p = ca_params("No KeyCertSign CA");
    p.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_in_dir(p)
});

lint_test!(w_ca_names_no_domain, {
    let mut p = ca_params("Older CA");
    p.subject_alt_names = Vec::new();
    ca_in_dir(p)
});

lint_test!(e_ca_missing_crl_sign, {
    let mut p = ca_params("No CRLSign CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca_in_dir(p)
});

lint_test!(e_ca_basic_constraints_not_critical, {
    let mut p = ca_params("Soft BC CA");
    p.is_ca = IsCa::NoCa;
    // SEQUENCE { BOOLEAN TRUE, INTEGER 0 }, not critical.
    p.custom_extensions.push(ext(
        OID_BASIC_CONSTRAINTS,
        vec![0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00],
        false,
    ));
    p.custom_extensions.push(ski_ext(1));
    ca_in_dir(p)
});

lint_test!(e_leaf_is_ca, {
    let mut p = leaf_params(LeafKind::Host);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    leaf_in_dir(p)
});

lint_test!(e_leaf_path_len_present, {
    let mut p = leaf_params(LeafKind::Site);
    p.is_ca = IsCa::NoCa;
    // SEQUENCE { INTEGER 0 }: cA false (default) with a pathLenConstraint.
    p.custom_extensions.push(ext(
        OID_BASIC_CONSTRAINTS,
        vec![0x30, 0x03, 0x02, 0x01, 0x00],
        true,
    ));
    p.custom_extensions.push(ski_ext(2));
    leaf_in_dir(p)
});

lint_test!(e_leaf_key_usage_cert_sign, {
    let mut p = leaf_params(LeafKind::Server);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    leaf_in_dir(p)
});

lint_test!(e_server_eku_not_server_auth_only, {
    let mut p = leaf_params(LeafKind::Server);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf_in_dir(p)
});

lint_test!(e_client_eku_missing, {
    let mut p = leaf_params(LeafKind::Host);
    p.extended_key_usages.clear();
    leaf_in_dir(p)
});

lint_test!(e_client_eku_missing_client_auth, {
    let mut p = leaf_params(LeafKind::Admin);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    leaf_in_dir(p)
});

lint_test!(e_client_eku_not_client_auth_only, {
    let mut p = leaf_params(LeafKind::Site);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    leaf_in_dir(p)
});

lint_test!(e_san_missing, {
    let mut p = leaf_params(LeafKind::Server);
    p.subject_alt_names.clear();
    leaf_in_dir(p)
});

lint_test!(e_client_san_wildcard, {
    let mut p = leaf_params(LeafKind::Host);
    p.subject_alt_names
        .push(SanType::DnsName("*.nodes.example.test".try_into().unwrap()));
    leaf_in_dir(p)
});

lint_test!(e_host_multiple_macs, {
    let mut p = leaf_params(LeafKind::Host);
    p.subject_alt_names
        .push(uri("https://satchel.test/satchel/host/aa-bb-cc-dd-ee-00"));
    leaf_in_dir(p)
});

lint_test!(e_scope_uri_invalid, {
    let mut p = leaf_params(LeafKind::Host);
    p.subject_alt_names = vec![uri("https://satchel.test/satchel/host/AA:BB:CC:DD:EE:FF")];
    leaf_in_dir(p)
});

lint_test!(e_server_has_scope_uri, {
    let mut p = leaf_params(LeafKind::Server);
    p.subject_alt_names
        .push(uri("https://satchel.test/satchel/printer/x"));
    leaf_in_dir(p)
});

lint_test!(e_scope_uri_old_form, {
    let mut p = leaf_params(LeafKind::Host);
    p.subject_alt_names = vec![
        uri("satchel://host/aa-bb-cc-dd-ee-ff"),
        uri("satchel://site/dc1"),
    ];
    leaf_in_dir(p)
});

#[test]
fn e_scope_uri_old_form_also_flags_the_authorityless_form() {
    let mut p = leaf_params(LeafKind::Admin);
    p.subject_alt_names = vec![uri("satchel:admin:alice")];
    check("e_scope_uri_old_form", leaf_in_dir(p));
}

lint_test!(e_scope_uri_foreign_domain, {
    let mut p = leaf_params(LeafKind::Site);
    p.subject_alt_names = vec![uri("https://other.example.net/satchel/site/dc1")];
    leaf_in_dir(p)
});

lint_test!(e_san_uri_syntax, {
    let mut p = leaf_params(LeafKind::Admin);
    p.subject_alt_names
        .push(uri("https://satchel.test/satchel/admin/al ice"));
    leaf_in_dir(p)
});

lint_test!(e_san_uri_authority_not_fqdn, {
    let mut p = leaf_params(LeafKind::Admin);
    p.subject_alt_names.push(uri("https://intranet/alice"));
    leaf_in_dir(p)
});

lint_test!(e_san_dns_name_syntax, {
    let mut p = leaf_params(LeafKind::Server);
    p.subject_alt_names
        .push(SanType::DnsName("-boot.example.net".try_into().unwrap()));
    leaf_in_dir(p)
});

lint_test!(w_san_dns_name_single_label, {
    let mut p = leaf_params(LeafKind::Server);
    p.subject_alt_names
        .push(SanType::DnsName("localhost".try_into().unwrap()));
    leaf_in_dir(p)
});

lint_test!(e_serial_not_positive, {
    let mut p = leaf_params(LeafKind::Admin);
    p.serial_number = Some(SerialNumber::from_slice(&[0]));
    leaf_in_dir(p)
});

lint_test!(e_serial_too_long, {
    let mut p = leaf_params(LeafKind::Admin);
    p.serial_number = Some(SerialNumber::from_slice(&[0x5a; 21]));
    leaf_in_dir(p)
});

lint_test!(e_serial_low_entropy, {
    let mut p = leaf_params(LeafKind::Admin);
    p.serial_number = Some(SerialNumber::from_slice(&[0x01, 0x02, 0x03]));
    leaf_in_dir(p)
});

lint_test!(e_rsa_key_too_small, {
    openssl_in_dir(openssl_leaf(&["-newkey", "rsa:1024"], "-sha256"))
});

lint_test!(e_ec_curve_not_nist, {
    openssl_in_dir(openssl_leaf(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
        "-sha256",
    ))
});

lint_test!(w_key_algorithm_unexpected, {
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign_key(
        &leaf_params(LeafKind::Admin),
        KeyPair::generate_for(&PKCS_ED25519).unwrap(),
    );
    let d = Dir::with_ca(&ca);
    d.write("certs/ed.crt", &leaf.pem);
    on(d.audit(), &leaf)
});

lint_test!(e_signature_weak_hash, {
    openssl_in_dir(openssl_leaf(&["-newkey", "rsa:2048"], "-sha1"))
});

lint_test!(e_signature_algorithm_mismatch, {
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&leaf_params(LeafKind::Admin));
    // ecdsa-with-SHA256 → ecdsa-with-SHA384 in tbsCertificate.signature only
    // (its first occurrence; the outer one follows the TBS).
    let oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let mut der = leaf.der.clone();
    let at = der
        .windows(oid.len())
        .position(|w| w == oid)
        .expect("ecdsa-with-SHA256 in the TBS");
    der[at + oid.len() - 1] = 0x03;
    let d = Dir::with_ca(&ca);
    d.write("certs/patched.der", &der);
    let r = d.audit();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&der))
    };
    // The patch also breaks the signature, which must be noticed too.
    assert!(ids_for(&r, &sha).contains(&"e_signature_invalid"));
    Crafted {
        report: r,
        cert: Some(sha),
    }
});

/// A CA with the audited CA's name but another key: what a forger has.
fn impostor_leaf() -> (Dir, Leaf) {
    let ca = Ca::new("Audit Test CA");
    let impostor = Ca::new("Audit Test CA");
    let leaf = impostor.sign(&leaf_params(LeafKind::Server));
    let d = Dir::with_ca(&ca);
    d.write("certs/forged.crt", &leaf.pem);
    (d, leaf)
}

lint_test!(e_signature_invalid, {
    let (d, leaf) = impostor_leaf();
    on(d.audit(), &leaf)
});

lint_test!(e_aki_mismatch, {
    let (d, leaf) = impostor_leaf();
    on(d.audit(), &leaf)
});

lint_test!(w_issuer_unknown, {
    let ca = Ca::new("Audit Test CA");
    let other = Ca::new("Some Other CA");
    let leaf = other.sign(&leaf_params(LeafKind::Server));
    let d = Dir::with_ca(&ca);
    let extra = d.write("elsewhere/foreign.pem", &leaf.pem);
    // Given as an extra file, as a reviewer would.
    let mut input = AuditInput::new(d.path().join("does-not-matter"));
    input.dir = d.path().to_path_buf();
    input.extra = vec![extra];
    on(audit::audit(&input).unwrap(), &leaf)
});

lint_test!(e_validity_exceeds_policy, {
    let mut p = leaf_params(LeafKind::Server);
    p.not_after = now() + Duration::days(120);
    leaf_in_dir(p)
});

lint_test!(e_validity_inverted, {
    let mut p = leaf_params(LeafKind::Admin);
    p.not_before = now() + Duration::days(10);
    p.not_after = now() + Duration::days(1);
    leaf_in_dir(p)
});

lint_test!(e_missing_subject_key_identifier, {
    let mut p = leaf_params(LeafKind::Admin);
    // rcgen writes SKI and basicConstraints only when is_ca is not NoCa.
    p.is_ca = IsCa::NoCa;
    leaf_in_dir(p)
});

lint_test!(e_missing_authority_key_identifier, {
    let mut p = leaf_params(LeafKind::Admin);
    p.use_authority_key_identifier_extension = false;
    leaf_in_dir(p)
});

lint_test!(w_expiring_soon, {
    let mut p = leaf_params(LeafKind::Server);
    p.not_after = now() + Duration::days(3);
    leaf_in_dir(p)
});

lint_test!(w_cert_kind_unknown, {
    let mut p = leaf_params(LeafKind::Admin);
    p.subject_alt_names = vec![SanType::DnsName("laptop.example.test".try_into().unwrap())];
    leaf_in_dir(p)
});

lint_test!(e_duplicate_serial, {
    let ca = Ca::new("Audit Test CA");
    let p1 = leaf_params(LeafKind::Admin);
    let mut p2 = leaf_params(LeafKind::Server);
    p2.serial_number = p1.serial_number.clone();
    let a = ca.sign(&p1);
    let b = ca.sign(&p2);
    let d = Dir::with_ca(&ca);
    d.write("certs/a.crt", &a.pem);
    d.write("certs/b.crt", &b.pem);
    let r = d.audit();
    assert!(ids_for(&r, &a.sha256()).contains(&"e_duplicate_serial"));
    on(r, &b)
});

lint_test!(w_key_reused, {
    let ca = Ca::new("Audit Test CA");
    let key = KeyPair::generate().unwrap();
    let key2 = KeyPair::from_pem(&key.serialize_pem()).unwrap();
    let a = ca.sign_key(&leaf_params(LeafKind::Admin), key);
    let b = ca.sign_key(&leaf_params(LeafKind::Server), key2);
    let d = Dir::with_ca(&ca);
    d.write("certs/a.crt", &a.pem);
    d.write("certs/b.crt", &b.pem);
    on(d.audit(), &b)
});

lint_test!(w_duplicate_live_scope, {
    let ca = Ca::new("Audit Test CA");
    let a = ca.sign(&leaf_params(LeafKind::Host));
    let b = ca.sign(&leaf_params(LeafKind::Host));
    let d = Dir::with_ca(&ca);
    d.write("certs/a.crt", &a.pem);
    d.write("certs/b.crt", &b.pem);
    let r = d.audit();
    assert!(ids_for(&r, &a.sha256()).contains(&"w_duplicate_live_scope"));
    on(r, &b)
});

lint_test!(e_presented_cert_not_valid, {
    let ca = Ca::new("Audit Test CA");
    let mut p = leaf_params(LeafKind::Server);
    p.not_before = now() - Duration::days(60);
    p.not_after = now() - Duration::days(1);
    let leaf = ca.sign(&p);
    let d = Dir::with_ca(&ca);
    let mut input = AuditInput::new(d.path());
    input.presented = Some(PresentedChain {
        address: "127.0.0.1:8443".into(),
        certificates: vec![leaf.der.clone(), ca.der.clone()],
    });
    on(audit::audit(&input).unwrap(), &leaf)
});

lint_test!(e_presented_name_mismatch, {
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&leaf_params(LeafKind::Server));
    let d = Dir::with_ca(&ca);
    let mut input = AuditInput::new(d.path());
    input.presented = Some(PresentedChain {
        address: "other.example.test:443".into(),
        certificates: vec![leaf.der.clone()],
    });
    on(audit::audit(&input).unwrap(), &leaf)
});

#[test]
fn host_names_match_like_a_tls_client() {
    let ca = Ca::new("Audit Test CA");
    let mut p = leaf_params(LeafKind::Server);
    p.subject_alt_names = vec![
        SanType::DnsName("cfg.example.test".try_into().unwrap()),
        SanType::DnsName("*.nodes.example.test".try_into().unwrap()),
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        SanType::IpAddress("::1".parse().unwrap()),
    ];
    let c = satchel_pki::audit::Cert::from_der(&ca.sign(&p).der).unwrap();
    let names_host = satchel_pki::audit::lints::names_host;
    for good in [
        "cfg.example.test",
        "CFG.Example.TEST.",
        "a.nodes.example.test",
        "127.0.0.1",
        "::1",
        "0:0:0:0:0:0:0:1",
    ] {
        assert!(names_host(&c, good), "{good}");
    }
    for bad in [
        "",
        "example.test",
        "nodes.example.test",
        "a.b.nodes.example.test",
        ".nodes.example.test",
        "cfg.example.test.evil",
        "127.0.0.2",
        "::2",
        "*.nodes.example.test.x",
    ] {
        assert!(!names_host(&c, bad), "{bad}");
    }
}

lint_test!(e_ca_missing, { global(Dir::new().audit()) });

lint_test!(e_ledger_missing, {
    global(Dir::with_ca(&Ca::new("Audit Test CA")).audit())
});

lint_test!(w_site_image_beside_host_images, {
    use satchel_names::{Mac, SiteName};
    let d = tempfile::tempdir().expect("tmp");
    let ca = satchel_pki::ca::Ca::init_insecure(d.path(), "Audit Site CA").expect("init");
    let dc1 = SiteName::parse("dc1").expect("site");
    ca.issue_host(
        Mac::parse("02-00-00-00-00-07").expect("mac"),
        Some(dc1.clone()),
        None,
    )
    .expect("host");
    ca.issue_site(dc1, None).expect("site");
    // A host of another site, and a revoked site certificate, do not count.
    ca.issue_host(
        Mac::parse("02-00-00-00-00-08").expect("mac"),
        Some(SiteName::parse("dc2").expect("site")),
        None,
    )
    .expect("host");
    let dc3 = SiteName::parse("dc3").expect("site");
    ca.issue_host(
        Mac::parse("02-00-00-00-00-09").expect("mac"),
        Some(dc3.clone()),
        None,
    )
    .expect("host");
    let gone = ca.issue_site(dc3, None).expect("site");
    ca.revoke(&gone.serial_hex, satchel_pki::ca::Reason::Superseded)
        .expect("revoke");
    ca.crl(None).expect("crl");
    let r = audit::audit(&AuditInput::new(d.path())).expect("audit");
    let hits: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.id == "w_site_image_beside_host_images")
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].message.contains("site dc1"), "{hits:?}");
    global(r)
});

lint_test!(w_crl_missing, {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::new();
    d.write("ca.crt", &ca.pem);
    global(d.audit())
});

lint_test!(w_crl_stale, {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::new();
    d.write("ca.crt", &ca.pem);
    d.write("crl.pem", ca.crl(3, now() - Duration::days(1), &[]));
    global(d.audit())
});

lint_test!(e_crl_signature_invalid, {
    let ca = Ca::new("Audit Test CA");
    let impostor = Ca::new("Audit Test CA");
    let d = Dir::new();
    d.write("ca.crt", &ca.pem);
    d.write("crl.pem", impostor.crl(9, now() + Duration::days(7), &[]));
    let r = d.audit();
    // A forged CRL is not the CRL the report shows.
    assert_eq!(r.crl.source, None);
    global(r)
});

#[test]
fn every_lint_has_a_test() {
    let src = include_str!("lints.rs");
    let tested = include_str!("ledger.rs");
    for l in LINTS {
        let needle = format!("lint_test!({},", l.id);
        assert!(
            src.contains(&needle) || tested.contains(&needle),
            "no lint_test! for {}",
            l.id
        );
    }
}

#[test]
fn negative_serial_is_not_positive() {
    // rcgen always encodes serials as positive; openssl writes what it is told.
    let c = openssl_in_dir(openssl_leaf(
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-set_serial",
            "-5",
        ],
        "-sha256",
    ));
    let msg = c
        .report
        .findings
        .iter()
        .find(|f| f.id == "e_serial_not_positive")
        .map(|f| f.message.clone());
    assert_eq!(msg.as_deref(), Some("serial 0xfb is negative"));
    check("e_serial_not_positive", c);
}

#[test]
fn revoked_or_expired_certificates_are_not_expiring_soon() {
    let ca = Ca::new("Audit Test CA");
    let mut p = leaf_params(LeafKind::Server);
    p.not_after = now() + Duration::days(3);
    let revoked = ca.sign(&p);
    let serial = satchel_pki::audit::Cert::from_der(&revoked.der)
        .unwrap()
        .serial_raw;
    let d = Dir::new();
    d.write("ca.crt", &ca.pem);
    d.write("crl.pem", ca.crl(2, now() + Duration::days(7), &[&serial]));
    d.write("certs/revoked.crt", &revoked.pem);
    let r = d.audit();
    assert!(!ids_for(&r, &revoked.sha256()).contains(&"w_expiring_soon"));
}
