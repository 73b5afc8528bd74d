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
//! `--json` (global) prints each command's result as one JSON object on
//! stdout, and a failure as `{"error":{"message":…}}` (also on stdout; the
//! exit status is the same). `completions SHELL` and `man [--out DIR]` are
//! generated from the same clap definitions as `--help`.
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
use clap::{Args, CommandFactory, Parser, Subcommand};
use satchel_names::{Mac, SiteName, Target};
use satchel_pki::audit::cli::{run_cli as run_audit, AuditArgs};
use satchel_pki::ca::{replace_public, Ca, InitOptions, KeySecret, Reason};
use satchel_pki::enroll::EnrollOptions;
use satchel_pki::layout;
use satchel_pki::ledger;
use satchel_pki::profile::Curve;
use satchel_pki::scope::{AdminName, Domain};
use serde_json::{json, Value};

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
    /// Print the result as JSON on stdout (errors too: `{"error":{"message":…}}`).
    #[arg(long, global = true)]
    json: bool,
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
        /// The deployment's domain (e.g. example.net): every scope URI this
        /// CA issues is https://DOMAIN/satchel/KIND/NAME, and the CA's own
        /// certificate names it. A name you control; nothing is fetched from it.
        #[arg(long, value_parser = parse_domain)]
        domain: Domain,
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
        /// RFC 5280 reason (any case; kebab-case accepted).
        #[arg(long, value_enum, ignore_case = true, default_value = "unspecified")]
        reason: Reason,
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
    /// Print a shell completion script.
    Completions {
        /// The shell to write a completion script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per subcommand into DIR.
    Man {
        /// Write satchel-pki.1 and one page per subcommand into DIR
        /// (default: satchel-pki.1 on stdout).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Where results go: text for people, or one JSON object with `--json`.
#[derive(Clone, Copy, Debug)]
struct Out {
    json: bool,
}

impl Out {
    /// Prints `text`, or `value` as JSON.
    fn emit(self, text: impl std::fmt::Display, value: Value) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let s = serde_json::to_string_pretty(&value).context("encoding the JSON result")?;
            writeln!(stdout, "{s}")
        } else {
            writeln!(stdout, "{text}")
        }
        .context("writing the result")
    }
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
        #[arg(long, value_name = "SEQ:SHA256", value_parser = parse_head)]
        expect_head: Option<ledger::Head>,
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

fn parse_head(s: &str) -> Result<ledger::Head, String> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not SEQ:SHA256 (from `satchel-pki ledger head`)"))?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| format!("SEQ {seq:?} is not a non-negative integer"))?;
    if hash.len() != 64 || !hash.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("SHA256 {hash:?} is not 64 hex digits"));
    }
    Ok(ledger::Head {
        seq,
        hash: hash.to_ascii_lowercase(),
    })
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

