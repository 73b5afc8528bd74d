//! The issuance ledger: an append-only, hash-chained, CA-signed record of
//! every certificate issued, every revocation and every CRL.
//!
//! # File and line format
//!
//! `DIR/ledger.jsonl`, UTF-8, one JSON object per line, `\n`-terminated.
//! Each line is exactly the compact serde_json serialization of [`Entry`]
//! (fields in this order), with a signature appended as the last field:
//!
//! ```text
//! {"seq":0,"time":"2026-11-24T23:00:00Z","prev":"000…000","event":"init",…,"sig":"3045…"}
//! ```
//!
//! - `seq`: 0 for the first line, then +1 per line.
//! - `time`: RFC 3339 UTC, whole seconds.
//! - `prev`: lowercase hex sha256 of the previous line's bytes (without its
//!   `\n`); 64 zeros on the first line.
//! - `event` and its fields: see [`Event`] (`init`, `issue`, `revoke`, `crl`,
//!   `host_identity`, `site_identity`).
//! - `sig`: lowercase hex of the CA key's signature (ECDSA, DER) over the
//!   line's bytes with `,"sig":"…"` removed, i.e. the text ending in `}`
//!   that [`Entry`] serializes to. It verifies with the public key of
//!   `DIR/ca.crt` and that certificate's signature algorithm.
//!
//! # What verification catches
//!
//! An edited line (its hash no longer matches the next `prev`, its
//! signature no longer verifies), a deleted or reordered line (`seq` and
//! `prev` break), a forged line appended by someone without the CA key (bad
//! signature), a line not in canonical form. Deleting the *last* lines is
//! caught only against outside knowledge: a certificate file still in `DIR`
//! without its `issue` line, or a head (`seq`, hash) an admin recorded
//! elsewhere ([`Ledger::head`], `satchel-pki ledger verify --expect-head`).
//!
//! It does not lock: [`Ledger::append`]'s callers in `ca` hold the CA
//! directory's lock (`DIR/.lock`) from their check to their append.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::der_parser::asn1_rs::BitString;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The ledger's file name inside the CA directory ([`crate::layout`] names
/// every file; the ledger uses the layout, never the other way round).
pub const LEDGER_FILE: &str = crate::layout::LEDGER;
/// Largest ledger line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Largest ledger file accepted, in bytes.
pub const MAX_LEDGER_BYTES: u64 = 256 * 1024 * 1024;
/// Deepest directory level scanned for certificate files by [`verify_dir`].
pub const MAX_SCAN_DEPTH: usize = 8;
/// Largest file [`verify_dir`] reads when looking for certificates.
pub const MAX_SCAN_FILE_BYTES: u64 = 1024 * 1024;
/// File extensions [`verify_dir`] inspects for certificates.
pub const CERT_EXTENSIONS: [&str; 4] = ["crt", "pem", "der", "cer"];
/// `prev` of the first line.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const SIG_MARKER: &str = ",\"sig\":\"";

/// Errors that stop the ledger from being read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The file could not be read or written.
    #[error("ledger {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Over [`MAX_LEDGER_BYTES`].
    #[error("ledger {0} is larger than {MAX_LEDGER_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The CA certificate given for verification is unusable.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// The ledger's chain is broken: appending would extend a forgery.
    #[error("ledger chain is broken, refusing to append: {0}")]
    Broken(String),
    /// Signing a new line failed.
    #[error("cannot sign ledger line: {0}")]
    Sign(String),
}

/// What kind of certificate an `issue` or `init` line records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    /// The CA itself.
    Ca,
    /// A TLS server.
    Server,
    /// One node (host scope).
    Host,
    /// Every node of a site.
    Site,
    /// An administrator.
    Admin,
}

impl CertKind {
    /// The kind's name as written in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Ca => "ca",
            CertKind::Server => "server",
            CertKind::Host => "host",
            CertKind::Site => "site",
            CertKind::Admin => "admin",
        }
    }
}

