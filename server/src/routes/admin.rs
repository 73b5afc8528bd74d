//! Small routes: audit log (admin), CA certificate, CRL, health.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;

use super::{blocking, App};
use crate::error::ApiError;
use crate::http_util::{full, json_response, Resp};

/// Most audit lines returned by one request.
pub const MAX_AUDIT_PAGE: usize = 1000;
/// Audit lines returned when `limit` is not given.
pub const DEFAULT_AUDIT_PAGE: usize = 100;

/// Parses `after=<seq>&limit=<n>`; anything else is a 400.
pub fn parse_audit_query(q: Option<&str>) -> Result<(u64, usize), ApiError> {
    let mut after = 0u64;
    let mut limit = DEFAULT_AUDIT_PAGE;
    let bad = |m: &str| ApiError::bad_request("bad_query", m.to_string());
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad("query parameters are key=value"))?;
        match k {
            "after" => after = v.parse().map_err(|_| bad("after is a sequence number"))?,
            "limit" => {
                limit = v.parse().map_err(|_| bad("limit is a number"))?;
                if limit == 0 || limit > MAX_AUDIT_PAGE {
                    return Err(bad("limit is 1-1000"));
                }
            }
            _ => return Err(bad("known parameters: after, limit")),
        }
    }
    Ok((after, limit))
}

/// `GET /v1/audit?after=&limit=`.
pub async fn audit_list(app: &Arc<App>, query: Option<&str>) -> Result<Resp, ApiError> {
    let (after, limit) = parse_audit_query(query)?;
    let entries = blocking(app, move |s| s.audit_list(after, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "entries": entries }),
    ))
}

/// `GET /v1/ca`: the CA certificate (PEM).
pub fn ca(app: &Arc<App>) -> Resp {
    full(StatusCode::OK, "application/x-pem-file", app.tls.ca_pem())
}

/// `GET /v1/crl`: the enforced CRL (DER).
pub fn crl(app: &Arc<App>) -> Resp {
    full(StatusCode::OK, "application/pkix-crl", app.tls.crl_der())
}

/// `GET /healthz`.
pub fn health() -> Resp {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_queries() {
        assert_eq!(parse_audit_query(None).expect("none"), (0, 100));
        assert_eq!(
            parse_audit_query(Some("after=5&limit=7")).expect("ok"),
            (5, 7)
        );
        for bad in [
            "after",
            "after=-1",
            "after=x",
            "limit=0",
            "limit=1001",
            "limit=99999999999999999999999",
            "x=1",
            "after=1=2",
        ] {
            assert!(parse_audit_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
