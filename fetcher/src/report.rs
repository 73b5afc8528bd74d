//! The report a boot run posts to `POST /v1/reports/{mac}`: what happened
//! in each phase (discover, download, verify, apply), the serials applied,
//! timings, the error, the fetcher's version and a random report id (the
//! server de-duplicates retried posts by it).
//!
//! Building the report is pure; sending it is `run`'s job (through the
//! session, within the deadline plus a grace, else to the kernel log).
//! Error texts are bounded by [`MAX_REPORT_ERROR_CHARS`] and never hold
//! key material (the errors they come from never do).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::settings::MAX_REPORT_ERROR_CHARS;

/// The phases, in order.
pub const PHASES: [&str; 4] = ["discover", "download", "verify", "apply"];

/// One phase's outcome.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Phase {
    /// One of [`PHASES`].
    pub name: &'static str,
    /// `ok`, `failed` or `skipped`.
    pub status: &'static str,
    /// Time spent, in milliseconds.
    pub duration_ms: u64,
    /// What went wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Random id (32 hex digits).
    pub report_id: String,
    /// The node's MAC, canonical.
    pub mac: String,
    /// `applied` when every phase succeeded, else `failed`.
    pub status: &'static str,
    /// Whether the boot stops on failure (`satchel.required`).
    pub required: bool,
    /// `satchel-fetch/<version>`.
    pub fetcher_version: String,
    /// The server (`host:port`) that answered, if any did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Per phase.
    pub phases: Vec<Phase>,
    /// Milliseconds per phase that ran (the same figures as `phases`, as a map).
    pub timings_ms: BTreeMap<String, u64>,
    /// Serial applied per target (`site/dc1` → 3).
    pub serials: BTreeMap<String, u64>,
    /// sha256 (hex) of the payload applied per target, as its signed
    /// manifest names it: what the server compares with what is published
    /// to tell a stale node.
    pub payloads: BTreeMap<String, String>,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The target (`host/…`, `site/…`) whose bundle was refused or failed
    /// to commit, if one was: then nothing of the boot was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Total time, in milliseconds.
    pub duration_ms: u64,
}

/// What a run applied, per target (`host/…`, `site/…`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedBundles {
    /// The signed serial.
    pub serials: BTreeMap<String, u64>,
    /// The payload's sha256 (hex) from the signed manifest.
    pub payloads: BTreeMap<String, String>,
}

impl AppliedBundles {
    /// Records one applied bundle.
    pub fn record(&mut self, target: &str, serial: u64, payload_sha256: &[u8; 32]) {
        self.serials.insert(target.to_string(), serial);
        self.payloads
            .insert(target.to_string(), hex::encode(payload_sha256));
    }
}

/// Truncates an error text for a report (character-safe).
pub fn bounded(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REPORT_ERROR_CHARS)
        .collect()
}

/// Collects phases as the run goes.
#[derive(Clone, Debug, Default)]
pub struct Phases(Vec<Phase>);

impl Phases {
    /// Records a phase's outcome.
    pub fn record(&mut self, name: &'static str, took: Duration, error: Option<&str>) {
        self.0.push(Phase {
            name,
            status: if error.is_some() { "failed" } else { "ok" },
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            error: error.map(bounded),
        });
    }

    /// Fills in the phases that did not run, in [`PHASES`] order.
    pub fn finish(mut self) -> Vec<Phase> {
        let mut out = Vec::with_capacity(PHASES.len());
        for name in PHASES {
            match self.0.iter().position(|p| p.name == name) {
                Some(i) => out.push(self.0.remove(i)),
                None => out.push(Phase {
                    name,
                    status: "skipped",
                    duration_ms: 0,
                    error: None,
                }),
            }
        }
        out
    }

    /// The first failure's text.
    pub fn first_error(&self) -> Option<String> {
        self.0.iter().find_map(|p| p.error.clone())
    }
}

/// The durations of the phases that ran, by name.
pub fn timings(phases: &[Phase]) -> BTreeMap<String, u64> {
    phases
        .iter()
        .filter(|p| p.status != "skipped")
        .map(|p| (p.name.to_string(), p.duration_ms))
        .collect()
}

/// A random report id.
pub fn new_id<R: rand::Rng + ?Sized>(rng: &mut R) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_complete_and_ordered() {
        let mut p = Phases::default();
        p.record("download", Duration::from_millis(5), Some("reset\nby peer"));
        p.record("discover", Duration::from_millis(2), None);
        assert_eq!(p.first_error().as_deref(), Some("reset by peer"));
        let v = p.finish();
        let names: Vec<_> = v.iter().map(|p| (p.name, p.status)).collect();
        assert_eq!(
            names,
            vec![
                ("discover", "ok"),
                ("download", "failed"),
                ("verify", "skipped"),
                ("apply", "skipped")
            ]
        );
    }

    #[test]
    fn error_text_is_bounded() {
        let long = "é".repeat(MAX_REPORT_ERROR_CHARS * 3);
        assert_eq!(bounded(&long).chars().count(), MAX_REPORT_ERROR_CHARS);
    }

    #[test]
    fn ids_are_random_hex() {
        let mut rng = rand::thread_rng();
        let (a, b) = (new_id(&mut rng), new_id(&mut rng));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
