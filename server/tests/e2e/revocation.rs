//! Revocation bites at once: a certificate revoked while it holds a
//! connection is refused on that connection's next request (HTTP/1.1 and
//! HTTP/2 alike), and an older CRL never replaces a newer one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use satchel_pki::AdminName;

use crate::harness::*;

/// A TLS connection to the server that stays open across requests.
async fn tls(
    w: &World,
    srv: &Server,
    cred: &Cred,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let ca = std::fs::read(&w.ca_pem).expect("ca");
    let (c, k) = cred.pem();
    let mut cfg =
        satchel_pki::tls::client_config(&ca, Some((c.as_slice(), k.as_slice()))).expect("cfg");
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("tls")
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Status and error code of a response.
async fn answer(resp: http::Response<hyper::body::Incoming>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, error_code(&body))
}

/// Waits until the server's metrics show `line` (the server logs and counts
/// every CRL it takes or refuses).
async fn wait_metric(srv: &Server, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = srv.metrics_text().await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {line:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_on_the_connection_it_holds() {
    let mut w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let bob =
        w.ca.issue_admin(AdminName::parse("bob").expect("name"), None)
            .expect("admin");
    let bob = write_cred(w.path(), "bob", &bob);
    let node = w.host(1, None);
    let m = mac(1);
    let before = std::fs::read(&w.crl).expect("crl");
    wait_metric(&srv, "satchel_crl_number 1").await;

    // An admin on a kept HTTP/1.1 connection and a node on HTTP/2.
    let (mut h1, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls(&w, &srv, &bob, b"http/1.1").await))
            .await
            .expect("h1");
    tokio::spawn(conn);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(tls(&w, &srv, &node, b"h2").await),
    )
    .await
    .expect("h2");
    tokio::spawn(conn);
    let boot = format!("/v1/boot/{m}");
    let nodes = answer(h1.send_request(get("/v1/nodes")).await.expect("send")).await;
    assert_eq!(nodes.0, 200, "{nodes:?}");
    let idx = answer(h2.send_request(get(&boot)).await.expect("send")).await;
    assert_eq!(idx.0, 200, "{idx:?}");

    w.ca.revoke(&bob.serial, satchel_pki::ca::Reason::KeyCompromise)
        .expect("revoke");
    w.revoke(&node);
    wait_metric(&srv, "satchel_crl_number 2").await;

    // The very next request on each held connection is refused.
    let r = answer(h1.send_request(get("/v1/nodes")).await.expect("send")).await;
    assert_eq!(r, (401, "certificate_revoked".to_string()));
    let r = answer(h2.send_request(get(&boot)).await.expect("send")).await;
    assert_eq!(r, (401, "certificate_revoked".to_string()));

    // An older CRL, though validly signed, is refused and changes nothing.
    let tmp = w.crl.with_extension("old");
    std::fs::write(&tmp, &before).expect("write");
    std::fs::rename(&tmp, &w.crl).expect("rename");
    wait_metric(&srv, "satchel_crl_reload_failures_total 1").await;
    assert!(
        srv.log_text().contains("older than the one enforced"),
        "{}",
        srv.log_text()
    );
    wait_metric(&srv, "satchel_crl_number 2").await;
    let r = answer(h2.send_request(get(&boot)).await.expect("send")).await;
    assert_eq!(r, (401, "certificate_revoked".to_string()));
    let fresh = Client::new(&w, srv.addr, Some(&node))
        .try_request("GET", &boot, Bytes::new(), &[])
        .await;
    assert!(
        fresh.is_err(),
        "revoked node accepted: {:?}",
        fresh.map(|r| r.0)
    );

    // The revocations are in the audit log, under the admin who still may.
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let audit = admin.json("GET", "/v1/audit?limit=1000").await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["who"] == "admin/bob" && e["status"] == 401),
        "{audit}"
    );
    let text = srv.metrics_text().await;
    assert!(
        text.contains(
            "satchel_tls_handshake_failures_total{reason=\"revoked_on_open_connection\"} 3"
        ),
        "{text}"
    );
}
