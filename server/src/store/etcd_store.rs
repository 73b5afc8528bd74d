//! The shared [`Store`]: everything durable in etcd, for several replicas.
//!
//! Keys, all under the configured prefix (`/satchel/` by default):
//! - `blob/<sha256>/<nonce>/<chunk>`: a bundle's bytes, in chunks under
//!   etcd's request limit (`etcd_chunk_bytes`), addressed by content hash;
//!   the nonce keeps two writers of the same bytes from sharing chunks, so
//!   the one that loses can remove its own.
//! - `bundle/<target>`: the current bundle of a target, a small JSON
//!   [`BlobRecord`] (metadata and where its chunks are). One write makes a
//!   bundle visible, after all its chunks are written: a half-written
//!   bundle is never seen.
//! - `serial/<target>`: the highest serial ever published (never removed).
//! - `version/<target>/<serial>`: the kept versions (records as above).
//! - `upload/<id>` and `upload_data/<nonce>/<chunk>`: the quarantine.
//! - `node/<mac>`: inventory records; `forward/<seq>`: the forward queue.
//! - `audit/<log>/<seq>` and `audit_next`: the three audit logs and their
//!   one sequence.
//!
//! Invariants:
//! - A publish is one etcd transaction that compares the `serial/<target>`
//!   key's revision with the one its check read, so two replicas that
//!   publish at once cannot both pass the check: one commits, the other
//!   reads the new serial and answers 409. `Ok` only after etcd committed.
//! - Quarantine admission reads every pending upload at one revision and
//!   commits only if no upload was added since (a range compare), so the
//!   global limits hold across replicas.
//! - The boot path ([`Store::bundle_meta`], [`Store::bundle_get`],
//!   [`Store::bundle_list`]) reads only this replica's cache, which holds
//!   the current index and bytes (checked against their sha256 when
//!   loaded) and is kept current by a watch on `bundle/`. While etcd is
//!   unreachable the cache keeps serving what it has; every other call
//!   fails with [`StoreError::Unavailable`] (503 + `Retry-After`).
//! - One replica at a time forwards reports: the one whose lease holds the
//!   `forwarder` key (created only if absent, in a transaction). The
//!   others see an empty forward queue; when the forwarder dies its lease
//!   expires (`etcd_forwarder_lease_secs`), the key goes, and the next
//!   replica to try takes it. A forwarder cut off from etcd stops
//!   forwarding once it can no longer renew its lease; a report it
//!   delivered but could not remove is delivered again by the next one
//!   (at least once; the engine tells duplicates by `report_id`).
//! - The forwarding replica watches `forward/` while it holds the lease
//!   and wakes its forwarder for every report queued, by any replica:
//!   delivery does not wait for a poll (`forward_poll_secs` is only the
//!   safety net).
//! - Audit lines are queued here and written in batches (one transaction
//!   per batch, gathered for `etcd_audit_flush_ms`); they are durable
//!   within that, as the trait allows, and [`Store::flush`] waits for them.
//!
//! The trait is synchronous; etcd's client is not. The store runs its own
//! small runtime: a call sends its future there and waits for the answer,
//! at most `etcd_request_timeout_ms`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, SortOrder,
    SortTarget, Txn, TxnOp, WatchFilterType, WatchOptions,
};
use satchel_names::Target;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{
    AuditEntry, AuditLog, BundleMeta, ForwardItem, NodeRecord, QuarantineLimits, Store, StoreError,
    StoredReport, UploadMeta, UploadState,
};

/// Keys read per range request when listing a prefix.
const PAGE: i64 = 500;

/// Attempts of an optimistic transaction (read, check, compare-and-write)
/// before giving up on a key that other writers keep changing.
const TXN_TRIES: usize = 32;

/// Operations in one etcd transaction: etcd's default `--max-txn-ops` is 128.
const MAX_TXN_OPS: usize = 100;

/// Audit lines written per transaction (plus the sequence key).
const AUDIT_BATCH: usize = MAX_TXN_OPS - 1;

/// First and longest pause between two tries of the watch (and of the
/// audit writer) while etcd is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How often the watch asks etcd for its progress (see `last_sync_unix_ms`).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// How the store reaches etcd (from the server's settings).
#[derive(Clone, Debug)]
pub struct EtcdSettings {
    /// Client URLs (`http://` or, with TLS, `https://`).
    pub endpoints: Vec<String>,
    /// Key prefix; every key of this store is below it.
    pub prefix: String,
    /// PEM CA that verifies etcd's certificate, if TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key for etcd's mutual TLS, if any.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Longest one store call waits for etcd.
    pub request_timeout: Duration,
    /// Largest chunk of a bundle or upload in one etcd value.
    pub chunk_bytes: usize,
    /// `Retry-After` sent with a 503 while etcd is unreachable.
    pub retry_after_secs: u64,
    /// Audit lines held in memory while they wait to be written.
    pub audit_queue_lines: usize,
    /// Whether this replica competes to be the one that forwards reports
    /// (only when it has a webhook to forward to).
    pub campaign_forwarder: bool,
    /// Time to live of the forwarder's lease: how long the other replicas
    /// wait for a forwarder that died before one of them takes over.
    pub forwarder_lease: Duration,
    /// Report batches written at once (`etcd_report_batches_in_flight`).
    pub report_batches_in_flight: usize,
    /// How long audit lines are gathered before a write (`etcd_audit_flush_ms`).
    pub audit_flush: Duration,
}

/// Where a bundle's or upload's bytes are, and what they must hash to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BlobRef {
    /// Key of the chunks below the prefix, ending in `/`.
    key: String,
    /// Number of chunks.
    chunks: u32,
    /// Total bytes.
    size: u64,
    /// sha256 of the whole (hex).
    sha256: String,
}

/// The value of `bundle/<target>` and `version/<target>/<serial>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BlobRecord {
    meta: BundleMeta,
    blob: BlobRef,
}

/// The value of `upload/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct UploadRecord {
    meta: UploadMeta,
    blob: BlobRef,
}

/// One cached bundle.
#[derive(Clone, Debug)]
struct Cached {
    meta: BundleMeta,
    bytes: Bytes,
}

/// This replica's view of the current bundles: per target, the etcd
/// revision of what it holds (a removal included), so that a late event
/// never replaces a newer state.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<String, (i64, Option<Cached>)>,
}

impl Cache {
    /// Applies the state of `target` at `rev` unless something newer is held.
    fn apply(&mut self, target: &str, rev: i64, state: Option<Cached>) {
        match self.entries.get(target) {
            Some((held, _)) if *held >= rev => {}
            _ => {
                self.entries.insert(target.to_string(), (rev, state));
            }
        }
    }

    fn get(&self, target: &str) -> Option<&Cached> {
        self.entries.get(target).and_then(|(_, c)| c.as_ref())
    }

    /// The bytes already held for `sha256`, whatever target holds them.
    fn bytes_of(&self, sha256: &str) -> Option<Bytes> {
        self.entries
            .values()
            .filter_map(|(_, c)| c.as_ref())
            .find(|c| c.meta.sha256 == sha256)
            .map(|c| c.bytes.clone())
    }
}

/// Health of the store as this replica sees it (for `/metrics`).
#[derive(Debug, Default)]
pub struct EtcdHealth {
    /// The last etcd call (or the watch) succeeded.
    pub reachable: AtomicBool,
    /// Bundle reads answered from the cache.
    pub cache_hits: AtomicU64,
    /// Boot-path reads of a target the cache does not hold.
    pub cache_misses: AtomicU64,
    /// Unix milliseconds of the last watch event or resync applied.
    pub last_sync_unix_ms: AtomicU64,
    /// Revision the cache is current to.
    pub cache_revision: AtomicU64,
    /// Audit lines dropped because the queue was full.
    pub audit_dropped: AtomicU64,
    /// This replica holds the forwarder lease (it alone forwards reports).
    pub forwarder: AtomicBool,
}

/// Reports of distinct nodes written in one transaction: two puts (record
/// and forward item) and two compares each, under etcd's 128 operations.
const REPORT_BATCH: usize = 50;

/// Reports queued for the writer before senders wait for room (the
/// connection limit bounds how many wait at once anyway).
const REPORT_QUEUE: usize = 1024;

