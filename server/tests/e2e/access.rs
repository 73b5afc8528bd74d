//! The authorization matrix, end to end, plus real-client interop (curl).

use std::time::{Duration, Instant};

use bytes::Bytes;
use satchel_names::Target;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_end_to_end() {
    let mut w = World::new();
    let revoked_before = w.host(9, None);
    w.revoke(&revoked_before);
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));

    let h1 = Target::Host(mac(1));
    let h2 = Target::Host(mac(2));
    let s1 = Target::Site(site("dc1"));
    for (t, s, body) in [
        (&h1, Some("dc1"), w.bundle(&h1, Some("dc1"), 1)),
        (&h2, Some("dc2"), w.bundle(&h2, Some("dc2"), 1)),
        (&s1, None, w.bundle(&s1, None, 1)),
    ] {
        let (st, _, b) = admin
            .request("PUT", &format!("/v1/bundles/{t}"), body)
            .await;
        assert_eq!(
            st,
            201,
            "publish {t} ({s:?}): {}",
            String::from_utf8_lossy(&b)
        );
    }

    let host1 = Client::new(&w, srv.addr, Some(&w.host(1, Some("dc1"))));
    let host1_nosite = Client::new(&w, srv.addr, Some(&w.host(1, None)));
    let site_dc2 = Client::new(&w, srv.addr, Some(&w.site_cert("dc2")));
    let site_dc1 = Client::new(&w, srv.addr, Some(&w.site_cert("dc1")));
    let anon = Client::new(&w, srv.addr, None);
    let m1 = mac(1);
    let m2 = mac(2);

    let cases: Vec<(&str, &Client, &str, String, u16)> = vec![
        (
            "own MAC",
            &host1,
            "GET",
            format!("/v1/bundles/host/{m1}"),
            200,
        ),
        (
            "own site",
            &host1,
            "GET",
            "/v1/bundles/site/dc1".into(),
            200,
        ),
        (
            "other MAC",
            &host1,
            "GET",
            format!("/v1/bundles/host/{m2}"),
            403,
        ),
        (
            "other site",
            &host1,
            "GET",
            "/v1/bundles/site/dc2".into(),
            403,
        ),
        (
            "no site URI",
            &host1_nosite,
            "GET",
            "/v1/bundles/site/dc1".into(),
            403,
        ),
        ("own boot", &host1, "GET", format!("/v1/boot/{m1}"), 200),
        ("other boot", &host1, "GET", format!("/v1/boot/{m2}"), 403),
        (
            "host publishes",
            &host1,
            "PUT",
            format!("/v1/bundles/host/{m1}"),
            403,
        ),
        ("host lists", &host1, "GET", "/v1/bundles".into(), 403),
        ("host reads nodes", &host1, "GET", "/v1/nodes".into(), 403),
        (
            "host uploads for other",
            &host1,
            "POST",
            format!("/v1/uploads/{m2}"),
            403,
        ),
        (
            "site cert other site",
            &site_dc2,
            "GET",
            "/v1/bundles/site/dc1".into(),
            403,
        ),
        (
            "site cert own site",
            &site_dc1,
            "GET",
            "/v1/bundles/site/dc1".into(),
            200,
        ),
        (
            "site cert host naming it",
            &site_dc2,
            "GET",
            format!("/v1/bundles/host/{m2}"),
            200,
        ),
        (
            "site cert host naming other",
            &site_dc2,
            "GET",
            format!("/v1/bundles/host/{m1}"),
            403,
        ),
        (
            "site cert deletes",
            &site_dc1,
            "DELETE",
            "/v1/bundles/site/dc1".into(),
            403,
        ),
        (
            "anon bundle",
            &anon,
            "GET",
            format!("/v1/bundles/host/{m1}"),
            401,
        ),
        ("anon boot", &anon, "GET", format!("/v1/boot/{m1}"), 401),
        ("anon list", &anon, "GET", "/v1/uploads".into(), 401),
        ("anon nodes", &anon, "GET", "/v1/nodes".into(), 401),
        ("anon audit", &anon, "GET", "/v1/audit".into(), 401),
        (
            "anon report",
            &anon,
            "POST",
            format!("/v1/reports/{m1}"),
            401,
        ),
        (
            "anon publish",
            &anon,
            "PUT",
            format!("/v1/bundles/host/{m1}"),
            401,
        ),
        ("anon ca", &anon, "GET", "/v1/ca".into(), 200),
        ("anon crl", &anon, "GET", "/v1/crl".into(), 200),
        ("anon healthz", &anon, "GET", "/healthz".into(), 200),
        (
            "admin any host",
            &admin,
            "GET",
            format!("/v1/bundles/host/{m2}"),
            200,
        ),
        (
            "admin reports",
            &admin,
            "POST",
            format!("/v1/reports/{m1}"),
            403,
        ),
    ];
    for (label, client, method, path, want) in cases {
        let body = if method == "PUT" {
            Bytes::from(w.bundle(&h1, Some("dc1"), 99))
        } else if method == "POST" {
            Bytes::from_static(b"{\"status\":\"ok\"}")
        } else {
            Bytes::new()
        };
        let (st, _, b) = client.request(method, &path, body).await;
        assert_eq!(
            st,
            want,
            "{label}: {method} {path}: {}",
            String::from_utf8_lossy(&b)
        );
        if st >= 400 {
            assert!(!error_code(&b).is_empty(), "{label}: JSON error body");
        }
    }
    // Anonymous upload works.
    let (st, _, _) = anon
        .request(
            "POST",
            &format!("/v1/uploads/{m1}"),
            Bytes::from_static(b"age..."),
        )
        .await;
    assert_eq!(st, 201);

    // The boot index is in apply order and lists only what the caller may fetch.
    let idx = host1.json("GET", &format!("/v1/boot/{m1}")).await;
    let targets: Vec<&str> = idx["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .map(|b| b["target"].as_str().expect("target"))
        .collect();
    assert_eq!(targets, vec!["site/dc1", &format!("host/{m1}")]);
    assert_eq!(idx["bundles"][1]["url"], format!("/v1/bundles/host/{m1}"));
    let idx = site_dc2.json("GET", &format!("/v1/boot/{m1}")).await;
    assert_eq!(idx["bundles"].as_array().expect("b").len(), 0, "{idx}");
    let idx = host1_nosite.json("GET", &format!("/v1/boot/{m1}")).await;
    assert_eq!(idx["bundles"].as_array().expect("b").len(), 1, "{idx}");

    // A certificate revoked before start is refused at TLS.
    let r = Client::new(&w, srv.addr, Some(&revoked_before))
        .try_request(
            "GET",
            &format!("/v1/bundles/host/{}", mac(9)),
            Bytes::new(),
            &[],
        )
        .await;
    assert!(r.is_err(), "revoked cert got {:?}", r.map(|x| x.0));
    // The server certificate is not a client certificate.
    let r = Client::new(&w, srv.addr, Some(&w.server))
        .try_request("GET", "/healthz", Bytes::new(), &[])
        .await;
    assert!(r.is_err(), "server cert as client got {:?}", r.map(|x| x.0));

    // Revoking while running: refused once the new CRL file is picked up.
    let late = w.host(1, Some("dc1"));
    let late_client = Client::new(&w, srv.addr, Some(&late));
    assert_eq!(
        late_client
            .status("GET", &format!("/v1/boot/{m1}"), Bytes::new())
            .await,
        200
    );
    w.revoke(&late);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = late_client
            .try_request("GET", &format!("/v1/boot/{m1}"), Bytes::new(), &[])
            .await;
        if r.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revocation not applied without restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Other certificates still work after the reload.
    assert_eq!(
        host1
            .status("GET", &format!("/v1/boot/{m1}"), Bytes::new())
            .await,
        200
    );

    // Every fetch and admin action is audited with scope and fingerprint.
    let audit = admin.json("GET", "/v1/audit?limit=1000").await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(entries.iter().any(|e| e["who"] == format!("host/{m1}")
        && e["what"] == format!("GET /v1/bundles/host/{m1}")
        && e["status"] == 200
        && e["cert_fingerprint"].as_str().map(|f| f.len()) == Some(64)));
    assert!(entries
        .iter()
        .any(|e| e["who"] == "admin/alice" && e["what"] == format!("PUT /v1/bundles/host/{m1}")));
    assert!(entries.iter().any(|e| e["status"] == 403));

    let text = srv.metrics_text().await;
    assert!(
        text.contains("satchel_tls_handshake_failures_total{reason=\"revoked\"}"),
        "{text}"
    );
    assert!(text.contains("satchel_requests_total{route=\"bundle_get\",status=\"403\"}"));
    assert!(text.contains("satchel_crl_stale 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_a_bundle_that_verifies() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let admin = Client::new(&w, srv.addr, Some(&w.admin));
    let t = Target::Host(mac(1));
    let bundle = w.bundle_sized(&t, None, 7, 100 * 1024);
    assert_eq!(
        admin
            .status("PUT", &format!("/v1/bundles/{t}"), bundle.clone())
            .await,
        201
    );
    let host = w.host(1, None);
    let out = w.path().join("fetched.bundle");
    let url = format!("https://127.0.0.1:{}/v1/bundles/{t}", srv.addr.port());
    let got = output(
        std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "20"])
            .arg("--cert")
            .arg(&host.cert)
            .arg("--key")
            .arg(&host.key)
            .arg("--cacert")
            .arg(&w.ca_pem)
            .arg("--output")
            .arg(&out)
            .arg(&url),
        KILL_AFTER,
    );
    assert!(
        got.status.success(),
        "curl failed: {}: {}",
        got.status,
        String::from_utf8_lossy(&got.stderr)
    );
    let fetched = std::fs::read(&out).expect("fetched");
    assert_eq!(fetched, bundle);
    let mut checks = satchel_format::verify::Checks::new(vec![w.signer.verifying_key()]);
    checks.target = Some(t.clone());
    let v = satchel_format::open::verify_reader(&fetched[..], &checks).expect("verifies");
    assert_eq!(v.manifest().serial, 7);

    // HTTP/2 by ALPN.
    let out = output(
        std::process::Command::new("curl")
            .args([
                "--silent",
                "--http2",
                "--max-time",
                "20",
                "--output",
                "/dev/null",
            ])
            .args(["--write-out", "%{http_version} %{http_code}"])
            .arg("--cert")
            .arg(&host.cert)
            .arg("--key")
            .arg(&host.key)
            .arg("--cacert")
            .arg(&w.ca_pem)
            .arg(&url),
        KILL_AFTER,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");

    // Without a client certificate curl gets 401.
    let st = output(
        std::process::Command::new("curl")
            .args([
                "--silent",
                "--max-time",
                "20",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&w.ca_pem)
            .arg(&url),
        KILL_AFTER,
    );
    assert_eq!(String::from_utf8_lossy(&st.stdout), "401");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_still_enforced_and_shows_in_metrics() {
    let w = World::new();
    let revoked = w.host(3, None);
    w.ca.revoke(&revoked.serial, satchel_pki::ca::Reason::KeyCompromise)
        .expect("revoke");
    // Signed two days ago, valid one day: past its nextUpdate now.
    let crl =
        w.ca.crl_at(
            Some(1),
            time::OffsetDateTime::now_utc() - time::Duration::days(2),
        )
        .expect("crl");
    std::fs::write(&w.crl, crl.pem).expect("write crl");
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, ""));
    let r = Client::new(&w, srv.addr, Some(&revoked))
        .try_request("GET", "/healthz", Bytes::new(), &[])
        .await;
    assert!(r.is_err(), "revoked cert accepted with a stale CRL");
    let ok = Client::new(&w, srv.addr, Some(&w.host(4, None)));
    assert_eq!(
        ok.status("GET", &format!("/v1/boot/{}", mac(4)), Bytes::new())
            .await,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if srv.metrics_text().await.contains("satchel_crl_stale 1") {
            break;
        }
        assert!(Instant::now() < deadline, "stale CRL not in metrics");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(srv.log_text().contains("nextUpdate"), "{}", srv.log_text());
}
