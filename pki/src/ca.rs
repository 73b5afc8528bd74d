//! The CA: create it, open it, issue, revoke, sign CRLs. Every operation
//! that signs something appends a line, signed by the CA key, to the ledger
//! ([`crate::ledger`]); every certificate issued is also copied to `DIR/certs/`.
//!
//! Invariants:
//! - the CA key never leaves this module unencrypted except as
//!   `DIR/ca.key` when [`KeySecret::InsecurePlaintext`] was chosen (tests);
//!   it never appears in `Debug` output;
//! - every key file is created 0600 and never overwritten;
//! - nothing is signed when the ledger's chain does not verify (a forged
//!   ledger is never extended);
//! - an opened CA's key matches `DIR/ca.crt`.
//!
//! One writer at a time: every operation that appends to the ledger holds an
//! exclusive `flock` on `DIR/.lock` from its ledger check to its append, so
//! two commands run at once cannot fork the chain.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use rcgen::{Issuer, KeyPair, PublicKeyData, RevocationReason, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use satchel_names::{Mac, SiteName};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::layout;
use crate::ledger::{CertKind, Event, Ledger, LedgerError};
use crate::profile::{self, Curve, LeafRequest, ProfileError};
use crate::scope::{self, AdminName, Domain, Scope};
use crate::serial::{parse_serial, serial_hex, SerialError};

/// How long a CRL is valid when `crl --next-update-days` is not given.
pub const CRL_NEXT_UPDATE_DAYS: u32 = 7;
/// Longest CRL validity accepted.
pub const MAX_CRL_NEXT_UPDATE_DAYS: u32 = 366;
/// Largest CA key file read, in bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Errors of CA operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `init` on a directory that already holds a CA.
    #[error("{0} already holds a CA (ca.crt exists); refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    /// No CA in the directory.
    #[error("{0} holds no CA (no ca.crt); run `satchel-pki init` first or pass --dir")]
    NotInitialized(PathBuf),
    /// The key is encrypted and no passphrase was given, or the reverse.
    #[error("{0}")]
    KeyAccess(String),
    /// Wrong passphrase or damaged key file.
    #[error("cannot decrypt the CA key (wrong passphrase or damaged ca.key.age): {0}")]
    Decrypt(String),
    /// The key does not parse or does not match ca.crt.
    #[error("CA key: {0}")]
    Key(String),
    /// ca.crt does not parse.
    #[error("CA certificate: {0}")]
    Cert(String),
    /// Certificate generation failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// Bad request.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Ledger problem.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Bad serial text.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// Revoking a serial the ledger does not know.
    #[error("serial {0} was not issued by this CA (not in the ledger)")]
    UnknownSerial(String),
    /// Revoking the CA itself or a serial already revoked.
    #[error("cannot revoke {0}")]
    Revoke(String),
    /// Bad revocation reason.
    #[error("unknown revocation reason {0:?} (one of: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn)")]
    Reason(String),
    /// A leaf that would stay valid after the CA expires.
    #[error("the certificate would be valid until {leaf} but the CA expires at {ca}; pass a shorter --validity-days or create a new CA")]
    OutlivesCa {
        /// The leaf's notAfter.
        leaf: OffsetDateTime,
        /// The CA's notAfter.
        ca: OffsetDateTime,
    },
    /// A file that must not be overwritten already exists.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Maps an I/O error on `path`, naming an existing file as [`CaError::Exists`].
fn new_file_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CaError::Exists(path.to_path_buf())
        } else {
            CaError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    }
}

/// A temporary name beside `path` (same directory, so a rename or link is atomic).
fn temp_beside(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes a new file with the given mode; refuses to overwrite.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(new_file_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Writes a secret (key, identity) as a new 0600 file; refuses to overwrite.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    write_new(path, bytes, 0o600)
}

/// Writes a secret as a new 0600 file that appears whole or not at all:
/// written under a temporary name in the same directory, then hard-linked
/// into place (which, like `write_secret`, refuses to overwrite). For files
/// that other processes read without taking the CA lock.
pub fn write_secret_whole(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let tmp = temp_beside(path);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes, 0o600)?;
    let linked = std::fs::hard_link(&tmp, path).map_err(new_file_err(path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Writes a public file (certificate) as a new 0644 file; refuses to overwrite.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    write_new(path, bytes, 0o644)
}

/// Replaces a public file atomically (temporary file in the same directory, then rename).
pub fn replace_public(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let tmp = temp_beside(path);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes, 0o644)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// An exclusive `flock` on `DIR/.lock`, released when dropped.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, CaError> {
        let path = dir.join(layout::LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            CaError::Io {
                path: path.clone(),
                source: e.into(),
            }
        })?;
        Ok(DirLock { _file: file })
    }
}

