//! The certificate audit report for security reviewers.
//!
//! [`audit`] reads a PKI directory — the CA certificate, every certificate
//! file beneath it, the issuance ledger and the CRL — plus optional extra
//! PEM/DER files and optionally the chain a live server presented, and
//! returns a [`Report`]: an inventory of every distinct certificate, the
//! ledger's integrity, the CRL's number and freshness, and lint findings.
//!
//! Invariant: **a bad certificate is a finding, never an error.** [`audit`]
//! fails only on unusable inputs: a PKI directory it cannot list, an extra
//! file it cannot read. Certificates that do not parse, oversized files,
//! forged CRLs and a broken ledger all end up in [`Report::findings`].
//!
//! It does not modify anything it reads, does not read private keys (only
//! `CERTIFICATE` and `X509 CRL` PEM sections and DER files with certificate
//! extensions are opened), and does not follow symbolic links.
//!
//! Layout:
//! - [`cert`]: [`Cert`], the owned facts read from one certificate; [`Kind`].
//! - [`lints`]: every lint's id, severity and hint ([`lints::LINTS`]), and the
//!   pure checks.
//! - [`report`]: the [`Report`] (serialised as the documented JSON of
//!   `AUDIT.md`) and its human-readable rendering.
//! - [`html`]: the self-contained HTML page.
//! - [`connect`]: fetches the chain a live TLS server presents (audit only).
//! - `ledger_view`: reads the issuance ledger for the audit.
//! - `input`: [`AuditInput`], [`PresentedChain`]; `timefmt`: RFC 3339 text.
//!
//! Dependencies go one way, no module uses one that uses it back:
//! `cert` ← `lints` ← `input`; `timefmt` at the bottom; `report` above
//! those; `ledger_view`, `connect`, `html` above `report`; this module
//! (the walk and [`audit`]) above all of them; `cli` on top.
//! - `cli` (feature `cli`): `satchel-pki audit` arguments and exit status.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

pub mod cert;
#[cfg(feature = "cli")]
pub mod cli;
pub mod connect;
pub mod html;
mod input;
mod ledger_view;
pub mod lints;
pub mod report;
mod timefmt;

pub use cert::{Cert, Kind};
pub use input::{AuditInput, PresentedChain};
pub use lints::{Finding, Severity, Status, ValidityPolicy};
pub use report::Report;

use crate::crl::LoadedCrl;
use lints::{Context, SetView};

/// Limits on what the audit reads.
pub mod limits {
    /// Largest certificate/CRL file read, in bytes.
    pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
    /// Most files examined beneath the PKI directory.
    pub const MAX_FILES: usize = 100_000;
    /// Deepest directory level walked beneath the PKI directory.
    pub const MAX_DEPTH: usize = 8;
    /// Most certificates taken from one file.
    pub const MAX_CERTS_PER_FILE: usize = 1_000;
    /// Most bytes read over all files; later files are reported, not read.
    pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;
}

/// File name extensions the directory walk opens. Everything else (keys, age
/// identities, the ledger) is left alone.
pub const CERT_FILE_EXTENSIONS: &[&str] = &["crt", "pem", "cer", "der", "crl"];

/// File name of the CA certificate in a PKI directory; preferred when several
/// self-signed CA certificates are found.
pub const CA_CERT_FILE: &str = "ca.crt";

/// Errors that stop an audit: unusable inputs only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The PKI directory cannot be listed.
    #[error("cannot read the PKI directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An extra file named on the command line cannot be read.
    #[error("cannot read {path}: {source}")]
    Extra {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a certificate or CRL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Dir(String),
    Extra(String),
    Presented(String),
}

impl Origin {
    fn label(&self) -> String {
        match self {
            Origin::Dir(s) | Origin::Extra(s) | Origin::Presented(s) => s.clone(),
        }
    }
}

