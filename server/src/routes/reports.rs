//! Node reports and the inventory.
//!
//! A report body is a JSON object:
//! `{"report_id"?: str, "mac"?: str, "status": str, "serials"?: {target: u64},
//!   "timings_ms"?: {phase: u64}, "error"?: str|null, "fetcher_version"?: str}`
//! plus anything else the fetcher sends (`phases`, `duration_ms`, …). The
//! known fields are type- and size-checked; the whole object (bounded by
//! `max_report_bytes`) is kept and forwarded as sent, with `report_id` and
//! `mac` filled in. The server assigns `report_id` when the node
//! did not send one; the id travels with the forwarded report so the engine
//! can drop duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use satchel_names::{Mac, Target};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{blocking, App, Caller};
use crate::config::Config;
use crate::error::ApiError;
use crate::http_util::{json_response, read_body, Resp};
use crate::store::StoredReport;

/// Longest `report_id`, `status` or `fetcher_version`.
pub const MAX_REPORT_WORD: usize = 128;
/// Longest `error` text kept (longer is truncated).
pub const MAX_REPORT_ERROR: usize = 4096;
/// Most entries in `serials` or `timings_ms`.
pub const MAX_REPORT_MAP_ENTRIES: usize = 32;

/// What a node reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    /// Unique id chosen by the node (retries reuse it).
    #[serde(default)]
    pub report_id: Option<String>,
    /// The node's MAC; must match the URL when present.
    #[serde(default)]
    pub mac: Option<String>,
    /// `ok`, `failed`, … (lowercase word).
    pub status: String,
    /// Serial applied per target (`host/<mac>`, `site/<name>`).
    #[serde(default)]
    pub serials: BTreeMap<String, u64>,
    /// Milliseconds per phase.
    #[serde(default)]
    pub timings_ms: BTreeMap<String, u64>,
    /// Error text of a failed boot.
    #[serde(default)]
    pub error: Option<String>,
    /// The fetcher's version.
    #[serde(default)]
    pub fetcher_version: Option<String>,
}

fn word_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_REPORT_WORD
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'+' | b':'))
}

/// A version string: a word that may also hold `/` (`satchel-fetch/0.1.0`).
fn version_ok(s: &str) -> bool {
    let no_slash: String = s.chars().filter(|c| *c != '/').collect();
    !no_slash.is_empty() && s.len() <= MAX_REPORT_WORD && word_ok(&no_slash)
}

/// Parses and validates a report body for `mac`: the checked known fields,
/// and the whole object to keep (with `report_id`, `mac` and a truncated
/// `error` written back).
pub fn parse_report(body: &[u8], mac: Mac) -> Result<(ReportBody, serde_json::Value), ApiError> {
    let bad = |m: String| ApiError::bad_request("bad_report", m);
    let mut whole: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid report JSON: {e}")))?;
    if !whole.is_object() {
        return Err(bad("a report is a JSON object".into()));
    }
    // Typed parse of the same bytes: also refuses duplicate known fields,
    // which a generic JSON value would silently collapse.
    let r = check_fields(body, mac)?;
    if let Some(obj) = whole.as_object_mut() {
        obj.insert("mac".into(), json!(r.mac));
        obj.insert("error".into(), json!(r.error));
        obj.insert("report_id".into(), json!(r.report_id));
    }
    Ok((r, whole))
}

fn check_fields(body: &[u8], mac: Mac) -> Result<ReportBody, ApiError> {
    let bad = |m: String| ApiError::bad_request("bad_report", m);
    let mut r: ReportBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid report: {e}")))?;
    if let Some(m) = &r.mac {
        if Mac::parse(m).ok() != Some(mac) {
            return Err(bad("the report's mac does not match the URL".into()));
        }
    }
    r.mac = Some(mac.to_string());
    if !word_ok(&r.status) {
        return Err(bad("status must be a short word".into()));
    }
    if let Some(id) = &r.report_id {
        if !word_ok(id) {
            return Err(bad("report_id must be 1-128 of [A-Za-z0-9._:+-]".into()));
        }
    }
    if let Some(v) = &r.fetcher_version {
        if !version_ok(v) {
            return Err(bad("fetcher_version must be a short word".into()));
        }
    }
    if r.serials.len() > MAX_REPORT_MAP_ENTRIES || r.timings_ms.len() > MAX_REPORT_MAP_ENTRIES {
        return Err(bad(format!(
            "serials and timings_ms hold at most {MAX_REPORT_MAP_ENTRIES} entries"
        )));
    }
    for k in r.serials.keys() {
        if k.parse::<Target>().map(|t| t.to_string()).as_deref() != Ok(k.as_str()) {
            return Err(bad("serials keys are host/<mac> or site/<name>".into()));
        }
    }
    for k in r.timings_ms.keys() {
        if !word_ok(k) {
            return Err(bad("timings_ms keys are short words".into()));
        }
    }
    if let Some(e) = &mut r.error {
        if e.len() > MAX_REPORT_ERROR {
            let mut cut = MAX_REPORT_ERROR;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
        }
    }
    Ok(r)
}

