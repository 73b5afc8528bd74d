//! The upload quarantine: anonymous or node POSTs of opaque encrypted
//! captures, admin list/download/delete.

use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use satchel_names::Mac;
use satchel_pki::Scope;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{blocking, App, Caller};
use crate::config::Config;
use crate::error::ApiError;
use crate::http_util::{empty, json_response, read_body, Resp, Streamed};
use crate::store::{QuarantineLimits, StoreError, UploadMeta, UploadState};

/// `POST /v1/uploads/{mac}`.
pub async fn post(
    app: &Arc<App>,
    caller: &Caller,
    mac: Mac,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    if let Err(wait) = app.upload_limiter.check(caller.addr.ip(), Instant::now()) {
        app.metrics.upload_refused("rate");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many uploads from this address; retry later",
        )
        .retry_after(wait));
    }
    let anonymous = caller.identity.is_none();
    let max_bytes = if anonymous {
        app.config
            .anonymous_max_upload_bytes
            .min(app.config.max_upload_bytes)
    } else {
        app.config.max_upload_bytes
    };
    let body = match read_body(
        req,
        if anonymous {
            "an upload without a client certificate"
        } else {
            "the upload"
        },
        max_bytes,
        Config::secs(app.config.body_read_timeout_secs),
        app.config.refused_body_drain_bytes,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            app.metrics.upload_refused("body");
            return Err(e);
        }
    };
    if body.is_empty() {
        return Err(ApiError::bad_request("empty_upload", "the upload is empty"));
    }
    let now = time::OffsetDateTime::now_utc();
    let meta = UploadMeta {
        id: String::new(),
        mac,
        received: crate::rfc3339(now),
        received_unix: now.unix_timestamp(),
        source: caller.addr.ip().to_string(),
        cert_scope: caller.identity.as_ref().map(|i| i.scope.label()),
        cert_fingerprint: caller.fingerprint(),
        cert_binds_mac: caller
            .identity
            .as_ref()
            .is_some_and(|i| matches!(&i.scope, Scope::Host { mac: m, .. } if *m == mac)),
        size: body.len() as u64,
        sha256: hex::encode(Sha256::digest(&body)),
        state: UploadState::Pending,
    };
    let limits = QuarantineLimits {
        max_pending_per_mac: app.config.max_pending_uploads_per_mac,
        max_total_bytes: app.config.max_quarantine_bytes,
        anonymous_max_pending_per_mac: app.config.anonymous_max_pending_uploads_per_mac,
        anonymous_max_total_bytes: app.config.anonymous_max_quarantine_bytes,
    };
    let stored = blocking(app, move |s| {
        let r = s.upload_put(meta, &body, limits);
        let usage = s.quarantine_usage();
        Ok((r, usage))
    })
    .await?;
    if let Ok((n, bytes)) = stored.1 {
        app.metrics.set_quarantine(n, bytes);
    }
    let stored = match stored.0 {
        Ok(m) => m,
        Err(e) => {
            app.metrics.upload_refused(match e {
                StoreError::TooManyPending { .. } => "pending_per_mac",
                StoreError::QuarantineFull { .. } => "quarantine_full",
                _ => "store",
            });
            return Err(e.into());
        }
    };
    tracing::info!(id = %stored.id, mac = %stored.mac, source = %stored.source,
        size = stored.size, state = ?stored.state, "upload quarantined");
    Ok(json_response(StatusCode::CREATED, &json!(stored)))
}

/// `GET /v1/uploads`.
pub async fn list(app: &Arc<App>) -> Result<Resp, ApiError> {
    let uploads = blocking(app, |s| s.upload_list()).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "uploads": uploads }),
    ))
}

/// `GET /v1/uploads/{id}`: the raw upload; metadata in headers.
pub async fn get(app: &Arc<App>, id: String) -> Result<Resp, ApiError> {
    let i = id.clone();
    let Some((meta, bytes)) = blocking(app, move |s| s.upload_get(&i)).await? else {
        return Err(ApiError::not_found(format!("no upload {id}")));
    };
    let mut r = http::Response::new(Streamed::new(bytes, Some(app.metrics.clone())).boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in [
        ("x-satchel-mac", meta.mac.to_string()),
        ("x-satchel-sha256", meta.sha256.clone()),
        ("x-satchel-source", meta.source.clone()),
        ("x-satchel-received", meta.received.clone()),
        (
            "x-satchel-cert-scope",
            meta.cert_scope
                .clone()
                .unwrap_or_else(|| "anonymous".into()),
        ),
        ("x-satchel-cert-binds-mac", meta.cert_binds_mac.to_string()),
        (
            "x-satchel-state",
            match meta.state {
                UploadState::Pending => "pending".into(),
                UploadState::Conflict => "conflict".into(),
            },
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(r)
}

/// `DELETE /v1/uploads/{id}` (reject, or clean up after approval).
pub async fn delete(app: &Arc<App>, id: String) -> Result<Resp, ApiError> {
    let i = id.clone();
    let (existed, usage) = blocking(app, move |s| {
        let e = s.upload_delete(&i)?;
        Ok((e, s.quarantine_usage()?))
    })
    .await?;
    app.metrics.set_quarantine(usage.0, usage.1);
    if existed {
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::not_found(format!("no upload {id}")))
    }
}
