//! Enrollment: the credential set a node's boot image carries.
//!
//! `OUTDIR` (created 0700, must not exist or be empty) receives:
//!
//! ```text
//! satchel.toml          NodeConfig; its paths are relative to OUTDIR
//! ca.crt                the only root the fetcher trusts
//! client.crt            host certificate (--mac) or site certificate (--site alone)
//! client.key            its key (0600)
//! host.agekey           a new X25519 identity for this host (--mac; 0600)
//! site.agekey           the site's identity, created once in DIR/sites and reused (0600)
//! signers/<keyid>.pub   the trusted ed25519 signer keys (PEM SPKI), keyid = hex of sha256(raw key)[..8]
//! recipients.txt        "<target> <age1…>" per identity: what bundles are encrypted to
//! ```
//!
//! Invariants: the written `satchel.toml` parses with [`NodeConfig::parse`];
//! every secret is 0600; a site identity is generated at most once per CA
//! directory and its creation is a ledger line; every host identity's
//! recipient is a ledger line too, so admins can find it later.
//!
//! It does not build the initrd (the bundle tool packs OUTDIR).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use satchel_names::{Mac, SiteName, Target};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::ca::{write_public, write_secret, write_secret_whole, Ca, CaError};
use crate::layout;
use crate::ledger::Event;
use crate::node_config::{NodeConfig, NODE_CONFIG_FILE};
use crate::profile::parse_dns_name;

/// Largest signer public key file read, in bytes.
pub const MAX_SIGNER_FILE_BYTES: u64 = 16 * 1024;
/// Most signer keys and most admin recipients in one image.
pub const MAX_SIGNERS: usize = 64;
/// File names inside OUTDIR.
pub const CLIENT_CERT: &str = "client.crt";
/// The client key inside OUTDIR.
pub const CLIENT_KEY: &str = "client.key";
/// The host identity inside OUTDIR.
pub const HOST_IDENTITY: &str = "host.agekey";
/// The site identity inside OUTDIR.
pub const SITE_IDENTITY: &str = "site.agekey";
/// The recipients list inside OUTDIR.
pub const RECIPIENTS: &str = "recipients.txt";
/// The signer keys folder inside OUTDIR.
pub const SIGNERS_DIR: &str = "signers";

/// Errors specific to enrollment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// A CA operation failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
}

