//! `satchel_bundle`: the bundle format and the safe overlay.
//!
//! A bundle is a plain tar holding `manifest.json`, `manifest.sig` and
//! `payload.age` (see `FORMAT.md` beside this crate). This library creates,
//! inspects, verifies and opens bundles, and lays a payload over a root
//! directory without ever leaving it half-changed.
//!
//! It does not talk to the network, read configuration files or know about
//! certificates: callers pass in trusted keys, identities, floors and the
//! clock. It pulls in no CLI crates: the `cli` feature adds only the
//! `satchel-bundle` binary.
//!
//! Modules:
//! - [`keys`]: ed25519 signing keys (PEM), key ids, age identities and recipients.
//! - [`manifest`]: `manifest.json` — parse (bounded, strict) and write.
//! - [`container`]: the outer tar of three members — streaming reader, writer.
//! - [`verify`]: signature → target → expiry → serial, then payload size and hash.
//! - [`seal`]: create a bundle (`tar | zstd -3 | age`, streamed, then signed).
//! - [`pack`]: the deterministic directory packer behind `create --from-dir`.
//! - [`open`]: the full verified open, down to the payload tar stream.
//! - [`pipe`]: bounded pipes that run the stages on threads.
//! - [`extract`]: the safe overlay (plan, stage, commit).
//! - [`diff`]: added / removed / changed between two payload listings (pure).
//! - `client` (feature `cli`): a small mutual-TLS HTTPS client for `uploads` and `publish`.
//! - `initrd` (feature `cli`): the node's initrd overlay, a zstd newc cpio.
//! - [`mac`]: MAC addresses, site names and bundle targets (canonical forms).
//! - [`error`]: one error enum per stage.

#![forbid(unsafe_code)]

#[cfg(feature = "cli")]
pub mod client;
pub mod container;
pub mod diff;
pub mod error;
pub mod extract;
#[cfg(feature = "cli")]
pub mod initrd;
pub mod keys;
pub mod mac;
pub mod manifest;
pub mod open;
pub mod pack;
pub mod pipe;
pub mod seal;
pub mod verify;

pub use error::{ContainerError, KeyError, ManifestError, OpenError, SealError, VerifyError};
pub use keys::{Identities, KeyId, Recipient, SigningKey, VerifyingKey};
pub use mac::{Mac, NameError, SiteName, Target};
pub use manifest::{Manifest, FORMAT_VERSION, MAX_MANIFEST_BYTES};
