//! The lints: stable ids, severities, fix hints, and pure checks.
//!
//! Modelled on zlint and pkilint: an id starts with `e_` (error), `w_`
//! (warning) or `n_` (notice) and never changes meaning once released; a
//! check is a pure function over parsed certificates ([`Cert`]) — one
//! certificate for the per-certificate lints, the whole set ([`SetView`]) for
//! the cross-certificate ones. The ledger and CRL lints live in `mod.rs`
//! because they look at files, not certificates; their definitions are here so
//! [`LINTS`] lists every id.
//!
//! Invariant: a lint never panics and never fails; a certificate it cannot
//! judge (say, an unknown kind for a kind-specific lint) is simply skipped.

use std::collections::{BTreeMap, HashMap};

use time::{Duration, OffsetDateTime};

use super::cert::{oid, Cert, KeyAlgorithm, Kind, San};
use crate::profile;
use crate::scope;

/// How bad a finding is. Ordered: notice < warning < error.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not a defect.
    Notice,
    /// Probably wrong; check it.
    Warning,
    /// A defect: fix it.
    Error,
}

impl Severity {
    /// `notice`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A lint's definition.
#[derive(Debug, PartialEq, Eq)]
pub struct Lint {
    /// Stable id, e.g. `e_ca_missing_key_cert_sign`.
    pub id: &'static str,
    /// Severity of every finding it makes.
    pub severity: Severity,
    /// What it checks, one line.
    pub summary: &'static str,
    /// How to fix it, one line.
    pub hint: &'static str,
}

/// One thing a lint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The lint that fired.
    pub lint: &'static Lint,
    /// The certificate's sha256 (see [`Cert::sha256`]), when the finding is about one.
    pub certificate: Option<String>,
    /// What exactly is wrong, one line.
    pub message: String,
}

/// Validity ceilings per kind. Defaults are the issuing profile's default
/// validities ([`crate::profile`]: server 90 days, node (host and site) 365
/// days, admin 30 days, CA 3650 days), each plus [`VALIDITY_GRACE`]: a
/// certificate issued with a longer `--days` is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityPolicy {
    /// Longest server certificate.
    pub server: Duration,
    /// Longest host or site certificate.
    pub node: Duration,
    /// Longest admin certificate.
    pub admin: Duration,
    /// Longest CA certificate.
    pub ca: Duration,
}

/// Longest server certificate validity: the issuing profile's default.
pub const MAX_SERVER_VALIDITY: Duration = Duration::days(profile::SERVER_VALIDITY_DAYS as i64);
/// Longest node (host or site) certificate validity: the issuing profile's default.
pub const MAX_NODE_VALIDITY: Duration = Duration::days(profile::NODE_VALIDITY_DAYS as i64);
/// Longest admin certificate validity: the issuing profile's default.
pub const MAX_ADMIN_VALIDITY: Duration = Duration::days(profile::ADMIN_VALIDITY_DAYS as i64);
/// Longest CA certificate validity: the issuing profile's default.
pub const MAX_CA_VALIDITY: Duration = Duration::days(profile::CA_VALIDITY_DAYS as i64);
/// Slack on every ceiling, so issuers may backdate notBefore a little for clock skew.
pub const VALIDITY_GRACE: Duration = Duration::days(1);
/// Default window of [`W_EXPIRING_SOON`].
pub const DEFAULT_EXPIRING_WITHIN: Duration = Duration::days(14);
/// Fewer significant serial bits than this fires [`E_SERIAL_LOW_ENTROPY`].
pub const MIN_SERIAL_BITS: u32 = 64;
/// Longest serial, in encoded octets (RFC 5280 §4.1.2.2).
pub const MAX_SERIAL_OCTETS: usize = 20;
/// Smallest RSA modulus.
pub const MIN_RSA_BITS: u32 = 2048;

impl Default for ValidityPolicy {
    fn default() -> Self {
        ValidityPolicy {
            server: MAX_SERVER_VALIDITY,
            node: MAX_NODE_VALIDITY,
            admin: MAX_ADMIN_VALIDITY,
            ca: MAX_CA_VALIDITY,
        }
    }
}

impl ValidityPolicy {
    /// The ceiling for a kind (without grace); `None` for unknown kinds.
    pub fn max_for(&self, kind: Kind) -> Option<Duration> {
        match kind {
            Kind::Ca => Some(self.ca),
            Kind::Server => Some(self.server),
            Kind::Host | Kind::Site => Some(self.node),
            Kind::Admin => Some(self.admin),
            Kind::Unknown => None,
        }
    }
}

/// What the per-certificate lints need besides the certificate.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The audit's clock.
    pub now: OffsetDateTime,
    /// Validity ceilings.
    pub policy: ValidityPolicy,
}

macro_rules! lints {
    ($($name:ident = $id:literal, $sev:ident, $summary:literal, $hint:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: Lint = Lint {
                id: $id,
                severity: Severity::$sev,
                summary: $summary,
                hint: $hint,
            };
        )*
        /// Every lint, in report order.
        pub const LINTS: &[&Lint] = &[$(&$name),*];
    };
}

