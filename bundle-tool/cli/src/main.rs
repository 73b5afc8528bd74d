//! `satchel-bundle`: the offline admin CLI for satchel bundles.
//!
//! This file only parses arguments, sets up logging and calls [`cli::run`];
//! every subcommand lives in its own file under `cli/`. It does not talk to
//! the network.
//!
//! Exit status: 0 success (for `verify`: the bundle is valid), 1 failure
//! (for `verify`: the bundle is invalid, with the reason printed), 2 usage
//! error.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SATCHEL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.verbose { "debug" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    cli::run(args)
}
