//! `uploads list|pull|reject`: the server's upload quarantine, with the
//! admin certificate.
//!
//! `pull ID -o FILE` writes the upload's bytes to FILE and the server's
//! metadata to `FILE.json` (see [`UploadMeta`]); it refuses to write
//! anything when the bytes do not hash to the sha256 the server recorded
//! when it received them. `approve FILE` reads both.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use satchel_bundle::client::{Client, TlsFiles};
use satchel_names::Mac;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{print_json, UsageError};

/// The server and the admin's TLS files (shared by `uploads` and `publish`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server: https://HOST[:PORT] (default: the admin profile's `server`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The admin's client certificate, PEM (default: the profile's `cert`).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The admin's private key, PEM (default: the profile's `key`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The CA certificate, PEM: the only root trusted for the server
    /// (default: the profile's `ca`).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

impl ServerArgs {
    /// Whether a server is named, by flag or by the admin profile.
    pub fn configured(&self) -> anyhow::Result<bool> {
        Ok(self.server.is_some() || super::profile::Profile::load()?.server.is_some())
    }

    /// The client: each setting from its flag, else from the admin profile.
    pub fn client(&self) -> anyhow::Result<Client> {
        let profile = super::profile::Profile::load()?;
        let need = |flag: &Option<PathBuf>, from: Option<PathBuf>, name: &str| {
            flag.clone().or(from).ok_or_else(|| {
                UsageError(format!(
                    "no {name}: give --{name} or set `{name}` in {}",
                    profile.describe()
                ))
            })
        };
        let server = self
            .server
            .clone()
            .or_else(|| profile.server.clone())
            .ok_or_else(|| {
                UsageError(format!(
                    "no server: give --server or set `server` in {}",
                    profile.describe()
                ))
            })?;
        let files = TlsFiles {
            ca: need(&self.ca, profile.path_of(&profile.ca), "ca")?,
            cert: need(&self.cert, profile.path_of(&profile.cert), "cert")?,
            key: need(&self.key, profile.path_of(&profile.key), "key")?,
        };
        let server_name = self.server_name.clone().or(profile.server_name.clone());
        Client::new(&server, server_name.as_deref(), &files)
            .with_context(|| format!("cannot set up the connection to {server}"))
    }
}

/// `uploads` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Uploads {
    /// List the quarantined uploads.
    List {
        /// The server and credentials.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Download one upload to FILE and its metadata to FILE.json.
    Pull {
        /// The upload id (from `uploads list`).
        id: String,
        /// Where to write the upload.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
        /// The server and credentials.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete an upload from the quarantine (reject it, or clean up after approval).
    Reject {
        /// The upload id.
        id: String,
        /// The server and credentials.
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// What `pull` writes beside the upload, and `approve` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// The server's upload id.
    pub id: String,
    /// The MAC the upload was posted for.
    pub mac: String,
    /// Hex sha256 of the upload's bytes, as the server recorded it on receipt.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Source address of the upload's connection.
    pub source: String,
    /// When the server received it (RFC 3339).
    pub received: String,
    /// Scope of the client certificate it came with (`host/<mac>`,
    /// `site/<name>`), or `None` for an anonymous upload.
    pub cert_scope: Option<String>,
    /// Whether the server saw that certificate bind this MAC (a host
    /// certificate for this very MAC). A site certificate sits in every
    /// image of its site: it proves the site, not the MAC. Missing (an
    /// older server) reads as not binding.
    #[serde(default)]
    pub cert_binds_mac: bool,
}

impl UploadMeta {
    /// Came without a client certificate.
    pub fn is_anonymous(&self) -> bool {
        self.cert_scope.is_none()
    }

    /// Came with the node's own host certificate: the server says it binds
    /// the MAC, and the scope names that very MAC.
    pub fn binds_mac(&self) -> bool {
        self.cert_binds_mac && self.cert_scope.as_deref() == Some(&format!("host/{}", self.mac))
    }

    /// What the upload's certificate proves about who sent it, for a person.
    pub fn proof(&self) -> String {
        match &self.cert_scope {
            None => "nothing: it came without a certificate, anyone on the network could have sent it".into(),
            Some(_) if self.binds_mac() => {
                format!("the node's own host certificate: it was sent by {}", self.mac)
            }
            Some(s) => format!(
                "certificate {s} proves only that a node holding that key sent it, not that it was {}",
                self.mac
            ),
        }
    }
}

/// The sidecar path of an upload file: `FILE.json`.
pub fn sidecar_path(upload: &Path) -> PathBuf {
    let mut s = upload.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Upload ids are lowercase hex (as the server assigns them).
fn check_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(UsageError(format!("upload id {id:?} is not lowercase hex")).into());
    }
    Ok(())
}

fn server_error(what: &str, r: &satchel_bundle::client::Response) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: the server answered {}: {}",
        r.status,
        r.error_text()
    )
}

