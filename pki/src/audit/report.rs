//! The audit report: what `audit --json` prints (schema in `pki/AUDIT.md`)
//! and its plain-text rendering.
//!
//! Every field is plain data (strings, numbers, booleans) so the JSON is
//! stable and easy to consume; the schema's version is [`SCHEMA`]. Adding a
//! field is a compatible change; renaming, removing or changing the meaning
//! of one bumps [`SCHEMA`].

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;

use super::cert::Cert;
use super::cert::Kind;
use super::input::AuditInput;
use super::lints::{Finding, Severity, Status};
use crate::crl::LoadedCrl;

/// The report's schema identifier.
pub const SCHEMA: &str = "satchel-pki-audit/1";

pub use super::timefmt::{days_until, rfc3339};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// When the audit ran (RFC 3339, UTC).
    pub generated_at: String,
    /// The PKI directory as given.
    pub pki_dir: String,
    /// The live server audited with `--connect`, if any.
    pub presented: Option<PresentedReport>,
    /// Counts.
    pub summary: Summary,
    /// Every distinct certificate: the audited CA first, then by kind and subject.
    pub certificates: Vec<CertificateEntry>,
    /// The issuance ledger.
    pub ledger: LedgerReport,
    /// The newest valid CRL.
    pub crl: CrlReport,
    /// Lint findings: errors first, then warnings, then notices.
    pub findings: Vec<FindingEntry>,
}

/// The chain a live server presented.
#[derive(Debug, Clone, Serialize)]
pub struct PresentedReport {
    /// `HOST:PORT`.
    pub address: String,
    /// sha256 of each presented certificate, end entity first.
    pub chain: Vec<String>,
}

/// Counts of certificates and findings.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Distinct certificates.
    pub certificates: usize,
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
    /// Findings of severity notice.
    pub notices: usize,
}

/// A subject public key as reported.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEntry {
    /// `ecdsa`, `rsa`, `ed25519` or the algorithm OID.
    #[serde(rename = "type")]
    pub key_type: String,
    /// Size in bits (0 when unknown).
    pub bits: u32,
    /// `P-256`, `P-384`, `P-521` or the curve OID, for EC keys.
    pub curve: Option<String>,
}

/// One certificate in the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateEntry {
    /// Lowercase hex sha256 of the DER; findings refer to certificates by it.
    pub sha256: String,
    /// Where it was found: paths relative to the PKI directory, extra files
    /// as given, `tls://HOST:PORT#N` for the Nth certificate a server presented.
    pub sources: Vec<String>,
    /// Serial, lowercase hex without leading zero octets.
    pub serial: String,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// subjectAltName entries: `DNS:…`, `IP:…`, `URI:…`, `email:…`, `other:…`.
    pub sans: Vec<String>,
    /// Scope label (`host/<mac>`, `site/<name>`, `admin/<name>`), if valid.
    pub scope: Option<String>,
    /// `ca`, `server`, `host`, `site`, `admin` or `unknown`.
    pub kind: Kind,
    /// This is the CA the audit checked everything else against.
    pub audited_ca: bool,
    /// The subject public key.
    pub key: KeyEntry,
    /// Lowercase hex sha256 of the SubjectPublicKeyInfo DER.
    pub spki_sha256: String,
    /// Signature algorithm name or OID.
    pub signature_algorithm: String,
    /// notBefore (RFC 3339).
    pub not_before: String,
    /// notAfter (RFC 3339).
    pub not_after: String,
    /// Whole days until notAfter, rounded down; negative once expired.
    pub days_left: i64,
    /// `valid`, `not-yet-valid`, `expired`, `revoked` or `unknown-to-ledger`.
    pub status: Status,
    /// Whether the ledger records its issuance; null without a usable ledger.
    pub in_ledger: Option<bool>,
}

impl CertificateEntry {
    pub(crate) fn new(
        c: &Cert,
        sources: Vec<String>,
        status: Status,
        audited_ca: bool,
        in_ledger: Option<bool>,
        now: OffsetDateTime,
    ) -> Self {
        CertificateEntry {
            sha256: c.sha256.clone(),
            sources,
            serial: c.serial_hex.clone(),
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            sans: c.sans.iter().map(|s| s.to_string()).collect(),
            scope: c.scope_label(),
            kind: c.kind(),
            audited_ca,
            key: KeyEntry {
                key_type: c.key.type_name(),
                bits: c.key.bits,
                curve: c.key.curve_name(),
            },
            spki_sha256: c.spki_sha256.clone(),
            signature_algorithm: c.signature_algorithm.name().to_string(),
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            days_left: days_until(c.not_after, now),
            status,
            in_ledger: if audited_ca { None } else { in_ledger },
        }
    }
}