lints! {
    E_CERT_UNPARSEABLE = "e_cert_unparseable", Error,
        "A file holds a certificate that is not valid DER X.509.",
        "Remove or replace the file; it cannot be audited or trusted.";
    W_FILE_NOT_READ = "w_file_not_read", Warning,
        "A file or directory under the PKI directory was not read (too large, too deep, too many, unreadable).",
        "Move unrelated large files out of the PKI directory and make everything readable; what was not read was not audited.";
    N_SYMLINK_NOT_FOLLOWED = "n_symlink_not_followed", Notice,
        "A symbolic link under the PKI directory; the audit does not follow links.",
        "Replace the link by the file itself, or pass its target as an EXTRA file.";
    E_EXTENSION_INVALID = "e_extension_invalid", Error,
        "An extension cannot be decoded or appears twice.",
        "Reissue the certificate; every extension must decode and appear once.";
    E_CA_MISSING_KEY_CERT_SIGN = "e_ca_missing_key_cert_sign", Error,
        "CA certificate without keyUsage keyCertSign.",
        "Reissue the CA with keyUsage critical keyCertSign, cRLSign.";
    E_CA_MISSING_CRL_SIGN = "e_ca_missing_crl_sign", Error,
        "CA certificate without keyUsage cRLSign.",
        "Reissue the CA with keyUsage critical keyCertSign, cRLSign.";
    E_CA_BASIC_CONSTRAINTS_NOT_CRITICAL = "e_ca_basic_constraints_not_critical", Error,
        "CA certificate whose basicConstraints is absent or not critical.",
        "Reissue the CA with basicConstraints critical CA:true.";
    E_LEAF_IS_CA = "e_leaf_is_ca", Error,
        "End-entity certificate with basicConstraints CA:true.",
        "Reissue it with basicConstraints CA:false.";
    E_LEAF_PATH_LEN_PRESENT = "e_leaf_path_len_present", Error,
        "End-entity certificate with a pathLenConstraint.",
        "Reissue it without pathLenConstraint; only CA certificates carry one.";
    E_LEAF_KEY_USAGE_CERT_SIGN = "e_leaf_key_usage_cert_sign", Error,
        "End-entity certificate allowed to sign certificates or CRLs.",
        "Reissue it with keyUsage digitalSignature only.";
    E_SERVER_EKU_NOT_SERVER_AUTH_ONLY = "e_server_eku_not_server_auth_only", Error,
        "Server certificate whose extendedKeyUsage holds more than serverAuth.",
        "Reissue it with extendedKeyUsage serverAuth only.";
    E_CLIENT_EKU_MISSING = "e_client_eku_missing", Error,
        "Client (host, site, admin) certificate without extendedKeyUsage.",
        "Reissue it with extendedKeyUsage clientAuth; webpki accepts a missing EKU, our authorization must not.";
    E_CLIENT_EKU_MISSING_CLIENT_AUTH = "e_client_eku_missing_client_auth", Error,
        "Client certificate whose extendedKeyUsage lacks clientAuth.",
        "Reissue it with extendedKeyUsage clientAuth.";
    E_CLIENT_EKU_NOT_CLIENT_AUTH_ONLY = "e_client_eku_not_client_auth_only", Error,
        "Client certificate whose extendedKeyUsage holds serverAuth, anyExtendedKeyUsage or another purpose.",
        "Reissue it with extendedKeyUsage clientAuth only, so it cannot act as a server.";
    E_SAN_MISSING = "e_san_missing", Error,
        "End-entity certificate without subjectAltName entries.",
        "Reissue it with its DNS/IP names (server) or its scope URI (client).";
    E_CLIENT_SAN_WILDCARD = "e_client_san_wildcard", Error,
        "Client certificate with a wildcard name.",
        "Reissue it naming exactly one node, site or admin.";
    E_HOST_MULTIPLE_MACS = "e_host_multiple_macs", Error,
        "Host certificate naming more than one MAC.",
        "Issue one certificate per node.";
    E_SCOPE_URI_INVALID = "e_scope_uri_invalid", Error,
        "Client certificate whose scope URIs (https://DOMAIN/satchel/...) do not form exactly one valid scope.",
        "Reissue it with one canonical scope URI (https://DOMAIN/satchel/host/aa-bb-cc-dd-ee-ff, .../site/NAME, .../admin/NAME).";
    E_SCOPE_URI_OLD_FORM = "e_scope_uri_old_form", Error,
        "Certificate with a scope URI of an older form, satchel://KIND/NAME (its authority is not a host name, RFC 5280 4.2.1.6) or satchel:KIND:NAME (a scheme linters reject); servers refuse it as a scope.",
        "Reissue it with satchel-pki issue or enroll (they write https://DOMAIN/satchel/KIND/NAME), deploy it, then revoke the old certificate.";
    E_SCOPE_URI_FOREIGN_DOMAIN = "e_scope_uri_foreign_domain", Error,
        "Client certificate whose scope URIs name a domain other than the one the audited CA's certificate names.",
        "Reissue it with this CA (satchel-pki issue or enroll use the CA's domain), then revoke the old certificate.";
    W_CA_NAMES_NO_DOMAIN = "w_ca_names_no_domain", Warning,
        "CA certificate without the SAN URI https://DOMAIN/satchel/ca naming its deployment's domain: it was made by an older satchel-pki and cannot issue scope URIs.",
        "Create a new CA with satchel-pki init --domain DOMAIN, reissue every certificate under it, and retire this one.";
    E_SERVER_HAS_SCOPE_URI = "e_server_has_scope_uri", Error,
        "Server certificate that also carries a satchel scope URI.",
        "Reissue the server certificate with DNS/IP names only.";
    E_SAN_URI_SYNTAX = "e_san_uri_syntax", Error,
        "subjectAltName URI that is not an absolute RFC 3986 URI (a scheme, a colon, a non-empty scheme-specific part of URI characters).",
        "Reissue it with a well-formed URI.";
    E_SAN_URI_AUTHORITY_NOT_FQDN = "e_san_uri_authority_not_fqdn", Error,
        "subjectAltName URI with an authority whose host is neither a fully qualified domain name nor an IP address (RFC 5280 4.2.1.6).",
        "Reissue it with a fully qualified host in the URI, or a URI without an authority.";
    E_SAN_DNS_NAME_SYNTAX = "e_san_dns_name_syntax", Error,
        "dNSName not in the preferred name syntax (RFC 5280 4.2.1.6, RFC 1034 3.5): letters, digits, hyphens; labels of 1-63 not starting or ending with a hyphen; no wildcard, no trailing dot; at most 253 characters.",
        "Reissue it with the name in preferred syntax; satchel-pki issue server --dns checks it.";
    W_SAN_DNS_NAME_SINGLE_LABEL = "w_san_dns_name_single_label", Warning,
        "dNSName of a single label (such as localhost): not a fully qualified domain name.",
        "Reissue the server certificate with the fully qualified name clients use (the SRV target); keep single-label names to demos.";
    E_SERIAL_NOT_POSITIVE = "e_serial_not_positive", Error,
        "Serial number is zero or negative.",
        "Reissue it with a random positive serial.";
    E_SERIAL_TOO_LONG = "e_serial_too_long", Error,
        "Serial number longer than 20 octets.",
        "Reissue it with a serial of at most 20 octets (e.g. 128 random bits).";
    E_SERIAL_LOW_ENTROPY = "e_serial_low_entropy", Error,
        "Serial number with fewer than 64 significant bits, so it cannot hold 64 bits of entropy.",
        "Reissue it with a serial drawn from a CSPRNG (at least 64 bits, 128 recommended).";
    E_RSA_KEY_TOO_SMALL = "e_rsa_key_too_small", Error,
        "RSA key smaller than 2048 bits.",
        "Reissue it with ECDSA P-256 or RSA 2048+.";
    E_EC_CURVE_NOT_NIST = "e_ec_curve_not_nist", Error,
        "EC key on a curve other than P-256, P-384 or P-521.",
        "Reissue it with ECDSA P-256 or P-384.";
    W_KEY_ALGORITHM_UNEXPECTED = "w_key_algorithm_unexpected", Warning,
        "Key that is neither RSA nor ECDSA.",
        "Reissue it with ECDSA P-256, which every TLS peer of satchel supports.";
    E_SIGNATURE_WEAK_HASH = "e_signature_weak_hash", Error,
        "Signature with MD2, MD5 or SHA-1.",
        "Reissue it signed with SHA-256 or stronger.";
    E_SIGNATURE_ALGORITHM_MISMATCH = "e_signature_algorithm_mismatch", Error,
        "tbsCertificate.signature differs from the outer signatureAlgorithm.",
        "Reissue it; a conforming issuer writes the same AlgorithmIdentifier twice.";
    E_SIGNATURE_INVALID = "e_signature_invalid", Error,
        "Certificate names the audited CA as issuer but its signature does not verify with the CA key.",
        "Treat it as forged or corrupted: remove it and find out where it came from.";
    W_ISSUER_UNKNOWN = "w_issuer_unknown", Warning,
        "Certificate not issued by the audited CA.",
        "Check where it comes from; satchel peers trust only the audited CA.";
    E_VALIDITY_EXCEEDS_POLICY = "e_validity_exceeds_policy", Error,
        "Validity longer than its kind's policy (server 90 days, node 1 year, admin 30 days, CA 10 years).",
        "Reissue it with the kind's default validity.";
    E_VALIDITY_INVERTED = "e_validity_inverted", Error,
        "notBefore is after notAfter.",
        "Reissue it with a sane validity period.";
    E_MISSING_SUBJECT_KEY_IDENTIFIER = "e_missing_subject_key_identifier", Error,
        "Certificate without subjectKeyIdentifier.",
        "Reissue it with a subjectKeyIdentifier (RFC 7093 method 1).";
    E_MISSING_AUTHORITY_KEY_IDENTIFIER = "e_missing_authority_key_identifier", Error,
        "Certificate issued by another without authorityKeyIdentifier keyIdentifier.",
        "Reissue it with authorityKeyIdentifier set to the CA's subjectKeyIdentifier.";
    E_AKI_MISMATCH = "e_aki_mismatch", Error,
        "authorityKeyIdentifier differs from the audited CA's subjectKeyIdentifier.",
        "Reissue it from the current CA; an old or foreign CA signed it.";
    W_EXPIRING_SOON = "w_expiring_soon", Warning,
        "Live certificate that expires within the warning window.",
        "Issue its replacement now.";
    W_CERT_KIND_UNKNOWN = "w_cert_kind_unknown", Warning,
        "Certificate that is neither a CA, a server (serverAuth) nor a scoped client.",
        "Remove it, or reissue it with a profile satchel-pki knows.";
    E_DUPLICATE_SERIAL = "e_duplicate_serial", Error,
        "Two different certificates from one issuer share a serial number.",
        "Revoke and reissue one of them; serials must be unique per issuer.";
    W_KEY_REUSED = "w_key_reused", Warning,
        "One public key appears in more than one certificate.",
        "Generate a new key for every certificate.";
    W_DUPLICATE_LIVE_SCOPE = "w_duplicate_live_scope", Warning,
        "Two live certificates for one MAC or one site.",
        "Revoke the older one once the newer is deployed.";
    E_PRESENTED_CERT_NOT_VALID = "e_presented_cert_not_valid", Error,
        "The live server presents a certificate that is expired, not yet valid or revoked.",
        "Deploy a valid server certificate and restart or reload the server.";
    E_PRESENTED_NAME_MISMATCH = "e_presented_name_mismatch", Error,
        "The live server's certificate does not name the host it was reached at (DNS or IP SAN).",
        "Issue the server certificate with --dns/--ip for every name clients use (the SRV target).";
    E_CA_MISSING = "e_ca_missing", Error,
        "No CA certificate found in the PKI directory.",
        "Point --dir at the PKI directory that holds the CA certificate.";
    E_NOT_IN_LEDGER = "e_not_in_ledger", Error,
        "Certificate issued by the audited CA but absent from the issuance ledger.",
        "Find out who issued it outside satchel-pki; revoke it unless it is accounted for.";
    E_LEDGER_MISSING = "e_ledger_missing", Error,
        "The PKI directory has no issuance ledger.",
        "Restore the ledger from backup; without it issuance cannot be accounted for.";
    E_LEDGER_CHAIN_BROKEN = "e_ledger_chain_broken", Error,
        "The issuance ledger's hash chain does not verify (edited, deleted, reordered or forged lines).",
        "Compare the ledger with its backups to find the tampered line.";
    W_SITE_IMAGE_BESIDE_HOST_IMAGES = "w_site_image_beside_host_images", Warning,
        "A site has site-wide certificates and also per-host certificates naming it: every node booted from the site-wide image can fetch every host bundle whose manifest names the site (and decrypt those encrypted to the site's recipient).",
        "Keep per-host secrets out of bundles a site image can open: encrypt host bundles to the host's own recipient only, or enroll those hosts with --mac alone; revoke the site certificate if no node needs the site-wide image.";
    W_CRL_MISSING = "w_crl_missing", Warning,
        "No CRL found in the PKI directory.",
        "Run `satchel-pki crl` and publish the result.";
    W_CRL_STALE = "w_crl_stale", Warning,
        "The CRL's nextUpdate has passed (or it has none).",
        "Run `satchel-pki crl` and publish the new CRL.";
    E_CRL_SIGNATURE_INVALID = "e_crl_signature_invalid", Error,
        "The CRL does not verify with the audited CA's key.",
        "Regenerate the CRL with `satchel-pki crl`; the file is corrupt or forged.";
    W_CRL_BEHIND_LEDGER = "w_crl_behind_ledger", Warning,
        "The ledger records a revocation the newest CRL does not list.",
        "Run `satchel-pki crl` and publish the new CRL.";
}

