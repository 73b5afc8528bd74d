//! `approve UPLOAD --identity ADMIN_ID --mac MAC --serial N --sign-key K
//! --recipient R… -o OUT`: review a captured upload and turn it into a
//! signed host bundle.
//!
//! An upload (what `satchel-fetch capture` posts, see `FORMAT.md`,
//! "Uploads") is `tar | zstd | age`: a payload tar of paths relative to the
//! node's root, compressed, encrypted to the admins' X25519 recipients.
//! `uploads pull ID -o UPLOAD` writes it with its metadata in `UPLOAD.json`.
//!
//! # Invariants (checked in this order, before anything is written)
//! 1. The metadata names a valid upload id, the MAC given with `--mac`, and
//!    a sha256; the upload file (read once, at most [`MAX_UPLOAD_BYTES`])
//!    hashes to that sha256, and to `--sha256` when given: the approval is
//!    bound to the bytes the server received, so a different upload under
//!    the same id is refused.
//! 2. An upload that came without a node certificate needs
//!    `--allow-anonymous`.
//! 3. It decrypts with the admin identity only (passphrase files refused),
//!    decompresses within the bundle reader's zstd window limit and at most
//!    [`MAX_UPLOAD_TAR_BYTES`] of tar, and the tar passes every rule of the
//!    overlay (`create --from-tar`'s check).
//! 4. The file list and the diff against `--current` (the node's current
//!    bundle, decrypted with the same identity and required to be for the
//!    same MAC) are shown, and the admin confirms (or passes `--yes`).
//! 5. Only then the bundle is sealed, by the library's `seal`, exactly as
//!    `create --from-tar` would; the decrypted tar lives in a temporary file
//!    beside the output (mode 0600) and is removed on every exit path.

use std::io::{self, BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use satchel_format::diff::{self as bdiff, Diff};
use satchel_format::manifest::{format_time, Policy};
use satchel_format::open::MAX_ZSTD_WINDOW_LOG;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, SiteName, Target};
use satchel_overlay::{check_archive, Options};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::create::{parse_expires, signing_key};
use super::diff::{bundle_listing, summary, to_entries};
use super::profile::Profile;
use super::recipients::Recipients;
use super::uploads::{sidecar_path, UploadMeta};
use super::{admin_identities, manifest_json, manifest_lines, print_json, UsageError};

/// Largest upload file read (the server's default limit is 16 MiB).
pub const MAX_UPLOAD_BYTES: u64 = 256 << 20;
/// Most bytes of tar an upload may decompress to.
pub const MAX_UPLOAD_TAR_BYTES: u64 = 1 << 30;
/// Expiry of an approved bundle when `--expires` is not given.
pub const DEFAULT_EXPIRES: &str = "30d";

/// Arguments of `approve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The upload file written by `uploads pull` (its metadata is UPLOAD.json).
    pub upload: PathBuf,
    /// The upload's metadata (default: UPLOAD.json).
    #[arg(long, value_name = "FILE")]
    pub meta: Option<PathBuf>,
    /// Also require this sha256 (hex), e.g. the one `uploads list` showed.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// The admin's age identity: decrypts the upload and --current
    /// (default: the profile's `identity`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The node the bundle is for; must be the MAC the upload was posted for.
    #[arg(long, value_name = "MAC")]
    pub mac: String,
    /// The site the host belongs to (recorded in the manifest).
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// The bundle's serial; must be above the node's current one.
    #[arg(long, value_name = "N")]
    pub serial: u64,
    /// Expiry: a date, an RFC 3339 time, or a duration from now.
    #[arg(long, value_name = "DATE|DURATION", default_value = DEFAULT_EXPIRES)]
    pub expires: String,
    /// The admin's signing secret key (PKCS#8 PEM; default: the profile's `sign_key`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// An age recipient (age1…): the node's, and each admin's (added to the
    /// profile's `recipients`).
    #[arg(long = "recipient", value_name = "AGE1…")]
    pub recipients: Vec<String>,
    /// A recipients file: the node's enrollment recipients.txt ("<target>
    /// <age1…>" lines; only the node's own are used) or bare "age1…" lines.
    #[arg(long = "recipients", value_name = "FILE")]
    pub recipient_files: Vec<PathBuf>,
    /// Approve an upload that came without a node certificate.
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Approve an upload whose certificate does not bind its MAC (a site
    /// certificate, which every node of the site holds).
    #[arg(long)]
    pub allow_unbound_certificate: bool,
    /// Keep setuid, setgid, sticky and world-writable bits (signed policy).
    #[arg(long)]
    pub allow_special_bits: bool,
    /// The node's current bundle, to show what the approval changes.
    #[arg(long, value_name = "BUNDLE")]
    pub current: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The bundle file to write.
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    pub out: PathBuf,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads and checks the metadata sidecar.
fn read_meta(path: &Path) -> anyhow::Result<UploadMeta> {
    let text = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the upload's metadata {} (written by `uploads pull`)",
            path.display()
        )
    })?;
    let meta: UploadMeta = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not upload metadata", path.display()))?;
    if meta.id.is_empty() || !meta.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("{}: upload id {:?} is not hex", path.display(), meta.id);
    }
    if !is_hex64(&meta.sha256) {
        anyhow::bail!(
            "{}: sha256 {:?} is not 64 lowercase hex digits",
            path.display(),
            meta.sha256
        );
    }
    Ok(meta)
}