/// The issuance ledger as the audit found it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LedgerReport {
    /// Path of the ledger file relative to the PKI directory.
    pub path: String,
    /// The file exists.
    pub present: bool,
    /// Lines (events) read.
    pub entries: usize,
    /// The hash chain verifies; null when the ledger is absent.
    pub chain_ok: Option<bool>,
    /// What is wrong with it, if anything.
    pub error: Option<String>,
}

/// The CRL as the audit found it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CrlReport {
    /// Where it was found (relative path); null when no CRL verified.
    pub source: Option<String>,
    /// cRLNumber.
    pub number: Option<u64>,
    /// thisUpdate (RFC 3339).
    pub this_update: Option<String>,
    /// nextUpdate (RFC 3339).
    pub next_update: Option<String>,
    /// nextUpdate is in the future; null when no CRL verified.
    pub fresh: Option<bool>,
    /// Revoked serials (lowercase hex), sorted.
    pub revoked_serials: Vec<String>,
}

impl CrlReport {
    pub(crate) fn new(crl: Option<&(LoadedCrl, String)>, now: OffsetDateTime) -> Self {
        let Some((c, label)) = crl else {
            return CrlReport::default();
        };
        CrlReport {
            source: Some(label.clone()),
            number: c.number,
            this_update: Some(rfc3339(c.this_update)),
            next_update: c.next_update.map(rfc3339),
            fresh: Some(c.next_update.is_some_and(|n| now <= n)),
            revoked_serials: c.revoked.iter().cloned().collect(),
        }
    }
}

/// One finding as reported.
#[derive(Debug, Clone, Serialize)]
pub struct FindingEntry {
    /// The lint's stable id.
    pub id: &'static str,
    /// `error`, `warning` or `notice`.
    pub severity: Severity,
    /// sha256 of the certificate it is about; null for findings about files,
    /// the ledger or the CRL.
    pub certificate: Option<String>,
    /// That certificate's subject, for readers.
    pub subject: Option<String>,
    /// What exactly is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: &'static str,
}