/// What one file yielded.
#[derive(Default)]
struct FileContents {
    certs: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
    problems: Vec<(&'static lints::Lint, String)>,
}

fn looks_like_crl(b: &[u8]) -> bool {
    x509_parser::parse_x509_crl(b).is_ok()
}

fn looks_like_pem(b: &[u8]) -> bool {
    b.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Splits a file's bytes into certificate and CRL DERs. PEM: only
/// `CERTIFICATE` and `X509 CRL` sections are taken; DER: one object, a
/// certificate if it parses as one, else a CRL (when named `.crl` or when it
/// parses as one), else reported as an unparseable certificate.
fn split_file(bytes: &[u8], is_crl_name: bool) -> FileContents {
    let mut out = FileContents::default();
    if looks_like_pem(bytes) {
        for item in CertificateDer::pem_slice_iter(bytes) {
            match item {
                Ok(c) if out.certs.len() < limits::MAX_CERTS_PER_FILE => {
                    out.certs.push(c.as_ref().to_vec())
                }
                Ok(_) => {
                    out.problems.push((
                        &lints::W_FILE_NOT_READ,
                        format!(
                            "more than {} certificates; the rest were not read",
                            limits::MAX_CERTS_PER_FILE
                        ),
                    ));
                    break;
                }
                Err(e) => {
                    out.problems
                        .push((&lints::E_CERT_UNPARSEABLE, format!("PEM: {e}")));
                    break;
                }
            }
        }
        for c in CertificateRevocationListDer::pem_slice_iter(bytes).flatten() {
            if out.crls.len() < limits::MAX_CERTS_PER_FILE {
                out.crls.push(c.as_ref().to_vec());
            }
        }
    } else if bytes.is_empty() {
        out.problems
            .push((&lints::E_CERT_UNPARSEABLE, "empty file".into()));
    } else if Cert::from_der(bytes).is_ok() {
        // Content decides, not the name: a certificate is never hidden by
        // naming its file `.crl`.
        out.certs.push(bytes.to_vec());
    } else if is_crl_name || looks_like_crl(bytes) {
        out.crls.push(bytes.to_vec());
    } else {
        // Neither: parsed again as a certificate so its error is reported.
        out.certs.push(bytes.to_vec());
    }
    out
}

fn read_bounded(path: &Path) -> std::io::Result<Result<Vec<u8>, String>> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(limits::MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limits::MAX_FILE_BYTES {
        return Ok(Err(format!(
            "larger than {} bytes; not read",
            limits::MAX_FILE_BYTES
        )));
    }
    Ok(Ok(buf))
}

fn has_cert_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| CERT_FILE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_crl_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("crl"))
}

/// What the directory walk found.
#[derive(Default)]
struct Walk {
    /// Certificate-looking files, sorted.
    files: Vec<PathBuf>,
    /// Directories and files it could not or would not read.
    not_read: Vec<String>,
    /// Symbolic links, which it does not follow.
    symlinks: Vec<PathBuf>,
}

/// Lists certificate-looking files beneath `dir`, without following
/// symbolic links. Only the top directory must be readable; what else cannot
/// be read is recorded.
fn walk(dir: &Path) -> Result<Walk, AuditError> {
    let top = std::fs::read_dir(dir).map_err(|source| AuditError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut w = Walk::default();
    let mut stack: Vec<(std::fs::ReadDir, usize)> = vec![(top, 0)];
    while let Some((mut rd, depth)) = stack.pop() {
        let Some(entry) = rd.next() else { continue };
        stack.push((rd, depth));
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                w.not_read.push(format!("listing a directory: {e}"));
                continue;
            }
        };
        let path = entry.path();
        let ft = match entry.file_type() {
            Ok(ft) => ft,
            Err(e) => {
                w.not_read.push(format!("{}: {e}", relative(dir, &path)));
                continue;
            }
        };
        if ft.is_symlink() {
            w.symlinks.push(path);
        } else if ft.is_dir() {
            if depth + 1 > limits::MAX_DEPTH {
                w.not_read.push(format!(
                    "{}: deeper than {} levels; not read",
                    relative(dir, &path),
                    limits::MAX_DEPTH
                ));
                continue;
            }
            match std::fs::read_dir(&path) {
                Ok(sub) => stack.push((sub, depth + 1)),
                Err(e) => w.not_read.push(format!("{}: {e}", relative(dir, &path))),
            }
        } else if ft.is_file() && has_cert_extension(&path) {
            if w.files.len() >= limits::MAX_FILES {
                w.not_read.push(format!(
                    "more than {} certificate files; the rest were not read",
                    limits::MAX_FILES
                ));
                break;
            }
            w.files.push(path);
        }
    }
    w.files.sort();
    w.symlinks.sort();
    Ok(w)
}

