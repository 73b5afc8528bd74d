//! Crash safety: the real binary is killed with SIGKILL at random points
//! during publishes and uploads and restarted each time. Nothing
//! acknowledged is lost, nothing half-written is served, serials never go
//! back.
//!
//! A round ends with the kill once each kind of write has had a random
//! number (1 to [`MAX_ACKS_PER_ROUND`]) of acknowledgements in it, while
//! the next writes of every kind are in flight: the kill lands at a
//! random point of the server's work, and every round makes progress
//! however slow the machine is (a kill after a fixed time made no
//! progress on a loaded machine, where a round could end before anything
//! was acknowledged).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use satchel_names::Target;
use sha2::{Digest, Sha256};

use crate::harness::*;

/// Bundles prepared (publishes attempted at most).
const MAX_SERIAL: u64 = 120;
/// SIGKILLs at least.
const MIN_KILLS: usize = 15;
/// Acknowledged writes each kind must reach.
const WANT_ACKED: usize = 50;
/// A round is killed after 1 to this many acknowledgements of each kind.
const MAX_ACKS_PER_ROUND: usize = 6;
/// Longest a round may wait for its acknowledgements (a hung server or a
/// writer that stopped, not a slow machine: every write is a few ms).
const ROUND_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Ledger {
    /// Highest serial acknowledged with 201.
    acked_serial: u64,
    /// Highest serial sent (acknowledged or not).
    attempted_serial: u64,
    /// Publishes acknowledged.
    publishes: usize,
    /// (id, sha256) of every acknowledged upload.
    uploads: Vec<(String, String)>,
    /// Reports acknowledged with 202.
    reports: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_acknowledged() {
    let w = World::new();
    let t = Target::Host(mac(1));
    let bundles: Arc<Vec<Vec<u8>>> = Arc::new(
        (1..=MAX_SERIAL)
            .map(|s| w.bundle_sized(&t, None, s, 2048 + (s as usize * 97) % 4096))
            .collect(),
    );
    let data = w.path().join("data");
    let cfg = w.config(
        &data,
        "upload_burst_per_source = 100000\nupload_per_minute_per_source = 100000\n\
         anonymous_burst_per_source = 100000\nmax_pending_uploads_per_mac = 100000\n\
         anonymous_max_pending_uploads_per_mac = 100000\n",
    );
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Bumped on every acknowledgement, so the round can wait for them.
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0u64);
    let acked_tx = Arc::new(acked_tx);
    let reporter_cert = w.host(3, None);
    let mut rng = rand::thread_rng();
    let mut rounds = 0;
    loop {
        let srv = Server::start(&cfg);
        let admin = Client::new(&w, srv.addr, Some(&w.admin));
        check_state(&w, &admin, &t, &ledger, &bundles).await;
        let (done_pub, done_up) = {
            let l = ledger.lock().expect("lock");
            (
                l.publishes >= WANT_ACKED || l.attempted_serial >= MAX_SERIAL,
                l.uploads.len() >= WANT_ACKED,
            )
        };
        if done_pub && done_up && rounds >= MIN_KILLS {
            let l = ledger.lock().expect("lock");
            eprintln!(
                "crash test: {rounds} SIGKILLs, {} publishes, {} uploads and {} reports acknowledged, {} publishes attempted",
                l.publishes,
                l.uploads.len(),
                l.reports,
                l.attempted_serial
            );
            assert!(l.reports >= WANT_ACKED as u64, "only {} reports", l.reports);
            assert!(
                l.publishes >= WANT_ACKED,
                "only {} publishes acknowledged",
                l.publishes
            );
            break;
        }
        rounds += 1;
        assert!(rounds < 60, "not enough progress");
        let at_start = counts(&ledger);
        let publisher = {
            let (admin, ledger, bundles, t, acked_tx) = (
                admin.clone(),
                ledger.clone(),
                bundles.clone(),
                t.clone(),
                acked_tx.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let serial = {
                        let mut l = ledger.lock().expect("lock");
                        if l.attempted_serial >= MAX_SERIAL {
                            return;
                        }
                        l.attempted_serial += 1;
                        l.attempted_serial
                    };
                    let body = Bytes::from(bundles[(serial - 1) as usize].clone());
                    match admin
                        .try_request("PUT", &format!("/v1/bundles/{t}"), body, &[])
                        .await
                    {
                        Ok((201, _, _)) => {
                            let mut l = ledger.lock().expect("lock");
                            l.acked_serial = l.acked_serial.max(serial);
                            l.publishes += 1;
                            drop(l);
                            acked_tx.send_modify(|n| *n += 1);
                        }
                        Ok((st, _, b)) => {
                            panic!("publish {serial}: {st} {}", String::from_utf8_lossy(&b))
                        }
                        Err(_) => return,
                    }
                    let pause = rand::random::<u64>() % 8;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        };
        let uploader = {
            let (admin, ledger, acked_tx) = (
                Client::new(&w, srv.addr, None),
                ledger.clone(),
                acked_tx.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u32;
                loop {
                    i += 1;
                    let body: Vec<u8> =
                        (0..1000 + i % 3000).map(|_| rand::random::<u8>()).collect();
                    let sha = hex::encode(Sha256::digest(&body));
                    match admin
                        .try_request("POST", &format!("/v1/uploads/{}", mac(2)), body, &[])
                        .await
                    {
                        Ok((201, _, b)) => {
                            let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
                            let id = v["id"].as_str().expect("id").to_string();
                            ledger.lock().expect("lock").uploads.push((id, sha));
                            acked_tx.send_modify(|n| *n += 1);
                        }
                        Ok((st, _, b)) => panic!("upload: {st} {}", String::from_utf8_lossy(&b)),
                        Err(_) => return,
                    }
                    let pause = rand::random::<u64>() % 8;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        };
        let reporter = {
            let (host, ledger, acked_tx) = (
                Client::new(&w, srv.addr, Some(&reporter_cert)),
                ledger.clone(),
                acked_tx.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let body = format!(
                        r#"{{"report_id":"{:032x}","status":"applied"}}"#,
                        rand::random::<u128>()
                    );
                    match host
                        .try_request("POST", &format!("/v1/reports/{}", mac(3)), body, &[])
                        .await
                    {
                        Ok((202, _, _)) => {
                            ledger.lock().expect("lock").reports += 1;
                            acked_tx.send_modify(|n| *n += 1);
                        }
                        Ok((st, _, b)) => panic!("report: {st} {}", String::from_utf8_lossy(&b)),
                        Err(_) => return,
                    }
                    let pause = rand::random::<u64>() % 8;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        };
        let want = rng.gen_range(1..=MAX_ACKS_PER_ROUND);
        let waited = tokio::time::timeout(ROUND_LIMIT, async {
            loop {
                let now = counts(&ledger);
                let publishes_over = now.publishing_done;
                if (publishes_over || now.publishes >= at_start.publishes + want)
                    && now.uploads >= at_start.uploads + want
                    && now.reports >= at_start.reports + want as u64
                {
                    return;
                }
                if acked_rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "round {rounds}: {want} acknowledgements of each kind not seen within {ROUND_LIMIT:?} \
             (at the start {at_start:?}, now {:?})",
            counts(&ledger)
        );
        // A little jitter, so the kill does not always follow an answer.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
        srv.kill9();
        let _ = tokio::time::timeout(Duration::from_secs(10), publisher).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), uploader).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), reporter).await;
    }
}

/// What the ledger counts, at one moment.
#[derive(Debug, Clone, Copy)]
struct Counts {
    publishes: usize,
    uploads: usize,
    reports: u64,
    /// Every prepared bundle was sent: no more publishes will come.
    publishing_done: bool,
}

fn counts(ledger: &Mutex<Ledger>) -> Counts {
    let l = ledger.lock().expect("lock");
    Counts {
        publishes: l.publishes,
        uploads: l.uploads.len(),
        reports: l.reports,
        publishing_done: l.attempted_serial >= MAX_SERIAL,
    }
}

async fn check_state(
    w: &World,
    admin: &Client,
    t: &Target,
    ledger: &Arc<Mutex<Ledger>>,
    bundles: &Arc<Vec<Vec<u8>>>,
) {
    let (acked, attempted, uploads, reports) = {
        let l = ledger.lock().expect("lock");
        (
            l.acked_serial,
            l.attempted_serial,
            l.uploads.clone(),
            l.reports,
        )
    };
    // Every acknowledged report is counted in the inventory (a report
    // stored but not acknowledged before the kill may add more).
    let nodes = admin.json("GET", "/v1/nodes").await;
    let counted = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["mac"] == mac(3).to_string())
        .map(|n| n["reports"].as_u64().expect("count"))
        .unwrap_or(0);
    assert!(
        counted >= reports,
        "inventory counts {counted} reports, {reports} acknowledged"
    );
    let (st, h, body) = admin
        .request("GET", &format!("/v1/bundles/{t}"), Bytes::new())
        .await;
    if attempted == 0 {
        assert_eq!(st, 404);
    } else if st == 404 {
        assert_eq!(acked, 0, "an acknowledged bundle is gone");
    } else {
        assert_eq!(st, 200);
        let serial: u64 = h["x-satchel-serial"]
            .to_str()
            .expect("s")
            .parse()
            .expect("n");
        assert!(
            serial >= acked && serial <= attempted,
            "served {serial}, acked {acked}, attempted {attempted}"
        );
        assert_eq!(
            body.as_ref(),
            bundles[(serial - 1) as usize].as_slice(),
            "served bytes are one whole published version"
        );
        let mut checks = satchel_format::verify::Checks::new(vec![w.signer.verifying_key()]);
        checks.target = Some(t.clone());
        satchel_format::open::verify_reader(body.as_ref(), &checks)
            .expect("served bundle verifies");
        // Serials never go back: the served one cannot be published again.
        let again = bundles[(serial - 1) as usize].clone();
        assert_eq!(
            admin
                .status("PUT", &format!("/v1/bundles/{t}"), again)
                .await,
            409
        );
    }
    let list = admin.json("GET", "/v1/uploads").await;
    let present: std::collections::HashMap<String, String> = list["uploads"]
        .as_array()
        .expect("uploads")
        .iter()
        .map(|u| {
            (
                u["id"].as_str().expect("id").to_string(),
                u["sha256"].as_str().expect("sha").to_string(),
            )
        })
        .collect();
    for (id, sha) in &uploads {
        assert_eq!(
            present.get(id),
            Some(sha),
            "acknowledged upload {id} missing or changed"
        );
    }
    // Spot-check content of the last few.
    for (id, sha) in uploads.iter().rev().take(3) {
        let (st, _, b) = admin
            .request("GET", &format!("/v1/uploads/{id}"), Bytes::new())
            .await;
        assert_eq!(st, 200);
        assert_eq!(&hex::encode(Sha256::digest(&b)), sha);
    }
}
