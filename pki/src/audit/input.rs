//! What to audit and how: [`AuditInput`], and the chain a live server
//! presented ([`PresentedChain`]). Plain data, below every other audit
//! module but `cert` and `lints`.

use std::path::PathBuf;

use time::{Duration, OffsetDateTime};

use super::lints::{self, ValidityPolicy};

/// The chain a live server presented (`--connect`).
#[derive(Debug, Clone)]
pub struct PresentedChain {
    /// `HOST:PORT` as given.
    pub address: String,
    /// DER certificates in the order presented (end entity first).
    pub certificates: Vec<Vec<u8>>,
}

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct AuditInput {
    /// The PKI directory.
    pub dir: PathBuf,
    /// Extra certificate files (PEM or DER).
    pub extra: Vec<PathBuf>,
    /// The chain a live server presented.
    pub presented: Option<PresentedChain>,
    /// The audit's clock.
    pub now: OffsetDateTime,
    /// Window of `w_expiring_soon`.
    pub expiring_within: Duration,
    /// Validity ceilings per kind.
    pub policy: ValidityPolicy,
}

impl AuditInput {
    /// Audits `dir` now, with default policy and window, no extras.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AuditInput {
            dir: dir.into(),
            extra: Vec::new(),
            presented: None,
            now: OffsetDateTime::now_utc(),
            expiring_within: lints::DEFAULT_EXPIRING_WITHIN,
            policy: ValidityPolicy::default(),
        }
    }
}
