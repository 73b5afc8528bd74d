//! Three stateless replicas behind one SRV name, on a 3-member etcd
//! cluster, and a boot storm of real `satchel-fetch` processes: while the
//! storm runs one replica is SIGKILLed and one etcd member is killed, each
//! when a given number of nodes has booted (events, not clocks). Every node
//! still boots (its root has its bundle's files; a fetcher whose replica
//! died moves to the next SRV target), every node's report is in the
//! inventory of both surviving replicas, and the engine's webhook received
//! every report (at least once; a duplicate carries the same report id).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use satchel_format::{Identities, Mac, Recipient, SigningKey, Target};
use satchel_pki::ca::Ca;
use satchel_pki::enroll::EnrollOptions;
use satchel_pki::AdminName;
use satchel_test_support::engine::{start_receiver, unique, Seen};
use satchel_test_support::{wait_until, EtcdCluster};
use satchel_tests::client;
use satchel_tests::dns::{DnsRecord, DnsServer};
use satchel_tests::harness::{self, Proc};
use satchel_tests::node::{self, tree};

const DOMAIN: &str = "boot.test";
/// Replicas, each its own SRV target (same priority and weight).
const REPLICAS: usize = 3;
/// Nodes that boot in the storm.
const NODES: usize = 60;
/// Fetchers running at once (2 cores run the replicas, etcd and them).
const AT_ONCE: usize = 12;
/// Nodes booted when replica 0 is SIGKILLed.
const KILL_REPLICA_AFTER: usize = 15;
/// Nodes booted when etcd member 1 is killed.
const KILL_ETCD_AFTER: usize = 30;
/// Longest any process of the test may live.
const KILL_AFTER: Duration = Duration::from_secs(600);
/// The fetcher's own deadline (`satchel.timeout`), generous for a loaded
/// machine: the test is about failing over, not about speed.
const FETCH_TIMEOUT_SECS: u32 = 240;
/// Longest the surviving replicas and the engine may take to show every
/// report once the last fetcher exited.
const SETTLE: Duration = Duration::from_secs(60);

/// The replicas' names in DNS and in their certificate.
fn replica_name(i: usize) -> String {
    format!("cfg{}.{DOMAIN}", i + 1)
}

/// Writes `name` into `dir`.
fn write(dir: &Path, name: &str, text: &[u8]) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// The CA, one server certificate naming every replica, an admin
/// certificate, the CRL and the bundle signer, in `d` under the names
/// [`harness::start_server`] reads. Returns the CA and the admin's
/// certificate and key.
fn pki(d: &Path, signer: &SigningKey) -> (Ca, (String, String)) {
    let ca = Ca::init_insecure(&d.join("ca"), "satchel test CA").expect("test CA");
    write(d, "ca.pem", ca.cert_pem().as_bytes());
    let names: Vec<String> = (0..REPLICAS).map(replica_name).collect();
    let server = ca
        .issue_server(&names, &[std::net::Ipv4Addr::LOCALHOST.into()], None)
        .expect("server certificate");
    write(d, "server.crt", server.cert_pem.as_bytes());
    write(d, "server.key", server.key_pem.expose().as_bytes());
    write(d, "crl.pem", ca.crl(None).expect("CRL").pem.as_bytes());
    write(d, "signer.pub", signer.verifying_key().to_pem().as_bytes());
    let admin = ca
        .issue_admin(AdminName::parse("alice").expect("admin name"), None)
        .expect("admin certificate");
    (
        ca,
        (admin.cert_pem.clone(), admin.key_pem.expose().to_string()),
    )
}

/// One node of the storm: its directory (image, cmdline, kmsg, root).
struct Node {
    mac: Mac,
    dir: PathBuf,
}

