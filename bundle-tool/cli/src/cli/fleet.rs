//! Reading the fleet from the server (admin certificate): `nodes`,
//! `bundles`, `audit-log` and `history`. Each prints a table, or the
//! server's JSON with `--json`.

use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::uploads::ServerArgs;
use super::{print_json, UsageError};
use satchel_names::{SiteName, Target};

/// `nodes`: the inventory.
#[derive(Debug, clap::Args)]
pub struct NodesArgs {
    /// Only nodes of this site.
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// Only nodes whose applied payload differs from what is published (they need a reboot).
    #[arg(long)]
    pub stale: bool,
    /// Only nodes whose last boot failed.
    #[arg(long)]
    pub failed: bool,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `bundles`: what is published.
#[derive(Debug, clap::Args)]
pub struct BundlesArgs {
    /// Mark bundles that expire within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub expiring_days: u32,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `audit-log`: the server's audit lines.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only lines after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub since: u64,
    /// One log: admin, security or fetch (default: all, merged).
    #[arg(long, value_name = "LOG", value_parser = ["admin", "security", "fetch"])]
    pub log: Option<String>,
    /// Most lines (1-1000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `history TARGET`: the kept versions of one target.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// `host/<mac>` or `site/<name>`.
    pub target: String,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// GETs `path` as JSON.
pub fn get_json(server: &ServerArgs, path: &str, what: &str) -> anyhow::Result<Value> {
    let r = server.client()?.request(Method::GET, path, None)?;
    if !r.is_success() {
        anyhow::bail!(
            "cannot read {what}: the server answered {}: {}",
            r.status,
            r.error_text()
        );
    }
    serde_json::from_slice(&r.body).with_context(|| format!("the server's {what} is not JSON"))
}

/// A `host/<mac>` or `site/<name>` argument, in canonical form.
pub fn parse_target(s: &str) -> anyhow::Result<Target> {
    s.parse::<Target>().map_err(|e| {
        UsageError(format!(
            "{s:?} is not a target (host/<mac> or site/<name>): {e}"
        ))
        .into()
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns.
fn table(head: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Runs `nodes`.
pub fn nodes(a: &NodesArgs) -> anyhow::Result<ExitCode> {
    let site = match &a.site {
        Some(s) => Some(
            SiteName::parse(s)
                .map_err(|e| UsageError(e.to_string()))?
                .to_string(),
        ),
        None => None,
    };
    let v = get_json(&a.server, "/v1/nodes", "the inventory")?;
    let keep = |n: &Value| {
        (!a.stale || n["stale"] == true)
            && (!a.failed || n["failed"] == true)
            && site.as_ref().is_none_or(|s| n["site"].as_str() == Some(s))
    };
    let nodes: Vec<Value> = v["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(keep)
        .collect();
    // Never-seen nodes are neither stale nor failed: they have not booted.
    let never: Vec<Value> = if a.stale || a.failed {
        Vec::new()
    } else {
        v["never_seen"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| site.as_ref().is_none_or(|s| n["site"].as_str() == Some(s)))
            .collect()
    };
    if super::json_output() {
        print_json(&json!({ "nodes": nodes, "never_seen": never }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let applied = n["serials"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(t, s)| format!("{t}#{s}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let result = match n["last_error"].as_str() {
                Some(e) if n["failed"] == true => format!("{}: {e}", text(&n["last_status"])),
                _ => text(&n["last_status"]),
            };
            let state = match (n["failed"] == true, n["stale"] == true) {
                (true, _) => "FAILED".to_string(),
                (false, true) => format!(
                    "STALE ({})",
                    n["stale_targets"]
                        .as_array()
                        .map(|t| t.iter().map(text).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                ),
                _ => "current".into(),
            };
            vec![
                text(&n["mac"]),
                text(&n["site"]),
                text(&n["last_seen"]),
                applied,
                state,
                result,
            ]
        })
        .collect();
    rows.extend(never.iter().map(|n| {
        vec![
            text(&n["mac"]),
            text(&n["site"]),
            "never".into(),
            String::new(),
            "never seen".into(),
            String::new(),
        ]
    }));
    table(
        &[
            "MAC",
            "SITE",
            "LAST SEEN",
            "APPLIED",
            "STATE",
            "LAST RESULT",
        ],
        &rows,
    );
    eprintln!("{} node(s), {} never seen", nodes.len(), never.len());
    Ok(ExitCode::SUCCESS)
}

/// Runs `bundles`.
pub fn bundles(a: &BundlesArgs) -> anyhow::Result<ExitCode> {
    let v = get_json(&a.server, "/v1/bundles", "the bundle list")?;
    if super::json_output() {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let soon = OffsetDateTime::now_utc() + time::Duration::days(i64::from(a.expiring_days));
    let rows: Vec<Vec<String>> = v["bundles"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let expires = text(&b["expires"]);
            let expiring =
                OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|e| e <= soon);
            vec![
                text(&b["target"]),
                text(&b["serial"]),
                text(&b["size"]),
                text(&b["signer"]),
                format!("{} by {}", text(&b["published"]), text(&b["published_by"])),
                if expiring {
                    format!("{expires}  EXPIRES WITHIN {} DAYS", a.expiring_days)
                } else {
                    expires
                },
            ]
        })
        .collect();
    table(
        &["TARGET", "SERIAL", "SIZE", "SIGNER", "PUBLISHED", "EXPIRES"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `audit-log`.
pub fn audit(a: &AuditArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/audit?after={}&limit={}", a.since, a.limit);
    if let Some(l) = &a.log {
        path.push_str(&format!("&log={l}"));
    }
    let v = get_json(&a.server, &path, "the audit log")?;
    if super::json_output() {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = v["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            vec![
                text(&e["seq"]),
                text(&e["time"]),
                text(&e["log"]),
                text(&e["who"]),
                text(&e["source"]),
                text(&e["status"]),
                text(&e["what"]),
            ]
        })
        .collect();
    table(
        &["SEQ", "TIME", "LOG", "WHO", "SOURCE", "STATUS", "WHAT"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `history`.
pub fn history(a: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let t = parse_target(&a.target)?;
    let v = get_json(
        &a.server,
        &format!("/v1/bundles/{t}/history"),
        "the history",
    )?;
    if super::json_output() {
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    let current = v["current_serial"].as_u64();
    let rows: Vec<Vec<String>> = v["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let mark = if b["serial"].as_u64() == current {
                "current"
            } else {
                ""
            };
            vec![
                text(&b["serial"]),
                format!("{} by {}", text(&b["published"]), text(&b["published_by"])),
                text(&b["expires"]),
                text(&b["payload_sha256"]).chars().take(16).collect(),
                mark.into(),
            ]
        })
        .collect();
    table(&["SERIAL", "PUBLISHED", "EXPIRES", "PAYLOAD", ""], &rows);
    eprintln!(
        "highest serial ever published: {}",
        text(&v["highest_serial"])
    );
    Ok(ExitCode::SUCCESS)
}