fn relative(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// One distinct certificate and where it was seen.
struct Entry {
    cert: Cert,
    origins: Vec<Origin>,
}

/// Certificates and CRLs read from the inputs, before parsing.
#[derive(Default)]
struct Gathered {
    certs: Vec<(Vec<u8>, Origin)>,
    crls: Vec<(Vec<u8>, String)>,
}

fn problem(lint: &'static lints::Lint, label: &str, msg: String, findings: &mut Vec<Finding>) {
    findings.push(Finding {
        lint,
        certificate: None,
        message: format!("{label}: {msg}"),
    })
}

/// Reads the directory, the extra files and the presented chain. Problems
/// with what is read become findings; only an unlistable directory or an
/// unreadable extra file is an error.
fn gather(input: &AuditInput, findings: &mut Vec<Finding>) -> Result<Gathered, AuditError> {
    let walked = walk(&input.dir)?;
    for p in walked.not_read {
        findings.push(Finding {
            lint: &lints::W_FILE_NOT_READ,
            certificate: None,
            message: p,
        });
    }
    for p in &walked.symlinks {
        findings.push(Finding {
            lint: &lints::N_SYMLINK_NOT_FOLLOWED,
            certificate: None,
            message: format!(
                "{} is a symbolic link; not followed",
                relative(&input.dir, p)
            ),
        });
    }
    let mut g = Gathered::default();
    let mut total: u64 = 0;
    let dir_files = walked.files.iter().map(|p| (p, false));
    let extra_files = input.extra.iter().map(|p| (p, true));
    for (path, is_extra) in dir_files.chain(extra_files) {
        let label = if is_extra {
            path.display().to_string()
        } else {
            relative(&input.dir, path)
        };
        if total > limits::MAX_TOTAL_BYTES {
            problem(
                &lints::W_FILE_NOT_READ,
                &label,
                format!(
                    "not read: more than {} bytes were read already",
                    limits::MAX_TOTAL_BYTES
                ),
                findings,
            );
            continue;
        }
        let bytes = match read_bounded(path) {
            Ok(Ok(b)) => b,
            Ok(Err(msg)) => {
                problem(&lints::W_FILE_NOT_READ, &label, msg, findings);
                continue;
            }
            Err(source) if is_extra => {
                return Err(AuditError::Extra {
                    path: path.clone(),
                    source,
                })
            }
            Err(e) => {
                problem(&lints::W_FILE_NOT_READ, &label, e.to_string(), findings);
                continue;
            }
        };
        total += bytes.len() as u64;
        let contents = split_file(&bytes, is_crl_name(path));
        for (lint, p) in contents.problems {
            problem(lint, &label, p, findings);
        }
        for (i, der) in contents.certs.into_iter().enumerate() {
            let l = if i == 0 {
                label.clone()
            } else {
                format!("{label}#{i}")
            };
            let origin = if is_extra {
                Origin::Extra(l)
            } else {
                Origin::Dir(l)
            };
            g.certs.push((der, origin));
        }
        if !is_extra {
            for der in contents.crls {
                g.crls.push((der, label.clone()));
            }
        }
    }
    if let Some(p) = &input.presented {
        for (i, der) in p.certificates.iter().enumerate() {
            g.certs.push((
                der.clone(),
                Origin::Presented(format!("tls://{}#{i}", p.address)),
            ));
        }
    }
    Ok(g)
}

/// Runs the audit. Fails only on unusable inputs (see the module doc).
pub fn audit(input: &AuditInput) -> Result<Report, AuditError> {
    let ctx = Context {
        now: input.now,
        policy: input.policy,
    };
    let mut findings: Vec<Finding> = Vec::new();
    let Gathered {
        certs: raw_certs,
        crls: raw_crls,
    } = gather(input, &mut findings)?;

    // Parse and deduplicate by fingerprint.
    let mut entries: Vec<Entry> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (der, origin) in raw_certs {
        match Cert::from_der(&der) {
            Ok(cert) => match index.get(&cert.sha256) {
                Some(&i) => entries[i].origins.push(origin),
                None => {
                    index.insert(cert.sha256.clone(), entries.len());
                    entries.push(Entry {
                        cert,
                        origins: vec![origin],
                    });
                }
            },
            Err(e) => {
                let label = origin.label();
                problem(
                    &lints::E_CERT_UNPARSEABLE,
                    &label,
                    e.to_string(),
                    &mut findings,
                );
            }
        }
    }

    // The audited CA: a self-issued CA certificate found in the directory,
    // preferring the canonical file name.
    let ca = {
        let is_ca_in_dir = |e: &Entry| {
            e.cert.kind() == Kind::Ca
                && e.cert.self_issued()
                && e.origins.iter().any(|o| matches!(o, Origin::Dir(_)))
        };
        let by_name = entries.iter().position(|e| {
            is_ca_in_dir(e)
                && e.origins
                    .iter()
                    .any(|o| matches!(o, Origin::Dir(l) if l == CA_CERT_FILE))
        });
        by_name.or_else(|| entries.iter().position(is_ca_in_dir))
    };
    if ca.is_none() {
        findings.push(Finding {
            lint: &lints::E_CA_MISSING,
            certificate: None,
            message: format!(
                "no self-signed CA certificate under {}",
                input.dir.display()
            ),
        });
    }

    // The CRL: the highest-numbered one that verifies with the CA.
    let crl_status =
        ca.and_then(|ca_i| choose_crl(&raw_crls, &entries[ca_i].cert, input.now, &mut findings));

    // The ledger.
    let ledger = ledger_view::read(&input.dir, ca.map(|i| entries[i].cert.der.as_slice()));

    let (certs, origins): (Vec<Cert>, Vec<Vec<Origin>>) =
        entries.into_iter().map(|e| (e.cert, e.origins)).unzip();
    let revoked: Vec<bool> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let issued =
                ca.is_some_and(|ca_i| ca_i != i && c.issuer_raw == certs[ca_i].subject_raw);
            issued
                && (crl_status
                    .as_ref()
                    .is_some_and(|(l, _)| l.is_revoked(&c.serial_hex))
                    || ledger.is_revoked(c))
        })
        .collect();
    let in_ledger: Option<Vec<bool>> = ledger
        .usable()
        .then(|| certs.iter().map(|c| ledger.contains(c)).collect());
    let serial_in_ledger: Vec<bool> = certs.iter().map(|c| ledger.knows_serial(c)).collect();
    let presented: Vec<bool> = origins
        .iter()
        .map(|o| o.iter().any(|o| matches!(o, Origin::Presented(_))))
        .collect();
    // The end entity a live server presented, and the host it was reached at.
    let presented_host = input
        .presented
        .as_ref()
        .and_then(|p| connect::split_address(&p.address).ok())
        .map(|(host, _)| host);
    let presented_leaf = input
        .presented
        .as_ref()
        .and_then(|p| p.certificates.first())
        .and_then(|der| index.get(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der))))
        .copied()
        .zip(presented_host.as_deref());
    let view = SetView {
        certs: &certs,
        ca,
        revoked: &revoked,
        in_ledger: in_ledger.as_deref(),
        serial_in_ledger: &serial_in_ledger,
        presented: &presented,
        presented_leaf,
        now: input.now,
        expiring_within: input.expiring_within,
    };

    for c in &certs {
        findings.extend(lints::lint_cert(c, &ctx));
    }
    findings.extend(lints::lint_set(&view));
    if ca.is_some() {
        findings.extend(ledger.findings());
        if let (Some((l, _)), true) = (&crl_status, ledger.usable()) {
            for serial in ledger.revoked_serials() {
                if !l.is_revoked(serial) {
                    findings.push(Finding {
                        lint: &lints::W_CRL_BEHIND_LEDGER,
                        certificate: None,
                        message: format!(
                            "serial 0x{serial} is revoked in the ledger but not in CRL number {}",
                            l.number.map(|n| n.to_string()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
    }

    let inventory = certs
        .iter()
        .zip(&origins)
        .enumerate()
        .map(|(i, (c, o))| {
            report::CertificateEntry::new(
                c,
                o.iter().map(Origin::label).collect(),
                view.status(i),
                ca == Some(i),
                in_ledger.as_ref().map(|l| l[i]),
                input.now,
            )
        })
        .collect();
    Ok(Report::new(
        input,
        inventory,
        ledger.status(),
        report::CrlReport::new(crl_status.as_ref(), input.now),
        findings,
    ))
}

/// Picks the CRL to report: among the CRLs naming the CA as issuer, the
/// highest-numbered whose signature verifies. Records a finding for every
/// CRL that names the CA but does not verify, and for a missing or stale CRL.
fn choose_crl(
    raw: &[(Vec<u8>, String)],
    ca: &Cert,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) -> Option<(LoadedCrl, String)> {
    let ca_der = CertificateDer::from(ca.der.as_slice());
    let mut best: Option<(LoadedCrl, String)> = None;
    let mut seen = std::collections::HashSet::new();
    for (der, label) in raw {
        let crl = match LoadedCrl::parse(der) {
            Ok(c) => c,
            Err(e) => {
                findings.push(Finding {
                    lint: &lints::E_CERT_UNPARSEABLE,
                    certificate: None,
                    message: format!("{label}: {e}"),
                });
                continue;
            }
        };
        if !seen.insert(crl.sha256_hex.clone()) {
            continue;
        }
        if let Err(e) = crl.verify_issued_by(&ca_der) {
            findings.push(Finding {
                lint: &lints::E_CRL_SIGNATURE_INVALID,
                certificate: None,
                message: format!("{label}: {e}"),
            });
            continue;
        }
        let better = match &best {
            None => true,
            Some((b, _)) => crl.number.unwrap_or(0) > b.number.unwrap_or(0),
        };
        if better {
            best = Some((crl, label.clone()));
        }
    }
    match &best {
        None => findings.push(Finding {
            lint: &lints::W_CRL_MISSING,
            certificate: None,
            message: "no CRL signed by the CA was found".into(),
        }),
        Some((c, label)) => {
            let stale = c.next_update.is_none_or(|n| now > n);
            if stale {
                findings.push(Finding {
                    lint: &lints::W_CRL_STALE,
                    certificate: None,
                    message: match c.next_update {
                        Some(n) => format!("{label}: nextUpdate {} has passed", report::rfc3339(n)),
                        None => format!("{label}: no nextUpdate"),
                    },
                });
            }
        }
    }
    best
}
