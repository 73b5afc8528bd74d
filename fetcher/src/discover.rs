//! Finding the configuration server: DNS SRV `_satchel._tcp.<domain>`.
//!
//! The pure parts are [`pick_order`] (RFC 2782 target selection, randomness
//! passed in) and [`parse_resolv_conf`]; the network edge is [`Dns`], a
//! small wrapper over hickory-resolver that queries only the nameservers it
//! is given (no `/etc/hosts`, no search list, no system configuration).
//!
//! It does not connect to the targets: the caller tries them in the order
//! [`pick_order`] returns, every one before giving up.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::Resolver;
use rand::Rng;

/// The SRV service label the servers are published under.
pub const SRV_SERVICE: &str = "_satchel._tcp";
/// Most nameservers read from a resolv.conf.
pub const MAX_RESOLV_NAMESERVERS: usize = 8;
/// Largest resolv.conf read, in bytes.
pub const MAX_RESOLV_CONF_BYTES: u64 = 64 * 1024;
/// Most SRV records considered from one answer.
pub const MAX_SRV_RECORDS: usize = 64;
/// Most addresses tried per SRV target.
pub const MAX_ADDRS_PER_TARGET: usize = 4;

/// One SRV record's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share within a priority.
    pub weight: u16,
    /// TCP port.
    pub port: u16,
    /// Host name, lowercase, without the trailing dot.
    pub target: String,
}

/// Orders SRV targets as RFC 2782 says: by ascending priority; within one
/// priority, repeatedly pick a target at random with probability
/// proportional to its weight (weight-0 targets are placed first in the
/// running sum, so they are chosen first only when the random number is 0,
/// and in turn once they are all that is left).
pub fn pick_order<R: Rng + ?Sized>(records: &[SrvTarget], rng: &mut R) -> Vec<SrvTarget> {
    let mut sorted: Vec<SrvTarget> = records.to_vec();
    sorted.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(sorted.len());
    let mut i = 0;
    while i < sorted.len() {
        let prio = sorted[i].priority;
        let mut j = i;
        while j < sorted.len() && sorted[j].priority == prio {
            j += 1;
        }
        // Zero weights first, keeping the rest in their given order.
        let mut group: Vec<SrvTarget> = sorted[i..j].to_vec();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.gen_range(0..=total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (k, r) in group.iter().enumerate() {
                running += u32::from(r.weight);
                if running >= pick {
                    chosen = k;
                    break;
                }
            }
            out.push(group.remove(chosen));
        }
        i = j;
    }
    out
}

/// Parses resolv.conf text: the `nameserver` lines, in order, at most
/// [`MAX_RESOLV_NAMESERVERS`]. Comments (`#`, `;`), other directives and
/// unusable lines (link-local IPv6 with a zone, garbage) are skipped with a
/// warning each.
pub fn parse_resolv_conf(text: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut ips = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else {
            warnings.push(format!(
                "resolv.conf line {}: nameserver without address",
                n + 1
            ));
            continue;
        };
        match addr.parse::<IpAddr>() {
            Ok(ip) if ips.len() < MAX_RESOLV_NAMESERVERS => {
                if !ips.contains(&ip) {
                    ips.push(ip)
                }
            }
            Ok(_) => warnings.push(format!(
                "resolv.conf line {}: more than {MAX_RESOLV_NAMESERVERS} nameservers, ignored",
                n + 1
            )),
            Err(_) => warnings.push(format!(
                "resolv.conf line {}: {:?} is not a usable IP address",
                n + 1,
                addr.chars().take(64).collect::<String>()
            )),
        }
    }
    (ips, warnings)
}

