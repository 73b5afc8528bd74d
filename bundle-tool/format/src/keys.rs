//! Keys: ed25519 signing keys (PEM), their key ids, and age X25519
//! identities and recipients.
//!
//! - Signing public keys are PEM SPKI (`-----BEGIN PUBLIC KEY-----`, what
//!   `openssl pkey -pubin` reads); secret keys are PEM PKCS#8
//!   (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey -algorithm
//!   ed25519` writes) and are written mode 0600.
//! - A [`KeyId`] is the hex of the first 8 bytes of sha256 over the raw
//!   32-byte public key.
//! - Age identities are X25519 only (`AGE-SECRET-KEY-1…`); plugin, ssh and
//!   passphrase identities are refused.
//!
//! Invariant: no secret reaches `Debug` or `Display`; [`SigningKey`]'s
//! `Debug` shows only its key id.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// Largest key, identity or recipient file read (keys are < 200 bytes; an
/// identity file may hold a few identities with comments).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Length of a key id in bytes (hex doubles it).
pub const KEY_ID_BYTES: usize = 8;

/// The id of a signing key: the first 8 bytes of sha256 over the raw public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_BYTES]);

impl KeyId {
    /// The id of a raw 32-byte ed25519 public key.
    pub fn of_raw_key(raw: &[u8; 32]) -> Self {
        let digest = Sha256::digest(raw);
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        KeyId(id)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_BYTES] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = String;
    /// Parses 16 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid key id {:?}: expected 16 lowercase hex digits",
                shown(s)
            )
        };
        if s.len() != 2 * KEY_ID_BYTES || s.bytes().any(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let mut id = [0u8; KEY_ID_BYTES];
        hex::decode_to_slice(s, &mut id).map_err(|_| bad())?;
        Ok(KeyId(id))
    }
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

/// An ed25519 public key that verifies bundle signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Parses a PEM SPKI public key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(VerifyingKey)
            .map_err(|e| KeyError::InvalidPublicKey {
                reason: e.to_string(),
            })
    }

    /// Reads a PEM SPKI public key file.
    pub fn read_pem_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&read_small_text(path)?)
    }

    /// The key as PEM SPKI text.
    pub fn to_pem(&self) -> String {
        // Encoding a valid key cannot fail; the error arm keeps clippy quiet
        // without an unwrap.
        self.0.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// The raw 32-byte key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Builds a key from its raw 32 bytes.
    pub fn from_bytes(raw: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(raw)
            .map(VerifyingKey)
            .map_err(|e| KeyError::InvalidPublicKey {
                reason: e.to_string(),
            })
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of_raw_key(&self.0.to_bytes())
    }

    /// Checks a signature over `message` (strict: no malleable or small-order
    /// signatures or keys).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.key_id())
    }
}

/// The DER of a PKCS#8 v1 ed25519 private key up to its 32-byte seed:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
/// OCTET STRING (32) } }`.
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An ed25519 secret key that signs bundle manifests.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// Generates a new key from the OS's random source.
    pub fn generate() -> Self {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Parses a PEM PKCS#8 secret key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(SigningKey)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    /// Reads a PEM PKCS#8 secret key file.
    pub fn read_pem_file(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(read_small_text(path)?);
        Self::from_pem(&text)
    }

    /// The key as PEM PKCS#8 text.
    ///
    /// Written as PKCS#8 v1 (RFC 8410: the 32-byte seed only, no public key
    /// field), exactly what `openssl genpkey -algorithm ed25519` writes, so
    /// that OpenSSL 3.0, which refuses the v2 form, reads it too.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let mut der = Zeroizing::new(PKCS8_V1_ED25519_PREFIX.to_vec());
        der.extend_from_slice(&self.0.to_bytes());
        ed25519_dalek::pkcs8::spki::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// The key id of the public key.
    pub fn key_id(&self) -> KeyId {
        self.verifying_key().key_id()
    }

    /// Signs `message` (the manifest's exact bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Writes `PREFIX.key` (PKCS#8, mode 0600, refused if it exists) and
    /// `PREFIX.pub` (SPKI). Returns the two paths.
    pub fn write_pair(
        &self,
        prefix: &Path,
    ) -> Result<(std::path::PathBuf, std::path::PathBuf), KeyError> {
        let mut key_path = prefix.as_os_str().to_owned();
        key_path.push(".key");
        let mut pub_path = prefix.as_os_str().to_owned();
        pub_path.push(".pub");
        let (key_path, pub_path): (std::path::PathBuf, std::path::PathBuf) =
            (key_path.into(), pub_path.into());
        write_secret_file(&key_path, self.to_pem()?.as_bytes())?;
        fs::write(&pub_path, self.verifying_key().to_pem())?;
        Ok((key_path, pub_path))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, secret elided)", self.key_id())
    }
}

/// Creates `path` with mode 0600 (refusing to overwrite) and writes `bytes`.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn read_small_text(path: &Path) -> Result<String, KeyError> {
    use satchel_names::file::{read_bounded_text, ReadError};
    read_bounded_text(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        ReadError::TooLarge { max, .. } => KeyError::TooLarge { size: max + 1, max },
        ReadError::Io { source, .. } => KeyError::Io(source),
        other => KeyError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            other.to_string(),
        )),
    })
}

