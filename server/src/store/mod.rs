//! Storage: the [`Store`] trait and the records it keeps.
//!
//! The rest of the server touches storage only through [`Store`], so the
//! backend is chosen at start without touching routes. [`sled_store`] is the
//! embedded default and the only module that knows sled; [`etcd_store`] is
//! the store several replicas share, and the only module that knows etcd.
//!
//! Invariants every implementation keeps:
//! - A bundle's bytes and its metadata become visible together or not at all;
//!   a crash at any instant leaves the previous fully published version.
//! - A method that writes returns `Ok` only once the write is durable, except
//!   [`Store::audit_append`], which is durable within the backend's flush
//!   interval (an audit line per fetch must not cost a sync per fetch).
//! - The highest serial ever published per target survives `DELETE`.
//! - A version is in the history exactly when it was published and is
//!   among its target's last `bundle_history`; the node path never reads
//!   the history.
//! - Admission checks and the write they guard are atomic (serial check and
//!   publish; quarantine limits and upload insert).
//!
//! Layout: this file (types and trait), [`sled_store`] and [`etcd_store`]
//! (implementations).

pub mod etcd_store;
pub mod sled_store;

use std::sync::Arc;

use bytes::Bytes;
use satchel_names::{Mac, SiteName, Target};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use etcd_store::{EtcdSettings, EtcdStore};
pub use sled_store::SledStore;

/// Errors from the store. Routes map them to HTTP in `error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The serial is not above the highest ever published for the target.
    #[error("serial {serial} is not above {highest}, the highest ever published for {target}")]
    SerialNotGreater {
        /// The target.
        target: String,
        /// What was offered.
        serial: u64,
        /// The highest ever published.
        highest: u64,
    },
    /// The MAC already has its maximum of pending uploads.
    #[error("{mac} already has {max} pending uploads")]
    TooManyPending {
        /// The MAC.
        mac: Mac,
        /// The limit.
        max: usize,
    },
    /// The quarantine would exceed its total size.
    #[error("the quarantine is full ({max} bytes)")]
    QuarantineFull {
        /// The limit.
        max: u64,
    },
    /// The backend cannot be reached (etcd down or partitioned away):
    /// nothing was written; the caller may try again later.
    #[error("the shared store is unreachable; try again in {retry_after_secs} s")]
    Unavailable {
        /// How long to wait before trying again (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The backend failed (I/O, corruption). The message is for logs only.
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Metadata of one published bundle, taken from its verified manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleMeta {
    /// `host/<mac>` or `site/<name>`.
    pub target: String,
    /// The manifest's serial.
    pub serial: u64,
    /// For a host bundle, the site its signed manifest names.
    pub site: Option<SiteName>,
    /// sha256 of the whole bundle file (hex); also the ETag.
    pub sha256: String,
    /// Size of the bundle file in bytes.
    pub size: u64,
    /// Key id of the signer.
    pub signer: String,
    /// Manifest expiry (RFC 3339).
    pub expires: String,
    /// When it was published (RFC 3339).
    pub published: String,
    /// Who published it (scope label).
    pub published_by: String,
    /// sha256 of the payload (`payload.age`) the signed manifest names
    /// (hex): what a node's report says it applied, unchanged when an
    /// admin re-signs the same payload (rollback). Empty for bundles
    /// published before it was recorded.
    #[serde(default)]
    pub payload_sha256: String,
}

/// The state of an upload in the quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Waiting for an admin.
    Pending,
    /// The MAC already had a bundle when the upload arrived.
    Conflict,
}

