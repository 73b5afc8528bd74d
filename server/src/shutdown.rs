//! Signals: SIGHUP reloads TLS material; SIGTERM or SIGINT starts the
//! graceful shutdown (stop accepting, drain within the grace period).
//!
//! Also [`Trigger`]: a shutdown signal several tasks can wait on.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::tls::ReloadableTls;

/// A one-shot shutdown broadcast.
#[derive(Debug, Clone)]
pub struct Trigger {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Trigger {
    fn default() -> Self {
        Self::new()
    }
}

impl Trigger {
    /// A trigger not yet fired.
    pub fn new() -> Self {
        Trigger {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Fires it.
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }

    /// Resolves once fired.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// A receiver that sees `true` once fired.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Handles SIGHUP (reload) until SIGTERM or SIGINT arrives, then returns.
pub async fn handle_signals(tls: Arc<ReloadableTls>, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let t = tls.clone();
                let r = tokio::task::spawn_blocking(move || t.reload()).await;
                match r {
                    Ok(Ok(())) => {
                        metrics.crl_reloaded(true);
                        tracing::info!("SIGHUP: certificate, key and CRL reloaded");
                    }
                    Ok(Err(e)) => {
                        metrics.crl_reloaded(false);
                        tracing::error!(error = %e, "SIGHUP: reload failed; keeping the previous configuration");
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
                }
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
        }
    }
}
