//! `satchel-server migrate --from-sled DIR`: copies an embedded store into
//! the etcd store, then checks the copy.
//!
//! Resumable: every step skips what the destination already has, so a run
//! that stopped half way (or a second run) goes on where it was and copies
//! nothing twice. Bundles are published version by version, oldest first,
//! through the same transaction as any publish (a version at or below the
//! destination's highest serial is already there); a target deleted in the
//! source is deleted after its versions are in. Uploads are matched by
//! (MAC, sha256, received); they get new ids. Node records are written only
//! where the destination has none (a report that reached etcd first is
//! newer). Queued forwards keep their positions, audit lines their
//! sequence numbers (a line of the destination's own with the same number
//! is kept, and the check reports the source's line as missing).
//!
//! It does not stop the servers: run it while the sled server is stopped
//! (sled allows one process per directory anyway) and before replicas take
//! writes.

use satchel_names::Target;

use crate::store::{EtcdStore, QuarantineLimits, Store, StoreError};

/// Audit lines read per page from the source.
const AUDIT_PAGE: usize = 10_000;

/// Queued forwards read from the source (the whole queue).
const FORWARD_MAX: usize = usize::MAX;

/// What one run copied and what the check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Bundle versions published into etcd by this run.
    pub versions: usize,
    /// Targets deleted in the source, deleted in etcd by this run.
    pub deleted: usize,
    /// Uploads copied by this run.
    pub uploads: usize,
    /// Node records copied by this run.
    pub nodes: usize,
    /// Queued forwards copied by this run.
    pub forwards: usize,
    /// Audit lines copied by this run.
    pub audit_lines: usize,
    /// Differences the check found after copying (empty: the copy holds
    /// everything the source does).
    pub mismatches: Vec<String>,
}

/// Copies `src` into `dst` (see the module doc) and checks the result.
pub fn from_sled(
    src: &dyn Store,
    dst: &EtcdStore,
    history: usize,
) -> Result<MigrateReport, StoreError> {
    let mut r = MigrateReport::default();
    let targets = src.highest_serials()?;
    for (name, _) in &targets {
        let target: Target = name
            .parse()
            .map_err(|e| StoreError::Backend(format!("source target {name:?}: {e}")))?;
        let have = dst.highest_serial(&target)?.unwrap_or(0);
        let mut versions = src.bundle_history(&target)?;
        versions.reverse();
        for meta in versions.into_iter().filter(|m| m.serial > have) {
            let Some((meta, bytes)) = src.bundle_version(&target, meta.serial)? else {
                continue;
            };
            dst.bundle_put(&target, &meta, &bytes, history)?;
            r.versions += 1;
        }
        if src.bundle_meta(&target)?.is_none() && dst.bundle_delete(&target)? {
            r.deleted += 1;
        }
    }
    let existing = dst.upload_list()?;
    let unlimited = QuarantineLimits {
        max_pending_per_mac: usize::MAX,
        max_total_bytes: u64::MAX,
        anonymous_max_pending_per_mac: usize::MAX,
        anonymous_max_total_bytes: u64::MAX / 2,
    };
    for u in src.upload_list()? {
        let present = existing
            .iter()
            .any(|e| e.mac == u.mac && e.sha256 == u.sha256 && e.received_unix == u.received_unix);
        if present {
            continue;
        }
        if let Some((meta, bytes)) = src.upload_get(&u.id)? {
            dst.upload_put(meta, &bytes, unlimited)?;
            r.uploads += 1;
        }
    }
    for node in src.nodes()? {
        if dst.import_node(&node)? {
            r.nodes += 1;
        }
    }
    for item in src.forward_peek(FORWARD_MAX)? {
        if dst.import_forward(item.seq, item.body)? {
            r.forwards += 1;
        }
    }
    let mut after = 0;
    loop {
        let page = src.audit_list(after, AUDIT_PAGE, None)?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        r.audit_lines += dst.import_audit(page)?;
        after = last;
    }
    r.mismatches = check(src, dst, &targets)?;
    Ok(r)
}

/// What the destination lacks of the source.
fn check(
    src: &dyn Store,
    dst: &EtcdStore,
    targets: &[(String, u64)],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for (name, highest) in targets {
        let Ok(target) = name.parse::<Target>() else {
            continue;
        };
        let got = dst.highest_serial(&target)?;
        if got != Some(*highest) {
            out.push(format!("{name}: highest serial {got:?}, source {highest}"));
        }
        let (a, b) = (src.bundle_meta(&target)?, dst.bundle_meta(&target)?);
        if a.as_ref().map(|m| &m.sha256) != b.as_ref().map(|m| &m.sha256) {
            out.push(format!("{name}: the current bundle differs"));
        }
        let kept: Vec<u64> = dst
            .bundle_history(&target)?
            .iter()
            .map(|m| m.serial)
            .collect();
        for m in src.bundle_history(&target)? {
            if !kept.contains(&m.serial) {
                out.push(format!("{name}: version {} missing", m.serial));
            }
        }
    }
    let uploads = dst.upload_list()?;
    for u in src.upload_list()? {
        if !uploads
            .iter()
            .any(|e| e.mac == u.mac && e.sha256 == u.sha256)
        {
            out.push(format!("upload {} of {} missing", u.id, u.mac));
        }
    }
    let nodes = dst.nodes()?;
    for n in src.nodes()? {
        if !nodes.iter().any(|d| d.mac == n.mac) {
            out.push(format!("node {} missing", n.mac));
        }
    }
    let mut after = 0;
    loop {
        let page = src.audit_list(after, AUDIT_PAGE, None)?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        let first = page[0].seq.saturating_sub(1);
        // Room for lines the destination had of its own in that range.
        let copied = dst.audit_list(first, page.len().saturating_mul(2), None)?;
        for e in &page {
            if !copied.iter().any(|c| c == e) {
                out.push(format!("audit line {} missing", e.seq));
            }
        }
        after = last;
    }
    Ok(out)
}
