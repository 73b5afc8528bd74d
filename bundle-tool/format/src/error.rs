//! Errors of the bundle format library, one enum per stage.
//!
//! Every refusal has its own variant so that callers (the fetcher's report,
//! the CLI's `verify` exit status, the tests) can tell *why* a bundle was
//! refused without matching on message text. Messages say what failed and on
//! what value; they never contain key material.

use std::io;

/// Reading or writing keys, age identities and recipients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A signing public key is not a PEM SPKI ed25519 key.
    #[error(
        "not an ed25519 public key in PEM SPKI form (\"-----BEGIN PUBLIC KEY-----\"): {reason}"
    )]
    InvalidPublicKey {
        /// What the decoder said.
        reason: String,
    },
    /// A signing secret key is not a PEM PKCS#8 ed25519 key.
    #[error("not an ed25519 secret key in PEM PKCS#8 form (\"-----BEGIN PRIVATE KEY-----\")")]
    InvalidSecretKey,
    /// A recipient is not an age X25519 recipient (`age1…`).
    #[error(
        "invalid age recipient {input:?}: expected an X25519 recipient starting with \"age1\""
    )]
    InvalidRecipient {
        /// What was given (truncated).
        input: String,
    },
    /// A line of an identity file is not an age X25519 identity.
    #[error("line {line} is not an age X25519 identity (\"AGE-SECRET-KEY-1…\"); plugin and passphrase identities are not supported")]
    InvalidIdentity {
        /// 1-based line number.
        line: usize,
    },
    /// An identity file holds no identity.
    #[error("no age identity found (expected a line \"AGE-SECRET-KEY-1…\")")]
    NoIdentity,
    /// A key file is larger than any key file could be.
    #[error("key file is {size} bytes, more than the {max} bytes a key file may have")]
    TooLarge {
        /// Bytes seen.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Reading or writing the key file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Parsing `manifest.json`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest is larger than [`crate::manifest::MAX_MANIFEST_BYTES`].
    #[error("manifest is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The bytes are not a JSON object.
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    /// No `format` field.
    #[error("manifest has no \"format\" field")]
    MissingVersion,
    /// A `format` this library does not know.
    #[error("manifest format {found} is not supported (this build reads format {supported})")]
    UnsupportedVersion {
        /// The version in the manifest (as written).
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// A field is unknown, missing, or has an invalid value.
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

/// Reading or writing the outer tar container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The input ended inside the container.
    #[error("bundle is truncated: it ends inside {0}")]
    Truncated(&'static str),
    /// A tar header block's checksum does not match.
    #[error("bad tar header checksum at byte {offset}")]
    BadChecksum {
        /// Offset of the header block.
        offset: u64,
    },
    /// A tar header field cannot be parsed.
    #[error("malformed tar header at byte {offset}: {reason}")]
    BadHeader {
        /// Offset of the header block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A member other than the expected one at this position.
    #[error("bundle member {index} is {found:?}, expected {expected:?} (a bundle holds exactly manifest.json, manifest.sig, payload.age in that order)")]
    UnexpectedMember {
        /// 0-based position.
        index: usize,
        /// The name expected there.
        expected: &'static str,
        /// The name found (truncated).
        found: String,
    },
    /// A member that is not a regular file.
    #[error("bundle member {name:?} has tar type {typeflag:?}; only regular files are allowed")]
    NotARegularFile {
        /// The member's name.
        name: String,
        /// The tar type flag.
        typeflag: char,
    },
    /// A member larger than its limit.
    #[error("bundle member {name} is {size} bytes, more than the {max} allowed")]
    MemberTooLarge {
        /// The member.
        name: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// `manifest.sig` is not 64 bytes.
    #[error("manifest.sig is {len} bytes; an ed25519 signature is exactly 64")]
    BadSignatureLength {
        /// Its length.
        len: u64,
    },
    /// A PAX or GNU extension header that cannot be parsed or is not allowed.
    #[error("bad tar extension header in the bundle container at byte {offset}: {reason}")]
    BadExtension {
        /// Offset of the header block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Anything but zero blocks after the last member.
    #[error("bundle has data after its last member at byte {offset}")]
    TrailingGarbage {
        /// Offset of the first non-zero byte (or of the block holding it).
        offset: u64,
    },
    /// The manifest could not be parsed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A refusal by [`crate::verify`]: each check has its own variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The manifest names a signer that is not among the trusted keys.
    #[error("signed by key {key_id}, which is not a trusted key")]
    UntrustedSigner {
        /// The key id the manifest names.
        key_id: String,
    },
    /// The signature does not verify with the trusted key the manifest names.
    #[error("the signature does not match the manifest for key {key_id}")]
    BadSignature {
        /// The key id the manifest names.
        key_id: String,
    },
    /// The bundle is for another target.
    #[error("bundle is for {found}, not for {expected}")]
    WrongTarget {
        /// What the caller expected.
        expected: String,
        /// What the manifest names.
        found: String,
    },
    /// The bundle has expired (against `max(now, clock_floor)`).
    #[error("bundle expired at {expires} (checked against {now})")]
    Expired {
        /// The manifest's expiry (RFC 3339).
        expires: String,
        /// The time checked against (RFC 3339).
        now: String,
    },
    /// The serial is below the floor the caller carries.
    #[error("bundle serial {serial} is below the floor {floor} (rollback refused)")]
    SerialBelowFloor {
        /// The manifest's serial.
        serial: u64,
        /// The caller's floor.
        floor: u64,
    },
    /// `payload.age` has another size than the manifest says.
    #[error("payload.age is {found} bytes; the manifest says {expected}")]
    PayloadSizeMismatch {
        /// From the manifest.
        expected: u64,
        /// Seen.
        found: u64,
    },
    /// `payload.age` hashes to another value than the manifest says.
    #[error("payload.age has sha256 {found}; the manifest says {expected}")]
    PayloadHashMismatch {
        /// From the manifest (hex).
        expected: String,
        /// Seen (hex).
        found: String,
    },
    /// Reading the payload failed.
    #[error("I/O error while hashing the payload: {0}")]
    Io(#[from] io::Error),
}

/// Creating a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A file of the source tree cannot be put in a bundle.
    #[error("cannot pack {path}: {reason}")]
    Unpackable {
        /// The path, relative to the source directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The parameters are inconsistent (for example expiry before creation).
    #[error("invalid bundle parameters: {0}")]
    InvalidParameters(String),
    /// No recipient was given.
    #[error("no recipient: a bundle must be encrypted to at least one age recipient")]
    NoRecipients,
    /// age refused to encrypt.
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    /// Writing the container failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// Reading the source or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Opening a bundle: verification, decryption, decompression.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The container is malformed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A verification check refused the bundle.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The payload is encrypted to a passphrase, which bundles never are.
    #[error(
        "payload.age is encrypted with a passphrase (scrypt); bundles must use X25519 recipients"
    )]
    PassphraseRefused,
    /// The payload's age header is malformed or uses an unsupported recipient type.
    #[error("payload.age is not a valid age file: {0}")]
    InvalidAge(String),
    /// None of the given identities can decrypt the payload.
    #[error("none of the given identities can decrypt payload.age")]
    NoMatchingIdentity,
    /// Decryption or decompression of the payload failed midway.
    #[error("payload cannot be decrypted or decompressed: {0}")]
    Payload(String),
    /// The payload tar is larger than the manifest says.
    #[error("payload decompresses to more than the {expected} bytes the manifest says")]
    UncompressedTooLarge {
        /// From the manifest.
        expected: u64,
    },
    /// The payload tar is smaller than the manifest says.
    #[error("payload decompresses to {found} bytes; the manifest says {expected}")]
    UncompressedSizeMismatch {
        /// From the manifest.
        expected: u64,
        /// Seen.
        found: u64,
    },
    /// The payload tar holds another number of entries than the manifest says.
    #[error("payload holds {found} entries; the manifest says {expected}")]
    EntryCountMismatch {
        /// From the manifest.
        expected: u64,
        /// Seen.
        found: u64,
    },
    /// The overlay refused the payload or failed to apply it.
    #[error(transparent)]
    Extract(#[from] satchel_overlay::ExtractError),
    /// Reading the bundle failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}