impl std::fmt::Display for CertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded event (the `event` field names the variant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The CA was created (always line 0).
    Init {
        /// Subject DN text.
        subject: String,
        /// Serial, canonical hex.
        serial: String,
        /// sha256 of the CA certificate's DER, hex.
        sha256: String,
        /// Key algorithm (`ecdsa-p256`, `ecdsa-p384`).
        key_algorithm: String,
        /// notAfter.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// The certificate file, relative to DIR.
        file: String,
    },
    /// A certificate was issued.
    Issue {
        /// Which profile.
        kind: CertKind,
        /// Serial, canonical hex.
        serial: String,
        /// Subject DN text.
        subject: String,
        /// SAN entries as text (`dns:…`, `ip:…`, `uri:…`).
        sans: Vec<String>,
        /// notBefore.
        #[serde(with = "time::serde::rfc3339")]
        not_before: OffsetDateTime,
        /// notAfter.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// sha256 of the certificate's DER, hex.
        sha256: String,
        /// The copy kept in DIR, relative to DIR.
        file: String,
    },
    /// A certificate was revoked.
    Revoke {
        /// Serial, canonical hex.
        serial: String,
        /// RFC 5280 reason name (`keyCompromise`, …).
        reason: String,
    },
    /// A CRL was signed.
    Crl {
        /// cRLNumber.
        number: u64,
        /// thisUpdate.
        #[serde(with = "time::serde::rfc3339")]
        this_update: OffsetDateTime,
        /// nextUpdate.
        #[serde(with = "time::serde::rfc3339")]
        next_update: OffsetDateTime,
        /// Serials listed.
        revoked: Vec<String>,
        /// sha256 of the CRL's DER, hex.
        sha256: String,
    },
    /// A host's age identity was created by `enroll`.
    HostIdentity {
        /// The host's MAC.
        mac: String,
        /// Its age recipient (`age1…`).
        recipient: String,
        /// Serial of the client certificate issued with it.
        client_serial: String,
    },
    /// A site's age identity was created (once per site).
    SiteIdentity {
        /// The site.
        site: String,
        /// Its age recipient (`age1…`).
        recipient: String,
    },
}

/// One ledger line without its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position, from 0.
    pub seq: u64,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// sha256 hex of the previous line.
    pub prev: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// One line as read from the file.
#[derive(Clone, Debug)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// sha256 hex of the line's bytes (what the next `prev` must be).
    pub hash: String,
    /// The parsed entry, or why the line is not one.
    pub entry: Result<Entry, String>,
    /// The signed text and the signature bytes, when the line had them.
    signed: Option<(String, Vec<u8>)>,
}

/// A problem found by [`Ledger::verify`] or [`verify_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number, when the problem is on a line.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The last line: what an admin records outside DIR to catch truncation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its `seq`.
    pub seq: u64,
    /// sha256 hex of its bytes.
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// A ledger read from a file. Reading never fails on a bad line: bad lines
/// are kept as errors so [`Ledger::verify`] can report them.
#[derive(Clone, Debug)]
pub struct Ledger {
    path: PathBuf,
    lines: Vec<Line>,
}