/// Errors of the DNS edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// No nameserver to ask.
    #[error("no nameserver: set satchel.dns=IP or write nameserver lines in resolv.conf")]
    NoNameserver,
    /// The name cannot be a DNS name.
    #[error("{0:?} is not a valid DNS name")]
    BadName(String),
    /// The lookup failed (timeout, refused, NXDOMAIN, no records).
    #[error("DNS lookup of {name} {kind} failed: {reason}")]
    Lookup {
        /// What was asked.
        name: String,
        /// SRV, A/AAAA.
        kind: &'static str,
        /// What the resolver said.
        reason: String,
    },
    /// The SRV answer says the service is decidedly not available (target ".").
    #[error("SRV {0} says the service is not available (target \".\")")]
    NotAvailable(String),
}

/// How to ask DNS.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// The nameservers, tried in order.
    pub nameservers: Vec<SocketAddr>,
    /// Query over TCP only (some boot networks pass only TCP).
    pub tcp_only: bool,
    /// Timeout of one query to one nameserver.
    pub query_timeout: Duration,
    /// Attempts per nameserver.
    pub attempts: usize,
}

/// A resolver over the given nameservers only.
pub struct Dns {
    resolver: Resolver<TokioRuntimeProvider>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// Builds the resolver; UDP with TCP fallback, or TCP only.
    pub fn new(s: &DnsSettings) -> Result<Self, DiscoverError> {
        if s.nameservers.is_empty() {
            return Err(DiscoverError::NoNameserver);
        }
        let mut cfg = ResolverConfig::from_name_servers(Vec::new());
        for ns in &s.nameservers {
            let mut conns = Vec::new();
            if !s.tcp_only {
                let mut udp = ConnectionConfig::udp();
                udp.port = ns.port();
                conns.push(udp);
            }
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = ns.port();
            conns.push(tcp);
            cfg.add_name_server(NameServerConfig::new(ns.ip(), true, conns));
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = s.query_timeout;
        opts.attempts = s.attempts.max(1);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.try_tcp_on_error = true;
        opts.ndots = 0;
        opts.cache_size = 64;
        let mut b = Resolver::builder_with_config(cfg, TokioRuntimeProvider::default());
        *b.options_mut() = opts;
        let resolver = b.build().map_err(|e| DiscoverError::Lookup {
            name: String::new(),
            kind: "setup",
            reason: e.to_string(),
        })?;
        Ok(Dns { resolver })
    }

    /// Looks up `_satchel._tcp.<domain>` and returns its targets (unordered).
    pub async fn srv(&self, domain: &str) -> Result<Vec<SrvTarget>, DiscoverError> {
        let name = format!("{SRV_SERVICE}.{}.", domain.trim_end_matches('.'));
        let lookup = self
            .resolver
            .lookup(name.as_str(), RecordType::SRV)
            .await
            .map_err(|e| DiscoverError::Lookup {
                name: name.clone(),
                kind: "SRV",
                reason: e.to_string(),
            })?;
        let mut out = Vec::new();
        for rec in lookup.answers().iter().take(MAX_SRV_RECORDS) {
            if let RData::SRV(srv) = &rec.data {
                let target = srv.target.to_ascii();
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                out.push(SrvTarget {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target,
                });
            }
        }
        if out.len() == 1 && out[0].target.is_empty() {
            return Err(DiscoverError::NotAvailable(name));
        }
        out.retain(|t| !t.target.is_empty() && t.port != 0);
        if out.is_empty() {
            return Err(DiscoverError::Lookup {
                name,
                kind: "SRV",
                reason: "no usable SRV record".into(),
            });
        }
        Ok(out)
    }

    /// Resolves a host name to addresses (A and AAAA), at most
    /// [`MAX_ADDRS_PER_TARGET`]. An IP literal is returned as is.
    pub async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, DiscoverError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let name = format!("{}.", host.trim_end_matches('.'));
        let lookup =
            self.resolver
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| DiscoverError::Lookup {
                    name: name.clone(),
                    kind: "A/AAAA",
                    reason: e.to_string(),
                })?;
        Ok(lookup.iter().take(MAX_ADDRS_PER_TARGET).collect())
    }
}

#[cfg(test)]
mod tests;
