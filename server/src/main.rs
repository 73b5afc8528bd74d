//! `satchel-server`: runs the bundle server.
//!
//! Parses the command line (`--config FILE`, one `--<setting> VALUE` flag
//! per setting, `--ready-file FILE`), sets up logging and calls
//! [`satchel_server::run`]. `satchel-server example-config` prints every
//! setting with its default; `satchel-server demo [--dir DIR] [--listen
//! ADDR]` prepares a throwaway CA, node and signed bundle, prints the
//! command that fetches and applies it, and serves. `satchel-server
//! [SETTINGS] migrate --from-sled DIR` copies an embedded store into the
//! etcd store the settings name, and checks the copy.
//!
//! Exit codes: 0 after a clean shutdown (or a migration that checked out),
//! 1 when the server could not start or failed (or the migration's copy
//! differs), 2 for a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};
use satchel_server::config::StoreKind;
use satchel_server::config::{is_list_setting, Config, SETTINGS};
use satchel_server::shutdown::{handle_signals, Trigger};
use satchel_server::store::{EtcdSettings, EtcdStore};
use satchel_server::{Metrics, Options, ReloadableTls, Signers, SledStore, Store, TlsFiles};

/// Threads for blocking store calls. Every request touches the store, so a
/// boot storm would otherwise grow the pool towards tokio's default of 512
/// threads, each with its own stack and allocator arena, for no gain on a
/// store that serialises its syncs anyway.
const MAX_BLOCKING_THREADS: usize = 32;

fn dashed(name: &str) -> &'static str {
    Box::leak(name.replace('_', "-").into_boxed_str())
}

/// `--ready-file FILE`, of the server and of the demo.
fn ready_file_arg() -> Arg {
    Arg::new("ready-file")
        .long("ready-file")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("write {\"listen\",\"metrics\"} bound addresses here once listening")
}

fn cli() -> Command {
    let cmd = Command::new("satchel-server")
        .about("satchel's mutual-TLS bundle server")
        .version(env!("CARGO_PKG_VERSION"))
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file (flags override it)"),
        )
        .arg(ready_file_arg())
        .subcommand(Command::new("example-config").about("print every setting with its default"))
        .subcommand(
            Command::new("migrate")
                .about(
                    "copy an embedded (sled) store into the etcd store the settings name, \
                     resumably, then check the copy (settings go before the subcommand: \
                     satchel-server --store etcd --etcd-endpoints URL migrate --from-sled DIR)",
                )
                .arg(
                    Arg::new("from-sled")
                        .long("from-sled")
                        .value_name("DIR")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("data directory of the sled store to copy (its server stopped)"),
                ),
        );
    #[cfg(feature = "demo")]
    let cmd = cmd.subcommand(demo_command());
    let mut cmd = cmd;
    for (name, doc) in SETTINGS {
        let first = doc.lines().next().unwrap_or("").trim().to_string();
        let arg = Arg::new(*name).long(dashed(name)).value_name("VALUE");
        cmd = cmd.arg(if is_list_setting(name) {
            arg.action(ArgAction::Append)
                .help(format!("{first} Repeat the flag once per item."))
        } else {
            arg.action(ArgAction::Set).help(first)
        });
    }
    cmd
}

/// `satchel-server demo` (feature `demo`, on by default).
#[cfg(feature = "demo")]
fn demo_command() -> Command {
    Command::new("demo")
        .about("create a throwaway CA, node and signed bundle, print how to fetch it, and serve")
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "where the demo material lives, reused on the next run \
                     (default: $XDG_DATA_HOME/satchel/demo, else \
                     ~/.local/share/satchel/demo, else a folder in the temporary directory)",
                ),
        )
        .arg(
            Arg::new("listen")
                .long("listen")
                .value_name("ADDR")
                .default_value("127.0.0.1:8443")
                .value_parser(clap::value_parser!(std::net::SocketAddr))
                .help("listen address of the demo server"),
        )
        .arg(ready_file_arg())
}

fn main() -> ExitCode {
    let matches = match cli().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if matches.subcommand_matches("example-config").is_some() {
        print!("{}", Config::example_toml());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    #[cfg(feature = "demo")]
    if let Some(m) = matches.subcommand_matches("demo") {
        return finish(demo(m));
    }
    if let Some(m) = matches.subcommand_matches("migrate") {
        return match migrate(&matches, m) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => finish(Err(e)),
        };
    }
    finish(serve(&matches))
}

