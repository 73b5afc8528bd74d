//! Parsing the kernel command line (`/proc/cmdline`) into [`BootParams`].
//!
//! A pure function over text: no file is read here. Splitting follows the
//! kernel's own rules: parameters are separated by ASCII whitespace, double
//! quotes group (`satchel.root="/a b"`) and are removed, and `-` and `_` are
//! the same in a parameter's name. A repeated key takes its last value,
//! except `satchel.dns`, which accumulates.
//!
//! Policy on bad input: the line as a whole is refused only when it cannot be
//! a command line at all (over [`MAX_CMDLINE_BYTES`], a NUL byte). A bad
//! value of a `satchel.*` key is an error (an operator typed it and must
//! hear about it); an unknown `satchel.*` key is a warning; a `BOOTIF=` that
//! is not an Ethernet MAC is a warning (the firmware wrote it, and the
//! interface scan is the fallback).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use satchel_names::Mac;

/// Largest command line accepted, in bytes (the kernel's own limit is
/// 2048–4096 on x86; anything far above that is not a command line).
pub const MAX_CMDLINE_BYTES: usize = 64 * 1024;
/// Most `satchel.dns=` entries honoured.
pub const MAX_DNS_SERVERS: usize = 8;
/// Longest `satchel.timeout=` accepted, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Most paths in `satchel.capture=`.
pub const MAX_CAPTURE_PATHS: usize = 64;
/// Default root the bundles are laid over.
pub const DEFAULT_ROOT: &str = "/sysroot";
/// Default DNS port.
pub const DNS_PORT: u16 = 53;

/// Errors that refuse the command line or one of its `satchel.*` values.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmdlineError {
    /// The text is longer than [`MAX_CMDLINE_BYTES`].
    #[error("kernel command line is {len} bytes, more than the {max} accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text holds a NUL byte.
    #[error("kernel command line holds a NUL byte at offset {0}")]
    Nul(usize),
    /// A `satchel.*` key has a value that cannot be used.
    #[error("{key}={value:?}: {reason}")]
    BadValue {
        /// The key, as normalised.
        key: String,
        /// The value (truncated to 64 characters).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

/// A `HOST:PORT` server address (host is a DNS name or an IP address;
/// IPv6 addresses are bracketed: `[::1]:8443`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// DNS name (lowercase, no trailing dot) or IP address literal.
    pub host: String,
    /// TCP port, 1–65535.
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// Parses `HOST:PORT`; the port is mandatory.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or("expected [IPv6]:PORT for an IPv6 address")?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
            (h.to_string(), p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
            if h.contains(':') {
                return Err("an IPv6 address must be bracketed: [IPv6]:PORT".into());
            }
            if h.parse::<IpAddr>().is_err() {
                check_dns_name(h)?;
            }
            (h.trim_end_matches('.').to_ascii_lowercase(), p)
        };
        Ok(HostPort {
            host,
            port: parse_port(port)?,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {p:?} is not a number 1-65535"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p:?} is not a number 1-65535")),
        Ok(n) => Ok(n),
    }
}

/// Checks a DNS name: 1–253 characters, labels of 1–63 `[A-Za-z0-9-_]`
/// not starting or ending with `-`; one trailing dot allowed.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 253 {
        return Err(format!(
            "{:?} is not a DNS name (1-253 characters)",
            shown(name)
        ));
    }
    for label in n.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-';
        if !ok {
            return Err(format!(
                "{:?} is not a DNS name (bad label {:?})",
                shown(name),
                shown(label)
            ));
        }
    }
    Ok(())
}

/// What the kernel command line tells the fetcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootParams {
    /// MAC from `BOOTIF=01-…`, if present and valid.
    pub bootif: Option<Mac>,
    /// `satchel.domain=`: overrides the config's SRV domain.
    pub domain: Option<String>,
    /// `satchel.server=HOST:PORT`: skip SRV and use this server.
    pub server: Option<HostPort>,
    /// `satchel.dns=IP[:PORT]`, repeatable: nameservers instead of resolv.conf.
    pub dns: Vec<SocketAddr>,
    /// `satchel.dns_tcp=1`: query DNS over TCP only.
    pub dns_tcp: bool,
    /// `satchel.root=`: where bundles are laid (default [`DEFAULT_ROOT`]).
    pub root: PathBuf,
    /// `satchel.required=0|1` (default 1): whether a failure stops the boot.
    pub required: bool,
    /// `satchel.timeout=SECONDS`: overall deadline.
    pub timeout: Option<Duration>,
    /// `satchel.capture=P1,P2,…`: default paths for `capture`.
    pub capture: Vec<PathBuf>,
    /// Things worth telling the operator that did not stop parsing.
    pub warnings: Vec<String>,
}

