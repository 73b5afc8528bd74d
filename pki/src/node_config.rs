//! The node configuration file a boot image carries (`satchel.toml`).
//!
//! `satchel-pki enroll` writes it next to the credentials it names; the
//! fetcher reads it at every boot. Paths in it are relative to the file's own
//! directory, so the credential set can be moved into an initrd as a whole.
//!
//! Invariant: a [`NodeConfig`] that [`NodeConfig::parse`] returned names
//! exactly one scope (a host, optionally with its site, or a site), every
//! floor and required bundle is a target of that scope, and it has at least
//! one trusted signer key and one age identity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use satchel_names::{Mac, SiteName, Target};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The file name `enroll` writes and the fetcher looks for.
pub const NODE_CONFIG_FILE: &str = "satchel.toml";

/// Largest node config file accepted, in bytes.
pub const MAX_NODE_CONFIG_BYTES: u64 = 64 * 1024;

/// Errors from reading or validating a node config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeConfigError {
    /// The file could not be read.
    #[error("cannot read node config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Over [`MAX_NODE_CONFIG_BYTES`].
    #[error("node config {path} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not valid TOML for this type.
    #[error("node config is not valid: {0}")]
    Syntax(#[from] toml::de::Error),
    /// Valid TOML but inconsistent.
    #[error("node config is not valid: {0}")]
    Invalid(String),
}

/// What one boot image knows about itself and whom it trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Format version of this file; currently 1.
    pub version: u32,
    /// The node's MAC, for a per-host image. `None` for a site-wide image
    /// (the MAC then comes from `BOOTIF=` or the first interface with carrier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// The site this image belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteName>,
    /// DNS domain under which `_satchel._tcp.<domain>` SRV records name the servers.
    pub domain: String,
    /// Optional `HOST:PORT` tried when SRV discovery fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// PEM CA certificate: the only root the fetcher trusts for the server.
    pub ca_cert: PathBuf,
    /// PEM client certificate presented to the server.
    pub client_cert: PathBuf,
    /// PEM (PKCS#8) private key of the client certificate.
    pub client_key: PathBuf,
    /// age identity files (X25519) that can decrypt this node's bundles:
    /// the host identity and/or the site identity.
    pub identities: Vec<PathBuf>,
    /// PEM SPKI ed25519 public keys of the admins whose signatures are trusted.
    pub signers: Vec<PathBuf>,
    /// age recipients (`age1…`) that captured uploads are encrypted to.
    #[serde(default)]
    pub admin_recipients: Vec<String>,
    /// The clock floor: the image's build time. The fetcher uses
    /// `max(clock, clock_floor)` for expiry checks.
    #[serde(with = "time::serde::rfc3339")]
    pub clock_floor: OffsetDateTime,
    /// Lowest acceptable serial per target (`host/<mac>` or `site/<name>`).
    #[serde(default)]
    pub floors: BTreeMap<String, u64>,
    /// Targets (`host/<mac>`, `site/<name>`) whose bundle must be present;
    /// a required bundle missing from the boot index is a failure.
    #[serde(default)]
    pub required: Vec<String>,
}