/// What to enroll.
#[derive(Clone, Debug, Default)]
pub struct EnrollOptions {
    /// The node, for a per-host image.
    pub mac: Option<Mac>,
    /// The site (alone: a site-wide image).
    pub site: Option<SiteName>,
    /// PEM SPKI ed25519 public key files of the trusted signers.
    pub signers: Vec<PathBuf>,
    /// Admins' age recipients for captured uploads.
    pub admin_recipients: Vec<String>,
    /// SRV domain.
    pub domain: String,
    /// Optional fallback `HOST:PORT`.
    pub server: Option<String>,
    /// Serial floors per target.
    pub floors: BTreeMap<Target, u64>,
    /// Required targets; `None` = every target the image applies.
    pub required: Option<Vec<Target>>,
    /// Client certificate validity override.
    pub validity_days: Option<u32>,
    /// The output directory.
    pub out: PathBuf,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Enrolled {
    /// The node config written to OUTDIR.
    pub config: NodeConfig,
    /// `(target, age recipient)` for every identity in the image.
    pub recipients: Vec<(String, String)>,
    /// Serial of the client certificate.
    pub client_serial: String,
}

/// Checks a `HOST:PORT` (hostname, IPv4 or `[IPv6]`, port 1–65535).
pub fn parse_host_port(s: &str) -> Result<String, EnrollError> {
    let bad = || EnrollError::Invalid(format!("server {s:?} is not HOST:PORT"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        return Ok(s.to_string());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(s.to_string());
    }
    let h = parse_dns_name(host).map_err(|_| bad())?;
    Ok(format!("{h}:{port}"))
}

/// Reads a PEM SPKI ed25519 public key; returns the PEM and the key id.
pub fn read_signer(path: &Path) -> Result<(String, String), EnrollError> {
    let bad = |m: &str| EnrollError::Invalid(format!("signer key {}: {m}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(&e.to_string()))?;
    if meta.len() > MAX_SIGNER_FILE_BYTES {
        return Err(bad("file too large"));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(&e.to_string()))?;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
        .map_err(|_| bad("no PEM \"PUBLIC KEY\" block"))?;
    let (rest, spki) =
        SubjectPublicKeyInfo::from_der(der.as_ref()).map_err(|_| bad("not an SPKI"))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the SPKI"));
    }
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(bad("not an ed25519 key"));
    }
    let raw: &[u8] = &spki.subject_public_key.data;
    if raw.len() != 32 {
        return Err(bad("ed25519 key is not 32 bytes"));
    }
    let id = hex::encode(&Sha256::digest(raw)[..8]);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64_lines(der.as_ref())
    );
    Ok((pem, id))
}

fn base64_lines(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn identity_file(id: &age::x25519::Identity, now: OffsetDateTime) -> String {
    let created = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "# created: {created}\n# public key: {}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    )
}

/// Reads an identity file written by [`identity_file`] (or age-keygen).
fn read_identity(path: &Path) -> Result<age::x25519::Identity, EnrollError> {
    let text = std::fs::read_to_string(path).map_err(|e| CaError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .and_then(|l| l.parse::<age::x25519::Identity>().ok())
        .ok_or_else(|| {
            EnrollError::Invalid(format!("{} holds no age X25519 identity", path.display()))
        })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EnrollError + '_ {
    move |source| {
        EnrollError::Ca(CaError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Ca {
    /// Where a site's identity file lives: `DIR/sites/<site>.agekey`.
    pub fn site_identity_path(&self, site: &SiteName) -> PathBuf {
        self.dir()
            .join(layout::SITES_DIR)
            .join(format!("{site}.agekey"))
    }

    /// The site's identity: read from `DIR/sites/<site>.agekey`, or created
    /// there (0600, recorded in the ledger) the first time.
    pub fn site_identity(&self, site: &SiteName) -> Result<age::x25519::Identity, EnrollError> {
        let dir = self.dir().join(layout::SITES_DIR);
        let path = self.site_identity_path(site);
        if path.exists() {
            return read_identity(&path);
        }
        // Under the lock: two enrollments of a new site create one identity.
        self.with_lock(|record| {
            if path.exists() {
                return read_identity(&path);
            }
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let id = age::x25519::Identity::generate();
            let now = OffsetDateTime::now_utc();
            // Read without the lock above: it must never be seen half-written.
            write_secret_whole(&path, identity_file(&id, now).as_bytes())?;
            record(
                Event::SiteIdentity {
                    site: site.to_string(),
                    recipient: id.to_public().to_string(),
                },
                now,
            )?;
            Ok(id)
        })
    }

    /// Writes a node's credential set to `opts.out` (see the module doc).
    pub fn enroll(&self, opts: &EnrollOptions) -> Result<Enrolled, EnrollError> {
        let invalid = |m: String| Err(EnrollError::Invalid(m));
        let now = OffsetDateTime::now_utc();
        if opts.mac.is_none() && opts.site.is_none() {
            return invalid("enroll needs --mac (a host image) or --site (a site image)".into());
        }
        if opts.signers.is_empty() || opts.signers.len() > MAX_SIGNERS {
            return invalid(format!("give 1 to {MAX_SIGNERS} --signer public keys"));
        }
        if opts.admin_recipients.len() > MAX_SIGNERS {
            return invalid(format!("at most {MAX_SIGNERS} --admin-recipient"));
        }
        for r in &opts.admin_recipients {
            if r.parse::<age::x25519::Recipient>().is_err() {
                return invalid(format!(
                    "admin recipient {:?} is not an age X25519 recipient (age1…)",
                    r.chars().take(80).collect::<String>()
                ));
            }
        }
        let domain = parse_dns_name(&opts.domain).map_err(|_| {
            EnrollError::Invalid(format!("domain {:?} is not a DNS name", opts.domain))
        })?;
        let server = opts.server.as_deref().map(parse_host_port).transpose()?;
        let mut targets = Vec::new();
        if let Some(s) = &opts.site {
            targets.push(Target::Site(s.clone()));
        }
        if let Some(m) = opts.mac {
            targets.push(Target::Host(m));
        }
        for t in opts.floors.keys().chain(opts.required.iter().flatten()) {
            if !targets.contains(t) {
                return invalid(format!(
                    "target {t} is not one this image applies ({})",
                    targets
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let signers = opts
            .signers
            .iter()
            .map(|p| read_signer(p))
            .collect::<Result<Vec<_>, _>>()?;

        // Output directory: new or empty, 0700.
        let out = &opts.out;
        let existed = out.exists();
        if existed {
            let mut rd = std::fs::read_dir(out).map_err(io(out))?;
            if rd.next().is_some() {
                return invalid(format!("{} exists and is not empty", out.display()));
            }
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(out)
                .map_err(io(out))?;
            let sdir = out.join(SIGNERS_DIR);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&sdir)
                .map_err(io(&sdir))?;
        }

        match self.write_image(opts, &signers, &targets, domain, server, now) {
            Ok(done) => Ok(done),
            Err(e) => {
                // Leave no half-written image behind.
                let _ = std::fs::remove_dir_all(out);
                if existed {
                    let _ = std::fs::create_dir(out);
                }
                Err(e)
            }
        }
    }

    fn write_image(
        &self,
        opts: &EnrollOptions,
        signers: &[(String, String)],
        targets: &[Target],
        domain: String,
        server: Option<String>,
        now: OffsetDateTime,
    ) -> Result<Enrolled, EnrollError> {
        let out = &opts.out;
        let mut recipients = Vec::new();
        let mut identities = Vec::new();
        if let Some(site) = &opts.site {
            let id = self.site_identity(site)?;
            // The very same file in every image of the site.
            let src = self.site_identity_path(site);
            let bytes = std::fs::read(&src).map_err(io(&src))?;
            write_secret(&out.join(SITE_IDENTITY), &bytes)?;
            identities.push(PathBuf::from(SITE_IDENTITY));
            recipients.push((format!("site/{site}"), id.to_public().to_string()));
        }
        let issued = match opts.mac {
            Some(mac) => {
                let id = age::x25519::Identity::generate();
                write_secret(&out.join(HOST_IDENTITY), identity_file(&id, now).as_bytes())?;
                identities.push(PathBuf::from(HOST_IDENTITY));
                let recipient = id.to_public().to_string();
                recipients.push((format!("host/{mac}"), recipient.clone()));
                let issued = self.issue_host(mac, opts.site.clone(), opts.validity_days)?;
                self.record_event(
                    Event::HostIdentity {
                        mac: mac.to_string(),
                        recipient,
                        client_serial: issued.serial_hex.clone(),
                    },
                    now,
                )?;
                issued
            }
            None => {
                let site = opts
                    .site
                    .clone()
                    .ok_or_else(|| EnrollError::Invalid("no scope".into()))?;
                self.issue_site(site, opts.validity_days)?
            }
        };
        write_public(&out.join(layout::CA_CERT), self.cert_pem().as_bytes())?;
        write_public(&out.join(CLIENT_CERT), issued.cert_pem.as_bytes())?;
        write_secret(&out.join(CLIENT_KEY), issued.key_pem.expose().as_bytes())?;
        let mut signer_paths = Vec::new();
        for (pem, id) in signers {
            let rel = PathBuf::from(SIGNERS_DIR).join(format!("{id}.pub"));
            if signer_paths.contains(&rel) {
                continue;
            }
            write_public(&out.join(&rel), pem.as_bytes())?;
            signer_paths.push(rel);
        }
        let recipients_text: String = recipients
            .iter()
            .map(|(t, r)| format!("{t} {r}\n"))
            .collect();
        write_public(&out.join(RECIPIENTS), recipients_text.as_bytes())?;

        let required = opts.required.clone().unwrap_or_else(|| targets.to_vec());
        let config = NodeConfig {
            version: 1,
            mac: opts.mac,
            site: opts.site.clone(),
            domain,
            server,
            ca_cert: PathBuf::from(layout::CA_CERT),
            client_cert: PathBuf::from(CLIENT_CERT),
            client_key: PathBuf::from(CLIENT_KEY),
            identities,
            signers: signer_paths,
            admin_recipients: opts.admin_recipients.clone(),
            clock_floor: now.replace_nanosecond(0).unwrap_or(now),
            floors: opts
                .floors
                .iter()
                .map(|(t, n)| (t.to_string(), *n))
                .collect(),
            required: required.iter().map(Target::to_string).collect(),
        };
        let text = config.to_toml();
        let checked = NodeConfig::parse(&text)
            .map_err(|e| EnrollError::Invalid(format!("generated node config: {e}")))?;
        write_public(&out.join(NODE_CONFIG_FILE), text.as_bytes())?;
        Ok(Enrolled {
            config: checked,
            recipients,
            client_serial: issued.serial_hex,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("Boot.Example.test:8443").ok().as_deref(),
            Some("boot.example.test:8443")
        );
        assert!(parse_host_port("127.0.0.1:1").is_ok());
        assert!(parse_host_port("[::1]:443").is_ok());
        for bad in [
            "",
            ":",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "host:-1",
            "ho st:1",
            "[::1:443",
            "[zz]:443",
            "::1:443",
            "*.x:1",
            "host:1:2",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64_matches_known_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_lines(i.as_bytes()), o);
        }
    }
}