/// Takes from `held` the next batch: at most [`REPORT_BATCH`] reports of
/// distinct nodes, none of them among `busy` (nodes whose previous report
/// is being written); the rest stay in `held`, in order.
fn take_batch<'a>(
    held: &mut std::collections::VecDeque<ReportMsg>,
    busy: impl Iterator<Item = &'a satchel_names::Mac>,
) -> Vec<ReportMsg> {
    let mut taken: std::collections::HashSet<satchel_names::Mac> = busy.copied().collect();
    let mut batch = Vec::new();
    let mut rest = std::collections::VecDeque::with_capacity(held.len());
    while let Some(m) = held.pop_front() {
        if batch.len() < REPORT_BATCH && taken.insert(m.0.mac) {
            batch.push(m);
        } else {
            rest.push_back(m);
        }
    }
    *held = rest;
    batch
}

/// A report waiting for the report writer, and where its outcome goes.
type ReportMsg = (StoredReport, bool, Reply);

/// Where a report's outcome goes: a caller blocked on a thread of its own
/// ([`Store::report_record`]) or a task awaiting it
/// ([`Store::report_record_later`]).
enum Reply {
    Blocked(std::sync::mpsc::SyncSender<Result<u64, StoreError>>),
    Awaited(tokio::sync::oneshot::Sender<Result<u64, StoreError>>),
}

impl Reply {
    fn send(self, r: Result<u64, StoreError>) {
        // A caller that gave up (its timeout) no longer listens.
        match self {
            Reply::Blocked(tx) => {
                let _ = tx.send(r);
            }
            Reply::Awaited(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// The same error again (one batch's failure answers every sender).
fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { retry_after_secs } => StoreError::Unavailable {
            retry_after_secs: *retry_after_secs,
        },
        other => StoreError::Backend(other.to_string()),
    }
}

/// What the audit writer knows from its last transactions.
#[derive(Debug, Default)]
struct AuditSeen {
    /// The shared sequence's value and mod revision after this writer's
    /// last answer (`None` until read, or when an answer was lost).
    next: Option<(u64, i64)>,
    /// Per log ([`AuditLog`] as index): the lines it held at its last
    /// count, and the sequence's value then. Their sum with the lines
    /// written since bounds what it holds, so it is counted (and trimmed)
    /// only once that bound passes its limit. Lines `migrate` imports keep
    /// their old numbers and are not in the bound: a replica running
    /// during a migration trims them once its bound next passes the limit.
    counted: [Option<(u64, u64)>; AuditLog::ALL.len()],
}

enum AuditMsg {
    Line(AuditEntry, u64),
    Flush(std::sync::mpsc::SyncSender<()>),
}

struct Inner {
    client: Client,
    prefix: String,
    settings: EtcdSettings,
    cache: RwLock<Cache>,
    health: EtcdHealth,
    /// The forwarder lease while this replica holds it (revoked on drop).
    forwarder_lease: std::sync::Mutex<Option<i64>>,
    /// Raised while this replica forwards, when the watch on `forward/`
    /// sees a report queued (by any replica) and when the lease is taken
    /// (the queue may hold reports already): the forwarder waits on it.
    forward_queued: Arc<tokio::sync::Notify>,
    /// The forward queue's depth as counted in this replica's last report
    /// transaction that queued a report (what `report_record` answers, so
    /// a report costs no etcd request of its own for `/metrics`).
    forward_depth_seen: AtomicU64,
}

/// The etcd-backed store.
pub struct EtcdStore {
    inner: Arc<Inner>,
    /// The runtime etcd's client and the watch run on; taken on drop and
    /// shut down in the background (a runtime may not be dropped inside
    /// another one's task).
    runtime: Option<tokio::runtime::Runtime>,
    /// The audit writer's queue (bounded by `audit_queue_lines`).
    audit_tx: mpsc::Sender<AuditMsg>,
    /// The report writer's queue ([`Inner::report_writer`]).
    report_tx: mpsc::Sender<ReportMsg>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.settings.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        let Some(rt) = self.runtime.take() else {
            return;
        };
        // A forwarder that stops cleanly hands its lease back, so another
        // replica takes over at its next try rather than after the TTL.
        let lease = *self
            .inner
            .forwarder_lease
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(id) = lease {
            let (handle, inner) = (rt.handle().clone(), self.inner.clone());
            let wait = self.inner.settings.request_timeout.min(RETRY_MAX);
            // On a thread of its own: this drop may run inside another
            // runtime's task, where blocking on one is not allowed.
            let _ = std::thread::spawn(move || {
                handle.block_on(async move {
                    let _ =
                        tokio::time::timeout(wait, inner.client.lease_client().revoke(id)).await;
                })
            })
            .join();
        }
        rt.shutdown_background();
    }
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(backend)
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Inner {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> StoreError {
        self.health.reachable.store(false, Ordering::Relaxed);
        tracing::warn!(error = %detail, "etcd unreachable");
        StoreError::Unavailable {
            retry_after_secs: self.settings.retry_after_secs,
        }
    }

    /// Maps a client error: transport failures and etcd being unable to
    /// answer are [`StoreError::Unavailable`]; the rest are backend errors.
    fn etcd_err(&self, e: etcd_client::Error) -> StoreError {
        use etcd_client::Error as E;
        let unreachable = match &e {
            E::TransportError(_) | E::IoError(_) => true,
            E::GRpcStatus(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
                    | tonic::Code::Aborted
            ),
            _ => false,
        };
        if unreachable {
            self.unavailable(e)
        } else {
            StoreError::Backend(format!("etcd: {e}"))
        }
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    fn ok<T>(&self, r: Result<T, etcd_client::Error>) -> Result<T, StoreError> {
        match r {
            Ok(v) => {
                self.health.reachable.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => Err(self.etcd_err(e)),
        }
    }

    /// One key's value and mod revision (0 when absent).
    async fn get_one(&self, key: &str) -> Result<(Option<Vec<u8>>, i64), StoreError> {
        let mut resp = self.ok(self.kv().get(key, None).await)?;
        Ok(match resp.take_kvs().into_iter().next() {
            Some(kv) => {
                let rev = kv.mod_revision();
                (Some(kv.into_key_value().1), rev)
            }
            None => (None, 0),
        })
    }

    /// Every (key, value, mod revision) below `prefix`, in key order, read
    /// at one revision (returned), page by page. `from` starts the range
    /// later than the prefix; `limit` stops after that many.
    async fn scan(
        &self,
        prefix: &str,
        from: Option<&str>,
        limit: Option<usize>,
        keys_only: bool,
    ) -> Result<(Vec<(String, Vec<u8>, i64)>, i64), StoreError> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = from.unwrap_or(prefix).as_bytes().to_vec();
        let mut out = Vec::new();
        let mut revision = 0;
        loop {
            let want = match limit {
                Some(l) => (l - out.len()).min(PAGE as usize) as i64,
                None => PAGE,
            };
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(want)
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            if keys_only {
                opts = opts.with_keys_only();
            }
            let mut resp = self.ok(self.kv().get(start.clone(), Some(opts)).await)?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let n = kvs.len();
            for kv in kvs {
                let rev = kv.mod_revision();
                let (k, v) = kv.into_key_value();
                start = k.clone();
                start.push(0);
                out.push((String::from_utf8_lossy(&k).into_owned(), v, rev));
            }
            let full = limit.is_some_and(|l| out.len() >= l);
            if !more || n == 0 || full {
                return Ok((out, revision));
            }
        }
    }

    /// Writes `bytes` in chunks below `key` (relative, ending in `/`).
    async fn write_blob(&self, key: String, bytes: &[u8]) -> Result<BlobRef, StoreError> {
        let chunk = self.settings.chunk_bytes.max(1);
        let mut kv = self.kv();
        let mut chunks = 0u32;
        for (i, part) in bytes.chunks(chunk).enumerate() {
            let k = self.key(&format!("{key}{i:06}"));
            self.ok(kv.put(k, part.to_vec(), None).await)?;
            chunks += 1;
        }
        Ok(BlobRef {
            key,
            chunks,
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        })
    }

    /// Reads a blob and checks its size and sha256.
    async fn read_blob(&self, blob: &BlobRef) -> Result<Bytes, StoreError> {
        let mut out = Vec::with_capacity(blob.size as usize);
        let mut kv = self.kv();
        for i in 0..blob.chunks {
            let k = self.key(&format!("{}{i:06}", blob.key));
            let mut resp = self.ok(kv.get(k, None).await)?;
            let Some(part) = resp.take_kvs().into_iter().next() else {
                return Err(StoreError::Backend(format!(
                    "chunk {i} of {} is missing",
                    blob.key
                )));
            };
            out.extend_from_slice(part.value());
        }
        if out.len() as u64 != blob.size || sha256_hex(&out) != blob.sha256 {
            return Err(StoreError::Backend(format!(
                "{} does not match its recorded size and sha256",
                blob.key
            )));
        }
        Ok(Bytes::from(out))
    }

    async fn delete_blob(&self, blob: &BlobRef) -> Result<(), StoreError> {
        let k = self.key(&blob.key);
        let end = prefix_end(k.as_bytes());
        self.ok(self
            .kv()
            .delete(k, Some(etcd_client::DeleteOptions::new().with_range(end)))
            .await)?;
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<(bool, i64), StoreError> {
        let resp = self.ok(self.kv().txn(txn).await)?;
        Ok((
            resp.succeeded(),
            resp.header().map(|h| h.revision()).unwrap_or(0),
        ))
    }

    // ---- bundles ----

    async fn bundle_put(
        &self,
        target: &Target,
        meta: &BundleMeta,
        bytes: Bytes,
        history: usize,
    ) -> Result<(), StoreError> {
        let t = target.to_string();
        let serial_key = self.key(&format!("serial/{t}"));
        let highest = |v: Option<Vec<u8>>| -> Result<Option<u64>, StoreError> {
            v.map(|v| {
                String::from_utf8_lossy(&v)
                    .parse::<u64>()
                    .map_err(|_| StoreError::Backend(format!("corrupt serial of {t}")))
            })
            .transpose()
        };
        let refuse = |highest: u64| StoreError::SerialNotGreater {
            target: t.clone(),
            serial: meta.serial,
            highest,
        };
        // Refuse before writing any chunk when the serial is already too low.
        let (v, _) = self.get_one(&serial_key).await?;
        if let Some(h) = highest(v)? {
            if meta.serial <= h {
                return Err(refuse(h));
            }
        }
        let nonce: u64 = rand::random();
        let blob = self
            .write_blob(format!("blob/{}/{nonce:016x}/", meta.sha256), &bytes)
            .await?;
        let record = to_json(&BlobRecord {
            meta: meta.clone(),
            blob: blob.clone(),
        })?;
        let version_prefix = self.key(&format!("version/{t}/"));
        let result = async {
            for _ in 0..TXN_TRIES {
                let (v, serial_rev) = self.get_one(&serial_key).await?;
                if let Some(h) = highest(v)? {
                    if meta.serial <= h {
                        return Err(refuse(h));
                    }
                }
                let (versions, _) = self.scan(&version_prefix, None, None, false).await?;
                // Oldest first; keep `history` including the new one.
                let excess = (versions.len() + 1).saturating_sub(history.max(1));
                let trimmed: Vec<&(String, Vec<u8>, i64)> = versions.iter().take(excess).collect();
                let mut ops = vec![
                    TxnOp::put(serial_key.clone(), meta.serial.to_string(), None),
                    TxnOp::put(self.key(&format!("bundle/{t}")), record.clone(), None),
                    TxnOp::put(
                        format!("{version_prefix}{:020}", meta.serial),
                        record.clone(),
                        None,
                    ),
                ];
                for (k, _, _) in trimmed.iter().take(MAX_TXN_OPS - ops.len()) {
                    ops.push(TxnOp::delete(k.clone(), None));
                }
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        serial_key.clone(),
                        CompareOp::Equal,
                        serial_rev,
                    )])
                    .and_then(ops);
                let (ok, rev) = self.txn(txn).await?;
                if ok {
                    // The trimmed versions' bytes go after the commit: a
                    // failure here only leaves unreferenced chunks.
                    for (_, v, _) in trimmed {
                        if let Ok(old) = from_json::<BlobRecord>(v) {
                            if let Err(e) = self.delete_blob(&old.blob).await {
                                tracing::warn!(error = %e, "removing a trimmed version's chunks");
                            }
                        }
                    }
                    return Ok(rev);
                }
            }
            Err(StoreError::Backend(format!(
                "publishing {t}: the serial kept changing during {TXN_TRIES} tries"
            )))
        }
        .await;
        match result {
            Ok(rev) => {
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                cache.apply(
                    &t,
                    rev,
                    Some(Cached {
                        meta: meta.clone(),
                        bytes,
                    }),
                );
                Ok(())
            }
            Err(e) => {
                // These chunks are ours alone (the nonce): nothing refers to them.
                if let Err(d) = self.delete_blob(&blob).await {
                    tracing::warn!(error = %d, "removing the chunks of a refused publish");
                }
                Err(e)
            }
        }
    }

    async fn bundle_delete(&self, target: &Target) -> Result<bool, StoreError> {
        let t = target.to_string();
        let key = self.key(&format!("bundle/{t}"));
        for _ in 0..TXN_TRIES {
            let (v, rev) = self.get_one(&key).await?;
            if v.is_none() {
                return Ok(false);
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::delete(key.clone(), None)]);
            let (ok, rev) = self.txn(txn).await?;
            if ok {
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                cache.apply(&t, rev, None);
                return Ok(true);
            }
        }
        Err(StoreError::Backend(format!(
            "deleting {t}: it kept changing during {TXN_TRIES} tries"
        )))
    }

