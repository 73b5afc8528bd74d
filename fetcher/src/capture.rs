//! `satchel-fetch capture`: pack files a person configured by hand on this
//! node, encrypt them to the admins, and send them to the server's
//! quarantine for approval.
//!
//! The listed paths (absolute; directories are taken whole) are copied into
//! a private staging directory at the same relative place, then packed by
//! the bundle library's packer (the same entry rules as bundles: regular
//! files, directories, relative in-tree symlinks; anything else refuses the
//! capture), compressed with zstd and encrypted with age to the config's
//! `admin_recipients`. The node cannot read its own upload back; the server
//! cannot read it at all. The upload goes with the node's client
//! certificate when the image has one, else anonymously.
//!
//! It does not decide anything about approval; it only produces the sealed
//! archive and prints the id the server gave it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use satchel_format::pack::{pack_dir, PackOptions};
use satchel_format::Recipient;
use satchel_pki::NodeConfig;
use tokio::time::Instant;

use crate::cmdline;
use crate::discover::{Dns, DnsSettings};
use crate::http::{Client, Request};
use crate::log::Log;
use crate::run::{self, Inputs};
use crate::session::Session;
use crate::settings::MAX_JSON_BYTES;

/// Largest uncompressed capture, in bytes.
pub const MAX_CAPTURE_BYTES: u64 = 64 << 20;
/// Most entries in a capture.
pub const MAX_CAPTURE_ENTRIES: usize = 10_000;
/// Largest block of a zstd frame (RFC 8878 §3.1.1.2.4: `Block_Maximum_Size`).
const ZSTD_BLOCK_MAX: usize = 128 * 1024;
/// zstd frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Deadline of a capture upload.
pub const CAPTURE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Exit codes of `capture` (see `main.rs`).
const EXIT_CONFIG: u8 = 3;
const EXIT_UPLOAD: u8 = 5;

struct Budget {
    bytes: u64,
    entries: usize,
}

fn copy_in(src: &Path, dst: &Path, budget: &mut Budget) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
    budget.entries += 1;
    if budget.entries > MAX_CAPTURE_ENTRIES {
        return Err(format!("more than {MAX_CAPTURE_ENTRIES} entries"));
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| format!("{}: {e}", src.display()))?;
        std::os::unix::fs::symlink(target, dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    } else if ft.is_dir() {
        std::fs::create_dir_all(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        let mut names: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| format!("{}: {e}", src.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for n in names {
            copy_in(&src.join(&n), &dst.join(&n), budget)?;
        }
        std::fs::set_permissions(
            dst,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )
        .map_err(|e| format!("{}: {e}", dst.display()))?;
    } else if ft.is_file() {
        budget.bytes = budget.bytes.saturating_add(meta.len());
        if budget.bytes > MAX_CAPTURE_BYTES {
            return Err(format!("the files exceed {MAX_CAPTURE_BYTES} bytes"));
        }
        std::fs::copy(src, dst).map_err(|e| format!("{}: {e}", src.display()))?;
        std::fs::set_permissions(
            dst,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )
        .map_err(|e| format!("{}: {e}", dst.display()))?;
    } else {
        return Err(format!(
            "{} is not a regular file, directory or symlink",
            src.display()
        ));
    }
    Ok(())
}

/// Packs `paths` (absolute) into a payload tar with the bundle packer.
/// Returns the tar and its entry count.
pub fn pack(paths: &[PathBuf]) -> Result<(Vec<u8>, u64), String> {
    if paths.is_empty() {
        return Err("nothing to capture: give --path (or satchel.capture=)".into());
    }
    let stage = tempfile::Builder::new()
        .prefix("satchel-capture-")
        .tempdir()
        .map_err(|e| format!("staging directory: {e}"))?;
    let mut budget = Budget {
        bytes: 0,
        entries: 0,
    };
    for p in paths {
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "{}: expected an absolute path without ..",
                p.display()
            ));
        }
        let rel: PathBuf = p
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if rel.as_os_str().is_empty() {
            return Err("capturing / as a whole is refused".into());
        }
        let dst = stage.path().join(&rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        if std::fs::symlink_metadata(&dst).is_ok() {
            continue; // listed twice, or inside a directory already taken
        }
        copy_in(p, &dst, &mut budget)?;
    }
    let opts = PackOptions {
        keep_owners: true,
        allow_special_bits: true,
    };
    pack_dir(stage.path(), &opts, Vec::new()).map_err(|e| e.to_string())
}

