//! What each kind of certificate contains. rcgen's defaults are unsafe for
//! a CA (serial derived from the key, validity 1975–4096, no
//! basicConstraints on leaves, no keyUsage/EKU, no AKI), so every field is
//! set here, explicitly, for every kind.
//!
//! | kind   | basicConstraints        | keyUsage                       | EKU        | SAN                      | default validity |
//! |--------|-------------------------|--------------------------------|------------|--------------------------|------------------|
//! | CA     | critical, CA:true, pathLen 0 | critical keyCertSign, cRLSign | none  | `https://D/satchel/ca`   | [`CA_VALIDITY_DAYS`] |
//! | server | critical, CA:false      | critical digitalSignature      | serverAuth | DNS names and IPs        | [`SERVER_VALIDITY_DAYS`] |
//! | host   | critical, CA:false      | critical digitalSignature      | clientAuth | `https://D/satchel/host/<mac>` (+ `…/site/<s>`) | [`NODE_VALIDITY_DAYS`] |
//! | site   | critical, CA:false      | critical digitalSignature      | clientAuth | `https://D/satchel/site/<s>` | [`NODE_VALIDITY_DAYS`] |
//! | admin  | critical, CA:false      | critical digitalSignature      | clientAuth | `https://D/satchel/admin/<name>` | [`ADMIN_VALIDITY_DAYS`] |
//!
//! D is the deployment's domain, given to `init` and named by the CA's own
//! certificate (see [`crate::scope`]); server DNS names
//! follow the preferred name syntax ([`parse_dns_name`]).
//!
//! Every certificate: a random positive serial of 128 bits ([`random_serial`]),
//! notBefore = now − [`BACKDATE`], notAfter = notBefore + the validity, SKI;
//! every leaf: AKI (the CA's SKI), an ECDSA P-256 key.
//!
//! It does not sign anything: [`crate::ca`] does.

use std::net::IpAddr;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::ledger::CertKind;
use crate::scope::{self, Domain, Scope};

/// CA validity when `init --validity-days` is not given (10 years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Server certificate validity: short, because nodes do not check the
/// server certificate's revocation.
pub const SERVER_VALIDITY_DAYS: u32 = 90;
/// Host and site (node) certificate validity: a boot image lives for months.
pub const NODE_VALIDITY_DAYS: u32 = 365;
/// Admin certificate validity.
pub const ADMIN_VALIDITY_DAYS: u32 = 30;
/// Longest validity accepted for a leaf when overridden.
pub const MAX_LEAF_VALIDITY_DAYS: u32 = 825;
/// Longest validity accepted for the CA.
pub const MAX_CA_VALIDITY_DAYS: u32 = 36500;
/// How far notBefore is set in the past, to tolerate clock skew between
/// the CA workstation and the machines checking the certificate.
pub const BACKDATE: Duration = Duration::minutes(5);
/// Random octets of a serial.
pub const SERIAL_OCTETS: usize = 16;
/// Most DNS names plus IP addresses in one server certificate.
pub const MAX_SERVER_NAMES: usize = 100;

/// Errors in what was asked for.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileError {
    /// A DNS name that is not a plain hostname.
    #[error("invalid DNS name {0:?} (lowercase letters, digits, '-' and '.', labels of 1–63, no wildcard)")]
    DnsName(String),
    /// A server certificate with no name.
    #[error("a server certificate needs at least one --dns or --ip")]
    NoServerName,
    /// Too many names.
    #[error("at most {MAX_SERVER_NAMES} names in one server certificate")]
    TooManyNames,
    /// Validity out of range.
    #[error("validity of {days} days is outside 1..={max}")]
    Validity {
        /// Asked for.
        days: u32,
        /// The maximum for this kind.
        max: u32,
    },
    /// A CA name that is empty, too long or has control characters.
    #[error("invalid CA name {0:?} (1–64 printable characters)")]
    CaName(String),
    /// A client certificate asked of a CA that names no deployment domain.
    #[error(
        "this CA's certificate names no deployment domain (it was created by an older satchel-pki), so it cannot issue scope URIs; create a new CA with `satchel-pki init --domain DOMAIN` and reissue"
    )]
    NoDomain,
}

/// The curve of the CA key (leaves are always P-256).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Curve {
    /// ECDSA P-256 with SHA-256.
    #[default]
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
}

impl Curve {
    /// The rcgen algorithm.
    pub fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// The name recorded in the ledger.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "ecdsa-p256",
            Curve::P384 => "ecdsa-p384",
        }
    }
}

/// A random positive serial: [`SERIAL_OCTETS`] random octets (128 bits),
/// redrawn when the first octet is zero so every serial encodes to the same
/// length (16 octets, or 17 with the sign octet DER adds).
pub fn random_serial() -> SerialNumber {
    let mut b = [0u8; SERIAL_OCTETS];
    loop {
        rand::rngs::OsRng.fill_bytes(&mut b);
        if b[0] != 0 {
            return SerialNumber::from_slice(&b);
        }
    }
}

/// The default validity of a kind, in days.
pub fn default_validity_days(kind: CertKind) -> u32 {
    match kind {
        CertKind::Ca => CA_VALIDITY_DAYS,
        CertKind::Server => SERVER_VALIDITY_DAYS,
        CertKind::Host | CertKind::Site => NODE_VALIDITY_DAYS,
        CertKind::Admin => ADMIN_VALIDITY_DAYS,
    }
}

/// Checks an overridden validity.
pub fn check_validity(kind: CertKind, days: u32) -> Result<u32, ProfileError> {
    let max = match kind {
        CertKind::Ca => MAX_CA_VALIDITY_DAYS,
        _ => MAX_LEAF_VALIDITY_DAYS,
    };
    if days == 0 || days > max {
        return Err(ProfileError::Validity { days, max });
    }
    Ok(days)
}