/// Metadata of one quarantined upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// Store-assigned id (16 hex digits, increasing).
    pub id: String,
    /// The MAC it claims to be for.
    pub mac: Mac,
    /// Received (RFC 3339).
    pub received: String,
    /// Received, unix seconds (for expiry).
    pub received_unix: i64,
    /// Source address of the connection.
    pub source: String,
    /// Scope label of the client certificate, if one was presented.
    pub cert_scope: Option<String>,
    /// sha256 of the client certificate (hex), if one was presented.
    pub cert_fingerprint: Option<String>,
    /// Whether the certificate binds this MAC: a host certificate for this
    /// very MAC. A site certificate sits in every image of its site, so it
    /// proves the site, never the MAC (uploads stored before this field
    /// existed read as not binding).
    #[serde(default)]
    pub cert_binds_mac: bool,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the upload (hex).
    pub sha256: String,
    /// Pending or conflict.
    pub state: UploadState,
}

/// Limits checked atomically with an upload insert. Uploads with a client
/// certificate and anonymous ones are two pools that never count against
/// each other: anonymous uploads have `anonymous_*` to themselves, and
/// certified ones the rest of the total.
#[derive(Clone, Copy, Debug)]
pub struct QuarantineLimits {
    /// Pending certified uploads per MAC.
    pub max_pending_per_mac: usize,
    /// Total bytes of the quarantine, both pools together.
    pub max_total_bytes: u64,
    /// Pending anonymous uploads per MAC.
    pub anonymous_max_pending_per_mac: usize,
    /// Bytes anonymous uploads may hold (part of `max_total_bytes`).
    pub anonymous_max_total_bytes: u64,
}

impl QuarantineLimits {
    /// (pending per MAC, bytes) of the pool an upload belongs to.
    pub fn pool(&self, anonymous: bool) -> (usize, u64) {
        if anonymous {
            (
                self.anonymous_max_pending_per_mac,
                self.anonymous_max_total_bytes,
            )
        } else {
            (
                self.max_pending_per_mac,
                self.max_total_bytes
                    .saturating_sub(self.anonymous_max_total_bytes),
            )
        }
    }
}

/// A node's report, as stored and forwarded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    /// Unique report id (from the node, or assigned by the server).
    pub report_id: String,
    /// The node.
    pub mac: Mac,
    /// Received (RFC 3339).
    pub received: String,
    /// Scope label of the reporting certificate.
    pub reporter: String,
    /// The report as the node sent it (validated JSON object).
    pub report: serde_json::Value,
}

/// Inventory record of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node.
    pub mac: Mac,
    /// Last report received (RFC 3339).
    pub last_seen: String,
    /// Status of the last report.
    pub last_status: String,
    /// Serials applied per target in the last report.
    pub serials: serde_json::Value,
    /// Payload sha256 (hex) applied per target in the last report.
    #[serde(default)]
    pub payloads: serde_json::Value,
    /// Error of the last failed report, kept until a later one succeeds.
    pub last_error: Option<String>,
    /// The target whose bundle the last failed report says was refused
    /// (so that boot applied nothing), kept until a later one succeeds.
    #[serde(default)]
    pub last_refused: Option<String>,
    /// Fetcher version of the last report.
    pub fetcher_version: Option<String>,
    /// Id of the last report.
    pub last_report_id: String,
    /// Reports received in total.
    pub reports: u64,
    /// The last [`RECENT_REPORTS`] reports, newest first.
    #[serde(default)]
    pub recent: Vec<ReportSummary>,
}

/// Reports kept per node in [`NodeRecord::recent`].
pub const RECENT_REPORTS: usize = 5;

/// One report, in short.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// Received (RFC 3339).
    pub received: String,
    /// Its status.
    pub status: String,
    /// Its error, if any.
    pub error: Option<String>,
    /// Its id.
    pub report_id: String,
}

