//! `satchel_server`: the mutual-TLS bundle server.
//!
//! It stores signed, encrypted bundles it cannot read and hands each node
//! only what its client certificate's scope allows; keeps captured uploads
//! in a bounded quarantine; records node reports, keeps the inventory and
//! forwards reports to the management engine; audits every admin action and
//! every bundle fetch; exports Prometheus metrics on a separate listener.
//!
//! It does not issue certificates or sign bundles (`satchel-pki`,
//! `satchel-bundle` do), never decrypts anything, and takes no node's site
//! from the request: only from its certificate or a signed manifest.
//!
//! Layout:
//! - [`config`]: every setting and limit (TOML + flags).
//! - [`tls`]: the hot-swappable rustls configuration (CRL reload).
//! - [`listener`]: connection limit, timeouts, identity, graceful drain.
//! - [`shutdown`]: signals (SIGHUP reload, SIGTERM drain).
//! - [`routes`]: request handling per route; [`authz`]: the pure decision.
//! - [`publish`]: bundle verification before publishing.
//! - [`store`]: the `Store` trait, its sled implementation (the only sled
//!   user) and its etcd implementation (the only etcd user).
//! - [`forward`]: the durable at-least-once webhook forwarder.
//! - [`response`]: the response type; [`error`]: the one error → HTTP
//!   mapping; [`http_util`]: streamed and bounded bodies.
//! - [`metrics`], [`ratelimit`].
//! - [`migrate`]: `satchel-server migrate --from-sled DIR`, sled into etcd.
//! - [`ui`]: the admins' status page (`/ui/`), rendered from `server/ui/`.
//! - `demo` (feature `demo`, on by default): the throwaway setup of
//!   `satchel-server demo`, the one user of the CA's issuing code.
//!
//! URLs name MACs in the canonical form only (`aa-bb-cc-dd-ee-ff`); any
//! other spelling is refused with 400 `non_canonical_mac`, whose message
//! gives the canonical form (no redirect: one node, one URL).
//!
//! The entry point is [`run`]: it takes its listener, TLS state, store and
//! a shutdown future, so tests drive it in-process.

#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod forward;
pub mod http_util;
pub mod listener;
pub mod metrics;
pub mod migrate;
pub mod publish;
pub mod ratelimit;
pub mod response;
pub mod routes;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod ui;

#[cfg(test)]
mod fuzz_tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub use config::Config;
pub use metrics::Metrics;
pub use publish::Signers;
pub use store::{EtcdStore, SledStore, Store};
pub use tls::{ReloadableTls, TlsFiles};

/// Fastest and slowest quarantine expiry sweep.
const SWEEP_MIN: Duration = Duration::from_millis(250);
const SWEEP_MAX: Duration = Duration::from_secs(60);

/// An RFC 3339 timestamp (UTC, whole seconds).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// What [`run`] needs besides listener, TLS, store and shutdown.
#[derive(Debug)]
pub struct Options {
    /// Settings.
    pub config: Config,
    /// Keys trusted to sign published bundles.
    pub signers: Signers,
    /// Metrics (shared with the metrics listener).
    pub metrics: Arc<Metrics>,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The engine webhook setting is unusable.
    #[error("engine_webhook: {0}")]
    Webhook(#[from] forward::ForwardError),
    /// The engine CA file could not be read.
    #[error("cannot read engine_ca {0}: {1}")]
    EngineCa(String, std::io::Error),
}

/// Serves the API on `listener` until `shutdown` resolves, then drains.
/// Also runs the quarantine expiry, the CRL watch and the report forwarder.
pub async fn run(
    listener: TcpListener,
    tls: Arc<ReloadableTls>,
    store: Arc<dyn Store>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let config = options.config;
    let hook = if config.engine_webhook.is_empty() {
        None
    } else {
        let ca =
            if config.engine_webhook.starts_with("https://") {
                if config.engine_ca.as_os_str().is_empty() {
                    Some(tls.ca_pem().to_vec())
                } else {
                    Some(std::fs::read(&config.engine_ca).map_err(|e| {
                        RunError::EngineCa(config.engine_ca.display().to_string(), e)
                    })?)
                }
            } else {
                None
            };
        Some(forward::Webhook::new(
            &config.engine_webhook,
            ca.as_deref(),
        )?)
    };
    let _ = options.metrics.store.set(store.clone());
    let app = Arc::new(routes::App {
        upload_limiter: ratelimit::RateLimiter::new(
            config.upload_burst_per_source,
            config.upload_per_minute_per_source,
        ),
        anonymous_limiter: ratelimit::RateLimiter::new(
            config.anonymous_burst_per_source,
            config.anonymous_per_minute_per_source,
        ),
        node_limiter: ratelimit::RateLimiter::new(
            config.node_burst_per_source,
            config.node_per_minute_per_source,
        ),
        security_audit_limiter: ratelimit::RateLimiter::new(
            config.security_audit_burst_per_source,
            config.security_audit_per_minute_per_source,
        ),
        config,
        store,
        tls: tls.clone(),
        metrics: options.metrics,
        signers: options.signers,
        forward_wakeup: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(sweep_quarantine(app.clone(), stop_rx.clone())),
        tokio::spawn(watch_crl(app.clone(), stop_rx.clone())),
    ];
    if let Some(hook) = hook {
        tasks.push(tokio::spawn(forward::run_forwarder(
            app.clone(),
            hook,
            stop_rx.clone(),
        )));
    }
    listener::serve(listener, tls, app.clone(), shutdown).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let store = app.store.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
        tracing::error!(error = %e, "final flush failed");
    }
    Ok(())
}

async fn sweep_quarantine(app: Arc<routes::App>, mut stop: watch::Receiver<bool>) {
    let expiry = app.config.upload_expiry_secs;
    let every = (Duration::from_secs(expiry) / 4).clamp(SWEEP_MIN, SWEEP_MAX);
    loop {
        let store = app.store.clone();
        let r = tokio::task::spawn_blocking(move || {
            let cutoff = OffsetDateTime::now_utc().unix_timestamp() - expiry as i64;
            let n = store.upload_expire(cutoff)?;
            Ok::<_, store::StoreError>((n, store.quarantine_usage()?))
        })
        .await;
        match r {
            Ok(Ok((n, (count, bytes)))) => {
                if n > 0 {
                    tracing::info!(expired = n, "pending uploads expired");
                }
                app.metrics.add_expired(n as u64);
                app.metrics.set_quarantine(count, bytes);
            }
            other => tracing::error!(?other, "quarantine sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn watch_crl(app: Arc<routes::App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(app.config.crl_poll_secs);
    loop {
        let tls = app.tls.clone();
        match tokio::task::spawn_blocking(move || tls.poll_crl()).await {
            Ok(Ok(true)) => {
                app.metrics.crl_reloaded(true);
                tracing::info!(number = ?app.tls.crl_number(), "CRL changed; now enforced");
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                app.metrics.crl_reloaded(false);
                tracing::error!(error = %e, "CRL reload failed; the previous CRL stays enforced");
            }
            Err(e) => tracing::error!(error = %e, "CRL poll task failed"),
        }
        let stale = app.tls.crl_stale(OffsetDateTime::now_utc());
        if stale {
            tracing::warn!("the enforced CRL is past its nextUpdate (still enforced)");
        }
        app.metrics.set_crl(stale, app.tls.crl_number());
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
