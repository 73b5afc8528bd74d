//! One boot run, start to end: inputs → discover → download → verify →
//! apply → report. `main` calls [`boot`] and turns its [`Exit`] into the
//! process status.
//!
//! Invariants:
//! - the whole run is bounded by the deadline (`satchel.timeout=`, default
//!   [`crate::settings::DEFAULT_DEADLINE`]); only the report gets a short
//!   grace after it;
//! - nothing is written beneath the root unless its bundle verified, and
//!   every bundle verifies before the first is decrypted;
//! - a boot is all or nothing across its bundles: every one is staged over
//!   the ones before it (site, then host) before the root changes, then all
//!   commit together; a refusal or a failed commit leaves the root as it
//!   was, and the console and the report name the bundle and say that
//!   nothing was applied;
//! - a required bundle missing from the index fails the run before anything
//!   is applied;
//! - a report is attempted for every run that got as far as loading its
//!   credentials; if it cannot be delivered it goes to the kernel log.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use satchel_format::verify::Checks;
use satchel_format::{Identities, Mac, Target, VerifyingKey};
use satchel_overlay::{ExtractError, Layers};
use satchel_pki::NodeConfig;
use tokio::time::Instant;

use crate::apply::{self, FileSink, Trust};
use crate::cmdline::{self, BootParams, HostPort};
use crate::discover::{self, Dns, DnsSettings};
use crate::http::{Client, Request};
use crate::index::{self, Entry};
use crate::log::Log;
use crate::netif;
use crate::report::{self, Phases, Report};
use crate::retry::{self, Decision, Failure};
use crate::session::Session;
use crate::settings::{Settings, MAX_JSON_BYTES};

/// Largest kernel command line file read, in bytes.
pub(crate) const MAX_CMDLINE_FILE: u64 = cmdline::MAX_CMDLINE_BYTES as u64 + 1;

/// How a run ended; the process exit code is the discriminant (see
/// `main.rs` and the README for the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every bundle of the index applied (or the index was empty and none
    /// was required).
    Applied = 0,
    /// The command line, the node config or its credentials are unusable,
    /// or no MAC was found.
    Config = 3,
    /// No server could be found or reached.
    Discover = 4,
    /// The index or a bundle could not be downloaded.
    Download = 5,
    /// A bundle was refused by verification.
    Verify = 6,
    /// The overlay failed.
    Apply = 7,
    /// A required bundle is missing from the index.
    Missing = 8,
}

/// Where the run's inputs are.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The kernel command line file.
    pub cmdline: PathBuf,
    /// The node config (`satchel.toml`).
    pub config: PathBuf,
    /// The sysfs mount.
    pub sysfs: PathBuf,
    /// resolv.conf.
    pub resolv_conf: PathBuf,
    /// Limits (the deadline is replaced by `satchel.timeout=` when given).
    pub settings: Settings,
}

/// What [`boot`] returns.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Whether `satchel.required` was on (the caller maps failure to 0 when off).
    pub required: bool,
    /// The report, when one was built.
    pub report: Option<Report>,
}

/// A whole text file of at most `max` bytes; a larger one is an error that
/// names it (never silently cut short).
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    satchel_names::file::read_bounded_text(path, max).map_err(|e| e.to_string())
}

/// The node's MAC: the config's (a per-host image), else `BOOTIF=`, else
/// the first Ethernet interface with carrier.
pub fn node_mac(
    config: &NodeConfig,
    params: &BootParams,
    sysfs: &Path,
    log: &Log,
) -> Result<Mac, String> {
    match (config.mac, params.bootif) {
        (Some(m), Some(b)) if m != b => {
            log.warn(&format!(
                "BOOTIF names {b} but this image is for {m}; using {m}"
            ));
            Ok(m)
        }
        (Some(m), _) => Ok(m),
        (None, Some(b)) => Ok(b),
        (None, None) => match netif::first_with_carrier(sysfs) {
            Some((name, m)) => {
                log.info(&format!("no BOOTIF=; using {name} ({m})"));
                Ok(m)
            }
            None => Err(
                "no MAC: no BOOTIF= on the command line and no Ethernet interface with carrier"
                    .into(),
            ),
        },
    }
}