/// Runs `uploads`.
pub fn run(u: &Uploads) -> anyhow::Result<ExitCode> {
    match u {
        Uploads::List { server } => {
            let r = server.client()?.request(Method::GET, "/v1/uploads", None)?;
            if !r.is_success() {
                return Err(server_error("cannot list the uploads", &r));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).context("the server's upload list is not JSON")?;
            if super::json_output() {
                print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let list = v
                .get("uploads")
                .and_then(|l| l.as_array())
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                println!("no uploads in the quarantine");
            }
            for u in list {
                let s = |k: &str| u.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
                let size = u.get("size").and_then(|x| x.as_u64()).unwrap_or(0);
                let from = match u.get("cert_scope").and_then(|x| x.as_str()) {
                    Some(scope) => format!("cert {scope}"),
                    None => "ANONYMOUS".into(),
                };
                println!(
                    "{}  {}  {:>9} bytes  {}  from {} ({})  {}  sha256 {}",
                    s("id"),
                    s("mac"),
                    size,
                    s("received"),
                    s("source"),
                    from,
                    s("state"),
                    s("sha256")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Uploads::Pull { id, out, server } => {
            check_id(id)?;
            let r = server
                .client()?
                .request(Method::GET, &format!("/v1/uploads/{id}"), None)?;
            if !r.is_success() {
                return Err(server_error(&format!("cannot pull upload {id}"), &r));
            }
            let header = |n: &str| r.header(n).map(str::to_string);
            let recorded = header("x-satchel-sha256").ok_or_else(|| {
                anyhow::anyhow!("the server sent no x-satchel-sha256 for upload {id}")
            })?;
            let actual = hex::encode(Sha256::digest(&r.body));
            if actual != recorded {
                anyhow::bail!(
                    "upload {id} arrived with sha256 {actual}, but the server recorded {recorded} on receipt: nothing written"
                );
            }
            let mac = header("x-satchel-mac").unwrap_or_default();
            Mac::parse(&mac).map_err(|e| anyhow::anyhow!("the server's x-satchel-mac: {e}"))?;
            let meta = UploadMeta {
                id: id.clone(),
                mac,
                sha256: actual,
                size: r.body.len() as u64,
                source: header("x-satchel-source").unwrap_or_default(),
                received: header("x-satchel-received").unwrap_or_default(),
                cert_scope: header("x-satchel-cert-scope").filter(|s| s != "anonymous"),
                cert_binds_mac: header("x-satchel-cert-binds-mac").as_deref() == Some("true"),
            };
            let side = sidecar_path(out);
            std::fs::write(out, &r.body)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let text = serde_json::to_string_pretty(&meta)?;
            std::fs::write(&side, text + "\n")
                .with_context(|| format!("cannot write {}", side.display()))?;
            if super::json_output() {
                print_json(&json!({ "upload": out, "metadata": side, "meta": meta }))?;
            } else {
                println!(
                    "wrote {} ({} bytes) and {}",
                    out.display(),
                    meta.size,
                    side.display()
                );
                println!(
                    "  upload {} for {} from {} ({})",
                    meta.id,
                    meta.mac,
                    meta.source,
                    meta.cert_scope
                        .as_deref()
                        .map(|s| format!("cert {s}"))
                        .unwrap_or("ANONYMOUS".into())
                );
                println!("  sha256 {}", meta.sha256);
            }
            Ok(ExitCode::SUCCESS)
        }
        Uploads::Reject { id, server } => {
            check_id(id)?;
            let r = server
                .client()?
                .request(Method::DELETE, &format!("/v1/uploads/{id}"), None)?;
            if !r.is_success() {
                return Err(server_error(&format!("cannot reject upload {id}"), &r));
            }
            if super::json_output() {
                print_json(&json!({ "rejected": id }))?;
            } else {
                println!("upload {id} deleted from the quarantine");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_lowercase_hex_only() {
        for ok in ["0", "00000000000000a1", &"f".repeat(64)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "ABCDEF",
            "00ab/cd",
            "a b",
            "0x1f",
            "%2e%2e",
            &"a".repeat(65),
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sidecar_is_beside_the_upload() {
        assert_eq!(
            sidecar_path(Path::new("dir/up.bin")),
            Path::new("dir/up.bin.json")
        );
        assert_eq!(sidecar_path(Path::new("up")), Path::new("up.json"));
    }

    #[test]
    fn metadata_without_a_cert_is_anonymous() {
        let m: UploadMeta = serde_json::from_str(
            r#"{"id":"a1","mac":"aa-bb-cc-dd-ee-ff","sha256":"00","size":1,"source":"127.0.0.1","received":"x","cert_scope":null}"#,
        )
        .expect("meta");
        assert!(m.is_anonymous());
        // A missing field is an error, not a default: the sidecar is written by `pull`.
        assert!(serde_json::from_str::<UploadMeta>(r#"{"id":"a1"}"#).is_err());
    }
}
