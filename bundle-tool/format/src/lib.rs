//! `satchel_format`: the bundle format — create, inspect, verify and open
//! bundles.
//!
//! A bundle is a plain tar holding `manifest.json`, `manifest.sig` and
//! `payload.age` (see `FORMAT.md` in `bundle-tool/`). This library writes
//! them (`tar | zstd | age`, signed), reads and verifies them in a fixed
//! order, and opens a verified payload down to its tar stream; with
//! [`open::apply_verified`] it hands that stream to the safe overlay
//! (`satchel_overlay`), which lays it over a root.
//!
//! It does not talk to the network, read configuration files or know about
//! certificates: callers pass in trusted keys, identities, floors and the
//! clock. It holds no CLI code (the admin CLI is the `satchel-bundle`
//! crate) and does not write to a root itself: that is the overlay's job.
//!
//! Dependencies, one way: `satchel-names` (the targets a manifest names, and
//! re-exported here as [`Mac`], [`SiteName`], [`Target`], [`NameError`]) and
//! `satchel-overlay` (payload rules shared with `create --from-tar`, entry
//! kinds for [`diff`], and the apply path of [`open`]). The overlay knows
//! nothing of bundles; the seam between them is a plain tar stream.
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
//! - [`diff`]: added / removed / changed between two payload listings (pure).
//! - [`error`]: one error enum per stage.

#![forbid(unsafe_code)]

pub mod container;
pub mod diff;
pub mod error;
pub mod keys;
pub mod manifest;
pub mod open;
pub mod pack;
pub mod pipe;
pub mod seal;
pub mod verify;

pub use error::{ContainerError, KeyError, ManifestError, OpenError, SealError, VerifyError};
pub use keys::{Identities, KeyId, Recipient, SigningKey, VerifyingKey};
pub use manifest::{Manifest, FORMAT_VERSION, MAX_MANIFEST_BYTES};
pub use satchel_names::{Mac, NameError, SiteName, Target};
