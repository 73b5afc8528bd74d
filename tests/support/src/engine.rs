//! The engine's webhook, for tests of report forwarding: a real HTTP/1.1
//! receiver on a reserved loopback port that records the `report_id` of
//! every report POSTed to it and answers 200. Stop it (abort its task) and
//! start it again on the same port to make the engine go down and come back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

/// The report ids received, in order of arrival, duplicates included.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Serves the webhook on `addr` (a port [`crate::net::reserved_reuseport`]
/// holds) in the current tokio runtime, recording into `seen`, until the
/// returned task is aborted.
pub fn start_receiver(addr: SocketAddr, seen: Seen) -> tokio::task::JoinHandle<()> {
    start_receiver_with(addr, move |id| {
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(id);
    })
}

/// Like [`start_receiver`], handing each report id to `on_report` as it
/// arrives (for a test that waits on, or times, the delivery itself).
pub fn start_receiver_with<F>(addr: SocketAddr, on_report: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(String) + Send + Sync + 'static,
{
    let listener = crate::net::listen_reuseport(addr);
    let on_report = Arc::new(on_report);
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let on_report = on_report.clone();
            conns.spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let on_report = on_report.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            if let Some(id) = v["report_id"].as_str() {
                                on_report(id.to_string());
                            }
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// How often each report id arrived.
pub fn unique(seen: &Seen) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for id in seen.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        *m.entry(id.clone()).or_insert(0) += 1;
    }
    m
}