    async fn versions(&self, target: &Target) -> Result<Vec<BlobRecord>, StoreError> {
        let (kvs, _) = self
            .scan(&self.key(&format!("version/{target}/")), None, None, false)
            .await?;
        kvs.iter().map(|(_, v, _)| from_json(v)).collect()
    }

    /// Loads the bytes of a record, from the cache when it holds them.
    async fn load(&self, record: &BlobRecord) -> Result<Bytes, StoreError> {
        let held = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            cache.bytes_of(&record.meta.sha256)
        };
        match held {
            Some(b) => Ok(b),
            None => self.read_blob(&record.blob).await,
        }
    }

    /// Reads every current bundle at one revision into the cache; returns
    /// that revision (the watch goes on from the next).
    async fn resync(&self) -> Result<i64, StoreError> {
        let prefix = self.key("bundle/");
        let (kvs, rev) = self.scan(&prefix, None, None, false).await?;
        let mut seen = Vec::with_capacity(kvs.len());
        for (k, v, mod_rev) in kvs {
            let target = k[prefix.len()..].to_string();
            let record: BlobRecord = from_json(&v)?;
            let bytes = self.load(&record).await?;
            self.cache.write().unwrap_or_else(|p| p.into_inner()).apply(
                &target,
                mod_rev,
                Some(Cached {
                    meta: record.meta,
                    bytes,
                }),
            );
            seen.push(target);
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = cache
            .entries
            .keys()
            .filter(|t| !seen.contains(t))
            .cloned()
            .collect();
        for t in gone {
            cache.apply(&t, rev, None);
        }
        drop(cache);
        self.synced(rev);
        Ok(rev)
    }

    fn synced(&self, rev: i64) {
        self.health
            .cache_revision
            .fetch_max(rev.max(0) as u64, Ordering::Relaxed);
        self.health
            .last_sync_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
        self.health.reachable.store(true, Ordering::Relaxed);
    }

    /// Keeps the cache current: a resync, then a watch from the revision
    /// after it; on any failure (etcd gone, the watch cancelled or
    /// compacted) the same again after a pause. Runs until the runtime stops.
    async fn watch_bundles(self: Arc<Self>) {
        let mut pause = RETRY_MIN;
        loop {
            match self.watch_once().await {
                Ok(()) => pause = RETRY_MIN,
                Err(e) => {
                    tracing::warn!(error = %e, "bundle watch interrupted; cached bundles still served");
                    self.health.reachable.store(false, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn watch_once(&self) -> Result<(), StoreError> {
        let rev = self.resync().await?;
        let prefix = self.key("bundle/");
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1)
            .with_progress_notify();
        let stream = self.ok(self
            .client
            .watch_client()
            .watch(prefix.clone(), Some(opts))
            .await)?;
        let (mut requests, mut stream) = stream.split();
        // Asks etcd now and then how far the watch is, so the last sync
        // stays recent while nothing is published (and stops being
        // recent when etcd is gone).
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        loop {
            let msg = tokio::select! {
                m = stream.message() => self.ok(m)?,
                _ = progress.tick() => {
                    self.ok(requests.request_progress().await)?;
                    continue;
                }
            };
            let Some(resp) = msg else {
                return Err(StoreError::Backend("the watch stream ended".into()));
            };
            if resp.canceled() {
                return Err(StoreError::Backend(format!(
                    "the watch was cancelled: {}",
                    resp.cancel_reason()
                )));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let Some(target) = key.strip_prefix(&prefix) else {
                    continue;
                };
                let mod_rev = kv.mod_revision();
                match ev.event_type() {
                    EventType::Put => {
                        let record: BlobRecord = from_json(kv.value())?;
                        let bytes = self.load(&record).await?;
                        self.cache.write().unwrap_or_else(|p| p.into_inner()).apply(
                            target,
                            mod_rev,
                            Some(Cached {
                                meta: record.meta,
                                bytes,
                            }),
                        );
                    }
                    EventType::Delete => {
                        self.cache
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .apply(target, mod_rev, None);
                    }
                }
            }
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            self.synced(rev);
        }
    }

    // ---- forwarder election ----

    /// Competes for the forwarder lease, and renews it while held. Runs
    /// until the runtime stops.
    async fn campaign(self: Arc<Self>) {
        let key = self.key("forwarder");
        let ttl = self.settings.forwarder_lease.as_secs().max(1) as i64;
        let every = (self.settings.forwarder_lease / 3).max(Duration::from_millis(100));
        let me = format!("{:016x}", rand::random::<u64>());
        loop {
            if let Err(e) = self.hold(&key, ttl, every, &me).await {
                tracing::warn!(error = %e, "forwarder lease lost or not reachable");
            }
            *self
                .forwarder_lease
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            if self.health.forwarder.swap(false, Ordering::Relaxed) {
                tracing::info!("no longer the forwarding replica");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Takes the lease if the key is free and keeps it; returns when it is
    /// held by another replica (after one look) or lost.
    async fn hold(&self, key: &str, ttl: i64, every: Duration, me: &str) -> Result<(), StoreError> {
        let mut lease = self.client.lease_client();
        let granted = self.ok(lease.grant(ttl, None).await)?;
        let id = granted.id();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                me,
                Some(etcd_client::PutOptions::new().with_lease(id)),
            )]);
        if !self.txn(txn).await?.0 {
            let _ = lease.revoke(id).await;
            return Ok(());
        }
        tracing::info!("this replica now forwards reports (it holds the forwarder lease)");
        *self
            .forwarder_lease
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(id);
        self.health.forwarder.store(true, Ordering::Relaxed);
        let (mut keeper, mut answers) = self.ok(lease.keep_alive(id).await)?;
        let renew = async {
            loop {
                tokio::time::sleep(every).await;
                self.ok(keeper.keep_alive().await)?;
                match self.ok(answers.message().await)? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(StoreError::Backend("the forwarder lease expired".into())),
                }
            }
        };
        // The watch lives exactly as long as the lease is held.
        tokio::select! {
            r = renew => r,
            () = self.watch_forward_queue() => Ok(()),
        }
    }

    /// While this replica forwards: raises [`Inner::forward_queued`] for
    /// every report queued in `forward/`, by any replica, so delivery does
    /// not wait for the forwarder's poll. Raised once too whenever the
    /// watch (re)starts, for what was queued before it. On a failure the
    /// watch starts again after a pause. Runs until dropped.
    async fn watch_forward_queue(&self) {
        let prefix = self.key("forward/");
        let mut pause = RETRY_MIN;
        loop {
            let opts = WatchOptions::new()
                .with_prefix()
                .with_filters([WatchFilterType::NoDelete]);
            let watched = self.ok(self
                .client
                .watch_client()
                .watch(prefix.clone(), Some(opts))
                .await);
            match watched {
                Ok(stream) => {
                    // Kept while the watch runs (it carries its requests).
                    let (_requests, mut stream) = stream.split();
                    loop {
                        match self.ok(stream.message().await) {
                            Ok(Some(resp)) if !resp.canceled() => {
                                pause = RETRY_MIN;
                                // Once created, what was queued before is
                                // found by the look this raises; later
                                // reports come as events.
                                if resp.created() || !resp.events().is_empty() {
                                    self.forward_queued.notify_one();
                                }
                            }
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "forward queue watch interrupted");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the forward queue"),
            }
            // Whatever was queued while the watch was down is found by
            // the look this raises.
            self.forward_queued.notify_one();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    // ---- uploads ----

    async fn upload_records(&self) -> Result<(Vec<(String, UploadRecord, i64)>, i64), StoreError> {
        let (kvs, rev) = self.scan(&self.key("upload/"), None, None, false).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for (k, v, r) in kvs {
            out.push((k, from_json(&v)?, r));
        }
        Ok((out, rev))
    }

    async fn upload_put(
        &self,
        mut meta: UploadMeta,
        bytes: Bytes,
        limits: QuarantineLimits,
    ) -> Result<UploadMeta, StoreError> {
        let anonymous = meta.cert_scope.is_none();
        let (max_pending, max_bytes) = limits.pool(anonymous);
        let mac = meta.mac;
        let admit = |records: &[(String, UploadRecord, i64)]| -> Result<(), StoreError> {
            let pool = || {
                records
                    .iter()
                    .map(|(_, r, _)| &r.meta)
                    .filter(|u| u.cert_scope.is_none() == anonymous)
            };
            if pool().filter(|u| u.mac == mac).count() >= max_pending {
                return Err(StoreError::TooManyPending {
                    mac,
                    max: max_pending,
                });
            }
            let total: u64 = pool().map(|u| u.size).sum();
            if total.saturating_add(bytes.len() as u64) > max_bytes {
                return Err(StoreError::QuarantineFull { max: max_bytes });
            }
            Ok(())
        };
        let (records, _) = self.upload_records().await?;
        admit(&records)?;
        let nonce: u64 = rand::random();
        let blob = self
            .write_blob(format!("upload_data/{nonce:016x}/"), &bytes)
            .await?;
        let prefix = self.key("upload/");
        let result = async {
            for _ in 0..TXN_TRIES {
                let (records, rev) = self.upload_records().await?;
                admit(&records)?;
                let host = self.key(&format!("bundle/{}", Target::Host(meta.mac)));
                meta.state = if self.get_one(&host).await?.0.is_some() {
                    UploadState::Conflict
                } else {
                    UploadState::Pending
                };
                // Unique and increasing: only one admission can commit
                // after reading at `rev` (the compare below).
                meta.id = format!("{:016x}", rev.max(0) as u64);
                let record = to_json(&UploadRecord {
                    meta: meta.clone(),
                    blob: blob.clone(),
                })?;
                let txn = Txn::new()
                    .when([
                        Compare::mod_revision(prefix.clone(), CompareOp::Less, rev + 1)
                            .with_prefix(),
                    ])
                    .and_then([TxnOp::put(format!("{prefix}{}", meta.id), record, None)]);
                if self.txn(txn).await?.0 {
                    return Ok(meta.clone());
                }
            }
            Err(StoreError::Backend(format!(
                "the quarantine kept changing during {TXN_TRIES} tries"
            )))
        }
        .await;
        if result.is_err() {
            if let Err(d) = self.delete_blob(&blob).await {
                tracing::warn!(error = %d, "removing the chunks of a refused upload");
            }
        }
        result
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, StoreError> {
        let key = self.key(&format!("upload/{id}"));
        let (v, rev) = self.get_one(&key).await?;
        let Some(v) = v else { return Ok(false) };
        let record: UploadRecord = from_json(&v)?;
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key, None)]);
        let (ok, _) = self.txn(txn).await?;
        if ok {
            self.delete_blob(&record.blob).await?;
        }
        Ok(ok)
    }

    // ---- reports ----

    /// Writes queued reports, as many nodes' at once as are waiting (at
    /// most [`REPORT_BATCH`], one report per node in a batch): one
    /// transaction reads their records, one writes them all, comparing
    /// each record's revision. If another replica changed one of them
    /// meanwhile, that batch's reports go one by one. Every sender hears
    /// its own outcome, after etcd committed.
    ///
    /// A batch starts whenever none is being written; while one is, the
    /// next starts only once a whole batch waits, up to
    /// `report_batches_in_flight` at once: a quiet writer still gathers
    /// what arrives during one round trip into one batch, a busy one keeps
    /// etcd's pipeline full. A node's report never joins a batch while
    /// its previous one is being written, so its records stay in order.
    async fn report_writer(self: Arc<Self>, mut rx: mpsc::Receiver<ReportMsg>) {
        let mut held: std::collections::VecDeque<ReportMsg> = Default::default();
        let mut writing: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        // The nodes of each batch being written, by its task.
        let mut busy: HashMap<tokio::task::Id, Vec<satchel_names::Mac>> = HashMap::new();
        let mut open = true;
        loop {
            while writing.len() < self.settings.report_batches_in_flight.max(1)
                && !held.is_empty()
                && (writing.is_empty() || held.len() >= REPORT_BATCH)
            {
                let batch = take_batch(&mut held, busy.values().flatten());
                if batch.is_empty() {
                    break;
                }
                let macs = batch.iter().map(|(r, _, _)| r.mac).collect();
                let me = self.clone();
                let task = writing.spawn(async move { me.write_batch(batch).await });
                busy.insert(task.id(), macs);
            }
            if !open && held.is_empty() && writing.is_empty() {
                return;
            }
            tokio::select! {
                m = rx.recv(), if open && held.len() < 4 * REPORT_BATCH => match m {
                    Some(m) => {
                        held.push_back(m);
                        while held.len() < 4 * REPORT_BATCH {
                            match rx.try_recv() {
                                Ok(m) => held.push_back(m),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                Some(done) = writing.join_next_with_id(), if !writing.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "a report batch's task failed");
                            e.id()
                        }
                    };
                    busy.remove(&id);
                }
            }
        }
    }

    /// Writes one batch and answers each of its senders.
    async fn write_batch(&self, batch: Vec<ReportMsg>) {
        let result = if batch.len() == 1 {
            self.report_record(&batch[0].0, batch[0].1)
                .await
                .map(|()| true)
        } else {
            self.report_batch(&batch).await
        };
        match result {
            Ok(true) => {
                let depth = self.forward_depth_seen.load(Ordering::Relaxed);
                for (_, _, done) in batch {
                    done.send(Ok(depth));
                }
            }
            Ok(false) => {
                for (report, forward, done) in batch {
                    let r = self.report_record(&report, forward).await;
                    let depth = self.forward_depth_seen.load(Ordering::Relaxed);
                    done.send(r.map(|()| depth));
                }
            }
            Err(e) => {
                for (_, _, done) in batch {
                    done.send(Err(clone_err(&e)));
                }
            }
        }
    }

    /// One batch of reports of distinct nodes in two transactions;
    /// `Ok(false)` when a record changed between them (nothing written).
    async fn report_batch(&self, batch: &[ReportMsg]) -> Result<bool, StoreError> {
        let keys: Vec<String> = batch
            .iter()
            .map(|(r, _, _)| self.key(&format!("node/{}", r.mac)))
            .collect();
        let read = Txn::new().and_then(
            keys.iter()
                .map(|k| TxnOp::get(k.clone(), None))
                .collect::<Vec<_>>(),
        );
        let resp = self.ok(self.kv().txn(read).await)?;
        let mut when = Vec::new();
        let mut ops = Vec::new();
        for (((report, forward, _), key), answer) in
            batch.iter().zip(&keys).zip(resp.op_responses())
        {
            let etcd_client::TxnOpResponse::Get(got) = answer else {
                return Err(StoreError::Backend(
                    "etcd answered a read with a write".into(),
                ));
            };
            let (old, rev) = match got.kvs().first() {
                Some(kv) => (from_json::<NodeRecord>(kv.value()).ok(), kv.mod_revision()),
                None => (None, 0),
            };
            when.push(Compare::mod_revision(key.clone(), CompareOp::Equal, rev));
            ops.push(TxnOp::put(
                key.clone(),
                to_json(&NodeRecord::after(old, report))?,
                None,
            ));
            if *forward {
                let fkey = self.key(&format!("forward/{:020}", forward_seq()));
                when.push(Compare::create_revision(fkey.clone(), CompareOp::Equal, 0));
                ops.push(TxnOp::put(fkey, to_json(report)?, None));
            }
        }
        let counted = batch.iter().any(|(_, forward, _)| *forward);
        self.write_reports(when, ops, counted).await
    }

    /// Commits a report transaction; with `count`, it also counts the
    /// forward queue (after its own puts, in the same transaction) into
    /// `forward_depth_seen`. Whether the compares held.
    async fn write_reports(
        &self,
        when: Vec<Compare>,
        mut ops: Vec<TxnOp>,
        count: bool,
    ) -> Result<bool, StoreError> {
        if count {
            let prefix = self.key("forward/");
            let end = prefix_end(prefix.as_bytes());
            ops.push(TxnOp::get(
                prefix,
                Some(GetOptions::new().with_range(end).with_count_only()),
            ));
        }
        let resp = self.ok(self.kv().txn(Txn::new().when(when).and_then(ops)).await)?;
        if !resp.succeeded() {
            return Ok(false);
        }
        if count {
            if let Some(etcd_client::TxnOpResponse::Get(got)) = resp.op_responses().last() {
                self.forward_depth_seen
                    .store(got.count().max(0) as u64, Ordering::Relaxed);
            }
        }
        Ok(true)
    }

    async fn report_record(&self, report: &StoredReport, forward: bool) -> Result<(), StoreError> {
        let key = self.key(&format!("node/{}", report.mac));
        let body = to_json(report)?;
        for _ in 0..TXN_TRIES {
            let (v, rev) = self.get_one(&key).await?;
            let old: Option<NodeRecord> = v.and_then(|v| from_json(&v).ok());
            let rec = to_json(&NodeRecord::after(old, report))?;
            let mut when = vec![Compare::mod_revision(key.clone(), CompareOp::Equal, rev)];
            let mut ops = vec![TxnOp::put(key.clone(), rec, None)];
            if forward {
                let fkey = self.key(&format!("forward/{:020}", forward_seq()));
                when.push(Compare::create_revision(fkey.clone(), CompareOp::Equal, 0));
                ops.push(TxnOp::put(fkey, body.clone(), None));
            }
            if self.write_reports(when, ops, forward).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!(
            "the record of {} kept changing during {TXN_TRIES} tries",
            report.mac
        )))
    }

    // ---- audit ----

    /// Writes queued audit lines in batches until the queue closes. A
    /// flush request ends its batch, and is answered once every line
    /// queued before it is written.
    async fn audit_writer(self: Arc<Self>, mut rx: mpsc::Receiver<AuditMsg>) {
        let mut batch: Vec<(AuditEntry, u64)> = Vec::new();
        let mut waiting: Vec<std::sync::mpsc::SyncSender<()>> = Vec::new();
        let mut pause = RETRY_MIN;
        let mut seen = AuditSeen::default();
        loop {
            if batch.is_empty() && waiting.is_empty() {
                match rx.recv().await {
                    Some(AuditMsg::Line(e, max)) => batch.push((e, max)),
                    Some(AuditMsg::Flush(done)) => waiting.push(done),
                    None => return,
                }
            }
            while waiting.is_empty() && batch.len() < AUDIT_BATCH {
                match rx.try_recv() {
                    Ok(AuditMsg::Line(e, max)) => batch.push((e, max)),
                    Ok(AuditMsg::Flush(done)) => waiting.push(done),
                    Err(_) => break,
                }
            }
            // Gathers more for a while (a flush request or a full batch
            // ends it): one transaction for many fetches' lines.
            let gather = tokio::time::Instant::now() + self.settings.audit_flush;
            while waiting.is_empty() && !batch.is_empty() && batch.len() < AUDIT_BATCH {
                match tokio::time::timeout_at(gather, rx.recv()).await {
                    Ok(Some(AuditMsg::Line(e, max))) => batch.push((e, max)),
                    Ok(Some(AuditMsg::Flush(done))) => waiting.push(done),
                    Ok(None) | Err(_) => break,
                }
            }
            if !batch.is_empty() {
                if let Err(e) = self.audit_write(&batch, &mut seen).await {
                    tracing::warn!(error = %e, lines = batch.len(), "audit lines not written yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                    continue;
                }
                batch.clear();
                pause = RETRY_MIN;
            }
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Writes one batch of audit lines in one transaction that moves the
    /// shared sequence, comparing it with the value this writer last saw:
    /// one round trip while no other replica wrote since; when one did,
    /// the failed transaction answers the new value and the batch goes
    /// again. Then trims each log the batch wrote to.
    async fn audit_write(
        &self,
        batch: &[(AuditEntry, u64)],
        seen: &mut AuditSeen,
    ) -> Result<(), StoreError> {
        let next_key = self.key("audit_next");
        let parse = |v: &[u8]| -> Result<u64, StoreError> {
            String::from_utf8_lossy(v)
                .parse()
                .map_err(|_| StoreError::Backend("corrupt audit sequence".into()))
        };
        for _ in 0..TXN_TRIES {
            let (next, rev) = match seen.next {
                Some(known) => known,
                None => match self.get_one(&next_key).await? {
                    (Some(v), rev) => (parse(&v)?, rev),
                    (None, rev) => (1, rev),
                },
            };
            let mut ops = vec![TxnOp::put(
                next_key.clone(),
                (next + batch.len() as u64).to_string(),
                None,
            )];
            for (i, (e, _)) in batch.iter().enumerate() {
                let mut e = e.clone();
                e.seq = next + i as u64;
                let k = self.key(&format!("audit/{}/{:020}", e.log.name(), e.seq));
                ops.push(TxnOp::put(k, to_json(&e)?, None));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    next_key.clone(),
                    CompareOp::Equal,
                    rev,
                )])
                .and_then(ops)
                .or_else([TxnOp::get(next_key.clone(), None)]);
            // Not known until etcd answers (an answer lost on the way
            // leaves a value that only a compare can tell is stale).
            seen.next = None;
            let resp = self.ok(self.kv().txn(txn).await)?;
            if !resp.succeeded() {
                // Another replica moved the sequence: the answer has it.
                if let Some(etcd_client::TxnOpResponse::Get(got)) = resp.op_responses().first() {
                    seen.next = Some(match got.kvs().first() {
                        Some(kv) => (parse(kv.value())?, kv.mod_revision()),
                        None => (1, 0),
                    });
                }
                continue;
            }
            let committed = resp.header().map(|h| h.revision()).unwrap_or(0);
            let after = next + batch.len() as u64;
            seen.next = Some((after, committed));
            for log in AuditLog::ALL {
                if let Some(max) = batch
                    .iter()
                    .filter(|(e, _)| e.log == log)
                    .map(|(_, m)| *m)
                    .max()
                {
                    // At most this many lines: the last count, plus every
                    // line of any log written since (the sequence moved by
                    // that much, whoever wrote them).
                    let bound = seen.counted[log as usize]
                        .map(|(count, at)| count.saturating_add(after.saturating_sub(at)));
                    if bound.is_none_or(|b| b > max) {
                        let count = self.audit_trim(log, max).await?;
                        seen.counted[log as usize] = Some((count, after));
                    }
                }
            }
            return Ok(());
        }
        Err(StoreError::Backend(format!(
            "the audit sequence kept changing during {TXN_TRIES} tries"
        )))
    }

    /// Drops a log's oldest lines beyond `max`; how many it holds then.
    async fn audit_trim(&self, log: AuditLog, max: u64) -> Result<u64, StoreError> {
        let prefix = self.key(&format!("audit/{}/", log.name()));
        let end = prefix_end(prefix.as_bytes());
        let resp = self.ok(self
            .kv()
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_range(end).with_count_only()),
            )
            .await)?;
        let count = resp.count().max(0) as u64;
        if count <= max {
            return Ok(count);
        }
        let excess = (count - max) as usize;
        let (old, _) = self.scan(&prefix, None, Some(excess), true).await?;
        if let Some((last, _, _)) = old.last() {
            let mut until = last.clone().into_bytes();
            until.push(0);
            self.ok(self
                .kv()
                .delete(
                    prefix,
                    Some(etcd_client::DeleteOptions::new().with_range(until)),
                )
                .await)?;
        }
        Ok(max)
    }
}

/// A forward-queue position: time-ordered across replicas (microseconds,
/// then a counter), unique per replica; a clash between replicas fails the
/// transaction's compare and takes a new one.
fn forward_seq() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 1000;
    micros.saturating_mul(1000).saturating_add(n)
}

impl EtcdStore {
    /// Connects, loads the current bundles into the cache, and starts the
    /// watch and the audit writer. Fails when etcd cannot be reached
    /// within the request timeout.
    pub fn open(settings: EtcdSettings) -> Result<EtcdStore, StoreError> {
        if settings.endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoints configured".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-store")
            .enable_all()
            .build()
            .map_err(backend)?;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(settings.request_timeout)
            .with_timeout(settings.request_timeout)
            .with_keep_alive(Duration::from_secs(5), settings.request_timeout);
        if settings.ca_pem.is_some() || settings.identity_pem.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &settings.ca_pem {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &settings.identity_pem {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(tls);
        }
        let endpoints = settings.endpoints.clone();
        let timeout = settings.request_timeout;
        let client = runtime
            .block_on(async {
                tokio::time::timeout(timeout, Client::connect(endpoints, Some(opts))).await
            })
            .map_err(|_| StoreError::Backend("connecting to etcd timed out".into()))?
            .map_err(|e| StoreError::Backend(format!("connecting to etcd: {e}")))?;
        let inner = Arc::new(Inner {
            client,
            prefix: settings.prefix.clone(),
            cache: RwLock::new(Cache::default()),
            health: EtcdHealth::default(),
            forwarder_lease: std::sync::Mutex::new(None),
            forward_queued: Arc::new(tokio::sync::Notify::new()),
            forward_depth_seen: AtomicU64::new(0),
            settings: settings.clone(),
        });
        {
            let inner = inner.clone();
            runtime
                .block_on(async { tokio::time::timeout(timeout, inner.resync()).await })
                .map_err(|_| StoreError::Backend("loading the bundles from etcd timed out".into()))?
                .map_err(|e| match e {
                    StoreError::Unavailable { .. } => StoreError::Backend(
                        "etcd did not answer: unreachable, or it refused this client \
                             (TLS settings); the warnings above say why"
                            .into(),
                    ),
                    e => e,
                })?;
        }
        runtime.spawn(inner.clone().watch_bundles());
        let (report_tx, report_rx) = mpsc::channel(REPORT_QUEUE);
        runtime.spawn(inner.clone().report_writer(report_rx));
        let (audit_tx, audit_rx) = mpsc::channel(settings.audit_queue_lines.max(1));
        runtime.spawn(inner.clone().audit_writer(audit_rx));
        if settings.campaign_forwarder {
            runtime.spawn(inner.clone().campaign());
        }
        Ok(EtcdStore {
            inner,
            runtime: Some(runtime),
            audit_tx,
            report_tx,
        })
    }

    /// Copies a node record in unless the node already has one (a report
    /// that reached etcd first is newer); whether it was written.
    pub fn import_node(&self, record: &NodeRecord) -> Result<bool, StoreError> {
        let record = record.clone();
        self.call(move |i| async move {
            let key = i.key(&format!("node/{}", record.mac));
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, to_json(&record)?, None)]);
            Ok(i.txn(txn).await?.0)
        })
    }

    /// Queues a report for forwarding at `seq` unless that position is
    /// taken; whether it was written.
    pub fn import_forward(&self, seq: u64, body: Bytes) -> Result<bool, StoreError> {
        self.call(move |i| async move {
            let key = i.key(&format!("forward/{seq:020}"));
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, body.to_vec(), None)]);
            Ok(i.txn(txn).await?.0)
        })
    }

    /// Writes audit lines with the sequence numbers they already have,
    /// each only where no line with its sequence is (a line of this log
    /// already there is kept), and moves the shared sequence past them;
    /// returns how many were written.
    pub fn import_audit(&self, entries: Vec<AuditEntry>) -> Result<usize, StoreError> {
        self.call(move |i| async move {
            let mut written = 0;
            for batch in entries.chunks(AUDIT_BATCH / 2) {
                let keyed: Vec<(String, &AuditEntry)> = batch
                    .iter()
                    .map(|e| (i.key(&format!("audit/{}/{:020}", e.log.name(), e.seq)), e))
                    .collect();
                let absent = |k: &String| Compare::create_revision(k.clone(), CompareOp::Equal, 0);
                // The whole batch at once when none of it is there yet...
                let all = Txn::new()
                    .when(keyed.iter().map(|(k, _)| absent(k)).collect::<Vec<_>>())
                    .and_then(
                        keyed
                            .iter()
                            .map(|(k, e)| Ok(TxnOp::put(k.clone(), to_json(e)?, None)))
                            .collect::<Result<Vec<_>, StoreError>>()?,
                    );
                if i.txn(all).await?.0 {
                    written += keyed.len();
                } else {
                    // ...else line by line (a run that stopped half way).
                    for (k, e) in &keyed {
                        let one = Txn::new().when([absent(k)]).and_then([TxnOp::put(
                            k.clone(),
                            to_json(e)?,
                            None,
                        )]);
                        if i.txn(one).await?.0 {
                            written += 1;
                        }
                    }
                }
                let top = batch.iter().map(|e| e.seq).max().unwrap_or(0);
                let next_key = i.key("audit_next");
                let mut moved = false;
                for _ in 0..TXN_TRIES {
                    let (v, rev) = i.get_one(&next_key).await?;
                    let next: u64 = match v {
                        Some(v) => String::from_utf8_lossy(&v)
                            .parse()
                            .map_err(|_| StoreError::Backend("corrupt audit sequence".into()))?,
                        None => 1,
                    };
                    if next > top {
                        moved = true;
                        break;
                    }
                    let txn = Txn::new()
                        .when([Compare::mod_revision(
                            next_key.clone(),
                            CompareOp::Equal,
                            rev,
                        )])
                        .and_then([TxnOp::put(next_key.clone(), (top + 1).to_string(), None)]);
                    if i.txn(txn).await?.0 {
                        moved = true;
                        break;
                    }
                }
                if !moved {
                    return Err(StoreError::Backend(format!(
                        "the audit sequence kept changing during {TXN_TRIES} tries"
                    )));
                }
            }
            Ok(written)
        })
    }

    /// What this replica sees of etcd and its cache.
    pub fn health(&self) -> &EtcdHealth {
        &self.inner.health
    }

    /// Runs `f` on the store's runtime and waits for it, at most the
    /// request timeout (then [`StoreError::Unavailable`]).
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let Some(rt) = &self.runtime else {
            return Err(StoreError::Backend("the store is closed".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.inner.clone());
        let timeout = self.inner.settings.request_timeout;
        rt.spawn(async move {
            let r = tokio::time::timeout(timeout, fut).await;
            let _ = tx.send(r);
        });
        match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self
                .inner
                .unavailable("no answer within the request timeout")),
            Err(_) => Err(StoreError::Backend("the store's runtime stopped".into())),
        }
    }

    fn cached(&self, target: &Target) -> Option<Cached> {
        let cache = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
        let hit = cache.get(&target.to_string()).cloned();
        let counter = if hit.is_some() {
            &self.inner.health.cache_hits
        } else {
            &self.inner.health.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }
}