fn issue(dir: &Path, cmd: IssueCmd, out: Out) -> Result<()> {
    let ca = open_ca(dir)?;
    let (issued, common) = match cmd {
        IssueCmd::Server { dns, ip, common } => {
            for d in dns
                .iter()
                .filter(|d| !d.trim_end_matches('.').contains('.'))
            {
                eprintln!(
                    "satchel-pki: warning: {d:?} is a single-label name, not a fully qualified \
                     one; linters (and `satchel-pki audit`, w_san_dns_name_single_label) flag it. \
                     Keep it to demos; name the SRV target clients use."
                );
            }
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
    out.emit(
        format_args!(
            "issued {} certificate serial {} valid until {}\n  {}\n  {}",
            issued.kind,
            issued.serial_hex,
            issued.not_after,
            crt.display(),
            key.display()
        ),
        json!({
            "kind": issued.kind.to_string(),
            "serial": issued.serial_hex,
            "scope": issued.scope.as_ref().map(|s| s.label()),
            "not_before": satchel_pki::audit::report::rfc3339(issued.not_before),
            "not_after": satchel_pki::audit::report::rfc3339(issued.not_after),
            "certificate": crt,
            "key": key,
        }),
    )
}

fn crl(dir: &Path, out: &Path, der_only: bool, days: Option<u32>, o: Out) -> Result<()> {
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
    o.emit(
        format_args!(
            "CRL number {} lists {} revoked certificate(s); next update {}",
            crl.number,
            crl.revoked.len(),
            crl.next_update
        ),
        json!({
            "number": crl.number,
            "revoked": crl.revoked,
            "this_update": satchel_pki::audit::report::rfc3339(crl.this_update),
            "next_update": satchel_pki::audit::report::rfc3339(crl.next_update),
            "file": out,
        }),
    )
}

fn ledger_verify(dir: &Path, expect_head: Option<&ledger::Head>, out: Out) -> Result<ExitCode> {
    let report = ledger::verify_dir(dir).context("reading the ledger")?;
    let mut problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    if let Some(h) = expect_head {
        let (seq, hash) = (h.seq, &h.hash);
        let l = ledger::Ledger::open(dir)?;
        match usize::try_from(seq).ok().and_then(|i| l.lines().get(i)) {
            Some(line) if line.hash == *hash => {}
            Some(_) => problems.push(format!(
                "line {} no longer hashes to the recorded head {hash}: the ledger was rewritten",
                seq.saturating_add(1)
            )),
            None => problems.push(format!(
                "the recorded head is line {} but the ledger has {} lines: it was truncated",
                seq.saturating_add(1),
                l.lines().len()
            )),
        }
    }
    let head = report.head.as_ref().map(|h| h.to_string());
    if out.json {
        out.emit(
            "",
            json!({
                "ok": problems.is_empty(),
                "lines": report.lines,
                "head": head,
                "problems": problems,
                "missing_files": report.missing_files,
            }),
        )?;
        return Ok(if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_LEDGER_PROBLEMS)
        });
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

fn enroll(dir: &Path, a: EnrollArgs, out: Out) -> Result<()> {
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
    let mut text = format!(
        "wrote the credential set to {} (client certificate serial {})\nencrypt this image's bundles to:",
        a.out.display(),
        done.client_serial
    );
    let mut recipients = serde_json::Map::new();
    for (t, r) in &done.recipients {
        text.push_str(&format!("\n  {t} {r}"));
        recipients.insert(t.to_string(), Value::String(r.to_string()));
    }
    out.emit(
        text,
        json!({
            "out": a.out,
            "client_serial": done.client_serial,
            "recipients": recipients,
        }),
    )
}

fn completions(shell: clap_complete::Shell, out: Out) -> Result<()> {
    if out.json {
        bail!("completions writes a shell script; it has no --json form");
    }
    // Generated into memory first: clap_complete panics on a write error
    // (such as a closed pipe); here it is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "satchel-pki", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")
}

fn man(dir: Option<&Path>, out: Out) -> Result<()> {
    match dir {
        None => {
            if out.json {
                bail!("man prints a man page; with --json give --out DIR");
            }
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the man page")
        }
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            clap_mangen::generate_to(Cli::command(), d)
                .with_context(|| format!("writing man pages into {}", d.display()))?;
            out.emit(
                format_args!("wrote man pages into {}", d.display()),
                json!({ "dir": d }),
            )
        }
    }
}

fn parse_domain(s: &str) -> Result<Domain, String> {
    Domain::parse(s).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<ExitCode> {
    let dir = cli.dir;
    let out = Out { json: cli.json };
    match cli.cmd {
        Cmd::Init {
            name,
            domain,
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
                domain,
                curve: if p384 { Curve::P384 } else { Curve::P256 },
                validity_days,
                key,
            };
            let ca = Ca::init(&dir, opts)
                .with_context(|| format!("creating the CA in {}", dir.display()))?;
            let cert = dir.join(layout::CA_CERT);
            out.emit(
                format_args!("CA created in {}: {}", dir.display(), cert.display()),
                json!({
                    "dir": dir,
                    "certificate": cert,
                    "not_after": ca.not_after().ok().map(satchel_pki::audit::report::rfc3339),
                }),
            )?;
        }
        Cmd::Issue(cmd) => issue(&dir, cmd, out)?,
        Cmd::Revoke { serial, reason } => {
            let ca = open_ca(&dir)?;
            let s = ca.revoke(&serial, reason).context("revoking")?;
            out.emit(
                format_args!(
                    "revoked {s} ({}); run `satchel-pki crl` to publish it",
                    reason.name()
                ),
                json!({ "serial": s, "reason": reason.name() }),
            )?;
        }
        Cmd::Crl {
            out: file,
            der,
            next_update_days,
        } => crl(&dir, &file, der, next_update_days, out)?,
        Cmd::Ledger(LedgerCmd::Verify { expect_head }) => {
            return ledger_verify(&dir, expect_head.as_ref(), out)
        }
        Cmd::Ledger(LedgerCmd::Head) => {
            let l = ledger::Ledger::open(&dir)?;
            match l.head() {
                Some(h) => out.emit(&h, json!({ "head": h.to_string() }))?,
                None => bail!("the ledger is empty or its last line is damaged"),
            }
        }
        Cmd::Enroll(a) => enroll(&dir, a, out)?,
        Cmd::Audit(mut a) => {
            a.json = cli.json;
            return run_audit(&dir, &a);
        }
        Cmd::Completions { shell } => completions(shell, out)?,
        Cmd::Man { out: d } => man(d.as_deref(), out)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if json {
                println!("{}", json!({ "error": { "message": format!("{e:#}") } }));
            }
            eprintln!("satchel-pki: {e:#}");
            ExitCode::FAILURE
        }
    }
}