fn parse_line(number: usize, bytes: &[u8]) -> Line {
    let hash = hex::encode(Sha256::digest(bytes));
    let mut line = Line {
        number,
        hash,
        entry: Err(String::new()),
        signed: None,
    };
    let Ok(raw) = std::str::from_utf8(bytes) else {
        line.entry = Err("line is not UTF-8".into());
        return line;
    };
    if raw.len() > MAX_LINE_BYTES {
        line.entry = Err(format!("line is longer than {MAX_LINE_BYTES} bytes"));
        return line;
    }
    let Some(at) = raw.rfind(SIG_MARKER) else {
        line.entry = Err("no \"sig\" field at the end of the line".into());
        return line;
    };
    let tail = &raw[at + SIG_MARKER.len()..];
    let Some(sig_hex) = tail.strip_suffix("\"}") else {
        line.entry = Err("\"sig\" is not the last field".into());
        return line;
    };
    let sig = match hex::decode(sig_hex) {
        Ok(s) if !s.is_empty() && sig_hex.bytes().all(|b| !b.is_ascii_uppercase()) => s,
        _ => {
            line.entry = Err("\"sig\" is not lowercase hex".into());
            return line;
        }
    };
    let body = format!("{}}}", &raw[..at]);
    line.entry = match serde_json::from_str::<Entry>(&body) {
        Err(e) => Err(format!("not a ledger entry: {e}")),
        Ok(entry) => match serde_json::to_string(&entry) {
            Ok(again) if again == body => Ok(entry),
            _ => Err("line is not in canonical form (re-serializing it changes it)".into()),
        },
    };
    line.signed = Some((body, sig));
    line
}

/// A parsed CA certificate used to check line signatures.
struct CaKey<'a> {
    cert: X509Certificate<'a>,
}

impl<'a> CaKey<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, LedgerError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| LedgerError::Ca(e.to_string()))?;
        Ok(CaKey { cert })
    }

    fn verifies(&self, body: &str, sig: &[u8]) -> bool {
        let bits = BitString {
            unused_bits: 0,
            data: std::borrow::Cow::Borrowed(sig),
        };
        x509_parser::verify::verify_signature(
            self.cert.public_key(),
            &self.cert.signature_algorithm,
            &bits,
            body.as_bytes(),
        )
        .is_ok()
    }
}

impl Ledger {
    /// Reads `DIR/ledger.jsonl`.
    pub fn open(dir: &Path) -> Result<Ledger, LedgerError> {
        Self::read(&dir.join(LEDGER_FILE))
    }

    /// Reads a ledger file (bounded by [`MAX_LEDGER_BYTES`]).
    pub fn read(path: &Path) -> Result<Ledger, LedgerError> {
        use satchel_names::file::{read_bounded, ReadError};
        match read_bounded(path, MAX_LEDGER_BYTES) {
            Ok(bytes) => Ok(Self::parse(path, &bytes)),
            Err(ReadError::Io { path, source }) => Err(LedgerError::Io { path, source }),
            Err(_) => Err(LedgerError::TooLarge(path.to_path_buf())),
        }
    }