/// Wraps `data` in a valid zstd frame of raw (stored) blocks, RFC 8878:
/// single-segment frame with an 8-byte content size, then raw blocks of at
/// most [`ZSTD_BLOCK_MAX`] bytes, the last one flagged. Any zstd decoder
/// (`zstd -d`, the bundle library) reads it.
///
/// Captures are a few hand-edited files, so compressing them saves little,
/// while linking the zstd compressor would add about 200 KB to a binary that
/// otherwise only decompresses (see BENCHMARKS.md). The age layer is what
/// protects the content.
pub fn zstd_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(ZSTD_BLOCK_MAX).max(1);
    let mut out = Vec::with_capacity(data.len() + 13 + 3 * blocks);
    out.extend_from_slice(&ZSTD_MAGIC);
    // Frame_Header_Descriptor: Frame_Content_Size_flag = 3 (8 bytes),
    // Single_Segment_flag = 1, no checksum, no dictionary.
    out.push(0b1110_0000);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut chunks = data.chunks(ZSTD_BLOCK_MAX).peekable();
    if chunks.peek().is_none() {
        // An empty frame still has one (last, empty) block.
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u32::from(chunks.peek().is_none());
        // Block_Header: Last_Block (bit 0), Block_Type 0 = Raw (bits 1-2),
        // Block_Size (bits 3-23), 3 bytes little-endian.
        let header = last | ((chunk.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(chunk);
    }
    out
}

/// `tar | zstd | age` to `recipients`, in memory.
pub fn seal(tar: &[u8], recipients: &[String]) -> Result<Vec<u8>, String> {
    if recipients.is_empty() {
        return Err("the node config has no admin_recipients to encrypt to".into());
    }
    let parsed: Vec<Recipient> = recipients
        .iter()
        .map(|r| Recipient::parse(r).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let zst = zstd_stored(tar);
    let enc =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r.as_age() as &dyn age::Recipient))
            .map_err(|e| format!("age: {e}"))?;
    let mut out = Vec::with_capacity(zst.len() + 512);
    let mut w = enc.wrap_output(&mut out).map_err(|e| format!("age: {e}"))?;
    w.write_all(&zst).map_err(|e| format!("age: {e}"))?;
    w.finish().map_err(|e| format!("age: {e}"))?;
    Ok(out)
}

/// Runs `capture`; returns the exit code.
pub async fn main(inputs: &Inputs, paths: &[PathBuf], upload: bool, log: &Log) -> u8 {
    match capture(inputs, paths, upload, log).await {
        Ok(()) => 0,
        Err((code, e)) => {
            log.error(&format!("capture: {e}"));
            code
        }
    }
}

