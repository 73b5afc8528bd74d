//! `manifest.json`: what a bundle says about itself, signed by an admin.
//!
//! The manifest is a JSON object (see `FORMAT.md` for an example); it is
//! parsed with a size bound ([`MAX_MANIFEST_BYTES`]), its `format` is checked
//! first ([`FORMAT_VERSION`] only), and then every field is checked: unknown
//! fields, missing fields and non-canonical targets are refused. It never
//! holds file names: those stay inside the encrypted payload.
//!
//! Parsing is pure (bytes in, [`Manifest`] out); the signature is checked by
//! [`crate::verify`] over the exact bytes, never over a re-serialisation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::error::ManifestError;
use crate::keys::KeyId;
use satchel_names::{SiteName, Target};

/// The manifest format this library writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Largest `manifest.json` accepted. A real manifest is ~500 bytes; the bound
/// keeps a hostile container from making the reader buffer much.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;

/// Everything a signed manifest says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format: u32,
    /// What the bundle is for: `host/<mac>` or `site/<name>`.
    #[serde(with = "target_text")]
    pub target: Target,
    /// For a host bundle, the site the host belongs to (used by the server
    /// to let that site's certificates fetch it). Never set on a site bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteName>,
    /// Grows per target; nodes refuse serials below the floor they carry.
    pub serial: u64,
    /// When the bundle was made (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When the bundle stops being accepted (RFC 3339). Mandatory.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// What `payload.age` holds.
    pub payload: PayloadInfo,
    /// Key id of the signing key.
    #[serde(with = "key_id_text")]
    pub signer: KeyId,
    /// How the overlay treats the payload.
    #[serde(default)]
    pub policy: Policy,
}

/// The payload's digest, sizes and entry count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadInfo {
    /// sha256 of the `payload.age` member's bytes.
    #[serde(with = "sha256_hex")]
    pub sha256: [u8; 32],
    /// Size of `payload.age` (the encrypted, compressed tar).
    pub compressed_size: u64,
    /// Size of the tar once decrypted and decompressed.
    pub uncompressed_size: u64,
    /// Number of entries in the tar (PAX/GNU extension headers not counted).
    pub entries: u64,
}

/// Overlay policy carried by the signed manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep setuid, setgid, sticky and world-writable bits (dropped otherwise).
    #[serde(default)]
    pub allow_special_bits: bool,
}

impl Manifest {
    /// Parses and checks manifest bytes: size bound, then `format`, then
    /// every field.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                max: MAX_MANIFEST_BYTES,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ManifestError::Json("not a JSON object".into()))?;
        match obj.get("format") {
            None => return Err(ManifestError::MissingVersion),
            Some(v) if v.as_u64() == Some(u64::from(FORMAT_VERSION)) => {}
            Some(v) => {
                return Err(ManifestError::UnsupportedVersion {
                    found: v.to_string().chars().take(40).collect(),
                    supported: FORMAT_VERSION,
                })
            }
        }
        // Parsed again from the bytes (not from `value`, which keeps only the
        // last of duplicate keys) so that duplicate fields are refused.
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks the rules serde cannot express.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                found: self.format.to_string(),
                supported: FORMAT_VERSION,
            });
        }
        if matches!(self.target, Target::Site(_)) && self.site.is_some() {
            return Err(ManifestError::Invalid(
                "\"site\" is only allowed on host bundles".into(),
            ));
        }
        if self.expires <= self.created {
            return Err(ManifestError::Invalid(
                "\"expires\" must be after \"created\"".into(),
            ));
        }
        Ok(())
    }

    /// The bytes to sign and store: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        self.check()?;
        let mut out =
            serde_json::to_vec_pretty(self).map_err(|e| ManifestError::Json(e.to_string()))?;
        out.push(b'\n');
        if out.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                max: MAX_MANIFEST_BYTES,
            });
        }
        Ok(out)
    }
}

/// Formats a time the way manifests write it: RFC 3339, UTC, whole seconds.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

mod target_text {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Target, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let text = String::deserialize(d)?;
        let target: Target = text.parse().map_err(serde::de::Error::custom)?;
        // One spelling only: `host/` plus the canonical MAC.
        if target.to_string() != text {
            return Err(serde::de::Error::custom(format!(
                "target {text:?} is not in canonical form {target}"
            )));
        }
        Ok(target)
    }
}

mod key_id_text {
    use super::*;