    /// Parses ledger bytes; `path` is only for messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Ledger {
        let mut lines = Vec::new();
        let mut rest = bytes;
        let mut number = 0;
        while !rest.is_empty() {
            number += 1;
            let (raw, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                // A last line without '\n' is kept but flagged.
                None => (rest, &rest[rest.len()..]),
            };
            lines.push(parse_line(number, raw));
            rest = next;
        }
        if bytes.last().is_some_and(|b| *b != b'\n') {
            if let Some(last) = lines.last_mut() {
                last.entry = Err("last line is not terminated by a newline".into());
            }
        }
        Ledger {
            path: path.to_path_buf(),
            lines,
        }
    }

    /// The file this ledger was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line, including the ones that did not parse.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The entries of the lines that parsed, in file order. Use
    /// [`Ledger::verify`] before trusting them.
    pub fn entries(&self) -> Vec<&Entry> {
        self.lines
            .iter()
            .filter_map(|l| l.entry.as_ref().ok())
            .collect()
    }

    /// The last line's seq and hash, if the last line parsed.
    pub fn head(&self) -> Option<Head> {
        let last = self.lines.last()?;
        let e = last.entry.as_ref().ok()?;
        Some(Head {
            seq: e.seq,
            hash: last.hash.clone(),
        })
    }

    /// Checks every line: parses, is canonical, is signed by the CA whose
    /// certificate DER is given, `seq` counts from 0, `prev` chains, line 0
    /// is the `init` of this CA and no other line is an `init`. Returns
    /// every problem found (empty when the chain is intact).
    pub fn verify(&self, ca_der: &[u8]) -> Result<Vec<Problem>, LedgerError> {
        self.check(ca_der, true)
    }

    /// Like [`Ledger::verify`], but checks only the last line's signature.
    /// That is enough to authenticate the whole file, because each signed
    /// line commits to the previous line's hash and so to all history; it
    /// keeps appending cheap on a long ledger. [`Ledger::verify`] checks
    /// every signature to say *which* line is forged.
    pub fn verify_head(&self, ca_der: &[u8]) -> Result<Vec<Problem>, LedgerError> {
        self.check(ca_der, false)
    }

    fn check(&self, ca_der: &[u8], all_signatures: bool) -> Result<Vec<Problem>, LedgerError> {
        let ca = CaKey::parse(ca_der)?;
        let ca_sha = hex::encode(Sha256::digest(ca_der));
        let mut problems = Vec::new();
        let mut prev_hash = GENESIS_PREV.to_string();
        if self.lines.is_empty() {
            problems.push(Problem {
                line: None,
                message: "ledger is empty: the CA's init line is missing".into(),
            });
        }
        let mut p = |line: usize, message: String| {
            problems.push(Problem {
                line: Some(line),
                message,
            })
        };
        for (i, line) in self.lines.iter().enumerate() {
            let expected_seq = i as u64;
            match &line.entry {
                Err(e) => p(line.number, e.clone()),
                Ok(entry) => {
                    if entry.seq != expected_seq {
                        p(
                            line.number,
                            format!(
                                "seq is {} where {expected_seq} was expected (line deleted, inserted or moved)",
                                entry.seq
                            ),
                        );
                    }
                    if entry.prev != prev_hash {
                        p(
                            line.number,
                            "prev does not match the previous line's hash (a line before it was edited, deleted or moved)".into(),
                        );
                    }
                    match (&entry.event, i) {
                        (Event::Init { sha256, .. }, 0) if *sha256 != ca_sha => p(
                            line.number,
                            "init line records a different CA certificate than ca.crt".into(),
                        ),
                        (Event::Init { .. }, 0) => {}
                        (_, 0) => p(line.number, "first line is not the CA's init".into()),
                        (Event::Init { .. }, _) => p(line.number, "a second init line".into()),
                        _ => {}
                    }
                }
            }
            let last = i + 1 == self.lines.len();
            if let Some((body, sig)) = line.signed.as_ref().filter(|_| all_signatures || last) {
                if !ca.verifies(body, sig) {
                    p(
                        line.number,
                        "signature does not verify with the CA key".into(),
                    );
                }
            }
            prev_hash = line.hash.clone();
        }
        Ok(problems)
    }

    /// Every `init` and `issue` line by certificate sha256.
    pub fn certificates(&self) -> BTreeMap<String, &Entry> {
        let mut m = BTreeMap::new();
        for e in self.entries() {
            match &e.event {
                Event::Init { sha256, .. } | Event::Issue { sha256, .. } => {
                    m.insert(sha256.clone(), e);
                }
                _ => {}
            }
        }
        m
    }

    /// Every issued serial (and the CA's), with its kind.
    pub fn issued_serials(&self) -> BTreeMap<String, CertKind> {
        let mut m = BTreeMap::new();
        for e in self.entries() {
            match &e.event {
                Event::Init { serial, .. } => {
                    m.insert(serial.clone(), CertKind::Ca);
                }
                Event::Issue { serial, kind, .. } => {
                    m.insert(serial.clone(), *kind);
                }
                _ => {}
            }
        }
        m
    }

    /// Revoked serials with their reason and the time of the revoke line.
    pub fn revoked(&self) -> BTreeMap<String, (String, OffsetDateTime)> {
        let mut m = BTreeMap::new();
        for e in self.entries() {
            if let Event::Revoke { serial, reason } = &e.event {
                m.insert(serial.clone(), (reason.clone(), e.time));
            }
        }
        m
    }

    /// The highest CRL number recorded (0 when no CRL was signed yet).
    pub fn last_crl_number(&self) -> u64 {
        self.entries()
            .iter()
            .filter_map(|e| match e.event {
                Event::Crl { number, .. } => Some(number),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The recipient of a site's age identity, if one was recorded.
    pub fn site_recipient(&self, site: &str) -> Option<String> {
        self.entries().iter().find_map(|e| match &e.event {
            Event::SiteIdentity { site: s, recipient } if s == site => Some(recipient.clone()),
            _ => None,
        })
    }

    /// Appends a signed line for `event` to the ledger file at `path`
    /// (created if missing). Refuses when the existing chain does not
    /// verify against `ca_der`, so a forgery is never extended.
    #[cfg(feature = "issuing")]
    pub fn append(
        path: &Path,
        ca_der: &[u8],
        key: &impl rcgen::SigningKey,
        event: Event,
        now: OffsetDateTime,
    ) -> Result<Entry, LedgerError> {
        use std::io::Write;
        let existing = if path.exists() {
            let l = Self::read(path)?;
            let problems = l.verify_head(ca_der)?;
            if let Some(first) = problems.first() {
                return Err(LedgerError::Broken(format!(
                    "{first} (run `satchel-pki ledger verify`)"
                )));
            }
            l
        } else {
            Ledger {
                path: path.to_path_buf(),
                lines: Vec::new(),
            }
        };
        let (seq, prev) = match existing.lines.last() {
            Some(last) => (existing.lines.len() as u64, last.hash.clone()),
            None => (0, GENESIS_PREV.to_string()),
        };
        let entry = Entry {
            seq,
            time: now.replace_nanosecond(0).unwrap_or(now),
            prev,
            event,
        };
        let body = serde_json::to_string(&entry).map_err(|e| LedgerError::Sign(e.to_string()))?;
        let sig = key
            .sign(body.as_bytes())
            .map_err(|e| LedgerError::Sign(e.to_string()))?;
        let open = body.strip_suffix('}').unwrap_or(&body);
        let line = format!("{open}{SIG_MARKER}{}\"}}\n", hex::encode(sig));
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(entry)
    }
}

/// What [`verify_dir`] found.
#[derive(Clone, Debug)]
pub struct DirReport {
    /// Chain problems and certificate files unknown to the ledger.
    pub problems: Vec<Problem>,
    /// Certificate files found in DIR whose sha256 no `init`/`issue` line records.
    pub unledgered: Vec<PathBuf>,
    /// `issue` lines whose copy in DIR is missing.
    pub missing_files: Vec<String>,
    /// Number of lines read.
    pub lines: usize,
    /// The last line's seq and hash.
    pub head: Option<Head>,
}

impl DirReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads every certificate in a file (PEM blocks, or one DER certificate).
/// Files that hold no certificate yield an empty list.
pub fn certificates_in_file(path: &Path) -> Vec<CertificateDer<'static>> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Vec::new();
    };
    if !meta.is_file() || meta.len() > MAX_SCAN_FILE_BYTES {
        return Vec::new();
    }
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let pem: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if !pem.is_empty() {
        return pem;
    }
    match X509Certificate::from_der(&bytes) {
        Ok((&[], _)) => vec![CertificateDer::from(bytes)],
        _ => Vec::new(),
    }
}