async fn capture(
    inputs: &Inputs,
    paths: &[PathBuf],
    upload: bool,
    log: &Log,
) -> Result<(), (u8, String)> {
    let cfg_err = |e: String| (EXIT_CONFIG, e);
    let text = run::read_bounded(&inputs.cmdline, run::MAX_CMDLINE_FILE).unwrap_or_default();
    let params = cmdline::parse(&text).map_err(|e| cfg_err(e.to_string()))?;
    let config = NodeConfig::load(&inputs.config).map_err(|e| cfg_err(e.to_string()))?;
    let paths: Vec<PathBuf> = if paths.is_empty() {
        params.capture.clone()
    } else {
        paths.to_vec()
    };
    let (tar, entries) = pack(&paths).map_err(cfg_err)?;
    let sealed = seal(&tar, &config.admin_recipients).map_err(cfg_err)?;
    log.info(&format!(
        "captured {entries} entries ({} bytes of tar, {} bytes sealed)",
        tar.len(),
        sealed.len()
    ));
    if !upload {
        println!("captured {entries} entries; run with --upload to send them");
        return Ok(());
    }
    let mac = run::node_mac(&config, &params, &inputs.sysfs, log).map_err(cfg_err)?;
    let base = inputs
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let ca = std::fs::read(config.resolve(&base, &config.ca_cert))
        .map_err(|e| cfg_err(format!("CA certificate: {e}")))?;
    let cert = std::fs::read(config.resolve(&base, &config.client_cert)).ok();
    let key = std::fs::read(config.resolve(&base, &config.client_key))
        .ok()
        .map(zeroize::Zeroizing::new);
    let client = match (&cert, &key) {
        (Some(c), Some(k)) => Some((c.as_slice(), k.as_slice())),
        _ => {
            log.warn("no client certificate: uploading anonymously");
            None
        }
    };
    let tls =
        satchel_pki::tls::client_config(&ca, client).map_err(|e| cfg_err(format!("TLS: {e}")))?;
    let deadline = Instant::now() + params.timeout.unwrap_or(CAPTURE_DEADLINE);
    let dns = Dns::new(&DnsSettings {
        nameservers: run::nameservers(&params, &inputs.resolv_conf, log),
        tcp_only: params.dns_tcp,
        query_timeout: inputs.settings.dns_query_timeout,
        attempts: inputs.settings.dns_attempts,
    })
    .ok();
    let mut rng = StdRng::from_entropy();
    let servers = run::discover(&params, &config, dns.as_ref(), deadline, &mut rng, log)
        .await
        .map_err(|e| (EXIT_UPLOAD, e))?;
    let mut session = Session {
        client: Client::new(tls, inputs.settings.clone()),
        dns,
        servers,
        deadline,
        rng,
        log,
        last_good: None,
    };
    let path = format!("/v1/uploads/{mac}");
    let req = Request {
        method: http::Method::POST,
        path: &path,
        body: Some((Bytes::from(sealed), "application/octet-stream")),
        max_body: MAX_JSON_BYTES,
        expect_len: None,
    };
    let mut body = Vec::new();
    session
        .call(&req, &mut body)
        .await
        .map_err(|e| (EXIT_UPLOAD, format!("POST {path}: {e}")))?;
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            ["id", "upload_id"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
        })
        .ok_or_else(|| {
            (
                EXIT_UPLOAD,
                "the server's answer has no upload id".to_string(),
            )
        })?;
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((EXIT_UPLOAD, "the server's upload id is malformed".into()));
    }
    log.info(&format!("uploaded as {id}"));
    println!("{id}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_files_dirs_and_links_and_refuses_the_rest() {
        let t = tempfile::tempdir().expect("tmp");
        let etc = t.path().join("etc");
        std::fs::create_dir_all(etc.join("app.d")).expect("mkdir");
        std::fs::write(etc.join("hosts"), "127.0.0.1 x\n").expect("w");
        std::fs::write(etc.join("app.d/a.conf"), "a=1\n").expect("w");
        std::os::unix::fs::symlink("a.conf", etc.join("app.d/current")).expect("ln");
        let (tar, entries) =
            pack(&[etc.join("hosts"), etc.join("app.d"), etc.join("hosts")]).expect("pack");
        assert!(entries >= 4, "{entries}");
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().expect("entries") {
            names.push(
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string(),
            );
        }
        assert!(names.iter().any(|n| n.ends_with("etc/hosts")), "{names:?}");
        assert!(
            names.iter().any(|n| n.ends_with("app.d/current")),
            "{names:?}"
        );

        assert!(pack(&[]).is_err());
        assert!(pack(&[PathBuf::from("relative")]).is_err());
        assert!(pack(&[PathBuf::from("/")]).is_err());
        assert!(pack(&[etc.join("../etc/hosts")]).is_err());
        assert!(pack(&[t.path().join("missing")]).is_err());
        // An absolute symlink target is refused by the bundle packer's rules.
        std::os::unix::fs::symlink("/etc/passwd", etc.join("abs")).expect("ln");
        assert!(pack(&[etc.join("abs")]).is_err());
    }

    #[test]
    fn stored_zstd_frames_decode() {
        let mut rng = rand::thread_rng();
        for len in [
            0usize,
            1,
            100,
            ZSTD_BLOCK_MAX - 1,
            ZSTD_BLOCK_MAX,
            ZSTD_BLOCK_MAX + 1,
            3 * ZSTD_BLOCK_MAX + 7,
            1 << 20,
        ] {
            let mut data = vec![0u8; len];
            rand::Rng::fill(&mut rng, &mut data[..]);
            let frame = zstd_stored(&data);
            assert_eq!(
                zstd::decode_all(&frame[..]).expect("decodes"),
                data,
                "length {len}"
            );
            // The declared size is the real one.
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&frame)
                    .ok()
                    .flatten(),
                Some(len as u64)
            );
        }
    }

    #[test]
    fn seal_needs_recipients_and_decrypts_for_them() {
        assert!(seal(b"x", &[]).is_err());
        assert!(seal(b"x", &["not-a-recipient".into()]).is_err());
        let id = age::x25519::Identity::generate();
        let sealed = seal(b"tar bytes", &[id.to_public().to_string()]).expect("seal");
        let dec = age::Decryptor::new(&sealed[..]).expect("age");
        let mut r = dec
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .expect("decrypt");
        let mut zst = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut zst).expect("read");
        assert_eq!(zstd::decode_all(&zst[..]).expect("zstd"), b"tar bytes");
    }
}
