//! The embedded [`Store`]: sled in one data directory.
//!
//! Trees: `bundle_data` and `bundle_meta` (target → bytes / JSON), `serials`
//! (target → highest serial, big-endian u64, never removed), `upload_data` and
//! `upload_meta` (id → bytes / JSON), `nodes` (MAC → JSON), `forward` (seq →
//! JSON report), `audit` (seq → JSON line).
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
    AuditEntry, BundleMeta, ForwardItem, NodeRecord, QuarantineLimits, Store, StoreError,
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

/// How long opening waits for the store directory's lock to be released
/// before it reports the store as in use.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
    audit: sled::Tree,
    /// Serialises quarantine admission: the limit check and the insert must
    /// see the same quarantine, and sled transactions alone do not cover a scan.
    upload_admission: Mutex<()>,
    /// Next audit sequence number; also serialises audit trimming.
    audit_next: Mutex<u64>,
    /// Group commit: concurrent writers share one sync instead of queueing
    /// one each.
    commit: GroupCommit,
    /// Entries in `forward`: counted once at open, then kept up to date, so
    /// the queue depth costs no scan per report.
    forward_len: AtomicU64,
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
        let open = || {
            sled::Config::new()
                .path(dir)
                .cache_capacity(CACHE_BYTES)
                .flush_every_ms(Some(FLUSH_EVERY_MS))
                .open()
        };
        // The directory's lock is released when the last thread of an
        // earlier handle ends, which can be just after that handle was
        // dropped (the demo publishes, then serves the same store).
        let give_up = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match open() {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < give_up =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.map_err(backend)?,
            }
        };
        let t = |n: &str| db.open_tree(n).map_err(backend);
        let audit = t("audit")?;
        let audit_next = match audit.last().map_err(backend)? {
            Some((k, _)) => be_u64(&k)? + 1,
            None => 1,
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
    ) -> Result<(), StoreError> {
        let key = target.to_string();
        let meta_json = to_json(meta)?;
        (&self.bundle_data, &self.bundle_meta, &self.serials)
            .transaction(|(d, m, s)| {
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
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable()
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
        let existing = self.upload_metas()?;
        let pending_for_mac = existing.iter().filter(|u| u.mac == meta.mac).count();
        if pending_for_mac >= limits.max_pending_per_mac {
            return Err(StoreError::TooManyPending {
                mac: meta.mac,
                max: limits.max_pending_per_mac,
            });
        }
        let total: u64 = existing.iter().map(|u| u.size).sum();
        if total.saturating_add(bytes.len() as u64) > limits.max_total_bytes {
            return Err(StoreError::QuarantineFull {
                max: limits.max_total_bytes,
            });
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

    fn report_record(&self, report: &StoredReport, forward: bool) -> Result<(), StoreError> {
        let key = report.mac.to_string();
        let body = to_json(report)?;
        let seq = self.db.generate_id().map_err(backend)?;
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
                let rec = NodeRecord {
                    mac: report.mac,
                    last_seen: report.received.clone(),
                    last_status: status.clone(),
                    serials: r.get("serials").cloned().unwrap_or(serde_json::Value::Null),
                    last_error: match (&error, status.as_str()) {
                        (Some(e), _) => Some(e.clone()),
                        (None, "ok" | "applied") => None,
                        (None, _) => old.as_ref().and_then(|o| o.last_error.clone()),
                    },
                    fetcher_version: r
                        .get("fetcher_version")
                        .and_then(|v| v.as_str())
                        .map(|s| s.to_string()),
                    last_report_id: report.report_id.clone(),
                    reports: old.as_ref().map(|o| o.reports).unwrap_or(0) + 1,
                };
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
        self.durable()
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

    fn forward_ack(&self, seq: u64) -> Result<(), StoreError> {
        if self
            .forward
            .remove(seq.to_be_bytes())
            .map_err(backend)?
            .is_some()
        {
            self.forward_len.fetch_sub(1, Ordering::Relaxed);
        }
        self.durable()
    }

    fn forward_depth(&self) -> Result<u64, StoreError> {
        Ok(self.forward_len.load(Ordering::Relaxed))
    }

    fn audit_append(&self, mut entry: AuditEntry, max_entries: u64) -> Result<(), StoreError> {
        let mut next = self
            .audit_next
            .lock()
            .map_err(|_| StoreError::Backend("audit lock poisoned".into()))?;
        entry.seq = *next;
        *next += 1;
        self.audit
            .insert(entry.seq.to_be_bytes(), to_json(&entry)?)
            .map_err(backend)?;
        let keep_from = next.saturating_sub(max_entries);
        while let Some((k, _)) = self.audit.first().map_err(backend)? {
            if be_u64(&k)? >= keep_from {
                break;
            }
            self.audit.remove(k).map_err(backend)?;
        }
        Ok(())
    }

    fn audit_list(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.audit
            .range(start..)
            .values()
            .take(limit)
            .map(|v| from_json(&v.map_err(backend)?))
            .collect()
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
        store.bundle_put(&t, &meta(&t, 1), &body(1)).expect("put");
        let writer = {
            let (store, t) = (store.clone(), t.clone());
            std::thread::spawn(move || {
                for n in 2..200 {
                    store.bundle_put(&t, &meta(&t, n), &body(n)).expect("put");
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
            s.bundle_put(&t, &meta(&t, 5), b"abc").expect("put 5");
            assert!(matches!(
                s.bundle_put(&t, &meta(&t, 5), b"abc"),
                Err(StoreError::SerialNotGreater { highest: 5, .. })
            ));
            assert!(s.bundle_delete(&t).expect("delete"));
            assert!(!s.bundle_delete(&t).expect("delete again"));
            assert!(s.bundle_get(&t).expect("get").is_none());
            assert!(matches!(
                s.bundle_put(&t, &meta(&t, 4), b"abc"),
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
        s.bundle_put(&t, &meta(&t, 6), b"xyz").expect("put 6");
        let (m, b) = s.bundle_get(&t).expect("get").expect("some");
        assert_eq!((m.serial, &b[..]), (6, &b"xyz"[..]));
        assert_eq!(s.bundle_list().expect("list").len(), 1);
    }

    #[test]
    fn quarantine_limits_conflicts_and_expiry() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path()).expect("open");
        let lim = QuarantineLimits {
            max_pending_per_mac: 2,
            max_total_bytes: 10,
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
        s.bundle_put(&t, &meta(&t, 1), b"x").expect("bundle");
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
                    time: String::new(),
                    who: format!("w{i}"),
                    cert_fingerprint: None,
                    source: String::new(),
                    what: String::new(),
                    status: 200,
                };
                s.audit_append(e, 4).expect("append");
            }
            let all = s.audit_list(0, 100).expect("list");
            assert_eq!(all.len(), 4);
            assert_eq!(all[0].who, "w6");
            assert_eq!(s.audit_list(all[1].seq, 1).expect("after")[0].who, "w8");
            s.flush().expect("flush");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        s.audit_append(
            AuditEntry {
                seq: 0,
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
        let all = s.audit_list(0, 100).expect("list");
        assert_eq!(all.last().map(|e| e.who.as_str()), Some("after"));
        assert_eq!(all.len(), 4);
    }
}
