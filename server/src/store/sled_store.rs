//! The embedded [`Store`]: sled in one data directory.
//!
//! Trees: `bundle_data` and `bundle_meta` (target → bytes / JSON), `serials`
//! (target → highest serial, big-endian u64, never removed), `upload_data` and
//! `upload_meta` (id → bytes / JSON), `nodes` (MAC → JSON), `forward` (seq →
//! JSON report), `audit` (the admin log: seq → JSON line), `audit_security`
//! and `audit_fetch` (the other logs, same form).
//!
//! Invariants: a publish writes `bundle_data`, `bundle_meta` and `serials` in
//! one sled transaction (so a crash exposes either the old or the new bundle,
//! never a mix) and flushes before returning; upload admission (limits) and
//! insert run under one mutex and one transaction; a report's inventory update
//! and its forward entry are one transaction. sled is used nowhere else.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use bytes::Bytes;
use satchel_names::Target;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{
    AuditEntry, AuditLog, BundleMeta, ForwardItem, NodeRecord, QuarantineLimits, Store, StoreError,
    StoredReport, UploadMeta, UploadState,
};

/// sled's background flush interval in milliseconds: bounds how long an
/// audit line (written without an explicit flush) may wait to be durable.
const FLUSH_EVERY_MS: u64 = 200;

/// Shortest time between the starts of two group-commit syncs. Under a
/// boot storm, writers that arrive meanwhile share the next sync instead
/// of each starting one as soon as the last ended (every sync is a write
/// and a flush to disk; there were three per report at 1,700 reports/s).
/// A writer alone waits at most this long, and only right after a sync.
const SYNC_GAP: std::time::Duration = std::time::Duration::from_millis(2);

/// sled page cache size in bytes.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The embedded store.
pub struct SledStore {
    db: sled::Db,
    bundle_data: sled::Tree,
    bundle_meta: sled::Tree,
    serials: sled::Tree,
    upload_data: sled::Tree,
    upload_meta: sled::Tree,
    nodes: sled::Tree,
    forward: sled::Tree,
    /// The audit logs, in [`AuditLog::ALL`] order.
    audit: [sled::Tree; 3],
    /// Kept versions per target ([`version_key`]): bytes and metadata.
    version_data: sled::Tree,
    version_meta: sled::Tree,
    /// Serialises quarantine admission: the limit check and the insert must
    /// see the same quarantine, and sled transactions alone do not cover a scan.
    upload_admission: Mutex<()>,
    /// The next audit sequence number and each log's line count (counted
    /// once at open); also serialises audit trimming.
    audit_next: Mutex<AuditCounts>,
    /// Group commit: concurrent writers share one sync instead of queueing
    /// one each.
    commit: GroupCommit,
    /// Entries in `forward`: counted once at open, then kept up to date, so
    /// the queue depth costs no scan per report.
    forward_len: AtomicU64,
}

/// Keys of a target's kept versions: `<target>\0` then the serial,
/// big-endian, so a prefix scan yields them oldest first.
fn version_prefix(target: &Target) -> Vec<u8> {
    let mut k = target.to_string().into_bytes();
    k.push(0);
    k
}

fn version_key(target: &Target, serial: u64) -> Vec<u8> {
    let mut k = version_prefix(target);
    k.extend_from_slice(&serial.to_be_bytes());
    k
}

/// The audit logs' sequence and sizes.
#[derive(Debug)]
struct AuditCounts {
    next: u64,
    /// Lines in each log, in [`AuditLog::ALL`] order.
    lines: [u64; 3],
}

fn log_index(log: AuditLog) -> usize {
    match log {
        AuditLog::Admin => 0,
        AuditLog::Security => 1,
        AuditLog::Fetch => 2,
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(backend)
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
}

fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Backend("corrupt u64 record".into()))?;
    Ok(u64::from_be_bytes(arr))
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

/// Tries of [`read_pair`] before it gives up on a record rewritten
/// under it each time.
const PAIR_READ_TRIES: usize = 8;