impl Store for EtcdStore {
    fn bundle_meta(&self, target: &Target) -> Result<Option<BundleMeta>, StoreError> {
        Ok(self.cached(target).map(|c| c.meta))
    }

    fn bundle_get(&self, target: &Target) -> Result<Option<(BundleMeta, Bytes)>, StoreError> {
        Ok(self.cached(target).map(|c| (c.meta, c.bytes)))
    }

    fn bundle_put(
        &self,
        target: &Target,
        meta: &BundleMeta,
        bytes: &[u8],
        history: usize,
    ) -> Result<(), StoreError> {
        let (target, meta, bytes) = (target.clone(), meta.clone(), Bytes::copy_from_slice(bytes));
        self.call(move |i| async move { i.bundle_put(&target, &meta, bytes, history).await })
    }

    fn bundle_history(&self, target: &Target) -> Result<Vec<BundleMeta>, StoreError> {
        let target = target.clone();
        self.call(move |i| async move {
            let mut out: Vec<BundleMeta> = i
                .versions(&target)
                .await?
                .into_iter()
                .map(|r| r.meta)
                .collect();
            out.reverse();
            Ok(out)
        })
    }

    fn bundle_version(
        &self,
        target: &Target,
        serial: u64,
    ) -> Result<Option<(BundleMeta, Bytes)>, StoreError> {
        let target = target.clone();
        self.call(move |i| async move {
            let key = i.key(&format!("version/{target}/{serial:020}"));
            let (v, _) = i.get_one(&key).await?;
            let Some(v) = v else { return Ok(None) };
            let record: BlobRecord = from_json(&v)?;
            let bytes = i.load(&record).await?;
            Ok(Some((record.meta, bytes)))
        })
    }