/// Everything loaded before the network is touched.
struct Prepared {
    params: BootParams,
    config: NodeConfig,
    mac: Mac,
    trust: Trust,
    tls: rustls::ClientConfig,
}

fn prepare(inputs: &Inputs, log: &Log) -> Result<Prepared, (String, bool)> {
    let text = read_bounded(&inputs.cmdline, MAX_CMDLINE_FILE).map_err(|e| (e, true))?;
    let params = cmdline::parse(&text).map_err(|e| (format!("kernel command line: {e}"), true))?;
    for w in &params.warnings {
        log.warn(w);
    }
    let required = params.required;
    let fail = |m: String| (m, required);
    if !params.root.is_dir() {
        return Err(fail(format!(
            "satchel.root {} is not a directory (is the real root mounted?)",
            params.root.display()
        )));
    }
    let config = NodeConfig::load(&inputs.config).map_err(|e| fail(e.to_string()))?;
    let base = inputs
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mac = node_mac(&config, &params, &inputs.sysfs, log).map_err(fail)?;
    let read = |p: &Path, what: &str| -> Result<Vec<u8>, (String, bool)> {
        let p = config.resolve(&base, p);
        std::fs::read(&p).map_err(|e| fail(format!("{what} {}: {e}", p.display())))
    };
    let ca = read(&config.ca_cert, "CA certificate")?;
    let cert = read(&config.client_cert, "client certificate")?;
    let key = zeroize::Zeroizing::new(read(&config.client_key, "client key")?);
    let tls = satchel_pki::tls::client_config(&ca, Some((&cert, &key)))
        .map_err(|e| fail(format!("TLS credentials: {e}")))?;
    let mut signers = Vec::new();
    for p in &config.signers {
        let p = config.resolve(&base, p);
        signers.push(
            VerifyingKey::read_pem_file(&p)
                .map_err(|e| fail(format!("signer key {}: {e}", p.display())))?,
        );
    }
    let mut id_text = zeroize::Zeroizing::new(String::new());
    for p in &config.identities {
        let bytes = zeroize::Zeroizing::new(read(p, "age identity")?);
        let t = std::str::from_utf8(&bytes)
            .map_err(|_| fail(format!("age identity {}: not UTF-8", p.display())))?;
        id_text.push_str(t);
        id_text.push('\n');
    }
    let identities =
        Identities::parse(&id_text).map_err(|e| fail(format!("age identities: {e}")))?;
    Ok(Prepared {
        trust: Trust {
            signers,
            identities,
            clock_floor: config.clock_floor,
        },
        params,
        config,
        mac,
        tls,
    })
}

pub(crate) fn nameservers(
    params: &BootParams,
    resolv_conf: &Path,
    log: &Log,
) -> Vec<std::net::SocketAddr> {
    if !params.dns.is_empty() {
        return params.dns.clone();
    }
    match read_bounded(resolv_conf, discover::MAX_RESOLV_CONF_BYTES) {
        Ok(text) => {
            let (ips, warnings) = discover::parse_resolv_conf(&text);
            for w in warnings {
                log.warn(&w);
            }
            ips.into_iter()
                .map(|ip| std::net::SocketAddr::new(ip, cmdline::DNS_PORT))
                .collect()
        }
        Err(e) => {
            log.warn(&format!("no resolv.conf: {e}"));
            Vec::new()
        }
    }
}

