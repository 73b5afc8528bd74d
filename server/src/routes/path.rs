//! Parsing method + path into a [`Route`]: pure, with hostile-input tests.
//!
//! MACs in paths must be in the canonical form `aa-bb-cc-dd-ee-ff`: any
//! other spelling that `Mac::parse` understands is refused with 400
//! `non_canonical_mac` naming the canonical form, so one node has exactly one
//! URL (and one audit/metrics spelling). Paths are matched on their raw,
//! percent-encoded form: no decoding happens, so `%2e%2e` is just a bad name.

use http::{Method, StatusCode};
use satchel_names::{Mac, SiteName, Target};

use crate::authz::{Route, UiPart};
use crate::error::ApiError;

/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 256;

/// Longest upload id accepted.
pub const MAX_UPLOAD_ID_BYTES: usize = 32;

/// A parsed request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The route.
    pub route: Route,
    /// The route's metrics label (bounded set).
    pub label: &'static str,
    /// The upload id for upload GET/DELETE.
    pub upload_id: Option<String>,
}

fn mac(s: &str) -> Result<Mac, ApiError> {
    let m = Mac::parse(s).map_err(|e| ApiError::bad_request("bad_mac", e.to_string()))?;
    if m.to_string() != s {
        return Err(ApiError::bad_request(
            "non_canonical_mac",
            format!("MACs in URLs are written {m}"),
        ));
    }
    Ok(m)
}

fn target(kind: &str, name: &str) -> Result<Target, ApiError> {
    match kind {
        "host" => Ok(Target::Host(mac(name)?)),
        "site" => {
            Ok(Target::Site(SiteName::parse(name).map_err(|e| {
                ApiError::bad_request("bad_site", e.to_string())
            })?))
        }
        _ => Err(ApiError::not_found("no such route")),
    }
}

fn upload_id(s: &str) -> Result<String, ApiError> {
    if s.is_empty()
        || s.len() > MAX_UPLOAD_ID_BYTES
        || !s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return Err(ApiError::bad_request(
            "bad_upload_id",
            "upload ids are lowercase hex",
        ));
    }
    Ok(s.to_string())
}

