//! Request handling: parse the route, rate-limit anonymous callers, decide
//! authorization, dispatch, and count/audit the result.
//!
//! Layout: [`path`] (pure route parsing), [`bundles`] (boot index, bundle
//! GET/PUT/DELETE/list), [`uploads`] (quarantine), [`reports`] (reports,
//! inventory), [`admin`] (audit, CA, CRL, health).
//!
//! Invariant: every request passes [`crate::authz::decide`] before its
//! handler runs; handlers never check scopes themselves, except to choose
//! what a boot index lists (which bundles the caller may fetch).

pub mod admin;
pub mod bundles;
pub mod path;
pub mod reports;
pub mod status;
pub mod uploads;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use satchel_names::Target;
use satchel_pki::{PeerIdentity, Scope};
use tokio::sync::Notify;

use crate::authz::{decide, Decision, HostFacts, Route};
use crate::config::Config;
use crate::error::ApiError;
use crate::http_util::Resp;
use crate::metrics::Metrics;
use crate::publish::Signers;
use crate::ratelimit::RateLimiter;
use crate::store::{AuditEntry, AuditLog, Store, StoreError};
use crate::tls::ReloadableTls;

/// Everything a request handler needs; one per server.
#[derive(Debug)]
pub struct App {
    /// Settings.
    pub config: Config,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// TLS state (for `/v1/ca`, `/v1/crl`).
    pub tls: Arc<ReloadableTls>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Keys trusted to sign published bundles.
    pub signers: Signers,
    /// Upload rate per source.
    pub upload_limiter: RateLimiter,
    /// Request rate per source for callers without a certificate.
    pub anonymous_limiter: RateLimiter,
    /// Request rate per (certificate serial, source) for node certificates.
    pub node_limiter: RateLimiter<(String, IpAddr)>,
    /// Security audit lines per source (beyond it refusals are only counted).
    pub security_audit_limiter: RateLimiter,
    /// Wakes the forwarder when a report is queued.
    pub forward_wakeup: Notify,
}

/// Who is calling, from the connection.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified client certificate's identity, if one was presented.
    pub identity: Option<PeerIdentity>,
    /// The TCP peer.
    pub addr: SocketAddr,
}

impl Caller {
    /// Scope label or `anonymous`.
    pub fn who(&self) -> String {
        self.identity
            .as_ref()
            .map(|i| i.scope.label())
            .unwrap_or_else(|| "anonymous".into())
    }
    /// Certificate fingerprint, if any.
    pub fn fingerprint(&self) -> Option<String> {
        self.identity
            .as_ref()
            .map(|i| i.sha256_fingerprint_hex.clone())
    }
}

/// Runs a store call that does not wait for the disk — a read the store
/// serves from its cache, or a write it does not make durable here (an
/// audit line) — on the calling worker: it takes microseconds, less than a
/// trip to the blocking pool and back (two thread wake-ups per call, and a
/// node's boot makes five such calls). Anything that waits for a sync goes
/// through [`blocking`].
pub fn at_once<T>(
    app: &Arc<App>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
) -> Result<T, ApiError> {
    f(&*app.store).map_err(ApiError::from)
}

/// Runs a store call on the blocking pool.
pub async fn blocking<T, F>(app: &Arc<App>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || f(&*store))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// Answers one request. Never fails: errors become JSON error responses.
pub async fn handle(app: Arc<App>, caller: Arc<Caller>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let what = format!(
        "{method} {}",
        path.chars().take(path::MAX_PATH_BYTES).collect::<String>()
    );
    let (label, route, result) = match path::parse(&method, &path) {
        Err(e) => ("unknown", None, Err(e)),
        Ok(parsed) => {
            let route = parsed.route.clone();
            let r = authorize_and_dispatch(&app, &caller, parsed.clone(), req).await;
            (parsed.label, Some(route), r)
        }
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.response(),
    };
    let status = resp.status();
    app.metrics.request(label, status.as_u16());
    let scope = caller.identity.as_ref().map(|i| &i.scope);
    let log = route.and_then(|r| audit_log_for(&r, scope, status));
    if let Some(log) = log {
        let admitted = log != AuditLog::Security
            || app
                .security_audit_limiter
                .check(caller.addr.ip(), Instant::now())
                .is_ok();
        if admitted {
            audit(&app, &caller, log, what, status).await;
        } else {
            app.metrics.audit_suppressed();
        }
    }
    resp
}

/// The audit log a request's line goes to, if any (pure). Every request
/// of an admin certificate goes to the admin log, which no other caller
/// writes; refusals of anyone else to the security log; answered node
/// fetches to the fetch log. Rate-limited requests (429) are only counted.
pub fn audit_log_for(route: &Route, scope: Option<&Scope>, status: StatusCode) -> Option<AuditLog> {
    if matches!(scope, Some(Scope::Admin(_))) {
        return Some(AuditLog::Admin);
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Some(AuditLog::Security);
    }
    match route {
        Route::BundleGet(_) | Route::Boot(_) if status != StatusCode::TOO_MANY_REQUESTS => {
            Some(AuditLog::Fetch)
        }
        _ => None,
    }
}

