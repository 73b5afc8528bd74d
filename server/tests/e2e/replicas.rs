//! Several replicas on one etcd cluster (3 members, this test's own):
//! what one publishes the others serve; concurrent publishes of one target
//! through two replicas give one 201 and one 409; the highest serial holds
//! across replicas after a DELETE; with etcd gone, cached bundles still
//! boot nodes, writes get 503 + Retry-After, and once etcd is back writes
//! work again without restarting anything; one replica at a time forwards
//! reports, and another takes over when it is killed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use satchel_format::Target;

use crate::etcd::{EtcdCluster, MemberTls};
use crate::forwarding::{reserve_engine_port, start_receiver, unique, Seen};
use crate::harness::*;

/// Longest a publish may take to reach another replica's cache.
const PROPAGATION: Duration = Duration::from_secs(10);

/// `n` replicas sharing `cluster` (one prefix, as replicas of one site do).
fn replicas(w: &World, cluster: &EtcdCluster, n: usize, extra: &str) -> Vec<Server> {
    let prefix_name = w.path().join("replicas");
    (0..n)
        .map(|i| {
            let data = w.path().join(format!("data{i}"));
            let store = etcd_store_lines(&cluster.endpoints(), &prefix_name);
            Server::start(&w.config_with_store(&data, &format!("{store}{extra}")))
        })
        .collect()
}

fn url(t: &Target) -> String {
    format!("/v1/bundles/{t}")
}

/// The serial replica `srv` serves for `t` to an admin (None: 404).
async fn served_serial(w: &World, srv: &Server, t: &Target) -> Option<u64> {
    let admin = Client::new(w, srv.addr, Some(&w.admin));
    let (st, h, _) = admin.request("GET", &url(t), Bytes::new()).await;
    match st {
        200 => h
            .get("x-satchel-serial")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        404 => None,
        other => panic!("GET {}: {other}", url(t)),
    }
}

/// A node's boot through `srv`: the index, then each bundle in it.
async fn boot(w: &World, srv: &Server, node: &Cred, m: u8) -> Vec<(String, u64)> {
    let c = Client::new(w, srv.addr, Some(node));
    let index = c.json("GET", &format!("/v1/boot/{}", mac(m))).await;
    let mut got = Vec::new();
    for b in index["bundles"].as_array().cloned().unwrap_or_default() {
        let u = b["url"].as_str().expect("url").to_string();
        let (st, _, body) = c.request("GET", &u, Bytes::new()).await;
        assert_eq!(st, 200, "GET {u} during a boot");
        assert_eq!(body.len() as u64, b["size"].as_u64().expect("size"));
        got.push((
            b["target"].as_str().unwrap_or("").to_string(),
            b["serial"].as_u64().unwrap_or(0),
        ));
    }
    got
}