impl Report {
    pub(crate) fn new(
        input: &AuditInput,
        mut certificates: Vec<CertificateEntry>,
        ledger: LedgerReport,
        crl: CrlReport,
        findings: Vec<Finding>,
    ) -> Report {
        certificates.sort_by(|a, b| {
            (!a.audited_ca, a.kind, &a.subject, &a.sha256).cmp(&(
                !b.audited_ca,
                b.kind,
                &b.subject,
                &b.sha256,
            ))
        });
        let subjects: std::collections::HashMap<&str, &str> = certificates
            .iter()
            .map(|c| (c.sha256.as_str(), c.subject.as_str()))
            .collect();
        let subject_of = |sha: &str| subjects.get(sha).map(|s| s.to_string());
        let mut findings: Vec<FindingEntry> = findings
            .into_iter()
            .map(|f| FindingEntry {
                id: f.lint.id,
                severity: f.lint.severity,
                subject: f.certificate.as_deref().and_then(subject_of),
                certificate: f.certificate,
                message: f.message,
                hint: f.lint.hint,
            })
            .collect();
        findings.sort_by(|a, b| {
            (
                std::cmp::Reverse(a.severity),
                a.id,
                &a.certificate,
                &a.message,
            )
                .cmp(&(
                    std::cmp::Reverse(b.severity),
                    b.id,
                    &b.certificate,
                    &b.message,
                ))
        });
        findings.dedup_by(|a, b| {
            a.id == b.id && a.certificate == b.certificate && a.message == b.message
        });
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        let summary = Summary {
            certificates: certificates.len(),
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            notices: count(Severity::Notice),
        };
        let presented = input.presented.as_ref().map(|p| PresentedReport {
            address: p.address.clone(),
            chain: p
                .certificates
                .iter()
                .map(|d| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(d)))
                .collect(),
        });
        Report {
            schema: SCHEMA,
            generated_at: rfc3339(input.now),
            pki_dir: input.dir.display().to_string(),
            presented,
            summary,
            certificates,
            ledger,
            crl,
            findings,
        }
    }

    /// Findings at or above a severity.
    pub fn count_at_least(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity >= s).count()
    }

    /// The ids of every finding (with repeats), for tests and scripts.
    pub fn finding_ids(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.id).collect()
    }

    /// The report as pretty JSON (the `AUDIT.md` schema).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The plain-text report for a terminal.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "satchel-pki audit of {} at {}",
            self.pki_dir, self.generated_at
        );
        if let Some(p) = &self.presented {
            let _ = writeln!(
                o,
                "live server {} presented {} certificate(s)",
                p.address,
                p.chain.len()
            );
        }
        let _ = writeln!(o, "\nCertificates ({}):", self.certificates.len());
        for c in &self.certificates {
            let _ = writeln!(
                o,
                "  [{}] {} {}{}",
                c.status.as_str(),
                c.kind,
                c.subject,
                if c.audited_ca { " (audited CA)" } else { "" }
            );
            let _ = writeln!(o, "      serial      {}", c.serial);
            if let Some(s) = &c.scope {
                let _ = writeln!(o, "      scope       {s}");
            }
            if !c.sans.is_empty() {
                let _ = writeln!(o, "      SANs        {}", c.sans.join(", "));
            }
            let _ = writeln!(
                o,
                "      key         {} {}{}",
                c.key.key_type,
                c.key.bits,
                c.key
                    .curve
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
            let _ = writeln!(o, "      spki sha256 {}", c.spki_sha256);
            let _ = writeln!(
                o,
                "      validity    {} .. {} ({} days left)",
                c.not_before, c.not_after, c.days_left
            );
            let _ = writeln!(o, "      found in    {}", c.sources.join(", "));
        }
        let _ = writeln!(o, "\nLedger: {}", self.ledger.path);
        match (self.ledger.present, self.ledger.chain_ok) {
            (false, _) => {
                let _ = writeln!(o, "  absent");
            }
            (true, ok) => {
                let _ = writeln!(
                    o,
                    "  {} entries, hash chain {}",
                    self.ledger.entries,
                    match ok {
                        Some(true) => "verifies",
                        Some(false) => "BROKEN",
                        None => "not checked",
                    }
                );
            }
        }
        if let Some(e) = &self.ledger.error {
            let _ = writeln!(o, "  {e}");
        }
        let _ = writeln!(o, "\nCRL:");
        match &self.crl.source {
            None => {
                let _ = writeln!(o, "  none signed by the CA");
            }
            Some(src) => {
                let _ = writeln!(
                    o,
                    "  {src}: number {}, thisUpdate {}, nextUpdate {} ({}), {} revoked",
                    self.crl
                        .number
                        .map(|n| n.to_string())
                        .unwrap_or("none".into()),
                    self.crl.this_update.as_deref().unwrap_or("?"),
                    self.crl.next_update.as_deref().unwrap_or("none"),
                    if self.crl.fresh == Some(true) {
                        "fresh"
                    } else {
                        "STALE"
                    },
                    self.crl.revoked_serials.len()
                );
            }
        }
        let _ = writeln!(
            o,
            "\nFindings: {} error(s), {} warning(s), {} notice(s)",
            self.summary.errors, self.summary.warnings, self.summary.notices
        );
        for f in &self.findings {
            let _ = writeln!(o, "  {:<7} {}", f.severity.as_str(), f.id);
            if let (Some(s), Some(sha)) = (&f.subject, &f.certificate) {
                let _ = writeln!(
                    o,
                    "          on   {s} (sha256 {})",
                    &sha[..sha.len().min(16)]
                );
            }
            let _ = writeln!(o, "          what {}", f.message);
            let _ = writeln!(o, "          fix  {}", f.hint);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_down() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(days_until(now + time::Duration::hours(47), now), 1);
        assert_eq!(days_until(now - time::Duration::hours(1), now), -1);
        assert_eq!(days_until(now, now), 0);
    }

    #[test]
    fn rfc3339_is_utc_seconds() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(1500);
        assert_eq!(rfc3339(t), "1970-01-01T00:00:01Z");
    }
}
