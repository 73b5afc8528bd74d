//! Certificate facts: everything the lints look at, read once from DER.
//!
//! [`Cert::from_der`] is the only place that touches x509-parser's borrowed
//! types; the lints work on the owned [`Cert`] it returns, so they are pure
//! functions over plain data. A certificate that does not parse at all is not
//! an error of the audit: the caller turns [`CertParseError`] into a finding.

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::AlgorithmIdentifier;

use crate::scope::{self, Scope};

/// OIDs the audit names (dotted form).
pub(crate) mod oid {
    pub const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    pub const ED25519: &str = "1.3.101.112";
    pub const ED448: &str = "1.3.101.113";
    pub const P256: &str = "1.2.840.10045.3.1.7";
    pub const P384: &str = "1.3.132.0.34";
    pub const P521: &str = "1.3.132.0.35";
    /// Signature algorithms whose hash is broken (MD2, MD5, SHA-1).
    pub const WEAK_SIGNATURES: &[(&str, &str)] = &[
        ("1.2.840.113549.1.1.2", "md2WithRSAEncryption"),
        ("1.2.840.113549.1.1.4", "md5WithRSAEncryption"),
        ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
        ("1.3.14.3.2.29", "sha1WithRSASignature"),
        ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
        ("1.2.840.10040.4.3", "dsa-with-sha1"),
    ];
    /// Names for the signature algorithms one expects to meet.
    pub const SIGNATURE_NAMES: &[(&str, &str)] = &[
        ("1.2.840.113549.1.1.10", "rsassa-pss"),
        ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
        ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
        ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
        ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
        ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
        ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512"),
        ("1.3.101.112", "ed25519"),
    ];
}

/// Why a certificate could not be read at all.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertParseError {
    /// The bytes are not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {0}")]
    Der(String),
    /// Bytes follow the certificate's outer SEQUENCE.
    #[error("{0} trailing bytes after the certificate")]
    Trailing(usize),
}

/// What a certificate is for, as the audit classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A certificate authority (basicConstraints CA:true, or self-signed with keyCertSign).
    Ca,
    /// A TLS server (serverAuth EKU, no scope URI).
    Server,
    /// A node certificate scoped to one MAC (`satchel:host:…`).
    Host,
    /// A node certificate scoped to a site (`satchel:site:…` alone).
    Site,
    /// An administrator (`satchel:admin:…`).
    Admin,
    /// None of the above.
    Unknown,
}

impl Kind {
    /// The lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ca => "ca",
            Kind::Server => "server",
            Kind::Host => "host",
            Kind::Site => "site",
            Kind::Admin => "admin",
            Kind::Unknown => "unknown",
        }
    }

    /// Client certificates: host, site and admin.
    pub fn is_client(self) -> bool {
        matches!(self, Kind::Host | Kind::Site | Kind::Admin)
    }

    /// End-entity certificates of a known kind: server and the client kinds.
    pub fn is_leaf(self) -> bool {
        self == Kind::Server || self.is_client()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subjectAltName entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    /// dNSName.
    Dns(String),
    /// iPAddress (rendered; raw hex when not 4 or 16 bytes).
    Ip(String),
    /// uniformResourceIdentifier.
    Uri(String),
    /// rfc822Name.
    Email(String),
    /// Any other GeneralName, described.
    Other(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(s) => write!(f, "DNS:{s}"),
            San::Ip(s) => write!(f, "IP:{s}"),
            San::Uri(s) => write!(f, "URI:{s}"),
            San::Email(s) => write!(f, "email:{s}"),
            San::Other(s) => write!(f, "other:{s}"),
        }
    }
}

/// basicConstraints as encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicConstraints {
    /// The extension is marked critical.
    pub critical: bool,
    /// cA.
    pub ca: bool,
    /// pathLenConstraint.
    pub path_len: Option<u32>,
}

/// keyUsage as encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    /// The extension is marked critical.
    pub critical: bool,
    /// digitalSignature.
    pub digital_signature: bool,
    /// keyCertSign.
    pub key_cert_sign: bool,
    /// cRLSign.
    pub crl_sign: bool,
}

/// extendedKeyUsage as encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtKeyUsage {
    /// id-kp-serverAuth.
    pub server_auth: bool,
    /// id-kp-clientAuth.
    pub client_auth: bool,
    /// anyExtendedKeyUsage.
    pub any: bool,
    /// Every other purpose, dotted OIDs (codeSigning, emailProtection, … included).
    pub other: Vec<String>,
}

