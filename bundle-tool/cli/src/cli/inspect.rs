//! `inspect BUNDLE [--identity FILE]`: what a bundle says about itself, and
//! with an identity, the files it holds. Checks the container and the
//! payload hash but **not** the signature: use `verify` for that.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use satchel_format::container::read_header;
use satchel_format::open::{inspect_reader, overlay_options};
use satchel_format::verify::verify_payload;
use satchel_overlay::{check_archive, EntryKind, Options};
use serde_json::json;

use super::{load_identities, manifest_json, manifest_lines, print_json};

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub bundle: PathBuf,
    /// An age identity that can decrypt the payload: adds the file list.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

/// Runs `inspect`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let open =
        || File::open(&a.bundle).with_context(|| format!("cannot open {}", a.bundle.display()));
    let (header, payload) = read_header(BufReader::new(open()?))
        .with_context(|| format!("{} is not a valid bundle", a.bundle.display()))?;
    let payload_ok = verify_payload(&header.manifest, payload);
    let mut files = None;
    if let Some(id_path) = &a.identity {
        let ids = load_identities(id_path)?;
        let (_, mut tar) = inspect_reader(open()?, &ids)
            .with_context(|| format!("cannot decrypt {}", a.bundle.display()))?;
        // The overlay's own rules and listing, with the manifest's promises.
        let opts = overlay_options(&header.manifest, &Options::default());
        let listed = check_archive(&mut tar, &opts);
        let listed = match (listed, tar.take_failure()) {
            (Ok(l), _) => l,
            (Err(_), Some(e)) => {
                return Err(e).context(format!(
                    "the payload of {} does not match its manifest",
                    a.bundle.display()
                ))
            }
            (Err(e), None) => {
                return Err(e).context(format!(
                    "the payload of {} is refused by the overlay",
                    a.bundle.display()
                ))
            }
        };
        files = Some(listed.entries);
    }
    let m = &header.manifest;
    if super::json_output() {
        print_json(&json!({
            "bundle": a.bundle,
            "signature_checked": false,
            "payload_matches_manifest": payload_ok.is_ok(),
            "manifest": manifest_json(m),
            "files": files,
        }))?;
    } else {
        println!(
            "{} (signature not checked: use `satchel-bundle verify --trust KEY`)",
            a.bundle.display()
        );
        for line in manifest_lines(m) {
            println!("  {line}");
        }
        match &payload_ok {
            Ok(()) => println!("  payload:      matches the manifest's size and sha256"),
            Err(e) => println!("  payload:      DOES NOT MATCH the manifest: {e}"),
        }
        if let Some(files) = &files {
            println!("  files:");
            for f in files {
                let link = f
                    .link_target
                    .as_deref()
                    .map(|l| format!(" -> {l}"))
                    .unwrap_or_default();
                let (kind, path) = match f.kind {
                    EntryKind::File => ('-', f.path.clone()),
                    EntryKind::Dir => ('d', format!("{}/", f.path)),
                    EntryKind::Symlink => ('l', f.path.clone()),
                    EntryKind::Hardlink => ('h', f.path.clone()),
                    EntryKind::Whiteout => ('w', format!("{} (deleted)", f.path)),
                };
                println!(
                    "    {kind} {:04o} {:>5}:{:<5} {:>10}  {path}{link}",
                    f.mode, f.uid, f.gid, f.size
                );
            }
        }
    }
    Ok(if payload_ok.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
