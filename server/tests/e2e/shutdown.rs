//! Graceful shutdown: SIGTERM stops accepting and lets an in-flight
//! download finish; SIGHUP reloads without dropping service.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use satchel_names::Target;
use sha2::{Digest, Sha256};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_download() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, "shutdown_grace_secs = 20"));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let t = Target::Host(mac(1));
    let bundle = w.bundle_sized(&t, None, 1, 12 * 1024 * 1024);
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t}"), bundle.clone())
            .await,
        201
    );

    // SIGHUP reloads and keeps serving.
    srv.signal("HUP");
    eventually("the SIGHUP reload", Duration::from_secs(30), || async {
        srv.log_text()
            .contains("SIGHUP: certificate, key and CRL reloaded")
    })
    .await;
    assert_eq!(admin.status("GET", "/healthz", Bytes::new()).await, 200);

    let host = Client::new(&w, srv.addr, Some(&w.host(1, None)));
    let tls = host.raw_tls().await.expect("tls");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(format!("/v1/bundles/{t}"))
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("req");
    let resp = sender.send_request(req).await.expect("response head");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let first = body.frame().await.expect("frame").expect("ok");
    got.extend_from_slice(&first.into_data().expect("data"));

    srv.signal("TERM");
    let t0 = Instant::now();
    // New connections are refused once the listener is closed.
    let mut refused = false;
    while t0.elapsed() < Duration::from_secs(5) {
        if tokio::net::TcpStream::connect(srv.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "still accepting after SIGTERM");
    // The download in flight still completes, read slowly.
    while let Some(f) = body.frame().await {
        got.extend_from_slice(&f.expect("frame").into_data().expect("data"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(got.len(), bundle.len());
    assert_eq!(Sha256::digest(&got), Sha256::digest(&bundle));
    assert_eq!(
        srv.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        srv.log_text()
    );
    assert!(srv.log_text().contains("drained"), "{}", srv.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_driven_in_process() {
    use std::sync::Arc;

    use satchel_server::shutdown::Trigger;
    use satchel_server::{Config, Metrics, Options, ReloadableTls, Signers, SledStore, TlsFiles};

    let w = World::new();
    let tls = Arc::new(
        ReloadableTls::load(TlsFiles {
            ca_cert: w.ca_pem.clone(),
            server_cert: w.server.cert.clone(),
            server_key: w.server.key.clone(),
            crl: w.crl.clone(),
            options: Default::default(),
        })
        .expect("tls"),
    );
    let store = Arc::new(SledStore::open(&w.path().join("data")).expect("store"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let trigger = Trigger::new();
    let options = Options {
        config: Config::default(),
        signers: Signers::load(&[&w.signer_pub]).expect("signers"),
        metrics: Arc::new(Metrics::default()),
    };
    let server = tokio::spawn(satchel_server::run(
        listener,
        tls,
        store,
        options,
        trigger.wait(),
    ));
    let admin = Client::new(&w, addr, Some(&w.admin));
    let t = Target::Host(mac(1));
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t}"), w.bundle(&t, None, 1))
            .await,
        201
    );
    assert_eq!(
        admin
            .status("GET", &format!("/v1/bundles/{t}"), Bytes::new())
            .await,
        200
    );
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run returns after shutdown")
        .expect("join")
        .expect("run ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_server_certificate_without_dropping_service() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let anon = Client::new(&w, srv.addr, None);
    let presented = || async {
        let tls = anon.raw_tls().await.expect("tls");
        tls.get_ref().1.peer_certificates().expect("certs")[0]
            .as_ref()
            .to_vec()
    };
    let before = presented().await;
    let renewed =
        w.ca.issue_server(
            &["localhost".to_string()],
            &["127.0.0.1".parse().expect("ip")],
            None,
        )
        .expect("renewed cert");
    // Key first, then certificate: each file replaced whole.
    std::fs::write(&w.server.key, renewed.key_pem.expose()).expect("key");
    std::fs::write(&w.server.cert, &renewed.cert_pem).expect("cert");
    srv.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented().await;
        if now == renewed.cert_der.as_ref() {
            break;
        }
        assert_eq!(now, before, "neither the old nor the new certificate");
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not swap the certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(anon.status("GET", "/healthz", Bytes::new()).await, 200);
    assert!(srv
        .metrics_text()
        .await
        .contains("satchel_crl_reloads_total 1"));
}
