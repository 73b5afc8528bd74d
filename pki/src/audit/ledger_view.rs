//! The issuance ledger as the audit sees it: which certificates it accounts
//! for, which it revoked, and whether its hash chain holds.
//!
//! Reading goes through [`crate::ledger::Ledger`]; verification needs the
//! audited CA's certificate (every line is signed by its key). Membership is
//! by certificate sha256, not serial: a different certificate reusing an
//! issued serial is *not* accounted for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::cert::Cert;
use super::lints::{self, Finding};
use super::report::LedgerReport;
use crate::ledger::{CertKind, Event, Ledger, LEDGER_FILE};
use crate::scope::Scope;

/// Most ledger problems quoted in one finding; the rest are counted.
pub const MAX_PROBLEMS_SHOWN: usize = 5;

/// What the audit learned from the ledger.
#[derive(Debug, Default)]
pub struct LedgerView {
    present: bool,
    entries: usize,
    /// The chain was checked against the audited CA.
    verified: bool,
    chain_error: Option<String>,
    /// Issued certificates (and the CA's init): sha256 of the DER.
    issued_sha256: BTreeSet<String>,
    /// Serials of issued certificates (and the CA's), canonical hex.
    issued_serials: BTreeSet<String>,
    /// Revoked serials (canonical hex).
    revoked: BTreeSet<String>,
    /// Per site: serials of its site-wide certificates, and of the host
    /// certificates naming it.
    sites: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

/// The site a ledger SAN list (`uri:https://DOMAIN/satchel/site/<name>`, …)
/// names, if its URIs form a valid host or site scope.
fn site_of(sans: &[String]) -> Option<String> {
    let uris = sans.iter().filter_map(|s| s.strip_prefix("uri:"));
    match Scope::from_uris(uris).ok()? {
        Scope::Host { site, .. } => site.map(|s| s.to_string()),
        Scope::Site(s) => Some(s.to_string()),
        Scope::Admin(_) => None,
    }
}

/// Reads the ledger of `dir` and, when the audited CA is known, verifies it.
/// Never fails: an unreadable or broken ledger is reported through
/// [`LedgerView::findings`].
pub fn read(dir: &Path, ca_der: Option<&[u8]>) -> LedgerView {
    let path = dir.join(LEDGER_FILE);
    let mut v = LedgerView {
        present: path.exists(),
        ..LedgerView::default()
    };
    if !v.present {
        return v;
    }
    let ledger = match Ledger::read(&path) {
        Ok(l) => l,
        Err(e) => {
            v.chain_error = Some(e.to_string());
            return v;
        }
    };
    v.entries = ledger.lines().len();
    v.issued_sha256 = ledger.certificates().into_keys().collect();
    v.revoked = ledger.revoked().into_keys().collect();
    v.issued_serials = ledger.issued_serials().into_keys().collect();
    for e in ledger.entries() {
        if let Event::Issue {
            kind, serial, sans, ..
        } = &e.event
        {
            let Some(site) = site_of(sans) else { continue };
            if v.revoked.contains(serial) {
                continue;
            }
            let entry = v.sites.entry(site).or_default();
            match kind {
                CertKind::Site => entry.0.push(serial.clone()),
                CertKind::Host => entry.1.push(serial.clone()),
                _ => {}
            }
        }
    }
    if let Some(ca) = ca_der {
        v.verified = true;
        match ledger.verify(ca) {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                let mut msg: Vec<String> = problems
                    .iter()
                    .take(MAX_PROBLEMS_SHOWN)
                    .map(|p| p.to_string())
                    .collect();
                if problems.len() > MAX_PROBLEMS_SHOWN {
                    msg.push(format!("and {} more", problems.len() - MAX_PROBLEMS_SHOWN));
                }
                v.chain_error = Some(msg.join("; "));
            }
            Err(e) => v.chain_error = Some(e.to_string()),
        }
    }
    v
}

impl LedgerView {
    /// The ledger exists and its chain verified against the audited CA, so
    /// membership means something.
    pub fn usable(&self) -> bool {
        self.present && self.verified && self.chain_error.is_none()
    }

    /// The ledger records this certificate (by DER sha256).
    pub fn contains(&self, c: &Cert) -> bool {
        self.issued_sha256.contains(&c.sha256)
    }

    /// The ledger records the issuance of *some* certificate with this one's
    /// serial (which, when [`LedgerView::contains`] is false, is another one).
    pub fn knows_serial(&self, c: &Cert) -> bool {
        self.issued_serials.contains(&c.serial_hex)
    }

    /// A verified ledger records this certificate's revocation.
    pub fn is_revoked(&self, c: &Cert) -> bool {
        self.usable() && self.revoked.contains(&c.serial_hex)
    }

    /// Every revoked serial of a verified ledger.
    pub fn revoked_serials(&self) -> impl Iterator<Item = &String> {
        self.revoked.iter().filter(|_| self.usable())
    }

    /// Findings about the ledger itself.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if !self.present {
            out.push(Finding {
                lint: &lints::E_LEDGER_MISSING,
                certificate: None,
                message: format!("{LEDGER_FILE} not found"),
            });
        } else if let Some(e) = &self.chain_error {
            out.push(Finding {
                lint: &lints::E_LEDGER_CHAIN_BROKEN,
                certificate: None,
                message: e.clone(),
            });
        }
        for (site, (site_wide, hosts)) in &self.sites {
            if site_wide.is_empty() || hosts.is_empty() {
                continue;
            }
            out.push(Finding {
                lint: &lints::W_SITE_IMAGE_BESIDE_HOST_IMAGES,
                certificate: None,
                message: format!(
                    "site {site}: {} site-wide certificate(s) (serial {}) and {} host \
                     certificate(s) naming the site, none revoked: any node booted from a \
                     {site} site-wide image can claim any MAC (BOOTIF) and fetch those hosts' \
                     bundles",
                    site_wide.len(),
                    site_wide.join(", "),
                    hosts.len()
                ),
            });
        }
        out
    }

    /// The report's ledger section.
    pub fn status(&self) -> LedgerReport {
        LedgerReport {
            path: LEDGER_FILE.to_string(),
            present: self.present,
            entries: self.entries,
            chain_ok: (self.present && (self.verified || self.chain_error.is_some()))
                .then_some(self.chain_error.is_none()),
            error: self.chain_error.clone(),
        }
    }
}
