//! `initrd --enroll DIR --fetcher PATH -o OUT.cpio.zst`: the node's initrd
//! overlay (see `satchel_bundle::initrd` for its layout and rules). The
//! output holds the node's private keys and is written 0600.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use satchel_bundle::initrd::{build, NodeKind};
use serde_json::json;

use super::print_json;

/// Arguments of `initrd`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory `satchel-pki enroll` wrote (satchel.toml and its credentials).
    #[arg(long, value_name = "DIR")]
    pub enroll: PathBuf,
    /// The static satchel-fetch binary.
    #[arg(long, value_name = "PATH")]
    pub fetcher: PathBuf,
    /// The overlay to write (zstd-compressed newc cpio; append it to a distro initrd).
    #[arg(short = 'o', long = "out", value_name = "OUT.cpio.zst")]
    pub out: PathBuf,
}

/// Runs `initrd`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let nodes = build(&a.enroll, &a.fetcher, &a.out)
        .with_context(|| format!("cannot build the initrd overlay {}", a.out.display()))?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    let rows: Vec<(String, String, u32, usize)> = nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::Dir => (format!("/{}", n.path), "dir".to_string(), n.mode, 0),
            NodeKind::File(b) => (format!("/{}", n.path), "file".to_string(), n.mode, b.len()),
            NodeKind::Symlink(t) => (format!("/{}", n.path), format!("symlink -> {t}"), n.mode, 0),
        })
        .collect();
    if super::json_output() {
        let entries: Vec<_> = rows
            .iter()
            .map(|(p, k, m, s)| json!({ "path": p, "kind": k, "mode": format!("{m:04o}"), "size": s }))
            .collect();
        print_json(&json!({ "overlay": a.out, "size": size, "entries": entries }))?;
    } else {
        println!(
            "wrote {} ({size} bytes, {} entries; it holds the node's keys: keep it private)",
            a.out.display(),
            rows.len()
        );
        for (p, k, m, s) in rows {
            println!("  {m:04o} {s:>9}  {p} ({k})");
        }
        println!(
            "append it to a distro initrd: cat initrd.img {} > initrd-satchel.img",
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