/// Reads the whole upload, at most [`MAX_UPLOAD_BYTES`].
fn read_upload(path: &Path) -> anyhow::Result<Vec<u8>> {
    satchel_names::file::read_bounded(path, MAX_UPLOAD_BYTES).with_context(|| {
        format!(
            "cannot take {} as an upload (at most {MAX_UPLOAD_BYTES} bytes)",
            path.display()
        )
    })
}

/// Decrypts and decompresses an upload into `out`; returns the tar's size.
pub fn decrypt_upload<W: Write>(bytes: &[u8], ids: &Identities, mut out: W) -> anyhow::Result<u64> {
    let decryptor = age::Decryptor::new(bytes).context("the upload is not an age file")?;
    if decryptor.is_scrypt() {
        anyhow::bail!("the upload is encrypted with a passphrase; uploads must be encrypted to the admins' recipients");
    }
    let stream = decryptor
        .decrypt(ids.as_age().iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                anyhow::anyhow!("the upload is not encrypted to this identity (is it one of the admins' recipients?)")
            }
            e => anyhow::anyhow!("cannot decrypt the upload: {e}"),
        })?;
    let mut decoder =
        zstd::stream::read::Decoder::new(stream).context("the upload is not zstd inside age")?;
    decoder
        .window_log_max(MAX_ZSTD_WINDOW_LOG)
        .context("cannot limit the zstd window")?;
    let n = io::copy(&mut decoder.take(MAX_UPLOAD_TAR_BYTES + 1), &mut out).context(
        "cannot decompress the upload (not zstd, corrupt, or a zstd window over the limit)",
    )?;
    if n > MAX_UPLOAD_TAR_BYTES {
        anyhow::bail!("the upload decompresses to more than {MAX_UPLOAD_TAR_BYTES} bytes");
    }
    Ok(n)
}

