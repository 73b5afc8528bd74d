//! One address cannot take every connection slot: connections that never
//! finish a TLS handshake are capped per source, and nodes from another
//! address still get answers while the flood holds its connections.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::harness::*;

/// Connections the flooding address opens and holds, idle.
const FLOOD: usize = 200;
/// The server's connection limit in this test: below the flood.
const MAX_CONNECTIONS: usize = 100;
/// The per-source handshake cap in this test.
const PER_SOURCE: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_room_for_the_others() {
    let w = World::new();
    let data = w.path().join("data");
    let extra = format!(
        "max_connections = {MAX_CONNECTIONS}\nmax_handshakes_per_source = {PER_SOURCE}\n\
         handshake_timeout_secs = 60\n"
    );
    let srv = Server::start(&w.config(&data, &extra));

    // 127.0.0.2 opens FLOOD connections and never starts a handshake.
    let mut held = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        held.push(sock.connect(srv.addr).await.expect("connect"));
    }
    // The server has seen every one of them once it has shed the excess.
    let want = format!(
        "satchel_connections_shed_total{{reason=\"per_source_handshakes\"}} {}",
        FLOOD - PER_SOURCE
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = srv.metrics_text().await;
        if text.lines().any(|l| l == want) {
            assert!(
                text.lines()
                    .any(|l| l == format!("satchel_handshakes_in_progress {PER_SOURCE}")),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never shed the flood:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nodes and admins from 127.0.0.1 are still served, on new connections.
    let node = w.host(1, None);
    let client = Client::new(&w, srv.addr, Some(&node));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    for _ in 0..20 {
        let boot = client
            .try_request("GET", &format!("/v1/boot/{}", mac(1)), Bytes::new(), &[])
            .await;
        assert_eq!(boot.map(|r| r.0), Ok(200));
    }
    assert_eq!(admin.status("GET", "/v1/nodes", Bytes::new()).await, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_certificate_can_neither_flush_the_audit_log_nor_flood() {
    let w = World::new();
    let data = w.path().join("data");
    let extra = "audit_max_entries = 50\nfetch_audit_max_entries = 20\n\
                 security_audit_max_entries = 20\nnode_burst_per_source = 30\n\
                 node_per_minute_per_source = 1\n";
    let srv = Server::start(&w.config(&data, extra));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    assert_eq!(admin.status("GET", "/v1/nodes", Bytes::new()).await, 200);

    // One site certificate from one address: its burst, then 429s.
    let site = w.site_cert("dc1");
    let node = Client::new(&w, srv.addr, Some(&site));
    let boot = format!("/v1/boot/{}", mac(1));
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses.push(node.status("GET", &boot, Bytes::new()).await);
    }
    assert!(statuses[..30].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    // The same certificate from another node's address is its own budget.
    let other = Client::with_source(&w, srv.addr, Some(&site), 3);
    assert_eq!(other.status("GET", &boot, Bytes::new()).await, 200);

    // The admin's line outlived the flood; the fetch log kept its last 20.
    let lines = |v: serde_json::Value| v["entries"].as_array().cloned().unwrap_or_default();
    let admin_log = lines(admin.json("GET", "/v1/audit?log=admin&limit=1000").await);
    assert!(
        admin_log
            .iter()
            .any(|e| e["who"] == "admin/alice" && e["what"] == "GET /v1/nodes"),
        "{admin_log:?}"
    );
    assert!(admin_log.iter().all(|e| e["log"] == "admin"));
    let fetch_log = lines(admin.json("GET", "/v1/audit?log=fetch&limit=1000").await);
    assert_eq!(fetch_log.len(), 20, "{fetch_log:?}");
    assert!(fetch_log.iter().all(|e| e["who"] == "site/dc1"));
    let all = lines(admin.json("GET", "/v1/audit?limit=1000").await);
    assert!(all
        .windows(2)
        .all(|p| p[0]["seq"].as_u64() < p[1]["seq"].as_u64()));
}
