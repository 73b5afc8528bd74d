//! Fetching the chain a live TLS server presents, for `audit --connect`.
//!
//! **Audit only.** The `RecordingVerifier` here accepts *any* server
//! certificate: it records the chain and says yes, so a reviewer can audit a
//! server whose certificate is expired, revoked or from the wrong CA. It still
//! checks the handshake signature (the server must hold the key of the
//! certificate it presents), but it must never be used for a connection that
//! carries data; [`fetch_chain`] sends nothing and closes right after the
//! handshake. It lives in this module alone and is not exported.
//!
//! The connection is bounded by [`CONNECT_TIMEOUT`] as a whole (connect,
//! every read and write, the handshake). No client certificate is offered: if
//! the server insists on one, the handshake may fail after the server has
//! shown its chain and signed the handshake; the recorded chain is returned
//! anyway. A chain is returned only when a handshake signature verified with
//! the presented certificate's key, so what is audited is the certificate the
//! server actually holds the key of.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::input::PresentedChain;

/// Budget for the whole exchange: TCP connect, TLS handshake, close.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most certificates recorded from one server's chain.
pub const MAX_CHAIN_CERTS: usize = 16;

/// Why the chain could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Not `HOST:PORT`.
    #[error("{0:?} is not HOST:PORT")]
    Address(String),
    /// The host does not resolve.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// As given.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// No address accepted a TCP connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// As given.
        addr: String,
        /// The last error.
        source: std::io::Error,
    },
    /// The handshake failed before the server presented a certificate.
    #[error("TLS handshake with {addr} failed before a certificate was presented: {reason}")]
    Tls {
        /// As given.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Records the presented chain and accepts it. See the module doc: audit only.
#[derive(Debug)]
struct RecordingVerifier {
    /// The chain of the first verify call; a Mutex because rustls shares the
    /// verifier behind an `Arc` and calls it through `&self`.
    seen: Mutex<Vec<Vec<u8>>>,
    /// A handshake signature verified with the presented certificate's key.
    proved: AtomicBool,
    provider: Arc<CryptoProvider>,
}

impl RecordingVerifier {
    fn note(
        &self,
        r: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if r.is_ok() {
            self.proved.store(true, Ordering::SeqCst);
        }
        r
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.is_empty() {
                seen.extend(
                    std::iter::once(end_entity)
                        .chain(intermediates)
                        .take(MAX_CHAIN_CERTS)
                        .map(|c| c.as_ref().to_vec()),
                );
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.note(rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.note(rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6) into the SNI host and the address.
pub(crate) fn split_address(addr: &str) -> Result<(String, u16), ConnectError> {
    let bad = || ConnectError::Address(addr.chars().take(256).collect());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['[', ']', '/', ' ']) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// A stream wrapper whose reads and writes fail once the deadline passes, so
/// a server dripping bytes cannot hold the audit beyond [`CONNECT_TIMEOUT`].
struct Deadline<'a> {
    sock: &'a mut TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn arm(&mut self) -> std::io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection took longer than the audit's connect timeout",
            ));
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.set_write_timeout(Some(left))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.sock.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.sock.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// Connects to `addr` (`HOST:PORT`), completes a TLS handshake accepting any
/// certificate, and returns the chain the server presented.
pub fn fetch_chain(addr: &str, timeout: Duration) -> Result<PresentedChain, ConnectError> {
    let (host, port) = split_address(addr)?;
    let until = Instant::now() + timeout;
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|source| ConnectError::Resolve {
            addr: addr.to_string(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut sock = None;
    for a in addrs {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut sock = sock.ok_or(ConnectError::Connect {
        addr: addr.to_string(),
        source: last,
    })?;

    let provider = crate::tls::provider();
    let verifier = Arc::new(RecordingVerifier {
        seen: Mutex::new(Vec::new()),
        proved: AtomicBool::new(false),
        provider: provider.clone(),
    });
    let tls_err = |reason: String| ConnectError::Tls {
        addr: addr.to_string(),
        reason,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| tls_err(e.to_string()))?;
    let mut conn =
        ClientConnection::new(Arc::new(config), name).map_err(|e| tls_err(e.to_string()))?;
    let mut io = Deadline {
        sock: &mut sock,
        until,
    };
    let mut failure = None;
    while conn.is_handshaking() {
        match conn.complete_io(&mut io) {
            Ok((0, 0)) if conn.is_handshaking() => {
                failure = Some("the server closed the connection".to_string());
                break;
            }
            Ok(_) => {}
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    if failure.is_none() {
        conn.send_close_notify();
        let _ = conn.complete_io(&mut io);
    }
    let certificates = verifier.seen.lock().map(|s| s.clone()).unwrap_or_default();
    if certificates.is_empty() {
        return Err(tls_err(
            failure.unwrap_or_else(|| "no certificate presented".into()),
        ));
    }
    if !verifier.proved.load(Ordering::SeqCst) {
        return Err(tls_err(format!(
            "the server did not prove it holds the key of the certificate it presented ({})",
            failure.unwrap_or_else(|| "no handshake signature".into())
        )));
    }
    Ok(PresentedChain {
        address: addr.to_string(),
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("127.0.0.1:443").unwrap(),
            ("127.0.0.1".into(), 443)
        );
        assert_eq!(split_address("[::1]:8443").unwrap(), ("::1".into(), 8443));
        assert_eq!(
            split_address("cfg.example.test:1").unwrap(),
            ("cfg.example.test".into(), 1)
        );
        for bad in [
            "",
            "host",
            ":443",
            "host:",
            "host:65536",
            "host:-1",
            "[::1:443",
            "a b:1",
            "h/x:1",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refused_connection_is_an_error() {
        // Bind then drop to get a loopback port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = fetch_chain(&format!("127.0.0.1:{port}"), Duration::from_secs(2));
        assert!(matches!(r, Err(ConnectError::Connect { .. })), "{r:?}");
    }

    #[test]
    fn silent_server_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Not joined: the thread outlives the assertion by design.
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(5));
            drop(s);
        });
        let start = Instant::now();
        let r = fetch_chain(&addr.to_string(), Duration::from_millis(500));
        assert!(matches!(r, Err(ConnectError::Tls { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(4));
    }
}
