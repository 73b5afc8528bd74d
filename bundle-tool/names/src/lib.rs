//! `satchel_names`: the names of bundle targets — MAC addresses, site names,
//! and [`Target`] (one host or one site) — in their canonical forms.
//!
//! Invariant: a [`Mac`] always displays in the canonical form
//! `aa-bb-cc-dd-ee-ff` (lowercase, dash-separated), and a [`SiteName`] always
//! matches `[a-z0-9][a-z0-9-]{0,62}`. Every accepted input form is normalised
//! on parse; everything else is refused with a [`NameError`] that shows the
//! input.
//!
//! Beside the names it holds one helper every crate shares, the bounded
//! file read ([`file::read_bounded`]); nothing else: no bundle format, no
//! network. It is the bottom of satchel's crates — the bundle format, the
//! CA (`satchel-pki`), the server and the fetcher all name targets with it —
//! and depends on no other satchel crate.
//!
//! Layout: this file: [`Mac`], [`SiteName`], [`Target`], [`NameError`],
//! with their parsers, `Display` and serde forms; [`file`]: the bounded read.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

pub mod file;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors from parsing a MAC address or a site name.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The text is not a MAC address in any accepted form.
    #[error(
        "invalid MAC address {input:?}: expected aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, \
         aabb.ccdd.eeff, aabbccddeeff or BOOTIF=01-aa-bb-cc-dd-ee-ff"
    )]
    InvalidMac {
        /// What was given (truncated to 64 characters).
        input: String,
    },
    /// The text is not a valid site name.
    #[error("invalid site name {input:?}: expected 1-63 characters of [a-z0-9-], starting with a letter or digit")]
    InvalidSite {
        /// What was given (truncated to 64 characters).
        input: String,
    },
}

fn shown(input: &str) -> String {
    input.chars().take(64).collect()
}

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac([u8; 6]);

impl Mac {
    /// Builds a MAC from its six octets.
    pub const fn from_octets(octets: [u8; 6]) -> Self {
        Mac(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Parses any accepted form:
    /// `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` (either case),
    /// `aabb.ccdd.eeff`, `aabbccddeeff`, and the PXELINUX/iPXE forms
    /// `01-aa-bb-cc-dd-ee-ff` and `BOOTIF=01-aa-bb-cc-dd-ee-ff` (ARP type 1,
    /// Ethernet, only).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = || NameError::InvalidMac {
            input: shown(input),
        };
        let mut s = input.trim();
        if let Some(rest) = s
            .strip_prefix("BOOTIF=")
            .or_else(|| s.strip_prefix("bootif="))
        {
            s = rest.strip_prefix("01-").ok_or_else(err)?;
        } else if s.len() == 20 && s.starts_with("01-") {
            s = &s[3..];
        }
        let hex: String = match s.len() {
            // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff
            17 => {
                let b = s.as_bytes();
                let sep = b[2];
                if sep != b':' && sep != b'-' {
                    return Err(err());
                }
                for (i, c) in b.iter().enumerate() {
                    if i % 3 == 2 && *c != sep {
                        return Err(err());
                    }
                }
                s.split(sep as char).collect()
            }
            // aabb.ccdd.eeff
            14 => {
                let b = s.as_bytes();
                if b[4] != b'.' || b[9] != b'.' {
                    return Err(err());
                }
                s.split('.').collect()
            }
            12 => s.to_string(),
            _ => return Err(err()),
        };
        if hex.len() != 12 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut octets = [0u8; 6];
        for (i, o) in octets.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Mac(octets))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mac::parse(s)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    /// Deserialisation is strict: only the canonical form is accepted, so a
    /// signed manifest has exactly one spelling of its target.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mac = Mac::parse(&s).map_err(serde::de::Error::custom)?;
        if mac.to_string() != s {
            return Err(serde::de::Error::custom(format!(
                "MAC {s:?} is not in canonical form {mac}"
            )));
        }
        Ok(mac)
    }
}

/// Maximum length of a site name.
pub const SITE_NAME_MAX: usize = 63;

/// A datacenter/site name: `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteName(String);

