//! One address cannot lock the nodes out: while 127.0.0.2 holds more idle
//! TCP connections than the server has connection slots, never starting a
//! TLS handshake, real `satchel-fetch` processes from 127.0.0.1 still find
//! the real server by SRV, apply their bundles and report. The server sheds
//! the flood at accept, past `max_handshakes_per_source`, and says so in
//! `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use satchel_format::{Identities, Mac, Recipient, SigningKey, Target};
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::client;
use satchel_tests::dns::DnsServer;
use satchel_tests::harness;
use satchel_tests::node;
use satchel_tests::node::tree;

const SERVER_NAME: &str = "cfg.boot.test";
const DOMAIN: &str = "boot.test";
const KILL_AFTER: Duration = Duration::from_secs(120);
/// Idle connections the flooding address opens and holds.
const FLOOD: usize = 200;
/// The server's connection limit in this test: below the flood.
const MAX_CONNECTIONS: usize = 100;
/// The per-source handshake cap in this test.
const PER_SOURCE: usize = 16;
/// Real fetchers that boot during the flood, at once.
const NODES: u8 = 3;

/// One GET of the plain-HTTP metrics endpoint.
fn metrics(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    out
}

/// Opens `n` connections from `source` to `server` and keeps them, idle.
fn flood(
    rt: &tokio::runtime::Runtime,
    source: &str,
    server: SocketAddr,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    rt.block_on(async {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind(source.parse().expect("source address"))
                .expect("bind the flooding address");
            held.push(sock.connect(server).await.expect("connect"));
        }
        held
    })
}

#[test]
fn real_fetchers_boot_while_one_address_holds_every_connection_slot() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let (ca, admin) = harness::server_pki(d, SERVER_NAME);
    let signer = SigningKey::generate();
    std::fs::write(
        d.join("signer.pub"),
        signer.verifying_key().to_pem().as_bytes(),
    )
    .expect("signer");
    let admin_id = Identities::generate();
    let admin_rcpt = admin_id.recipients()[0].to_string();

    let extra = format!(
        "max_connections = {MAX_CONNECTIONS}\nmax_handshakes_per_source = {PER_SOURCE}\n\
         handshake_timeout_secs = 60\n"
    );
    let (addr, server) = harness::start_server(d, &extra, KILL_AFTER);
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("ready.json")).expect("ready"))
            .expect("ready JSON");
    let metrics_addr = ready["metrics"]
        .as_str()
        .expect("metrics address")
        .to_string();
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let admin_cert = (admin.cert_pem.as_bytes(), admin.key_pem.expose().as_bytes());
    let admin = client::Admin {
        addr,
        server_name: SERVER_NAME,
        ca_pem: &ca_pem,
        cert: admin_cert,
    };
    let (dns, _dns) = DnsServer::for_server(DOMAIN, SERVER_NAME, addr.port()).expect("dns");

    // Each node: its image from `enroll`, its bundle, published, its root.
    let macs: Vec<Mac> = (1..=NODES)
        .map(|i| Mac::parse(&format!("52-54-00-f1-00-{i:02x}")).expect("mac"))
        .collect();
    for (i, mac) in macs.iter().enumerate() {
        let n = d.join(format!("node{i}"));
        let enrolled = ca
            .enroll(&EnrollOptions {
                mac: Some(*mac),
                signers: vec![d.join("signer.pub")],
                admin_recipients: vec![admin_rcpt.clone()],
                domain: DOMAIN.into(),
                required: Some(vec![Target::Host(*mac)]),
                out: n.join("image"),
                ..Default::default()
            })
            .expect("enroll");
        let src = n.join("src/etc");
        std::fs::create_dir_all(&src).expect("src");
        std::fs::write(src.join("hostname"), format!("node-{i}\n")).expect("hostname");
        let mut recipients: Vec<Recipient> = enrolled
            .recipients
            .iter()
            .map(|(_, r)| Recipient::parse(r).expect("recipient"))
            .collect();
        recipients.push(Recipient::parse(&admin_rcpt).expect("admin recipient"));
        let bundle = n.join("host.bundle");
        node::seal_dir(
            &Target::Host(*mac),
            &n.join("src"),
            recipients,
            &signer,
            &bundle,
        );
        admin.publish(
            &format!("/v1/bundles/host/{mac}"),
            std::fs::read(&bundle).expect("bundle"),
        );
        let root = n.join("root");
        std::fs::create_dir_all(root.join("etc")).expect("root");
        std::fs::write(root.join("etc/hostname"), b"image-default\n").expect("hostname");
        std::fs::write(
            n.join("cmdline"),
            format!(
                "ro satchel.dns={dns} satchel.root={} satchel.timeout=60\n",
                root.display()
            ),
        )
        .expect("cmdline");
        std::fs::write(n.join("kmsg"), b"").expect("kmsg");
    }

    // 127.0.0.2 takes more connections than there are slots and holds them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let held = flood(&rt, "127.0.0.2:0", addr, FLOOD);
    let want = format!(
        "satchel_connections_shed_total{{reason=\"per_source_handshakes\"}} {}",
        FLOOD - PER_SOURCE
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(&metrics_addr);
        if text.lines().any(|l| l == want) {
            assert!(
                text.lines()
                    .any(|l| l == format!("satchel_handshakes_in_progress {PER_SOURCE}")),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never shed the flood:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The nodes boot meanwhile, all at once, with the real fetcher.
    let procs: Vec<harness::Proc> = (0..macs.len())
        .map(|i| {
            let n = d.join(format!("node{i}"));
            harness::Proc::spawn(harness::node_fetcher(&n, &[]), KILL_AFTER).expect("fetcher")
        })
        .collect();
    for (i, p) in procs.into_iter().enumerate() {
        let f = p.wait();
        assert_eq!(
            f.code(),
            0,
            "node {i} did not boot during the flood:\n{}\nserver:\n{}",
            f.stderr,
            server.stderr_so_far()
        );
        let t = tree(&d.join(format!("node{i}/root")));
        assert!(
            t.contains(&("etc/hostname".into(), format!("node-{i}\n"))),
            "{t:?}"
        );
    }
    // The flood's handshakes are still pending: the nodes got through beside it.
    let text = metrics(&metrics_addr);
    assert!(
        text.lines()
            .any(|l| l == format!("satchel_handshakes_in_progress {PER_SOURCE}")),
        "{text}"
    );
    for mac in &macs {
        let node = admin.node(&mac.to_string());
        assert_eq!(node["last_status"], "applied", "{node}");
    }
    drop(held);
}
