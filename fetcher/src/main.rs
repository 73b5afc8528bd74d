//! `satchel-fetch`: the initrd fetcher.
//!
//! Run by the initrd hook before switch-root, it finds the configuration
//! server (DNS SRV `_satchel._tcp.<domain>`), downloads this node's bundles
//! over mutual TLS, verifies them, lays them over `satchel.root` and reports
//! how it went. `satchel-fetch capture --path P… [--upload]` packs files a
//! person configured by hand, encrypted to the admins, for approval.
//!
//! This file only parses arguments, sets up logging and calls the library
//! (`satchel_fetch::run`, `satchel_fetch::capture`). It has no CLI crate:
//! the binary must stay small.
//!
//! Exit codes of a boot run:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every bundle applied; or the run failed and `satchel.required=0` (a warning is logged) |
//! | 1 | internal error |
//! | 2 | bad arguments |
//! | 3 | unusable command line, node config, credentials, or no MAC |
//! | 4 | no server found or reachable (DNS, every target) |
//! | 5 | the boot index or a bundle could not be downloaded |
//! | 6 | a bundle was refused by verification |
//! | 7 | the overlay failed |
//! | 8 | a required bundle is missing from the index |
//!
//! `capture` exits 0 on success, 2 on bad arguments, 3 when a file or the
//! config is unusable, 5 when the upload failed.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use satchel_fetch::log::Log;
use satchel_fetch::run::{self, Exit, Inputs};
use satchel_fetch::settings::Settings;

const USAGE: &str = "\
usage: satchel-fetch [OPTIONS]                 fetch, verify, apply, report
       satchel-fetch capture --path P... [--upload] [OPTIONS]
options:
  --cmdline PATH          kernel command line (default /proc/cmdline)
  --config PATH           node config (default /etc/satchel/satchel.toml)
  --sysfs PATH            sysfs mount (default /sys)
  --resolv-conf PATH      resolver config (default /etc/resolv.conf)
  --kmsg PATH             kernel log (default /dev/kmsg)
  --connect-timeout SECS  TCP connect timeout per address
  --handshake-timeout SECS TLS handshake timeout
  --header-timeout SECS   time to the response headers
  --min-rate BYTES        minimum body throughput, bytes/s
  --stall-window SECS     window the minimum throughput is measured over
  --max-bundle-bytes N    largest bundle downloaded
  --report-grace SECS     time the report gets after the deadline
  --version, --help
";

#[derive(Debug)]
struct Args {
    capture: bool,
    paths: Vec<PathBuf>,
    upload: bool,
    kmsg: PathBuf,
    inputs: Inputs,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        capture: false,
        paths: Vec::new(),
        upload: false,
        kmsg: PathBuf::from("/dev/kmsg"),
        inputs: Inputs {
            cmdline: PathBuf::from("/proc/cmdline"),
            config: PathBuf::from("/etc/satchel/satchel.toml"),
            sysfs: PathBuf::from("/sys"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            settings: Settings::default(),
        },
    };
    let mut first = true;
    while let Some(arg) = it.next() {
        if first && arg == "capture" {
            a.capture = true;
            first = false;
            continue;
        }
        first = false;
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let secs = |v: String, name: &str| -> Result<Duration, String> {
            v.parse::<u64>()
                .ok()
                .filter(|s| *s > 0 && *s <= 3600)
                .map(Duration::from_secs)
                .ok_or(format!("{name}: expected whole seconds 1-3600, got {v:?}"))
        };
        let s = &mut a.inputs.settings;
        match arg.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--version" | "-V" => {
                println!("satchel-fetch {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--cmdline" => a.inputs.cmdline = value(&arg)?.into(),
            "--config" => a.inputs.config = value(&arg)?.into(),
            "--sysfs" => a.inputs.sysfs = value(&arg)?.into(),
            "--resolv-conf" => a.inputs.resolv_conf = value(&arg)?.into(),
            "--kmsg" => a.kmsg = value(&arg)?.into(),
            "--connect-timeout" => s.connect_timeout = secs(value(&arg)?, &arg)?,
            "--handshake-timeout" => s.handshake_timeout = secs(value(&arg)?, &arg)?,
            "--header-timeout" => s.header_timeout = secs(value(&arg)?, &arg)?,
            "--stall-window" => s.stall_window = secs(value(&arg)?, &arg)?,
            "--report-grace" => s.report_grace = secs(value(&arg)?, &arg)?,
            "--min-rate" => {
                let v = value(&arg)?;
                s.min_rate = v
                    .parse()
                    .map_err(|_| format!("--min-rate: {v:?} is not a number"))?;
            }
            "--max-bundle-bytes" => {
                let v = value(&arg)?;
                s.max_bundle_bytes = v.parse().ok().filter(|n| *n > 0).ok_or(format!(
                    "--max-bundle-bytes: {v:?} is not a positive number"
                ))?;
            }
            "--path" if a.capture => a.paths.push(value(&arg)?.into()),
            "--upload" if a.capture => a.upload = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("satchel: error: {e}");
            for line in USAGE.lines() {
                eprintln!("satchel: {line}");
            }
            return ExitCode::from(2);
        }
    };
    let log = Log::new(Some(&args.kmsg));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log.error(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    if args.capture {
        return ExitCode::from(rt.block_on(satchel_fetch::capture::main(
            &args.inputs,
            &args.paths,
            args.upload,
            &log,
        )));
    }
    let outcome = rt.block_on(run::boot(&args.inputs, &log));
    match outcome.exit {
        Exit::Applied => ExitCode::SUCCESS,
        failed if !outcome.required => {
            log.warn(&format!(
                "failed (exit class {}), continuing the boot on the image's defaults because satchel.required=0",
                failed as u8
            ));
            ExitCode::SUCCESS
        }
        failed => ExitCode::from(failed as u8),
    }
}
