//! `satchel-fetch capture`: pack files a person configured by hand on this
//! node, encrypt them to the admins, and send them to the server's
//! quarantine for approval.
//!
//! The listed paths (absolute; directories are taken whole) are packed as
//! found — numeric owners, modes, mtimes — into a payload tar with the
//! bundle entry rules (regular files, directories, symlinks staying in
//! the root, absolute targets kept verbatim; anything else refuses the
//! capture), read through file
//! descriptors that never follow a symlink, so nothing swapped in during
//! the walk is read through; the directories above a listed path are not
//! entries. The tar is compressed with zstd and encrypted with age to the
//! config's `admin_recipients`. The node cannot read its own upload back; the server
//! cannot read it at all. The upload goes with the node's client
//! certificate when the image has one, else anonymously.
//!
//! It does not decide anything about approval; it only produces the sealed
//! archive and prints the id the server gave it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rustix::fs::{
    fstat, openat, readlinkat, statat, AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD,
};
use satchel_format::pack::check_link_target;
use satchel_format::Recipient;
use satchel_overlay::is_format_char;
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

/// The identity of a file as `lstat` saw it; the walk compares it with
/// what it then opened or read, so a path swapped meanwhile (for a symlink
/// to a secret, say) fails the capture instead of being read through.
fn same_file(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

fn kind_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Appends the entry `name` of the directory `dir` (tar path `path`) and,
/// for a directory, everything below it. Every file is opened relative to
/// its directory's fd with `O_NOFOLLOW` and checked against the `lstat`
/// that decided its kind; owners and modes are recorded as found.
fn capture_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &str,
    out: &mut tar::Builder<Vec<u8>>,
    budget: &mut Budget,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("/{path}: {e}");
    budget.entries += 1;
    if budget.entries > MAX_CAPTURE_ENTRIES {
        return Err(format!("more than {MAX_CAPTURE_ENTRIES} entries"));
    }
    let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail(&e))?;
    let mut h = tar::Header::new_ustar();
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mode(st.st_mode & 0o7777);
    let changed = || fail(&"changed while it was being captured; capture again");
    match kind_of(&st) {
        FileType::Symlink => {
            let target = readlinkat(dir, name, Vec::new()).map_err(|e| fail(&e))?;
            let again = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail(&e))?;
            if !same_file(&st, &again) {
                return Err(changed());
            }
            let target = target
                .to_str()
                .map_err(|_| fail(&"symlink target is not UTF-8"))?;
            let parent = path.rfind('/').map_or("", |i| &path[..=i]);
            check_link_target(parent, target).map_err(|why| fail(&why))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            out.append_link(&mut h, path, target).map_err(|e| fail(&e))
        }
        FileType::Directory => {
            let fd = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail(&e))?;
            if !same_file(&st, &fstat(&fd).map_err(|e| fail(&e))?) {
                return Err(changed());
            }
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            out.append_data(&mut h, format!("{path}/"), std::io::empty())
                .map_err(|e| fail(&e))?;
            let mut names = Vec::new();
            for entry in Dir::read_from(&fd).map_err(|e| fail(&e))? {
                let entry = entry.map_err(|e| fail(&e))?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsStr::from_bytes(n).to_os_string());
                }
            }
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for n in names {
                let child = entry_name(&n).map_err(|e| fail(&e))?;
                capture_at(fd.as_fd(), &n, &format!("{path}/{child}"), out, budget)?;
            }
            Ok(())
        }
        FileType::RegularFile => {
            budget.bytes = budget.bytes.saturating_add(st.st_size as u64);
            if budget.bytes > MAX_CAPTURE_BYTES {
                return Err(format!("the files exceed {MAX_CAPTURE_BYTES} bytes"));
            }
            let fd = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail(&e))?;
            if !same_file(&st, &fstat(&fd).map_err(|e| fail(&e))?) {
                return Err(changed());
            }
            let size = st.st_size as u64;
            let mut data = Vec::with_capacity(size as usize);
            std::io::Read::take(std::fs::File::from(fd), size + 1)
                .read_to_end(&mut data)
                .map_err(|e| fail(&e))?;
            if data.len() as u64 != size {
                return Err(changed());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            out.append_data(&mut h, path, &data[..])
                .map_err(|e| fail(&e))
        }
        _ => Err(fail(&"not a regular file, directory or symlink")),
    }
}

/// A file name as it goes into the archive: UTF-8 without control
/// characters (the overlay's rule), else the capture is refused.
fn entry_name(name: &OsStr) -> Result<&str, String> {
    match name.to_str() {
        Some(n) if !n.chars().any(|c| c.is_control() || is_format_char(c)) => Ok(n),
        _ => Err(format!(
            "name {:?} is not UTF-8 or has control or invisible format characters",
            name.to_string_lossy()
        )),
    }
}