/// Enrolls node `i`, seals its host bundle (its own hostname) to it and
/// the admins, and lays out its inputs; returns the node and its bundle.
fn node(
    d: &Path,
    ca: &Ca,
    signer: &SigningKey,
    admin_rcpt: &str,
    dns: SocketAddr,
    i: usize,
) -> (Node, Vec<u8>) {
    let mac = Mac::from_octets([0x52, 0x54, 0x00, 0x5e, (i >> 8) as u8, i as u8]);
    let dir = d.join(format!("node{i}"));
    let enrolled = ca
        .enroll(&EnrollOptions {
            mac: Some(mac),
            signers: vec![d.join("signer.pub")],
            admin_recipients: vec![admin_rcpt.to_string()],
            domain: DOMAIN.into(),
            required: Some(vec![Target::Host(mac)]),
            out: dir.join("image"),
            ..Default::default()
        })
        .expect("enroll");
    let src = dir.join("src/etc");
    std::fs::create_dir_all(&src).expect("src");
    write(&src, "hostname", format!("node-{i}\n").as_bytes());
    let mut recipients: Vec<Recipient> = enrolled
        .recipients
        .iter()
        .map(|(_, r)| Recipient::parse(r).expect("recipient"))
        .collect();
    recipients.push(Recipient::parse(admin_rcpt).expect("admin recipient"));
    let bundle = dir.join("host.bundle");
    node::seal_dir(
        &Target::Host(mac),
        &dir.join("src"),
        recipients,
        signer,
        &bundle,
    );
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).expect("root");
    write(&root, "etc/hostname", b"image-default\n");
    write(
        &dir,
        "cmdline",
        format!(
            "ro satchel.dns={dns} satchel.root={} satchel.timeout={FETCH_TIMEOUT_SECS}\n",
            root.display()
        )
        .as_bytes(),
    );
    write(&dir, "kmsg", b"");
    let bytes = std::fs::read(&bundle).expect("bundle");
    (Node { mac, dir }, bytes)
}

/// The report id a fetcher's log says it delivered.
fn report_sent(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let rest = l.split("report ").nth(1)?;
        let id = rest.strip_suffix(" sent")?;
        (!id.is_empty() && !id.contains(' ')).then(|| id.to_string())
    })
}

/// `GET /v1/nodes` through replica `addr`: each MAC's record.
fn inventory(
    addr: SocketAddr,
    ca_pem: &[u8],
    admin: (&[u8], &[u8]),
) -> Result<HashMap<String, serde_json::Value>, String> {
    let (status, body) = client::request(
        addr,
        &replica_name(0),
        ca_pem,
        Some(admin),
        "GET",
        "/v1/nodes",
        Vec::new(),
    )?;
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Some((n["mac"].as_str()?.to_string(), n)))
        .collect())
}

