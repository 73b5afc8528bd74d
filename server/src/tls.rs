//! The server's TLS configuration, hot-swappable.
//!
//! [`ReloadableTls`] builds a rustls `ServerConfig` with the PKI library
//! (`satchel_pki::tls::server_config`: our CA only, client certificates
//! requested and optional, CRL enforced) and keeps it behind a
//! `RwLock<Arc<_>>` that the listener reads once per accepted connection.
//! [`ReloadableTls::reload`] (SIGHUP) rereads certificate, key, CA and CRL;
//! [`ReloadableTls::poll_crl`] (a timer) rebuilds only when the CRL file
//! changed. A failed reload keeps the previous configuration.
//!
//! Invariants: the server never runs without a CRL issued by its CA; a
//! stale CRL (nextUpdate passed) is still enforced and only reported
//! ([`ReloadableTls::crl_stale`]).
//!
//! It does not authorize: `authz` does, on the `PeerIdentity` the listener
//! derives after the handshake.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use rustls::ServerConfig;
use satchel_pki::tls::{self as pki_tls, CrlWatcher, LoadedCrl, TlsOptions};
use time::OffsetDateTime;

/// Errors from loading TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsLoadError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Io {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PKI library refused the material.
    #[error("{0}")]
    Tls(#[from] pki_tls::TlsError),
    /// A CRL older than the one enforced (a lower cRLNumber, or none where
    /// the enforced one has one): taking it would un-revoke certificates.
    #[error(
        "CRL {path} is older than the one enforced (cRLNumber {offered:?} < {enforced}); \
         kept the enforced CRL: install a CRL issued after it (satchel-pki crl)"
    )]
    CrlRollback {
        /// The CRL file.
        path: PathBuf,
        /// The number of the CRL that is enforced.
        enforced: u64,
        /// The number of the CRL that was refused.
        offered: Option<u64>,
    },
    /// The CRL could not be read or is not from our CA.
    #[error("CRL {path}: {source}")]
    Crl {
        /// The CRL file.
        path: PathBuf,
        /// Why.
        source: pki_tls::CrlError,
    },
}

/// Where the TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM CA certificate.
    pub ca_cert: PathBuf,
    /// PEM server certificate chain.
    pub server_cert: PathBuf,
    /// PEM server key.
    pub server_key: PathBuf,
    /// CRL (PEM or DER).
    pub crl: PathBuf,
    /// Protocol options.
    pub options: TlsOptions,
}

/// Largest certificate or key file read, in bytes.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, TlsLoadError> {
    use satchel_names::file::ReadError;
    satchel_names::file::read_bounded(path, MAX_PEM_FILE_BYTES).map_err(|e| {
        let source = match e {
            ReadError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        };
        TlsLoadError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    })
}

/// One consistent generation of TLS state.
#[derive(Debug)]
struct Generation {
    config: Arc<ServerConfig>,
    ca_pem: Bytes,
    crl: LoadedCrl,
}

/// The server's TLS configuration, reloadable while serving.
pub struct ReloadableTls {
    files: TlsFiles,
    /// Read once per accepted connection, replaced whole on reload, so a
    /// handshake always sees one consistent configuration.
    current: RwLock<Arc<Generation>>,
    /// Polls the CRL file; a mutex because polls come from a timer and
    /// SIGHUP at once.
    watcher: Mutex<CrlWatcher>,
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadableTls {
    /// Loads everything once; fails if any piece is missing or invalid.
    pub fn load(files: TlsFiles) -> Result<ReloadableTls, TlsLoadError> {
        let mut watcher = CrlWatcher::new(files.crl.clone());
        let crl = match watcher.poll() {
            Ok(Some(c)) => c,
            Ok(None) => pki_tls::load_crl(&files.crl).map_err(|source| TlsLoadError::Crl {
                path: files.crl.clone(),
                source,
            })?,
            Err(source) => {
                return Err(TlsLoadError::Crl {
                    path: files.crl.clone(),
                    source,
                })
            }
        };
        let generation = build(&files, crl)?;
        Ok(ReloadableTls {
            files,
            current: RwLock::new(Arc::new(generation)),
            watcher: Mutex::new(watcher),
        })
    }

    fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs `g` unless its CRL is older than the enforced one. The
    /// check and the swap happen under one write lock, so a reload and a
    /// poll racing each other cannot install an older CRL either.
    fn swap(&self, g: Generation) -> Result<(), TlsLoadError> {
        let mut slot = match self.current.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(enforced) = slot.crl.number {
            if g.crl.number.is_none_or(|n| n < enforced) {
                return Err(TlsLoadError::CrlRollback {
                    path: self.files.crl.clone(),
                    enforced,
                    offered: g.crl.number,
                });
            }
        }
        *slot = Arc::new(g);
        Ok(())
    }

    /// Whether the enforced CRL lists `serial_hex` (canonical hex). Checked
    /// on every request, so a CRL reload refuses a revoked certificate on
    /// the connections it already holds too, not only at its next handshake.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.current().crl.is_revoked(serial_hex)
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current().config.clone()
    }