/// How the CA key is protected at rest.
pub enum KeySecret {
    /// Encrypted with this age passphrase (scrypt).
    Passphrase(SecretString),
    /// Stored in plaintext: for tests only.
    InsecurePlaintext,
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySecret::Passphrase(_) => f.write_str("Passphrase([redacted])"),
            KeySecret::InsecurePlaintext => f.write_str("InsecurePlaintext"),
        }
    }
}

impl KeySecret {
    /// A passphrase from text.
    pub fn passphrase(p: impl Into<String>) -> Self {
        KeySecret::Passphrase(SecretString::from(p.into()))
    }
}

/// Options of [`Ca::init`].
#[derive(Debug)]
pub struct InitOptions {
    /// The CA's subject CN.
    pub name: String,
    /// The deployment's domain: the authority of every scope URI this CA
    /// issues, named in its own certificate ([`crate::scope`]).
    pub domain: Domain,
    /// Key curve.
    pub curve: Curve,
    /// Validity in days.
    pub validity_days: u32,
    /// Key protection.
    pub key: KeySecret,
}

impl InitOptions {
    /// Defaults with a passphrase-encrypted key.
    pub fn new(name: impl Into<String>, domain: Domain, key: KeySecret) -> Self {
        InitOptions {
            name: name.into(),
            domain,
            curve: Curve::P256,
            validity_days: profile::CA_VALIDITY_DAYS,
            key,
        }
    }

    /// Defaults with a plaintext key, under [`TEST_DOMAIN`]: for tests.
    pub fn insecure(name: impl Into<String>) -> Self {
        Self::new(name, test_domain(), KeySecret::InsecurePlaintext)
    }
}

/// A PEM private key that stays out of `Debug`.
#[derive(Clone)]
pub struct SecretPem(String);

impl SecretPem {
    /// The PEM text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem([redacted])")
    }
}

/// A certificate just issued, with its new key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Which profile.
    pub kind: CertKind,
    /// Serial, canonical hex.
    pub serial_hex: String,
    /// The scope (client certificates).
    pub scope: Option<Scope>,
    /// PEM certificate.
    pub cert_pem: String,
    /// DER certificate.
    pub cert_der: CertificateDer<'static>,
    /// PEM PKCS#8 private key.
    pub key_pem: SecretPem,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The copy kept in the CA directory.
    pub copy: PathBuf,
}

impl Issued {
    /// Writes `PREFIX.crt` and `PREFIX.key` (0600); refuses to overwrite.
    pub fn write(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), CaError> {
        let base = prefix.as_os_str().to_string_lossy().into_owned();
        let crt = PathBuf::from(format!("{base}.crt"));
        let key = PathBuf::from(format!("{base}.key"));
        if crt.exists() {
            return Err(CaError::Exists(crt));
        }
        write_secret(&key, self.key_pem.expose().as_bytes())?;
        write_public(&crt, self.cert_pem.as_bytes())?;
        Ok((crt, key))
    }
}

/// A signed CRL.
#[derive(Clone, Debug)]
pub struct SignedCrl {
    /// PEM text.
    pub pem: String,
    /// DER bytes.
    pub der: Vec<u8>,
    /// cRLNumber.
    pub number: u64,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// Serials listed.
    pub revoked: Vec<String>,
}

/// RFC 5280 revocation reasons an operator may give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Reason {
    /// unspecified (0)
    #[cfg_attr(feature = "cli", value(name = "unspecified"))]
    Unspecified,
    /// keyCompromise (1)
    #[cfg_attr(
        feature = "cli",
        value(
            name = "keyCompromise",
            alias = "key-compromise",
            alias = "key_compromise"
        )
    )]
    KeyCompromise,
    /// affiliationChanged (3)
    #[cfg_attr(
        feature = "cli",
        value(
            name = "affiliationChanged",
            alias = "affiliation-changed",
            alias = "affiliation_changed"
        )
    )]
    AffiliationChanged,
    /// superseded (4)
    #[cfg_attr(feature = "cli", value(name = "superseded"))]
    Superseded,
    /// cessationOfOperation (5)
    #[cfg_attr(
        feature = "cli",
        value(
            name = "cessationOfOperation",
            alias = "cessation-of-operation",
            alias = "cessation_of_operation"
        )
    )]
    CessationOfOperation,
    /// privilegeWithdrawn (9)
    #[cfg_attr(
        feature = "cli",
        value(
            name = "privilegeWithdrawn",
            alias = "privilege-withdrawn",
            alias = "privilege_withdrawn"
        )
    )]
    PrivilegeWithdrawn,
}