#[test]
fn a_boot_storm_survives_a_replica_and_an_etcd_member_killed() {
    let started = Instant::now();
    let tmp = harness::tempdir();
    let d = tmp.path();
    let signer = SigningKey::generate();
    let (ca, (admin_cert, admin_key)) = pki(d, &signer);
    let admin_rcpt = Identities::generate().recipients()[0].to_string();
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let admin = (admin_cert.as_bytes(), admin_key.as_bytes());

    // The engine: a webhook receiver on a reserved port.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (_engine_port, engine) = satchel_test_support::reserved_reuseport();
    let seen: Seen = Default::default();
    let receiver = {
        let _in_rt = rt.enter();
        start_receiver(engine, seen.clone())
    };

    // etcd, and three replicas sharing one prefix on it.
    let mut cluster = EtcdCluster::start(3);
    let endpoints: Vec<String> = cluster
        .endpoints()
        .split(',')
        .map(|e| format!("{e:?}"))
        .collect();
    let extra = format!(
        "store = \"etcd\"\netcd_endpoints = [{}]\netcd_prefix = \"/satchel-storm/\"\n\
         engine_webhook = \"http://{engine}/hook\"\netcd_forwarder_lease_secs = 2\n\
         forward_backoff_initial_ms = 50\nforward_backoff_max_secs = 1\n",
        endpoints.join(", ")
    );
    let mut replicas: Vec<Option<(SocketAddr, Proc)>> = (0..REPLICAS)
        .map(|i| {
            let r = d.join(format!("replica{i}"));
            std::fs::create_dir_all(&r).expect("replica dir");
            for f in [
                "ca.pem",
                "server.crt",
                "server.key",
                "crl.pem",
                "signer.pub",
            ] {
                std::fs::copy(d.join(f), r.join(f)).expect("copy the server's files");
            }
            Some(harness::start_server(&r, &extra, KILL_AFTER))
        })
        .collect();
    let addrs: Vec<SocketAddr> = replicas.iter().flatten().map(|(a, _)| *a).collect();

    // One SRV name, one target per replica.
    let srv = format!("_satchel._tcp.{DOMAIN}");
    let mut records = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        records.push(DnsRecord::srv(&srv, 10, 10, a.port(), &replica_name(i)));
        records.push(DnsRecord::a(&replica_name(i), [127, 0, 0, 1]));
    }
    let (dns, _dns) = DnsServer::start(records).expect("dns");

    // The nodes, each bundle published through one replica in turn.
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let (n, bundle) = node(d, &ca, &signer, &admin_rcpt, dns, i);
        let through = client::Admin {
            addr: addrs[i % REPLICAS],
            server_name: &replica_name(i % REPLICAS),
            ca_pem: &ca_pem,
            cert: admin,
        };
        through.publish(&format!("/v1/bundles/host/{}", n.mac), bundle);
        nodes.push(n);
    }
    let prepared = started.elapsed();

    // The storm: AT_ONCE fetchers at a time, each waited for on its own
    // thread, which says when it is done; the kills follow those events.
    let storm = Instant::now();
    let (done_tx, done_rx) = mpsc::channel::<(usize, harness::Finished)>();
    let spawn = |i: usize| {
        let p = Proc::spawn(harness::node_fetcher(&nodes[i].dir, &[]), KILL_AFTER)
            .expect("spawn satchel-fetch");
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((i, p.wait()));
        });
    };
    let mut next = 0;
    while next < AT_ONCE.min(NODES) {
        spawn(next);
        next += 1;
    }
    let mut finished: Vec<Option<harness::Finished>> = (0..NODES).map(|_| None).collect();
    let mut booted = 0;
    // In which order the nodes finished booting.
    let mut rank = vec![0; NODES];
    let mut killed_replica_at = None;
    let mut killed_etcd_at = None;
    while booted < NODES {
        let (i, f) = done_rx
            .recv_timeout(KILL_AFTER)
            .expect("a fetcher to finish");
        assert_eq!(
            f.code(),
            0,
            "node {i} did not boot:\n{}\nreplica logs:\n{}",
            f.stderr,
            replicas
                .iter()
                .flatten()
                .map(|(_, p)| p.stderr_so_far())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        finished[i] = Some(f);
        rank[i] = booted;
        booted += 1;
        if booted == KILL_REPLICA_AFTER {
            if let Some((_, p)) = replicas[0].take() {
                p.kill();
            }
            killed_replica_at = Some(storm.elapsed());
        }
        if booted == KILL_ETCD_AFTER {
            cluster.kill(1);
            killed_etcd_at = Some(storm.elapsed());
        }
        if next < NODES {
            spawn(next);
            next += 1;
        }
    }
    let storm_took = storm.elapsed();
    assert!(killed_replica_at.is_some() && killed_etcd_at.is_some());

    // Every node booted: its root has its own bundle's file, and its
    // fetcher says which report it delivered.
    let mut sent = Vec::new();
    // Fetchers that tried the dead replica (and then another), and that
    // were answered 503 while etcd lost a member.
    let mut failovers = 0;
    let mut told_to_retry = 0;
    // The fetchers' own boot times (their "applied in N ms"), of those that
    // met the dead replica and of the others: what failing over cost them.
    let mut failover_ms = Vec::new();
    let mut direct_ms = Vec::new();
    let via_dead = format!("via {}:{} ", replica_name(0), addrs[0].port());
    for (i, f) in finished.iter().enumerate() {
        let f = f.as_ref().expect("every node finished");
        let t = tree(&nodes[i].dir.join("root"));
        assert!(
            t.contains(&("etc/hostname".into(), format!("node-{i}\n"))),
            "node {i}: {t:?}\n{}",
            f.stderr
        );
        let id = report_sent(&f.stderr)
            .unwrap_or_else(|| panic!("node {i} delivered no report:\n{}", f.stderr));
        let warnings = || f.stderr.lines().filter(|l| l.contains("warning:"));
        let boot_ms = applied_ms(&f.stderr);
        if warnings().any(|l| l.contains(&via_dead)) {
            failovers += 1;
            failover_ms.extend(boot_ms);
        } else {
            direct_ms.extend(boot_ms);
        }
        if warnings().any(|l| l.contains("503")) {
            told_to_retry += 1;
        }
        sent.push((nodes[i].mac.to_string(), id));
    }

    assert!(
        failovers > 0,
        "no fetcher met the killed replica: the storm did not test failing over"
    );

    // Both surviving replicas hold every node's report.
    for (r, addr) in addrs.iter().enumerate().skip(1) {
        let mut last = String::new();
        wait_until(
            &format!("replica {r} to list every node's report"),
            SETTLE,
            || match inventory(*addr, &ca_pem, admin) {
                Ok(inv) => {
                    let missing: Vec<&String> = sent
                        .iter()
                        .filter(|(mac, id)| {
                            inv.get(mac).is_none_or(|n| {
                                n["last_status"] != "applied" || n["last_report_id"] != **id
                            })
                        })
                        .map(|(mac, _)| mac)
                        .collect();
                    last = format!("{} missing: {missing:?}", missing.len());
                    missing.is_empty()
                }
                Err(e) => {
                    last = e;
                    false
                }
            },
        );
        eprintln!("replica {r}: every report listed ({last})");
    }

    // The engine received every report, duplicates told by their id.
    wait_until("the engine to receive every report", SETTLE, || {
        let u = unique(&seen);
        sent.iter().all(|(_, id)| u.contains_key(id))
    });
    let u = unique(&seen);
    let duplicates: usize = sent
        .iter()
        .map(|(_, id)| u.get(id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    // Which nodes' reports came twice: booted before the replica died,
    // before the etcd member died, after.
    let mut duplicated = [0usize; 3];
    for (i, (_, id)) in sent.iter().enumerate() {
        if u.get(id).is_some_and(|n| *n > 1) {
            let phase = match rank[i] {
                r if r < KILL_REPLICA_AFTER => 0,
                r if r < KILL_ETCD_AFTER => 1,
                _ => 2,
            };
            duplicated[phase] += 1;
        }
    }
    eprintln!(
        "{NODES} nodes ({AT_ONCE} at once) booted in {storm_took:?} after {prepared:?} of \
         set-up; replica 0 SIGKILLed at {killed_replica_at:?}, etcd member 1 killed at \
         {killed_etcd_at:?}; {failovers} fetchers met the dead replica and moved on, \
         {told_to_retry} were answered 503 and tried again; engine: {} deliveries of {} reports, {duplicates} duplicates (reports \
         duplicated, by the nodes' boot: before the replica's kill {}, before etcd's {}, \
         after {})",
        seen.lock().map(|s| s.len()).unwrap_or(0),
        sent.len(),
        duplicated[0],
        duplicated[1],
        duplicated[2],
    );
    eprintln!(
        "boot time of a fetcher that met the dead replica: {}; of the others: {}",
        spread(&mut failover_ms),
        spread(&mut direct_ms)
    );
    receiver.abort();
    drop(replicas);
}

/// The fetcher's own "applied in N ms" figure, if it printed one.
fn applied_ms(stderr: &str) -> Option<u64> {
    let rest = stderr.split("applied in ").nth(1)?;
    rest.split(" ms").next()?.trim().parse().ok()
}

/// "median M ms, max X ms (n)" of `ms`.
fn spread(ms: &mut [u64]) -> String {
    ms.sort_unstable();
    match (ms.get(ms.len() / 2), ms.last()) {
        (Some(m), Some(x)) => format!("median {m} ms, max {x} ms ({})", ms.len()),
        _ => "none".into(),
    }
}
