//! Small routes: audit log (admin), CA certificate, CRL, health.

use std::sync::Arc;

use http::StatusCode;
use serde_json::json;

use super::{blocking, App};
use crate::error::ApiError;
use crate::http_util::{full, json_response, Resp};
use crate::store::AuditLog;

/// Most audit lines returned by one request.
pub const MAX_AUDIT_PAGE: usize = 1000;
/// Audit lines returned when `limit` is not given.
pub const DEFAULT_AUDIT_PAGE: usize = 100;

/// What `GET /v1/audit` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditQuery {
    /// Lines with a sequence number above this.
    pub after: u64,
    /// Most lines returned.
    pub limit: usize,
    /// One log, or all of them merged.
    pub log: Option<AuditLog>,
}

/// Parses `after=<seq>&limit=<n>&log=admin|security|fetch`; anything else is a 400.
pub fn parse_audit_query(q: Option<&str>) -> Result<AuditQuery, ApiError> {
    let mut query = AuditQuery {
        after: 0,
        limit: DEFAULT_AUDIT_PAGE,
        log: None,
    };
    let bad = |m: &str| ApiError::bad_request("bad_query", m.to_string());
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad("query parameters are key=value"))?;
        match k {
            "after" => query.after = v.parse().map_err(|_| bad("after is a sequence number"))?,
            "limit" => {
                query.limit = v.parse().map_err(|_| bad("limit is a number"))?;
                if query.limit == 0 || query.limit > MAX_AUDIT_PAGE {
                    return Err(bad("limit is 1-1000"));
                }
            }
            "log" => {
                query.log =
                    Some(AuditLog::parse(v).ok_or_else(|| bad("log is admin, security or fetch"))?)
            }
            _ => return Err(bad("known parameters: after, limit, log")),
        }
    }
    Ok(query)
}

/// `GET /v1/audit?after=&limit=&log=`.
pub async fn audit_list(app: &Arc<App>, query: Option<&str>) -> Result<Resp, ApiError> {
    let q = parse_audit_query(query)?;
    let entries = blocking(app, move |s| s.audit_list(q.after, q.limit, q.log)).await?;
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
        let q = |after, limit, log| AuditQuery { after, limit, log };
        assert_eq!(parse_audit_query(None).expect("none"), q(0, 100, None));
        assert_eq!(
            parse_audit_query(Some("after=5&limit=7")).expect("ok"),
            q(5, 7, None)
        );
        assert_eq!(
            parse_audit_query(Some("log=fetch&after=2")).expect("ok"),
            q(2, 100, Some(AuditLog::Fetch))
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
            "log=",
            "log=Admin",
            "log=all",
        ] {
            assert!(parse_audit_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
