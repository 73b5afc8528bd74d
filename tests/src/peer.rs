//! A purpose-built HTTPS peer for fault tests: it answers each request with
//! what the test's handler says, including the faults a real network shows
//! (a body cut short, a reset mid-stream, a trickle, a storm of 503s).
//!
//! It speaks just enough HTTP/1.1 (one request per connection, then close,
//! unless the reply says to keep the connection open) over real TLS (the PKI library's server configuration), runs on its own
//! thread and runtime, binds 127.0.0.1 only, and records every request it
//! saw. Dropping the [`Peer`] stops it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest request head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read.
const MAX_BODY: usize = 64 << 20;
/// Time a connection may take for its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request the peer saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// Its body.
    pub body: Vec<u8>,
    /// Whether the client presented a certificate.
    pub client_cert: bool,
    /// Which connection it came on (0 for the first accepted, and so on).
    pub conn: usize,
}

/// How to answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response.
    Full {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Announce the whole body's length, send `send` bytes, then close cleanly.
    Truncate {
        /// The body promised.
        body: Vec<u8>,
        /// Bytes actually sent.
        send: usize,
    },
    /// Send `send` bytes of the body, then reset the TCP connection.
    Reset {
        /// The body promised.
        body: Vec<u8>,
        /// Bytes sent before the reset.
        send: usize,
    },
    /// Send the body one byte every `every`.
    Trickle {
        /// The body.
        body: Vec<u8>,
        /// Interval between bytes.
        every: Duration,
    },
    /// A complete response that keeps the connection open (no
    /// `connection: close`) and reads the next request on it.
    KeepOpen {
        /// Status code.
        status: u16,
        /// Body.
        body: Vec<u8>,
    },
    /// No response: the connection is closed cleanly.
    Hangup,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(v: &serde_json::Value) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }

    /// 200 with bytes.
    pub fn bytes(body: Vec<u8>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![],
            body,
        }
    }

    /// An error status with a JSON error body and extra headers.
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Reply {
        Reply::Full {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: format!(r#"{{"error":{{"code":"test","message":"status {status}"}}}}"#)
                .into_bytes(),
        }
    }
}

/// What decides the answers: the request and how many earlier requests
/// had the same method and path.
pub type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A running peer.
pub struct Peer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("addr", &self.addr).finish()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        403 => "Forbidden",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serves the requests of one connection, numbered `conn`.
async fn serve_conn(
    tcp: tokio::net::TcpStream,
    conn: usize,
    acceptor: tokio_rustls::TlsAcceptor,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    while serve_one(&mut tls, conn, client_cert, &*handler, &seen).await? {}
    Ok(())
}

type Tls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Reads one request and answers it; `true` if the connection stays open
/// for another.
async fn serve_one(
    tls: &mut Tls,
    conn: usize,
    client_cert: bool,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too large"));
        }
        let n = tls.read(&mut chunk).await?;
        if n == 0 && buf.is_empty() {
            return Ok(false); // the client closed a kept connection
        }
        if n == 0 {
            return Err(std::io::Error::other("eof in head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let req = Seen {
        method,
        path,
        at: Instant::now(),
        body,
        client_cert,
        conn,
    };
    let nth = {
        let mut g = seen.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        let nth = g
            .iter()
            .filter(|s| s.method == req.method && s.path == req.path)
            .count();
        g.push(req.clone());
        nth
    };
    let reply = handler(&req, nth);
    let head = |status: u16, headers: &[(String, String)], len: usize| {
        let mut h = format!(
            "HTTP/1.1 {status} {}\r\ncontent-length: {len}\r\n",
            reason(status)
        );
        if !headers.iter().any(|(k, _)| k == "connection") {
            h.push_str("connection: close\r\n");
        }
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    };
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            tls.write_all(&head(status, &headers, body.len())).await?;
            tls.write_all(&body).await?;
            tls.shutdown().await?;
        }
        Reply::Truncate { body, send } => {
            tls.write_all(&head(200, &[], body.len())).await?;
            tls.write_all(&body[..send.min(body.len())]).await?;
            tls.flush().await?;
            tls.shutdown().await?;
        }
        Reply::Reset { body, send } => {
            tls.write_all(&head(200, &[], body.len())).await?;
            tls.write_all(&body[..send.min(body.len())]).await?;
            tls.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // SO_LINGER 0: the close when the connection is dropped (on
            // return) sends a RST instead of a FIN (it does not block).
            #[allow(deprecated)]
            tls.get_ref().0.set_linger(Some(Duration::ZERO))?;
        }
        Reply::Trickle { body, every } => {
            tls.write_all(&head(200, &[], body.len())).await?;
            for b in body {
                tls.write_all(&[b]).await?;
                tls.flush().await?;
                tokio::time::sleep(every).await;
            }
            tls.shutdown().await?;
        }
        Reply::KeepOpen { status, body } => {
            let open = [("connection".to_string(), "keep-alive".to_string())];
            tls.write_all(&head(status, &open, body.len())).await?;
            tls.write_all(&body).await?;
            tls.flush().await?;
            return Ok(true);
        }
        Reply::Hangup => tls.shutdown().await?,
    }
    Ok(false)
}

impl Peer {
    /// Starts a peer on 127.0.0.1 with `tls` (a server configuration) and
    /// `handler`.
    pub fn start(
        tls: rustls::ServerConfig,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Peer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind peer");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let seen2 = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let mut conns = 0;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let (a, h, s) = (acceptor.clone(), handler.clone(), seen2.clone());
                            let conn = conns;
                            conns += 1;
                            tokio::spawn(async move {
                                let _ = tokio::time::timeout(
                                    REQUEST_TIMEOUT * 100,
                                    serve_conn(tcp, conn, a, h, s),
                                )
                                .await;
                            });
                        }
                    }
                }
            });
        });
        Peer {
            addr,
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
