//! Reading a CRL for the TLS server, and noticing when its file changes.
//!
//! [`load_crl`] reads a PEM or DER CRL (bounded by [`MAX_CRL_BYTES`]) into a
//! [`LoadedCrl`]: its DER for rustls, its number, this/next update and the
//! set of revoked serials (canonical hex, [`crate::serial`]). [`CrlWatcher`]
//! polls one file and yields a new [`LoadedCrl`] when its mtime, size or
//! sha256 changed; the server rebuilds its `ServerConfig` with it.
//!
//! Staleness policy: a CRL whose nextUpdate has passed is *still enforced*
//! (the certificates it lists stay refused); [`LoadedCrl::is_stale`] lets
//! the server show it in metrics and logs. Refusing every client because the
//! CA workstation was offline for a week would turn a late CRL into an
//! outage, while ignoring the CRL would un-revoke certificates.
//!
//! It does not fetch CRLs over the network, and [`load_crl`] does not check
//! the signature: call [`LoadedCrl::verify_issued_by`] with the CA
//! certificate before trusting its contents (rustls checks it again at
//! every handshake).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use crate::serial::serial_hex;

/// Largest CRL file accepted, in bytes (a CRL listing 100 000 serials is ~4 MiB).
pub const MAX_CRL_BYTES: u64 = 8 * 1024 * 1024;

/// Errors from reading a CRL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// The file could not be read.
    #[error("cannot read CRL {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Over [`MAX_CRL_BYTES`].
    #[error("CRL is larger than {MAX_CRL_BYTES} bytes")]
    TooLarge,
    /// Not a PEM `X509 CRL` block or a DER CRL.
    #[error("not a CRL (PEM \"X509 CRL\" or DER expected): {0}")]
    Malformed(String),
    /// A CRL number beyond 64 bits (ours count from 1).
    #[error("CRL number is larger than 64 bits")]
    NumberTooLarge,
    /// Not signed by the given CA, or issuer name differs.
    #[error("CRL is not issued by this CA: {0}")]
    WrongIssuer(String),
}

/// A parsed CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedCrl {
    /// DER bytes, for `tls::server_config`.
    pub der: CertificateRevocationListDer<'static>,
    /// The cRLNumber extension, if present.
    pub number: Option<u64>,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate, if present.
    pub next_update: Option<OffsetDateTime>,
    /// Revoked serials in canonical hex.
    pub revoked: BTreeSet<String>,
    /// Lowercase hex sha256 of the DER.
    pub sha256_hex: String,
}

impl LoadedCrl {
    /// Parses PEM (`-----BEGIN X509 CRL-----`) or DER bytes.
    pub fn parse(bytes: &[u8]) -> Result<LoadedCrl, CrlError> {
        if bytes.len() as u64 > MAX_CRL_BYTES {
            return Err(CrlError::TooLarge);
        }
        let der: Vec<u8> = if looks_like_pem(bytes) {
            CertificateRevocationListDer::from_pem_slice(bytes)
                .map_err(|e| CrlError::Malformed(format!("PEM: {e}")))?
                .as_ref()
                .to_vec()
        } else {
            bytes.to_vec()
        };
        let (rest, crl) = CertificateRevocationList::from_der(&der)
            .map_err(|e| CrlError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CrlError::Malformed(format!(
                "{} trailing bytes after the CRL",
                rest.len()
            )));
        }
        let number = match crl.crl_number() {
            None => None,
            Some(n) => Some(u64::try_from(n).map_err(|_| CrlError::NumberTooLarge)?),
        };
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| serial_hex(r.raw_serial()))
            .collect();
        let this_update = crl.last_update().to_datetime();
        let next_update = crl.next_update().map(|t| t.to_datetime());
        let sha256_hex = hex::encode(Sha256::digest(&der));
        Ok(LoadedCrl {
            der: CertificateRevocationListDer::from(der),
            number,
            this_update,
            next_update,
            revoked,
            sha256_hex,
        })
    }

    /// Whether nextUpdate has passed (a CRL without nextUpdate is never stale).
    /// A stale CRL is still enforced; see the module doc.
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|n| now > n)
    }

    /// Whether a serial (canonical hex) is listed.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.revoked.contains(serial_hex)
    }

    /// Checks that the CA certificate (DER) issued and signed this CRL.
    pub fn verify_issued_by(&self, ca_der: &CertificateDer<'_>) -> Result<(), CrlError> {
        let (_, ca) = X509Certificate::from_der(ca_der.as_ref())
            .map_err(|e| CrlError::WrongIssuer(format!("CA certificate: {e}")))?;
        let (_, crl) = CertificateRevocationList::from_der(self.der.as_ref())
            .map_err(|e| CrlError::Malformed(e.to_string()))?;
        if crl.issuer().as_raw() != ca.subject().as_raw() {
            return Err(CrlError::WrongIssuer(format!(
                "issuer {} is not the CA {}",
                crl.issuer(),
                ca.subject()
            )));
        }
        crl.verify_signature(ca.public_key())
            .map_err(|e| CrlError::WrongIssuer(format!("signature: {e}")))
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"-----BEGIN")
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CrlError> {
    use satchel_names::file::ReadError;
    satchel_names::file::read_bounded(path, MAX_CRL_BYTES).map_err(|e| match e {
        ReadError::Io { path, source } => CrlError::Io { path, source },
        _ => CrlError::TooLarge,
    })
}

