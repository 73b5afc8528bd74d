//! Server configuration: one flat TOML table, every field also a flag.
//!
//! Every setting is declared once in [`settings!`]: its name, type, default
//! and documentation. That one declaration feeds the TOML file (`--config`),
//! the command-line flags (`--<name-with-dashes> VALUE`, which override the
//! file), `--help`, and `contrib/server.example.toml`. A list-valued
//! setting takes one value per flag, repeated (`--trusted-signers a.pub
//! --trusted-signers b.pub`); the flags replace the file's list.
//!
//! Every limit the server enforces (sizes, counts, rates, timeouts) is a field
//! here; no other module holds a limit literal.
//!
//! It does not open files or sockets: [`Config::load`] only parses and
//! validates; the caller builds the objects that do the work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest configuration file accepted, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Errors from reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`].
    #[error("config file {path} is larger than {MAX_CONFIG_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not TOML, an unknown field, or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Syntax(String),
    /// A flag names no setting.
    #[error("unknown setting {0:?} (see --help for the list)")]
    UnknownSetting(String),
    /// Values that parse but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

macro_rules! settings {
    ( $( $(#[doc = $doc:literal])+ $name:ident : $ty:ty = $default:expr ; )+ ) => {
        /// The server's settings. See each field, `contrib/server.example.toml`
        /// and `satchel-server --help`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $name: $default, )+ }
            }
        }

        /// Every setting: (name, one-line documentation).
        pub const SETTINGS: &[(&str, &str)] = &[
            $( (stringify!($name), concat!($($doc, "\n"),+)), )+
        ];
    };
}

