//! Who is on the other end of a verified TLS connection: the authorization
//! input the server derives from a client certificate.
//!
//! The TLS layer ([`crate::tls`]) checks the chain to our CA and the CRL.
//! It does not check what the certificate is *for*: rustls-webpki accepts a
//! client certificate with no extendedKeyUsage at all. [`PeerIdentity::from_cert_der`]
//! is the second gate, and the only way to obtain a [`PeerIdentity`].
//!
//! Invariants of a [`PeerIdentity`]:
//! - the certificate parsed completely (no trailing bytes);
//! - it carries an extendedKeyUsage extension that includes clientAuth (a
//!   server certificate, which carries serverAuth only, is refused);
//! - it is not a CA (basicConstraints CA:true is refused);
//! - if keyUsage is present it includes digitalSignature;
//! - its SAN URIs name exactly one [`Scope`] ([`Scope::from_uris`]).
//!
//! It does not verify signatures, validity dates or revocation: call it only
//! on the end-entity certificate of a chain the TLS verifier accepted.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::scope::{Scope, ScopeError};
use crate::serial::serial_hex;

/// Why a certificate does not authorize anything.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Not a DER certificate, or trailing bytes after it.
    #[error("client certificate is not a well-formed X.509 certificate: {0}")]
    Malformed(String),
    /// No extendedKeyUsage extension.
    #[error("client certificate has no extendedKeyUsage; clientAuth is required")]
    NoExtendedKeyUsage,
    /// extendedKeyUsage present without clientAuth (e.g. a server certificate).
    #[error("client certificate's extendedKeyUsage does not include clientAuth")]
    NotClientAuth,
    /// basicConstraints CA:true.
    #[error("a CA certificate cannot be used as a client certificate")]
    IsCa,
    /// keyUsage present without digitalSignature.
    #[error("client certificate's keyUsage does not include digitalSignature")]
    KeyUsage,
    /// The SAN does not name exactly one scope.
    #[error("client certificate has no valid scope: {0}")]
    Scope(#[from] ScopeError),
}

/// The verified identity of a TLS client: what the server authorizes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// What the certificate may act as.
    pub scope: Scope,
    /// Serial in canonical hex ([`crate::serial`]), as in the ledger and CRL.
    pub serial_hex: String,
    /// Lowercase hex sha256 of the certificate's DER: for audit logs.
    pub sha256_fingerprint_hex: String,
    /// End of the certificate's validity.
    pub not_after: OffsetDateTime,
}

impl PeerIdentity {
    /// Reads the identity from the DER of the end-entity certificate of a
    /// chain the TLS verifier already accepted. Refuses, never guesses.
    pub fn from_cert_der(der: &[u8]) -> Result<PeerIdentity, AuthError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(AuthError::Malformed(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }
        let bad = |e: x509_parser::error::X509Error| AuthError::Malformed(e.to_string());
        match cert.extended_key_usage().map_err(bad)? {
            None => return Err(AuthError::NoExtendedKeyUsage),
            Some(eku) if !eku.value.client_auth => return Err(AuthError::NotClientAuth),
            Some(_) => {}
        }
        if let Some(bc) = cert.basic_constraints().map_err(bad)? {
            if bc.value.ca {
                return Err(AuthError::IsCa);
            }
        }
        if let Some(ku) = cert.key_usage().map_err(bad)? {
            if !ku.value.digital_signature() {
                return Err(AuthError::KeyUsage);
            }
        }
        let mut uris = Vec::new();
        if let Some(san) = cert.subject_alternative_name().map_err(bad)? {
            for name in &san.value.general_names {
                if let GeneralName::URI(u) = name {
                    uris.push(*u);
                }
            }
        }
        let scope = Scope::from_uris(uris)?;
        Ok(PeerIdentity {
            scope,
            serial_hex: serial_hex(cert.tbs_certificate.raw_serial()),
            sha256_fingerprint_hex: hex::encode(Sha256::digest(der)),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ders_are_refused() {
        for bad in [
            &b""[..],
            &b"\x30"[..],
            &b"\x30\x03\x02\x01\x01"[..],
            &b"-----BEGIN CERTIFICATE-----"[..],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
            &[0u8; 64][..],
        ] {
            assert!(
                matches!(
                    PeerIdentity::from_cert_der(bad),
                    Err(AuthError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = PeerIdentity::from_cert_der(&b);
            let mut seq = vec![0x30, 0x82, 0x01, 0x00];
            seq.extend_from_slice(&b);
            let _ = PeerIdentity::from_cert_der(&seq);
        }
    }
}