/// The subject public key's algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// rsaEncryption.
    Rsa,
    /// id-ecPublicKey; the curve's dotted OID (empty when absent).
    Ec {
        /// Named curve OID.
        curve_oid: String,
    },
    /// Ed25519.
    Ed25519,
    /// Anything else, by dotted OID.
    Other(String),
}

/// The subject public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Algorithm (and curve).
    pub algorithm: KeyAlgorithm,
    /// Size in bits (modulus for RSA, field for EC, 256 for Ed25519); 0 when unknown.
    pub bits: u32,
}

impl KeyInfo {
    /// `rsa`, `ecdsa`, `ed25519` or the algorithm's OID.
    pub fn type_name(&self) -> String {
        match &self.algorithm {
            KeyAlgorithm::Rsa => "rsa".into(),
            KeyAlgorithm::Ec { .. } => "ecdsa".into(),
            KeyAlgorithm::Ed25519 => "ed25519".into(),
            KeyAlgorithm::Other(o) => o.clone(),
        }
    }

    /// The curve's name (`P-256`, `P-384`, `P-521`) or OID, for EC keys.
    pub fn curve_name(&self) -> Option<String> {
        match &self.algorithm {
            KeyAlgorithm::Ec { curve_oid } => Some(curve_name(curve_oid).to_string()),
            _ => None,
        }
    }
}

fn curve_name(oid_s: &str) -> &str {
    match oid_s {
        oid::P256 => "P-256",
        oid::P384 => "P-384",
        oid::P521 => "P-521",
        "1.3.132.0.10" => "secp256k1",
        other => other,
    }
}

/// A signature algorithm identifier: OID plus its parameters' raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigAlg {
    /// Dotted OID.
    pub oid: String,
    /// DER of the parameters (tag and content), if present.
    pub params: Option<Vec<u8>>,
}

impl SigAlg {
    fn from_x509(a: &AlgorithmIdentifier<'_>) -> SigAlg {
        SigAlg {
            oid: a.algorithm.to_id_string(),
            params: a.parameters.as_ref().map(|p| {
                let mut v = Vec::with_capacity(p.data.len() + 1);
                v.extend_from_slice(&p.header.tag().0.to_be_bytes());
                v.extend_from_slice(p.data);
                v
            }),
        }
    }

    /// A readable name (`ecdsa-with-SHA256`, …) or the OID.
    pub fn name(&self) -> &str {
        oid::WEAK_SIGNATURES
            .iter()
            .chain(oid::SIGNATURE_NAMES)
            .find(|(o, _)| *o == self.oid)
            .map(|(_, n)| *n)
            .unwrap_or(&self.oid)
    }
}

/// Everything the audit reads from one certificate.
#[derive(Clone, Debug)]
pub struct Cert {
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// Lowercase hex sha256 of the DER: the certificate's identity in the report.
    pub sha256: String,
    /// The serial's content octets exactly as encoded (two's complement).
    pub serial_raw: Vec<u8>,
    /// The serial as lowercase hex, leading zero octets removed (`00` for zero).
    pub serial_hex: String,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Subject name DER (for issuer matching).
    pub subject_raw: Vec<u8>,
    /// Issuer name DER (for issuer matching).
    pub issuer_raw: Vec<u8>,
    /// The subjectAltName extension exists.
    pub has_san_extension: bool,
    /// subjectAltName entries.
    pub sans: Vec<San>,
    /// basicConstraints, if present.
    pub basic_constraints: Option<BasicConstraints>,
    /// keyUsage, if present.
    pub key_usage: Option<KeyUsage>,
    /// extendedKeyUsage, if present.
    pub ext_key_usage: Option<ExtKeyUsage>,
    /// subjectKeyIdentifier.
    pub ski: Option<Vec<u8>>,
    /// The authorityKeyIdentifier extension exists.
    pub has_aki: bool,
    /// authorityKeyIdentifier's keyIdentifier.
    pub aki: Option<Vec<u8>>,
    /// The subject public key.
    pub key: KeyInfo,
    /// DER of the SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// Lowercase hex sha256 of the SubjectPublicKeyInfo DER.
    pub spki_sha256: String,
    /// The outer signatureAlgorithm.
    pub signature_algorithm: SigAlg,
    /// tbsCertificate.signature (must equal the outer one).
    pub tbs_signature_algorithm: SigAlg,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// Extensions x509-parser could not decode, or that appear twice (by OID).
    pub bad_extensions: Vec<String>,
    /// What it is for, worked out once at parse time (see [`Cert::kind`]).
    kind: Kind,
}