impl Reason {
    /// Accepted names (also accepted in kebab-case, any case).
    pub const NAMES: [&'static str; 6] = [
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    ];
    const ALL: [Reason; 6] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 name.
    pub fn name(self) -> &'static str {
        let i = Self::ALL.iter().position(|r| *r == self).unwrap_or(0);
        Self::NAMES[i]
    }

    fn rcgen(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = CaError;
    fn from_str(s: &str) -> Result<Self, CaError> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::NAMES
            .iter()
            .position(|n| n.to_ascii_lowercase() == norm)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| CaError::Reason(s.chars().take(64).collect()))
    }
}

/// The domain of test and demo CAs: under `.test`, which RFC 6761 reserves
/// for testing, so it never names anybody's real deployment.
pub const TEST_DOMAIN: &str = "satchel.test";

/// [`TEST_DOMAIN`] as a [`Domain`].
pub fn test_domain() -> Domain {
    Domain::parse(TEST_DOMAIN).unwrap_or_else(|_| unreachable!("TEST_DOMAIN is a valid domain"))
}

/// An open CA directory.
pub struct Ca {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    /// The domain its certificate names (`None` for a CA made before scope
    /// URIs carried one: it can still issue server certificates).
    domain: Option<Domain>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CaError> {
    use satchel_names::file::ReadError;
    // Bounded by what is read, not by metadata a file can change in between.
    satchel_names::file::read_bounded(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        ReadError::Io { path, source } => CaError::Io { path, source },
        other => CaError::Key(other.to_string()),
    })
}

/// The deployment domain a CA certificate names ([`scope::domain_of_ca`]).
pub fn ca_domain(x: &X509Certificate<'_>) -> Option<Domain> {
    let san = x.subject_alternative_name().ok()??;
    scope::domain_of_ca(san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(*u),
        _ => None,
    }))
}

fn san_text(s: &SanType) -> String {
    match s {
        SanType::DnsName(n) => format!("dns:{}", n.as_str()),
        SanType::URI(n) => format!("uri:{}", n.as_str()),
        SanType::IpAddress(ip) => format!("ip:{ip}"),
        SanType::Rfc822Name(n) => format!("email:{}", n.as_str()),
        SanType::OtherName(_) => "othername".into(),
        _ => "other".into(),
    }
}

impl Ca {
    /// Creates a CA in `dir` (created if missing): key, self-signed
    /// certificate, ledger line 0. Refuses a directory that holds a CA.
    pub fn init(dir: &Path, opts: InitOptions) -> Result<Ca, CaError> {
        Self::init_at(dir, opts, OffsetDateTime::now_utc())
    }

    /// One call for tests: a CA named `name` with a plaintext key in `dir`.
    pub fn init_insecure(dir: &Path, name: &str) -> Result<Ca, CaError> {
        Self::init(dir, InitOptions::insecure(name))
    }

