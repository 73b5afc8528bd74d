//! `satchel-pki`: the CA command line.
//!
//! It parses arguments into typed values, unlocks the CA key, and calls the
//! library ([`satchel_pki::ca`], [`satchel_pki::ledger`],
//! [`satchel_pki::enroll`], [`satchel_pki::audit`]); it holds no
//! certificate logic of its own. `audit` and `ledger verify` never need the
//! CA key.
//!
//! The CA directory is `--dir`, else `$SATCHEL_PKI_DIR`, else `./pki`. The
//! CA key passphrase comes from `$SATCHEL_PKI_PASSPHRASE`, else a prompt
//! when stdin is a terminal; with neither, commands that sign fail.
//!
//! Exit status: 0 success; 1 failure (message on stderr); 2 usage error;
//! 3 `ledger verify` found problems. `audit` has its own (see
//! `satchel_pki::audit::cli`: 1 findings at or above `--fail-on`, 2 input error).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use satchel_names::{Mac, SiteName, Target};
use satchel_pki::audit::cli::{run_cli as run_audit, AuditArgs};
use satchel_pki::ca::{replace_public, Ca, InitOptions, KeySecret, Reason};
use satchel_pki::enroll::EnrollOptions;
use satchel_pki::layout;
use satchel_pki::ledger;
use satchel_pki::profile::Curve;
use satchel_pki::scope::AdminName;