impl NodeRecord {
    /// The node's record once `report` is added to `old` (pure; every
    /// store keeps its records this way).
    pub fn after(old: Option<NodeRecord>, report: &StoredReport) -> NodeRecord {
        let r = &report.report;
        let status = r
            .get("status")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_string();
        let error = r
            .get("error")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string());
        let refused = r
            .get("refused")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string());
        let mut recent = vec![ReportSummary {
            received: report.received.clone(),
            status: status.clone(),
            error: error.clone(),
            report_id: report.report_id.clone(),
        }];
        if let Some(o) = &old {
            recent.extend(o.recent.iter().take(RECENT_REPORTS - 1).cloned());
        }
        NodeRecord {
            mac: report.mac,
            last_seen: report.received.clone(),
            serials: r.get("serials").cloned().unwrap_or(serde_json::Value::Null),
            payloads: r
                .get("payloads")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            last_error: match (&error, status.as_str()) {
                (Some(e), _) => Some(e.clone()),
                (None, "ok" | "applied") => None,
                (None, _) => old.as_ref().and_then(|o| o.last_error.clone()),
            },
            last_refused: match (&refused, status.as_str()) {
                (Some(t), _) => Some(t.clone()),
                (None, "ok" | "applied") => None,
                (None, _) => old.as_ref().and_then(|o| o.last_refused.clone()),
            },
            last_status: status,
            fetcher_version: r
                .get("fetcher_version")
                .and_then(|v| v.as_str())
                .map(|s| s.to_string()),
            last_report_id: report.report_id.clone(),
            reports: old.as_ref().map(|o| o.reports).unwrap_or(0) + 1,
            recent,
        }
    }
}

/// Which audit log a line belongs to. Each is bounded on its own, so
/// node traffic, however much of it, never evicts an admin action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLog {
    /// Every request made with an admin certificate. No other caller
    /// writes to it.
    #[default]
    Admin,
    /// Refusals of other callers: no or a revoked certificate, a scope
    /// that does not allow the request (rate-limited per source).
    Security,
    /// Node fetches that were answered (boot index, bundle bytes).
    Fetch,
}

impl AuditLog {
    /// Every log, in the order their trees are named.
    pub const ALL: [AuditLog; 3] = [AuditLog::Admin, AuditLog::Security, AuditLog::Fetch];

    /// Parses `admin`, `security` or `fetch`.
    pub fn parse(s: &str) -> Option<AuditLog> {
        AuditLog::ALL.into_iter().find(|l| l.name() == s)
    }

    /// The log's name.
    pub fn name(self) -> &'static str {
        match self {
            AuditLog::Admin => "admin",
            AuditLog::Security => "security",
            AuditLog::Fetch => "fetch",
        }
    }
}

/// One audit line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store), one sequence across both logs.
    #[serde(default)]
    pub seq: u64,
    /// The log it is kept in (lines stored before there were several are admin lines).
    #[serde(default)]
    pub log: AuditLog,
    /// When (RFC 3339).
    pub time: String,
    /// Scope label, or `anonymous`.
    pub who: String,
    /// sha256 of the client certificate (hex), if any.
    pub cert_fingerprint: Option<String>,
    /// Source address.
    pub source: String,
    /// The action: `GET /v1/bundles/host/…` etc.
    pub what: String,
    /// The HTTP status returned.
    pub status: u16,
}

/// A queued report waiting to be forwarded.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardItem {
    /// Queue position.
    pub seq: u64,
    /// The JSON document to POST.
    pub body: Bytes,
}

/// A store call's outcome, to be awaited ([`Store::report_record_later`]).
pub type Later<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>>;

