//! The TLS listener: connection limit, accept backoff, handshake and header
//! timeouts, per-connection identity, graceful drain.
//!
//! Invariants:
//! - at most `max_connections` connections are served at once: a semaphore
//!   permit is taken right after `accept`, and a connection that finds none
//!   is closed at once (counted in metrics) — no unbounded queue forms in the
//!   server (the kernel's listen backlog is the only queue);
//! - `accept` errors (e.g. out of file descriptors) back off exponentially
//!   instead of spinning;
//! - a client has `handshake_timeout_secs` to finish TLS and
//!   `header_read_timeout_secs` to send each request head (slowloris);
//! - the TLS configuration is read once per connection, so a reload applies
//!   to the next handshake;
//! - a presented client certificate the PKI library's `PeerIdentity` refuses
//!   (no clientAuth EKU, no scope) closes the connection before any request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use satchel_pki::PeerIdentity;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::routes::{handle, App, Caller};
use crate::tls::ReloadableTls;

/// First delay after a failed `accept`.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest delay between `accept` retries.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Concurrent HTTP/2 streams per connection.
pub const MAX_H2_STREAMS: u32 = 16;

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(m: Arc<Metrics>) -> Self {
        m.connection_opened();
        OpenConnection(m)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// The metrics label of a failed handshake.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error as E};
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<E>());
    match inner {
        Some(E::InvalidCertificate(CertificateError::Revoked)) => "revoked",
        Some(E::InvalidCertificate(CertificateError::Expired))
        | Some(E::InvalidCertificate(CertificateError::ExpiredContext { .. })) => "expired",
        Some(E::InvalidCertificate(CertificateError::UnknownIssuer)) => "unknown_issuer",
        Some(E::InvalidCertificate(_)) => "bad_certificate",
        Some(E::NoCertificatesPresented) => "no_certificate",
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(E::InvalidMessage(_)) => "invalid_message",
        Some(_) => "tls_error",
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::InvalidData => "invalid_data",
            _ => "io",
        },
    }
}

fn http_builder(app: &App) -> auto::Builder<TokioExecutor> {
    let c = &app.config;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(c.header_read_timeout_secs))
        .max_buf_size(c.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(c.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_H2_STREAMS)
        .keep_alive_interval(Duration::from_secs(c.header_read_timeout_secs))
        .keep_alive_timeout(Duration::from_secs(c.header_read_timeout_secs));
    b
}

/// Accepts and serves connections until `shutdown` resolves, then stops
/// accepting and gives in-flight requests `shutdown_grace_secs` to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ReloadableTls>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(app.config.max_connections));
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder(&app));
    let handshake_timeout = Duration::from_secs(app.config.handshake_timeout_secs);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            app.metrics.connection_refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let config = tls.config();
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::new(app.metrics.clone());
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls_stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Err(_) => {
                        app.metrics.handshake_failure("timeout");
                        return;
                    }
                    Ok(Err(e)) => {
                        let reason = handshake_reason(&e);
                        app.metrics.handshake_failure(reason);
                        tracing::debug!(%addr, reason, error = %e, "TLS handshake failed");
                        return;
                    }
                    Ok(Ok(s)) => s,
                };
            let identity = match tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                None => None,
                Some(der) => match PeerIdentity::from_cert_der(der.as_ref()) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        app.metrics.handshake_failure("client_certificate_refused");
                        tracing::info!(%addr, error = %e, "client certificate refused");
                        return;
                    }
                },
            };
            let caller = Arc::new(Caller { identity, addr });
            let svc_app = app.clone();
            let svc = hyper::service::service_fn(move |req| {
                let app = svc_app.clone();
                let caller = caller.clone();
                async move { Ok::<_, Infallible>(handle(app, caller, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(tls_stream), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(app.config.shutdown_grace_secs);
    tracing::info!(
        in_flight = graceful.count(),
        ?grace,
        "stopped accepting; draining"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
