use super::*;
use crate::store::{NodeRecord, UploadState};
use satchel_names::Mac;

fn node(n: u16, site: Option<&str>, stale: bool, failed: bool, error: Option<&str>) -> NodeView {
    let mac = Mac::from_octets([2, 0, 0, 0, (n >> 8) as u8, n as u8]);
    NodeView {
        record: NodeRecord {
            mac,
            last_seen: "2026-12-01T10:00:00Z".into(),
            last_status: if failed { "failed" } else { "applied" }.into(),
            serials: serde_json::json!({ format!("host/{mac}"): 3 }),
            payloads: serde_json::Value::Null,
            last_error: error.map(str::to_string),
            last_refused: None,
            fetcher_version: None,
            last_report_id: "r".into(),
            reports: 1,
            recent: Vec::new(),
        },
        site: site.map(str::to_string),
        stale_targets: if stale {
            vec!["site/dc1".into()]
        } else {
            vec![]
        },
        stale,
        failed,
    }
}

fn snapshot(nodes: Vec<NodeView>) -> Snapshot {
    Snapshot {
        server: "boot1.example.net".into(),
        generated: "2026-12-01T10:00:00Z".into(),
        health: Health {
            crl_number: Some(4),
            crl_stale: false,
            crl_next_update: None,
            store_ok: true,
            store: "ok".into(),
            forward_backlog: 0,
            quarantine_uploads: 1,
            quarantine_bytes: 10,
        },
        nodes,
        never_seen: Vec::new(),
        bundles: Vec::new(),
        uploads: vec![UploadMeta {
            id: "00ab".into(),
            mac: Mac::from_octets([2, 0, 0, 0, 0, 9]),
            received: "2026-12-01T09:00:00Z".into(),
            received_unix: 0,
            source: "127.0.0.1".into(),
            cert_scope: Some("site/dc1".into()),
            cert_fingerprint: None,
            cert_binds_mac: false,
            size: 10,
            sha256: "00".into(),
            state: UploadState::Pending,
        }],
        refresh_secs: 15,
        expiring_days: 7,
        page_nodes: 2,
    }
}

#[test]
fn every_value_is_escaped() {
    let evil = "<script>alert(1)</script>\"'&";
    let mut failed = node(2, None, false, true, None);
    failed.record.serials = serde_json::Value::Null;
    let snap = snapshot(vec![node(1, Some("dc1"), false, true, Some(evil)), failed]);
    let html = render(&snap, &Filters::parse(None).expect("filters"), false).expect("render");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    assert!(html.contains("does not bind the MAC"));
    assert!(html.starts_with("<!doctype html>"));
    let fragment = render(&snap, &Filters::default(), true).expect("render");
    assert!(!fragment.contains("<html"));
    assert!(fragment.contains("02-00-00-00-00-01"));
}

#[test]
fn filters_pick_nodes_and_pages_split_them() {
    let snap = snapshot(vec![
        node(1, Some("dc1"), true, false, None),
        node(2, Some("dc2"), false, true, Some("bad signature")),
        node(3, Some("dc1"), false, false, None),
        node(4, Some("dc1"), true, true, None),
        node(5, None, false, false, None),
    ]);
    let shown = |q: &str| {
        let html = render(&snap, &Filters::parse(Some(q)).expect("filters"), true).expect("render");
        (1..=5u16)
            .filter(|n| html.contains(&format!("02-00-00-00-00-0{n}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(shown("stale=1"), [1, 4]);
    assert_eq!(shown("failed=1"), [2, 4]);
    assert_eq!(shown("site=dc1&stale=1&failed=1"), [4]);
    // Two a page: page 2 of 3, with links that keep the filters.
    assert_eq!(shown(""), [1, 2]);
    assert_eq!(shown("page=2"), [3, 4]);
    assert_eq!(shown("page=9"), [5]);
    let html = render(&snap, &Filters::parse(Some("site=dc1")).expect("f"), true).expect("r");
    assert!(html.contains("Page 1 of 2"), "{html}");
    assert!(html.contains("?site=dc1&amp;page=2"), "{html}");
}

#[test]
fn hostile_queries_are_refused() {
    for q in [
        "site=DC1",
        "site=%3Cscript%3E",
        "site=a/b",
        "stale=yes",
        "failed=2",
        "page=0",
        "page=-1",
        "page=x",
        "page=99999999999999999999999",
        "unknown=1",
    ] {
        assert!(Filters::parse(Some(q)).is_err(), "{q}");
    }
    let f = Filters::parse(Some("site=dc1&stale=1&failed=0&page=3")).expect("ok");
    assert_eq!(
        (f.site.as_deref(), f.stale, f.failed, f.page),
        (Some("dc1"), true, false, 3)
    );
}