/// The storage interface. Methods block (call them from a blocking context).
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Metadata of the bundle published for `target`, if any.
    fn bundle_meta(&self, target: &Target) -> Result<Option<BundleMeta>, StoreError>;
    /// The bundle published for `target` with its metadata.
    fn bundle_get(&self, target: &Target) -> Result<Option<(BundleMeta, Bytes)>, StoreError>;
    /// Publishes atomically if `meta.serial` is above the highest ever
    /// published for the target, and keeps it among the target's last
    /// `history` versions (at least the one published); durable on `Ok`.
    fn bundle_put(
        &self,
        target: &Target,
        meta: &BundleMeta,
        bytes: &[u8],
        history: usize,
    ) -> Result<(), StoreError>;
    /// The kept versions of `target`, newest first (the current one, if
    /// any, among them; a DELETE keeps the history).
    fn bundle_history(&self, target: &Target) -> Result<Vec<BundleMeta>, StoreError>;
    /// One kept version of `target` by serial.
    fn bundle_version(
        &self,
        target: &Target,
        serial: u64,
    ) -> Result<Option<(BundleMeta, Bytes)>, StoreError>;
    /// Removes the published bundle (keeps the highest serial). `Ok(false)` if none.
    fn bundle_delete(&self, target: &Target) -> Result<bool, StoreError>;
    /// Every published bundle's metadata.
    fn bundle_list(&self) -> Result<Vec<BundleMeta>, StoreError>;
    /// Highest serial ever published for `target`.
    fn highest_serial(&self, target: &Target) -> Result<Option<u64>, StoreError>;
    /// Highest serial ever published, for every target ever published
    /// (deleted ones included), as (`host/…` or `site/…`, serial).
    fn highest_serials(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Stores an upload if the limits allow; assigns `meta.id`. Durable on `Ok`.
    fn upload_put(
        &self,
        meta: UploadMeta,
        bytes: &[u8],
        limits: QuarantineLimits,
    ) -> Result<UploadMeta, StoreError>;
    /// Every quarantined upload's metadata, oldest first.
    fn upload_list(&self) -> Result<Vec<UploadMeta>, StoreError>;
    /// One upload.
    fn upload_get(&self, id: &str) -> Result<Option<(UploadMeta, Bytes)>, StoreError>;
    /// Deletes one upload. `Ok(false)` if none.
    fn upload_delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes uploads received before `cutoff_unix`; returns how many.
    fn upload_expire(&self, cutoff_unix: i64) -> Result<usize, StoreError>;
    /// (count, total bytes) of the quarantine.
    fn quarantine_usage(&self) -> Result<(u64, u64), StoreError>;

    /// Records a report: updates the node's inventory and enqueues it for
    /// forwarding (if `forward`), atomically; durable on `Ok`. Answers the
    /// forward queue's depth once the report is in it (for `/metrics`):
    /// exact when `forward`, else the depth this server last saw.
    fn report_record(&self, report: &StoredReport, forward: bool) -> Result<u64, StoreError>;
    /// [`Store::report_record`] for an async caller, answered through a
    /// future. The default runs `report_record` on the blocking pool; a
    /// backend whose writes wait on a runtime of its own (etcd) answers
    /// without holding a blocking thread while etcd commits.
    fn report_record_later(self: Arc<Self>, report: StoredReport, forward: bool) -> Later<u64> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.report_record(&report, forward))
                .await
                .map_err(|e| StoreError::Backend(format!("the report's task failed: {e}")))?
        })
    }
    /// The inventory.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// Up to `max` queued forwards, oldest first.
    fn forward_peek(&self, max: usize) -> Result<Vec<ForwardItem>, StoreError>;
    /// Removes a forwarded item; durable on `Ok`. Answers the queue's
    /// depth after it (for `/metrics`, without a request of its own).
    fn forward_ack(&self, seq: u64) -> Result<u64, StoreError>;
    /// Queued forwards.
    fn forward_depth(&self) -> Result<u64, StoreError>;
    /// A signal the backend raises when another server may have queued a
    /// forward (so the forwarder looks at once, whichever server stored
    /// the report); `None` when only this process queues them.
    fn forward_signal(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Appends an audit line (assigns `seq`) to its log (`entry.log`),
    /// dropping that log's oldest lines beyond `max_entries`; the other log
    /// is untouched.
    fn audit_append(&self, entry: AuditEntry, max_entries: u64) -> Result<(), StoreError>;
    /// Up to `limit` audit lines with `seq > after`, oldest first, of one
    /// log or (`None`) of all merged by `seq`.
    fn audit_list(
        &self,
        after: u64,
        limit: usize,
        log: Option<AuditLog>,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Prometheus text of the backend's own health (no I/O; empty when it
    /// has nothing to say).
    fn prometheus(&self) -> String {
        String::new()
    }
}
