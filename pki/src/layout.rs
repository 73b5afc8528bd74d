//! The files of a CA directory (`satchel-pki --dir DIR`), in one place.
//!
//! ```text
//! DIR/ca.crt             the CA certificate (PEM)
//! DIR/ca.key.age         the CA key, PKCS#8 PEM encrypted with an age passphrase (0600)
//! DIR/ca.key             the CA key in plaintext, only with --insecure-plaintext-key (0600)
//! DIR/ledger.jsonl       the issuance ledger (crate::ledger)
//! DIR/certs/<serial>.crt a copy of every certificate issued
//! DIR/crl.pem            the latest CRL
//! DIR/sites/<site>.agekey  a site's age identity, created once and reused (0600)
//! DIR/.lock              held (flock) while a command writes to DIR
//! ```

/// Environment variable naming the default CA directory.
pub const PKI_DIR_ENV: &str = "SATCHEL_PKI_DIR";
/// Default CA directory when neither `--dir` nor [`PKI_DIR_ENV`] is given.
pub const DEFAULT_PKI_DIR: &str = "pki";
/// The CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// The passphrase-encrypted CA key.
pub const CA_KEY_ENCRYPTED: &str = "ca.key.age";
/// The plaintext CA key (tests only).
pub const CA_KEY_PLAINTEXT: &str = "ca.key";
/// The issuance ledger.
pub const LEDGER: &str = "ledger.jsonl";
/// Copies of issued certificates.
pub const CERTS_DIR: &str = "certs";
/// Site age identities.
pub const SITES_DIR: &str = "sites";
/// The latest CRL.
pub const CRL_PEM: &str = "crl.pem";
/// The lock file: one writer at a time.
pub const LOCK: &str = ".lock";