/// Finds the candidates: SRV targets in RFC 2782 order, then the fallback
/// (`satchel.server=`, else the config's `server`).
pub async fn discover(
    params: &BootParams,
    config: &NodeConfig,
    dns: Option<&Dns>,
    deadline: Instant,
    rng: &mut StdRng,
    log: &Log,
) -> Result<Vec<HostPort>, String> {
    let domain = params
        .domain
        .clone()
        .unwrap_or_else(|| config.domain.clone());
    let fallback: Option<HostPort> = match &params.server {
        Some(s) => Some(s.clone()),
        None => match &config.server {
            Some(s) => match HostPort::parse(s) {
                Ok(hp) => Some(hp),
                Err(e) => {
                    log.warn(&format!("config server {s:?} ignored: {e}"));
                    None
                }
            },
            None => None,
        },
    };
    let mut attempt = 0u32;
    loop {
        let found = match dns {
            None => Err("no nameserver (satchel.dns= or resolv.conf)".to_string()),
            Some(d) => tokio::time::timeout_at(deadline, d.srv(&domain))
                .await
                .map_err(|_| "the deadline passed during the SRV lookup".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
        };
        match found {
            Ok(targets) => {
                let mut out: Vec<HostPort> = discover::pick_order(&targets, rng)
                    .into_iter()
                    .map(|t| HostPort {
                        host: t.target,
                        port: t.port,
                    })
                    .collect();
                log.info(&format!(
                    "SRV {}.{domain}: {} targets, in order: {}",
                    discover::SRV_SERVICE,
                    out.len(),
                    out.iter()
                        .map(|h| h.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                if let Some(f) = fallback {
                    if !out.contains(&f) {
                        out.push(f);
                    }
                }
                return Ok(out);
            }
            Err(e) => {
                if let Some(f) = fallback {
                    log.warn(&format!("{e}; falling back to {f}"));
                    return Ok(vec![f]);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match retry::decide(attempt, &Failure::Transport, left, rng) {
                    Decision::Wait(d) => {
                        log.warn(&format!("{e}; retrying in {} ms", d.as_millis()));
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    Decision::GiveUp(why) => return Err(format!("{e} ({why})")),
                }
            }
        }
    }
}

/// Downloads one bundle into a temp file beside the root, checked against its entry.
async fn download(
    session: &mut Session<'_>,
    entry: &Entry,
    checks: Checks,
    dir: &Path,
    max: u64,
) -> Result<FileSink, String> {
    let mut sink = FileSink::new_in(dir, checks)
        .map_err(|e| format!("temporary file in {}: {e}", dir.display()))?;
    let mut attempt = 0u32;
    loop {
        let req = Request {
            method: http::Method::GET,
            path: &entry.url,
            body: None,
            max_body: max,
            expect_len: Some(entry.size),
        };
        session
            .call(&req, &mut sink)
            .await
            .map_err(|e| format!("GET {}: {e}", entry.url))?;
        match apply::check_download(entry, &mut sink) {
            Ok(()) => return Ok(sink),
            Err(e) => {
                session.log.warn(&e);
                let left = session.deadline.saturating_duration_since(Instant::now());
                match retry::decide(attempt, &Failure::Transport, left, &mut session.rng) {
                    Decision::Wait(d) => tokio::time::sleep(d).await,
                    Decision::GiveUp(why) => return Err(format!("{e} ({why})")),
                }
                attempt += 1;
            }
        }
    }
}

/// Runs one boot. Never panics on input; every failure becomes an [`Exit`].
pub async fn boot(inputs: &Inputs, log: &Log) -> Outcome {
    let started = Instant::now();
    let p = match prepare(inputs, log) {
        Ok(p) => p,
        Err((e, required)) => {
            log.error(&e);
            return Outcome {
                exit: Exit::Config,
                required,
                report: None,
            };
        }
    };
    let deadline_len = p.params.timeout.unwrap_or(inputs.settings.deadline);
    let deadline = started + deadline_len;
    let mut rng = StdRng::from_entropy();
    let mut phases = Phases::default();
    let mut applied = report::AppliedBundles::default();
    log.info(&format!(
        "satchel-fetch {} for {} into {} (deadline {}s)",
        env!("CARGO_PKG_VERSION"),
        p.mac,
        p.params.root.display(),
        deadline_len.as_secs()
    ));

    let dns_settings = DnsSettings {
        nameservers: nameservers(&p.params, &inputs.resolv_conf, log),
        tcp_only: p.params.dns_tcp,
        query_timeout: inputs.settings.dns_query_timeout,
        attempts: inputs.settings.dns_attempts,
    };
    let dns = match Dns::new(&dns_settings) {
        Ok(d) => Some(d),
        Err(e) => {
            log.warn(&e.to_string());
            None
        }
    };

    // Discover.
    let t = Instant::now();
    let servers = discover(&p.params, &p.config, dns.as_ref(), deadline, &mut rng, log).await;
    let servers = match servers {
        Ok(s) => {
            phases.record("discover", t.elapsed(), None);
            s
        }
        Err(e) => {
            phases.record("discover", t.elapsed(), Some(&e));
            log.error(&format!("discover: {e}"));
            let r = build_report(&p, &mut rng, phases, applied, None, started);
            log.kmsg_line(3, &report_line(&r));
            return Outcome {
                exit: Exit::Discover,
                required: p.params.required,
                report: Some(r),
            };
        }
    };
    let mut session = Session {
        client: Client::new(p.tls.clone(), inputs.settings.clone()),
        dns,
        servers,
        deadline,
        rng: StdRng::from_entropy(),
        log,
        last_good: None,
    };

    let mut refused = None;
    let exit = steps(
        &p,
        &mut session,
        &mut phases,
        &mut applied,
        &mut refused,
        inputs,
    )
    .await;
    let server = session
        .last_good
        .map(|(i, _)| session.servers[i].to_string());
    let mut report = build_report(&p, &mut rng, phases, applied, server, started);
    report.refused = refused;
    if exit != Exit::Applied {
        report.status = "failed";
    }
    log.info(&format!(
        "{} in {} ms ({})",
        report.status,
        report.duration_ms,
        report
            .timings_ms
            .iter()
            .map(|(k, v)| format!("{k} {v} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    send_report(&mut session, &p, &report, &inputs.settings).await;
    Outcome {
        exit,
        required: p.params.required,
        report: Some(report),
    }
}

async fn steps(
    p: &Prepared,
    session: &mut Session<'_>,
    phases: &mut Phases,
    applied: &mut report::AppliedBundles,
    refused: &mut Option<String>,
    inputs: &Inputs,
) -> Exit {
    let log = session.log;
    let fail = |phases: &mut Phases, name: &'static str, t: Instant, e: String, exit: Exit| {
        log.error(&format!("{name}: {e}"));
        phases.record(name, t.elapsed(), Some(&e));
        exit
    };

    // Download: the index, then each bundle.
    let t = Instant::now();
    let path = format!("/v1/boot/{}", p.mac);
    let mut body = Vec::new();
    let req = Request {
        method: http::Method::GET,
        path: &path,
        body: None,
        max_body: MAX_JSON_BYTES,
        expect_len: None,
    };
    if let Err(e) = session.call(&req, &mut body).await {
        return fail(
            phases,
            "download",
            t,
            format!("GET {path}: {e}"),
            Exit::Download,
        );
    }
    let mine = applied_targets(&p.config, p.mac);
    let entries = match index::parse(&body, &mine, inputs.settings.max_bundle_bytes) {
        Ok(e) => e,
        Err(e) => return fail(phases, "download", t, e.to_string(), Exit::Download),
    };
    for target in &mine {
        if p.config.is_required(target) && !entries.iter().any(|e| &e.target == target) {
            let e = format!("the index has no bundle for {target}, which this image requires");
            return fail(phases, "download", t, e, Exit::Missing);
        }
    }
    let dir = apply::download_dir(&p.params.root);
    let mut files = Vec::new();
    for entry in &entries {
        let checks = apply::checks(&p.trust, &entry.target, p.config.floor(&entry.target));
        match download(
            session,
            entry,
            checks,
            &dir,
            inputs.settings.max_bundle_bytes,
        )
        .await
        {
            Ok(f) => {
                log.info(&format!(
                    "downloaded {} ({} bytes)",
                    entry.target, entry.size
                ));
                files.push((entry, f));
            }
            Err(e) => return fail(phases, "download", t, e, Exit::Download),
        }
    }
    phases.record("download", t.elapsed(), None);

    // Every bundle verified (while it downloaded) before any is applied.
    let t = Instant::now();
    let mut checked = Vec::new();
    for (entry, mut f) in files {
        match f.take_verified() {
            Ok(verified) => {
                let serial = verified.manifest().serial;
                log.info(&format!("{} serial {serial} verified", entry.target));
                checked.push((entry, f, verified, serial));
            }
            Err(e) => {
                *refused = Some(entry.target.to_string());
                let e = format!("{} refused: {e}; nothing was applied", entry.target);
                return fail(phases, "verify", t, e, Exit::Verify);
            }
        }
    }
    phases.record("verify", t.elapsed(), None);

    // Only now, with every bundle verified, may anything already in the
    // root be removed: the files a killed earlier run left.
    let ours: Vec<&Path> = checked.iter().map(|(_, f, _, _)| f.path()).collect();
    let stale = apply::remove_stale_downloads(&dir, &ours);
    if stale > 0 {
        log.warn(&format!(
            "removed {stale} download files an earlier run left"
        ));
    }

    // Stage every bundle, site then host, each checked over the ones before
    // it, then commit them together: the root changes only if every bundle
    // staged, and a failed commit is undone whole, the site's part too.
    let t = Instant::now();
    let mut layers = match Layers::open(&p.params.root) {
        Ok(l) => l,
        Err(e) => {
            let e = format!("{e}; nothing was applied");
            return fail(phases, "apply", t, e, Exit::Apply);
        }
    };
    let mut staged = Vec::new();
    for (entry, f, verified, serial) in checked {
        if let Err(e) = apply::stage(&f, &verified, &p.trust, &mut layers) {
            *refused = Some(entry.target.to_string());
            let e = format!(
                "{} serial {serial} refused: {e}; nothing was applied",
                entry.target
            );
            return fail(phases, "apply", t, e, Exit::Apply);
        }
        log.info(&format!("{} serial {serial} staged", entry.target));
        // The download is spent: free it before the next one is staged.
        drop(f);
        staged.push((entry, serial, verified.manifest().payload.sha256));
    }
    match layers.commit() {
        Ok(done) => {
            for ((entry, serial, payload), a) in staged.iter().zip(&done) {
                let a = apply::Applied::of(a);
                log.info(&format!(
                    "{} serial {serial} applied: {} entries, {} paths changed",
                    entry.target, a.entries, a.changed
                ));
                applied.record(&entry.target.to_string(), *serial, payload);
            }
        }
        Err(e) => {
            let target = staged
                .get(e.layer)
                .map(|(entry, serial, _)| format!("{} serial {serial}", entry.target))
                .unwrap_or_else(|| "a bundle".into());
            *refused = staged
                .get(e.layer)
                .map(|(entry, ..)| entry.target.to_string());
            let e = match &e.error {
                ExtractError::RestoreFailed { .. } => {
                    format!("committing {target} failed: {}", e.error)
                }
                err => format!(
                    "committing {target} failed: {err}; the root was restored, nothing was applied"
                ),
            };
            return fail(phases, "apply", t, e, Exit::Apply);
        }
    }
    phases.record("apply", t.elapsed(), None);
    Exit::Applied
}

/// The targets this node applies, in apply order (site, then host).
///
/// A per-host image applies what its config names. A site-wide image names
/// no MAC, yet its node may still have a host bundle of its own: one whose
/// signed manifest names the site, which the server lets the site's
/// certificate fetch and which is encrypted to the site's identity. So it
/// applies its site, then the host bundle of the MAC it booted with.
fn applied_targets(config: &NodeConfig, mac: Mac) -> Vec<Target> {
    let mut targets = config.targets();
    if config.mac.is_none() {
        targets.push(Target::Host(mac));
    }
    targets
}

fn build_report(
    p: &Prepared,
    rng: &mut StdRng,
    phases: Phases,
    applied: report::AppliedBundles,
    server: Option<String>,
    started: Instant,
) -> Report {
    let error = phases.first_error();
    let phases = phases.finish();
    Report {
        timings_ms: report::timings(&phases),
        report_id: report::new_id(rng),
        mac: p.mac.to_string(),
        status: if error.is_some() { "failed" } else { "applied" },
        required: p.params.required,
        fetcher_version: concat!("satchel-fetch/", env!("CARGO_PKG_VERSION")).to_string(),
        server,
        phases,
        serials: applied.serials,
        payloads: applied.payloads,
        error,
        refused: None,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

fn report_line(r: &Report) -> String {
    format!(
        "report {}",
        serde_json::to_string(r).unwrap_or_else(|_| "(unserialisable)".into())
    )
}

async fn send_report(session: &mut Session<'_>, p: &Prepared, report: &Report, s: &Settings) {
    let body = match serde_json::to_vec(report) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            session.log.error(&format!("report: {e}"));
            return;
        }
    };
    let grace = Instant::now() + s.report_grace;
    session.deadline = session.deadline.max(grace);
    let path = format!("/v1/reports/{}", p.mac);
    let req = Request {
        method: http::Method::POST,
        path: &path,
        body: Some((body, "application/json")),
        max_body: MAX_JSON_BYTES,
        expect_len: None,
    };
    let mut sink = Vec::new();
    match session.call(&req, &mut sink).await {
        Ok(_) => session
            .log
            .info(&format!("report {} sent", report.report_id)),
        Err(e) => {
            session.log.error(&format!("report not delivered: {e}"));
            session.log.kmsg_line(3, &report_line(report));
        }
    }
}

#[cfg(test)]
mod targets_tests {
    use super::*;

    fn config(mac: Option<&str>, site: Option<&str>) -> NodeConfig {
        let mut text = String::from("version = 1\n");
        if let Some(m) = mac {
            text.push_str(&format!("mac = \"{m}\"\n"));
        }
        if let Some(s) = site {
            text.push_str(&format!("site = \"{s}\"\n"));
        }
        text.push_str(
            "domain = \"boot.test\"\nca_cert = \"ca.crt\"\nclient_cert = \"c.crt\"\n\
             client_key = \"c.key\"\nidentities = [\"id\"]\nsigners = [\"s.pub\"]\n\
             clock_floor = \"2026-01-01T00:00:00Z\"\n",
        );
        NodeConfig::parse(&text).expect("config")
    }

    #[test]
    fn applied_targets_follow_the_image_scope() {
        let booted = Mac::parse("52-54-00-00-00-02").expect("mac");
        let show = |c: &NodeConfig| -> Vec<String> {
            applied_targets(c, booted)
                .iter()
                .map(Target::to_string)
                .collect()
        };
        // A per-host image applies its site and its own MAC, never the booted one.
        assert_eq!(
            show(&config(Some("52-54-00-00-00-01"), Some("dc1"))),
            ["site/dc1", "host/52-54-00-00-00-01"]
        );
        assert_eq!(
            show(&config(Some("52-54-00-00-00-01"), None)),
            ["host/52-54-00-00-00-01"]
        );
        // A site-wide image applies its site, then the booted node's host bundle.
        assert_eq!(
            show(&config(None, Some("dc1"))),
            ["site/dc1", "host/52-54-00-00-00-02"]
        );
    }
}