    /// The CA certificate (PEM) as loaded.
    pub fn ca_pem(&self) -> Bytes {
        self.current().ca_pem.clone()
    }

    /// The enforced CRL (DER).
    pub fn crl_der(&self) -> Bytes {
        Bytes::copy_from_slice(self.current().crl.der.as_ref())
    }

    /// Whether the enforced CRL's nextUpdate has passed (it is still enforced).
    pub fn crl_stale(&self, now: OffsetDateTime) -> bool {
        self.current().crl.is_stale(now)
    }

    /// The enforced CRL's nextUpdate, if it has one.
    pub fn crl_next_update(&self) -> Option<OffsetDateTime> {
        self.current().crl.next_update
    }

    /// The enforced CRL's number, if any.
    pub fn crl_number(&self) -> Option<u64> {
        self.current().crl.number
    }

    /// Rereads certificate, key, CA and CRL (SIGHUP). On error the previous
    /// configuration stays.
    pub fn reload(&self) -> Result<(), TlsLoadError> {
        let crl = pki_tls::load_crl(&self.files.crl).map_err(|source| TlsLoadError::Crl {
            path: self.files.crl.clone(),
            source,
        })?;
        let g = build(&self.files, crl)?;
        self.swap(g)
    }

    /// Rebuilds the configuration if the CRL file changed. `Ok(true)` when
    /// a new CRL is now enforced.
    pub fn poll_crl(&self) -> Result<bool, TlsLoadError> {
        let polled = {
            let mut w = match self.watcher.lock() {
                Ok(w) => w,
                Err(poisoned) => poisoned.into_inner(),
            };
            w.poll()
        };
        match polled {
            Ok(Some(crl)) => {
                let g = build(&self.files, crl)?;
                self.swap(g)?;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(source) => Err(TlsLoadError::Crl {
                path: self.files.crl.clone(),
                source,
            }),
        }
    }
}

fn build(files: &TlsFiles, crl: LoadedCrl) -> Result<Generation, TlsLoadError> {
    let ca_pem = read_file("CA certificate", &files.ca_cert)?;
    let cert = read_file("server certificate", &files.server_cert)?;
    let key = zeroize_on_drop(read_file("server key", &files.server_key)?);
    let ca_der = pki_tls::parse_certs(&ca_pem, "CA certificate")?;
    let issued = ca_der.iter().any(|ca| crl.verify_issued_by(ca).is_ok());
    if !issued {
        let first = ca_der.first().map(|c| crl.verify_issued_by(c));
        return Err(TlsLoadError::Crl {
            path: files.crl.clone(),
            source: match first {
                Some(Err(e)) => e,
                _ => pki_tls::CrlError::WrongIssuer("no CA certificate".into()),
            },
        });
    }
    let config = pki_tls::server_config(
        &cert,
        &key.0,
        &ca_pem,
        std::slice::from_ref(&crl.der),
        &files.options,
    )?;
    Ok(Generation {
        config: Arc::new(config),
        ca_pem: Bytes::from(ca_pem),
        crl,
    })
}

/// Key bytes wiped when dropped.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

fn zeroize_on_drop(v: Vec<u8>) -> Wiped {
    Wiped(v)
}
