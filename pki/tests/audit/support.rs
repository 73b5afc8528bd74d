//! Helpers for the audit tests: a well-formed CA and leaves built with rcgen
//! (every unsafe rcgen default overridden), a PKI directory on disk, and
//! openssl for what rcgen cannot craft.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use satchel_pki::audit::{self, AuditInput, Report};
use time::{Duration, OffsetDateTime};

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A random positive 128-bit serial with its top bits set, so it always has
/// more than 64 significant bits.
pub fn serial() -> SerialNumber {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&b)
}

pub fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

/// A CA the way the audit wants one.
pub fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.serial_number = Some(serial());
    p.not_before = now() - Duration::minutes(5);
    p.not_after = now() + Duration::days(3650);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.key_identifier_method = KeyIdMethod::Sha256;
    // The deployment's domain, which every scope URI of `leaf_params` names.
    p.subject_alt_names = vec![uri(&format!("https://{DOMAIN}/satchel/ca"))];
    p
}

/// The deployment domain of the audit tests' CA and leaves.
pub const DOMAIN: &str = "satchel.test";

pub struct Ca {
    pub key: KeyPair,
    pub params: CertificateParams,
    pub der: Vec<u8>,
    pub pem: String,
}

impl Ca {
    pub fn from_params(params: CertificateParams) -> Ca {
        let key = KeyPair::generate().expect("key");
        Ca::from_params_and_key(params, key)
    }

    pub fn from_params_and_key(params: CertificateParams, key: KeyPair) -> Ca {
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key,
            params,
        }
    }

    pub fn new(cn: &str) -> Ca {
        Ca::from_params(ca_params(cn))
    }

    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Signs `params` for a fresh P-256 key.
    pub fn sign(&self, params: &CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("key");
        self.sign_key(params, key)
    }

    pub fn sign_key(&self, params: &CertificateParams, key: KeyPair) -> Leaf {
        let cert = params.signed_by(&key, &self.issuer()).expect("sign");
        Leaf {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
        }
    }

    /// A CRL listing `revoked` serials.
    pub fn crl(&self, number: u64, next_update: OffsetDateTime, revoked: &[&[u8]]) -> String {
        let p = CertificateRevocationListParams {
            this_update: next_update - Duration::days(7),
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now() - Duration::hours(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.issuer())
            .expect("crl")
            .pem()
            .expect("crl pem")
    }
}

pub struct Leaf {
    pub der: Vec<u8>,
    pub pem: String,
    pub key: KeyPair,
}

impl Leaf {
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&self.der))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKind {
    Server,
    Host,
    Site,
    Admin,
}

pub const MAC: &str = "aa-bb-cc-dd-ee-ff";

/// A leaf the way satchel-pki is meant to issue it.
pub fn leaf_params(kind: LeafKind) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.serial_number = Some(serial());
    p.not_before = now() - Duration::minutes(5);
    let (cn, days, sans, eku) = match kind {
        LeafKind::Server => (
            "cfg.example.test",
            90,
            vec![
                SanType::DnsName("cfg.example.test".try_into().expect("dns")),
                SanType::IpAddress("127.0.0.1".parse().expect("ip")),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        LeafKind::Host => (
            MAC,
            365,
            vec![
                SanType::URI(
                    format!("https://satchel.test/satchel/host/{MAC}")
                        .try_into()
                        .expect("uri"),
                ),
                SanType::URI(
                    "https://satchel.test/satchel/site/dc1"
                        .try_into()
                        .expect("uri"),
                ),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        LeafKind::Site => (
            "dc1",
            365,
            vec![SanType::URI(
                "https://satchel.test/satchel/site/dc1"
                    .try_into()
                    .expect("uri"),
            )],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        LeafKind::Admin => (
            "alice",
            30,
            vec![SanType::URI(
                "https://satchel.test/satchel/admin/alice"
                    .try_into()
                    .expect("uri"),
            )],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    };
    p.distinguished_name = dn(cn);
    p.not_after = now() + Duration::days(days);
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().expect("uri"))
}

/// A custom extension (DER content), critical or not.
pub fn ext(oid: &[u64], content: Vec<u8>, critical: bool) -> CustomExtension {
    let mut e = CustomExtension::from_oid_content(oid, content);
    e.set_criticality(critical);
    e
}

pub const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
pub const OID_SKI: &[u64] = &[2, 5, 29, 14];
pub const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];

/// A subjectKeyIdentifier extension with a fixed 20-byte id, for
/// certificates whose basicConstraints is crafted by hand (rcgen then writes
/// no SKI itself).
pub fn ski_ext(seed: u8) -> CustomExtension {
    let mut c = vec![0x04, 20];
    c.extend([seed; 20]);
    ext(OID_SKI, c, false)
}

/// A PKI directory on disk.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.tmp.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// A directory holding `ca` as `ca.crt` and a fresh CRL.
    pub fn with_ca(ca: &Ca) -> Dir {
        let d = Dir::new();
        d.write("ca.crt", &ca.pem);
        d.write("crl.pem", ca.crl(1, now() + Duration::days(7), &[]));
        d
    }

    pub fn audit(&self) -> Report {
        audit::audit(&AuditInput::new(self.path())).expect("audit")
    }
}

/// The ids of the findings about one certificate.
pub fn ids_for(r: &Report, sha256: &str) -> Vec<&'static str> {
    r.findings
        .iter()
        .filter(|f| f.certificate.as_deref() == Some(sha256))
        .map(|f| f.id)
        .collect()
}

/// Runs openssl with `args` in `dir`, panicking with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (tests/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed leaf-like certificate made by openssl with `key_args` (e.g.
/// `-newkey rsa:1024`) and `-<digest>`; returns its PEM.
pub fn openssl_leaf(key_args: &[&str], digest: &str) -> String {
    let t = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["req", "-x509", "-nodes"];
    args.extend_from_slice(key_args);
    args.extend_from_slice(&[
        digest,
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "30",
        "-subj",
        "/CN=crafted",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "extendedKeyUsage=clientAuth",
        "-addext",
        "subjectAltName=URI:https://satchel.test/satchel/admin/crafted",
        "-addext",
        "keyUsage=critical,digitalSignature",
    ]);
    openssl(t.path(), &args);
    std::fs::read_to_string(t.path().join("c.pem")).expect("read")
}