settings! {
    /// TLS (mutual TLS) listen address and port for the API.
    listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8443));
    /// Plain-HTTP listen address for `/metrics` (Prometheus). Keep it on loopback
    /// or a management network: it is not authenticated.
    metrics_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9464));
    /// Where everything durable is kept: `sled` (the embedded store in
    /// `data_dir`, for one server) or `etcd` (shared by any number of
    /// identical replicas; see `etcd_endpoints`).
    store: StoreKind = StoreKind::Sled;
    /// Directory of the embedded store (created if missing).
    data_dir: PathBuf = PathBuf::from("/var/lib/satchel-server");
    /// Client URLs of the etcd cluster when `store = "etcd"`
    /// (`http://host:2379`, or `https://` with `etcd_ca`). The flag takes
    /// several, comma-separated or the flag repeated.
    etcd_endpoints: Vec<String> = Vec::new();
    /// Prefix of every etcd key of this store; replicas that serve the same
    /// nodes share it.
    etcd_prefix: String = "/satchel/".to_string();
    /// PEM CA that verifies the etcd members' certificates (https endpoints);
    /// empty for plain http.
    etcd_ca: PathBuf = PathBuf::new();
    /// PEM client certificate for etcd's mutual TLS; empty for none.
    etcd_cert: PathBuf = PathBuf::new();
    /// PEM private key of `etcd_cert`.
    etcd_key: PathBuf = PathBuf::new();
    /// Milliseconds one store call may wait for etcd (a whole publish, all
    /// its chunks included); past it the request gets 503 and nothing is
    /// acknowledged.
    etcd_request_timeout_ms: u64 = 5000;
    /// Largest piece of a bundle or upload in one etcd value, in bytes. It
    /// must stay under etcd's `--max-request-bytes` (1.5 MiB by default).
    etcd_chunk_bytes: u64 = 1024 * 1024;
    /// `Retry-After` seconds of the 503 answered to writes while etcd is unreachable.
    etcd_retry_after_secs: u64 = 5;
    /// Audit lines a replica holds in memory while etcd is unreachable;
    /// beyond it new lines are dropped (and logged as errors).
    etcd_audit_queue_lines: usize = 100_000;
    /// Seconds of the forwarder's etcd lease: one replica at a time forwards
    /// reports, and when it dies another takes over within about this long.
    etcd_forwarder_lease_secs: u64 = 10;
    /// Batches of reports (up to 50 nodes' each, two etcd transactions per
    /// batch) one replica writes at once. A new batch starts while others
    /// are written only once a whole batch waits, so more in flight raise
    /// a busy replica's report rate without splitting a quiet one's
    /// batches; 1 writes one batch at a time.
    etcd_report_batches_in_flight: usize = 4;
    /// Milliseconds a replica gathers audit lines before it writes them
    /// to etcd as one transaction (sooner when a full batch of 99 waits,
    /// or when an admin reads the log): fewer, fuller transactions for
    /// etcd under a steady trickle of fetches. Audit lines are durable
    /// within this (lines lost with a replica that dies meanwhile); 0
    /// writes them as soon as the last write is done.
    etcd_audit_flush_ms: u64 = 50;
    /// PEM CA certificate that issued every client certificate (also served at /v1/ca).
    ca_cert: PathBuf = PathBuf::from("/etc/satchel-server/ca.pem");
    /// PEM server certificate chain.
    server_cert: PathBuf = PathBuf::from("/etc/satchel-server/server.pem");
    /// PEM (PKCS#8) private key of the server certificate.
    server_key: PathBuf = PathBuf::from("/etc/satchel-server/server.key");
    /// The CA's CRL (PEM or DER); reloaded when it changes (also served at /v1/crl).
    crl: PathBuf = PathBuf::from("/etc/satchel-server/crl.pem");
    /// PEM SPKI ed25519 public keys of the admins whose signed bundles may be published.
    trusted_signers: Vec<PathBuf> = Vec::new();
    /// Also accept TLS 1.2 (TLS 1.3 only when false).
    allow_tls12: bool = false;
    /// Seconds between checks of the CRL file for changes.
    crl_poll_secs: u64 = 5;
    /// Maximum simultaneous client connections; connections over it are closed
    /// right after accept.
    max_connections: usize = 4096;
    /// Length of the kernel's queue of connections waiting to be accepted
    /// (capped by `net.core.somaxconn`). A rack booting at once connects
    /// faster than TLS handshakes finish; a short queue drops SYNs and costs
    /// each dropped node a one-second retransmit.
    listen_backlog: u32 = 4096;
    /// Connections from one source address that may be in their TLS
    /// handshake at once; more are closed right after accept, before they
    /// take a connection slot, so one address cannot hold every slot with
    /// connections that never finish a handshake.
    max_handshakes_per_source: usize = 64;
    /// Connections from all sources that may be in their TLS handshake at
    /// once; more are closed right after accept.
    max_handshakes: usize = 1024;
    /// Seconds a client has to complete the TLS handshake.
    handshake_timeout_secs: u64 = 10;
    /// Seconds a client has to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    header_read_timeout_secs: u64 = 10;
    /// Seconds a client has to send a request's body.
    body_read_timeout_secs: u64 = 60;
    /// Bytes of a body refused as too large that are still read, and
    /// discarded, after the 413 is sent, so that a client still sending gets
    /// the answer rather than a reset connection; 0 closes at once.
    refused_body_drain_bytes: u64 = 1024 * 1024;
    /// Largest request head (request line plus headers), in bytes (at least 8192).
    max_header_bytes: usize = 16 * 1024;
    /// Seconds SIGTERM waits for in-flight requests before closing them.
    shutdown_grace_secs: u64 = 30;
    /// Versions kept per target for history and rollback (at least 1: the
    /// current one). Admins read them (`GET /v1/bundles/{kind}/{name}/history`);
    /// nodes only ever see the current version.
    bundle_history: usize = 10;
    /// Seconds between the status page's in-place refreshes (`/ui/`).
    ui_refresh_secs: u64 = 15;
    /// Most nodes on one page of the status page (filters narrow them).
    ui_page_nodes: usize = 5000;
    /// Days before its expiry a bundle is highlighted on the status page.
    ui_expiring_days: u64 = 7;
    /// Largest bundle accepted by PUT, in bytes (413 above).
    max_bundle_bytes: u64 = 32 * 1024 * 1024;
    /// Largest upload accepted into the quarantine, in bytes (413 above).
    max_upload_bytes: u64 = 16 * 1024 * 1024;
    /// Largest report body, in bytes (413 above).
    max_report_bytes: u64 = 64 * 1024;
    /// Pending uploads kept per MAC (429 above).
    max_pending_uploads_per_mac: usize = 4;
    /// Total bytes the quarantine holds (507 above).
    max_quarantine_bytes: u64 = 1024 * 1024 * 1024;
    /// Largest upload accepted without a client certificate, in bytes (413
    /// above; at most `max_upload_bytes` counts).
    anonymous_max_upload_bytes: u64 = 4 * 1024 * 1024;
    /// Pending uploads without a client certificate kept per MAC (429
    /// above). They are counted apart from the certified ones, which
    /// `max_pending_uploads_per_mac` bounds, so anonymous uploads can never
    /// use up a node's own share.
    anonymous_max_pending_uploads_per_mac: usize = 1;
    /// Bytes of the quarantine that uploads without a client certificate
    /// may fill (507 above). It is carved out of `max_quarantine_bytes`:
    /// certified uploads have the rest to themselves.
    anonymous_max_quarantine_bytes: u64 = 128 * 1024 * 1024;
    /// Seconds a pending upload is kept before it expires.
    upload_expiry_secs: u64 = 24 * 60 * 60;
    /// Uploads one source address may burst before being rate limited.
    upload_burst_per_source: u32 = 5;
    /// Uploads per minute one source address regains after a burst (429 + Retry-After above).
    upload_per_minute_per_source: u32 = 10;
    /// Requests without a client certificate one source may burst.
    anonymous_burst_per_source: u32 = 60;
    /// Requests per minute without a client certificate one source regains after a burst.
    anonymous_per_minute_per_source: u32 = 600;
    /// Lines kept in the admin audit log (every request made with an admin
    /// certificate); the oldest are dropped beyond it. No other caller
    /// writes to this log, so node traffic never pushes its lines out.
    audit_max_entries: u64 = 100_000;
    /// Lines kept in the security audit log (refused requests of nodes and
    /// anonymous callers, revoked certificates); the oldest are dropped beyond it.
    security_audit_max_entries: u64 = 100_000;
    /// Security audit lines one source address may burst; beyond the rate
    /// its refusals are only counted (`satchel_audit_suppressed_total`).
    security_audit_burst_per_source: u32 = 60;
    /// Security audit lines per minute one source address regains after a burst.
    security_audit_per_minute_per_source: u32 = 60;
    /// Lines kept in the fetch audit log (answered boot-index and bundle
    /// fetches of node certificates); the oldest are dropped beyond it.
    fetch_audit_max_entries: u64 = 100_000;
    /// Requests one node certificate may burst from one source address
    /// (a boot makes about five; a site certificate shared by a whole rack
    /// is counted per node address).
    node_burst_per_source: u32 = 600;
    /// Requests per minute one node certificate regains per source address
    /// after a burst (429 + Retry-After above).
    node_per_minute_per_source: u32 = 6000;
    /// Management-engine webhook (http:// or https://) every report is POSTed
    /// to; empty disables forwarding (reports are still stored).
    engine_webhook: String = String::new();
    /// PEM CA bundle that verifies an https:// engine webhook; empty means
    /// the CA in `ca_cert`.
    engine_ca: PathBuf = PathBuf::new();
    /// Seconds one webhook POST may take.
    forward_timeout_secs: u64 = 10;
    /// Milliseconds of the first retry delay after a failed forward; doubles up to the maximum.
    forward_backoff_initial_ms: u64 = 500;
    /// Maximum seconds between forward retries.
    forward_backoff_max_secs: u64 = 300;
    /// Seconds between two looks at an empty forward queue when nothing
    /// said a report was queued: a safety net only. A report stored by
    /// this server wakes its forwarder at once, and on etcd the forwarding
    /// replica watches the queue, so reports stored by the other replicas
    /// wake it too.
    forward_poll_secs: u64 = 5;
}