/// Looks a lint up by id.
pub fn by_id(id: &str) -> Option<&'static Lint> {
    LINTS.iter().copied().find(|l| l.id == id)
}

/// A per-certificate check: `Some(message)` when it fires.
type CertCheck = fn(&Cert, &Context) -> Option<String>;

/// The per-certificate lints, each with its check.
const CERT_CHECKS: &[(&Lint, CertCheck)] = &[
    (&E_EXTENSION_INVALID, extension_invalid),
    (&E_CA_MISSING_KEY_CERT_SIGN, ca_missing_key_cert_sign),
    (&E_CA_MISSING_CRL_SIGN, ca_missing_crl_sign),
    (&E_CA_BASIC_CONSTRAINTS_NOT_CRITICAL, ca_bc_not_critical),
    (&W_CA_NAMES_NO_DOMAIN, ca_names_no_domain),
    (&E_LEAF_IS_CA, leaf_is_ca),
    (&E_LEAF_PATH_LEN_PRESENT, leaf_path_len),
    (&E_LEAF_KEY_USAGE_CERT_SIGN, leaf_cert_sign),
    (&E_SERVER_EKU_NOT_SERVER_AUTH_ONLY, server_eku),
    (&E_CLIENT_EKU_MISSING, client_eku_missing),
    (&E_CLIENT_EKU_MISSING_CLIENT_AUTH, client_eku_no_client_auth),
    (&E_CLIENT_EKU_NOT_CLIENT_AUTH_ONLY, client_eku_extra),
    (&E_SAN_MISSING, san_missing),
    (&E_CLIENT_SAN_WILDCARD, client_san_wildcard),
    (&E_HOST_MULTIPLE_MACS, host_multiple_macs),
    (&E_SCOPE_URI_INVALID, scope_invalid),
    (&E_SCOPE_URI_OLD_FORM, scope_old_form),
    (&E_SERVER_HAS_SCOPE_URI, server_scope_uri),
    (&E_SAN_URI_SYNTAX, san_uri_syntax),
    (&E_SAN_URI_AUTHORITY_NOT_FQDN, san_uri_authority),
    (&E_SAN_DNS_NAME_SYNTAX, san_dns_syntax),
    (&W_SAN_DNS_NAME_SINGLE_LABEL, san_dns_single_label),
    (&E_SERIAL_NOT_POSITIVE, serial_not_positive),
    (&E_SERIAL_TOO_LONG, serial_too_long),
    (&E_SERIAL_LOW_ENTROPY, serial_low_entropy),
    (&E_RSA_KEY_TOO_SMALL, rsa_too_small),
    (&E_EC_CURVE_NOT_NIST, ec_not_nist),
    (&W_KEY_ALGORITHM_UNEXPECTED, key_unexpected),
    (&E_SIGNATURE_WEAK_HASH, weak_hash),
    (&E_SIGNATURE_ALGORITHM_MISMATCH, sig_alg_mismatch),
    (&E_VALIDITY_EXCEEDS_POLICY, validity_exceeds),
    (&E_VALIDITY_INVERTED, validity_inverted),
    (&E_MISSING_SUBJECT_KEY_IDENTIFIER, missing_ski),
    (&E_MISSING_AUTHORITY_KEY_IDENTIFIER, missing_aki),
    (&W_CERT_KIND_UNKNOWN, kind_unknown),
];

