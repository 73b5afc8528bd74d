//! Rendering time of the status page for a fleet (not a test): 5,000 nodes
//! in mixed states, 300 bundles, 50 uploads, rendered whole as `/ui/`
//! does. Prints the median and worst of the runs.
//!
//!     cargo bench -p satchel-server --bench ui [-- NODES RUNS]

use std::time::Instant;

use satchel_names::Mac;
use satchel_server::routes::reports::NodeView;
use satchel_server::store::{BundleMeta, NodeRecord, ReportSummary, UploadMeta, UploadState};
use satchel_server::ui::{render, BundleRow, Filters, Health, Snapshot};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(5000);
    let runs = args.get(1).copied().unwrap_or(21);
    let snap = snapshot(nodes);
    let filters = Filters::parse(None).expect("filters");
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let html = render(&snap, &filters, false).expect("render");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = html.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "status page, {nodes} nodes: median {:.1} ms, worst {:.1} ms over {runs} runs, {bytes} bytes",
        times[runs / 2],
        times[runs - 1]
    );
}

fn snapshot(n: usize) -> Snapshot {
    let mac = |i: usize| Mac::from_octets([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    let nodes = (0..n)
        .map(|i| {
            let failed = i % 17 == 0;
            let stale = i % 5 == 0;
            let m = mac(i);
            NodeView {
                record: NodeRecord {
                    mac: m,
                    last_seen: "2026-12-01T10:00:00Z".into(),
                    last_status: if failed { "failed" } else { "applied" }.into(),
                    serials: serde_json::json!({ format!("host/{m}"): 7, "site/dc1": 3 }),
                    payloads: serde_json::Value::Null,
                    last_error: failed
                        .then(|| format!("host/{m} refused: signature by an untrusted key")),
                    last_refused: failed.then(|| format!("host/{m}")),
                    fetcher_version: Some("satchel-fetch/0.1.0".into()),
                    last_report_id: "r".into(),
                    reports: 3,
                    recent: (0..3)
                        .map(|k| ReportSummary {
                            received: format!("2026-12-01T0{k}:00:00Z"),
                            status: "applied".into(),
                            error: None,
                            report_id: format!("r{k}"),
                        })
                        .collect(),
                },
                site: Some(format!("dc{}", i % 4)),
                stale_targets: if stale {
                    vec!["site/dc1".into()]
                } else {
                    vec![]
                },
                stale,
                failed,
            }
        })
        .collect();
    let bundles = (0..300)
        .map(|i| BundleRow {
            meta: BundleMeta {
                target: format!("host/{}", mac(i)),
                serial: 7,
                site: None,
                sha256: "0".repeat(64),
                size: 24_000,
                signer: "0011223344556677".into(),
                expires: "2027-01-01T00:00:00Z".into(),
                published: "2026-12-01T00:00:00Z".into(),
                published_by: "admin/alice".into(),
                payload_sha256: "1".repeat(64),
            },
            expiring_soon: i % 10 == 0,
        })
        .collect();
    let uploads = (0..50)
        .map(|i| UploadMeta {
            id: format!("{i:016x}"),
            mac: mac(i),
            received: "2026-12-01T00:00:00Z".into(),
            received_unix: 0,
            source: "127.0.0.1".into(),
            cert_scope: Some(format!("host/{}", mac(i))),
            cert_fingerprint: None,
            cert_binds_mac: true,
            size: 4096,
            sha256: "2".repeat(64),
            state: UploadState::Pending,
        })
        .collect();
    Snapshot {
        server: "boot1.example.net".into(),
        generated: "2026-12-01T10:00:00Z".into(),
        health: Health {
            crl_number: Some(4),
            crl_stale: false,
            crl_next_update: Some("2026-12-08T00:00:00Z".into()),
            store_ok: true,
            store: "ok".into(),
            forward_backlog: 0,
            quarantine_uploads: 50,
            quarantine_bytes: 204_800,
        },
        nodes,
        never_seen: Vec::new(),
        bundles,
        uploads,
        refresh_secs: 15,
        expiring_days: 7,
        page_nodes: 5000,
    }
}
