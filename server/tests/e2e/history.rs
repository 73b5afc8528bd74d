//! Bundle history for admins (the last `bundle_history` versions, one by
//! serial), kept across DELETE, never reachable by nodes; and the
//! inventory's staleness against what is published.

use bytes::Bytes;
use satchel_names::Target;
use sha2::{Digest, Sha256};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_the_last_versions_and_nodes_see_only_the_current_one() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, "bundle_history = 3\n"));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let t = Target::Host(mac(1));
    let url = format!("/v1/bundles/{t}");
    let versions: Vec<Vec<u8>> = (1..=5).map(|n| w.bundle(&t, None, n)).collect();
    for v in &versions {
        assert_eq!(admin.status("PUT", &url, v.clone()).await, 201);
    }
    // The last three, newest first.
    let h = admin.json("GET", &format!("{url}/history")).await;
    let serials: Vec<u64> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["serial"].as_u64().expect("serial"))
        .collect();
    assert_eq!(serials, [5, 4, 3], "{h}");
    assert_eq!(h["current_serial"], 5);
    assert_eq!(h["highest_serial"], 5);
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    assert_eq!(h["versions"][1]["sha256"], sha(&versions[3]));
    assert_eq!(
        h["versions"][1]["payload_sha256"].as_str().map(str::len),
        Some(64)
    );
    // One version's exact bytes; a version beyond the history is gone.
    let (st, hd, body) = admin
        .request("GET", &format!("{url}/history/3"), Bytes::new())
        .await;
    assert_eq!((st, &body[..]), (200, &versions[2][..]));
    assert_eq!(hd["x-satchel-serial"], "3");
    let (st, _, b) = admin
        .request("GET", &format!("{url}/history/2"), Bytes::new())
        .await;
    assert_eq!((st, error_code(&b).as_str()), (404, "not_found"));

    // Nodes never reach the history, not even their own.
    let node = Client::new(&w, srv.addr, Some(&w.host(1, None)));
    assert_eq!(
        node.status("GET", &format!("{url}/history"), Bytes::new())
            .await,
        403
    );
    assert_eq!(
        node.status("GET", &format!("{url}/history/5"), Bytes::new())
            .await,
        403
    );
    let anon = Client::new(&w, srv.addr, None);
    assert_eq!(
        anon.status("GET", &format!("{url}/history"), Bytes::new())
            .await,
        401
    );

    // DELETE keeps the history (rollback after a bad publish stays possible).
    assert_eq!(admin.status("DELETE", &url, Bytes::new()).await, 204);
    let h = admin.json("GET", &format!("{url}/history")).await;
    assert_eq!(h["current_serial"], serde_json::Value::Null);
    assert_eq!(h["versions"].as_array().map(Vec::len), Some(3));
    let never = format!("/v1/bundles/{}/history", Target::Host(mac(9)));
    assert_eq!(admin.status("GET", &never, Bytes::new()).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_says_which_nodes_are_stale_failed_or_never_seen() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let (t1, t2) = (Target::Host(mac(1)), Target::Host(mac(2)));
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t1}"), w.bundle(&t1, None, 1))
            .await,
        201
    );
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t2}"), w.bundle(&t2, None, 1))
            .await,
        201
    );
    let payload_of = |v: &serde_json::Value, t: &Target| {
        v["versions"][0]["payload_sha256"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{t}: {v}"))
    };
    let p1 = payload_of(
        &admin
            .json("GET", &format!("/v1/bundles/{t1}/history"))
            .await,
        &t1,
    );
    // Node 1 reports it applied serial 1's payload.
    let node1 = Client::new(&w, srv.addr, Some(&w.host(1, None)));
    let report =
        format!(r#"{{"status":"applied","serials":{{"{t1}":1}},"payloads":{{"{t1}":"{p1}"}}}}"#);
    assert_eq!(
        node1
            .status("POST", &format!("/v1/reports/{}", mac(1)), report)
            .await,
        202
    );
    let inv = admin.json("GET", "/v1/nodes").await;
    assert_eq!(inv["nodes"][0]["stale"], false, "{inv}");
    assert_eq!(inv["nodes"][0]["failed"], false, "{inv}");
    assert_eq!(inv["never_seen"][0]["mac"], mac(2).to_string(), "{inv}");
    // A republish makes it stale; a failed boot shows as failed.
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t1}"), w.bundle(&t1, None, 2))
            .await,
        201
    );
    let inv = admin.json("GET", "/v1/nodes").await;
    assert_eq!(inv["nodes"][0]["stale"], true, "{inv}");
    assert_eq!(inv["nodes"][0]["stale_targets"][0], t1.to_string(), "{inv}");
    let node2 = Client::new(&w, srv.addr, Some(&w.host(2, None)));
    let failed = r#"{"status":"failed","error":"host/02-00-00-00-00-02 refused: bad signature"}"#;
    assert_eq!(
        node2
            .status("POST", &format!("/v1/reports/{}", mac(2)), failed)
            .await,
        202
    );
    let inv = admin.json("GET", "/v1/nodes").await;
    let n2 = inv["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["mac"] == mac(2).to_string())
        .cloned()
        .expect("node 2");
    assert_eq!(
        (n2["failed"].clone(), n2["stale"].clone()),
        (true.into(), true.into()),
        "{n2}"
    );
    assert!(n2["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("bad signature")));
    assert_eq!(inv["never_seen"].as_array().map(Vec::len), Some(0), "{inv}");
}
