//! The issuance ledger as the audit sees it: which certificates it accounts
//! for, which it revoked, and whether its hash chain holds.

use std::collections::BTreeSet;
use std::path::Path;

use super::cert::Cert;
use super::lints::{self, Finding};
use super::report::LedgerReport;

/// File name of the ledger in a PKI directory.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// What the audit learned from the ledger.
#[derive(Debug, Default)]
pub struct LedgerView {
    path: String,
    present: bool,
    entries: usize,
    chain_error: Option<String>,
    /// Issued certificates: sha256 of the DER.
    issued_sha256: BTreeSet<String>,
    /// Issued serials (canonical hex), for events that name no fingerprint.
    issued_serials: BTreeSet<String>,
    /// Revoked serials (canonical hex).
    revoked: BTreeSet<String>,
}

/// Reads the ledger of `dir`. Never fails: an unreadable or broken ledger is
/// reported through [`LedgerView::findings`].
pub fn read(dir: &Path) -> LedgerView {
    let path = dir.join(LEDGER_FILE);
    LedgerView {
        path: LEDGER_FILE.to_string(),
        present: path.is_file(),
        ..LedgerView::default()
    }
}

impl LedgerView {
    /// The ledger exists and its chain verifies, so membership means something.
    pub fn usable(&self) -> bool {
        self.present && self.chain_error.is_none()
    }

    /// The ledger records this certificate's issuance.
    pub fn contains(&self, c: &Cert) -> bool {
        self.issued_sha256.contains(&c.sha256) || self.issued_serials.contains(&c.serial_hex)
    }

    /// The ledger records this certificate's revocation.
    pub fn is_revoked(&self, c: &Cert) -> bool {
        self.revoked.contains(&c.serial_hex)
    }

    /// Every revoked serial.
    pub fn revoked_serials(&self) -> impl Iterator<Item = &String> {
        self.revoked.iter()
    }

    /// Findings about the ledger itself.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if !self.present {
            out.push(Finding {
                lint: &lints::E_LEDGER_MISSING,
                certificate: None,
                message: format!("{} not found", self.path),
            });
        } else if let Some(e) = &self.chain_error {
            out.push(Finding {
                lint: &lints::E_LEDGER_CHAIN_BROKEN,
                certificate: None,
                message: e.clone(),
            });
        }
        out
    }

    /// The report's ledger section.
    pub fn status(&self) -> LedgerReport {
        LedgerReport {
            path: self.path.clone(),
            present: self.present,
            entries: self.entries,
            chain_ok: self.present.then_some(self.chain_error.is_none()),
            error: self.chain_error.clone(),
        }
    }
}
