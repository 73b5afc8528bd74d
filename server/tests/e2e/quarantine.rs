//! The upload quarantine: limits, rate per source, conflict marking,
//! expiry, admin list/download/delete; reports and inventory.

use std::time::Duration;

use bytes::Bytes;
use satchel_names::Target;
use sha2::{Digest, Sha256};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_limits_rate_conflict_and_expiry() {
    let w = World::new();
    let data = w.path().join("data");
    let limits = "max_upload_bytes = 1000\nanonymous_max_pending_uploads_per_mac = 2\n\
         max_pending_uploads_per_mac = 2\nanonymous_max_quarantine_bytes = 2500\n\
         max_quarantine_bytes = 5000\n\
         upload_burst_per_source = 3\nupload_per_minute_per_source = 1\n";
    // Nothing expires while the limits are checked, however slow the
    // machine: the expiry is shown at the end, by a restart with a short one.
    let srv = Server::start(&w.config(&data, &format!("{limits}upload_expiry_secs = 3600\n")));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let src = |n: u8| Client::with_source(&w, srv.addr, None, n);
    let m1 = mac(1);

    // A flood from one source: the 4th is rate limited with Retry-After.
    let flood = src(10);
    for i in 0..3 {
        let (st, _, b) = flood
            .request("POST", &format!("/v1/uploads/{}", mac(20 + i)), vec![i; 10])
            .await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    }
    let (st, h, b) = flood
        .request("POST", &format!("/v1/uploads/{m1}"), vec![1; 10])
        .await;
    assert_eq!((st, error_code(&b).as_str()), (429, "rate_limited"));
    let retry: u64 = h["retry-after"]
        .to_str()
        .expect("ra")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry), "{retry}");
    // Another source is not affected.
    let other = src(11);
    let (st, _, b) = other
        .request("POST", &format!("/v1/uploads/{m1}"), vec![7; 100])
        .await;
    assert_eq!(st, 201);
    let first: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(first["state"], "pending");
    assert_eq!(first["source"], "127.0.0.11");
    assert_eq!(first["sha256"], hex::encode(Sha256::digest([7u8; 100])));

    // Too big for one upload: 413.
    let (st, _, _) = src(12)
        .request("POST", &format!("/v1/uploads/{m1}"), vec![0; 1001])
        .await;
    assert_eq!(st, 413);
    // Pending per MAC: the third for one MAC is refused.
    assert_eq!(
        src(13)
            .status("POST", &format!("/v1/uploads/{m1}"), vec![1; 10])
            .await,
        201
    );
    let (st, _, b) = src(14)
        .request("POST", &format!("/v1/uploads/{m1}"), vec![1; 10])
        .await;
    assert_eq!((st, error_code(&b).as_str()), (429, "too_many_pending"));
    // Total bytes: 507.
    assert_eq!(
        src(15)
            .status("POST", &format!("/v1/uploads/{}", mac(30)), vec![1; 1000])
            .await,
        201
    );
    assert_eq!(
        src(16)
            .status("POST", &format!("/v1/uploads/{}", mac(31)), vec![1; 1000])
            .await,
        201
    );
    let (st, _, b) = src(17)
        .request("POST", &format!("/v1/uploads/{}", mac(32)), vec![1; 1000])
        .await;
    assert_eq!((st, error_code(&b).as_str()), (507, "quarantine_full"));

    // A host certificate uploads for its own MAC, with its identity recorded.
    let t = Target::Host(mac(2));
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t}"), w.bundle(&t, None, 1))
            .await,
        201
    );
    let host2 = Client::with_source(&w, srv.addr, Some(&w.host(2, None)), 18);
    let (st, _, b) = host2
        .request("POST", &format!("/v1/uploads/{}", mac(2)), vec![2; 10])
        .await;
    assert_eq!(st, 201);
    let conflict: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(
        conflict["state"], "conflict",
        "the MAC already has a bundle"
    );
    assert_eq!(conflict["cert_scope"], format!("host/{}", mac(2)));
    assert_eq!(conflict["cert_binds_mac"], true);

    // Anonymous uploads filled their share of the quarantine and of m1's
    // pending slots; a node's own capture for m1 still gets in.
    let host1 = Client::with_source(&w, srv.addr, Some(&w.host(1, None)), 19);
    let (st, _, b) = host1
        .request("POST", &format!("/v1/uploads/{m1}"), vec![3; 1000])
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    // A site certificate proves the site, not the MAC.
    let site = Client::with_source(&w, srv.addr, Some(&w.site_cert("dc1")), 20);
    let (st, _, b) = site
        .request("POST", &format!("/v1/uploads/{}", mac(40)), vec![4; 10])
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    let by_site: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(by_site["cert_scope"], "site/dc1");
    assert_eq!(by_site["cert_binds_mac"], false);

    // Admin: list, download, delete.
    let list = admin.json("GET", "/v1/uploads").await;
    assert_eq!(list["uploads"].as_array().expect("uploads").len(), 10);
    let id = first["id"].as_str().expect("id");
    let (st, h, body) = admin
        .request("GET", &format!("/v1/uploads/{id}"), Bytes::new())
        .await;
    assert_eq!((st, body.as_ref()), (200, &[7u8; 100][..]));
    assert_eq!(h["x-satchel-mac"], m1.to_string());
    assert_eq!(
        admin
            .status("DELETE", &format!("/v1/uploads/{id}"), Bytes::new())
            .await,
        204
    );
    assert_eq!(
        admin
            .status("GET", &format!("/v1/uploads/{id}"), Bytes::new())
            .await,
        404
    );
    let text = srv.metrics_text().await;
    assert!(
        text.contains("satchel_uploads_refused_total{reason=\"rate\"} 1"),
        "{text}"
    );

    // Pending expiry: the same store under a server that keeps pending
    // uploads 3 s; its sweep removes every one.
    drop(srv);
    let srv = Server::start(&w.config(&data, &format!("{limits}upload_expiry_secs = 3\n")));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    eventually(
        "the pending uploads to expire",
        Duration::from_secs(60),
        || async {
            let list = admin.json("GET", "/v1/uploads").await;
            list["uploads"].as_array().expect("uploads").is_empty()
        },
    )
    .await;
    // The sweep sets the gauge after its expiry pass: wait for it too.
    eventually(
        "the quarantine gauge to read 0",
        Duration::from_secs(30),
        || async { srv.metric("satchel_quarantine_uploads").await == Some(0.0) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_feed_the_inventory() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let host = Client::new(&w, srv.addr, Some(&w.host(1, Some("dc1"))));
    let m = mac(1);
    let url = format!("/v1/reports/{m}");
    let (st, _, b) = host
        .request("POST", &url, r#"{"report_id":"r1","status":"failed","error":"no bundle","fetcher_version":"0.1.0","timings_ms":{"fetch":12}}"#)
        .await;
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(v["report_id"], "r1");
    let (st, _, b) = host
        .request(
            "POST",
            &url,
            format!(r#"{{"status":"ok","serials":{{"host/{m}":3,"site/dc1":2}}}}"#),
        )
        .await;
    assert_eq!(st, 202);
    let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert!(v["report_id"].as_str().expect("id").starts_with("srv-"));
    for bad in [
        "",
        "{",
        "[]",
        r#"{"status":"ok","mac":"02-00-00-00-00-09"}"#,
    ] {
        let (st, _, b) = host.request("POST", &url, bad).await;
        assert_eq!((st, error_code(&b).as_str()), (400, "bad_report"), "{bad}");
    }
    let (st, _, _) = host.request("POST", &url, vec![b' '; 70 * 1024]).await;
    assert_eq!(st, 413);
    let nodes = admin.json("GET", "/v1/nodes").await;
    let n = &nodes["nodes"][0];
    assert_eq!(n["mac"], m.to_string());
    assert_eq!(n["last_status"], "ok");
    assert_eq!(n["serials"][format!("host/{m}")], 3);
    assert_eq!(n["last_error"], serde_json::Value::Null);
    assert_eq!(n["reports"], 2);
}
