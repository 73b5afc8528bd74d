//! Node reports and the inventory.
//!
//! A report body is a JSON object:
//! `{"report_id"?: str, "mac"?: str, "status": str, "serials"?: {target: u64},
//!   "payloads"?: {target: sha256-hex}, "timings_ms"?: {phase: u64},
//!   "error"?: str|null, "fetcher_version"?: str}`
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
use crate::store::{BundleMeta, NodeRecord, StoredReport};

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
    /// Payload sha256 (64 lowercase hex) applied per target.
    #[serde(default)]
    pub payloads: BTreeMap<String, String>,
    /// Milliseconds per phase.
    #[serde(default)]
    pub timings_ms: BTreeMap<String, u64>,
    /// Error text of a failed boot.
    #[serde(default)]
    pub error: Option<String>,
    /// The target (`host/<mac>`, `site/<name>`) whose bundle was refused
    /// or failed, making the whole boot apply nothing.
    #[serde(default)]
    pub refused: Option<String>,
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
    if r.serials.len() > MAX_REPORT_MAP_ENTRIES
        || r.timings_ms.len() > MAX_REPORT_MAP_ENTRIES
        || r.payloads.len() > MAX_REPORT_MAP_ENTRIES
    {
        return Err(bad(format!(
            "serials, payloads and timings_ms hold at most {MAX_REPORT_MAP_ENTRIES} entries"
        )));
    }
    let canonical_target =
        |k: &String| k.parse::<Target>().map(|t| t.to_string()).as_deref() == Ok(k.as_str());
    if !r
        .serials
        .keys()
        .chain(r.payloads.keys())
        .all(canonical_target)
    {
        return Err(bad(
            "serials and payloads keys are host/<mac> or site/<name>".into(),
        ));
    }
    if !r.refused.iter().all(canonical_target) {
        return Err(bad("refused is host/<mac> or site/<name>".into()));
    }
    let sha256_hex =
        |v: &String| v.len() == 64 && v.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !r.payloads.values().all(sha256_hex) {
        return Err(bad("payloads values are sha256 in lowercase hex".into()));
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
    let depth = app
        .store
        .clone()
        .report_record_later(stored, forward)
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

/// One node of the inventory with what it runs against what is published.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeView {
    /// The stored record.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// The node's site: from its host bundle's signed manifest, else the
    /// one site bundle it applied.
    pub site: Option<String>,
    /// The targets whose published payload differs from what the node
    /// applied at its last boot (or published and not applied, or applied
    /// and since deleted): it needs a reboot to run what is published.
    pub stale_targets: Vec<String>,
    /// Whether `stale_targets` is not empty.
    pub stale: bool,
    /// Whether its last boot failed.
    pub failed: bool,
}

/// A published host bundle whose node never reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NeverSeen {
    /// The node.
    pub mac: Mac,
    /// The site its host bundle names.
    pub site: Option<String>,
    /// The published serial.
    pub serial: u64,
}

/// Joins the inventory with the published bundles (pure): each node's
/// staleness, and the host bundles no node has reported for.
pub fn inventory(
    records: Vec<NodeRecord>,
    bundles: &[BundleMeta],
) -> (Vec<NodeView>, Vec<NeverSeen>) {
    let published: BTreeMap<&str, &BundleMeta> =
        bundles.iter().map(|b| (b.target.as_str(), b)).collect();
    let text_map = |v: &serde_json::Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seen = std::collections::BTreeSet::new();
    let views = records
        .into_iter()
        .map(|record| {
            let host = Target::Host(record.mac).to_string();
            seen.insert(host.clone());
            let applied = text_map(&record.payloads);
            let host_site = published
                .get(host.as_str())
                .and_then(|b| b.site.as_ref().map(|s| s.to_string()));
            let applied_site = applied
                .keys()
                .find_map(|k| k.strip_prefix("site/").map(str::to_string));
            let site = host_site.or(applied_site);
            // What this node should run: its host bundle and its site's.
            let mut should: Vec<String> = Vec::new();
            if published.contains_key(host.as_str()) {
                should.push(host.clone());
            }
            if let Some(s) = &site {
                let t = format!("site/{s}");
                if published.contains_key(t.as_str()) {
                    should.push(t);
                }
            }
            let mut stale: Vec<String> = should
                .iter()
                .filter(|t| {
                    published.get(t.as_str()).map(|b| b.payload_sha256.as_str())
                        != applied.get(t.as_str()).map(String::as_str)
                })
                .cloned()
                .collect();
            stale.extend(
                applied
                    .keys()
                    .filter(|t| !published.contains_key(t.as_str()))
                    .cloned(),
            );
            stale.sort();
            stale.dedup();
            let failed = record.last_status != "applied" && record.last_status != "ok";
            NodeView {
                site,
                stale: !stale.is_empty(),
                stale_targets: stale,
                failed,
                record,
            }
        })
        .collect();
    let never = bundles
        .iter()
        .filter(|b| b.target.starts_with("host/") && !seen.contains(&b.target))
        .filter_map(|b| {
            let mac = b
                .target
                .strip_prefix("host/")
                .and_then(|m| Mac::parse(m).ok())?;
            Some(NeverSeen {
                mac,
                site: b.site.as_ref().map(|s| s.to_string()),
                serial: b.serial,
            })
        })
        .collect();
    (views, never)
}