/// Reads `key` from a metadata tree and its data tree as one version,
/// without a sled transaction (which rolls the log buffer twice — two
/// disk writes and syncs — even to read): metadata, data, metadata again.
/// Every write of data (a publish, an upload) or its removal is one
/// transaction that also changes or removes the metadata (serials only
/// grow; an upload's data never changes), and a read never sees half a
/// transaction; so equal metadata on both sides means the data is of
/// that version. A write in between makes it read again.
fn read_pair(
    meta: &sled::Tree,
    data: &sled::Tree,
    key: &[u8],
) -> Result<(Option<sled::IVec>, Option<sled::IVec>), StoreError> {
    for _ in 0..PAIR_READ_TRIES {
        let before = meta.get(key).map_err(backend)?;
        let bytes = data.get(key).map_err(backend)?;
        if meta.get(key).map_err(backend)? == before {
            return Ok((before, bytes));
        }
    }
    Err(StoreError::Backend(format!(
        "{} was rewritten during each of {PAIR_READ_TRIES} reads",
        String::from_utf8_lossy(key)
    )))
}

/// Group commit: a writer takes a ticket after its write; one writer at a
/// time syncs on behalf of every ticket taken before its sync started; the
/// others wait for a sync that covers their ticket (or start the next one).
#[derive(Debug, Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct CommitState {
    /// Tickets handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A sync is running.
    syncing: bool,
    /// When the last sync started.
    last_start: Option<std::time::Instant>,
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CommitState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn wait(&self, sync: impl Fn() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut st = self.lock();
        st.issued += 1;
        let mine = st.issued;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if !st.syncing {
                st.syncing = true;
                let since = st.last_start.map(|t| t.elapsed());
                if let Some(wait) = since.and_then(|e| SYNC_GAP.checked_sub(e)) {
                    // Let the writers arriving meanwhile join this sync.
                    drop(st);
                    std::thread::sleep(wait);
                    st = self.lock();
                }
                st.last_start = Some(std::time::Instant::now());
                let covers = st.issued;
                drop(st);
                let r = sync();
                st = self.lock();
                st.syncing = false;
                if r.is_ok() {
                    st.durable = st.durable.max(covers);
                }
                self.done.notify_all();
                r?;
                continue;
            }
            st = match self.done.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        // One handle per directory and process: sled's lock on the
        // directory is released only when the last thread of a handle
        // ends, so whoever prepared a store hands that handle on instead
        // of dropping and reopening it (the demo does).
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Backend(format!(
                        "{} is in use by another process (its lock is held): {io}",
                        dir.display()
                    ))
                }
                e => backend(e),
            })?;
        let t = |n: &str| db.open_tree(n).map_err(backend);
        let audit = [t("audit")?, t("audit_security")?, t("audit_fetch")?];
        let mut next = 1;
        for tree in &audit {
            if let Some((k, _)) = tree.last().map_err(backend)? {
                next = next.max(be_u64(&k)? + 1);
            }
        }
        let audit_next = AuditCounts {
            next,
            lines: [0, 1, 2].map(|i| audit[i].len() as u64),
        };
        let forward = t("forward")?;
        let forward_len = AtomicU64::new(forward.len() as u64);
        Ok(SledStore {
            commit: GroupCommit::default(),
            forward_len,
            bundle_data: t("bundle_data")?,
            bundle_meta: t("bundle_meta")?,
            serials: t("serials")?,
            upload_data: t("upload_data")?,
            upload_meta: t("upload_meta")?,
            nodes: t("nodes")?,
            forward,
            audit,
            version_data: t("version_data")?,
            version_meta: t("version_meta")?,
            db,
            upload_admission: Mutex::new(()),
            audit_next: Mutex::new(audit_next),
        })
    }

    /// Returns once every write this thread made before the call is on disk.
    fn durable(&self) -> Result<(), StoreError> {
        self.commit
            .wait(|| self.db.flush().map(|_| ()).map_err(backend))
    }

    fn upload_metas(&self) -> Result<Vec<UploadMeta>, StoreError> {
        self.upload_meta
            .iter()
            .values()
            .map(|v| from_json(&v.map_err(backend)?))
            .collect()
    }
}