/// Reads and parses a CRL file (PEM or DER).
pub fn load_crl(path: &Path) -> Result<LoadedCrl, CrlError> {
    LoadedCrl::parse(&read_bounded(path)?)
}

/// What identifies one version of the watched file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
}

/// Polls one CRL file and reports a new [`LoadedCrl`] when it changed.
///
/// The first successful [`CrlWatcher::poll`] returns the file's CRL. Later
/// polls read the file only when its mtime or size changed, and report it
/// only when its sha256 differs from the last one reported. A file that
/// fails to parse is reported as an error once per change; the caller keeps
/// its previous CRL. Writers should replace the file atomically (rename), as
/// `satchel-pki crl --out` does.
#[derive(Debug)]
pub struct CrlWatcher {
    path: PathBuf,
    stamp: Option<Stamp>,
    sha256_hex: Option<String>,
}

impl CrlWatcher {
    /// Watches `path`; nothing is read until [`CrlWatcher::poll`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CrlWatcher {
            path: path.into(),
            stamp: None,
            sha256_hex: None,
        }
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok(Some(crl))` when the file holds a CRL different from the last one
    /// reported, `Ok(None)` when nothing changed.
    pub fn poll(&mut self) -> Result<Option<LoadedCrl>, CrlError> {
        let meta = std::fs::metadata(&self.path).map_err(|source| CrlError::Io {
            path: self.path.clone(),
            source,
        })?;
        let stamp = Stamp {
            mtime: meta.modified().ok(),
            len: meta.len(),
        };
        if self.stamp.as_ref() == Some(&stamp) {
            return Ok(None);
        }
        self.stamp = Some(stamp);
        let crl = load_crl(&self.path)?;
        if self.sha256_hex.as_deref() == Some(crl.sha256_hex.as_str()) {
            return Ok(None);
        }
        self.sha256_hex = Some(crl.sha256_hex.clone());
        Ok(Some(crl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_crls_are_refused() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"\x30".to_vec(),
            b"-----BEGIN X509 CRL-----\n".to_vec(),
            b"-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n".to_vec(),
            b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".to_vec(),
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            vec![0u8; 100],
            b"not a crl at all".to_vec(),
        ];
        for c in &cases {
            assert!(LoadedCrl::parse(c).is_err(), "{c:?}");
        }
        let huge = vec![b'0'; MAX_CRL_BYTES as usize + 1];
        assert!(matches!(LoadedCrl::parse(&huge), Err(CrlError::TooLarge)));
    }

    #[test]
    fn missing_file_is_an_error() {
        let mut w = CrlWatcher::new("/nonexistent/satchel-test.crl");
        assert!(w.poll().is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = LoadedCrl::parse(&b);
            let mut pem = b"-----BEGIN X509 CRL-----\n".to_vec();
            pem.extend_from_slice(&b);
            let _ = LoadedCrl::parse(&pem);
        }
    }
}