fn hex_lower(b: &[u8]) -> String {
    hex::encode(b)
}

/// The serial as report text: lowercase hex without leading zero octets.
pub fn serial_to_hex(raw: &[u8]) -> String {
    let trimmed: &[u8] = match raw.iter().position(|b| *b != 0) {
        Some(i) => &raw[i..],
        None => &[0],
    };
    hex_lower(trimmed)
}

fn render_ip(b: &[u8]) -> String {
    match b.len() {
        4 => {
            let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
            IpAddr::from(a).to_string()
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::from(a).to_string()
        }
        _ => format!("0x{}", hex_lower(b)),
    }
}

impl Cert {
    /// Reads a certificate from DER. Only fails when the bytes are not a
    /// certificate at all; malformed extensions are recorded in
    /// [`Cert::bad_extensions`] for the lints to report.
    pub fn from_der(der: &[u8]) -> Result<Cert, CertParseError> {
        let (rest, x) =
            X509Certificate::from_der(der).map_err(|e| CertParseError::Der(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertParseError::Trailing(rest.len()));
        }
        let mut bad_extensions = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut sans = Vec::new();
        let mut has_san_extension = false;
        let mut basic_constraints = None;
        let mut key_usage = None;
        let mut ext_key_usage = None;
        let mut ski = None;
        let mut has_aki = false;
        let mut aki = None;
        for ext in x.extensions() {
            let oid_s = ext.oid.to_id_string();
            if !seen.insert(oid_s.clone()) {
                bad_extensions.push(format!("{oid_s} appears more than once"));
            }
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    has_san_extension = true;
                    for g in &san.general_names {
                        sans.push(match g {
                            GeneralName::DNSName(s) => San::Dns((*s).to_string()),
                            GeneralName::IPAddress(b) => San::Ip(render_ip(b)),
                            GeneralName::URI(s) => San::Uri((*s).to_string()),
                            GeneralName::RFC822Name(s) => San::Email((*s).to_string()),
                            other => San::Other(format!("{other:?}").chars().take(128).collect()),
                        });
                    }
                }
                ParsedExtension::BasicConstraints(bc) => {
                    basic_constraints = Some(BasicConstraints {
                        critical: ext.critical,
                        ca: bc.ca,
                        path_len: bc.path_len_constraint,
                    });
                }
                ParsedExtension::KeyUsage(ku) => {
                    key_usage = Some(KeyUsage {
                        critical: ext.critical,
                        digital_signature: ku.digital_signature(),
                        key_cert_sign: ku.key_cert_sign(),
                        crl_sign: ku.crl_sign(),
                    });
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let mut other: Vec<String> =
                        eku.other.iter().map(|o| o.to_id_string()).collect();
                    for (set, name) in [
                        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                    ] {
                        if set {
                            other.push(name.to_string());
                        }
                    }
                    ext_key_usage = Some(ExtKeyUsage {
                        server_auth: eku.server_auth,
                        client_auth: eku.client_auth,
                        any: eku.any,
                        other,
                    });
                }
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    has_aki = true;
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::ParseError { error } => {
                    bad_extensions.push(format!("{oid_s}: {error}"));
                }
                _ => {}
            }
        }
        let spki = x.public_key();
        let alg_oid = spki.algorithm.algorithm.to_id_string();
        let algorithm = match alg_oid.as_str() {
            oid::RSA_ENCRYPTION => KeyAlgorithm::Rsa,
            oid::EC_PUBLIC_KEY => KeyAlgorithm::Ec {
                curve_oid: spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default(),
            },
            oid::ED25519 => KeyAlgorithm::Ed25519,
            _ => KeyAlgorithm::Other(alg_oid.clone()),
        };
        let bits = match &algorithm {
            KeyAlgorithm::Rsa => match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa.key_size() as u32,
                _ => 0,
            },
            KeyAlgorithm::Ec { curve_oid } => match curve_oid.as_str() {
                oid::P256 | "1.3.132.0.10" => 256,
                oid::P384 => 384,
                oid::P521 => 521,
                _ => match spki.parsed() {
                    Ok(k) => k.key_size() as u32,
                    Err(_) => 0,
                },
            },
            KeyAlgorithm::Ed25519 => 256,
            KeyAlgorithm::Other(o) if o == oid::ED448 => 456,
            KeyAlgorithm::Other(_) => 0,
        };
        let validity = x.validity();
        let mut cert = Cert {
            der: der.to_vec(),
            sha256: hex_lower(&Sha256::digest(der)),
            serial_raw: x.raw_serial().to_vec(),
            serial_hex: serial_to_hex(x.raw_serial()),
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            has_san_extension,
            sans,
            basic_constraints,
            key_usage,
            ext_key_usage,
            ski,
            has_aki,
            aki,
            key: KeyInfo { algorithm, bits },
            spki_der: spki.raw.to_vec(),
            spki_sha256: hex_lower(&Sha256::digest(spki.raw)),
            signature_algorithm: SigAlg::from_x509(&x.signature_algorithm),
            tbs_signature_algorithm: SigAlg::from_x509(&x.tbs_certificate.signature),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            bad_extensions,
            kind: Kind::Unknown,
        };
        cert.kind = cert.classify();
        Ok(cert)
    }

    /// The SAN URIs.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.sans.iter().filter_map(|s| match s {
            San::Uri(u) => Some(u.as_str()),
            _ => None,
        })
    }

    /// The scope its SAN URIs express, if they express a valid one.
    pub fn scope(&self) -> Option<Scope> {
        Scope::from_uris(self.uris()).ok()
    }

    /// Subject and issuer names are byte-identical.
    pub fn self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// basicConstraints says CA:true.
    pub fn is_ca_flag(&self) -> bool {
        self.basic_constraints.is_some_and(|b| b.ca)
    }

    /// The certificate's kind: its scope URI first (any `satchel:host:`,
    /// then `site`, then `admin` URI, even a malformed one or one of the old
    /// `satchel://KIND/` form, [`scope::claimed_kind`]), then a
    /// serverAuth EKU, then CA:true or a self-issued keyCertSign.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn classify(&self) -> Kind {
        let has = |k: &str| self.uris().any(|u| scope::claimed_kind(u) == Some(k));
        if has("host") {
            Kind::Host
        } else if has("site") {
            Kind::Site
        } else if has("admin") {
            Kind::Admin
        } else if self.ext_key_usage.as_ref().is_some_and(|e| e.server_auth) {
            Kind::Server
        } else if self.is_ca_flag()
            || (self.self_issued() && self.key_usage.is_some_and(|k| k.key_cert_sign))
        {
            Kind::Ca
        } else {
            Kind::Unknown
        }
    }

    /// The scope label (`host/<mac>` …) when the URIs form a valid scope.
    pub fn scope_label(&self) -> Option<String> {
        self.scope().map(|s| s.label())
    }

    /// Re-parses the DER (it parsed once, so it parses again) and checks its
    /// signature with `issuer`'s public key. `None` when the algorithm is not
    /// one the verifier supports.
    pub fn signature_verifies_with(&self, issuer: &Cert) -> Option<bool> {
        let (_, x) = X509Certificate::from_der(&self.der).ok()?;
        let (_, i) = X509Certificate::from_der(&issuer.der).ok()?;
        match x.verify_signature(Some(i.public_key())) {
            Ok(()) => Some(true),
            Err(x509_parser::error::X509Error::SignatureUnsupportedAlgorithm) => None,
            Err(_) => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_leading_zero_octets() {
        assert_eq!(serial_to_hex(&[0, 0x80, 1]), "8001");
        assert_eq!(serial_to_hex(&[0]), "00");
        assert_eq!(serial_to_hex(&[]), "00");
        assert_eq!(serial_to_hex(&[0xff]), "ff");
    }

    #[test]
    fn hostile_bytes_are_refused_not_panicked_on() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x30",
            b"\x30\x80",
            b"\x30\x82\xff\xff",
            b"-----BEGIN CERTIFICATE-----",
            &[0x30, 0x03, 0x02, 0x01, 0x01],
            &[0xff; 64],
        ];
        for c in cases {
            assert!(Cert::from_der(c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn ip_rendering() {
        assert_eq!(render_ip(&[127, 0, 0, 1]), "127.0.0.1");
        assert_eq!(render_ip(&[0u8; 16]), "::");
        assert_eq!(render_ip(&[1, 2, 3]), "0x010203");
    }
}
