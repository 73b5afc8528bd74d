//! One HTTPS request to one address, bounded in every phase.
//!
//! TLS trusts only the CA of the node config (the PKI library builds the
//! rustls configuration: no system roots, client certificate presented); the
//! server name checked is the SRV target's host name, not the address. The
//! phases are bounded by [`Settings`]: TCP connect, TLS handshake, response
//! headers, and a minimum-throughput watchdog over the body; the body is
//! bounded in size (and, when the caller knows it, must have exactly the
//! expected length). The caller bounds the whole by its deadline.
//!
//! A connection whose exchange completed (2xx, whole body read) is kept
//! for the next request to the same server name and address, so a boot's
//! index, bundles and report share one TLS handshake. A kept connection
//! the server has closed since is noticed before or while sending, before
//! any response, and the request then goes over a fresh connection.
//!
//! It does not retry, pick servers or follow redirects; see `session`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use crate::retry::{self, Failure};
use crate::settings::{Settings, MAX_HEADER_BYTES};

/// Largest error body kept for a message, in bytes.
const MAX_ERROR_BODY: usize = 2048;

/// Where a response body goes: memory, or a file that is hashed on the way.
pub trait Sink: Send {
    /// Forgets what an earlier attempt wrote.
    fn reset(&mut self) -> std::io::Result<()>;
    /// Appends a chunk.
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()>;
}

impl Sink for Vec<u8> {
    fn reset(&mut self) -> std::io::Result<()> {
        self.clear();
        Ok(())
    }
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// Errors of one request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The server name is neither a DNS name nor an IP address.
    #[error("{0:?} cannot be a TLS server name")]
    BadName(String),
    /// TCP connect failed or timed out.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed (untrusted CA, wrong name, timeout…).
    #[error("TLS with {name} at {addr}: {reason}")]
    Tls {
        /// Expected server name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A timeout in a phase after the handshake.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The HTTP exchange failed (reset, truncated body, malformed response).
    #[error("HTTP: {0}")]
    Http(String),
    /// The connection ended before any response to the request.
    #[error("HTTP: the connection ended before a response: {0}")]
    Unanswered(String),
    /// The body arrived slower than the minimum rate.
    #[error("the server sent {got} bytes in {window:?}, below the minimum of {min} bytes/s")]
    Stalled {
        /// Bytes in the last window.
        got: u64,
        /// The window.
        window: Duration,
        /// The minimum rate.
        min: u64,
    },
    /// The body is larger than allowed or expected.
    #[error("the response body exceeds {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The body is shorter than expected.
    #[error("the response body has {got} bytes, {expected} were expected")]
    Short {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// A non-success status.
    #[error("HTTP status {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// `Retry-After`, if the server sent one.
        retry_after: Option<Duration>,
        /// The server's error text (truncated).
        message: String,
    },
    /// Writing the body to its sink failed.
    #[error("storing the response body: {0}")]
    Sink(std::io::Error),
}

impl HttpError {
    /// How the retry policy sees this error.
    pub fn failure(&self) -> Failure {
        match self {
            HttpError::Status {
                status,
                retry_after,
                ..
            } => Failure::Status(*status, *retry_after),
            _ => Failure::Transport,
        }
    }
}

/// What one request sends and accepts.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: http::Method,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// Request body and its content type.
    pub body: Option<(Bytes, &'static str)>,
    /// Largest body accepted.
    pub max_body: u64,
    /// Exact body length expected, when known (a bundle's size from the index).
    pub expect_len: Option<u64>,
}

/// A successful response (2xx); its body went to the sink.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Body bytes written to the sink.
    pub len: u64,
}

/// The TLS client and the limits.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    settings: Settings,
    /// The connection of the last complete exchange.
    kept: Option<Conn>,
}

/// One HTTP/1.1 connection over TLS; its driving task ends with it.
struct Conn {
    host: String,
    addr: SocketAddr,
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Client {
    /// A client over a rustls configuration from the PKI library.
    pub fn new(tls: rustls::ClientConfig, settings: Settings) -> Self {
        Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            settings,
            kept: None,
        }
    }

