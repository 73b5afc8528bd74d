//! Hostile inputs against the running binary: headers, request lines,
//! slow clients, connection floods, bad configuration.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Reads until EOF or `within`; `(bytes, closed)`.
async fn read_until_close<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    within: Duration,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_and_slow_clients() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(
        &data,
        "handshake_timeout_secs = 1\nheader_read_timeout_secs = 1\nmax_connections = 6\n",
    ));
    let host = Client::new(&w, srv.addr, Some(&w.host(1, None)));
    let anon = Client::new(&w, srv.addr, None);

    // Raw requests: (bytes, acceptable statuses; empty = connection closed is fine too).
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("binary junk", vec![0u8, 1, 2, 255, 254, b'\r', b'\n', b'\r', b'\n'], &[400]),
        ("oversized header", huge_header.into_bytes(), &[431, 400]),
        ("too many headers", many_headers.into_bytes(), &[431, 400]),
        ("bad content-length", b"POST /v1/uploads/02-00-00-00-00-01 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(), &[400]),
        ("two content-lengths", b"POST /v1/uploads/02-00-00-00-00-01 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), &[400]),
        ("huge content-length", b"POST /v1/uploads/02-00-00-00-00-01 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n".to_vec(), &[413]),
        ("path traversal", b"GET /v1/bundles/site/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400, 404]),
        ("absolute-form", b"GET https://evil/v1/ca HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[200, 400, 404]),
        ("non-canonical MAC", b"GET /v1/boot/02:00:00:00:00:01 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400]),
        ("long path", format!("GET /v1/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(4000)).into_bytes(), &[414, 404]),
    ];
    for (label, raw, ok) in cases {
        let mut s = host.raw_tls().await.expect("tls");
        // The server may answer (431, 413) and close before all of an
        // oversized request is written: a failed write is then expected.
        let _ = s.write_all(&raw).await;
        let (resp, _) = read_until_close(&mut s, Duration::from_secs(5)).await;
        match status_of(&resp) {
            Some(st) => assert!(
                ok.contains(&st),
                "{label}: got {st}: {}",
                String::from_utf8_lossy(&resp)
            ),
            None => assert!(resp.is_empty(), "{label}: unparsable answer"),
        }
        if let Some(st) = status_of(&resp) {
            if st >= 400 && st != 431 && !resp.is_empty() {
                let text = String::from_utf8_lossy(&resp);
                assert!(
                    !text.contains("sled") && !text.contains("/tmp"),
                    "{label}: internals leaked: {text}"
                );
            }
        }
    }

    // Slowloris: a header that never ends is cut off after the header timeout.
    let mut s = anon.raw_tls().await.expect("tls");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let t0 = Instant::now();
    let (_, closed) = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "slow header not cut off");
    assert!(t0.elapsed() < Duration::from_secs(4));

    // A TCP connection that never starts TLS is closed after the handshake timeout.
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.expect("tcp");
    let (_, closed) = read_until_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "silent TCP client not cut off");

    // Connection limit: with 6 held open, the next is closed at once.
    // Counted by the monotonic total: the handshake timeout may close the
    // held ones before a look at the open gauge.
    let admitted = srv
        .metric("satchel_connections_total")
        .await
        .expect("total");
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(tokio::net::TcpStream::connect(srv.addr).await.expect("tcp"));
    }
    eventually(
        "the server to admit the 6",
        Duration::from_secs(30),
        || async { srv.metric("satchel_connections_total").await >= Some(admitted + 6.0) },
    )
    .await;
    let mut extra = tokio::net::TcpStream::connect(srv.addr).await.expect("tcp");
    let (_, closed) = read_until_close(&mut extra, Duration::from_millis(800)).await;
    assert!(closed, "connection over the limit was not closed early");
    drop(held);
    eventually(
        "the held connections to close",
        Duration::from_secs(30),
        || async { srv.metric("satchel_connections_open").await == Some(0.0) },
    )
    .await;
    assert_eq!(
        anon.status("GET", "/healthz", Bytes::new()).await,
        200,
        "service resumes"
    );

    let text = srv.metrics_text().await;
    assert!(
        text.contains("satchel_connections_refused_total "),
        "{text}"
    );
    assert!(
        !text.contains("satchel_connections_refused_total 0"),
        "{text}"
    );
    assert!(
        text.contains("satchel_tls_handshake_failures_total{reason=\"timeout\"}"),
        "{text}"
    );
    let (st, _, _) = plain_request(srv.metrics, "GET", "/other", Bytes::new()).await;
    assert_eq!(st, 404);
}

#[test]
fn bad_configuration_stops_the_binary_with_a_message() {
    let w = World::new();
    let data = w.path().join("data");
    let bin = workspace_bin("satchel-server");
    for (label, extra, want) in [
        ("zero limit", "max_connections = 0", "max_connections"),
        ("unknown key", "no_such_key = 1", "no_such_key"),
        (
            "bad address",
            "metrics_listen = \"nowhere\"",
            "metrics_listen",
        ),
        (
            "wrong type",
            "max_bundle_bytes = \"big\"",
            "max_bundle_bytes",
        ),
        (
            "bad webhook",
            "engine_webhook = \"gopher://x\"",
            "engine_webhook",
        ),
    ] {
        let cfg = w.config(&data, extra);
        let out = output(Command::new(&bin).arg("--config").arg(&cfg), KILL_AFTER);
        assert_eq!(out.status.code(), Some(1), "{label}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{label}: {err}");
    }
    // Missing TLS material and missing config file.
    let cfg = w.config(&data, "");
    let out = output(
        Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .arg("--crl")
            .arg(w.path().join("missing.crl")),
        KILL_AFTER,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.crl"));
    let out = output(
        Command::new(&bin)
            .arg("--config")
            .arg(w.path().join("none.toml")),
        KILL_AFTER,
    );
    assert_eq!(out.status.code(), Some(1));
    let out = output(Command::new(&bin).arg("--no-such-flag"), KILL_AFTER);
    assert_eq!(out.status.code(), Some(2));
    // A CRL from another CA is refused.
    let other = World::new();
    let out = output(
        Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .arg("--crl")
            .arg(&other.crl),
        KILL_AFTER,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_config_in_contrib_matches_the_binary() {
    let out = output(
        Command::new(workspace_bin("satchel-server")).arg("example-config"),
        KILL_AFTER,
    );
    assert!(out.status.success());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/server.example.toml"
    );
    let file = std::fs::read_to_string(path).expect("contrib/server.example.toml");
    assert_eq!(
        file,
        String::from_utf8_lossy(&out.stdout),
        "regenerate with `satchel-server example-config`"
    );
}

/// The API socket listens with `listen_backlog` (tokio's own bind would use
/// 128, which a booting rack overflows). `ss` shows a listening socket's
/// backlog as its Send-Q.
#[test]
fn the_api_socket_listens_with_the_configured_backlog() {
    let w = World::new();
    let data = w.path().join("data");
    let srv = Server::start(&w.config(&data, "listen_backlog = 777\n"));
    let out = output(
        Command::new("ss").args(["-Hltn", &format!("sport = :{}", srv.addr.port())]),
        KILL_AFTER,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let send_q = text
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no listening socket in: {text:?}"));
    assert_eq!(send_q, "777", "{text}");
}