    pub fn serialize<S: Serializer>(k: &KeyId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(k)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod sha256_hex {
    use super::*;

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if text.len() != 64
            || text
                .bytes()
                .any(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(serde::de::Error::custom(
                "sha256 must be 64 lowercase hex digits",
            ));
        }
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// A valid manifest for tests.
#[cfg(test)]
pub(crate) fn sample() -> Manifest {
    use satchel_names::Mac;
    {
        Manifest {
            format: FORMAT_VERSION,
            target: Target::Host(Mac::from_octets([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])),
            site: Some(SiteName::parse("dc1").unwrap()),
            serial: 7,
            created: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            expires: OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
            payload: PayloadInfo {
                sha256: [0x5a; 32],
                compressed_size: 1234,
                uncompressed_size: 10240,
                entries: 3,
            },
            signer: "0123456789abcdef".parse().unwrap(),
            policy: Policy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> String {
        String::from_utf8(sample().to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(Manifest::parse(&bytes).unwrap(), sample());
        let t = text();
        assert!(t.contains("\"target\": \"host/aa-bb-cc-dd-ee-ff\""), "{t}");
        assert!(t.contains("\"created\": \"2027-01-15T08:00:00Z\""), "{t}");
    }

    #[test]
    fn hostile_manifests_are_refused() {
        let t = text();
        let cases: Vec<(String, &str)> = vec![
            (t.replace("\"format\": 1", "\"format\": 2"), "not supported"),
            (
                t.replace("\"format\": 1", "\"format\": \"1\""),
                "not supported",
            ),
            (t.replace("\"format\": 1,", ""), "no \"format\""),
            (
                t.replace("\"serial\": 7", "\"serial\": 7, \"extra\": 1"),
                "unknown field",
            ),
            (
                t.replace("\"entries\": 3", "\"entries\": 3, \"x\": 1"),
                "unknown field",
            ),
            (
                t.replace(
                    "\"allow_special_bits\": false",
                    "\"allow_special_bits\": false, \"y\": 0",
                ),
                "unknown field",
            ),
            (
                t.replace("host/aa-bb-cc-dd-ee-ff", "host/AA:BB:CC:DD:EE:FF"),
                "canonical",
            ),
            (t.replace("host/aa-bb-cc-dd-ee-ff", "node/x"), "invalid"),
            (
                t.replace("host/aa-bb-cc-dd-ee-ff", "site/dc1"),
                "only allowed on host",
            ),
            (t.replace("\"serial\": 7", "\"serial\": -1"), "invalid"),
            (
                t.replace("\"serial\": 7", "\"serial\": 18446744073709551616"),
                "invalid",
            ),
            (
                t.replace("2027-01-15T08:00:00Z", "2031-01-01T00:00:00Z"),
                "after",
            ),
            (t.replace("2027-01-15T08:00:00Z", "yesterday"), "invalid"),
            (t.replace(&"5a".repeat(32), &"5A".repeat(32)), "hex"),
            (t.replace(&"5a".repeat(32), "5a"), "hex"),
            (t.replace("0123456789abcdef", "0123"), "key id"),
            (
                t.replace("\"serial\": 7,", "\"serial\": 7, \"serial\": 8,"),
                "duplicate",
            ),
            ("[]".into(), "not a JSON object"),
            ("{".into(), "JSON"),
            (format!("{t} x"), "JSON"),
        ];
        for (input, want) in cases {
            let err = Manifest::parse(input.as_bytes())
                .expect_err(&input)
                .to_string();
            assert!(err.contains(want), "{want:?} not in {err:?} for {input}");
        }
    }

    #[test]
    fn expires_is_mandatory() {
        let t = text();
        let start = t.find("  \"expires\"").unwrap();
        let end = start + t[start..].find('\n').unwrap() + 1;
        let without = format!("{}{}", &t[..start], &t[end..]);
        let err = Manifest::parse(without.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("expires"), "{err}");
    }

    #[test]
    fn size_bound_is_checked_before_parsing() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(&big),
            Err(ManifestError::TooLarge { .. })
        ));
    }

    #[test]
    fn policy_defaults_to_false() {
        let t = text().replace(
            ",\n  \"policy\": {\n    \"allow_special_bits\": false\n  }",
            "",
        );
        assert!(!t.contains("policy"), "{t}");
        assert!(
            !Manifest::parse(t.as_bytes())
                .unwrap()
                .policy
                .allow_special_bits
        );
    }

    proptest::proptest! {
        /// Any field values round-trip through the bytes that are signed.
        #[test]
        fn any_manifest_round_trips(
            serial in proptest::prelude::any::<u64>(),
            sizes in proptest::prelude::any::<(u64, u64, u64)>(),
            sha in proptest::prelude::any::<[u8; 32]>(),
            mac in proptest::prelude::any::<[u8; 6]>(),
            created in 0i64..4_000_000_000,
            life in 1i64..1_000_000_000,
            special in proptest::prelude::any::<bool>(),
        ) {
            let mut m = sample();
            m.serial = serial;
            m.payload = PayloadInfo { sha256: sha, compressed_size: sizes.0, uncompressed_size: sizes.1, entries: sizes.2 };
            m.target = Target::Host(satchel_names::Mac::from_octets(mac));
            m.created = OffsetDateTime::from_unix_timestamp(created).unwrap();
            m.expires = OffsetDateTime::from_unix_timestamp(created + life).unwrap();
            m.policy.allow_special_bits = special;
            proptest::prop_assert_eq!(Manifest::parse(&m.to_bytes().unwrap()).unwrap(), m);
        }

        /// Any bytes: a refusal or a manifest, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = Manifest::parse(&bytes);
        }
    }
}