/// Runs every per-certificate lint on one certificate.
pub fn lint_cert(c: &Cert, ctx: &Context) -> Vec<Finding> {
    CERT_CHECKS
        .iter()
        .filter_map(|(lint, check)| {
            check(c, ctx).map(|message| Finding {
                lint,
                certificate: Some(c.sha256.clone()),
                message,
            })
        })
        .collect()
}

fn extension_invalid(c: &Cert, _: &Context) -> Option<String> {
    (!c.bad_extensions.is_empty()).then(|| c.bad_extensions.join("; "))
}

fn ca_names_no_domain(c: &Cert, _: &Context) -> Option<String> {
    (c.kind() == Kind::Ca && scope::domain_of_ca(c.uris()).is_none())
        .then(|| "no SAN URI https://DOMAIN/satchel/ca".to_string())
}

fn ca_missing_key_cert_sign(c: &Cert, _: &Context) -> Option<String> {
    (c.kind() == Kind::Ca && !c.key_usage.is_some_and(|k| k.key_cert_sign))
        .then(|| "CA keyUsage lacks keyCertSign".to_string())
}

fn ca_missing_crl_sign(c: &Cert, _: &Context) -> Option<String> {
    (c.kind() == Kind::Ca && !c.key_usage.is_some_and(|k| k.crl_sign))
        .then(|| "CA keyUsage lacks cRLSign".to_string())
}

fn ca_bc_not_critical(c: &Cert, _: &Context) -> Option<String> {
    if c.kind() != Kind::Ca {
        return None;
    }
    match c.basic_constraints {
        None => Some("CA has no basicConstraints extension".into()),
        Some(b) if !b.critical => Some("CA basicConstraints is not marked critical".into()),
        Some(_) => None,
    }
}

fn leaf_is_ca(c: &Cert, _: &Context) -> Option<String> {
    (c.kind().is_leaf() && c.is_ca_flag()).then(|| format!("{} certificate has CA:true", c.kind()))
}

fn leaf_path_len(c: &Cert, _: &Context) -> Option<String> {
    let n = c.basic_constraints?.path_len?;
    c.kind()
        .is_leaf()
        .then(|| format!("{} certificate has pathLenConstraint {n}", c.kind()))
}

fn leaf_cert_sign(c: &Cert, _: &Context) -> Option<String> {
    let ku = c.key_usage?;
    (c.kind().is_leaf() && (ku.key_cert_sign || ku.crl_sign)).then(|| {
        format!(
            "{} certificate keyUsage includes keyCertSign or cRLSign",
            c.kind()
        )
    })
}

fn eku_list(c: &Cert) -> String {
    let Some(e) = &c.ext_key_usage else {
        return "none".into();
    };
    let mut v = Vec::new();
    if e.server_auth {
        v.push("serverAuth".to_string());
    }
    if e.client_auth {
        v.push("clientAuth".to_string());
    }
    if e.any {
        v.push("anyExtendedKeyUsage".to_string());
    }
    v.extend(e.other.iter().cloned());
    v.join(", ")
}

fn server_eku(c: &Cert, _: &Context) -> Option<String> {
    let e = c.ext_key_usage.as_ref()?;
    (c.kind() == Kind::Server && (e.client_auth || e.any || !e.other.is_empty()))
        .then(|| format!("server extendedKeyUsage is {}", eku_list(c)))
}

fn client_eku_missing(c: &Cert, _: &Context) -> Option<String> {
    (c.kind().is_client() && c.ext_key_usage.is_none())
        .then(|| format!("{} certificate has no extendedKeyUsage", c.kind()))
}