/// The configuration from `--config` and the setting flags.
fn load_config(matches: &ArgMatches) -> anyhow::Result<Config> {
    let overrides: Vec<(String, String)> = SETTINGS
        .iter()
        .flat_map(|(name, _)| {
            matches
                .get_many::<String>(name)
                .into_iter()
                .flatten()
                .map(|v| (name.to_string(), v.clone()))
        })
        .collect();
    Config::load(
        matches.get_one::<PathBuf>("config").map(PathBuf::as_path),
        &overrides,
    )
    .context("loading the configuration")
}

/// `migrate --from-sled DIR`: true when the copy checked out.
fn migrate(matches: &ArgMatches, m: &ArgMatches) -> anyhow::Result<bool> {
    let config = load_config(matches)?;
    if config.store != StoreKind::Etcd {
        anyhow::bail!(
            "migrate copies into the etcd store: give its settings \
             (--store etcd --etcd-endpoints URL, or store = \"etcd\" in --config)"
        );
    }
    let dir = m.get_one::<PathBuf>("from-sled").context("--from-sled")?;
    let src = SledStore::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut settings = etcd_settings(&config)?;
    settings.campaign_forwarder = false;
    let dst = EtcdStore::open(settings).context("opening the etcd store")?;
    let report =
        satchel_server::migrate::from_sled(&src, &dst, config.bundle_history).context("copying")?;
    println!(
        "copied: {} bundle versions, {} deletions, {} uploads, {} node records, \
         {} queued forwards, {} audit lines",
        report.versions,
        report.deleted,
        report.uploads,
        report.nodes,
        report.forwards,
        report.audit_lines
    );
    if report.mismatches.is_empty() {
        println!(
            "check: the etcd store holds everything {} does",
            dir.display()
        );
        return Ok(true);
    }
    for m in &report.mismatches {
        eprintln!("satchel-server: check: {m}");
    }
    eprintln!(
        "satchel-server: {} differences after the copy; run migrate again to resume",
        report.mismatches.len()
    );
    Ok(false)
}

/// Turns a run's result into the exit status (1 on error, printed).
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("satchel-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn write_ready_file(path: &Path, listen: &str, metrics: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::json!({ "listen": listen, "metrics": metrics }).to_string();
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Where the demo keeps its material when `--dir` is not given: the user's
/// data directory, never the current one (which may be a checkout).
#[cfg(feature = "demo")]
fn default_demo_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    match data {
        Some(d) => d.join("satchel/demo"),
        None => std::env::temp_dir().join("satchel-demo"),
    }
}

#[cfg(feature = "demo")]
fn demo(m: &ArgMatches) -> anyhow::Result<()> {
    let dir = m
        .get_one::<PathBuf>("dir")
        .cloned()
        .unwrap_or_else(default_demo_dir);
    let dir = &dir;
    let listen = *m
        .get_one::<std::net::SocketAddr>("listen")
        .context("--listen")?;
    let (demo, store) = satchel_server::demo::prepare(dir, listen)?;
    let config = demo.config.clone();
    // The demo hands on the store it published into, still open, and
    // prints how to fetch once the port is known.
    serve_config(
        config,
        m.get_one::<PathBuf>("ready-file").map(PathBuf::as_path),
        Some(store),
        Some(Box::new(move |addr| Ok(demo.finish(addr)?))),
    )
}

fn serve(matches: &ArgMatches) -> anyhow::Result<()> {
    let config = load_config(matches)?;
    serve_config(
        config,
        matches
            .get_one::<PathBuf>("ready-file")
            .map(PathBuf::as_path),
        None,
        None,
    )
}

/// What to print once the API listens, given its address.
type Announce = Box<dyn FnOnce(std::net::SocketAddr) -> anyhow::Result<String> + Send>;

