//! rustls configurations for the server and for clients (fetcher, admin
//! tools), built from PEM material our CA issued.
//!
//! Invariants:
//! - the crypto provider is always ring ([`provider`]); aws-lc is never used;
//! - only our CA is trusted, on both sides: no system roots;
//! - TLS 1.3 only, unless [`TlsOptions::allow_tls12`] is set (server side);
//! - the server *requests* a client certificate and, when one is presented,
//!   verifies it against our CA and the given CRLs; a connection without a
//!   certificate is allowed through (anonymous uploads), so the server must
//!   authorize every request on [`PeerIdentity`] (see [`crate::identity`]);
//! - revocation: every CRL passed in is enforced even after its nextUpdate
//!   (rustls' `ExpirationPolicy::Ignore`, its default, deliberately kept), and
//!   a client certificate whose status no given CRL can decide (e.g. a CRL
//!   from another issuer) is refused (`UnknownStatusPolicy::Deny`, also the
//!   default, deliberately kept). With no CRL at all, revocation is not
//!   checked: the server decides whether to start without one.
//!
//! It does not do I/O: it takes bytes and returns configs. Loading and
//! watching CRL files is [`crate::crl`].

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

pub use crate::crl::{load_crl, CrlError, CrlWatcher, LoadedCrl};
pub use crate::identity::{AuthError, PeerIdentity};

/// ALPN protocols the server offers, in preference order.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN protocols clients offer.
pub const CLIENT_ALPN: [&[u8]; 1] = [b"http/1.1"];

/// Errors from building a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// PEM text that could not be read.
    #[error("cannot read {what}: {reason}")]
    Pem {
        /// Which input (certificate chain, key, CA…).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A PEM input without the expected block.
    #[error("no {0} found in the PEM input")]
    Empty(&'static str),
    /// rustls refused the material (e.g. key does not match certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. an unparsable CRL).
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Options of the server configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Also accept TLS 1.2 (off by default: every client we ship speaks 1.3).
    pub allow_tls12: bool,
}

/// The ring crypto provider every configuration uses, with AES-128-GCM
/// (SHA-256) preferred: it matches the 128-bit strength of the X25519 key
/// exchange and the P-256 certificates, and hashes its transcript with
/// SHA-256, which CPUs accelerate, where AES-256-GCM's SHA-384 is done in
/// software. AES-256-GCM and ChaCha20-Poly1305 stay available.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

/// Parses every `CERTIFICATE` block of a PEM text (at least one).
pub fn parse_certs(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty(what));
    }
    Ok(certs)
}

/// Parses one private key (PKCS#8, SEC1 or PKCS#1) from PEM text.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty("private key"),
        e => TlsError::Pem {
            what: "private key",
            reason: e.to_string(),
        },
    })?;
    if key.secret_der().is_empty() {
        return Err(TlsError::Empty("private key"));
    }
    Ok(key)
}

fn roots(ca_pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in parse_certs(ca_pem, "CA certificate")? {
        store.add(c)?;
    }
    Ok(Arc::new(store))
}

/// The server's configuration: our certificate chain and key, client
/// certificates requested, verified against `ca_pem` and `crl_ders`, and
/// optional (see the module doc for the revocation policy).
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    crl_ders: &[CertificateRevocationListDer<'static>],
    opts: &TlsOptions,
) -> Result<ServerConfig, TlsError> {
    let chain = parse_certs(cert_chain_pem, "server certificate chain")?;
    let key = parse_key(key_pem)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone())
        .with_crls(crl_ders.iter().cloned())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if opts.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    // The provider's order (AES-128-GCM first), whatever the client's.
    cfg.ignore_client_order = true;
    Ok(cfg)
}

/// A client's configuration: trusts only `ca_pem`, presents `client` (PEM
/// certificate, PEM key) when given, TLS 1.3, ALPN http/1.1.
pub fn client_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?);
    let mut cfg = match client {
        Some((cert_pem, key_pem)) => builder.with_client_auth_cert(
            parse_certs(cert_pem, "client certificate")?,
            parse_key(key_pem)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = CLIENT_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_pem_is_refused() {
        for bad in [
            &b""[..],
            b"garbage",
            b"-----BEGIN CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        ] {
            assert!(client_config(bad, None).is_err(), "{bad:?}");
        }
        for bad in [
            &b""[..],
            b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
            b"-----BEGIN PRIVATE KEY-----\n&&&\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }
}