impl Default for BootParams {
    fn default() -> Self {
        BootParams {
            bootif: None,
            domain: None,
            server: None,
            dns: Vec::new(),
            dns_tcp: false,
            root: PathBuf::from(DEFAULT_ROOT),
            required: true,
            timeout: None,
            capture: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Splits a command line the way the kernel does: whitespace separates,
/// double quotes group and are dropped. Returns `(key, value)` pairs; a
/// parameter without `=` has value `None`.
pub fn split(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut started = false;
    let push = |cur: &mut String, out: &mut Vec<(String, Option<String>)>| {
        let p = std::mem::take(cur);
        match p.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((p, None)),
        }
    };
    for c in text.chars() {
        if c == '"' {
            in_quote = !in_quote;
            started = true;
        } else if c.is_ascii_whitespace() && !in_quote {
            if started {
                push(&mut cur, &mut out);
                started = false;
            }
        } else {
            cur.push(c);
            started = true;
        }
    }
    if started {
        push(&mut cur, &mut out);
    }
    out
}

fn parse_bool(key: &str, v: &str) -> Result<bool, CmdlineError> {
    match v {
        "1" | "y" | "yes" | "true" | "on" => Ok(true),
        "0" | "n" | "no" | "false" | "off" => Ok(false),
        _ => Err(bad(key, v, "expected 0 or 1")),
    }
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError::BadValue {
        key: key.to_string(),
        value: shown(value),
        reason: reason.into(),
    }
}

/// Parses a `satchel.dns=` value: `IP`, `IP:PORT`, `IPv6`, `[IPv6]:PORT`.
pub fn parse_dns(v: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    if let Ok(sa) = v.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err("port 0 is not a DNS port".into());
        }
        return Ok(sa);
    }
    Err("expected IP, IP:PORT or [IPv6]:PORT".into())
}

/// Parses the text of `/proc/cmdline`.
pub fn parse(text: &str) -> Result<BootParams, CmdlineError> {
    if text.len() > MAX_CMDLINE_BYTES {
        return Err(CmdlineError::TooLong {
            len: text.len(),
            max: MAX_CMDLINE_BYTES,
        });
    }
    if let Some(i) = text.find('\0') {
        return Err(CmdlineError::Nul(i));
    }
    let mut p = BootParams::default();
    for (raw_key, value) in split(text) {
        if raw_key == "BOOTIF" {
            match value.as_deref().map(|v| Mac::parse(&format!("BOOTIF={v}"))) {
                Some(Ok(m)) => p.bootif = Some(m),
                _ => p.warnings.push(format!(
                    "ignoring BOOTIF={:?}: not an Ethernet MAC in the 01-aa-bb-cc-dd-ee-ff form",
                    shown(value.as_deref().unwrap_or(""))
                )),
            }
            continue;
        }
        let Some(name) = raw_key.strip_prefix("satchel.") else {
            continue;
        };
        let name = name.replace('-', "_");
        let key = format!("satchel.{name}");
        let Some(v) = value else {
            match name.as_str() {
                // A bare flag means "on", as the kernel treats bool params.
                "dns_tcp" => p.dns_tcp = true,
                "required" => p.required = true,
                "domain" | "server" | "dns" | "root" | "timeout" | "capture" => {
                    return Err(bad(&key, "", "a value is required (key=value)"))
                }
                _ => p
                    .warnings
                    .push(format!("ignoring unknown parameter {}", shown(&key))),
            }
            continue;
        };
        match name.as_str() {
            "domain" => {
                check_dns_name(&v).map_err(|r| bad(&key, &v, r))?;
                p.domain = Some(v.trim_end_matches('.').to_ascii_lowercase());
            }
            "server" => p.server = Some(HostPort::parse(&v).map_err(|r| bad(&key, &v, r))?),
            "dns" => {
                for one in v.split(',').filter(|s| !s.is_empty()) {
                    let sa = parse_dns(one).map_err(|r| bad(&key, one, r))?;
                    if p.dns.len() >= MAX_DNS_SERVERS {
                        p.warnings.push(format!(
                            "ignoring satchel.dns={one}: at most {MAX_DNS_SERVERS} nameservers are used"
                        ));
                    } else if !p.dns.contains(&sa) {
                        p.dns.push(sa);
                    }
                }
            }
            "dns_tcp" => p.dns_tcp = parse_bool(&key, &v)?,
            "required" => p.required = parse_bool(&key, &v)?,
            "root" => {
                if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
                    return Err(bad(&key, &v, "expected an absolute path without \"..\""));
                }
                p.root = PathBuf::from(v);
            }
            "timeout" => {
                let secs: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
                    .ok_or_else(|| {
                        bad(
                            &key,
                            &v,
                            format!("expected whole seconds 1-{MAX_TIMEOUT_SECS}"),
                        )
                    })?;
                p.timeout = Some(Duration::from_secs(secs));
            }
            "capture" => {
                let mut paths = Vec::new();
                for one in v.split(',').filter(|s| !s.is_empty()) {
                    if !one.starts_with('/') || one.split('/').any(|c| c == "..") {
                        return Err(bad(&key, one, "expected absolute paths without \"..\""));
                    }
                    if paths.len() >= MAX_CAPTURE_PATHS {
                        return Err(bad(&key, one, format!("at most {MAX_CAPTURE_PATHS} paths")));
                    }
                    paths.push(PathBuf::from(one));
                }
                p.capture = paths;
            }
            _ => p
                .warnings
                .push(format!("ignoring unknown parameter {}", shown(&key))),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests;