/// `POST /v1/reports/{mac}`: stored durably (and queued for the engine)
/// before the 202.
pub async fn post(
    app: &Arc<App>,
    caller: &Caller,
    mac: Mac,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let body = read_body(
        req,
        "the report",
        app.config.max_report_bytes,
        Config::secs(app.config.body_read_timeout_secs),
        app.config.refused_body_drain_bytes,
    )
    .await?;
    let (checked, mut whole) = parse_report(&body, mac)?;
    let report_id = match checked.report_id {
        Some(id) => id,
        None => {
            let id = format!("srv-{}", hex::encode(rand::random::<[u8; 12]>()));
            if let Some(obj) = whole.as_object_mut() {
                obj.insert("report_id".into(), json!(id));
            }
            id
        }
    };
    let stored = StoredReport {
        report_id: report_id.clone(),
        mac,
        received: crate::now_rfc3339(),
        reporter: caller.who(),
        report: whole,
    };
    let forward = !app.config.engine_webhook.is_empty();
    let depth = blocking(app, move |s| {
        s.report_record(&stored, forward)?;
        s.forward_depth()
    })
    .await?;
    app.metrics.set_forward_depth(depth);
    if forward {
        app.forward_wakeup.notify_one();
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "report_id": report_id }),
    ))
}

/// `GET /v1/nodes`.
pub async fn nodes(app: &Arc<App>) -> Result<Resp, ApiError> {
    let nodes = blocking(app, |s| s.nodes()).await?;
    Ok(json_response(StatusCode::OK, &json!({ "nodes": nodes })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> Mac {
        Mac::parse("aa-bb-cc-dd-ee-ff").expect("mac")
    }

    #[test]
    fn a_full_report_parses() {
        let r = parse_report(
            br#"{"report_id":"r-1","mac":"aa-bb-cc-dd-ee-ff","status":"ok",
                "serials":{"host/aa-bb-cc-dd-ee-ff":3,"site/dc1":9},
                "timings_ms":{"discover":3,"fetch":40},"error":null,
                "fetcher_version":"0.1.0","future_field":[1,2]}"#,
            mac(),
        )
        .expect("ok")
        .0;
        assert_eq!(r.serials.len(), 2);
        assert_eq!(r.report_id.as_deref(), Some("r-1"));
    }

    #[test]
    fn the_fetchers_report_is_kept_whole() {
        let (r, whole) = parse_report(
            br#"{"report_id":"0123456789abcdef0123456789abcdef","mac":"aa-bb-cc-dd-ee-ff",
                "status":"applied","required":true,"fetcher_version":"satchel-fetch/0.1.0",
                "server":"127.0.0.1:8443","phases":[{"name":"discover","status":"ok","duration_ms":3}],
                "serials":{"site/dc1":3},"duration_ms":40}"#,
            mac(),
        )
        .expect("ok");
        assert_eq!(r.status, "applied");
        assert_eq!(whole["phases"][0]["name"], "discover");
        assert_eq!(whole["duration_ms"], 40);
    }

    #[test]
    fn hostile_reports_are_refused() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let many: String = (0..40)
            .map(|i| format!("\"p{i}\":1"))
            .collect::<Vec<_>>()
            .join(",");
        let many = format!(r#"{{"status":"ok","timings_ms":{{{many}}}}}"#);
        let cases: Vec<String> = vec![
            "".into(),
            "null".into(),
            "[]".into(),
            "{".into(),
            "{}".into(),
            r#"{"status":""}"#.into(),
            r#"{"status":5}"#.into(),
            r#"{"status":"ok ok"}"#.into(),
            r#"{"status":"ok\n"}"#.into(),
            format!(r#"{{"status":"{}"}}"#, "a".repeat(200)),
            r#"{"status":"ok","mac":"aa-bb-cc-dd-ee-00"}"#.into(),
            r#"{"status":"ok","report_id":"../x"}"#.into(),
            r#"{"status":"ok","serials":{"host/AA":1}}"#.into(),
            r#"{"status":"ok","serials":{"site/dc1":-1}}"#.into(),
            r#"{"status":"ok","serials":{"site/dc1":1.5}}"#.into(),
            r#"{"status":"ok","serials":[1]}"#.into(),
            r#"{"status":"ok","timings_ms":{"a b":1}}"#.into(),
            r#"{"status":"ok","fetcher_version":"1 2"}"#.into(),
            r#"{"status":"ok","fetcher_version":"/"}"#.into(),
            r#"{"status":"ok","error":7}"#.into(),
            r#"{"status":"ok","status":"failed"}"#.into(),
            deep,
            many,
            "\u{feff}{\"status\":\"ok\"}".into(),
        ];
        for c in &cases {
            assert!(
                parse_report(c.as_bytes(), mac()).is_err(),
                "{}",
                c.chars().take(60).collect::<String>()
            );
        }
        assert!(parse_report(&[0xff, 0xfe], mac()).is_err());
    }

    #[test]
    fn long_errors_are_truncated_on_a_char_boundary() {
        let body = format!(r#"{{"status":"failed","error":"{}"}}"#, "é".repeat(5000));
        let (r, whole) = parse_report(body.as_bytes(), mac()).expect("ok");
        assert!(r.error.expect("error").len() <= MAX_REPORT_ERROR);
        assert!(whole["error"].as_str().expect("error").len() <= MAX_REPORT_ERROR);
    }
}