    fn bundle_delete(&self, target: &Target) -> Result<bool, StoreError> {
        let target = target.clone();
        self.call(move |i| async move { i.bundle_delete(&target).await })
    }

    fn bundle_list(&self) -> Result<Vec<BundleMeta>, StoreError> {
        let cache = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<BundleMeta> = cache
            .entries
            .values()
            .filter_map(|(_, c)| c.as_ref().map(|c| c.meta.clone()))
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(out)
    }

    fn highest_serial(&self, target: &Target) -> Result<Option<u64>, StoreError> {
        let target = target.clone();
        self.call(move |i| async move {
            let (v, _) = i.get_one(&i.key(&format!("serial/{target}"))).await?;
            v.map(|v| {
                String::from_utf8_lossy(&v)
                    .parse()
                    .map_err(|_| StoreError::Backend(format!("corrupt serial of {target}")))
            })
            .transpose()
        })
    }

    fn highest_serials(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.call(move |i| async move {
            let prefix = i.key("serial/");
            let (kvs, _) = i.scan(&prefix, None, None, false).await?;
            kvs.into_iter()
                .map(|(k, v, _)| {
                    let serial = String::from_utf8_lossy(&v)
                        .parse()
                        .map_err(|_| StoreError::Backend(format!("corrupt serial at {k}")))?;
                    Ok((k[prefix.len()..].to_string(), serial))
                })
                .collect()
        })
    }

