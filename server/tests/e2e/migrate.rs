//! `satchel-server migrate --from-sled DIR`: an embedded store, filled by
//! the real server, copied into etcd; a second run copies nothing and the
//! check still passes; a server on etcd then serves what sled held.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use satchel_format::Target;

use crate::etcd::EtcdCluster;
use crate::harness::*;

fn migrate(endpoints: &str, prefix: &str, dir: &std::path::Path) -> (i32, String, String) {
    let out = output(
        Command::new(workspace_bin("satchel-server"))
            .args(["--store", "etcd", "--etcd-endpoints", endpoints])
            .args(["--etcd-prefix", prefix, "--bundle-history", "3"])
            .arg("migrate")
            .arg("--from-sled")
            .arg(dir),
        KILL_AFTER,
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_into_etcd_and_a_second_run_copies_nothing() {
    let w = World::new();
    let data = w.path().join("sled");
    let host = Target::Host(mac(1));
    let site_t = Target::Site(site("dc1"));
    {
        let srv = Server::start(&w.config_with_store(&data, "bundle_history = 3\n"));
        let admin = Client::new(&w, srv.addr, Some(&w.admin));
        for serial in 1..=4 {
            let b = w.bundle(&host, None, serial);
            assert_eq!(
                admin.status("PUT", &format!("/v1/bundles/{host}"), b).await,
                201
            );
        }
        let b = w.bundle(&site_t, None, 7);
        let u = format!("/v1/bundles/{site_t}");
        assert_eq!(admin.status("PUT", &u, b).await, 201);
        assert_eq!(admin.status("DELETE", &u, Bytes::new()).await, 204);
        let anon = Client::new(&w, srv.addr, None);
        let (st, _, _) = anon
            .request("POST", &format!("/v1/uploads/{}", mac(2)), vec![5u8; 300])
            .await;
        assert_eq!(st, 201);
        let node = Client::new(&w, srv.addr, Some(&w.host(1, None)));
        let report = r#"{"report_id":"m1","status":"ok"}"#;
        let (st, _, _) = node
            .request("POST", &format!("/v1/reports/{}", mac(1)), report)
            .await;
        assert_eq!(st, 202);
        srv.signal("TERM");
        assert_eq!(srv.wait_exit(Duration::from_secs(30)), Some(0));
    }

    let cluster = EtcdCluster::start(3);
    let prefix = "/migrated/";
    let (code, out, err) = migrate(&cluster.endpoints(), prefix, &data);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("copied: 4 bundle versions, 1 deletions, 1 uploads, 1 node records"),
        "{out}"
    );
    assert!(
        out.contains("check: the etcd store holds everything"),
        "{out}"
    );
    // (Three host versions and the deleted site bundle's one, kept for
    // its history.) Resumable: a second run finds everything there and
    // copies nothing.
    let (code, out, err) = migrate(&cluster.endpoints(), prefix, &data);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("copied: 0 bundle versions, 0 deletions, 0 uploads, 0 node records, 0 queued forwards, 0 audit lines"),
        "{out}"
    );

    // A server on etcd serves what sled held.
    let store = format!(
        "store = \"etcd\"\netcd_endpoints = [{:?}]\netcd_prefix = {prefix:?}\nbundle_history = 3\n",
        cluster.endpoints().split(',').next().expect("endpoint")
    );
    let srv = Server::start(&w.config_with_store(&w.path().join("unused"), &store));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let (st, h, _) = admin
        .request("GET", &format!("/v1/bundles/{host}"), Bytes::new())
        .await;
    assert_eq!((st, h["x-satchel-serial"].to_str().ok()), (200, Some("4")));
    let hist = admin
        .json("GET", &format!("/v1/bundles/{host}/history"))
        .await;
    let serials: Vec<u64> = hist["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["serial"].as_u64())
        .collect();
    assert_eq!(serials, [4, 3, 2], "{hist}");
    // The deleted site bundle stays deleted, and its serial still counts.
    let u = format!("/v1/bundles/{site_t}");
    assert_eq!(admin.status("GET", &u, Bytes::new()).await, 404);
    assert_eq!(
        admin.status("PUT", &u, w.bundle(&site_t, None, 7)).await,
        409
    );
    let uploads = admin.json("GET", "/v1/uploads").await;
    assert_eq!(
        uploads["uploads"].as_array().map(Vec::len),
        Some(1),
        "{uploads}"
    );
    let nodes = admin.json("GET", "/v1/nodes").await.to_string();
    assert!(nodes.contains(&mac(1).to_string()), "{nodes}");
    let audit = admin.json("GET", "/v1/audit?log=admin&limit=1000").await;
    let lines = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|e| e["what"] == format!("DELETE /v1/bundles/{site_t}")),
        "{audit}"
    );
}
