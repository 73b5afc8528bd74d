//! `satchel-pki audit`: arguments, output and exit status.
//!
//! Exit status (so reviewers can gate their own CI on it):
//! - [`EXIT_CLEAN`] (0): no finding at or above `--fail-on`;
//! - [`EXIT_FINDINGS`] (1): at least one finding at or above `--fail-on`;
//! - [`EXIT_INPUT`] (2): usage or input error — unreadable PKI directory or
//!   extra file, `--connect` target unreachable, `--html` file not writable.
//!   (clap's own usage errors also exit 2.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::lints::Severity;
use super::{audit, connect, html, AuditInput};

/// Exit status: nothing at or above the threshold.
pub const EXIT_CLEAN: u8 = 0;
/// Exit status: findings at or above the threshold.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status: usage or input error.
pub const EXIT_INPUT: u8 = 2;

/// Which findings make the exit status non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Errors only (the default).
    Error,
    /// Warnings and errors.
    Warning,
    /// Any finding, notices included.
    Notice,
    /// Never: exit 0 whatever was found (input errors still exit 2).
    Never,
}

impl FailOn {
    fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Error => Some(Severity::Error),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Notice => Some(Severity::Notice),
            FailOn::Never => None,
        }
    }
}

/// Arguments of `satchel-pki audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Print the report as JSON (schema `satchel-pki-audit/1`, see AUDIT.md)
    /// instead of text: the binary's global `--json` sets it.
    #[arg(skip)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also audit the certificate chain the TLS server at HOST:PORT presents.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Exit 1 when a finding of this severity or worse exists.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Warn about live certificates expiring within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_EXPIRING_DAYS)]
    pub expiring_days: u32,
    /// Extra certificate files (PEM or DER) to audit with the PKI directory.
    #[arg(value_name = "EXTRA.pem")]
    pub extra: Vec<PathBuf>,
}

/// Default of `--expiring-days`.
pub const DEFAULT_EXPIRING_DAYS: u32 = 14;

/// Runs the audit as the CLI does, writing the report to stdout and errors
/// to stderr. Never returns `Err` for input problems: those print
/// `error: …` and yield [`EXIT_INPUT`], so `main` can return the code as is.
pub fn run_cli(dir: &Path, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run_cli_to(dir, args, &mut stdout.lock(), &mut stderr.lock());
    Ok(ExitCode::from(code))
}

/// [`run_cli`] with explicit output streams; returns the exit status.
pub fn run_cli_to(dir: &Path, args: &AuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match run_inner(dir, args, out) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            EXIT_INPUT
        }
    }
}

fn run_inner(dir: &Path, args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut input = AuditInput::new(dir);
    input.extra = args.extra.clone();
    input.expiring_within = time::Duration::days(i64::from(args.expiring_days));
    if let Some(addr) = &args.connect {
        input.presented = Some(
            connect::fetch_chain(addr, connect::CONNECT_TIMEOUT)
                .with_context(|| format!("--connect {addr}"))?,
        );
    }
    let report = audit(&input).context("audit")?;
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report))
            .with_context(|| format!("writing the HTML report to {}", path.display()))?;
    }
    let text = if args.json {
        let mut j = report.to_json();
        j.push('\n');
        j
    } else {
        report.to_text()
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report")?;
    let failed = args
        .fail_on
        .threshold()
        .is_some_and(|t| report.count_at_least(t) > 0);
    Ok(if failed { EXIT_FINDINGS } else { EXIT_CLEAN })
}