    /// Sends `req` to `addr`, checking the certificate against `host`, over
    /// the kept connection when it leads there, else a new one.
    pub async fn send(
        &mut self,
        host: &str,
        port: u16,
        addr: SocketAddr,
        req: &Request<'_>,
        sink: &mut dyn Sink,
    ) -> Result<Response, HttpError> {
        let kept = self
            .kept
            .take()
            .filter(|c| c.host == host && c.addr == addr);
        if let Some(mut conn) = kept {
            if conn.send.ready().await.is_ok() {
                match self.exchange(&mut conn.send, host, port, req, sink).await {
                    Ok(resp) => {
                        self.kept = Some(conn);
                        return Ok(resp);
                    }
                    // Closed by the server since: try a fresh connection.
                    Err(HttpError::Unanswered(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut conn = self.connect(host, addr).await?;
        let resp = self.exchange(&mut conn.send, host, port, req, sink).await?;
        self.kept = Some(conn);
        Ok(resp)
    }

    /// A new TCP + TLS + HTTP/1.1 connection, each phase bounded.
    async fn connect(&self, host: &str, addr: SocketAddr) -> Result<Conn, HttpError> {
        let s = &self.settings;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| HttpError::BadName(host.to_string()))?;
        let tcp = timeout(s.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| HttpError::Connect {
                addr,
                reason: format!("no answer within {:?}", s.connect_timeout),
            })?
            .map_err(|e| HttpError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let tls_err = |reason: String| HttpError::Tls {
            name: host.to_string(),
            addr,
            reason,
        };
        let tls = timeout(s.handshake_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| tls_err(format!("no handshake within {:?}", s.handshake_timeout)))?
            .map_err(|e| tls_err(e.to_string()))?;
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEADER_BYTES.max(8192))
            .handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| HttpError::Http(e.to_string()))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            host: host.to_string(),
            addr,
            send,
            task,
        })
    }

    async fn exchange(
        &self,
        send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        host: &str,
        port: u16,
        req: &Request<'_>,
        sink: &mut dyn Sink,
    ) -> Result<Response, HttpError> {
        let s = &self.settings;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut b = http::Request::builder()
            .method(req.method.clone())
            .uri(req.path)
            .header(http::header::HOST, authority)
            .header(
                http::header::USER_AGENT,
                concat!("satchel-fetch/", env!("CARGO_PKG_VERSION")),
            );
        let body = match &req.body {
            Some((bytes, ctype)) => {
                b = b.header(http::header::CONTENT_TYPE, *ctype);
                Full::new(bytes.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let request = b.body(body).map_err(|e| HttpError::Http(e.to_string()))?;
        let resp = timeout(s.header_timeout, send.send_request(request))
            .await
            .map_err(|_| HttpError::Timeout("waiting for the response headers"))?
            .map_err(|e| {
                if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
                    HttpError::Unanswered(e.to_string())
                } else {
                    HttpError::Http(e.to_string())
                }
            })?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
            let mut buf = Vec::new();
            // The error text is best effort: bounded in size and time.
            let _ = self
                .read_body(resp.into_body(), MAX_ERROR_BODY as u64, None, &mut buf)
                .await;
            return Err(HttpError::Status {
                status,
                retry_after,
                message: error_message(&buf),
            });
        }
        let max = req.expect_len.unwrap_or(req.max_body).min(req.max_body);
        if let Some(len) = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > max {
                return Err(HttpError::TooLarge { max });
            }
        }
        sink.reset().map_err(HttpError::Sink)?;
        let len = self
            .read_body(resp.into_body(), max, req.expect_len, sink)
            .await?;
        Ok(Response { status, len })
    }

    /// Streams a body into `sink`, enforcing size and the throughput watchdog.
    async fn read_body(
        &self,
        mut body: Incoming,
        max: u64,
        expect: Option<u64>,
        sink: &mut dyn Sink,
    ) -> Result<u64, HttpError> {
        let s = &self.settings;
        let window = s.stall_window.max(Duration::from_millis(100));
        let need = s.min_rate.saturating_mul(window.as_millis() as u64) / 1000;
        let mut window_end = Instant::now() + window;
        let mut in_window = 0u64;
        let mut total = 0u64;
        loop {
            let next = timeout_at(window_end, body.frame()).await;
            let now = Instant::now();
            let frame = match next {
                Err(_) => None,
                Ok(None) => break,
                Ok(Some(f)) => Some(f.map_err(|e| HttpError::Http(e.to_string()))?),
            };
            if let Some(data) = frame.and_then(|f| f.into_data().ok()) {
                total = total.saturating_add(data.len() as u64);
                in_window = in_window.saturating_add(data.len() as u64);
                if total > max {
                    return Err(HttpError::TooLarge { max });
                }
                sink.write(&data).map_err(HttpError::Sink)?;
            }
            if now >= window_end {
                if in_window < need {
                    return Err(HttpError::Stalled {
                        got: in_window,
                        window,
                        min: s.min_rate,
                    });
                }
                in_window = 0;
                window_end = now + window;
            }
        }
        if let Some(expected) = expect {
            if total != expected {
                return Err(HttpError::Short {
                    got: total,
                    expected,
                });
            }
        }
        Ok(total)
    }
}

/// The server's error text: the JSON `{"error":{"message"}}` when present,
/// else the body as text, truncated; never more than [`MAX_ERROR_BODY`].
fn error_message(body: &[u8]) -> String {
    let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            Some(format!("{code}: {msg}"))
        });
    let text = parsed.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_BODY)
        .collect()
}