/// The backend of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded store (sled) in `data_dir`.
    #[default]
    Sled,
    /// A shared etcd cluster.
    Etcd,
}

/// Largest `etcd_chunk_bytes`: etcd's default request limit (1.5 MiB) less
/// room for the key and the request's framing.
pub const MAX_ETCD_CHUNK_BYTES: u64 = 1024 * 1024 + 256 * 1024;

impl Config {
    /// The etcd endpoints, each comma-separated item split.
    pub fn etcd_endpoint_list(&self) -> Vec<String> {
        self.etcd_endpoints
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Reads `path` (if any), applies `overrides` (`name`, TOML value or bare
    /// string) and validates the result.
    pub fn load(
        path: Option<&std::path::Path>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => read_bounded(p)?,
            None => String::new(),
        };
        Config::from_parts(&text, overrides)
    }

    /// Parses TOML `text`, applies `overrides` and validates.
    ///
    /// An override of a scalar setting is a TOML value or bare text; the
    /// overrides of a list-valued setting ([`is_list_setting`]) are its
    /// items, one per pair, each taken as text, and together replace the
    /// file's list.
    pub fn from_parts(text: &str, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string()))?;
        let mut lists: Vec<(String, Vec<toml::Value>)> = Vec::new();
        for (name, raw) in overrides {
            let key = name.replace('-', "_");
            if !SETTINGS.iter().any(|(n, _)| *n == key) {
                return Err(ConfigError::UnknownSetting(name.chars().take(64).collect()));
            }
            if is_list_setting(&key) {
                let item = toml::Value::String(raw.clone());
                match lists.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, items)) => items.push(item),
                    None => lists.push((key, vec![item])),
                }
            } else {
                table.insert(key, override_value(raw));
            }
        }
        for (key, items) in lists {
            table.insert(key, toml::Value::Array(items));
        }
        let config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive: &[(&str, u64)] = &[
            ("crl_poll_secs", self.crl_poll_secs),
            ("max_connections", self.max_connections as u64),
            ("listen_backlog", u64::from(self.listen_backlog)),
            (
                "max_handshakes_per_source",
                self.max_handshakes_per_source as u64,
            ),
            ("max_handshakes", self.max_handshakes as u64),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("max_bundle_bytes", self.max_bundle_bytes),
            ("bundle_history", self.bundle_history as u64),
            ("ui_refresh_secs", self.ui_refresh_secs),
            ("ui_page_nodes", self.ui_page_nodes as u64),
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_report_bytes", self.max_report_bytes),
            (
                "max_pending_uploads_per_mac",
                self.max_pending_uploads_per_mac as u64,
            ),
            ("max_quarantine_bytes", self.max_quarantine_bytes),
            ("upload_expiry_secs", self.upload_expiry_secs),
            (
                "anonymous_max_upload_bytes",
                self.anonymous_max_upload_bytes,
            ),
            (
                "anonymous_max_pending_uploads_per_mac",
                self.anonymous_max_pending_uploads_per_mac as u64,
            ),
            (
                "anonymous_max_quarantine_bytes",
                self.anonymous_max_quarantine_bytes,
            ),
            (
                "upload_burst_per_source",
                u64::from(self.upload_burst_per_source),
            ),
            (
                "anonymous_burst_per_source",
                u64::from(self.anonymous_burst_per_source),
            ),
            ("audit_max_entries", self.audit_max_entries),
            (
                "security_audit_max_entries",
                self.security_audit_max_entries,
            ),
            (
                "security_audit_burst_per_source",
                u64::from(self.security_audit_burst_per_source),
            ),
            ("fetch_audit_max_entries", self.fetch_audit_max_entries),
            (
                "node_burst_per_source",
                u64::from(self.node_burst_per_source),
            ),
            ("forward_timeout_secs", self.forward_timeout_secs),
            (
                "forward_backoff_initial_ms",
                self.forward_backoff_initial_ms,
            ),
            ("forward_backoff_max_secs", self.forward_backoff_max_secs),
            ("forward_poll_secs", self.forward_poll_secs),
            ("etcd_request_timeout_ms", self.etcd_request_timeout_ms),
            ("etcd_chunk_bytes", self.etcd_chunk_bytes),
            ("etcd_retry_after_secs", self.etcd_retry_after_secs),
            ("etcd_audit_queue_lines", self.etcd_audit_queue_lines as u64),
            ("etcd_forwarder_lease_secs", self.etcd_forwarder_lease_secs),
            (
                "etcd_report_batches_in_flight",
                self.etcd_report_batches_in_flight as u64,
            ),
        ];
        for (name, v) in positive {
            if *v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.anonymous_max_quarantine_bytes >= self.max_quarantine_bytes {
            return Err(ConfigError::Invalid(format!(
                "anonymous_max_quarantine_bytes ({}) must be below max_quarantine_bytes ({}): \
                 it is the anonymous share of the quarantine",
                self.anonymous_max_quarantine_bytes, self.max_quarantine_bytes
            )));
        }
        if self.etcd_chunk_bytes > MAX_ETCD_CHUNK_BYTES {
            return Err(ConfigError::Invalid(format!(
                "etcd_chunk_bytes must be at most {MAX_ETCD_CHUNK_BYTES}: etcd refuses larger requests"
            )));
        }
        if self.store == StoreKind::Etcd {
            let endpoints = self.etcd_endpoint_list();
            if endpoints.is_empty() {
                return Err(ConfigError::Invalid(
                    "store = \"etcd\" needs etcd_endpoints".into(),
                ));
            }
            for e in &endpoints {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(ConfigError::Invalid(format!(
                        "etcd endpoint {:?} must start with http:// or https://",
                        e.chars().take(128).collect::<String>()
                    )));
                }
            }
        }
        if !self.etcd_prefix.starts_with('/') || !self.etcd_prefix.ends_with('/') {
            return Err(ConfigError::Invalid(
                "etcd_prefix must start and end with '/'".into(),
            ));
        }
        if self.etcd_cert.as_os_str().is_empty() != self.etcd_key.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "etcd_cert and etcd_key go together".into(),
            ));
        }
        if self.max_header_bytes < 8192 {
            return Err(ConfigError::Invalid(
                "max_header_bytes must be at least 8192".into(),
            ));
        }
        let scheme_ok = self.engine_webhook.starts_with("http://")
            || self.engine_webhook.starts_with("https://");
        if !self.engine_webhook.is_empty() && !scheme_ok {
            return Err(ConfigError::Invalid(format!(
                "engine_webhook {:?} must start with http:// or https://",
                self.engine_webhook.chars().take(128).collect::<String>()
            )));
        }
        if !self.engine_webhook.is_empty()
            && self
                .engine_webhook
                .parse::<http::Uri>()
                .map(|u| u.host().is_none())
                .unwrap_or(true)
        {
            return Err(ConfigError::Invalid(
                "engine_webhook is not a valid URL with a host".into(),
            ));
        }
        Ok(())
    }

    /// Seconds field as a [`Duration`].
    pub fn secs(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    /// The example configuration file: every setting, its default and its doc.
    pub fn example_toml() -> String {
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        let mut out = String::from(
            "# satchel-server configuration. Every setting is shown with its default.\n\
             # Each one can also be given as a flag: --name-with-dashes VALUE.\n",
        );
        for (name, doc) in SETTINGS {
            out.push('\n');
            for line in doc.lines() {
                out.push('#');
                if !line.starts_with(' ') && !line.is_empty() {
                    out.push(' ');
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
            match defaults.get(*name) {
                Some(v) => out.push_str(&format!("{name} = {v}\n")),
                None => out.push_str(&format!("# {name} = (unset)\n")),
            }
        }
        out
    }
}

/// Whether the setting `name` (underscored) holds a list, so that its flag
/// is repeated once per item rather than given a TOML array.
pub fn is_list_setting(name: &str) -> bool {
    toml::Table::try_from(Config::default())
        .ok()
        .and_then(|t| t.get(name).map(toml::Value::is_array))
        .unwrap_or(false)
}

/// A flag's text as a TOML value: TOML syntax if it parses (`10`, `true`,
/// `["a", "b"]`, `"quoted"`), otherwise the bare text as a string.
fn override_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or_else(|| raw.into()),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn read_bounded(path: &std::path::Path) -> Result<String, ConfigError> {
    use satchel_names::file::ReadError;
    satchel_names::file::read_bounded_text(path, MAX_CONFIG_FILE_BYTES).map_err(|e| match e {
        ReadError::Io { path, source } => ConfigError::Io { path, source },
        ReadError::TooLarge { path, .. } => ConfigError::TooLarge { path },
        other => ConfigError::Syntax(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_example_round_trips() {
        let c = Config::from_parts("", &[]).expect("defaults");
        assert_eq!(c, Config::default());
        let example = Config::example_toml();
        let back = Config::from_parts(&example, &[]).expect("example parses");
        assert_eq!(back, Config::default());
        for (name, _) in SETTINGS {
            assert!(example.contains(&format!("{name} =")), "{name} missing");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let c = Config::from_parts(
            "listen = \"127.0.0.1:1\"\nmax_connections = 5\n",
            &[
                ("listen".into(), "127.0.0.1:2".into()),
                ("max-connections".into(), "7".into()),
                ("data_dir".into(), "/srv/x y".into()),
                ("trusted-signers".into(), "a.pem".into()),
                ("trusted-signers".into(), "b [c].pem".into()),
                ("allow_tls12".into(), "true".into()),
            ],
        )
        .expect("ok");
        assert_eq!(c.listen.to_string(), "127.0.0.1:2");
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.data_dir, PathBuf::from("/srv/x y"));
        assert_eq!(
            c.trusted_signers,
            [PathBuf::from("a.pem"), PathBuf::from("b [c].pem")]
        );
        assert!(c.allow_tls12);
    }

    #[test]
    fn etcd_endpoints_come_comma_separated_or_repeated() {
        let c = Config::from_parts(
            "",
            &[
                ("store".into(), "etcd".into()),
                (
                    "etcd-endpoints".into(),
                    "http://127.0.0.1:1,http://127.0.0.1:2".into(),
                ),
                ("etcd-endpoints".into(), "http://127.0.0.1:3".into()),
            ],
        )
        .expect("ok");
        assert_eq!(c.store, StoreKind::Etcd);
        assert_eq!(
            c.etcd_endpoint_list(),
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        assert!(Config::from_parts(
            "store = \"etcd\"\netcd_endpoints = [\"127.0.0.1:2379\"]\n",
            &[]
        )
        .is_err());
    }

    #[test]
    fn list_flags_replace_the_files_list() {
        assert!(is_list_setting("trusted_signers"));
        assert!(!is_list_setting("listen"));
        assert!(!is_list_setting("no_such_setting"));
        let file = "trusted_signers = [\"file.pem\"]\n";
        let kept = Config::from_parts(file, &[]).expect("ok");
        assert_eq!(kept.trusted_signers, [PathBuf::from("file.pem")]);
        let flag =
            Config::from_parts(file, &[("trusted_signers".into(), "flag.pem".into())]).expect("ok");
        assert_eq!(flag.trusted_signers, [PathBuf::from("flag.pem")]);
        // A TOML array literal is one path now, not a list.
        let literal = Config::from_parts("", &[("trusted-signers".into(), "[\"a.pem\"]".into())])
            .expect("ok");
        assert_eq!(literal.trusted_signers, [PathBuf::from("[\"a.pem\"]")]);
    }

    #[test]
    fn hostile_config_files_are_refused() {
        let long_key = format!("{} = 1", "a".repeat(100_000));
        let deep = format!("x = {}1{}", "[".repeat(10_000), "]".repeat(10_000));
        for text in [
            "listen = ",
            "listen = 5",
            "listen = \"not an address\"",
            "listen = \"127.0.0.1:99999\"",
            "unknown_field = 1",
            "max_connections = -1",
            "max_connections = 0",
            "max_connections = 1.5",
            "max_connections = 99999999999999999999999",
            "max_bundle_bytes = \"big\"",
            "trusted_signers = \"one.pem\"",
            "[listen]\nx = 1",
            "allow_tls12 = yes",
            "engine_webhook = \"ftp://engine\"",
            "engine_webhook = \"http://\"",
            "max_header_bytes = 10",
            "\u{0}",
            "listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"",
            long_key.as_str(),
            deep.as_str(),
        ] {
            assert!(
                Config::from_parts(text, &[]).is_err(),
                "{}",
                text.chars().take(80).collect::<String>()
            );
        }
    }

    #[test]
    fn hostile_flags_are_refused() {
        for (k, v) in [
            ("no_such_setting", "1"),
            ("", "1"),
            ("listen", "nowhere"),
            ("max_connections", "ten"),
            ("max_connections", "0"),
            ("upload_expiry_secs", "-5"),
            ("store", "postgres"),
            ("store", "etcd"),
            ("etcd_chunk_bytes", "2000000"),
            ("etcd_prefix", "satchel"),
            ("etcd_cert", "a.pem"),
        ] {
            assert!(
                Config::from_parts("", &[(k.into(), v.into())]).is_err(),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn oversized_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_CONFIG_FILE_BYTES + 1) as usize]).expect("write");
        assert!(matches!(
            Config::load(Some(&big), &[]),
            Err(ConfigError::TooLarge { .. })
        ));
        assert!(matches!(
            Config::load(Some(&dir.path().join("none")), &[]),
            Err(ConfigError::Io { .. })
        ));
        let bin = dir.path().join("bin.toml");
        std::fs::write(&bin, [0xff, 0xfe, 0x00]).expect("write");
        assert!(Config::load(Some(&bin), &[]).is_err());
    }
}