fn serve_config(
    config: Config,
    ready_file: Option<&Path>,
    store: Option<SledStore>,
    announce: Option<Announce>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("starting the async runtime")?;
    // Opened before the server's runtime runs: the etcd store starts its own.
    let store: Arc<dyn Store> = match store {
        Some(store) => Arc::new(store),
        None => open_store(&config)?,
    };
    runtime.block_on(async move {
        let tls = Arc::new(
            ReloadableTls::load(TlsFiles {
                ca_cert: config.ca_cert.clone(),
                server_cert: config.server_cert.clone(),
                server_key: config.server_key.clone(),
                crl: config.crl.clone(),
                options: satchel_pki::tls::TlsOptions {
                    allow_tls12: config.allow_tls12,
                },
            })
            .context("loading TLS material")?,
        );
        let signers = Signers::load(&config.trusted_signers).context("loading trusted_signers")?;
        if signers.is_empty() {
            tracing::warn!("no trusted_signers configured: publishing is refused");
        }
        let listener = bind_api(config.listen, config.listen_backlog)
            .with_context(|| format!("binding {}", config.listen))?;
        let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| format!("binding metrics_listen {}", config.metrics_listen))?;
        let listen = listener.local_addr()?.to_string();
        let metrics_addr = metrics_listener.local_addr()?.to_string();
        tracing::info!(listen = %listen, metrics = %metrics_addr, "listening");
        if let Some(announce) = announce {
            println!("{}", announce(listener.local_addr()?)?);
        }
        if let Some(path) = ready_file {
            write_ready_file(path, &listen, &metrics_addr)?;
        }
        let metrics = Arc::new(Metrics::default());
        let trigger = Trigger::new();
        let metrics_task = tokio::spawn(satchel_server::metrics::serve_metrics(
            metrics_listener,
            metrics.clone(),
            trigger.wait(),
        ));
        let signal_trigger = trigger.clone();
        let (sig_tls, sig_metrics) = (tls.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = handle_signals(sig_tls, sig_metrics).await {
                tracing::error!(error = %e, "cannot install signal handlers");
            }
            signal_trigger.fire();
        });
        satchel_server::run(
            listener,
            tls,
            store,
            Options {
                config,
                signers,
                metrics,
            },
            trigger.wait(),
        )
        .await
        .context("serving")?;
        trigger.fire();
        let _ = metrics_task.await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Opens the store the configuration names.
fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store {
        StoreKind::Sled => Arc::new(
            SledStore::open(&config.data_dir)
                .with_context(|| format!("opening the store in {}", config.data_dir.display()))?,
        ),
        StoreKind::Etcd => {
            let settings = etcd_settings(config)?;
            let endpoints = settings.endpoints.clone();
            let store = EtcdStore::open(settings)
                .with_context(|| format!("opening the etcd store at {}", endpoints.join(",")))?;
            tracing::info!(endpoints = %endpoints.join(","), prefix = %config.etcd_prefix, "store: etcd");
            Arc::new(store)
        }
    })
}

/// The etcd store's settings, its TLS files read.
fn etcd_settings(config: &Config) -> anyhow::Result<EtcdSettings> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let ca_pem = if config.etcd_ca.as_os_str().is_empty() {
        None
    } else {
        Some(read(&config.etcd_ca)?)
    };
    let identity_pem = if config.etcd_cert.as_os_str().is_empty() {
        None
    } else {
        Some((read(&config.etcd_cert)?, read(&config.etcd_key)?))
    };
    Ok(EtcdSettings {
        endpoints: config.etcd_endpoint_list(),
        prefix: config.etcd_prefix.clone(),
        ca_pem,
        identity_pem,
        request_timeout: std::time::Duration::from_millis(config.etcd_request_timeout_ms),
        chunk_bytes: config.etcd_chunk_bytes as usize,
        retry_after_secs: config.etcd_retry_after_secs,
        audit_queue_lines: config.etcd_audit_queue_lines,
        campaign_forwarder: !config.engine_webhook.is_empty(),
        forwarder_lease: std::time::Duration::from_secs(config.etcd_forwarder_lease_secs),
        report_batches_in_flight: config.etcd_report_batches_in_flight,
        audit_flush: std::time::Duration::from_millis(config.etcd_audit_flush_ms),
    })
}

/// Binds the API listener with `backlog` (tokio's `bind` uses 128, which a
/// booting rack overflows).
fn bind_api(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
