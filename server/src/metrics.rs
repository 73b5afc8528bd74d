//! Prometheus metrics (text exposition format), served on their own
//! plain-HTTP listener by [`serve_metrics`].
//!
//! Counters and gauges are plain atomics and small maps keyed by static
//! labels (route names, status codes, handshake failure reasons), so the
//! label space is bounded no matter what clients send.
//!
//! It does not serve anything but `GET /metrics` (404 otherwise) and does
//! not authenticate: bind it to loopback or a management network.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use tokio::net::TcpListener;

use crate::response::{full, Resp};

/// Seconds a metrics scraper has to send its request head.
pub const METRICS_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest a metrics connection is kept.
pub const METRICS_CONNECTION_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// Most metrics connections served at once (scrapers are few).
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The store, once the server runs: its own health is part of the
    /// page (set once in `run`).
    pub store: std::sync::OnceLock<std::sync::Arc<dyn crate::store::Store>>,
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// reason → failed handshakes.
    handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// reason → refused uploads.
    uploads_refused: Mutex<BTreeMap<&'static str, u64>>,
    bytes_served: AtomicU64,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    audit_suppressed: AtomicU64,
    /// reason → connections closed at accept by a handshake cap.
    connections_shed: Mutex<BTreeMap<&'static str, u64>>,
    handshakes_in_progress: AtomicI64,
    quarantine_uploads: AtomicU64,
    quarantine_bytes: AtomicU64,
    uploads_expired: AtomicU64,
    forward_queue_depth: AtomicU64,
    forward_ok: AtomicU64,
    forward_failures: AtomicU64,
    forward_last_success_unix: AtomicI64,
    forward_failing: AtomicU64,
    crl_stale: AtomicU64,
    crl_reloads: AtomicU64,
    crl_reload_failures: AtomicU64,
    crl_number: AtomicU64,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    let mut g = match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *g.entry(k).or_insert(0) += 1;
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &'static str, status: u16) {
        bump(&self.requests, (route, status));
    }
    /// Counts a failed TLS handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        bump(&self.handshake_failures, reason);
    }
    /// Counts a refused upload.
    pub fn upload_refused(&self, reason: &'static str) {
        bump(&self.uploads_refused, reason);
    }
    /// Bytes of bundle and upload bodies sent.
    pub fn add_bytes_served(&self, n: u64) {
        self.bytes_served.fetch_add(n, Ordering::Relaxed);
    }
    /// A connection was accepted and admitted.
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }
    /// An admitted connection ended.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
    /// A connection was closed at accept because of the connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
    /// A connection was closed at accept by a handshake cap (`reason`:
    /// `per_source_handshakes` or `handshakes`).
    pub fn connection_shed(&self, reason: &'static str) {
        bump(&self.connections_shed, reason);
    }
    /// A handshake started (`+1`) or ended (`-1`).
    pub fn handshakes_add(&self, n: i64) {
        self.handshakes_in_progress.fetch_add(n, Ordering::Relaxed);
    }
    /// A security audit line was not stored: its source is over
    /// `security_audit_per_minute_per_source`.
    pub fn audit_suppressed(&self) {
        self.audit_suppressed.fetch_add(1, Ordering::Relaxed);
    }
    /// Current quarantine size.
    pub fn set_quarantine(&self, uploads: u64, bytes: u64) {
        self.quarantine_uploads.store(uploads, Ordering::Relaxed);
        self.quarantine_bytes.store(bytes, Ordering::Relaxed);
    }
    /// Uploads removed by expiry.
    pub fn add_expired(&self, n: u64) {
        self.uploads_expired.fetch_add(n, Ordering::Relaxed);
    }
    /// Current forward queue depth.
    pub fn set_forward_depth(&self, n: u64) {
        self.forward_queue_depth.store(n, Ordering::Relaxed);
    }
    /// A report was delivered to the engine.
    pub fn forward_succeeded(&self, now_unix: i64) {
        self.forward_ok.fetch_add(1, Ordering::Relaxed);
        self.forward_last_success_unix
            .store(now_unix, Ordering::Relaxed);
        self.forward_failing.store(0, Ordering::Relaxed);
    }
    /// A delivery attempt failed.
    pub fn forward_failed(&self) {
        self.forward_failures.fetch_add(1, Ordering::Relaxed);
        self.forward_failing.store(1, Ordering::Relaxed);
    }
    /// Whether the enforced CRL is past its nextUpdate, and its number.
    pub fn set_crl(&self, stale: bool, number: Option<u64>) {
        self.crl_stale.store(u64::from(stale), Ordering::Relaxed);
        self.crl_number
            .store(number.unwrap_or(0), Ordering::Relaxed);
    }
    /// A CRL (re)load happened (`ok`) or failed.
    pub fn crl_reloaded(&self, ok: bool) {
        if ok {
            self.crl_reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            self.crl_reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "satchel_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "satchel_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        head(
            &mut out,
            "satchel_tls_handshake_failures_total",
            "counter",
            "Failed TLS handshakes and refused client certificates, by reason.",
        );
        if let Ok(m) = self.handshake_failures.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "satchel_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        head(
            &mut out,
            "satchel_uploads_refused_total",
            "counter",
            "Uploads refused, by reason.",
        );
        if let Ok(m) = self.uploads_refused.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "satchel_uploads_refused_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        head(
            &mut out,
            "satchel_connections_shed_total",
            "counter",
            "Connections closed at accept by a handshake cap, by reason.",
        );
        if let Ok(m) = self.connections_shed.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "satchel_connections_shed_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        let scalars: [(&str, &str, &str, String); 19] = [
            (
                "satchel_audit_suppressed_total",
                "counter",
                "Security audit lines not stored because their source was over its rate.",
                g(&self.audit_suppressed).to_string(),
            ),
            (
                "satchel_bytes_served_total",
                "counter",
                "Body bytes sent for bundles and uploads.",
                g(&self.bytes_served).to_string(),
            ),
            (
                "satchel_connections_open",
                "gauge",
                "Client connections open now.",
                self.connections_open.load(Ordering::Relaxed).to_string(),
            ),
            (
                "satchel_connections_total",
                "counter",
                "Client connections admitted.",
                g(&self.connections_total).to_string(),
            ),
            (
                "satchel_connections_refused_total",
                "counter",
                "Connections closed at accept because max_connections was reached.",
                g(&self.connections_refused).to_string(),
            ),
            (
                "satchel_handshakes_in_progress",
                "gauge",
                "Connections in their TLS handshake now.",
                self.handshakes_in_progress
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "satchel_quarantine_uploads",
                "gauge",
                "Uploads in the quarantine.",
                g(&self.quarantine_uploads).to_string(),
            ),
            (
                "satchel_quarantine_bytes",
                "gauge",
                "Bytes in the quarantine.",
                g(&self.quarantine_bytes).to_string(),
            ),
            (
                "satchel_uploads_expired_total",
                "counter",
                "Pending uploads removed by expiry.",
                g(&self.uploads_expired).to_string(),
            ),
            (
                "satchel_forward_queue_depth",
                "gauge",
                "Reports waiting to be forwarded to the engine.",
                g(&self.forward_queue_depth).to_string(),
            ),
            (
                "satchel_forward_delivered_total",
                "counter",
                "Reports delivered to the engine.",
                g(&self.forward_ok).to_string(),
            ),
            (
                "satchel_forward_failures_total",
                "counter",
                "Failed delivery attempts to the engine.",
                g(&self.forward_failures).to_string(),
            ),
            (
                "satchel_forward_failing",
                "gauge",
                "1 while the last delivery attempt failed.",
                g(&self.forward_failing).to_string(),
            ),
            (
                "satchel_forward_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last delivery.",
                self.forward_last_success_unix
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "satchel_crl_stale",
                "gauge",
                "1 when the enforced CRL is past its nextUpdate (it is still enforced).",
                g(&self.crl_stale).to_string(),
            ),
            (
                "satchel_crl_number",
                "gauge",
                "cRLNumber of the enforced CRL.",
                g(&self.crl_number).to_string(),
            ),
            (
                "satchel_crl_reloads_total",
                "counter",
                "CRL and certificate reloads.",
                g(&self.crl_reloads).to_string(),
            ),
            (
                "satchel_crl_reload_failures_total",
                "counter",
                "Failed reloads (the previous configuration stays).",
                g(&self.crl_reload_failures).to_string(),
            ),
            (
                "satchel_up",
                "gauge",
                "1 while the server runs.",
                "1".to_string(),
            ),
        ];
        for (name, kind, help, value) in scalars {
            head(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        if let Some(store) = self.store.get() {
            out.push_str(&store.prometheus());
        }
        out
    }
}

/// Serves `GET /metrics` in plain HTTP/1.1 until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Bounds the metrics connections like the API's.
    let limit = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let resp: Resp = if req.method() == http::Method::GET
                            && req.uri().path() == "/metrics"
                        {
                            full(
                                StatusCode::OK,
                                "text/plain; version=0.0.4",
                                metrics.render(),
                            )
                        } else {
                            full(StatusCode::NOT_FOUND, "text/plain", "not found\n")
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIMEOUT)
                .serve_connection(io, svc);
            let _ = tokio::time::timeout(METRICS_CONNECTION_MAX, conn).await;
            drop(permit);
        });
    }
}