/// Packs `paths` (absolute) into a payload tar. Returns the tar and its
/// entry count.
///
/// Each listed path is taken as found: numeric owner, mode (special bits
/// included: approving them needs `--allow-special-bits`), mtime, and for
/// a directory everything below it, read through file descriptors that
/// never follow a symlink. The directories above a listed path are not
/// entries, so applying the capture leaves them as the node has them.
/// The admin's `approve` runs the archive through the overlay's rules.
pub fn pack(paths: &[PathBuf]) -> Result<(Vec<u8>, u64), String> {
    if paths.is_empty() {
        return Err("nothing to capture: give --path (or satchel.capture=)".into());
    }
    let mut listed = Vec::new();
    for p in paths {
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "{}: expected an absolute path without ..",
                p.display()
            ));
        }
        let parts: Vec<&OsStr> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((last, _)) = parts.split_last() else {
            return Err("capturing / as a whole is refused".into());
        };
        let names = parts
            .iter()
            .map(|n| entry_name(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", p.display()))?;
        listed.push((names.join("/"), p.clone(), last.to_os_string()));
    }
    // In name order, each once; a path inside a directory already listed
    // is part of it.
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    listed.dedup_by(|b, a| b.0 == a.0 || b.0.starts_with(&format!("{}/", a.0)));
    let mut out = tar::Builder::new(Vec::new());
    let mut budget = Budget {
        bytes: 0,
        entries: 0,
    };
    for (path, full, last) in &listed {
        let parent = full.parent().unwrap_or(Path::new("/"));
        let dir = openat(
            CWD,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{}: {e}", parent.display()))?;
        capture_at(dir.as_fd(), last, path, &mut out, &mut budget)?;
    }
    let tar = out.into_inner().map_err(|e| e.to_string())?;
    Ok((tar, budget.entries as u64))
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
        // An absolute symlink target is link content: kept verbatim...
        std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", etc.join("abs")).expect("ln");
        let (tar, _) = pack(&[etc.join("abs")]).expect("absolute link captured");
        let mut ar = tar::Archive::new(&tar[..]);
        let link = ar
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry"))
            .find(|e| e.header().entry_type() == tar::EntryType::Symlink)
            .and_then(|e| e.link_name().expect("link").map(|l| l.into_owned()))
            .expect("the link is in the capture");
        assert_eq!(link, PathBuf::from("/usr/share/zoneinfo/UTC"));
        // ... but one climbing above the root is refused by the packer's rules.
        std::os::unix::fs::symlink("/../etc/passwd", etc.join("up")).expect("ln");
        assert!(pack(&[etc.join("up")]).is_err());
    }

    /// (name, kind, mode, uid, gid) of every entry.
    fn listing(tar: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, u64)> {
        let mut ar = tar::Archive::new(tar);
        ar.entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").display().to_string(),
                    h.entry_type(),
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.gid().expect("gid"),
                )
            })
            .collect()
    }

    #[test]
    fn owners_and_modes_are_kept_as_found_and_parents_are_not_entries() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let t = tempfile::tempdir().expect("tmp");
        let tool = t.path().join("home/user/bin/tool");
        std::fs::create_dir_all(tool.parent().expect("parent")).expect("mkdir");
        std::fs::write(&tool, "#!/bin/sh\n").expect("w");
        let scratch = t.path().join("tmp");
        std::fs::create_dir(&scratch).expect("mkdir");
        // As root (CI), give them owners other than the capturing process
        // (before the modes: chown clears setuid).
        let root = rustix::process::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(&tool, Some(1000), Some(1000)).expect("chown");
            std::os::unix::fs::chown(&scratch, Some(0), Some(5)).expect("chown");
        }
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let (tar, entries) = pack(&[tool.clone(), scratch.clone()]).expect("pack");
        assert_eq!(entries, 2);
        let prefix = t
            .path()
            .strip_prefix("/")
            .expect("abs")
            .display()
            .to_string();
        let got = listing(&tar);
        let tm = std::fs::metadata(&tool).expect("meta");
        let sm = std::fs::metadata(&scratch).expect("meta");
        assert_eq!(
            got,
            [
                (
                    format!("{prefix}/home/user/bin/tool"),
                    tar::EntryType::Regular,
                    0o4755,
                    u64::from(tm.uid()),
                    u64::from(tm.gid())
                ),
                (
                    format!("{prefix}/tmp/"),
                    tar::EntryType::Directory,
                    0o1777,
                    u64::from(sm.uid()),
                    u64::from(sm.gid())
                ),
            ]
        );
        if root {
            assert_eq!((got[0].3, got[0].4), (1000, 1000));
            assert_eq!((got[1].3, got[1].4), (0, 5));
        }
    }

    #[test]
    fn a_symlink_inside_a_captured_directory_is_never_followed() {
        let t = tempfile::tempdir().expect("tmp");
        let secret = t.path().join("secret");
        std::fs::create_dir(&secret).expect("mkdir");
        std::fs::write(secret.join("key"), "do not capture").expect("w");
        let app = t.path().join("etc/app.d");
        std::fs::create_dir_all(&app).expect("mkdir");
        // An in-tree link to a directory is captured as a link, and what it
        // points at is not read through it.
        std::fs::create_dir(app.join("real")).expect("mkdir");
        std::fs::write(app.join("real/x.conf"), "x").expect("w");
        std::os::unix::fs::symlink("real", app.join("alias")).expect("ln");
        let (tar, _) = pack(std::slice::from_ref(&app)).expect("pack");
        let got = listing(&tar);
        let names: Vec<_> = got
            .iter()
            .map(|g| g.0.rsplit("app.d").next().unwrap_or(""))
            .collect();
        assert_eq!(names, ["/", "/alias", "/real/", "/real/x.conf"], "{got:?}");
        assert_eq!(got[1].1, tar::EntryType::Symlink);
        assert!(!String::from_utf8_lossy(&tar).contains("do not capture"));
        // A link that climbs above the node's root refuses the capture.
        let up = "../".repeat(app.components().count() + 1);
        std::os::unix::fs::symlink(format!("{up}secret/key"), app.join("out")).expect("ln");
        let e = pack(std::slice::from_ref(&app))
            .map(|(_, n)| n)
            .expect_err("link out of the root");
        assert!(e.contains("app.d/out"), "{e}");
        // A FIFO is refused without blocking on it.
        std::fs::remove_file(app.join("out")).expect("rm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            app.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        let e = pack(&[app]).map(|(_, n)| n).expect_err("fifo");
        assert!(e.contains("not a regular file"), "{e}");
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