fn scan(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_SCAN_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            scan(&p, depth + 1, out);
        } else if ft.is_file()
            && p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| CERT_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
}

/// Verifies the ledger of a CA directory against `DIR/ca.crt`, and checks
/// that every certificate file under DIR (extensions [`CERT_EXTENSIONS`],
/// symlinks not followed) is recorded by an `init` or `issue` line, and that
/// `DIR/crl.pem`, when present, is a CRL recorded by a `crl` line.
pub fn verify_dir(dir: &Path) -> Result<DirReport, LedgerError> {
    let ca_path = dir.join(crate::layout::CA_CERT);
    let ca_pem = std::fs::read(&ca_path).map_err(|source| LedgerError::Io {
        path: ca_path.clone(),
        source,
    })?;
    let ca_der = CertificateDer::from_pem_slice(&ca_pem)
        .map_err(|e| LedgerError::Ca(format!("{}: {e}", ca_path.display())))?;
    let ledger = Ledger::open(dir)?;
    let mut problems = ledger.verify(ca_der.as_ref())?;
    let known = ledger.certificates();
    let mut files = Vec::new();
    scan(dir, 0, &mut files);
    let mut unledgered = Vec::new();
    let mut seen = BTreeSet::new();
    for f in files {
        for c in certificates_in_file(&f) {
            let sha = hex::encode(Sha256::digest(c.as_ref()));
            seen.insert(sha.clone());
            if !known.contains_key(&sha) {
                problems.push(Problem {
                    line: None,
                    message: format!(
                        "{} holds a certificate (sha256 {sha}) that no ledger line records",
                        f.display()
                    ),
                });
                unledgered.push(f.clone());
            }
        }
    }
    // The CRL kept in DIR must be one the CA recorded signing.
    let crl_path = dir.join(crate::layout::CRL_PEM);
    if crl_path.exists() {
        let recorded: BTreeSet<&str> = ledger
            .entries()
            .into_iter()
            .filter_map(|e| match &e.event {
                Event::Crl { sha256, .. } => Some(sha256.as_str()),
                _ => None,
            })
            .collect();
        match crate::crl::load_crl(&crl_path) {
            Ok(crl) if recorded.contains(crl.sha256_hex.as_str()) => {}
            Ok(crl) => problems.push(Problem {
                line: None,
                message: format!(
                    "{} (sha256 {}) is not a CRL any ledger line records",
                    crl_path.display(),
                    crl.sha256_hex
                ),
            }),
            Err(e) => problems.push(Problem {
                line: None,
                message: format!("{}: {e}", crl_path.display()),
            }),
        }
    }
    let mut missing_files = Vec::new();
    for e in ledger.entries() {
        if let Event::Issue { file, sha256, .. } = &e.event {
            if !seen.contains(sha256) {
                missing_files.push(file.clone());
            }
        }
    }
    Ok(DirReport {
        problems,
        unledgered,
        missing_files,
        lines: ledger.lines.len(),
        head: ledger.head(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_keep_every_line(
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)
        ) {
            let l = Ledger::parse(Path::new("x"), &b);
            let newlines = b.iter().filter(|c| **c == b'\n').count();
            let want = newlines + usize::from(b.last().is_some_and(|c| *c != b'\n'));
            proptest::prop_assert_eq!(l.lines().len(), want);
            let _ = l.head();
            let _ = l.entries();
        }

        #[test]
        fn json_like_lines_never_panic(s in "\\{\"seq\":[0-9]{1,3},[ -~]{0,200},\"sig\":\"[0-9a-f]{0,20}\"\\}") {
            let l = Ledger::parse(Path::new("x"), format!("{s}\n").as_bytes());
            proptest::prop_assert_eq!(l.lines().len(), 1);
        }
    }

    #[test]
    fn entry_serialization_is_canonical() {
        let e = Entry {
            seq: 3,
            time: time::macros::datetime!(2026-11-24 23:00:00 UTC),
            prev: GENESIS_PREV.into(),
            event: Event::Revoke {
                serial: "0a".into(),
                reason: "superseded".into(),
            },
        };
        let body = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(
            body,
            format!("{{\"seq\":3,\"time\":\"2026-11-24T23:00:00Z\",\"prev\":\"{GENESIS_PREV}\",\"event\":\"revoke\",\"serial\":\"0a\",\"reason\":\"superseded\"}}")
        );
        let line = format!("{},\"sig\":\"00\"}}", &body[..body.len() - 1]);
        let parsed = parse_line(1, line.as_bytes());
        assert_eq!(parsed.entry.ok(), Some(e));
    }
}