/// An age X25519 recipient (`age1…`), what payloads are encrypted to.
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl Recipient {
    /// Parses `age1…`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        s.trim()
            .parse::<age::x25519::Recipient>()
            .map(Recipient)
            .map_err(|_| KeyError::InvalidRecipient { input: shown(s) })
    }

    /// The age recipient.
    pub fn as_age(&self) -> &age::x25519::Recipient {
        &self.0
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

/// One or more age X25519 identities (secret keys), what payloads are
/// decrypted with.
#[derive(Clone)]
pub struct Identities(Vec<age::x25519::Identity>);

impl Identities {
    /// Generates one new identity.
    pub fn generate() -> Self {
        Identities(vec![age::x25519::Identity::generate()])
    }

    /// Parses the text of an age identity file: one `AGE-SECRET-KEY-1…` per
    /// line, `#` comments and blank lines ignored. Any other line is refused.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut ids = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = line
                .parse::<age::x25519::Identity>()
                .map_err(|_| KeyError::InvalidIdentity { line: i + 1 })?;
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(KeyError::NoIdentity);
        }
        Ok(Identities(ids))
    }

    /// Reads an age identity file.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(read_small_text(path)?);
        Self::parse(&text)
    }

    /// The identities, as age needs them.
    pub fn as_age(&self) -> &[age::x25519::Identity] {
        &self.0
    }

    /// The recipients (public keys) of the identities.
    pub fn recipients(&self) -> Vec<Recipient> {
        self.0.iter().map(|i| Recipient(i.to_public())).collect()
    }

    /// The identity file text, in the layout `age-keygen` writes.
    pub fn to_file_text(&self, created: &str) -> Zeroizing<String> {
        use age::secrecy::ExposeSecret;
        let mut out = String::new();
        for id in &self.0 {
            out.push_str(&format!(
                "# created: {created}\n# public key: {}\n",
                id.to_public()
            ));
            out.push_str(id.to_string().expose_secret());
            out.push('\n');
        }
        Zeroizing::new(out)
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pubs: Vec<String> = self.0.iter().map(|i| i.to_public().to_string()).collect();
        write!(f, "Identities({pubs:?}, secrets elided)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_first_8_bytes_of_sha256_of_raw_key() {
        let raw = [7u8; 32];
        let want = &hex::encode(Sha256::digest(raw))[..16];
        assert_eq!(KeyId::of_raw_key(&raw).to_string(), want);
        assert_eq!(want.parse::<KeyId>().unwrap().to_string(), want);
    }

    #[test]
    fn key_id_parse_refuses_bad_text() {
        for bad in [
            "",
            "abc",
            "0123456789ABCDEF",
            "0123456789abcdeg",
            "0123456789abcdef0",
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pem_round_trip_and_signature() {
        let sk = SigningKey::generate();
        let pem = sk.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // PKCS#8 v1, byte for byte the layout `openssl genpkey` writes.
        assert!(pem.contains("\nMC4CAQAwBQYDK2VwBCIEI"), "{}", pem.len());
        let sk2 = SigningKey::from_pem(&pem).unwrap();
        let vk = VerifyingKey::from_pem(&sk2.verifying_key().to_pem()).unwrap();
        assert!(vk.to_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(vk.key_id(), sk.key_id());
        let sig = sk.sign(b"hello");
        assert!(vk.verify(b"hello", &sig));
        assert!(!vk.verify(b"hellp", &sig));
        assert!(!format!("{sk:?}").contains("PRIVATE"));
    }

    #[test]
    fn hostile_pem_is_refused() {
        let sk = SigningKey::generate();
        let pub_pem = sk.verifying_key().to_pem();
        // A public key is not a secret key and vice versa.
        assert!(SigningKey::from_pem(&pub_pem).is_err());
        assert!(VerifyingKey::from_pem(&sk.to_pem().unwrap()).is_err());
        for bad in [
            "",
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
            "garbage",
        ] {
            assert!(VerifyingKey::from_pem(bad).is_err(), "{bad}");
            assert!(SigningKey::from_pem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identities_parse_and_refuse() {
        let ids = Identities::generate();
        let text = ids.to_file_text("2026-01-01T00:00:00Z");
        let back = Identities::parse(&text).unwrap();
        assert_eq!(
            back.recipients()[0].to_string(),
            ids.recipients()[0].to_string()
        );
        assert!(matches!(
            Identities::parse("# only a comment\n"),
            Err(KeyError::NoIdentity)
        ));
        assert!(matches!(
            Identities::parse("AGE-PLUGIN-YUBIKEY-1XYZ\n"),
            Err(KeyError::InvalidIdentity { line: 1 })
        ));
        assert!(!format!("{back:?}").contains("AGE-SECRET"));
    }

    #[test]
    fn recipients_parse_and_refuse() {
        let r = Identities::generate().recipients().remove(0).to_string();
        assert!(Recipient::parse(&r).is_ok());
        for bad in ["", "age1", "ssh-ed25519 AAAA", "AGE-SECRET-KEY-1QQQ"] {
            assert!(Recipient::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_files_are_0600_and_not_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sk = SigningKey::generate();
        let (k, p) = sk.write_pair(&dir.path().join("admin")).unwrap();
        assert_eq!(
            fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            VerifyingKey::read_pem_file(&p).unwrap().key_id(),
            SigningKey::read_pem_file(&k).unwrap().key_id()
        );
        assert!(sk.write_pair(&dir.path().join("admin")).is_err());
    }
}