/// `GET /v1/nodes`: the inventory, each node with its staleness, and the
/// host bundles whose nodes never reported.
pub async fn nodes(app: &Arc<App>) -> Result<Resp, ApiError> {
    let (records, bundles) = blocking(app, |s| Ok((s.nodes()?, s.bundle_list()?))).await?;
    let (nodes, never_seen) = inventory(records, &bundles);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "nodes": nodes, "never_seen": never_seen }),
    ))
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
            r#"{"status":"failed","refused":"host/AA-BB-CC-DD-EE-FF"}"#.into(),
            r#"{"status":"failed","refused":"../x"}"#.into(),
            r#"{"status":"failed","refused":7}"#.into(),
            r#"{"status":"failed","refused":"site/dc1","refused":"site/dc2"}"#.into(),
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

    fn record(n: u8, status: &str, payloads: serde_json::Value) -> NodeRecord {
        NodeRecord {
            mac: Mac::from_octets([2, 0, 0, 0, 0, n]),
            last_seen: "2026-01-01T00:00:00Z".into(),
            last_status: status.into(),
            serials: serde_json::Value::Null,
            payloads,
            last_error: None,
            last_refused: None,
            fetcher_version: None,
            last_report_id: "r".into(),
            reports: 1,
            recent: Vec::new(),
        }
    }

    fn bundle(target: &str, site: Option<&str>, payload: char) -> BundleMeta {
        BundleMeta {
            target: target.into(),
            serial: 3,
            site: site.map(|s| satchel_names::SiteName::parse(s).expect("site")),
            sha256: "0".repeat(64),
            size: 1,
            signer: "k".into(),
            expires: String::new(),
            published: String::new(),
            published_by: "admin/alice".into(),
            payload_sha256: payload.to_string().repeat(64),
        }
    }

    #[test]
    fn staleness_compares_applied_payloads_with_published_ones() {
        let h = |n: u8| format!("host/02-00-00-00-00-0{n}");
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let bundles = [
            bundle(&h(1), Some("dc1"), 'a'),
            bundle(&h(2), Some("dc1"), 'a'),
            bundle(&h(3), None, 'a'),
            bundle(&h(4), None, 'a'),
            bundle("site/dc1", None, 'b'),
        ];
        let (views, never) = inventory(
            vec![
                // Runs both current payloads.
                record(1, "applied", json!({ h(1): a, "site/dc1": b })),
                // Runs an old site payload.
                record(2, "applied", json!({ h(2): a, "site/dc1": a })),
                // Its last boot failed: nothing applied.
                record(3, "failed", serde_json::Value::Null),
                // Runs a site bundle since deleted, and no host bundle of its own.
                record(5, "applied", json!({ "site/old": b })),
            ],
            &bundles,
        );
        let got: Vec<_> = views
            .iter()
            .map(|v| (v.stale_targets.clone(), v.failed, v.site.clone()))
            .collect();
        let dc1 = Some("dc1".to_string());
        assert_eq!(
            got,
            [
                (vec![], false, dc1.clone()),
                (vec!["site/dc1".to_string()], false, dc1),
                (vec![h(3)], true, None),
                (vec!["site/old".to_string()], false, Some("old".to_string())),
            ]
        );
        assert!(views[1].stale && !views[0].stale);
        assert_eq!(never.len(), 1);
        assert_eq!(never[0].mac.to_string(), "02-00-00-00-00-04");
    }

    #[test]
    fn hostile_payload_maps_are_refused() {
        let m = mac();
        for bad in [
            r#"{"status":"ok","payloads":{"host/AA-BB-CC-DD-EE-FF":"aa"}}"#,
            r#"{"status":"ok","payloads":{"host/aa-bb-cc-dd-ee-ff":"AB"}}"#,
            r#"{"status":"ok","payloads":{"site/dc1":"zz"}}"#,
            r#"{"status":"ok","payloads":{"site/dc1":7}}"#,
            r#"{"status":"ok","payloads":["x"]}"#,
        ] {
            assert!(parse_report(bad.as_bytes(), m).is_err(), "{bad}");
        }
        let too_many: serde_json::Map<String, serde_json::Value> = (0..33)
            .map(|i| (format!("site/s{i}"), json!("a".repeat(64))))
            .collect();
        let body = json!({ "status": "ok", "payloads": too_many }).to_string();
        assert!(parse_report(body.as_bytes(), m).is_err());
        let good = format!(
            r#"{{"status":"ok","payloads":{{"site/dc1":"{}"}}}}"#,
            "0".repeat(64)
        );
        assert!(parse_report(good.as_bytes(), m).is_ok());
    }
}
