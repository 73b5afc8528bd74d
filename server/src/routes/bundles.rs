//! Bundles: the boot index, raw bundle GET (streamed, ETag), admin PUT
//! (verified publish), DELETE and list.

use std::sync::Arc;

use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use satchel_names::{Mac, SiteName, Target};
use satchel_pki::Scope;
use serde_json::json;

use super::{at_once, blocking, App, Caller};
use crate::error::ApiError;
use crate::http_util::{empty, json_response, read_body, Resp, Streamed};
use crate::publish;
use crate::store::BundleMeta;

/// The URL path of a target's raw bundle.
pub fn bundle_url(target: &Target) -> String {
    format!("/v1/bundles/{target}")
}

fn index_entry(m: &BundleMeta) -> serde_json::Value {
    json!({
        "target": m.target,
        "serial": m.serial,
        "sha256": m.sha256,
        "size": m.size,
        "url": format!("/v1/bundles/{}", m.target),
    })
}

/// `GET /v1/boot/{mac}`: the bundles this caller may fetch for `mac`, in
/// apply order (site, then host).
pub async fn boot_index(app: &Arc<App>, caller: &Caller, mac: Mac) -> Result<Resp, ApiError> {
    let host = at_once(app, move |s| s.bundle_meta(&Target::Host(mac)))?;
    let host_site = host.as_ref().and_then(|m| m.site.clone());
    // The site comes from the certificate, or for admins from the signed
    // host manifest; never from the request.
    let (site, host_visible): (Option<SiteName>, bool) =
        match caller.identity.as_ref().map(|i| &i.scope) {
            Some(Scope::Host { site, .. }) => (site.clone(), true),
            Some(Scope::Site(s)) => (Some(s.clone()), host_site.as_ref() == Some(s)),
            Some(Scope::Admin(_)) => (host_site.clone(), true),
            None => (None, false),
        };
    let site_meta = match site.clone() {
        Some(s) => at_once(app, move |st| st.bundle_meta(&Target::Site(s)))?,
        None => None,
    };
    let mut bundles = Vec::new();
    if let Some(m) = &site_meta {
        bundles.push(index_entry(m));
    }
    if let (true, Some(m)) = (host_visible, &host) {
        bundles.push(index_entry(m));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "mac": mac, "site": site, "bundles": bundles }),
    ))
}

fn etag(meta: &BundleMeta) -> String {
    format!("\"{}\"", meta.sha256)
}

fn if_none_match_hits(req: &Request<Incoming>, tag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// `GET /v1/bundles/{kind}/{name}`.
pub async fn get(
    app: &Arc<App>,
    target: Target,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    let t = target.clone();
    let Some((meta, bytes)) = at_once(app, move |s| s.bundle_get(&t))? else {
        return Err(ApiError::not_found(format!(
            "no bundle is published for {target}"
        )));
    };
    let tag = etag(&meta);
    let mut resp = if if_none_match_hits(req, &tag) {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        let mut r = http::Response::new(Streamed::new(bytes, Some(app.metrics.clone())).boxed());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-tar"),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.serial.to_string()) {
        h.insert("x-satchel-serial", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /v1/bundles/{kind}/{name}/history` (admin): the kept versions,
/// newest first, with the highest serial ever published.
pub async fn history(app: &Arc<App>, target: Target) -> Result<Resp, ApiError> {
    let t = target.clone();
    let (versions, highest, current) = blocking(app, move |s| {
        Ok((
            s.bundle_history(&t)?,
            s.highest_serial(&t)?,
            s.bundle_meta(&t)?.map(|m| m.serial),
        ))
    })
    .await?;
    if versions.is_empty() && highest.is_none() {
        return Err(ApiError::not_found(format!(
            "nothing was ever published for {target}"
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "target": target.to_string(),
            "current_serial": current,
            "highest_serial": highest,
            "versions": versions,
        }),
    ))
}

/// `GET /v1/bundles/{kind}/{name}/history/{serial}` (admin): one kept
/// version's bytes.
pub async fn version(app: &Arc<App>, target: Target, serial: u64) -> Result<Resp, ApiError> {
    let t = target.clone();
    let Some((meta, bytes)) = blocking(app, move |s| s.bundle_version(&t, serial)).await? else {
        return Err(ApiError::not_found(format!(
            "serial {serial} of {target} is not in its history"
        )));
    };
    let mut r = http::Response::new(Streamed::new(bytes, Some(app.metrics.clone())).boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag(&meta)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.serial.to_string()) {
        h.insert("x-satchel-serial", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `PUT /v1/bundles/{kind}/{name}`: verify, then publish atomically.
pub async fn put(
    app: &Arc<App>,
    caller: &Caller,
    target: Target,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body = read_body(
        req,
        "the bundle",
        app.config.max_bundle_bytes,
        crate::config::Config::secs(app.config.body_read_timeout_secs),
        app.config.refused_body_drain_bytes,
    )
    .await?;
    let signers = app.signers.clone();
    let t = target.clone();
    let checked = {
        let body = body.clone();
        tokio::task::spawn_blocking(move || publish::verify(&body, &t, &signers))
            .await
            .map_err(ApiError::internal)??
    };
    let meta = checked.into_meta(&target, body.len() as u64, caller.who());
    let m = meta.clone();
    let t = target.clone();
    let history = app.config.bundle_history;
    blocking(app, move |s| s.bundle_put(&t, &m, &body, history)).await?;
    tracing::info!(target = %target, serial = meta.serial, by = %meta.published_by, "bundle published");
    Ok(json_response(StatusCode::CREATED, &json!(meta)))
}

/// `DELETE /v1/bundles/{kind}/{name}`.
pub async fn delete(app: &Arc<App>, target: Target) -> Result<Resp, ApiError> {
    let t = target.clone();
    if blocking(app, move |s| s.bundle_delete(&t)).await? {
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::not_found(format!(
            "no bundle is published for {target}"
        )))
    }
}

/// `GET /v1/bundles`: every published bundle's metadata, with the highest
/// serial ever published per target.
pub async fn list(app: &Arc<App>) -> Result<Resp, ApiError> {
    let (metas, serials) = blocking(app, |s| Ok((s.bundle_list()?, s.highest_serials()?))).await?;
    let highest: serde_json::Map<String, serde_json::Value> =
        serials.into_iter().map(|(t, n)| (t, json!(n))).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "bundles": metas, "highest_serials": highest }),
    ))
}
