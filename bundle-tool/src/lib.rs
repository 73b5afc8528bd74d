//! `satchel_bundle`: the bundle format and the safe overlay.
//!
//! A bundle is a plain tar holding `manifest.json`, `manifest.sig` and
//! `payload.age` (see `FORMAT.md` beside this crate). This library creates,
//! inspects, verifies and opens bundles, and lays a payload over a root
//! directory without ever leaving it half-changed.
//!
//! It does not talk to the network, read configuration files or know about
//! certificates: callers pass in trusted keys, identities, floors and the
//! clock.
//!
//! Modules:
//! - [`extract`]: the safe overlay (plan, stage, commit).
//! - [`mac`]: MAC addresses, site names and bundle targets (canonical forms).

#![forbid(unsafe_code)]

pub mod extract;
pub mod mac;

pub use mac::{Mac, NameError, SiteName, Target};