fn client_eku_no_client_auth(c: &Cert, _: &Context) -> Option<String> {
    let e = c.ext_key_usage.as_ref()?;
    (c.kind().is_client() && !e.client_auth)
        .then(|| format!("{} extendedKeyUsage is {}", c.kind(), eku_list(c)))
}

fn client_eku_extra(c: &Cert, _: &Context) -> Option<String> {
    let e = c.ext_key_usage.as_ref()?;
    (c.kind().is_client() && (e.server_auth || e.any || !e.other.is_empty()))
        .then(|| format!("{} extendedKeyUsage is {}", c.kind(), eku_list(c)))
}

fn san_missing(c: &Cert, _: &Context) -> Option<String> {
    (c.kind().is_leaf() && c.sans.is_empty()).then(|| {
        if c.has_san_extension {
            "subjectAltName is empty".to_string()
        } else {
            "no subjectAltName extension".to_string()
        }
    })
}

fn client_san_wildcard(c: &Cert, _: &Context) -> Option<String> {
    if !c.kind().is_client() {
        return None;
    }
    let wild: Vec<String> = c
        .sans
        .iter()
        .filter(|s| match s {
            San::Dns(n) | San::Uri(n) | San::Email(n) => n.contains('*'),
            _ => false,
        })
        .map(|s| s.to_string())
        .collect();
    (!wild.is_empty()).then(|| format!("wildcard names: {}", wild.join(", ")))
}

fn host_multiple_macs(c: &Cert, _: &Context) -> Option<String> {
    let hosts: Vec<&str> = c
        .uris()
        .filter(|u| scope::claimed_kind(u) == Some("host"))
        .collect();
    (hosts.len() > 1).then(|| format!("{} host URIs: {}", hosts.len(), hosts.join(", ")))
}