    fn upload_put(
        &self,
        meta: UploadMeta,
        bytes: &[u8],
        limits: QuarantineLimits,
    ) -> Result<UploadMeta, StoreError> {
        let bytes = Bytes::copy_from_slice(bytes);
        self.call(move |i| async move { i.upload_put(meta, bytes, limits).await })
    }

    fn upload_list(&self) -> Result<Vec<UploadMeta>, StoreError> {
        self.call(move |i| async move {
            Ok(i.upload_records()
                .await?
                .0
                .into_iter()
                .map(|(_, r, _)| r.meta)
                .collect())
        })
    }

    fn upload_get(&self, id: &str) -> Result<Option<(UploadMeta, Bytes)>, StoreError> {
        // Ids are 16 hex digits; anything else names no upload (and no
        // other key of the store).
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let id = id.to_string();
        self.call(move |i| async move {
            let (v, _) = i.get_one(&i.key(&format!("upload/{id}"))).await?;
            let Some(v) = v else { return Ok(None) };
            let record: UploadRecord = from_json(&v)?;
            let bytes = i.read_blob(&record.blob).await?;
            Ok(Some((record.meta, bytes)))
        })
    }

    fn upload_delete(&self, id: &str) -> Result<bool, StoreError> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let id = id.to_string();
        self.call(move |i| async move { i.upload_delete(&id).await })
    }

    fn upload_expire(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
        self.call(move |i| async move {
            let (records, _) = i.upload_records().await?;
            let mut n = 0;
            for (_, r, _) in records {
                if r.meta.received_unix < cutoff_unix && i.upload_delete(&r.meta.id).await? {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn quarantine_usage(&self) -> Result<(u64, u64), StoreError> {
        self.call(move |i| async move {
            let (records, _) = i.upload_records().await?;
            Ok((
                records.len() as u64,
                records.iter().map(|(_, r, _)| r.meta.size).sum(),
            ))
        })
    }

    fn report_record(&self, report: &StoredReport, forward: bool) -> Result<u64, StoreError> {
        // Called on the blocking pool: waiting here is allowed.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.report_tx
            .blocking_send((report.clone(), forward, Reply::Blocked(tx)))
            .map_err(|_| StoreError::Backend("the report writer stopped".into()))?;
        match rx.recv_timeout(self.inner.settings.request_timeout) {
            Ok(r) => r,
            Err(_) => Err(self
                .inner
                .unavailable("no answer within the request timeout")),
        }
    }

    fn report_record_later(
        self: Arc<Self>,
        report: StoredReport,
        forward: bool,
    ) -> super::Later<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (queue, inner) = (self.report_tx.clone(), self.inner.clone());
        Box::pin(async move {
            let timeout = inner.settings.request_timeout;
            let answer = tokio::time::timeout(timeout, async {
                queue
                    .send((report, forward, Reply::Awaited(tx)))
                    .await
                    .map_err(|_| StoreError::Backend("the report writer stopped".into()))?;
                rx.await
                    .map_err(|_| StoreError::Backend("the report writer stopped".into()))?
            })
            .await;
            match answer {
                Ok(r) => r,
                Err(_) => Err(inner.unavailable("no answer within the request timeout")),
            }
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.call(move |i| async move {
            let (kvs, _) = i.scan(&i.key("node/"), None, None, false).await?;
            kvs.iter().map(|(_, v, _)| from_json(v)).collect()
        })
    }

    fn forward_peek(&self, max: usize) -> Result<Vec<ForwardItem>, StoreError> {
        // Only the forwarding replica sees the queue (see the module doc).
        if !self.inner.health.forwarder.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        self.call(move |i| async move {
            let prefix = i.key("forward/");
            let (kvs, _) = i.scan(&prefix, None, Some(max.max(1)), false).await?;
            kvs.into_iter()
                .map(|(k, v, _)| {
                    let seq = k[prefix.len()..]
                        .parse()
                        .map_err(|_| StoreError::Backend(format!("corrupt forward key {k}")))?;
                    Ok(ForwardItem {
                        seq,
                        body: Bytes::from(v),
                    })
                })
                .collect()
        })
    }

    fn forward_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.inner.forward_queued.clone())
    }

    fn forward_ack(&self, seq: u64) -> Result<u64, StoreError> {
        self.call(move |i| async move {
            let key = i.key(&format!("forward/{seq:020}"));
            let prefix = i.key("forward/");
            let end = prefix_end(prefix.as_bytes());
            // The removal and the count of what is left in one round trip.
            let txn = Txn::new().and_then([
                TxnOp::delete(key, None),
                TxnOp::get(
                    prefix,
                    Some(GetOptions::new().with_range(end).with_count_only()),
                ),
            ]);
            let resp = i.ok(i.kv().txn(txn).await)?;
            match resp.op_responses().last() {
                Some(etcd_client::TxnOpResponse::Get(got)) => Ok(got.count().max(0) as u64),
                _ => Err(StoreError::Backend(
                    "etcd answered a count with something else".into(),
                )),
            }
        })
    }

    fn forward_depth(&self) -> Result<u64, StoreError> {
        self.call(move |i| async move {
            let prefix = i.key("forward/");
            let end = prefix_end(prefix.as_bytes());
            let resp = i.ok(i
                .kv()
                .get(
                    prefix,
                    Some(GetOptions::new().with_range(end).with_count_only()),
                )
                .await)?;
            Ok(resp.count().max(0) as u64)
        })
    }

    fn audit_append(&self, entry: AuditEntry, max_entries: u64) -> Result<(), StoreError> {
        // Never waits: called on a request worker. A full queue (etcd gone
        // for long) drops the line, counted and logged by the caller.
        self.audit_tx
            .try_send(AuditMsg::Line(entry, max_entries))
            .map_err(|_| {
                self.inner
                    .health
                    .audit_dropped
                    .fetch_add(1, Ordering::Relaxed);
                StoreError::Backend("the audit queue is full (etcd unreachable?)".into())
            })
    }

    fn audit_list(
        &self,
        after: u64,
        limit: usize,
        log: Option<AuditLog>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // This replica's own queued lines first: a reader sees every line
        // it caused, trimmed as the log's limit says.
        self.flush()?;
        self.call(move |i| async move {
            let logs: Vec<AuditLog> = match log {
                Some(l) => vec![l],
                None => AuditLog::ALL.to_vec(),
            };
            let mut all = Vec::new();
            for l in logs {
                let prefix = i.key(&format!("audit/{}/", l.name()));
                let from = format!("{prefix}{:020}", after.saturating_add(1));
                let (kvs, _) = i
                    .scan(&prefix, Some(&from), Some(limit.max(1)), false)
                    .await?;
                for (_, v, _) in kvs {
                    all.push(from_json::<AuditEntry>(&v)?);
                }
            }
            all.sort_by_key(|e| e.seq);
            all.truncate(limit);
            Ok(all)
        })
    }

    fn prometheus(&self) -> String {
        let h = &self.inner.health;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let b = |a: &AtomicBool| u8::from(a.load(Ordering::Relaxed));
        let age = now_unix_ms().saturating_sub(g(&h.last_sync_unix_ms)) as f64 / 1000.0;
        let lines = [
            ("satchel_store_etcd_reachable", "gauge", "1 when the last etcd call or watch answer of this replica succeeded.", b(&h.reachable).to_string()),
            ("satchel_store_watch_lag_seconds", "gauge", "Seconds since this replica's bundle cache was last confirmed current by etcd (a watch event or progress answer every 2 s while etcd is reachable). While it grows the cache is served as it was.", format!("{age:.3}")),
            ("satchel_store_cache_revision", "gauge", "etcd revision this replica's bundle cache is current to.", g(&h.cache_revision).to_string()),
            ("satchel_store_cache_hits_total", "counter", "Boot-path bundle reads answered from this replica's cache.", g(&h.cache_hits).to_string()),
            ("satchel_store_cache_misses_total", "counter", "Boot-path bundle reads of a target this replica holds no bundle for.", g(&h.cache_misses).to_string()),
            ("satchel_store_forwarder", "gauge", "1 while this replica holds the forwarder lease (it alone forwards reports).", b(&h.forwarder).to_string()),
            ("satchel_store_audit_dropped_total", "counter", "Audit lines dropped because the queue to etcd was full.", g(&h.audit_dropped).to_string()),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in lines {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }

    fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.audit_tx
            .try_send(AuditMsg::Flush(tx))
            .map_err(|_| StoreError::Backend("the audit queue is full".into()))?;
        rx.recv_timeout(self.inner.settings.request_timeout)
            .map_err(|_| {
                self.inner
                    .unavailable("audit lines not written within the timeout")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/satchel/"), b"/satchel0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn the_cache_never_goes_back_to_an_older_revision() {
        let meta = |serial| BundleMeta {
            target: "host/02-00-00-00-00-01".into(),
            serial,
            site: None,
            sha256: format!("{serial:064x}"),
            size: 1,
            signer: String::new(),
            expires: String::new(),
            published: String::new(),
            published_by: String::new(),
            payload_sha256: String::new(),
        };
        let entry = |serial| {
            Some(Cached {
                meta: meta(serial),
                bytes: Bytes::from_static(b"x"),
            })
        };
        let mut c = Cache::default();
        let t = "host/02-00-00-00-00-01";
        c.apply(t, 10, entry(2));
        // The watch delivers the publish this replica already applied, then an older one.
        c.apply(t, 10, entry(1));
        c.apply(t, 7, entry(1));
        assert_eq!(c.get(t).map(|e| e.meta.serial), Some(2));
        // A removal at a newer revision wins; an older publish does not undo it.
        c.apply(t, 11, None);
        c.apply(t, 9, entry(3));
        assert!(c.get(t).is_none());
        c.apply(t, 12, entry(4));
        assert_eq!(c.get(t).map(|e| e.meta.serial), Some(4));
        assert!(c.bytes_of(&format!("{:064x}", 4)).is_some());
    }

    #[test]
    fn a_batch_takes_each_node_once_and_none_being_written() {
        let mac = |n: u8| satchel_names::Mac::from_octets([2, 0, 0, 0, 0, n]);
        let msg = |n: u8| {
            let (tx, _) = std::sync::mpsc::sync_channel(1);
            (
                StoredReport {
                    report_id: format!("r{n}"),
                    mac: mac(n),
                    received: String::new(),
                    reporter: String::new(),
                    report: serde_json::Value::Null,
                },
                false,
                Reply::Blocked(tx),
            )
        };
        let mut held: std::collections::VecDeque<ReportMsg> =
            [1, 2, 1, 3, 4].into_iter().map(msg).collect();
        let busy = [mac(3)];
        let batch = take_batch(&mut held, busy.iter());
        let macs = |v: &mut dyn Iterator<Item = &ReportMsg>| -> Vec<u8> {
            v.map(|(r, _, _)| r.mac.octets()[5]).collect()
        };
        assert_eq!(macs(&mut batch.iter()), [1, 2, 4]);
        // The second report of node 1 and node 3's (being written) wait, in order.
        assert_eq!(macs(&mut held.iter()), [1, 3]);
        let mut many: std::collections::VecDeque<ReportMsg> =
            (0..=REPORT_BATCH as u8 + 1).map(msg).collect();
        assert_eq!(take_batch(&mut many, [].iter()).len(), REPORT_BATCH);
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn forward_positions_grow() {
        let a = forward_seq();
        let b = forward_seq();
        assert!(b > a || b / 1000 > a / 1000);
        assert_eq!(format!("{a:020}").len(), 20);
    }
}