impl SiteName {
    /// Validates a site name. Names are not case-folded: `DC1` is refused.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let b = input.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= SITE_NAME_MAX
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(SiteName(input.to_string()))
        } else {
            Err(NameError::InvalidSite {
                input: shown(input),
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteName({})", self.0)
    }
}

impl FromStr for SiteName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteName::parse(s)
    }
}

impl Serialize for SiteName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SiteName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SiteName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a bundle is for: one node, or one site.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A host bundle for one MAC.
    Host(Mac),
    /// A site (datacenter) bundle.
    Site(SiteName),
}

impl Target {
    /// The kind as used in URLs and store keys: `host` or `site`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Host(_) => "host",
            Target::Site(_) => "site",
        }
    }

    /// The name part: canonical MAC or site name.
    pub fn name(&self) -> String {
        match self {
            Target::Host(m) => m.to_string(),
            Target::Site(s) => s.to_string(),
        }
    }
}

impl fmt::Display for Target {
    /// `host/aa-bb-cc-dd-ee-ff` or `site/dc1`: the form used in URLs and keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind(), self.name())
    }
}

impl FromStr for Target {
    type Err = NameError;
    /// Parses `host/<mac>` or `site/<name>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(m) = s.strip_prefix("host/") {
            Ok(Target::Host(Mac::parse(m)?))
        } else if let Some(n) = s.strip_prefix("site/") {
            Ok(Target::Site(SiteName::parse(n)?))
        } else {
            Err(NameError::InvalidSite { input: shown(s) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_mac_forms_normalise() {
        let want = "aa-bb-cc-0d-ee-ff";
        for input in [
            "aa:bb:cc:0d:ee:ff",
            "AA:BB:CC:0D:EE:FF",
            "aa-bb-cc-0d-ee-ff",
            "AA-BB-CC-0D-EE-FF",
            "aabb.cc0d.eeff",
            "AABB.CC0D.EEFF",
            "aabbcc0deeff",
            "BOOTIF=01-aa-bb-cc-0d-ee-ff",
            "01-aa-bb-cc-0d-ee-ff",
            " aa:bb:cc:0d:ee:ff\n",
        ] {
            assert_eq!(
                Mac::parse(input).map(|m| m.to_string()),
                Ok(want.into()),
                "{input}"
            );
        }
    }

    #[test]
    fn hostile_mac_inputs_are_refused_with_the_input_shown() {
        for input in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb-cc:dd:ee:ff",
            "aa.bb.cc.dd.ee.ff",
            "gg:bb:cc:dd:ee:ff",
            "aabbccddeef",
            "aabbccddeeffa",
            "BOOTIF=06-aa-bb-cc-dd-ee-ff",
            "BOOTIF=aa-bb-cc-dd-ee-ff",
            "+a:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:f\u{e9}",
            "aabb:ccdd:eeff",
            "../../etc/passwd",
            "aa\0bb\0cc\0dd\0ee\0ff",
        ] {
            let e = Mac::parse(input).expect_err(input);
            let msg = e.to_string();
            assert!(msg.contains(&format!("{:?}", shown(input))), "{msg}");
        }
    }

    #[test]
    fn very_long_input_is_truncated_in_the_error() {
        let long = "a".repeat(10_000);
        let msg = Mac::parse(&long).expect_err("long").to_string();
        assert!(msg.len() < 400);
    }

    #[test]
    fn mac_serde_is_canonical_only() {
        let m: Mac = serde_json::from_str("\"aa-bb-cc-dd-ee-ff\"").expect("canonical");
        assert_eq!(
            serde_json::to_string(&m).expect("ser"),
            "\"aa-bb-cc-dd-ee-ff\""
        );
        assert!(serde_json::from_str::<Mac>("\"AA:BB:CC:DD:EE:FF\"").is_err());
    }

    #[test]
    fn site_names() {
        for ok in ["dc1", "a", "0", "rack-12", &"a".repeat(63)] {
            assert!(SiteName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-dc",
            "DC1",
            "dc_1",
            "dc.1",
            "dc/1",
            "dc 1",
            &"a".repeat(64),
            "dc\u{e9}",
        ] {
            assert!(SiteName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_round_trip() {
        for t in ["host/aa-bb-cc-dd-ee-ff", "site/dc1"] {
            assert_eq!(t.parse::<Target>().expect(t).to_string(), t);
        }
        assert!("node/x".parse::<Target>().is_err());
    }
}