fn scope_invalid(c: &Cert, _: &Context) -> Option<String> {
    if !c.kind().is_client() {
        return None;
    }
    match scope::Scope::from_uris(c.uris()) {
        Ok(_) => None,
        // e_scope_uri_old_form says it, with its own hint.
        Err(scope::ScopeError::OldForm(_)) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn scope_old_form(c: &Cert, _: &Context) -> Option<String> {
    let old: Vec<&str> = c.uris().filter(|u| scope::is_old_form(u)).collect();
    (!old.is_empty()).then(|| format!("old-form scope URIs: {}", old.join(", ")))
}

fn san_uri_syntax(c: &Cert, _: &Context) -> Option<String> {
    let bad: Vec<String> = c
        .uris()
        .filter_map(|u| {
            san_syntax::check_uri(u)
                .err()
                .map(|why| format!("{u:?} ({why})"))
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

fn san_uri_authority(c: &Cert, _: &Context) -> Option<String> {
    let bad: Vec<String> = c
        .uris()
        .filter(|u| san_syntax::check_uri(u).is_ok())
        .filter_map(|u| match san_syntax::uri_host(u) {
            Some(host) if !san_syntax::is_fqdn_or_ip(host) => {
                Some(format!("{u:?} names host {host:?}"))
            }
            _ => None,
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

fn dns_names(c: &Cert) -> impl Iterator<Item = &str> {
    c.sans.iter().filter_map(|s| match s {
        San::Dns(d) => Some(d.as_str()),
        _ => None,
    })
}

fn san_dns_syntax(c: &Cert, _: &Context) -> Option<String> {
    let bad: Vec<String> = dns_names(c)
        .filter(|d| !san_syntax::is_preferred_name(d))
        .map(|d| format!("{d:?}"))
        .collect();
    (!bad.is_empty()).then(|| format!("dNSName {}", bad.join(", ")))
}

fn san_dns_single_label(c: &Cert, _: &Context) -> Option<String> {
    let single: Vec<String> = dns_names(c)
        .filter(|d| san_syntax::is_preferred_name(d) && !d.contains('.'))
        .map(|d| format!("{d:?}"))
        .collect();
    (!single.is_empty()).then(|| format!("single-label dNSName {}", single.join(", ")))
}

fn server_scope_uri(c: &Cert, _: &Context) -> Option<String> {
    // A scope URI makes the kind host/site/admin, so a server with one shows
    // up as a client with serverAuth; this lint catches the remaining case of
    // a server carrying an unknown satchel: URI (or one of the old satchel:// form).
    if c.kind() != Kind::Server {
        return None;
    }
    let u: Vec<&str> = c
        .uris()
        .filter(|u| scope::is_scope_uri(u) || scope::is_old_form(u))
        .collect();
    (!u.is_empty()).then(|| format!("server carries {}", u.join(", ")))
}

fn serial_not_positive(c: &Cert, _: &Context) -> Option<String> {
    let negative = c.serial_raw.first().is_some_and(|b| b & 0x80 != 0);
    let zero = c.serial_raw.iter().all(|b| *b == 0);
    if negative {
        Some(format!(
            "serial 0x{} is negative",
            hex::encode(&c.serial_raw)
        ))
    } else if zero {
        Some("serial is zero".into())
    } else {
        None
    }
}

fn serial_too_long(c: &Cert, _: &Context) -> Option<String> {
    (c.serial_raw.len() > MAX_SERIAL_OCTETS).then(|| {
        format!(
            "serial is {} octets (at most {MAX_SERIAL_OCTETS})",
            c.serial_raw.len()
        )
    })
}

/// Significant bits of a two's-complement serial taken as unsigned.
fn significant_bits(raw: &[u8]) -> u32 {
    match raw.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => {
            let rest = (raw.len() - i - 1) as u32;
            rest * 8 + (8 - raw[i].leading_zeros())
        }
    }
}

fn serial_low_entropy(c: &Cert, _: &Context) -> Option<String> {
    let bits = significant_bits(&c.serial_raw);
    (bits < MIN_SERIAL_BITS)
        .then(|| format!("serial 0x{} has {bits} significant bits", c.serial_hex))
}

fn rsa_too_small(c: &Cert, _: &Context) -> Option<String> {
    (c.key.algorithm == KeyAlgorithm::Rsa && c.key.bits < MIN_RSA_BITS)
        .then(|| format!("RSA key of {} bits", c.key.bits))
}

fn ec_not_nist(c: &Cert, _: &Context) -> Option<String> {
    match &c.key.algorithm {
        KeyAlgorithm::Ec { curve_oid }
            if ![oid::P256, oid::P384, oid::P521].contains(&curve_oid.as_str()) =>
        {
            Some(format!(
                "EC key on curve {}",
                c.key.curve_name().unwrap_or_default()
            ))
        }
        _ => None,
    }
}

fn key_unexpected(c: &Cert, _: &Context) -> Option<String> {
    match &c.key.algorithm {
        KeyAlgorithm::Rsa | KeyAlgorithm::Ec { .. } => None,
        _ => Some(format!("{} key", c.key.type_name())),
    }
}

fn weak_hash(c: &Cert, _: &Context) -> Option<String> {
    [&c.signature_algorithm, &c.tbs_signature_algorithm]
        .iter()
        .find_map(|a| {
            oid::WEAK_SIGNATURES
                .iter()
                .find(|(o, _)| *o == a.oid)
                .map(|(_, n)| format!("signed with {n}"))
        })
}

fn sig_alg_mismatch(c: &Cert, _: &Context) -> Option<String> {
    (c.signature_algorithm != c.tbs_signature_algorithm).then(|| {
        format!(
            "signatureAlgorithm {} but tbsCertificate.signature {}",
            c.signature_algorithm.name(),
            c.tbs_signature_algorithm.name()
        )
    })
}

fn validity_exceeds(c: &Cert, ctx: &Context) -> Option<String> {
    let max = ctx.policy.max_for(c.kind())?;
    let len = c.not_after - c.not_before;
    (len > max + VALIDITY_GRACE).then(|| {
        format!(
            "{} certificate valid for {} days (policy {} days)",
            c.kind(),
            len.whole_days(),
            max.whole_days()
        )
    })
}

fn validity_inverted(c: &Cert, _: &Context) -> Option<String> {
    (c.not_before > c.not_after).then(|| {
        format!(
            "notBefore {} is after notAfter {}",
            c.not_before, c.not_after
        )
    })
}

fn missing_ski(c: &Cert, _: &Context) -> Option<String> {
    c.ski
        .is_none()
        .then(|| "no subjectKeyIdentifier".to_string())
}

fn missing_aki(c: &Cert, _: &Context) -> Option<String> {
    (!c.self_issued() && c.aki.is_none()).then(|| {
        if c.has_aki {
            "authorityKeyIdentifier has no keyIdentifier".to_string()
        } else {
            "no authorityKeyIdentifier".to_string()
        }
    })
}

fn kind_unknown(c: &Cert, _: &Context) -> Option<String> {
    (c.kind() == Kind::Unknown).then(|| "no scope URI, no serverAuth, not a CA".to_string())
}

/// Whether a certificate's SANs name `host` the way a TLS client checks it:
/// an IP SAN equal to an IP literal, or a DNS SAN equal to the name (ASCII
/// case-insensitive, trailing dot ignored), a `*.` wildcard covering exactly
/// one leftmost label.
pub fn names_host(c: &Cert, host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        let want = ip.to_string();
        return c.sans.iter().any(|s| matches!(s, San::Ip(i) if *i == want));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    c.sans.iter().any(|s| match s {
        San::Dns(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                None => d == host,
            }
        }
        _ => false,
    })
}

/// A certificate's status in the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Within its validity, not revoked, accounted for (or the ledger does not apply).
    Valid,
    /// notBefore is in the future.
    NotYetValid,
    /// notAfter has passed.
    Expired,
    /// Listed in the CRL or revoked in the ledger.
    Revoked,
    /// Issued by the audited CA but not in the ledger.
    UnknownToLedger,
}

impl Status {
    /// The kebab-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::NotYetValid => "not-yet-valid",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::UnknownToLedger => "unknown-to-ledger",
        }
    }
}

/// What the cross-certificate lints see: the deduplicated set and what the
/// audit worked out about each member.
#[derive(Debug)]
pub struct SetView<'a> {
    /// Every distinct certificate.
    pub certs: &'a [Cert],
    /// Index of the audited CA in `certs`.
    pub ca: Option<usize>,
    /// Per certificate: listed in the CRL or revoked in the ledger.
    pub revoked: &'a [bool],
    /// Per certificate: in the ledger; `None` when there is no usable ledger.
    pub in_ledger: Option<&'a [bool]>,
    /// Per certificate: the ledger records its serial (for it or another
    /// certificate); only meaningful with `in_ledger`.
    pub serial_in_ledger: &'a [bool],
    /// Per certificate: presented by the live server (`--connect`).
    pub presented: &'a [bool],
    /// The live server's end-entity certificate and the host it was reached at.
    pub presented_leaf: Option<(usize, &'a str)>,
    /// The audit's clock.
    pub now: OffsetDateTime,
    /// Window for [`W_EXPIRING_SOON`].
    pub expiring_within: Duration,
}

impl SetView<'_> {
    /// Issued by the audited CA (issuer name matches), excluding the CA itself.
    pub fn issued_by_ca(&self, i: usize) -> bool {
        match self.ca {
            Some(ca) => i != ca && self.certs[i].issuer_raw == self.certs[ca].subject_raw,
            None => false,
        }
    }

    /// Within validity and not revoked.
    pub fn live(&self, i: usize) -> bool {
        let c = &self.certs[i];
        !self.revoked[i] && c.not_before <= self.now && self.now <= c.not_after
    }

    /// The status shown in the inventory.
    pub fn status(&self, i: usize) -> Status {
        let c = &self.certs[i];
        if self.revoked[i] {
            Status::Revoked
        } else if self.now > c.not_after {
            Status::Expired
        } else if self.now < c.not_before {
            Status::NotYetValid
        } else if self.issued_by_ca(i) && self.in_ledger.is_some_and(|l| !l[i]) {
            Status::UnknownToLedger
        } else {
            Status::Valid
        }
    }
}

fn finding(lint: &'static Lint, c: &Cert, message: String) -> Finding {
    Finding {
        lint,
        certificate: Some(c.sha256.clone()),
        message,
    }
}

/// Runs every cross-certificate lint.
pub fn lint_set(v: &SetView<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    duplicate_serials(v, &mut out);
    reused_keys(v, &mut out);
    duplicate_live_scope(v, &mut out);
    expiring_soon(v, &mut out);
    issuer_checks(v, &mut out);
    presented_not_valid(v, &mut out);
    presented_name(v, &mut out);
    not_in_ledger(v, &mut out);
    out
}

fn duplicate_serials(v: &SetView<'_>, out: &mut Vec<Finding>) {
    let mut by: BTreeMap<(&[u8], &[u8]), Vec<usize>> = BTreeMap::new();
    for (i, c) in v.certs.iter().enumerate() {
        by.entry((&c.issuer_raw, &c.serial_raw))
            .or_default()
            .push(i);
    }
    for group in by.values().filter(|g| g.len() > 1) {
        for &i in group {
            let c = &v.certs[i];
            out.push(finding(
                &E_DUPLICATE_SERIAL,
                c,
                format!(
                    "serial 0x{} is shared by {} certificates of issuer {}",
                    c.serial_hex,
                    group.len(),
                    c.issuer
                ),
            ));
        }
    }
}

fn reused_keys(v: &SetView<'_>, out: &mut Vec<Finding>) {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in v.certs.iter().enumerate() {
        by.entry(&c.spki_sha256).or_default().push(i);
    }
    for group in by.values().filter(|g| g.len() > 1) {
        for &i in group {
            let c = &v.certs[i];
            out.push(finding(
                &W_KEY_REUSED,
                c,
                format!(
                    "public key {} is in {} certificates",
                    &c.spki_sha256[..16.min(c.spki_sha256.len())],
                    group.len()
                ),
            ));
        }
    }
}

fn duplicate_live_scope(v: &SetView<'_>, out: &mut Vec<Finding>) {
    let mut by: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in v.certs.iter().enumerate() {
        if !v.live(i) {
            continue;
        }
        let key = match c.scope() {
            Some(scope::Scope::Host { mac, .. }) => format!("host/{mac}"),
            Some(scope::Scope::Site(s)) => format!("site/{s}"),
            _ => continue,
        };
        by.entry(key).or_default().push(i);
    }
    let mut groups: Vec<_> = by.into_iter().filter(|(_, g)| g.len() > 1).collect();
    groups.sort();
    for (key, group) in groups {
        let serials: Vec<String> = group
            .iter()
            .map(|&i| format!("0x{}", v.certs[i].serial_hex))
            .collect();
        for &i in &group {
            out.push(finding(
                &W_DUPLICATE_LIVE_SCOPE,
                &v.certs[i],
                format!(
                    "{} live certificates for {key} (serials {})",
                    group.len(),
                    serials.join(", ")
                ),
            ));
        }
    }
}

/// Live (valid, unrevoked) certificates close to notAfter: a revoked or
/// expired certificate needs no replacement warning.
fn expiring_soon(v: &SetView<'_>, out: &mut Vec<Finding>) {
    for (i, c) in v.certs.iter().enumerate() {
        let left = c.not_after - v.now;
        if v.live(i) && left <= v.expiring_within {
            out.push(finding(
                &W_EXPIRING_SOON,
                c,
                format!(
                    "expires {} ({} days left)",
                    super::timefmt::rfc3339(c.not_after),
                    left.whole_days()
                ),
            ));
        }
    }
}

fn issuer_checks(v: &SetView<'_>, out: &mut Vec<Finding>) {
    for (i, c) in v.certs.iter().enumerate() {
        if Some(i) == v.ca {
            continue;
        }
        let Some(ca_i) = v.ca.filter(|_| v.issued_by_ca(i)) else {
            // A self-issued root that is not the audited CA, or a foreign leaf.
            out.push(finding(
                &W_ISSUER_UNKNOWN,
                c,
                format!("issuer {} is not the audited CA", c.issuer),
            ));
            continue;
        };
        let ca = &v.certs[ca_i];
        if let (Some(want), Ok((_, got))) = (
            scope::domain_of_ca(ca.uris()),
            scope::Scope::from_uris_with_domain(c.uris()),
        ) {
            if want != got {
                out.push(finding(
                    &E_SCOPE_URI_FOREIGN_DOMAIN,
                    c,
                    format!("scope URIs name {got}, the CA names {want}"),
                ));
            }
        }
        if c.signature_verifies_with(ca) == Some(false) {
            out.push(finding(
                &E_SIGNATURE_INVALID,
                c,
                "signature does not verify with the CA's public key".into(),
            ));
        }
        if let (Some(aki), Some(ski)) = (&c.aki, &ca.ski) {
            if aki != ski {
                out.push(finding(
                    &E_AKI_MISMATCH,
                    c,
                    format!(
                        "authorityKeyIdentifier {} but CA subjectKeyIdentifier {}",
                        hex::encode(aki),
                        hex::encode(ski)
                    ),
                ));
            }
        }
    }
}

fn presented_not_valid(v: &SetView<'_>, out: &mut Vec<Finding>) {
    for (i, c) in v.certs.iter().enumerate() {
        if !v.presented[i] {
            continue;
        }
        let st = v.status(i);
        if matches!(st, Status::Expired | Status::NotYetValid | Status::Revoked) {
            out.push(finding(
                &E_PRESENTED_CERT_NOT_VALID,
                c,
                format!("the live server presents a {} certificate", st.as_str()),
            ));
        }
    }
}

fn presented_name(v: &SetView<'_>, out: &mut Vec<Finding>) {
    let Some((i, host)) = v.presented_leaf else {
        return;
    };
    let c = &v.certs[i];
    if !names_host(c, host) {
        let names: Vec<String> = c
            .sans
            .iter()
            .filter(|s| matches!(s, San::Dns(_) | San::Ip(_)))
            .map(|s| s.to_string())
            .collect();
        out.push(finding(
            &E_PRESENTED_NAME_MISMATCH,
            c,
            format!(
                "reached at {host} but the certificate names {}",
                if names.is_empty() {
                    "no DNS or IP".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
}

fn not_in_ledger(v: &SetView<'_>, out: &mut Vec<Finding>) {
    let Some(in_ledger) = v.in_ledger else {
        return;
    };
    for (i, c) in v.certs.iter().enumerate() {
        if v.issued_by_ca(i) && !in_ledger[i] {
            let message = if v.serial_in_ledger.get(i).copied().unwrap_or(false) {
                format!(
                    "serial 0x{} is in the ledger, but for a different certificate",
                    c.serial_hex
                )
            } else {
                format!("serial 0x{} is not in the ledger", c.serial_hex)
            };
            out.push(finding(&E_NOT_IN_LEDGER, c, message));
        }
    }
}

/// Pure syntax checks of SAN names: RFC 3986 URIs and their authority
/// (RFC 5280 §4.2.1.6), and the preferred name syntax of DNS names.
pub mod san_syntax {
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn is_unreserved(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
    }

    fn is_sub_delim(c: u8) -> bool {
        matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        )
    }

    /// Checks that `uri` is an absolute URI (RFC 3986 §4.3) whose
    /// scheme-specific part is not empty (RFC 5280 §4.2.1.6): `Err` says what
    /// is wrong.
    pub fn check_uri(uri: &str) -> Result<(), &'static str> {
        let Some((scheme, rest)) = uri.split_once(':') else {
            return Err("no scheme");
        };
        let sb = scheme.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err("invalid scheme");
        }
        if rest.is_empty() {
            return Err("empty scheme-specific part");
        }
        let b = rest.as_bytes();
        // Brackets belong to an IP literal, which only an authority holds.
        let authority_end = match rest.strip_prefix("//") {
            Some(r) => 2 + r.find(['/', '?', '#']).unwrap_or(r.len()),
            None => 0,
        };
        let mut i = 0;
        let mut fragments = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'%' {
                let hex = b.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return Err("bad percent-encoding");
                }
                i += 3;
                continue;
            }
            if c == b'#' {
                fragments += 1;
            }
            if matches!(c, b'[' | b']') && i >= authority_end {
                return Err("brackets outside the authority");
            }
            let ok = is_unreserved(c)
                || is_sub_delim(c)
                || matches!(c, b':' | b'@' | b'/' | b'?' | b'#' | b'[' | b']');
            if !ok {
                return Err("character not allowed in a URI");
            }
            i += 1;
        }
        if fragments > 1 {
            return Err("more than one '#'");
        }
        if let Some(auth) = authority(uri) {
            let host = host_of(auth);
            if host.contains(['[', ']']) && !(host.starts_with('[') && host.ends_with(']')) {
                return Err("misplaced brackets in the authority");
            }
        }
        Ok(())
    }

    /// The authority of a URI that has one (`scheme://authority…`).
    fn authority(uri: &str) -> Option<&str> {
        let (_, rest) = uri.split_once(':')?;
        let rest = rest.strip_prefix("//")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// The host of an authority: without userinfo and port.
    fn host_of(auth: &str) -> &str {
        let h = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
        if h.starts_with('[') {
            return match h.find(']') {
                Some(end) => &h[..=end],
                None => h,
            };
        }
        match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|c| c.is_ascii_digit()) => host,
            _ => h,
        }
    }

    /// The host a URI's authority names, when it has an authority.
    pub fn uri_host(uri: &str) -> Option<&str> {
        authority(uri).map(host_of)
    }

    /// A fully qualified domain name (preferred syntax, two labels or more)
    /// or an IP address (IPv4 dotted, IPv6 in brackets).
    pub fn is_fqdn_or_ip(host: &str) -> bool {
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<Ipv6Addr>().is_ok();
        }
        host.parse::<Ipv4Addr>().is_ok() || (is_preferred_name(host) && host.contains('.'))
    }

    /// The preferred name syntax of RFC 1034 §3.5 as RFC 5280 §4.2.1.6 uses
    /// it: labels of letters, digits and hyphens, 1–63 long, neither starting
    /// nor ending with a hyphen; at most 253 characters; no trailing dot.
    pub fn is_preferred_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_syntax_and_authority() {
        use san_syntax::{check_uri, is_fqdn_or_ip, uri_host};
        for ok in [
            "satchel:host:aa-bb-cc-dd-ee-ff",
            "satchel:site:dc1",
            "satchel:admin:alice.b_c",
            "https://boot.example.net/x?y=1#z",
            "urn:isbn:0451450523",
            "ldap://[2001:db8::1]:389/o=x",
            "sip:alice@sip.example.com",
            "a+b.c-d:x%2Fy",
        ] {
            assert_eq!(check_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "no-scheme",
            ":x",
            "1http://example.net/",
            "satchel:",
            "satchel:a b",
            "satchel:a%zz",
            "satchel:a%2",
            "satchel:\"q\"",
            "https://example.net/#a#b",
            "https://ex[ample.net/",
            "https://example.net/[x]",
            "satchel:é",
        ] {
            assert!(check_uri(bad).is_err(), "{bad:?}");
        }
        assert_eq!(uri_host("satchel:host:aa-bb-cc-dd-ee-ff"), None);
        assert_eq!(uri_host("satchel://host/aa-bb-cc-dd-ee-ff"), Some("host"));
        assert_eq!(
            uri_host("https://u:p@boot.example.net:8443/x"),
            Some("boot.example.net")
        );
        assert_eq!(
            uri_host("ldap://[2001:db8::1]:389/o=x"),
            Some("[2001:db8::1]")
        );
        assert_eq!(uri_host("file:///etc/x"), Some(""));
        for ok in [
            "boot.example.net",
            "192.0.2.1",
            "[2001:db8::1]",
            "A1.Example.NET",
        ] {
            assert!(is_fqdn_or_ip(ok), "{ok}");
        }
        for bad in [
            "host",
            "site",
            "admin",
            "",
            "localhost",
            "[x]",
            "a..b",
            "-a.b",
            "a.b.",
        ] {
            assert!(!is_fqdn_or_ip(bad), "{bad}");
        }
    }

    #[test]
    fn preferred_name_syntax() {
        use san_syntax::is_preferred_name;
        for ok in [
            "boot1.example.net",
            "localhost",
            "xn--ls8h.example",
            "a-b.c",
        ] {
            assert!(is_preferred_name(ok), "{ok}");
        }
        let long_label = format!("{}.net", "a".repeat(64));
        let long_name = format!("{}net", "abcdefghi.".repeat(26));
        for bad in [
            "",
            "-a.example.net",
            "a-.example.net",
            "boot.example.net.",
            "*.example.net",
            "a_b.example.net",
            "a..b",
            "a b.net",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_preferred_name(bad), "{bad}");
        }
    }

    #[test]
    fn ids_are_unique_and_prefixed_by_severity() {
        let mut seen = std::collections::HashSet::new();
        for l in LINTS {
            assert!(seen.insert(l.id), "duplicate id {}", l.id);
            let prefix = match l.severity {
                Severity::Error => "e_",
                Severity::Warning => "w_",
                Severity::Notice => "n_",
            };
            assert!(l.id.starts_with(prefix), "{}", l.id);
            assert!(!l.hint.is_empty() && !l.hint.contains('\n'), "{}", l.id);
            assert!(by_id(l.id).is_some());
        }
        assert!(LINTS.len() >= 20);
    }

    #[test]
    fn significant_bits_counts() {
        assert_eq!(significant_bits(&[]), 0);
        assert_eq!(significant_bits(&[0, 0]), 0);
        assert_eq!(significant_bits(&[1]), 1);
        assert_eq!(significant_bits(&[0, 0x80]), 8);
        assert_eq!(significant_bits(&[0x01, 0, 0, 0, 0, 0, 0, 0]), 57);
        assert_eq!(significant_bits(&[0x80, 0, 0, 0, 0, 0, 0, 0]), 64);
    }
}