/// Posts `report` for node `m` with `c`; the status.
async fn post_report(c: &Client, m: u8, report: &serde_json::Value) -> u16 {
    let body = serde_json::to_vec(report).expect("json");
    c.request("POST", &format!("/v1/reports/{}", mac(m)), body)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_replica_is_served_by_the_others() {
    let w = World::new();
    let cluster = EtcdCluster::start(3);
    let srv = replicas(&w, &cluster, 3, "");
    let t = Target::Host(mac(1));
    let node = w.host(1, None);
    let admin1 = Client::new(&w, srv[0].addr, Some(&w.admin));
    let mut lags = Vec::new();
    for serial in 1..=5u64 {
        let bundle = w.bundle(&t, None, serial);
        assert_eq!(admin1.status("PUT", &url(&t), bundle).await, 201);
        let acked = Instant::now();
        // Replica 3 serves it within the bound, to the node and the admin.
        eventually("replica 3 to serve the new serial", PROPAGATION, || async {
            served_serial(&w, &srv[2], &t).await == Some(serial)
        })
        .await;
        lags.push(acked.elapsed());
        assert_eq!(
            boot(&w, &srv[2], &node, 1).await,
            [(t.to_string(), serial)],
            "the node boots serial {serial} through replica 3"
        );
    }
    lags.sort();
    eprintln!(
        "publish on replica 1 -> served by replica 3 (incl. one GET): min {:?}, median {:?}, max {:?}",
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    // Every replica lists the same bundle and the same inventory.
    let report = serde_json::json!({"status": "ok", "serials": {t.to_string(): 5}});
    let node_client = Client::new(&w, srv[1].addr, Some(&node));
    let st = post_report(&node_client, 1, &report).await;
    assert_eq!(st, 202);
    for s in &srv {
        let admin = Client::new(&w, s.addr, Some(&w.admin));
        let nodes = admin.json("GET", "/v1/nodes").await;
        let text = nodes.to_string();
        assert!(text.contains(&mac(1).to_string()), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_through_two_replicas_give_one_201_and_one_409() {
    let w = World::new();
    let cluster = EtcdCluster::start(3);
    let srv = replicas(&w, &cluster, 2, "");
    let t = Target::Host(mac(2));
    let a = Client::new(&w, srv[0].addr, Some(&w.admin));
    let b = Client::new(&w, srv[1].addr, Some(&w.admin));
    for serial in 1..=8u64 {
        // The same serial, signed twice (two admins' bundles differ).
        let one = w.bundle(&t, None, serial);
        let two = w.bundle_sized(&t, None, serial, 65);
        let u = url(&t);
        let (ra, rb) = tokio::join!(
            a.request("PUT", &u, one.clone()),
            b.request("PUT", &u, two.clone())
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "serial {serial}");
        let winner = if ra.0 == 201 { one } else { two };
        // Both replicas serve the winner, never the loser.
        for s in &srv {
            let admin = Client::new(&w, s.addr, Some(&w.admin));
            eventually("both replicas to serve the winner", PROPAGATION, || {
                let admin = admin.clone();
                let (winner, u) = (winner.clone(), url(&t));
                async move {
                    let (st, _, body) = admin.request("GET", &u, Bytes::new()).await;
                    st == 200 && body.as_ref() == winner.as_slice()
                }
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_replica_keeps_the_serial_for_the_others() {
    let w = World::new();
    let cluster = EtcdCluster::start(3);
    let srv = replicas(&w, &cluster, 2, "");
    let t = Target::Host(mac(3));
    let a = Client::new(&w, srv[0].addr, Some(&w.admin));
    let b = Client::new(&w, srv[1].addr, Some(&w.admin));
    assert_eq!(a.status("PUT", &url(&t), w.bundle(&t, None, 7)).await, 201);
    assert_eq!(b.status("DELETE", &url(&t), Bytes::new()).await, 204);
    eventually(
        "replica 1 to drop the deleted bundle",
        PROPAGATION,
        || async { served_serial(&w, &srv[0], &t).await.is_none() },
    )
    .await;
    let (st, _, body) = a.request("PUT", &url(&t), w.bundle(&t, None, 6)).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (409, "serial_not_greater")
    );
    let (st, _, _) = b.request("PUT", &url(&t), w.bundle(&t, None, 7)).await;
    assert_eq!(st, 409);
    assert_eq!(b.status("PUT", &url(&t), w.bundle(&t, None, 8)).await, 201);
    eventually("replica 1 to serve serial 8", PROPAGATION, || async {
        served_serial(&w, &srv[0], &t).await == Some(8)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_gone_cached_boots_work_and_writes_get_503_until_it_returns() {
    let w = World::new();
    let mut cluster = EtcdCluster::start(3);
    // Short store timeouts so a write fails fast while etcd is gone.
    let srv = replicas(
        &w,
        &cluster,
        2,
        "etcd_request_timeout_ms = 1500\netcd_retry_after_secs = 3\n",
    );
    let t = Target::Host(mac(4));
    let node = w.host(4, None);
    let admin = Client::new(&w, srv[0].addr, Some(&w.admin));
    assert_eq!(
        admin.status("PUT", &url(&t), w.bundle(&t, None, 1)).await,
        201
    );
    eventually("replica 2 to cache the bundle", PROPAGATION, || async {
        served_serial(&w, &srv[1], &t).await == Some(1)
    })
    .await;

    cluster.kill_all();
    // /metrics says so, on a replica that was not even asked to write.
    eventually("replica 2 to see etcd gone", PROPAGATION, || async {
        srv[1].metric("satchel_store_etcd_reachable").await == Some(0.0)
    })
    .await;
    for s in &srv {
        // Cached bundles still boot the node, on every replica.
        assert_eq!(boot(&w, s, &node, 4).await, [(t.to_string(), 1)]);
    }
    // A write is refused with 503 + Retry-After, and nothing is acknowledged.
    let (st, h, body) = admin.request("PUT", &url(&t), w.bundle(&t, None, 2)).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (503, "store_unavailable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(h["retry-after"], "3");
    let report = serde_json::json!({"status": "ok"});
    let nc = Client::new(&w, srv[1].addr, Some(&node));
    let st = post_report(&nc, 4, &report).await;
    assert_eq!(st, 503, "a report is not acknowledged while etcd is gone");

    cluster.restart_stopped();
    // The same replicas, not restarted, take writes again.
    eventually(
        "a publish to succeed again",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            let bundle = w.bundle(&t, None, 2);
            let u = url(&t);
            async move {
                let (st, _, _) = admin.request("PUT", &u, bundle).await;
                st == 201 || st == 409
            }
        },
    )
    .await;
    eventually("replica 2 to serve serial 2", PROPAGATION, || async {
        served_serial(&w, &srv[1], &t).await == Some(2)
    })
    .await;
    eventually("replica 2 to see etcd back", PROPAGATION, || async {
        srv[1].metric("satchel_store_etcd_reachable").await == Some(1.0)
    })
    .await;
    assert!(srv[1].metric("satchel_store_cache_hits_total").await > Some(0.0));
    // Replica 2 takes a report again, unrestarted. Not necessarily the first
    // one after its metric turned: the metric is its last etcd answer, and
    // the client's connection to another member may still be coming back
    // (a report then gets 503 + Retry-After and is not acknowledged).
    eventually(
        "replica 2 to take a report again",
        Duration::from_secs(30),
        || {
            let nc = nc.clone();
            let report = report.clone();
            async move { post_report(&nc, 4, &report).await == 202 }
        },
    )
    .await;
}

/// Which replicas hold the forwarder lease, by their metrics.
async fn forwarders(srv: &[Server]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, s) in srv.iter().enumerate() {
        if s.metric("satchel_store_forwarder").await == Some(1.0) {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_forwards_reports_and_another_takes_over_when_it_dies() {
    let w = World::new();
    let cluster = EtcdCluster::start(3);
    let (_engine_port, engine) = reserve_engine_port();
    let seen: Seen = Default::default();
    let receiver = start_receiver(engine, seen.clone());
    let mut srv = replicas(
        &w,
        &cluster,
        3,
        &format!(
            "engine_webhook = \"http://{engine}/hook\"\netcd_forwarder_lease_secs = 2\n\
             forward_backoff_initial_ms = 50\nforward_backoff_max_secs = 1\n"
        ),
    );
    eventually("exactly one forwarder", Duration::from_secs(20), || async {
        forwarders(&srv).await.len() == 1
    })
    .await;
    let leader = forwarders(&srv).await[0];
    let post = |s: &Server, n: u8, id: String| {
        let c = Client::new(&w, s.addr, Some(&w.host(n, None)));
        async move {
            let body = format!(r#"{{"report_id":"{id}","status":"ok"}}"#);
            c.request("POST", &format!("/v1/reports/{}", mac(n)), body)
                .await
                .0
        }
    };
    // Reports through every replica reach the engine.
    for (i, s) in srv.iter().enumerate() {
        for k in 0..5 {
            assert_eq!(post(s, i as u8 + 1, format!("a{i}-{k}")).await, 202);
        }
    }
    eventually(
        "the first 15 reports at the engine",
        Duration::from_secs(30),
        || async { unique(&seen).len() == 15 },
    )
    .await;
    // The forwarder dies; another replica takes the lease and goes on.
    let killed_at = Instant::now();
    srv.remove(leader).kill9();
    let rest = srv;
    eventually("another forwarder", Duration::from_secs(20), || async {
        forwarders(&rest).await.len() == 1
    })
    .await;
    eprintln!(
        "forwarder takeover after SIGKILL: {:?} (lease 2 s)",
        killed_at.elapsed()
    );
    for (i, s) in rest.iter().enumerate() {
        for k in 0..5 {
            assert_eq!(post(s, 10 + i as u8, format!("b{i}-{k}")).await, 202);
        }
    }
    eventually(
        "all 25 reports at the engine",
        Duration::from_secs(30),
        || async { unique(&seen).len() == 25 },
    )
    .await;
    receiver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_etcd_over_mutual_tls() {
    let w = World::new();
    // The members present the test server certificate (it names
    // 127.0.0.1) and accept clients of the test CA; the replicas present
    // the admin certificate as their etcd client certificate.
    let cluster = EtcdCluster::start_with(
        3,
        Some(MemberTls {
            ca: w.ca_pem.clone(),
            cert: w.server.cert.clone(),
            key: w.server.key.clone(),
        }),
    );
    let tls = format!(
        "etcd_ca = {:?}\netcd_cert = {:?}\netcd_key = {:?}\n",
        w.ca_pem, w.admin.cert, w.admin.key
    );
    let srv = replicas(&w, &cluster, 2, &tls);
    let t = Target::Site(site("dc9"));
    let a = Client::new(&w, srv[0].addr, Some(&w.admin));
    assert_eq!(a.status("PUT", &url(&t), w.bundle(&t, None, 3)).await, 201);
    eventually("replica 2 to serve it", PROPAGATION, || async {
        served_serial(&w, &srv[1], &t).await == Some(3)
    })
    .await;
    // Without a client certificate etcd refuses the replica: it does not start.
    let data = w.path().join("no-client-cert");
    let store = etcd_store_lines(&cluster.endpoints(), &data);
    let cfg = w.config_with_store(
        &data,
        &format!(
            "{store}etcd_ca = {:?}\netcd_request_timeout_ms = 2000\n",
            w.ca_pem
        ),
    );
    let out = output(
        std::process::Command::new(workspace_bin("satchel-server"))
            .arg("--config")
            .arg(&cfg),
        KILL_AFTER,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("opening the etcd store"), "{err}");
    eprintln!(
        "without a client certificate: {}",
        err.lines().last().unwrap_or("")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_of_many_nodes_are_all_recorded() {
    let w = World::new();
    let cluster = EtcdCluster::start(3);
    let srv = replicas(&w, &cluster, 2, "");
    let certs: Vec<Cred> = (1..=40u8).map(|n| w.host(n, None)).collect();
    let mut posts = tokio::task::JoinSet::new();
    for (i, cert) in certs.iter().enumerate() {
        let n = i as u8 + 1;
        let c = Client::new(&w, srv[i % 2].addr, Some(cert));
        posts.spawn(async move {
            let body = format!(r#"{{"report_id":"c{n}","status":"ok"}}"#);
            c.request("POST", &format!("/v1/reports/{}", mac(n)), body)
                .await
                .0
        });
    }
    while let Some(st) = posts.join_next().await {
        assert_eq!(st.expect("post"), 202);
    }
    for s in &srv {
        let admin = Client::new(&w, s.addr, Some(&w.admin));
        let nodes = admin.json("GET", "/v1/nodes").await.to_string();
        for n in 1..=40u8 {
            assert!(nodes.contains(&mac(n).to_string()), "{} missing", mac(n));
        }
    }
}

/// An engine that sends the `report_id` of every POST, with the instant it
/// arrived, to the test (so the test waits on the delivery itself).
fn timed_receiver(
    addr: std::net::SocketAddr,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = satchel_test_support::engine::start_receiver_with(addr, move |id| {
        let _ = tx.send((id, Instant::now()));
    });
    (task, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_to_a_replica_that_does_not_forward_reaches_the_engine_without_a_poll() {
    let w = World::new();
    let cluster = EtcdCluster::start(3);
    let (_engine_port, engine) = reserve_engine_port();
    let (receiver, mut arrived) = timed_receiver(engine);
    // The safety-net poll is an hour: only the forwarder's watch on the
    // queue can bring a report stored by another replica to it in time.
    let srv = replicas(
        &w,
        &cluster,
        3,
        &format!("engine_webhook = \"http://{engine}/hook\"\nforward_poll_secs = 3600\n"),
    );
    eventually("exactly one forwarder", Duration::from_secs(20), || async {
        forwarders(&srv).await.len() == 1
    })
    .await;
    let leader = forwarders(&srv).await[0];
    let others: Vec<usize> = (0..srv.len()).filter(|i| *i != leader).collect();
    let mut lags = Vec::new();
    for k in 0..10u8 {
        let s = &srv[others[usize::from(k) % others.len()]];
        let n = 20 + k;
        let c = Client::new(&w, s.addr, Some(&w.host(n, None)));
        let id = format!("elsewhere-{k}");
        let body = format!(r#"{{"report_id":"{id}","status":"ok"}}"#);
        let st = c
            .request("POST", &format!("/v1/reports/{}", mac(n)), body)
            .await
            .0;
        assert_eq!(st, 202);
        let acked = Instant::now();
        let at = loop {
            let got = tokio::time::timeout(Duration::from_secs(20), arrived.recv()).await;
            match got {
                Ok(Some((got, at))) if got == id => break at,
                Ok(Some(_)) => continue,
                _ => panic!(
                    "{id}, stored by a replica that does not forward, never reached the engine"
                ),
            }
        };
        lags.push(at.saturating_duration_since(acked));
    }
    lags.sort();
    eprintln!(
        "report on a non-forwarding replica -> at the engine, after its 202, over {} reports: \
         min {:?}, median {:?}, max {:?}",
        lags.len(),
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    receiver.abort();
}
