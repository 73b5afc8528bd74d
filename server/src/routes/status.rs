//! `GET /ui/…`: the admins' status page, assembled from the store, the TLS
//! state and the settings, rendered by [`crate::ui`].

use std::sync::Arc;

use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use time::OffsetDateTime;

use super::{blocking, App};
use crate::authz::UiPart;
use crate::error::ApiError;
use crate::http_util::{full, Resp};
use crate::routes::reports::inventory;
use crate::ui::{self, BundleRow, Filters, Health, Snapshot};

/// Serves one part of the page.
pub async fn serve(
    app: &Arc<App>,
    part: UiPart,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    let (body, kind) = match part {
        UiPart::Script => (ui::APP_JS.to_string(), "text/javascript; charset=utf-8"),
        UiPart::Style => (ui::STYLE_CSS.to_string(), "text/css; charset=utf-8"),
        UiPart::Page | UiPart::Fragment => {
            let filters = Filters::parse(req.uri().query())
                .map_err(|e| ApiError::bad_request("bad_query", e.to_string()))?;
            // HTTP/2 names the server in the URI's authority, HTTP/1.1 in Host.
            let server = req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .or_else(|| {
                    let host = req.headers().get(header::HOST)?;
                    host.to_str().ok().map(str::to_string)
                })
                .unwrap_or_else(|| "this server".into());
            let snap = snapshot(app, server).await?;
            let html = tokio::task::spawn_blocking(move || {
                ui::render(&snap, &filters, part == UiPart::Fragment)
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
            (html, "text/html; charset=utf-8")
        }
    };
    let mut r = full(StatusCode::OK, kind, body);
    let h = r.headers_mut();
    // Only this server's own script and style; no framing, no referrer.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn snapshot(app: &Arc<App>, server: String) -> Result<Snapshot, ApiError> {
    let stored = blocking(app, |s| {
        Ok((
            s.nodes()?,
            s.bundle_list()?,
            s.upload_list()?,
            s.forward_depth()?,
            s.quarantine_usage()?,
        ))
    })
    .await;
    let now = OffsetDateTime::now_utc();
    let tls = &app.tls;
    let c = &app.config;
    let mut health = Health {
        crl_number: tls.crl_number(),
        crl_stale: tls.crl_stale(now),
        crl_next_update: tls.crl_next_update().map(crate::rfc3339),
        store_ok: true,
        store: "ok".into(),
        forward_backlog: 0,
        quarantine_uploads: 0,
        quarantine_bytes: 0,
    };
    let (nodes, never_seen, bundles, uploads) = match stored {
        Ok((records, metas, uploads, backlog, (n, bytes))) => {
            health.forward_backlog = backlog;
            health.quarantine_uploads = n;
            health.quarantine_bytes = bytes;
            let (nodes, never) = inventory(records, &metas);
            let soon = now
                + time::Duration::days(
                    i64::try_from(c.ui_expiring_days).unwrap_or(i64::MAX / 86_400_000),
                );
            let bundles = metas
                .into_iter()
                .map(|meta| {
                    let expires = OffsetDateTime::parse(
                        &meta.expires,
                        &time::format_description::well_known::Rfc3339,
                    );
                    BundleRow {
                        expiring_soon: expires.is_ok_and(|e| e <= soon),
                        meta,
                    }
                })
                .collect();
            (nodes, never, bundles, uploads)
        }
        // The page still shows what it can: the store's failure is health.
        Err(e) => {
            health.store_ok = false;
            health.store = format!("unavailable: {}", e.message);
            (Vec::new(), Vec::new(), Vec::new(), Vec::new())
        }
    };
    Ok(Snapshot {
        server,
        generated: crate::rfc3339(now),
        health,
        nodes,
        never_seen,
        bundles,
        uploads,
        refresh_secs: c.ui_refresh_secs,
        expiring_days: c.ui_expiring_days,
        page_nodes: c.ui_page_nodes,
    })
}
