//! An in-process authoritative DNS server for tests, on 127.0.0.1, serving
//! SRV, A and AAAA records over UDP and TCP on one port.
//!
//! It runs on its own thread with its own tokio runtime, so both plain and
//! async tests can use it; dropping the [`DnsServer`] stops it. It answers
//! for every name (its zone is the root), so an unknown name gets NXDOMAIN
//! from it rather than a query to anywhere else. It binds loopback only.
//!
//! ```no_run
//! use satchel_tests::dns::{DnsRecord, DnsServer};
//! let (addr, _dns) = DnsServer::start(vec![
//!     DnsRecord::srv("_satchel._tcp.boot.test", 10, 100, 8443, "cfg1.boot.test"),
//!     DnsRecord::a("cfg1.boot.test", [127, 0, 0, 1]),
//! ]).expect("dns");
//! // pass `satchel.dns={addr}` to the fetcher
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;

/// TTL of every record served.
const TTL: u32 = 60;
/// Idle timeout of a TCP DNS connection.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries at finding a port free for both UDP and TCP.
const BIND_TRIES: usize = 20;

/// One record to serve.
#[derive(Clone, Debug)]
pub enum DnsRecord {
    /// `name SRV priority weight port target`.
    Srv {
        /// Owner name, e.g. `_satchel._tcp.boot.test`.
        name: String,
        /// Priority (lower first).
        priority: u16,
        /// Weight within a priority.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host name (`.` for "not available").
        target: String,
    },
    /// `name A ip`.
    A {
        /// Owner name.
        name: String,
        /// Address.
        ip: Ipv4Addr,
    },
    /// `name AAAA ip`.
    Aaaa {
        /// Owner name.
        name: String,
        /// Address.
        ip: Ipv6Addr,
    },
}

impl DnsRecord {
    /// An SRV record.
    pub fn srv(name: &str, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        DnsRecord::Srv {
            name: name.into(),
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    /// An A record.
    pub fn a(name: &str, ip: [u8; 4]) -> Self {
        DnsRecord::A {
            name: name.into(),
            ip: Ipv4Addr::from(ip),
        }
    }

    /// An AAAA record.
    pub fn aaaa(name: &str, ip: Ipv6Addr) -> Self {
        DnsRecord::Aaaa {
            name: name.into(),
            ip,
        }
    }
}

fn fqdn(s: &str) -> Result<Name, String> {
    let s = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    Name::from_str(&s).map_err(|e| format!("bad DNS name {s:?}: {e}"))
}

fn to_record(r: &DnsRecord) -> Result<Record, String> {
    Ok(match r {
        DnsRecord::Srv {
            name,
            priority,
            weight,
            port,
            target,
        } => Record::from_rdata(
            fqdn(name)?,
            TTL,
            RData::SRV(SRV::new(*priority, *weight, *port, fqdn(target)?)),
        ),
        DnsRecord::A { name, ip } => Record::from_rdata(fqdn(name)?, TTL, RData::A(A(*ip))),
        DnsRecord::Aaaa { name, ip } => {
            Record::from_rdata(fqdn(name)?, TTL, RData::AAAA(AAAA(*ip)))
        }
    })
}

/// A running DNS server; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn bind_pair() -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..BIND_TRIES {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

impl DnsServer {
    /// Starts a server for `records` on 127.0.0.1 (UDP and TCP, one port).
    /// Returns its address and the handle that keeps it running.
    pub fn start(records: Vec<DnsRecord>) -> std::io::Result<(SocketAddr, DnsServer)> {
        Self::start_on(records, true)
    }

    /// Serves what a node needs to find one server: `_satchel._tcp.<domain>`
    /// SRV (priority 10, weight 10) naming `name` at `port`, and `name`'s A
    /// record on 127.0.0.1.
    pub fn for_server(
        domain: &str,
        name: &str,
        port: u16,
    ) -> std::io::Result<(SocketAddr, DnsServer)> {
        Self::start(vec![
            DnsRecord::srv(&format!("_satchel._tcp.{domain}"), 10, 10, port, name),
            DnsRecord::a(name, [127, 0, 0, 1]),
        ])
    }

    /// Like [`DnsServer::start`], but serving TCP only (for networks that
    /// pass only TCP; a UDP query to the port gets no answer).
    pub fn start_tcp_only(records: Vec<DnsRecord>) -> std::io::Result<(SocketAddr, DnsServer)> {
        Self::start_on(records, false)
    }

    fn start_on(
        records: Vec<DnsRecord>,
        udp_too: bool,
    ) -> std::io::Result<(SocketAddr, DnsServer)> {
        let root = Name::root();
        let mut zone =
            InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::empty(
                root.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
            );
        let soa = SOA::new(
            fqdn("ns.test").map_err(std::io::Error::other)?,
            fqdn("hostmaster.test").map_err(std::io::Error::other)?,
            1,
            3600,
            600,
            86400,
            TTL,
        );
        zone.upsert_mut(Record::from_rdata(root.clone(), TTL, RData::SOA(soa)), 1);
        for r in &records {
            let rec = to_record(r).map_err(std::io::Error::other)?;
            if !zone.upsert_mut(rec, 1) {
                return Err(std::io::Error::other(format!("cannot add {r:?}")));
            }
        }
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = Arc::new(zone);
        catalog.upsert(LowerName::from(&root), vec![handler]);

        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("test-dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let sockets = (|| {
                        Ok::<_, std::io::Error>((
                            tokio::net::UdpSocket::from_std(udp)?,
                            tokio::net::TcpListener::from_std(tcp)?,
                        ))
                    })();
                    let (udp, tcp) = match sockets {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut server = Server::new(catalog);
                    // TCP only: the UDP socket stays bound, unserved, so that
                    // nothing else answers on the port.
                    let unserved = if udp_too {
                        server.register_socket(udp);
                        None
                    } else {
                        Some(udp)
                    };
                    server.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                    let _ = server.shutdown_gracefully().await;
                    drop(unserved);
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("DNS server thread died"))??;
        Ok((
            addr,
            DnsServer {
                addr,
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        ))
    }

    /// The address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