/// Environment variable holding the CA key passphrase.
const PASSPHRASE_ENV: &str = "SATCHEL_PKI_PASSPHRASE";
/// Exit status when `ledger verify` finds problems.
const EXIT_LEDGER_PROBLEMS: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "satchel-pki", version, about = "satchel's private CA")]
struct Cli {
    /// The CA directory.
    #[arg(long, global = true, env = layout::PKI_DIR_ENV, default_value = layout::DEFAULT_PKI_DIR)]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the CA (ECDSA P-256 by default).
    Init {
        /// The CA's name (subject CN).
        #[arg(long)]
        name: String,
        /// Use ECDSA P-384 for the CA key.
        #[arg(long)]
        p384: bool,
        /// Validity in days (default 3650).
        #[arg(long, default_value_t = satchel_pki::profile::CA_VALIDITY_DAYS)]
        validity_days: u32,
        /// Store the CA key unencrypted. For tests only.
        #[arg(long)]
        insecure_plaintext_key: bool,
    },
    /// Issue a certificate.
    #[command(subcommand)]
    Issue(IssueCmd),
    /// Record the revocation of a certificate (published by the next `crl`).
    Revoke {
        /// The serial (hex; colons and 0x accepted).
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Sign a CRL of every revocation.
    Crl {
        /// Output file: PEM, plus FILE.der (or only DER with --der).
        #[arg(long)]
        out: PathBuf,
        /// Write only DER to FILE.
        #[arg(long)]
        der: bool,
        /// Days until nextUpdate (default 7).
        #[arg(long)]
        next_update_days: Option<u32>,
    },
    /// The issuance ledger.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Write the credential set of a node's boot image.
    Enroll(EnrollArgs),
    /// Audit every certificate, the ledger and the CRL (for security reviewers).
    Audit(AuditArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Output prefix: writes PREFIX.crt and PREFIX.key (0600).
    #[arg(long)]
    out: PathBuf,
    /// Validity in days (defaults: server 90, host/site 365, admin 30).
    #[arg(long)]
    validity_days: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum IssueCmd {
    /// A TLS server certificate (serverAuth).
    Server {
        /// DNS names (`--dns a b` or `--dns a --dns b`).
        #[arg(long, num_args = 1..)]
        dns: Vec<String>,
        /// IP addresses.
        #[arg(long, num_args = 1..)]
        ip: Vec<IpAddr>,
        #[command(flatten)]
        common: Common,
    },
    /// A node certificate for one MAC (clientAuth).
    Host {
        /// The node's MAC (any common spelling).
        #[arg(long)]
        mac: Mac,
        /// The site the node belongs to.
        #[arg(long)]
        site: Option<SiteName>,
        #[command(flatten)]
        common: Common,
    },
    /// A certificate for every node of a site (clientAuth).
    Site {
        /// The site.
        #[arg(long)]
        site: SiteName,
        #[command(flatten)]
        common: Common,
    },
    /// An administrator certificate (clientAuth).
    Admin {
        /// The admin's name.
        #[arg(long, value_parser = parse_admin)]
        name: AdminName,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCmd {
    /// Check the chain, the signatures, and that every certificate file in DIR is recorded.
    Verify {
        /// A head recorded earlier (`SEQ:SHA256`, from `ledger head`): it must still be in the chain.
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Print the last line's `SEQ:SHA256`, to record outside DIR.
    Head,
}

#[derive(Args, Debug)]
struct EnrollArgs {
    /// The node's MAC (a per-host image).
    #[arg(long, required_unless_present = "site")]
    mac: Option<Mac>,
    /// The site (with --mac: the host's site; alone: a site-wide image).
    #[arg(long)]
    site: Option<SiteName>,
    /// A trusted signer's ed25519 public key (PEM SPKI); repeatable.
    #[arg(long = "signer", required = true, num_args = 1..)]
    signers: Vec<PathBuf>,
    /// An admin's age recipient (age1…) for captured uploads; repeatable.
    #[arg(long = "admin-recipient", num_args = 1..)]
    admin_recipients: Vec<String>,
    /// DNS domain of the SRV records.
    #[arg(long)]
    domain: String,
    /// Fallback server HOST:PORT.
    #[arg(long)]
    server: Option<String>,
    /// Serial floor `TARGET=N` (TARGET is host/<mac> or site/<name>); repeatable.
    #[arg(long = "floor", value_parser = parse_floor, num_args = 1..)]
    floors: Vec<(Target, u64)>,
    /// A required target (default: every target the image applies); repeatable.
    #[arg(long = "require", num_args = 1..)]
    required: Vec<Target>,
    /// Client certificate validity in days.
    #[arg(long)]
    validity_days: Option<u32>,
    /// Output directory (new or empty).
    #[arg(long)]
    out: PathBuf,
}

fn parse_admin(s: &str) -> Result<AdminName, String> {
    AdminName::parse(s).map_err(|e| e.to_string())
}

fn parse_floor(s: &str) -> Result<(Target, u64), String> {
    let (t, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not TARGET=N"))?;
    let t: Target = t.parse().map_err(|e| format!("{t:?}: {e}"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{n:?} is not a non-negative integer"))?;
    Ok((t, n))
}

fn warn_plaintext() {
    eprintln!(
        "WARNING: the CA key is stored UNENCRYPTED ({}). Anyone who can read it can issue \
         certificates for every node, server and admin. Use this only for tests.",
        layout::CA_KEY_PLAINTEXT
    );
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning echo off")?;
    // The prompt comes only once echo is off, so nothing typed after it shows.
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.context("reading the passphrase")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The passphrase from the environment, else a prompt on a terminal.
fn passphrase(confirm: bool) -> Result<KeySecret> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        if p.is_empty() {
            bail!("{PASSPHRASE_ENV} is set but empty");
        }
        return Ok(KeySecret::passphrase(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "the CA key passphrase is needed: set {PASSPHRASE_ENV} or run on a terminal \
             (or `init --insecure-plaintext-key` for tests)"
        );
    }
    let p = prompt_hidden("CA key passphrase: ")?;
    if p.is_empty() {
        bail!("empty passphrase");
    }
    if confirm && prompt_hidden("again: ")? != p {
        bail!("the passphrases differ");
    }
    Ok(KeySecret::passphrase(p))
}

fn open_ca(dir: &Path) -> Result<Ca> {
    let secret = if dir.join(layout::CA_KEY_PLAINTEXT).exists() {
        warn_plaintext();
        KeySecret::InsecurePlaintext
    } else if dir.join(layout::CA_CERT).exists() {
        passphrase(false)?
    } else {
        bail!(
            "{} holds no CA (no {}); run `satchel-pki init` or pass --dir",
            dir.display(),
            layout::CA_CERT
        );
    };
    Ca::open(dir, &secret).with_context(|| format!("opening the CA in {}", dir.display()))
}

fn issue(dir: &Path, cmd: IssueCmd) -> Result<()> {
    let ca = open_ca(dir)?;
    let (issued, common) = match cmd {
        IssueCmd::Server { dns, ip, common } => {
            (ca.issue_server(&dns, &ip, common.validity_days), common)
        }
        IssueCmd::Host { mac, site, common } => {
            (ca.issue_host(mac, site, common.validity_days), common)
        }
        IssueCmd::Site { site, common } => (ca.issue_site(site, common.validity_days), common),
        IssueCmd::Admin { name, common } => (ca.issue_admin(name, common.validity_days), common),
    };
    let issued = issued.context("issuing the certificate")?;
    let (crt, key) = issued
        .write(&common.out)
        .context("writing the certificate and key")?;
    println!(
        "issued {} certificate serial {} valid until {}\n  {}\n  {}",
        issued.kind,
        issued.serial_hex,
        issued.not_after,
        crt.display(),
        key.display()
    );
    Ok(())
}

fn crl(dir: &Path, out: &Path, der_only: bool, days: Option<u32>) -> Result<()> {
    let ca = open_ca(dir)?;
    let crl = ca.crl(days).context("signing the CRL")?;
    if der_only {
        replace_public(out, &crl.der).context("writing the CRL")?;
    } else {
        replace_public(out, crl.pem.as_bytes()).context("writing the CRL")?;
        let mut der_path = out.as_os_str().to_owned();
        der_path.push(".der");
        replace_public(Path::new(&der_path), &crl.der).context("writing the DER CRL")?;
    }
    println!(
        "CRL number {} lists {} revoked certificate(s); next update {}",
        crl.number,
        crl.revoked.len(),
        crl.next_update
    );
    Ok(())
}

fn ledger_verify(dir: &Path, expect_head: Option<&str>) -> Result<ExitCode> {
    let report = ledger::verify_dir(dir).context("reading the ledger")?;
    let mut problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    if let Some(h) = expect_head {
        let (seq, hash) = h
            .split_once(':')
            .context("--expect-head is SEQ:SHA256 (from `satchel-pki ledger head`)")?;
        let seq: usize = seq.parse().context("--expect-head: SEQ is not a number")?;
        let l = ledger::Ledger::open(dir)?;
        match l.lines().get(seq) {
            Some(line) if line.hash == hash.to_ascii_lowercase() => {}
            Some(_) => problems.push(format!(
                "line {} no longer hashes to the recorded head {hash}: the ledger was rewritten",
                seq + 1
            )),
            None => problems.push(format!(
                "the recorded head is line {} but the ledger has {} lines: it was truncated",
                seq + 1,
                l.lines().len()
            )),
        }
    }
    for f in &report.missing_files {
        eprintln!("note: the copy {f} recorded in the ledger is not in the directory");
    }
    if problems.is_empty() {
        println!(
            "ledger OK: {} lines, head {}",
            report.lines,
            report
                .head
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_else(|| "-".into())
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        println!("ledger verification FAILED: {} problem(s)", problems.len());
        Ok(ExitCode::from(EXIT_LEDGER_PROBLEMS))
    }
}

fn enroll(dir: &Path, a: EnrollArgs) -> Result<()> {
    let ca = open_ca(dir)?;
    let mut floors = BTreeMap::new();
    for (t, n) in a.floors {
        if floors.insert(t.clone(), n).is_some() {
            bail!("--floor {t} given twice");
        }
    }
    let opts = EnrollOptions {
        mac: a.mac,
        site: a.site,
        signers: a.signers,
        admin_recipients: a.admin_recipients,
        domain: a.domain,
        server: a.server,
        floors,
        required: if a.required.is_empty() {
            None
        } else {
            Some(a.required)
        },
        validity_days: a.validity_days,
        out: a.out.clone(),
    };
    let done = ca.enroll(&opts).context("enrolling")?;
    println!(
        "wrote the credential set to {} (client certificate serial {})",
        a.out.display(),
        done.client_serial
    );
    println!("encrypt this image's bundles to:");
    for (t, r) in &done.recipients {
        println!("  {t} {r}");
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    let dir = cli.dir;
    match cli.cmd {
        Cmd::Init {
            name,
            p384,
            validity_days,
            insecure_plaintext_key,
        } => {
            let key = if insecure_plaintext_key {
                warn_plaintext();
                KeySecret::InsecurePlaintext
            } else {
                passphrase(true)?
            };
            let opts = InitOptions {
                name,
                curve: if p384 { Curve::P384 } else { Curve::P256 },
                validity_days,
                key,
            };
            Ca::init(&dir, opts)
                .with_context(|| format!("creating the CA in {}", dir.display()))?;
            println!(
                "CA created in {}: {}",
                dir.display(),
                dir.join(layout::CA_CERT).display()
            );
        }
        Cmd::Issue(cmd) => issue(&dir, cmd)?,
        Cmd::Revoke { serial, reason } => {
            let reason: Reason = reason.parse()?;
            let ca = open_ca(&dir)?;
            let s = ca.revoke(&serial, reason).context("revoking")?;
            println!(
                "revoked {s} ({}); run `satchel-pki crl` to publish it",
                reason.name()
            );
        }
        Cmd::Crl {
            out,
            der,
            next_update_days,
        } => crl(&dir, &out, der, next_update_days)?,
        Cmd::Ledger(LedgerCmd::Verify { expect_head }) => {
            return ledger_verify(&dir, expect_head.as_deref())
        }
        Cmd::Ledger(LedgerCmd::Head) => {
            let l = ledger::Ledger::open(&dir)?;
            match l.head() {
                Some(h) => println!("{h}"),
                None => bail!("the ledger is empty or its last line is damaged"),
            }
        }
        Cmd::Enroll(a) => enroll(&dir, a)?,
        Cmd::Audit(a) => return run_audit(&dir, &a),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("satchel-pki: {e:#}");
            ExitCode::FAILURE
        }
    }
}