/// Validates a DNS name for a server certificate (lowercased on the way).
pub fn parse_dns_name(input: &str) -> Result<String, ProfileError> {
    let s = input.trim_end_matches('.').to_ascii_lowercase();
    let bad = || ProfileError::DnsName(input.chars().take(80).collect());
    if s.is_empty() || s.len() > 253 {
        return Err(bad());
    }
    for label in s.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-';
        if !ok {
            return Err(bad());
        }
    }
    Ok(s)
}

/// Validates the CA's name (its subject CN).
pub fn check_ca_name(name: &str) -> Result<(), ProfileError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(ProfileError::CaName(name.chars().take(80).collect()));
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, days: u32) {
    let nb = now.replace_nanosecond(0).unwrap_or(now) - BACKDATE;
    params.not_before = nb;
    params.not_after = nb + Duration::days(i64::from(days));
}

fn cn(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// The CA's parameters.
pub fn ca_params(
    name: &str,
    domain: &Domain,
    days: u32,
    now: OffsetDateTime,
) -> Result<CertificateParams, ProfileError> {
    check_ca_name(name)?;
    check_validity(CertKind::Ca, days)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = cn(name);
    p.serial_number = Some(random_serial());
    validity(&mut p, now, days);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.extended_key_usages = Vec::new();
    // The deployment's domain, under which every scope URI is issued.
    p.subject_alt_names = vec![uri_san(scope::ca_uri(domain))?];
    p.use_authority_key_identifier_extension = false;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

/// What a leaf certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafRequest {
    /// A TLS server.
    Server {
        /// DNS names (validated by [`parse_dns_name`]).
        dns: Vec<String>,
        /// IP addresses.
        ips: Vec<IpAddr>,
    },
    /// A client with a scope (host, site or admin).
    Client(Scope),
}

impl LeafRequest {
    /// The ledger kind.
    pub fn kind(&self) -> CertKind {
        match self {
            LeafRequest::Server { .. } => CertKind::Server,
            LeafRequest::Client(Scope::Host { .. }) => CertKind::Host,
            LeafRequest::Client(Scope::Site(_)) => CertKind::Site,
            LeafRequest::Client(Scope::Admin(_)) => CertKind::Admin,
        }
    }

    /// The subject CN.
    pub fn common_name(&self) -> String {
        match self {
            LeafRequest::Server { dns, ips } => dns
                .first()
                .cloned()
                .or_else(|| ips.first().map(IpAddr::to_string))
                .unwrap_or_default(),
            LeafRequest::Client(scope) => scope.label(),
        }
    }
}

/// A SAN URI entry. Scope and CA URIs are ASCII by construction.
fn uri_san(uri: String) -> Result<SanType, ProfileError> {
    let ia5 = uri
        .clone()
        .try_into()
        .map_err(|_| ProfileError::DnsName(uri))?;
    Ok(SanType::URI(ia5))
}

/// A leaf's parameters. `days` is the validity (see [`check_validity`]);
/// `domain` is the CA's deployment domain, which a client certificate's
/// scope URIs need.
pub fn leaf_params(
    req: &LeafRequest,
    domain: Option<&Domain>,
    days: u32,
    now: OffsetDateTime,
) -> Result<CertificateParams, ProfileError> {
    let kind = req.kind();
    check_validity(kind, days)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = cn(&req.common_name());
    p.serial_number = Some(random_serial());
    validity(&mut p, now, days);
    // ExplicitNoCa writes basicConstraints (critical, CA:false) and the SKI.
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    match req {
        LeafRequest::Server { dns, ips } => {
            if dns.is_empty() && ips.is_empty() {
                return Err(ProfileError::NoServerName);
            }
            if dns.len() + ips.len() > MAX_SERVER_NAMES {
                return Err(ProfileError::TooManyNames);
            }
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            for d in dns {
                let d = parse_dns_name(d)?;
                let ia5 = d
                    .clone()
                    .try_into()
                    .map_err(|_| ProfileError::DnsName(d.clone()))?;
                p.subject_alt_names.push(SanType::DnsName(ia5));
            }
            for ip in ips {
                p.subject_alt_names.push(SanType::IpAddress(*ip));
            }
        }
        LeafRequest::Client(scope) => {
            let domain = domain.ok_or(ProfileError::NoDomain)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            for uri in scope.uris(domain) {
                p.subject_alt_names.push(uri_san(uri)?);
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_random_positive_and_full_length() {
        let a = random_serial();
        let b = random_serial();
        assert_ne!(a, b);
        assert_eq!(a.len(), SERIAL_OCTETS);
        assert_ne!(a.to_bytes()[0], 0);
    }

    #[test]
    fn hostile_dns_names_are_refused() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.test", "a.".repeat(130));
        for bad in [
            "",
            ".",
            "*.example.test",
            "a..b",
            "-a.test",
            "a-.test",
            "a_b.test",
            "exa mple.test",
            "ex\u{e4}mple.test",
            "a/b",
            "a\0b",
            "192.168.0.1/24",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(parse_dns_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_dns_name("Boot.Example.TEST.").as_deref(),
            Ok("boot.example.test")
        );
    }

    #[test]
    fn validity_bounds() {
        assert!(check_validity(CertKind::Server, 0).is_err());
        assert!(check_validity(CertKind::Server, MAX_LEAF_VALIDITY_DAYS + 1).is_err());
        assert!(check_validity(CertKind::Ca, CA_VALIDITY_DAYS).is_ok());
        for bad in ["", " lead", "a\nb", &"x".repeat(65)] {
            assert!(check_ca_name(bad).is_err(), "{bad:?}");
        }
    }
}