impl NodeConfig {
    /// Parses and validates the TOML text.
    pub fn parse(text: &str) -> Result<Self, NodeConfigError> {
        let cfg: NodeConfig = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a file, refusing one over [`MAX_NODE_CONFIG_BYTES`].
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let io = |source| NodeConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_NODE_CONFIG_BYTES {
            return Err(NodeConfigError::TooLarge {
                path: path.to_path_buf(),
                size,
                max: MAX_NODE_CONFIG_BYTES,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        // Serialising this plain struct cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The targets this image may apply, in apply order (site, then host).
    pub fn targets(&self) -> Vec<Target> {
        let mut v = Vec::new();
        if let Some(s) = &self.site {
            v.push(Target::Site(s.clone()));
        }
        if let Some(m) = &self.mac {
            v.push(Target::Host(*m));
        }
        v
    }

    /// The serial floor for a target (0 when none is set).
    pub fn floor(&self, target: &Target) -> u64 {
        self.floors.get(&target.to_string()).copied().unwrap_or(0)
    }

    /// Whether the image requires this target's bundle.
    pub fn is_required(&self, target: &Target) -> bool {
        let key = target.to_string();
        self.required.contains(&key)
    }

    /// Resolves a path of this config against the directory holding the file.
    pub fn resolve(&self, base: &Path, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    }

    fn validate(&self) -> Result<(), NodeConfigError> {
        let bad = |m: String| Err(NodeConfigError::Invalid(m));
        if self.version != 1 {
            return bad(format!(
                "unsupported version {} (this fetcher reads version 1)",
                self.version
            ));
        }
        if self.mac.is_none() && self.site.is_none() {
            return bad("neither mac nor site is set: the image has no scope".into());
        }
        if self.domain.is_empty() || self.domain.len() > 253 {
            return bad(format!("domain {:?} is empty or too long", self.domain));
        }
        if self.identities.is_empty() {
            return bad("no age identity: the node could not decrypt any bundle".into());
        }
        if self.signers.is_empty() {
            return bad("no trusted signer key: the node could not accept any bundle".into());
        }
        for r in &self.admin_recipients {
            if !r.starts_with("age1") {
                return bad(format!(
                    "admin recipient {r:?} is not an age1… X25519 recipient"
                ));
            }
        }
        let mine: Vec<String> = self.targets().iter().map(Target::to_string).collect();
        for key in self.floors.keys().chain(self.required.iter()) {
            let t: Target = key
                .parse()
                .map_err(|e| NodeConfigError::Invalid(format!("target {key:?}: {e}")))?;
            if !mine.contains(&t.to_string()) || t.to_string() != *key {
                return bad(format!(
                    "target {key:?} is not one this image applies (it applies {mine:?})"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
mac = "aa-bb-cc-dd-ee-ff"
site = "dc1"
domain = "boot.example.test"
ca_cert = "ca.crt"
client_cert = "node.crt"
client_key = "node.key"
identities = ["host.agekey", "site.agekey"]
signers = ["signers/alice.pub"]
admin_recipients = ["age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"]
clock_floor = "2026-11-24T00:00:00Z"
required = ["site/dc1", "host/aa-bb-cc-dd-ee-ff"]

[floors]
"host/aa-bb-cc-dd-ee-ff" = 3
"site/dc1" = 1
"#;

    #[test]
    fn parses_and_round_trips() {
        let c = NodeConfig::parse(GOOD).expect("good");
        assert_eq!(c.targets().len(), 2);
        assert_eq!(c.floor(&c.targets()[1]), 3);
        assert!(c.is_required(&c.targets()[0]));
        assert_eq!(NodeConfig::parse(&c.to_toml()).expect("again"), c);
    }

    #[test]
    fn hostile_configs_are_refused() {
        let cases = [
            GOOD.replace("version = 1", "version = 2"),
            GOOD.replace("mac = \"aa-bb-cc-dd-ee-ff\"\n", "")
                .replace("site = \"dc1\"\n", ""),
            GOOD.replace("aa-bb-cc-dd-ee-ff\"\nsite", "AA:BB:CC:DD:EE:FF\"\nsite"),
            GOOD.replace("site = \"dc1\"", "site = \"DC1\""),
            GOOD.replace(
                "identities = [\"host.agekey\", \"site.agekey\"]",
                "identities = []",
            ),
            GOOD.replace("signers = [\"signers/alice.pub\"]", "signers = []"),
            GOOD.replace("age1qyq", "AGE-SECRET-KEY-1"),
            GOOD.replace("\"site/dc1\" = 1", "\"site/dc2\" = 1"),
            GOOD.replace(
                "required = [\"site/dc1\"",
                "required = [\"host/00-00-00-00-00-01\"",
            ),
            GOOD.replace(
                "clock_floor = \"2026-11-24T00:00:00Z\"",
                "clock_floor = \"yesterday\"",
            ),
            format!("{GOOD}\nunknown_field = true\n"),
            GOOD.replace("domain = \"boot.example.test\"", "domain = \"\""),
            "\0\0\0".to_string(),
            "version = ".to_string(),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(NodeConfig::parse(c).is_err(), "case {i} was accepted:\n{c}");
        }
    }
}
