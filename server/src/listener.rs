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
//! - at most `max_handshakes_per_source` connections of one source address,
//!   and `max_handshakes` of all, are in their TLS handshake at once: the
//!   excess is closed right after accept, before it takes a connection
//!   permit, so one address with connections that never finish a
//!   handshake cannot lock the others out (counted in
//!   `satchel_connections_shed_total`);
//! - a client has `handshake_timeout_secs` to finish TLS and
//!   `header_read_timeout_secs` to send each request head (slowloris);
//! - the TLS configuration is read once per connection, so a reload applies
//!   to the next handshake;
//! - a presented client certificate the PKI library's `PeerIdentity` refuses
//!   (no clientAuth EKU, no scope) closes the connection before any request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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

/// Connections still in their TLS handshake, per source address and in all.
#[derive(Debug)]
struct Handshakes {
    /// Source → handshakes in progress, and their total. A mutex because
    /// the accept loop starts handshakes while connection tasks end them.
    counts: Mutex<(HashMap<IpAddr, usize>, usize)>,
    max_per_source: usize,
    max_total: usize,
}

/// One connection's place among the handshakes in progress, given back
/// when dropped (handshake done, failed or timed out).
#[derive(Debug)]
struct HandshakeSlot {
    owner: Arc<Handshakes>,
    ip: IpAddr,
}

impl Handshakes {
    fn new(max_per_source: usize, max_total: usize) -> Arc<Handshakes> {
        Arc::new(Handshakes {
            counts: Mutex::new((HashMap::new(), 0)),
            max_per_source,
            max_total,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<IpAddr, usize>, usize)> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A slot for a new connection from `ip`, or the name of the cap it
    /// would exceed. IPv4-mapped IPv6 addresses count as their IPv4 source.
    fn try_start(self: &Arc<Self>, ip: IpAddr) -> Result<HandshakeSlot, &'static str> {
        let ip = ip.to_canonical();
        let mut g = self.lock();
        if g.1 >= self.max_total {
            return Err("handshakes");
        }
        let n = g.0.entry(ip).or_insert(0);
        if *n >= self.max_per_source {
            return Err("per_source_handshakes");
        }
        *n += 1;
        g.1 += 1;
        Ok(HandshakeSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut g = self.owner.lock();
        g.1 = g.1.saturating_sub(1);
        if let Some(n) = g.0.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.0.remove(&self.ip);
            }
        }
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
    let handshakes = Handshakes::new(
        app.config.max_handshakes_per_source,
        app.config.max_handshakes,
    );
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
        let slot = match handshakes.try_start(addr.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                app.metrics.connection_shed(cap);
                drop(stream);
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
            app.metrics.handshakes_add(1);
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
            app.metrics.handshakes_add(-1);
            drop(slot);
            let tls_stream = match handshake {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share_of_handshakes() {
        let h = Handshakes::new(2, 3);
        let a1 = h.try_start(ip(2)).expect("first");
        let a2 = h.try_start(ip(2)).expect("second");
        assert_eq!(h.try_start(ip(2)).err(), Some("per_source_handshakes"));
        // The same source as an IPv4-mapped IPv6 address is the same source.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().expect("ip");
        assert_eq!(h.try_start(mapped).err(), Some("per_source_handshakes"));
        let b1 = h.try_start(ip(1)).expect("another source");
        assert_eq!(h.try_start(ip(3)).err(), Some("handshakes"));
        drop(a1);
        let a3 = h.try_start(ip(2)).expect("a slot came back");
        drop((a2, a3, b1));
        let g = h.lock();
        assert!(g.0.is_empty(), "{:?}", g.0);
        assert_eq!(g.1, 0);
    }
}
