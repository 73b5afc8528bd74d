//! Engine forwarding: a real HTTP receiver that is down, then up, then
//! restarted mid-stream; the server is also killed while reports wait.
//! Every report arrives; duplicates are few and carry the same report id.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

pub use satchel_test_support::engine::{start_receiver, unique, Seen};

/// The engine's address, held for the whole test by a socket that is bound
/// but never listens: while no receiver runs, connecting is refused, and no
/// other program can take the port.
pub fn reserve_engine_port() -> (tokio::net::TcpSocket, SocketAddr) {
    satchel_test_support::reserved_reuseport()
}

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_the_engine_at_least_once_through_outages() {
    let w = World::new();
    // The engine's port, reserved and refusing: the engine is down.
    let (_engine_port, engine) = reserve_engine_port();
    let data = w.path().join("data");
    let cfg = w.config(
        &data,
        &format!(
            "engine_webhook = \"http://{engine}/hook\"\nforward_backoff_initial_ms = 50\n\
             forward_backoff_max_secs = 1\nforward_timeout_secs = 2\n"
        ),
    );
    let srv = Server::start(&cfg);
    let host = Client::new(&w, srv.addr, Some(&w.host(1, None)));
    let url = format!("/v1/reports/{}", mac(1));
    let report = |i: usize| format!(r#"{{"report_id":"r{i}","status":"ok"}}"#);
    for i in 0..10 {
        assert_eq!(host.status("POST", &url, report(i)).await, 202);
    }
    let text = srv.metrics_text().await;
    assert!(text.contains("satchel_forward_queue_depth 10"), "{text}");
    assert!(
        text.contains("satchel_forward_failing 1")
            || text.contains("satchel_forward_failures_total 0")
    );
    // The server dies with the queue full; a new one picks it up.
    srv.kill9();
    let srv = Server::start(&cfg);
    let host = Client::new(&w, srv.addr, Some(&w.host(1, None)));

    let seen: Seen = Arc::default();
    let mut receiver = start_receiver(engine, seen.clone());
    wait_for("the queued reports", Duration::from_secs(20), || {
        unique(&seen).len() == 10
    })
    .await;

    // Mid-stream restart of the engine.
    let total = 40;
    let poster = {
        let (host, url) = (host.clone(), url.clone());
        tokio::spawn(async move {
            for i in 10..total {
                let (st, _, _) = host
                    .request(
                        "POST",
                        &url,
                        format!(r#"{{"report_id":"r{i}","status":"ok"}}"#),
                    )
                    .await;
                assert_eq!(st, 202);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_for("some of the stream", Duration::from_secs(20), || {
        unique(&seen).len() >= 18
    })
    .await;
    let failures = srv.metric("satchel_forward_failures_total").await;
    receiver.abort();
    let _ = receiver.await;
    // The engine stays down until the forwarder has met the outage.
    eventually("a delivery to fail", Duration::from_secs(30), || async {
        srv.metric("satchel_forward_failures_total").await > failures
    })
    .await;
    receiver = start_receiver(engine, seen.clone());
    poster.await.expect("poster");
    wait_for("every report", Duration::from_secs(30), || {
        unique(&seen).len() == total
    })
    .await;
    let u = unique(&seen);
    for i in 0..total {
        assert!(u.contains_key(&format!("r{i}")), "r{i} never arrived");
    }
    let dupes: usize = u.values().map(|n| n - 1).sum();
    assert!(dupes <= 5, "{dupes} duplicates: {u:?}");
    wait_for("an empty queue", Duration::from_secs(10), || {
        futures_lite_block(srv.metrics_text()).contains("satchel_forward_queue_depth 0")
    })
    .await;
    receiver.abort();
}

fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
