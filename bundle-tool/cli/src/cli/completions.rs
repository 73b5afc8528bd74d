//! `completions SHELL` and `man [--out DIR]`: generated from the clap
//! definitions in `cli/mod.rs`, so help, completions and man pages never
//! disagree.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write satchel-bundle.1 and one page per subcommand into DIR
    /// (default: satchel-bundle.1 on stdout).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `completions`.
pub fn completions(a: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    // Generated into memory first: clap_complete panics on a write error
    // (such as a closed pipe); here it is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "satchel-bundle", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `man`.
pub fn man(a: &ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match &a.out {
        None => {
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            println!("wrote man pages into {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