async fn audit(app: &Arc<App>, caller: &Caller, log: AuditLog, what: String, status: StatusCode) {
    let entry = AuditEntry {
        seq: 0,
        log,
        time: crate::now_rfc3339(),
        who: caller.who(),
        cert_fingerprint: caller.fingerprint(),
        source: caller.addr.ip().to_string(),
        what,
        status: status.as_u16(),
    };
    tracing::info!(
        target: "satchel_server::audit",
        who = %entry.who,
        fingerprint = entry.cert_fingerprint.as_deref().unwrap_or("-"),
        source = %entry.source,
        what = %entry.what,
        status = entry.status,
        "audit"
    );
    let max = match log {
        AuditLog::Admin => app.config.audit_max_entries,
        AuditLog::Security => app.config.security_audit_max_entries,
        AuditLog::Fetch => app.config.fetch_audit_max_entries,
    };
    if let Err(e) = at_once(app, move |s| s.audit_append(entry, max)) {
        tracing::error!(code = e.code, "audit entry not stored");
    }
}

async fn authorize_and_dispatch(
    app: &Arc<App>,
    caller: &Arc<Caller>,
    parsed: path::Parsed,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let route = &parsed.route;
    // Revocation is decided per request, not per connection: a kept
    // connection (or an HTTP/2 stream on it) outlives a CRL reload.
    if let Some(id) = &caller.identity {
        if app.tls.is_revoked(&id.serial_hex) {
            app.metrics.handshake_failure("revoked_on_open_connection");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "certificate_revoked",
                "this client certificate has been revoked",
            ));
        }
    }
    let scope = caller.identity.as_ref().map(|i| &i.scope);
    if let Some(id) = caller
        .identity
        .as_ref()
        .filter(|i| !matches!(i.scope, Scope::Admin(_)))
    {
        if let Err(wait) = app
            .node_limiter
            .check((id.serial_hex.clone(), caller.addr.ip()), Instant::now())
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests with this certificate from this address",
            )
            .retry_after(wait));
        }
    }
    if scope.is_none() {
        if let Err(wait) = app
            .anonymous_limiter
            .check(caller.addr.ip(), Instant::now())
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests without a client certificate from this address",
            )
            .retry_after(wait));
        }
    }
    let facts = match (scope, route.host_of_interest()) {
        (Some(_), Some(mac)) => {
            let meta = at_once(app, move |s| s.bundle_meta(&Target::Host(mac)))?;
            HostFacts {
                exists: meta.is_some(),
                site: meta.and_then(|m| m.site),
            }
        }
        _ => HostFacts::default(),
    };
    match decide(scope, route, &facts) {
        Decision::Allow => {}
        Decision::NeedCertificate => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "certificate_required",
                "this route requires a client certificate",
            ))
        }
        Decision::Forbidden => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "a {} certificate may not do this",
                    scope.map(|s| s.label()).unwrap_or_default()
                ),
            ))
        }
    }
    match route.clone() {
        Route::Health => Ok(admin::health()),
        Route::Ca => Ok(admin::ca(app)),
        Route::Crl => Ok(admin::crl(app)),
        Route::Audit => admin::audit_list(app, req.uri().query()).await,
        Route::Boot(mac) => bundles::boot_index(app, caller, mac).await,
        Route::BundleGet(t) => bundles::get(app, t, &req).await,
        Route::BundlePut(t) => bundles::put(app, caller, t, req).await,
        Route::BundleDelete(t) => bundles::delete(app, t).await,
        Route::BundleList => bundles::list(app).await,
        Route::BundleHistory(t) => bundles::history(app, t).await,
        Route::BundleVersion(t, serial) => bundles::version(app, t, serial).await,
        Route::UploadPost(mac) => uploads::post(app, caller, mac, req).await,
        Route::UploadList => uploads::list(app).await,
        Route::UploadGet => uploads::get(app, parsed.upload_id.unwrap_or_default()).await,
        Route::UploadDelete => uploads::delete(app, parsed.upload_id.unwrap_or_default()).await,
        Route::ReportPost(mac) => reports::post(app, caller, mac, req).await,
        Route::Nodes => reports::nodes(app).await,
        Route::Ui(part) => status::serve(app, part, &req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel_names::{Mac, SiteName};
    use satchel_pki::AdminName;

    #[test]
    fn node_traffic_never_reaches_the_admin_log() {
        let mac = Mac::from_octets([0x52, 0x54, 0, 0, 0, 1]);
        let site = SiteName::parse("dc1").expect("site");
        let admin = Scope::Admin(AdminName::parse("alice").expect("admin"));
        let host = Scope::Host {
            mac,
            site: Some(site.clone()),
        };
        let site = Scope::Site(site);
        let get = Route::BundleGet(Target::Host(mac));
        let put = Route::BundlePut(Target::Host(mac));
        let ok = StatusCode::OK;
        use AuditLog::*;
        for (route, scope, status, want) in [
            (&put, Some(&admin), ok, Some(Admin)),
            (&get, Some(&admin), ok, Some(Admin)),
            (
                &Route::Nodes,
                Some(&admin),
                StatusCode::FORBIDDEN,
                Some(Admin),
            ),
            (&get, Some(&host), ok, Some(Fetch)),
            (&Route::Boot(mac), Some(&site), ok, Some(Fetch)),
            (&get, Some(&site), StatusCode::NOT_FOUND, Some(Fetch)),
            (&get, Some(&site), StatusCode::TOO_MANY_REQUESTS, None),
            (&put, Some(&host), StatusCode::FORBIDDEN, Some(Security)),
            (&get, None, StatusCode::UNAUTHORIZED, Some(Security)),
            (&get, Some(&host), StatusCode::UNAUTHORIZED, Some(Security)),
            (&Route::ReportPost(mac), Some(&host), ok, None),
            (&Route::Health, None, ok, None),
        ] {
            assert_eq!(
                audit_log_for(route, scope, status),
                want,
                "{route:?} {scope:?} {status}"
            );
        }
    }
}
