//! `satchel_pki`: satchel's private CA and the identities it hands out.
//!
//! Two sides share this crate:
//! - **Using certificates** (always built; the fetcher uses
//!   `default-features = false`): rustls configurations for the server and
//!   for clients that trust only our CA ([`tls`]), the authorization input
//!   read from a verified client certificate ([`identity::PeerIdentity`]:
//!   clientAuth EKU and exactly one scope SAN are required), CRL loading and
//!   reloading ([`crl`]), scopes ([`scope`]), the node config a boot image
//!   carries ([`node_config`]) and reading/verifying the issuance ledger
//!   ([`ledger`]).
//! - **Issuing** (feature `issuing`): the CA itself (`ca`: init, open,
//!   issue, revoke, CRL), what each certificate kind contains (`profile`),
//!   node enrollment (`enroll`) and the reviewers' audit (`audit`).
//!   The `satchel-pki` binary (feature `cli`) is a thin shell over it.
//!
//! It does not: serve anything or fetch CRLs over a network; hold or use a
//! bundle-signing key (it only copies signers' *public* keys into boot
//! images); decrypt bundles; support intermediate CAs (the CA has pathLen 0
//! and signs leaves directly); check OCSP.
//!
//! Modules:
//! - [`tls`]: `server_config`, `client_config` (ring provider, TLS 1.3, our CA only).
//! - [`identity`]: [`PeerIdentity`] from a client certificate's DER.
//! - [`crl`]: [`crl::load_crl`], [`crl::LoadedCrl`], [`crl::CrlWatcher`].
//! - [`serial`]: the one text form of a certificate serial.
//! - [`ledger`]: the hash-chained, CA-signed issuance ledger (line format in its doc).
//! - [`layout`]: the files of a CA directory.
//! - [`scope`]: scope SAN URIs (`satchel:host:<mac>`, `satchel:site:<name>`, `satchel:admin:<name>`).
//! - [`node_config`]: the node config file type (`satchel.toml`).
//! - `ca`, `profile`, `enroll`, `audit` (feature `issuing`).

#![forbid(unsafe_code)]

#[cfg(feature = "issuing")]
pub mod audit;
#[cfg(feature = "issuing")]
pub mod ca;
pub mod crl;
#[cfg(feature = "issuing")]
pub mod enroll;
pub mod identity;
pub mod layout;
pub mod ledger;
pub mod node_config;
#[cfg(feature = "issuing")]
pub mod profile;
pub mod scope;
pub mod serial;
pub mod tls;

pub use identity::{AuthError, PeerIdentity};
pub use node_config::{NodeConfig, NodeConfigError, NODE_CONFIG_FILE};
pub use scope::{AdminName, Domain, Scope, ScopeError};
