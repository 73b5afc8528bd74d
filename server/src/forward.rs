//! Forwarding reports to the management engine's webhook.
//!
//! Reports are queued in the store in the same transaction that records
//! them ([`crate::store::Store::report_record`]). [`run_forwarder`] sends the
//! oldest queued report as a JSON POST, removes it from the queue only after
//! a 2xx, and on failure waits with exponential backoff (initial and maximum
//! from the config) before retrying the same report. So delivery is
//! at-least-once and in order; a crash between the 2xx and the removal sends
//! that report again, and the engine recognises it by its `report_id`.
//!
//! It looks at the queue when a report of this server was queued
//! ([`crate::routes::App::forward_wakeup`]), when the store signals one
//! queued elsewhere ([`crate::store::Store::forward_signal`]: on etcd, a
//! watch on the queue while this replica forwards), and every
//! `forward_poll_secs` in case a signal was missed.
//!
//! The webhook may be `http://` or `https://` (verified against `engine_ca`,
//! or the server's own CA, with the PKI library's client configuration).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use crate::routes::App;

/// Reports fetched from the queue per store read.
const PEEK_BATCH: usize = 16;

/// Why one delivery failed (for logs).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The webhook URL is unusable.
    #[error("webhook URL: {0}")]
    Url(String),
    /// Connect, TLS or HTTP failure.
    #[error("{0}")]
    Transport(String),
    /// The engine answered non-2xx.
    #[error("engine answered {0}")]
    Status(u16),
    /// No answer in time.
    #[error("no answer within the timeout")]
    Timeout,
}

/// A parsed webhook target.
#[derive(Clone)]
pub struct Webhook {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("uri", &self.uri)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Webhook {
    /// Parses the URL; `ca_pem` verifies an https engine.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Webhook, ForwardError> {
        let uri: Uri = url.parse().map_err(|e| ForwardError::Url(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(ForwardError::Url("scheme must be http or https".into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| ForwardError::Url("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let ca = ca_pem.ok_or_else(|| ForwardError::Url("https needs a CA".into()))?;
            let cfg = satchel_pki::tls::client_config(ca, None)
                .map_err(|e| ForwardError::Url(e.to_string()))?;
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            None
        };
        Ok(Webhook {
            uri,
            host,
            port,
            tls,
        })
    }

    /// POSTs one JSON body; `Ok` only on a 2xx.
    pub async fn post(&self, body: Bytes, timeout: Duration) -> Result<(), ForwardError> {
        tokio::time::timeout(timeout, self.post_inner(body))
            .await
            .map_err(|_| ForwardError::Timeout)?
    }

    async fn post_inner(&self, body: Bytes) -> Result<(), ForwardError> {
        let t = |e: &dyn std::fmt::Display| ForwardError::Transport(e.to_string());
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| t(&e))?;
        match &self.tls {
            None => self.exchange(tcp, body).await,
            Some(conn) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| t(&e))?;
                let stream = conn.connect(name, tcp).await.map_err(|e| t(&e))?;
                self.exchange(stream, body).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, body: Bytes) -> Result<(), ForwardError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let t = |e: &dyn std::fmt::Display| ForwardError::Transport(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| t(&e))?;
        let driver = tokio::spawn(conn);
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let authority = self
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let req = Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "satchel-server")
            .body(Full::new(body))
            .map_err(|e| t(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| t(&e))?;
        let status = resp.status();
        // Drain (bounded by the caller's timeout) so the engine sees a clean close.
        let _ = resp.into_body().collect().await;
        driver.abort();
        if status.is_success() {
            Ok(())
        } else {
            Err(ForwardError::Status(status.as_u16()))
        }
    }
}

/// Next backoff delay: doubles, capped.
pub fn next_backoff(current: Duration, max: Duration) -> Duration {
    current.saturating_mul(2).min(max)
}

/// Resolves when the store signals a report queued by another server;
/// never without such a signal.
async fn queued_elsewhere(signal: Option<&Notify>) {
    match signal {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Delivers queued reports until `stop` changes.
pub async fn run_forwarder(app: Arc<App>, hook: Webhook, mut stop: watch::Receiver<bool>) {
    let cfg = &app.config;
    let initial = Duration::from_millis(cfg.forward_backoff_initial_ms);
    let max = Duration::from_secs(cfg.forward_backoff_max_secs);
    let timeout = Duration::from_secs(cfg.forward_timeout_secs);
    let poll = Duration::from_secs(cfg.forward_poll_secs);
    // Reports other servers queue (etcd's watch on the queue), if the
    // store can tell.
    let elsewhere = app.store.forward_signal();
    let mut backoff = initial;
    loop {
        if *stop.borrow() {
            return;
        }
        let store = app.store.clone();
        let peeked = tokio::task::spawn_blocking(move || {
            let batch = store.forward_peek(PEEK_BATCH)?;
            // An empty look says nothing of the depth (on etcd, a replica
            // that does not forward sees none of the queue): the depth
            // stays what the last report or removal answered.
            let depth = if batch.is_empty() {
                None
            } else {
                Some(store.forward_depth()?)
            };
            Ok::<_, crate::store::StoreError>((batch, depth))
        })
        .await;
        let batch = match peeked {
            Ok(Ok((b, depth))) => {
                if let Some(d) = depth {
                    app.metrics.set_forward_depth(d);
                }
                b
            }
            other => {
                tracing::error!(?other, "cannot read the forward queue");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = app.forward_wakeup.notified() => {}
                _ = queued_elsewhere(elsewhere.as_deref()) => {}
                _ = stop.changed() => return,
                // Also look again now and then, in case a wakeup was missed.
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        for item in batch {
            loop {
                let attempt = tokio::select! {
                    r = hook.post(item.body.clone(), timeout) => r,
                    // Shutting down: the report stays queued for the next start.
                    _ = stop.changed() => return,
                };
                match attempt {
                    Ok(()) => {
                        let store = app.store.clone();
                        let seq = item.seq;
                        match tokio::task::spawn_blocking(move || store.forward_ack(seq)).await {
                            Ok(Ok(depth)) => app.metrics.set_forward_depth(depth),
                            Ok(Err(e)) => {
                                tracing::error!(error = %e, "cannot remove a forwarded report")
                            }
                            Err(e) => tracing::error!(error = %e, "the forward ack task failed"),
                        }
                        app.metrics
                            .forward_succeeded(time::OffsetDateTime::now_utc().unix_timestamp());
                        backoff = initial;
                        break;
                    }
                    Err(e) => {
                        app.metrics.forward_failed();
                        tracing::warn!(error = %e, retry_in = ?backoff, "report forward failed");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => return,
                        }
                        backoff = next_backoff(backoff, max);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut d = Duration::from_millis(500);
        let max = Duration::from_secs(3);
        let mut seen = vec![];
        for _ in 0..6 {
            seen.push(d.as_millis());
            d = next_backoff(d, max);
        }
        assert_eq!(seen, vec![500, 1000, 2000, 3000, 3000, 3000]);
    }

    #[test]
    fn webhook_urls() {
        assert!(Webhook::new("http://127.0.0.1:9/hook", None).is_ok());
        assert!(Webhook::new("http://[::1]:9/hook", None).is_ok());
        for bad in ["ftp://x/", "127.0.0.1:9", "http:///x", "https://127.0.0.1/"] {
            assert!(Webhook::new(bad, None).is_err(), "{bad}");
        }
    }
}
