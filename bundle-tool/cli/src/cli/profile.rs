//! The admin profile: the settings every admin command would otherwise
//! repeat: the server connection (`--server --cert --key --ca
//! --server-name`), the admins' age identity (`--identity`), the signing key
//! (`--sign-key`) and the recipients every bundle is encrypted to besides
//! its node (`--recipient` / `--recipients`).
//!
//! Read from `$SATCHEL_ADMIN_CONFIG`, else `$XDG_CONFIG_HOME/satchel/admin.toml`,
//! else `~/.config/satchel/admin.toml`; a missing default file is an empty
//! profile, a missing `$SATCHEL_ADMIN_CONFIG` file an error. Relative paths
//! in it are relative to the file's directory. Flags always win.
//!
//! ```toml
//! server = "https://boot1.example.net"
//! cert = "alice-admin.crt"
//! key = "alice-admin.key"
//! ca = "ca.crt"
//! identity = "admins.agekey"
//! sign_key = "alice.key"
//! # age1… recipients, or recipients files ("<target> <age1…>" or "age1…" lines)
//! recipients = ["age1…", "/srv/satchel/enroll/recipients.txt"]
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Largest profile file read, in bytes.
pub const MAX_PROFILE_BYTES: u64 = 64 * 1024;

/// Environment variable naming the profile file.
pub const PROFILE_ENV: &str = "SATCHEL_ADMIN_CONFIG";

/// The admin profile; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `https://HOST[:PORT]`.
    pub server: Option<String>,
    /// The admin's client certificate.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The CA certificate.
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry.
    pub server_name: Option<String>,
    /// The admins' age identity (decrypts bundles and uploads).
    pub identity: Option<PathBuf>,
    /// The admin's signing secret key.
    pub sign_key: Option<PathBuf>,
    /// Recipients added to every bundle: `age1…` strings, or paths of
    /// recipients files.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Where it was read from, if anywhere.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Profile {
    /// The file the profile is read from, and whether it must exist.
    pub fn location() -> Option<(PathBuf, bool)> {
        if let Some(p) = std::env::var_os(PROFILE_ENV).filter(|p| !p.is_empty()) {
            return Some((PathBuf::from(p), true));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some((base.join("satchel/admin.toml"), false))
    }

    /// Reads the profile (empty when there is none).
    pub fn load() -> anyhow::Result<Profile> {
        let Some((path, required)) = Self::location() else {
            return Ok(Profile::default());
        };
        match satchel_names::file::read_bounded_text(&path, MAX_PROFILE_BYTES) {
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) && !required => {
                Ok(Profile::default())
            }
            Err(e) => Err(e).context("cannot read the admin profile"),
            Ok(text) => Self::parse(&text, &path),
        }
    }

    /// Parses a profile's text read from `path`.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Profile> {
        let mut p: Profile = toml::from_str(text)
            .with_context(|| format!("invalid admin profile {}", path.display()))?;
        p.source = Some(path.to_path_buf());
        Ok(p)
    }

    /// A path setting, resolved against the profile's directory.
    pub fn path_of(&self, p: &Option<PathBuf>) -> Option<PathBuf> {
        let p = p.as_ref()?;
        match self.source.as_ref().and_then(|s| s.parent()) {
            Some(dir) if p.is_relative() => Some(dir.join(p)),
            _ => Some(p.clone()),
        }
    }

    /// A flag's path, else the profile's (resolved beside the profile).
    pub fn or_flag(&self, flag: &Option<PathBuf>, setting: &Option<PathBuf>) -> Option<PathBuf> {
        flag.clone().or_else(|| self.path_of(setting))
    }

    /// Where a missing setting could be set, for error messages.
    pub fn describe(&self) -> String {
        match (&self.source, Self::location()) {
            (Some(s), _) => format!("the admin profile {}", s.display()),
            (None, Some((p, _))) => {
                format!("an admin profile ({}, or ${PROFILE_ENV})", p.display())
            }
            (None, None) => format!("an admin profile (${PROFILE_ENV})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_beside_the_profile_and_unknown_keys_are_refused() {
        let p = Profile::parse(
            "server = \"https://boot1.example.net\"\ncert = \"a.crt\"\nca = \"/etc/ca.crt\"\n",
            Path::new("/home/alice/.config/satchel/admin.toml"),
        )
        .expect("parse");
        assert_eq!(
            p.path_of(&p.cert),
            Some(PathBuf::from("/home/alice/.config/satchel/a.crt"))
        );
        assert_eq!(p.path_of(&p.ca), Some(PathBuf::from("/etc/ca.crt")));
        assert_eq!(p.path_of(&p.key), None);
        for bad in [
            "srever = \"x\"",
            "cert = 5",
            "recipients = 5",
            "[server]\nx=1",
        ] {
            assert!(Profile::parse(bad, Path::new("p.toml")).is_err(), "{bad}");
        }
    }
}