/// A serial in a path: decimal digits only, no sign or leading zero.
fn serial(s: &str) -> Result<u64, ApiError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical
        .then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request("bad_serial", "serials in URLs are decimal numbers"))
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Parses a request's method and path (without query).
pub fn parse(method: &Method, path: &str) -> Result<Parsed, ApiError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("paths are at most {MAX_PATH_BYTES} bytes"),
        ));
    }
    let segs: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Err(ApiError::not_found("no such route")),
    };
    let ok = |route, label| {
        Ok(Parsed {
            route,
            label,
            upload_id: None,
        })
    };
    let get = method == Method::GET;
    match segs.as_slice() {
        ["healthz"] if get => ok(Route::Health, "healthz"),
        ["v1", "ca"] if get => ok(Route::Ca, "ca"),
        ["v1", "crl"] if get => ok(Route::Crl, "crl"),
        ["v1", "boot", m] if get => ok(Route::Boot(mac(m)?), "boot"),
        ["v1", "bundles"] if get => ok(Route::BundleList, "bundle_list"),
        ["v1", "bundles", kind, name] => {
            let t = target(kind, name)?;
            match *method {
                Method::GET => ok(Route::BundleGet(t), "bundle_get"),
                Method::PUT => ok(Route::BundlePut(t), "bundle_put"),
                Method::DELETE => ok(Route::BundleDelete(t), "bundle_delete"),
                _ => Err(method_not_allowed()),
            }
        }
        ["v1", "bundles", kind, name, "history"] if get => {
            ok(Route::BundleHistory(target(kind, name)?), "bundle_history")
        }
        ["v1", "bundles", kind, name, "history", n] if get => ok(
            Route::BundleVersion(target(kind, name)?, serial(n)?),
            "bundle_version",
        ),
        ["v1", "bundles", _, _, "history"] | ["v1", "bundles", _, _, "history", _] => {
            Err(method_not_allowed())
        }
        ["v1", "uploads"] if get => ok(Route::UploadList, "upload_list"),
        ["v1", "uploads", x] => match *method {
            Method::POST => ok(Route::UploadPost(mac(x)?), "upload_post"),
            Method::GET => Ok(Parsed {
                route: Route::UploadGet,
                label: "upload_get",
                upload_id: Some(upload_id(x)?),
            }),
            Method::DELETE => Ok(Parsed {
                route: Route::UploadDelete,
                label: "upload_delete",
                upload_id: Some(upload_id(x)?),
            }),
            _ => Err(method_not_allowed()),
        },
        ["v1", "reports", m] if method == Method::POST => {
            ok(Route::ReportPost(mac(m)?), "report_post")
        }
        ["v1", "nodes"] if get => ok(Route::Nodes, "nodes"),
        ["v1", "audit"] if get => ok(Route::Audit, "audit"),
        ["ui"] | ["ui", ""] if get => ok(Route::Ui(UiPart::Page), "ui"),
        ["ui", "fragment"] if get => ok(Route::Ui(UiPart::Fragment), "ui_fragment"),
        ["ui", "app.js"] if get => ok(Route::Ui(UiPart::Script), "ui_asset"),
        ["ui", "style.css"] if get => ok(Route::Ui(UiPart::Style), "ui_asset"),
        ["ui"] | ["ui", "" | "fragment" | "app.js" | "style.css"] => Err(method_not_allowed()),
        ["healthz"]
        | ["v1", "ca" | "crl" | "bundles" | "nodes" | "audit"]
        | ["v1", "boot" | "reports", _] => Err(method_not_allowed()),
        _ => Err(ApiError::not_found("no such route")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_parses() {
        let m = "aa-bb-cc-dd-ee-ff";
        for (method, path, label) in [
            (Method::GET, "/healthz".to_string(), "healthz"),
            (Method::GET, "/v1/ca".into(), "ca"),
            (Method::GET, "/v1/crl".into(), "crl"),
            (Method::GET, format!("/v1/boot/{m}"), "boot"),
            (Method::GET, "/v1/bundles".into(), "bundle_list"),
            (Method::GET, format!("/v1/bundles/host/{m}"), "bundle_get"),
            (Method::PUT, "/v1/bundles/site/dc1".into(), "bundle_put"),
            (
                Method::DELETE,
                "/v1/bundles/site/dc1".into(),
                "bundle_delete",
            ),
            (Method::POST, format!("/v1/uploads/{m}"), "upload_post"),
            (Method::GET, "/v1/uploads".into(), "upload_list"),
            (
                Method::GET,
                "/v1/uploads/00000000000000ab".into(),
                "upload_get",
            ),
            (Method::DELETE, "/v1/uploads/00ab".into(), "upload_delete"),
            (Method::POST, format!("/v1/reports/{m}"), "report_post"),
            (Method::GET, "/v1/nodes".into(), "nodes"),
            (Method::GET, "/v1/audit".into(), "audit"),
            (Method::GET, "/ui/".into(), "ui"),
            (Method::GET, "/ui".into(), "ui"),
            (Method::GET, "/ui/fragment".into(), "ui_fragment"),
            (Method::GET, "/ui/app.js".into(), "ui_asset"),
            (
                Method::GET,
                format!("/v1/bundles/host/{m}/history"),
                "bundle_history",
            ),
            (
                Method::GET,
                "/v1/bundles/site/dc1/history/17".into(),
                "bundle_version",
            ),
        ] {
            assert_eq!(parse(&method, &path).expect(&path).label, label, "{path}");
        }
    }

    #[test]
    fn hostile_paths_are_refused() {
        let long = format!("/v1/bundles/site/{}", "a".repeat(300));
        let cases: &[(&str, &str, u16)] = &[
            ("GET", "", 404),
            ("GET", "v1/ca", 404),
            ("GET", "/", 404),
            ("GET", "//v1/ca", 404),
            ("GET", "/v1/ca/", 404),
            ("GET", "/v1/boot/AA-BB-CC-DD-EE-FF", 400),
            ("GET", "/v1/boot/aa:bb:cc:dd:ee:ff", 400),
            ("GET", "/v1/boot/aabbccddeeff", 400),
            ("GET", "/v1/boot/zz-bb-cc-dd-ee-ff", 400),
            ("GET", "/v1/boot/", 400),
            ("GET", "/v1/bundles/host/..", 400),
            ("GET", "/v1/bundles/site/..", 400),
            ("GET", "/v1/bundles/site/%2e%2e", 400),
            ("GET", "/v1/bundles/site/DC1", 400),
            ("GET", "/v1/bundles/site/dc1/extra", 404),
            ("GET", "/v1/bundles/site/dc1/history/", 400),
            ("GET", "/v1/bundles/site/dc1/history/07", 400),
            ("GET", "/v1/bundles/site/dc1/history/+7", 400),
            ("GET", "/v1/bundles/site/dc1/history/-1", 400),
            ("GET", "/v1/bundles/site/dc1/history/7a", 400),
            (
                "GET",
                "/v1/bundles/site/dc1/history/99999999999999999999999",
                400,
            ),
            ("GET", "/v1/bundles/site/DC1/history", 400),
            ("PUT", "/v1/bundles/site/dc1/history", 405),
            ("DELETE", "/v1/bundles/site/dc1/history/3", 405),
            ("GET", "/v1/bundles/site/dc1/history/3/x", 404),
            ("GET", "/ui/../v1/audit", 404),
            ("GET", "/ui/other.js", 404),
            ("GET", "/ui//", 404),
            ("POST", "/ui/", 405),
            ("GET", "/v1/bundles/node/x", 404),
            ("GET", "/v1/bundles/host/aa-bb-cc-dd-ee-ff%00", 400),
            ("GET", long.as_str(), 414),
            ("GET", "/v1/uploads/../../etc", 404),
            ("GET", "/v1/uploads/..", 400),
            ("GET", "/v1/uploads/ABCDEF", 400),
            (
                "GET",
                "/v1/uploads/00000000000000000000000000000000000000001",
                400,
            ),
            ("PATCH", "/v1/bundles/site/dc1", 405),
            ("POST", "/v1/bundles/site/dc1", 405),
            ("POST", "/v1/ca", 405),
            ("DELETE", "/v1/audit", 405),
            ("GET", "/v1/reports/aa-bb-cc-dd-ee-ff", 405),
            ("PUT", "/v1/uploads/aa-bb-cc-dd-ee-ff", 405),
            ("GET", "/v2/ca", 404),
            ("GET", "/v1/bundles/host/aa-bb-cc-dd-ee-ff\u{e9}", 400),
        ];
        for (method, path, status) in cases {
            let m: Method = method.parse().expect("method");
            let e = parse(&m, path).expect_err(path);
            assert_eq!(e.status.as_u16(), *status, "{method} {path}: {}", e.message);
        }
    }

    #[test]
    fn non_canonical_mac_error_names_the_canonical_form() {
        let e = parse(&Method::GET, "/v1/boot/AA:BB:CC:DD:EE:FF").expect_err("x");
        assert_eq!(e.code, "non_canonical_mac");
        assert!(e.message.contains("aa-bb-cc-dd-ee-ff"));
    }
}
