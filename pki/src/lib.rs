//! `satchel_pki`: satchel's private CA and the identities it hands out.
//!
//! The library side is shared: the server and the fetcher use [`scope`] (what
//! a certificate may do), [`node_config`] (the file a boot image carries) and
//! the rustls configurations. The issuing side (CA, profiles, revocation,
//! ledger, audit, enrollment) sits behind the `issuing` feature so the
//! fetcher does not carry it.
//!
//! It does not serve anything and never holds a bundle-signing key.
//!
//! Modules:
//! - [`scope`]: scope SAN URIs (`satchel://host/<mac>`, `…/site/<name>`, `…/admin/<name>`).
//! - [`node_config`]: the node config file type (`satchel.toml`).

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
pub use scope::{AdminName, Scope, ScopeError};