impl Store for SledStore {
    fn bundle_meta(&self, target: &Target) -> Result<Option<BundleMeta>, StoreError> {
        let key = target.to_string();
        match self.bundle_meta.get(key.as_bytes()).map_err(backend)? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    fn bundle_get(&self, target: &Target) -> Result<Option<(BundleMeta, Bytes)>, StoreError> {
        let key = target.to_string();
        match read_pair(&self.bundle_meta, &self.bundle_data, key.as_bytes())? {
            (Some(m), Some(d)) => Ok(Some((from_json(&m)?, Bytes::from_owner(d)))),
            (None, None) => Ok(None),
            _ => Err(StoreError::Backend(format!(
                "bundle {target} has metadata or data but not both"
            ))),
        }
    }

    fn bundle_put(
        &self,
        target: &Target,
        meta: &BundleMeta,
        bytes: &[u8],
        history: usize,
    ) -> Result<(), StoreError> {
        let key = target.to_string();
        let meta_json = to_json(meta)?;
        let version = version_key(target, meta.serial);
        (
            &self.bundle_data,
            &self.bundle_meta,
            &self.serials,
            &self.version_data,
            &self.version_meta,
        )
            .transaction(|(d, m, s, vd, vm)| {
                let highest = match s.get(key.as_bytes())? {
                    Some(v) => Some(be_u64(&v).map_err(ConflictableTransactionError::Abort)?),
                    None => None,
                };
                if let Some(highest) = highest {
                    if meta.serial <= highest {
                        return Err(ConflictableTransactionError::Abort(
                            StoreError::SerialNotGreater {
                                target: key.clone(),
                                serial: meta.serial,
                                highest,
                            },
                        ));
                    }
                }
                d.insert(key.as_bytes(), bytes)?;
                m.insert(key.as_bytes(), meta_json.as_slice())?;
                s.insert(key.as_bytes(), &meta.serial.to_be_bytes())?;
                vd.insert(version.as_slice(), bytes)?;
                vm.insert(version.as_slice(), meta_json.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        // Older versions beyond the history go after the publish is
        // committed: a crash in between only keeps one too many.
        let prefix = version_prefix(target);
        let kept: Vec<sled::IVec> = self
            .version_meta
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        let excess = kept.len().saturating_sub(history.max(1));
        for k in &kept[..excess] {
            self.version_data.remove(k).map_err(backend)?;
            self.version_meta.remove(k).map_err(backend)?;
        }
        self.durable()
    }

    fn bundle_history(&self, target: &Target) -> Result<Vec<BundleMeta>, StoreError> {
        let mut out = self
            .version_meta
            .scan_prefix(version_prefix(target))
            .values()
            .map(|v| from_json(&v.map_err(backend)?))
            .collect::<Result<Vec<BundleMeta>, _>>()?;
        out.reverse();
        Ok(out)
    }

    fn bundle_version(
        &self,
        target: &Target,
        serial: u64,
    ) -> Result<Option<(BundleMeta, Bytes)>, StoreError> {
        let key = version_key(target, serial);
        match read_pair(&self.version_meta, &self.version_data, &key)? {
            (Some(m), Some(d)) => Ok(Some((from_json(&m)?, Bytes::from_owner(d)))),
            (None, None) => Ok(None),
            _ => Err(StoreError::Backend(format!(
                "version {serial} of {target} has metadata or data but not both"
            ))),
        }
    }

    fn bundle_delete(&self, target: &Target) -> Result<bool, StoreError> {
        let key = target.to_string();
        let existed = (&self.bundle_data, &self.bundle_meta)
            .transaction(|(d, m)| {
                let a = d.remove(key.as_bytes())?;
                let b = m.remove(key.as_bytes())?;
                Ok(a.is_some() || b.is_some())
            })
            .map_err(tx_err)?;
        self.durable()?;
        Ok(existed)
    }

    fn bundle_list(&self) -> Result<Vec<BundleMeta>, StoreError> {
        self.bundle_meta
            .iter()
            .values()
            .map(|v| from_json(&v.map_err(backend)?))
            .collect()
    }

    fn highest_serial(&self, target: &Target) -> Result<Option<u64>, StoreError> {
        match self
            .serials
            .get(target.to_string().as_bytes())
            .map_err(backend)?
        {
            Some(v) => Ok(Some(be_u64(&v)?)),
            None => Ok(None),
        }
    }

    fn highest_serials(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.serials
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), be_u64(&v)?))
            })
            .collect()
    }

    fn upload_put(
        &self,
        mut meta: UploadMeta,
        bytes: &[u8],
        limits: QuarantineLimits,
    ) -> Result<UploadMeta, StoreError> {
        let _guard = self
            .upload_admission
            .lock()
            .map_err(|_| StoreError::Backend("upload admission lock poisoned".into()))?;
        let anonymous = meta.cert_scope.is_none();
        let (max_pending, max_bytes) = limits.pool(anonymous);
        let existing = self.upload_metas()?;
        let pool = || {
            existing
                .iter()
                .filter(|u| u.cert_scope.is_none() == anonymous)
        };
        let pending_for_mac = pool().filter(|u| u.mac == meta.mac).count();
        if pending_for_mac >= max_pending {
            return Err(StoreError::TooManyPending {
                mac: meta.mac,
                max: max_pending,
            });
        }
        let total: u64 = pool().map(|u| u.size).sum();
        if total.saturating_add(bytes.len() as u64) > max_bytes {
            return Err(StoreError::QuarantineFull { max: max_bytes });
        }
        if self
            .bundle_meta
            .contains_key(Target::Host(meta.mac).to_string().as_bytes())
            .map_err(backend)?
        {
            meta.state = UploadState::Conflict;
        }
        let id = self.db.generate_id().map_err(backend)?;
        meta.id = format!("{id:016x}");
        let meta_json = to_json(&meta)?;
        (&self.upload_data, &self.upload_meta)
            .transaction(|(d, m)| {
                d.insert(meta.id.as_bytes(), bytes)?;
                m.insert(meta.id.as_bytes(), meta_json.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable()?;
        Ok(meta)
    }

    fn upload_list(&self) -> Result<Vec<UploadMeta>, StoreError> {
        self.upload_metas()
    }

    fn upload_get(&self, id: &str) -> Result<Option<(UploadMeta, Bytes)>, StoreError> {
        match read_pair(&self.upload_meta, &self.upload_data, id.as_bytes())? {
            (Some(m), Some(d)) => Ok(Some((from_json(&m)?, Bytes::from_owner(d)))),
            (None, None) => Ok(None),
            _ => Err(StoreError::Backend(format!(
                "upload {id} has metadata or data but not both"
            ))),
        }
    }

    fn upload_delete(&self, id: &str) -> Result<bool, StoreError> {
        let existed = (&self.upload_data, &self.upload_meta)
            .transaction(|(d, m)| {
                let a = d.remove(id.as_bytes())?;
                let b = m.remove(id.as_bytes())?;
                Ok(a.is_some() || b.is_some())
            })
            .map_err(tx_err)?;
        self.durable()?;
        Ok(existed)
    }

    fn upload_expire(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
        let expired: Vec<String> = self
            .upload_metas()?
            .into_iter()
            .filter(|u| u.received_unix < cutoff_unix)
            .map(|u| u.id)
            .collect();
        for id in &expired {
            self.upload_delete(id)?;
        }
        Ok(expired.len())
    }

    fn quarantine_usage(&self) -> Result<(u64, u64), StoreError> {
        let metas = self.upload_metas()?;
        Ok((metas.len() as u64, metas.iter().map(|u| u.size).sum()))
    }

    fn report_record(&self, report: &StoredReport, forward: bool) -> Result<u64, StoreError> {
        let key = report.mac.to_string();
        let body = to_json(report)?;
        let seq = self.db.generate_id().map_err(backend)?;
        // No sled transaction here: each one rolls the log buffer twice
        // (two writes and syncs of their own, beside the group commit's),
        // which made reports the store's main cost in a boot storm. The
        // forward item goes first: the log is replayed in order, so a node
        // record that survived a crash implies its forward item did. A
        // crash between the two is before the durable point below, so the
        // report was not acknowledged and the fetcher sends it again (a
        // duplicate the engine tells by its report id).
        if forward {
            self.forward
                .insert(seq.to_be_bytes(), body.as_slice())
                .map_err(backend)?;
            self.forward_len.fetch_add(1, Ordering::Relaxed);
        }
        // Read-modify-write of the node's record, atomic per key.
        let mut failed = None;
        self.nodes
            .fetch_and_update(key.as_bytes(), |current| {
                let old: Option<NodeRecord> = current.and_then(|v| from_json(v).ok());
                let rec = NodeRecord::after(old, report);
                match to_json(&rec) {
                    Ok(json) => Some(json),
                    Err(e) => {
                        failed = Some(e);
                        current.map(<[u8]>::to_vec)
                    }
                }
            })
            .map_err(backend)?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.durable()?;
        self.forward_depth()
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.nodes
            .iter()
            .values()
            .map(|v| from_json(&v.map_err(backend)?))
            .collect()
    }

    fn forward_peek(&self, max: usize) -> Result<Vec<ForwardItem>, StoreError> {
        self.forward
            .iter()
            .take(max)
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                Ok(ForwardItem {
                    seq: be_u64(&k)?,
                    body: Bytes::from_owner(v),
                })
            })
            .collect()
    }

    fn forward_ack(&self, seq: u64) -> Result<u64, StoreError> {
        if self
            .forward
            .remove(seq.to_be_bytes())
            .map_err(backend)?
            .is_some()
        {
            self.forward_len.fetch_sub(1, Ordering::Relaxed);
        }
        self.durable()?;
        self.forward_depth()
    }

    fn forward_depth(&self) -> Result<u64, StoreError> {
        Ok(self.forward_len.load(Ordering::Relaxed))
    }

    fn audit_append(&self, mut entry: AuditEntry, max_entries: u64) -> Result<(), StoreError> {
        let mut counts = self
            .audit_next
            .lock()
            .map_err(|_| StoreError::Backend("audit lock poisoned".into()))?;
        entry.seq = counts.next;
        counts.next += 1;
        let i = log_index(entry.log);
        let tree = &self.audit[i];
        let count = &mut counts.lines[i];
        tree.insert(entry.seq.to_be_bytes(), to_json(&entry)?)
            .map_err(backend)?;
        *count += 1;
        while *count > max_entries {
            match tree.pop_min().map_err(backend)? {
                Some(_) => *count -= 1,
                None => {
                    *count = 0;
                    break;
                }
            }
        }
        Ok(())
    }

    fn audit_list(
        &self,
        after: u64,
        limit: usize,
        log: Option<AuditLog>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        let read = |tree: &sled::Tree| -> Result<Vec<AuditEntry>, StoreError> {
            tree.range(start..)
                .values()
                .take(limit)
                .map(|v| from_json(&v.map_err(backend)?))
                .collect()
        };
        Ok(match log {
            Some(log) => read(&self.audit[log_index(log)])?,
            None => {
                let mut all = Vec::new();
                for tree in &self.audit {
                    all.extend(read(tree)?);
                }
                all.sort_by_key(|e| e.seq);
                all.truncate(limit);
                all
            }
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.durable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel_names::Mac;

    fn meta(target: &Target, serial: u64) -> BundleMeta {
        BundleMeta {
            target: target.to_string(),
            serial,
            site: None,
            sha256: format!("{serial:064x}"),
            size: 3,
            signer: "0011223344556677".into(),
            expires: "2030-01-01T00:00:00Z".into(),
            published: "2026-01-01T00:00:00Z".into(),
            published_by: "admin/alice".into(),
            payload_sha256: format!("{serial:064x}"),
        }
    }

    fn mac(n: u8) -> Mac {
        Mac::from_octets([2, 0, 0, 0, 0, n])
    }

    fn upload(m: Mac, at: i64, size: u64) -> UploadMeta {
        UploadMeta {
            id: String::new(),
            mac: m,
            received: String::new(),
            received_unix: at,
            source: "127.0.0.1".into(),
            cert_scope: None,
            cert_fingerprint: None,
            cert_binds_mac: false,
            size,
            sha256: String::new(),
            state: UploadState::Pending,
        }
    }

    #[test]
    fn bundle_reads_never_mix_versions_while_publishes_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = std::sync::Arc::new(SledStore::open(dir.path()).expect("open"));
        let t = Target::Host(mac(1));
        // Version n: its bytes are n repeated, 1000 + n of them.
        let body = |n: u64| vec![n as u8; 1000 + n as usize];
        store
            .bundle_put(&t, &meta(&t, 1), &body(1), 10)
            .expect("put");
        let writer = {
            let (store, t) = (store.clone(), t.clone());
            std::thread::spawn(move || {
                for n in 2..200 {
                    store
                        .bundle_put(&t, &meta(&t, n), &body(n), 10)
                        .expect("put");
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() || reads < 200 {
            let (m, bytes) = store.bundle_get(&t).expect("get").expect("present");
            assert_eq!(&bytes[..], &body(m.serial)[..], "serial {}", m.serial);
            reads += 1;
        }
        writer.join().expect("writer");
    }

    #[test]
    fn group_commit_covers_every_waiter_with_fewer_syncs() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let gc = Arc::new(GroupCommit::default());
        let syncs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gc, syncs) = (gc.clone(), syncs.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        gc.wait(|| {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            Ok(())
                        })
                        .expect("sync");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        let st = gc.state.lock().expect("lock");
        assert_eq!((st.issued, st.durable), (320, 320));
        assert!(syncs.load(Ordering::SeqCst) < 320, "no grouping happened");
        // A failed sync is reported and does not mark anything durable.
        drop(st);
        let gc = GroupCommit::default();
        assert!(gc
            .wait(|| Err(StoreError::Backend("disk gone".into())))
            .is_err());
        assert_eq!(gc.state.lock().expect("lock").durable, 0);
    }

    #[test]
    fn serials_only_grow_even_across_delete_and_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = Target::Host(mac(1));
        {
            let s = SledStore::open(dir.path()).expect("open");
            s.bundle_put(&t, &meta(&t, 5), b"abc", 10).expect("put 5");
            assert!(matches!(
                s.bundle_put(&t, &meta(&t, 5), b"abc", 10),
                Err(StoreError::SerialNotGreater { highest: 5, .. })
            ));
            assert!(s.bundle_delete(&t).expect("delete"));
            assert!(!s.bundle_delete(&t).expect("delete again"));
            assert!(s.bundle_get(&t).expect("get").is_none());
            assert!(matches!(
                s.bundle_put(&t, &meta(&t, 4), b"abc", 10),
                Err(StoreError::SerialNotGreater { .. })
            ));
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.highest_serial(&t).expect("hs"), Some(5));
        assert_eq!(
            s.highest_serials().expect("all"),
            vec![(t.to_string(), 5)],
            "kept after DELETE"
        );
        s.bundle_put(&t, &meta(&t, 6), b"xyz", 10).expect("put 6");
        let (m, b) = s.bundle_get(&t).expect("get").expect("some");
        assert_eq!((m.serial, &b[..]), (6, &b"xyz"[..]));
        assert_eq!(s.bundle_list().expect("list").len(), 1);
    }

    #[test]
    fn quarantine_limits_conflicts_and_expiry() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path()).expect("open");
        // These uploads are anonymous: the anonymous pool's limits apply.
        let lim = QuarantineLimits {
            max_pending_per_mac: 1,
            max_total_bytes: 11,
            anonymous_max_pending_per_mac: 2,
            anonymous_max_total_bytes: 10,
        };
        let a = s
            .upload_put(upload(mac(1), 100, 3), b"abc", lim)
            .expect("1");
        s.upload_put(upload(mac(1), 200, 3), b"def", lim)
            .expect("2");
        assert!(matches!(
            s.upload_put(upload(mac(1), 300, 1), b"g", lim),
            Err(StoreError::TooManyPending { .. })
        ));
        assert!(matches!(
            s.upload_put(upload(mac(2), 300, 5), b"hijkl", lim),
            Err(StoreError::QuarantineFull { .. })
        ));
        let t = Target::Host(mac(3));
        s.bundle_put(&t, &meta(&t, 1), b"x", 10).expect("bundle");
        let c = s.upload_put(upload(mac(3), 300, 1), b"z", lim).expect("3");
        assert_eq!(c.state, UploadState::Conflict);
        assert_eq!(a.state, UploadState::Pending);
        assert!(a.id < c.id);
        assert_eq!(s.quarantine_usage().expect("usage"), (3, 7));
        assert_eq!(s.upload_expire(150).expect("expire"), 1);
        assert!(s.upload_get(&a.id).expect("get").is_none());
        assert_eq!(s.upload_list().expect("list").len(), 2);
        assert!(s.upload_delete(&c.id).expect("del"));
        assert!(s.upload_get("../etc").expect("get hostile").is_none());
    }

    #[test]
    fn anonymous_uploads_never_use_up_the_certified_pool() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path()).expect("open");
        let lim = QuarantineLimits {
            max_pending_per_mac: 2,
            max_total_bytes: 100,
            anonymous_max_pending_per_mac: 1,
            anonymous_max_total_bytes: 10,
        };
        let certified = |m: Mac, size: u64| UploadMeta {
            cert_scope: Some(format!("host/{m}")),
            cert_binds_mac: true,
            ..upload(m, 1, size)
        };
        // An anonymous squatter takes its one slot for the node's MAC and
        // its whole pool...
        s.upload_put(upload(mac(1), 1, 4), b"four", lim)
            .expect("anon");
        assert!(matches!(
            s.upload_put(upload(mac(1), 1, 1), b"x", lim),
            Err(StoreError::TooManyPending { max: 1, .. })
        ));
        s.upload_put(upload(mac(2), 1, 6), b"sixsix", lim)
            .expect("anon");
        assert!(matches!(
            s.upload_put(upload(mac(3), 1, 1), b"x", lim),
            Err(StoreError::QuarantineFull { max: 10 })
        ));
        // ...and the node's own captures still get in, up to their limits.
        s.upload_put(certified(mac(1), 40), &[1; 40], lim)
            .expect("own");
        s.upload_put(certified(mac(1), 50), &[1; 50], lim)
            .expect("own");
        assert!(matches!(
            s.upload_put(certified(mac(1), 1), b"x", lim),
            Err(StoreError::TooManyPending { max: 2, .. })
        ));
        assert!(matches!(
            s.upload_put(certified(mac(4), 1), b"x", lim),
            Err(StoreError::QuarantineFull { max: 90 })
        ));
        assert_eq!(s.quarantine_usage().expect("usage"), (4, 100));
    }

    #[test]
    fn reports_update_inventory_and_queue() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path()).expect("open");
        let rep = |id: &str, status: &str, err: Option<&str>| StoredReport {
            report_id: id.into(),
            mac: mac(1),
            received: "t".into(),
            reporter: "host/x".into(),
            report: serde_json::json!({"status": status, "error": err}),
        };
        s.report_record(&rep("r1", "failed", Some("boom")), true)
            .expect("r1");
        s.report_record(&rep("r2", "failed", None), true)
            .expect("r2");
        let n = &s.nodes().expect("nodes")[0];
        assert_eq!(n.last_error.as_deref(), Some("boom"));
        assert_eq!(n.reports, 2);
        s.report_record(&rep("r3", "ok", None), false).expect("r3");
        assert_eq!(s.nodes().expect("nodes")[0].last_error, None);
        let q = s.forward_peek(10).expect("peek");
        assert_eq!(q.len(), 2);
        assert!(q[0].seq < q[1].seq);
        s.forward_ack(q[0].seq).expect("ack");
        s.forward_ack(q[0].seq).expect("ack twice");
        assert_eq!(s.forward_depth().expect("depth"), 1);
        s.flush().expect("flush");
        drop(s);
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.forward_depth().expect("depth after reopen"), 1);
    }

    #[test]
    fn audit_is_bounded_and_ordered() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = SledStore::open(dir.path()).expect("open");
            for i in 0..10 {
                let e = AuditEntry {
                    seq: 0,
                    log: AuditLog::Admin,
                    time: String::new(),
                    who: format!("w{i}"),
                    cert_fingerprint: None,
                    source: String::new(),
                    what: String::new(),
                    status: 200,
                };
                s.audit_append(e, 4).expect("append");
            }
            let all = s.audit_list(0, 100, None).expect("list");
            assert_eq!(all.len(), 4);
            assert_eq!(all[0].who, "w6");
            assert_eq!(
                s.audit_list(all[1].seq, 1, None).expect("after")[0].who,
                "w8"
            );
            s.flush().expect("flush");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        s.audit_append(
            AuditEntry {
                seq: 0,
                log: AuditLog::Admin,
                time: String::new(),
                who: "after".into(),
                cert_fingerprint: None,
                source: String::new(),
                what: String::new(),
                status: 200,
            },
            4,
        )
        .expect("append");
        let all = s.audit_list(0, 100, None).expect("list");
        assert_eq!(all.last().map(|e| e.who.as_str()), Some("after"));
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn fetch_lines_never_evict_admin_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let line = |log, who: &str| AuditEntry {
            seq: 0,
            log,
            time: String::new(),
            who: who.into(),
            cert_fingerprint: None,
            source: String::new(),
            what: String::new(),
            status: 200,
        };
        {
            let s = SledStore::open(dir.path()).expect("open");
            s.audit_append(line(AuditLog::Admin, "admin/alice"), 3)
                .expect("append");
            for i in 0..1000 {
                s.audit_append(line(AuditLog::Fetch, &format!("site/dc{i}")), 10)
                    .expect("append");
            }
            s.audit_append(line(AuditLog::Admin, "admin/bob"), 3)
                .expect("append");
            s.flush().expect("flush");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        let sec = s.audit_list(0, 100, Some(AuditLog::Admin)).expect("list");
        let who: Vec<_> = sec.iter().map(|e| e.who.as_str()).collect();
        assert_eq!(who, ["admin/alice", "admin/bob"]);
        let fetch = s.audit_list(0, 100, Some(AuditLog::Fetch)).expect("list");
        assert_eq!(fetch.len(), 10);
        assert_eq!(fetch[9].who, "site/dc999");
        // Both merged, in sequence order; the sequence goes on after a reopen.
        let all = s.audit_list(0, 100, None).expect("list");
        assert_eq!(all.len(), 12);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(all[10].who, "site/dc999");
        assert_eq!(all[11].who, "admin/bob");
        s.audit_append(line(AuditLog::Admin, "admin/carol"), 3)
            .expect("append");
        let sec = s.audit_list(0, 100, Some(AuditLog::Admin)).expect("list");
        assert_eq!(sec.len(), 3);
        assert!(sec[2].seq > all[11].seq);
    }
}
