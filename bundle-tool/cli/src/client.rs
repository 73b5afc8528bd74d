//! A small blocking HTTPS client for the admin commands (`uploads`,
//! `publish`): one request per connection, mutual TLS with the admin's
//! certificate.
//!
//! # Invariants
//! - Trusts **only** the CA file it is given (no system roots); the
//!   server's name (the URL's host, or an explicit override) is checked
//!   against its certificate by rustls' verifier.
//! - Presents the admin's certificate and key; the key is read from the
//!   file, handed to rustls, and never printed.
//! - `https://` only; every step is bounded: [`CONNECT_TIMEOUT`] for TCP +
//!   TLS, [`REQUEST_TIMEOUT`] for the whole exchange, and the response body
//!   at most [`MAX_RESPONSE_BYTES`].
//!
//! It does not follow redirects, retry, pool connections or speak HTTP/2:
//! an admin command makes one or two requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// Time allowed for the TCP connection and the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for one whole request and response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest response body read (bundles and uploads are far smaller on the
/// server's defaults: 32 MiB and 16 MiB).
pub const MAX_RESPONSE_BYTES: usize = 512 << 20;

/// Why a request failed before an HTTP status was received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is not `https://HOST[:PORT]`.
    #[error("--server {0:?} is not https://HOST[:PORT]")]
    BadUrl(String),
    /// A TLS file could not be read or used.
    #[error("{path}: {reason}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Connecting, the handshake or the exchange failed.
    #[error("{server}: {reason}")]
    Connection {
        /// `host:port`.
        server: String,
        /// Why.
        reason: String,
    },
    /// A deadline passed.
    #[error("{server}: no answer within {secs} s")]
    Timeout {
        /// `host:port`.
        server: String,
        /// The deadline.
        secs: u64,
    },
}

/// An HTTP response, read whole.
#[derive(Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The server's error as `code: message` (from `{"error":{"code","message"}}`),
    /// or the start of the body.
    pub fn error_text(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        #[derive(serde::Deserialize)]
        struct Outer {
            error: Inner,
        }
        match serde_json::from_slice::<Outer>(&self.body) {
            Ok(o) => format!("{}: {}", o.error.code, o.error.message),
            Err(_) => String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned(),
        }
    }
}

/// The admin's TLS files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate (PEM): the only root trusted.
    pub ca: PathBuf,
    /// The admin's client certificate (PEM).
    pub cert: PathBuf,
    /// The admin's private key (PEM, PKCS#8 / SEC1 / PKCS#1).
    pub key: PathBuf,
}

/// A client for one server.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Splits `https://HOST[:PORT][/]` (IPv6 in brackets) into host and port.
pub fn parse_server(url: &str) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::BadUrl(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

fn tls_file_err(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::TlsFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Largest certificate or key file read.
pub const MAX_TLS_FILE_BYTES: u64 = 1 << 20;

/// The rustls client configuration: satchel-pki's, which the fetcher uses
/// too (ring provider, TLS 1.3, only `files.ca` as root, `files.cert` +
/// `files.key` as the client certificate). Each file is read bounded and
/// checked on its own first, so an error names the file at fault.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, ClientError> {
    let read = |path: &Path| {
        satchel_names::file::read_bounded(path, MAX_TLS_FILE_BYTES)
            .map_err(|e| tls_file_err(path, e))
    };
    let (ca, cert, key) = (read(&files.ca)?, read(&files.cert)?, read(&files.key)?);
    satchel_pki::tls::parse_certs(&ca, "CA certificate").map_err(|e| tls_file_err(&files.ca, e))?;
    satchel_pki::tls::parse_certs(&cert, "client certificate")
        .map_err(|e| tls_file_err(&files.cert, e))?;
    // The key's parse error never includes key material.
    satchel_pki::tls::parse_key(&key).map_err(|e| tls_file_err(&files.key, e))?;
    satchel_pki::tls::client_config(&ca, Some((&cert, &key)))
        .map_err(|e| ClientError::Tls(format!("the admin certificate and key do not fit: {e}")))
}

impl Client {
    /// A client for `server` (`https://HOST[:PORT]`). The certificate is
    /// checked against `server_name` if given, else against HOST.
    pub fn new(
        server: &str,
        server_name: Option<&str>,
        files: &TlsFiles,
    ) -> Result<Client, ClientError> {
        let (host, port) = parse_server(server)?;
        let name = server_name.unwrap_or(&host).to_string();
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| ClientError::BadUrl(format!("{server} (server name {name:?})")))?;
        Ok(Client {
            config: Arc::new(client_config(files)?),
            host,
            port,
            server_name,
        })
    }

    /// The server as `https://HOST:PORT`, for messages.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr())
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Sends one request (`path` starts with `/`) and reads the whole response.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let server = self.addr();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Connection {
                server: server.clone(),
                reason: format!("cannot start the runtime: {e}"),
            })?;
        rt.block_on(async {
            match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body)).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Timeout {
                    server: server.clone(),
                    secs: REQUEST_TIMEOUT.as_secs(),
                }),
            }
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let server = self.addr();
        let conn_err = |reason: String| ClientError::Connection {
            server: server.clone(),
            reason,
        };
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&server)
                .await
                .map_err(|e| conn_err(format!("cannot connect: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
            connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| conn_err(format!("TLS handshake failed: {e}")))
        };
        let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    server: server.clone(),
                    secs: CONNECT_TIMEOUT.as_secs(),
                })
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| conn_err(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &server)
            .header(
                hyper::header::USER_AGENT,
                concat!("satchel-bundle/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/octet-stream");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| conn_err(format!("bad request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| conn_err(format!("HTTP: {e}")))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(n, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (n.as_str().to_string(), v.to_string()))
            })
            .collect();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| conn_err(format!("reading the response: {e}")))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_server_table() {
        let ok = [
            ("https://cfg.example.test", ("cfg.example.test", 443)),
            ("https://cfg.example.test:8443", ("cfg.example.test", 8443)),
            ("https://127.0.0.1:9/", ("127.0.0.1", 9)),
            ("https://[::1]:8443", ("::1", 8443)),
            ("https://[::1]", ("::1", 443)),
        ];
        for (url, (h, p)) in ok {
            assert_eq!(parse_server(url).expect(url), (h.to_string(), p), "{url}");
        }
        for bad in [
            "http://cfg.example.test",
            "cfg.example.test:443",
            "https://",
            "https://:443",
            "https://h:0",
            "https://h:99999",
            "https://h:x",
            "https://h/path",
            "https://user@h",
            "https://[::1",
            "https://[::1]x",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_text_reads_the_server_json() {
        let r = Response {
            status: 409,
            headers: vec![],
            body: br#"{"error":{"code":"serial_not_above","message":"serial 3 is not above 5"}}"#
                .to_vec(),
        };
        assert_eq!(r.error_text(), "serial_not_above: serial 3 is not above 5");
        let r = Response {
            status: 502,
            headers: vec![("x-a".into(), "1".into())],
            body: b"bad gateway".to_vec(),
        };
        assert_eq!(r.error_text(), "bad gateway");
        assert_eq!(r.header("X-A"), Some("1"));
    }
}