    /// [`Ca::init`] at a given time.
    pub fn init_at(dir: &Path, opts: InitOptions, now: OffsetDateTime) -> Result<Ca, CaError> {
        let cert_path = dir.join(layout::CA_CERT);
        if cert_path.exists() {
            return Err(CaError::AlreadyInitialized(dir.to_path_buf()));
        }
        let params = profile::ca_params(&opts.name, &opts.domain, opts.validity_days, now)?;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate_for(opts.curve.algorithm())
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let key_pem = key.serialize_pem();
        match &opts.key {
            KeySecret::InsecurePlaintext => {
                write_secret(&dir.join(layout::CA_KEY_PLAINTEXT), key_pem.as_bytes())?
            }
            KeySecret::Passphrase(p) => {
                if p.expose_secret().is_empty() {
                    return Err(CaError::KeyAccess("the passphrase is empty".into()));
                }
                let r =
                    age::scrypt::Recipient::new(SecretString::from(p.expose_secret().to_owned()));
                let enc = age::encrypt(&r, key_pem.as_bytes())
                    .map_err(|e| CaError::Key(format!("encrypting: {e}")))?;
                write_secret(&dir.join(layout::CA_KEY_ENCRYPTED), &enc)?;
            }
        }
        write_public(&cert_path, cert.pem().as_bytes())?;
        let ca = Ca {
            dir: dir.to_path_buf(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
            domain: Some(opts.domain.clone()),
        };
        let (_, x) = X509Certificate::from_der(ca.cert_der.as_ref())
            .map_err(|e| CaError::Cert(e.to_string()))?;
        let event = Event::Init {
            subject: x.subject().to_string(),
            serial: serial_hex(x.tbs_certificate.raw_serial()),
            sha256: hex::encode(Sha256::digest(ca.cert_der.as_ref())),
            key_algorithm: opts.curve.name().into(),
            not_after: params.not_after,
            file: layout::CA_CERT.into(),
        };
        ca.record(event, now)?;
        Ok(ca)
    }

    /// Opens the CA in `dir` with its key.
    pub fn open(dir: &Path, secret: &KeySecret) -> Result<Ca, CaError> {
        let cert_path = dir.join(layout::CA_CERT);
        if !cert_path.exists() {
            return Err(CaError::NotInitialized(dir.to_path_buf()));
        }
        let cert_pem_bytes = read_bounded(&cert_path)?;
        let cert_der = CertificateDer::from_pem_slice(&cert_pem_bytes)
            .map_err(|e| CaError::Cert(e.to_string()))?;
        let enc = dir.join(layout::CA_KEY_ENCRYPTED);
        let plain = dir.join(layout::CA_KEY_PLAINTEXT);
        let key_pem = match secret {
            KeySecret::InsecurePlaintext => {
                if !plain.exists() {
                    return Err(CaError::KeyAccess(format!(
                        "the CA key is encrypted ({}); give its passphrase (SATCHEL_PKI_PASSPHRASE)",
                        layout::CA_KEY_ENCRYPTED
                    )));
                }
                String::from_utf8(read_bounded(&plain)?)
                    .map_err(|_| CaError::Key("ca.key is not UTF-8 PEM".into()))?
            }
            KeySecret::Passphrase(p) => {
                if !enc.exists() {
                    return Err(CaError::KeyAccess(format!(
                        "no encrypted CA key ({}) in {}",
                        layout::CA_KEY_ENCRYPTED,
                        dir.display()
                    )));
                }
                let data = read_bounded(&enc)?;
                let id =
                    age::scrypt::Identity::new(SecretString::from(p.expose_secret().to_owned()));
                let plain =
                    age::decrypt(&id, &data).map_err(|e| CaError::Decrypt(e.to_string()))?;
                String::from_utf8(plain).map_err(|_| CaError::Key("not UTF-8 PEM".into()))?
            }
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Key(e.to_string()))?;
        let (_, x) = X509Certificate::from_der(cert_der.as_ref())
            .map_err(|e| CaError::Cert(e.to_string()))?;
        if x.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::Key(format!(
                "the key does not match {}",
                cert_path.display()
            )));
        }
        let cert_pem = String::from_utf8_lossy(&cert_pem_bytes).into_owned();
        let domain = ca_domain(&x);
        Ok(Ca {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der,
            key,
            domain,
        })
    }

    /// Opens a CA created with a plaintext key.
    pub fn open_insecure(dir: &Path) -> Result<Ca, CaError> {
        Self::open(dir, &KeySecret::InsecurePlaintext)
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The deployment domain its certificate names, under which it issues
    /// scope URIs; `None` for a CA made by an older `satchel-pki`.
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate's notAfter.
    pub fn not_after(&self) -> Result<OffsetDateTime, CaError> {
        let (_, x) = X509Certificate::from_der(self.cert_der.as_ref())
            .map_err(|e| CaError::Cert(e.to_string()))?;
        Ok(x.validity().not_after.to_datetime())
    }

    /// The ledger as it is now.
    pub fn ledger(&self) -> Result<Ledger, CaError> {
        Ok(Ledger::open(&self.dir)?)
    }

    /// Appends a signed event to the ledger.
    pub(crate) fn record_event(&self, event: Event, now: OffsetDateTime) -> Result<(), CaError> {
        let _lock = self.lock()?;
        self.check_ledger()?;
        self.record(event, now)
    }

    /// Runs `f` holding the directory's write lock, after checking the
    /// ledger; `f` gets a function that appends an event without re-locking.
    pub(crate) fn with_lock<T, E: From<CaError>>(
        &self,
        f: impl FnOnce(&dyn Fn(Event, OffsetDateTime) -> Result<(), CaError>) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = self.lock()?;
        self.check_ledger()?;
        f(&|event, now| self.record(event, now))
    }

    fn record(&self, event: Event, now: OffsetDateTime) -> Result<(), CaError> {
        Ledger::append(
            &self.dir.join(layout::LEDGER),
            self.cert_der.as_ref(),
            &self.key,
            event,
            now,
        )?;
        Ok(())
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key)
            .map_err(|e| CaError::Cert(e.to_string()))
    }

    /// Holds the directory's write lock until the guard is dropped. Never
    /// taken twice by one call chain (flock would wait for itself).
    fn lock(&self) -> Result<DirLock, CaError> {
        DirLock::acquire(&self.dir)
    }

    /// Refuses to sign on top of a broken ledger.
    fn check_ledger(&self) -> Result<Ledger, CaError> {
        let l = self.ledger()?;
        let problems = l.verify_head(self.cert_der.as_ref())?;
        if let Some(p) = problems.first() {
            return Err(
                LedgerError::Broken(format!("{p} (run `satchel-pki ledger verify`)")).into(),
            );
        }
        Ok(l)
    }

    /// Issues a leaf certificate; `days` defaults to the kind's validity.
    pub fn issue(&self, req: &LeafRequest, days: Option<u32>) -> Result<Issued, CaError> {
        self.issue_at(req, days, OffsetDateTime::now_utc())
    }

    /// [`Ca::issue`] at a given time.
    pub fn issue_at(
        &self,
        req: &LeafRequest,
        days: Option<u32>,
        now: OffsetDateTime,
    ) -> Result<Issued, CaError> {
        let kind = req.kind();
        let days = days.unwrap_or_else(|| profile::default_validity_days(kind));
        let params = profile::leaf_params(req, self.domain.as_ref(), days, now)?;
        let ca_not_after = self.not_after()?;
        if params.not_after > ca_not_after {
            return Err(CaError::OutlivesCa {
                leaf: params.not_after,
                ca: ca_not_after,
            });
        }
        let _lock = self.lock()?;
        self.check_ledger()?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let der = cert.der().clone();
        let (_, x) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| CaError::Cert(e.to_string()))?;
        let serial = serial_hex(x.tbs_certificate.raw_serial());
        let certs = self.dir.join(layout::CERTS_DIR);
        std::fs::create_dir_all(&certs).map_err(io_err(&certs))?;
        let file = format!("{}/{serial}.crt", layout::CERTS_DIR);
        let copy = self.dir.join(&file);
        write_public(&copy, cert.pem().as_bytes())?;
        let event = Event::Issue {
            kind,
            serial: serial.clone(),
            subject: x.subject().to_string(),
            sans: params.subject_alt_names.iter().map(san_text).collect(),
            not_before: params.not_before,
            not_after: params.not_after,
            sha256: hex::encode(Sha256::digest(der.as_ref())),
            file,
        };
        if let Err(e) = self.record(event, now) {
            // Without its ledger line the copy would be an unledgered certificate.
            let _ = std::fs::remove_file(&copy);
            return Err(e);
        }
        Ok(Issued {
            kind,
            serial_hex: serial,
            scope: match req {
                LeafRequest::Client(s) => Some(s.clone()),
                LeafRequest::Server { .. } => None,
            },
            cert_pem: cert.pem(),
            cert_der: der,
            key_pem: SecretPem(key.serialize_pem()),
            not_before: params.not_before,
            not_after: params.not_after,
            copy,
        })
    }

    /// A server certificate for these DNS names and IPs.
    pub fn issue_server(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        days: Option<u32>,
    ) -> Result<Issued, CaError> {
        let dns = dns
            .iter()
            .map(|d| profile::parse_dns_name(d))
            .collect::<Result<Vec<_>, _>>()?;
        self.issue(
            &LeafRequest::Server {
                dns,
                ips: ips.to_vec(),
            },
            days,
        )
    }

    /// A host certificate (with its site URI when `site` is given).
    pub fn issue_host(
        &self,
        mac: Mac,
        site: Option<SiteName>,
        days: Option<u32>,
    ) -> Result<Issued, CaError> {
        self.issue(&LeafRequest::Client(Scope::Host { mac, site }), days)
    }

    /// A site certificate.
    pub fn issue_site(&self, site: SiteName, days: Option<u32>) -> Result<Issued, CaError> {
        self.issue(&LeafRequest::Client(Scope::Site(site)), days)
    }

    /// An admin certificate.
    pub fn issue_admin(&self, name: AdminName, days: Option<u32>) -> Result<Issued, CaError> {
        self.issue(&LeafRequest::Client(Scope::Admin(name)), days)
    }

    /// Records a revocation (it takes effect in the next [`Ca::crl`]).
    pub fn revoke(&self, serial: &str, reason: Reason) -> Result<String, CaError> {
        let serial = parse_serial(serial)?;
        let _lock = self.lock()?;
        let ledger = self.check_ledger()?;
        match ledger.issued_serials().get(&serial) {
            None => return Err(CaError::UnknownSerial(serial)),
            Some(CertKind::Ca) => {
                return Err(CaError::Revoke(format!(
                    "{serial}: it is the CA itself; retire the CA instead"
                )))
            }
            Some(_) => {}
        }
        if ledger.revoked().contains_key(&serial) {
            return Err(CaError::Revoke(format!("{serial}: already revoked")));
        }
        self.record(
            Event::Revoke {
                serial: serial.clone(),
                reason: reason.name().into(),
            },
            OffsetDateTime::now_utc(),
        )?;
        Ok(serial)
    }

    /// Signs a CRL of every revocation in the ledger, numbered one above
    /// the last, valid for `next_update_days` (default
    /// [`CRL_NEXT_UPDATE_DAYS`]); keeps a copy as `DIR/crl.pem`.
    pub fn crl(&self, next_update_days: Option<u32>) -> Result<SignedCrl, CaError> {
        self.crl_at(next_update_days, OffsetDateTime::now_utc())
    }

    /// [`Ca::crl`] at a given time.
    pub fn crl_at(
        &self,
        next_update_days: Option<u32>,
        now: OffsetDateTime,
    ) -> Result<SignedCrl, CaError> {
        let days = next_update_days.unwrap_or(CRL_NEXT_UPDATE_DAYS);
        if days == 0 || days > MAX_CRL_NEXT_UPDATE_DAYS {
            return Err(ProfileError::Validity {
                days,
                max: MAX_CRL_NEXT_UPDATE_DAYS,
            }
            .into());
        }
        let _lock = self.lock()?;
        let ledger = self.check_ledger()?;
        let number = ledger.last_crl_number() + 1;
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let this_update = now;
        let next_update = now + Duration::days(i64::from(days));
        let mut revoked_certs = Vec::new();
        let mut revoked = Vec::new();
        let mut seen = BTreeSet::new();
        for (serial, (reason, at)) in ledger.revoked() {
            let bytes = hex::decode(&serial).map_err(|_| CaError::UnknownSerial(serial.clone()))?;
            let reason: Reason = reason.parse()?;
            if seen.insert(serial.clone()) {
                revoked_certs.push(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&bytes),
                    revocation_time: at,
                    reason_code: Some(reason.rcgen()),
                    invalidity_date: None,
                });
                revoked.push(serial);
            }
        }
        let (_, x) = X509Certificate::from_der(self.cert_der.as_ref())
            .map_err(|e| CaError::Cert(e.to_string()))?;
        let ski = x
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| CaError::Cert("the CA certificate has no SKI".into()))?;
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::PreSpecified(ski),
        };
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        let pem = crl.pem().map_err(|e| CaError::Sign(e.to_string()))?;
        let der = crl.der().as_ref().to_vec();
        self.record(
            Event::Crl {
                number,
                this_update,
                next_update,
                revoked: revoked.clone(),
                sha256: hex::encode(Sha256::digest(&der)),
            },
            now,
        )?;
        replace_public(&self.dir.join(layout::CRL_PEM), pem.as_bytes())?;
        Ok(SignedCrl {
            pem,
            der,
            number,
            this_update,
            next_update,
            revoked,
        })
    }
}