/// Asks on the terminal; `false` unless the answer is yes.
fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Runs `approve`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    // Everything the command line says, before any file is read.
    let mac = Mac::parse(&a.mac).map_err(|e| UsageError(e.to_string()))?;
    let site = a
        .site
        .as_deref()
        .map(|s| SiteName::parse(s).map_err(|e| UsageError(e.to_string())))
        .transpose()?;
    let now = OffsetDateTime::now_utc();
    let expires = parse_expires(&a.expires, now)?;
    if expires <= now {
        return Err(
            UsageError(format!("--expires {} is in the past", format_time(expires))).into(),
        );
    }
    let profile = Profile::load()?;
    let (recipients, _) = Recipients::gather(&a.recipients, &a.recipient_files, &profile)?
        .for_target(&Target::Host(mac));
    if recipients.is_empty() {
        return Err(UsageError(format!(
            "no recipient: give --recipient AGE1… or --recipients FILE, or set `recipients` in {}",
            profile.describe()
        ))
        .into());
    }
    if let Some(pin) = &a.sha256 {
        if !is_hex64(pin) {
            return Err(
                UsageError(format!("--sha256 {pin:?} is not 64 lowercase hex digits")).into(),
            );
        }
    }
    if !a.yes && (super::json_output() || !io::stdin().is_terminal()) {
        return Err(UsageError(
            "approve asks for confirmation on a terminal: review the upload (run without --json on a terminal) or pass --yes".into(),
        )
        .into());
    }

    // 1. The upload is the one the server received for this MAC.
    let meta_path = a.meta.clone().unwrap_or_else(|| sidecar_path(&a.upload));
    let meta = read_meta(&meta_path)?;
    let meta_mac =
        Mac::parse(&meta.mac).with_context(|| format!("{}: bad mac", meta_path.display()))?;
    if meta_mac != mac {
        anyhow::bail!(
            "upload {} was posted for {meta_mac}, not for --mac {mac}: refusing to approve it for another node",
            meta.id
        );
    }
    let bytes = read_upload(&a.upload)?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != meta.sha256 {
        anyhow::bail!(
            "{} has sha256 {actual}, but upload {} was received with sha256 {}: this is not the upload the server received; pull it again",
            a.upload.display(),
            meta.id,
            meta.sha256
        );
    }
    if let Some(pin) = &a.sha256 {
        if *pin != actual {
            anyhow::bail!(
                "upload {} has sha256 {actual}, not the --sha256 {pin} given",
                meta.id
            );
        }
    }
    // 2. Anonymous uploads need an explicit decision.
    if meta.is_anonymous() && !a.allow_anonymous {
        anyhow::bail!(
            "upload {} came from {} without a node certificate: anyone on the network could have sent it; \
             approve it only with --allow-anonymous after checking its contents",
            meta.id,
            meta.source
        );
    }

    if !meta.is_anonymous() && !meta.binds_mac() && !a.allow_unbound_certificate {
        anyhow::bail!(
            "upload {} for {}: {}; approve it only with --allow-unbound-certificate after checking its contents",
            meta.id,
            meta.mac,
            meta.proof()
        );
    }

    // 3. Decrypt into a private temporary file, then the overlay's rules.
    let ids = admin_identities(&a.identity, &profile)?;
    let key = signing_key(&a.sign_key, &profile)?;
    let dir = match a.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tar = tempfile::Builder::new()
        .prefix(".satchel-upload-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    decrypt_upload(&bytes, &ids, io::BufWriter::new(tar.as_file_mut()))
        .with_context(|| format!("upload {} ({})", meta.id, a.upload.display()))?;
    drop(bytes);
    tar.as_file_mut().seek(SeekFrom::Start(0))?;
    let opts = Options {
        allow_special_bits: a.allow_special_bits,
        ..Options::default()
    };
    let listed =
        check_archive(io::BufReader::new(tar.as_file_mut()), &opts).with_context(|| {
            format!(
                "upload {} is refused by the overlay's archive rules",
                meta.id
            )
        })?;
    let files = to_entries(&listed.entries);

    // 4. Show what it holds and what it changes; confirm.
    let current = match &a.current {
        Some(path) => {
            let (manifest, entries) = bundle_listing(path, &ids)?;
            if manifest.target != Target::Host(mac) {
                anyhow::bail!(
                    "--current {} is a bundle for {}, not for host/{mac}",
                    path.display(),
                    manifest.target
                );
            }
            Some((path.clone(), manifest, to_entries(&entries)))
        }
        None => None,
    };
    let diff: Option<Diff> = current.as_ref().map(|(_, _, old)| bdiff::diff(old, &files));
    if !super::json_output() {
        println!(
            "upload {} for {mac}: {} bytes, sha256 {}, from {} ({}), received {}",
            meta.id,
            meta.size,
            meta.sha256,
            meta.source,
            meta.cert_scope
                .as_deref()
                .map(|s| format!("cert {s}"))
                .unwrap_or("ANONYMOUS".into()),
            meta.received
        );
        println!("the certificate proves: {}", meta.proof());
        println!(
            "files ({} entries, {} bytes of data):",
            files.len(),
            listed.file_bytes
        );
        for f in &files {
            let extra = match (&f.sha256, &f.link_target) {
                (Some(h), _) => format!("sha256 {}", &h[..h.len().min(12)]),
                (None, Some(t)) => format!("-> {t}"),
                _ => String::new(),
            };
            println!(
                "  {:?} {:04o} {:>5}:{:<5} {:>9}  {}  {extra}",
                f.kind, f.mode, f.uid, f.gid, f.size, f.path
            );
        }
        match (&current, &diff) {
            (Some((path, m, _)), Some(d)) => {
                println!(
                    "changes against the current bundle {} (serial {}):",
                    path.display(),
                    m.serial
                );
                for line in d.lines() {
                    println!("  {line}");
                }
                println!("  {}", summary(d));
                if a.serial <= m.serial {
                    println!("  warning: --serial {} is not above the current serial {}: the server will refuse it", a.serial, m.serial);
                }
            }
            _ => println!(
                "no --current bundle given: every file above is new to the node's host bundle"
            ),
        }
    }
    if !a.yes
        && !confirm(&format!(
            "sign this upload as {} serial {}?",
            Target::Host(mac),
            a.serial
        ))?
    {
        anyhow::bail!("not approved: nothing written");
    }

    // 5. Seal, exactly as `create --from-tar`.
    let params = SealParams {
        target: Target::Host(mac),
        site,
        serial: a.serial,
        created: now,
        expires,
        policy: Policy {
            allow_special_bits: a.allow_special_bits,
        },
        recipients,
    };
    let file = tar.reopen().context("cannot reopen the decrypted upload")?;
    let counter = AtomicU64::new(0);
    let entries = listed.entries.len() as u64;
    let sealed =
        super::progress::with_progress("sealing", Some(listed.tar_bytes), &counter, || {
            seal_to_file(
                &params,
                Source::Tar { file, entries },
                &key,
                &a.out,
                &counter,
            )
        })
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    drop(tar);
    if super::json_output() {
        print_json(&json!({
            "approved": meta,
            "files": files,
            "diff": diff,
            "bundle": a.out,
            "size": sealed.bundle_size,
            "manifest": manifest_json(&sealed.manifest),
        }))?;
    } else {
        println!("approved upload {} (sha256 {})", meta.id, meta.sha256);
        println!("wrote {} ({} bytes)", a.out.display(), sealed.bundle_size);
        for line in manifest_lines(&sealed.manifest) {
            println!("  {line}");
        }
        println!(
            "next: satchel-bundle publish {} …, then satchel-bundle uploads reject {} … to clear the quarantine",
            a.out.display(),
            meta.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
