//! `satchel_fetch`: the initrd fetcher's library; `main.rs` is a thin shell.
//!
//! At every boot, before switch-root, the fetcher finds the configuration
//! server by DNS SRV, downloads the node's bundles over mutual TLS, has the
//! bundle library verify them, lays them over the root with the safe
//! overlay, and reports how it went. It also captures hand-made files for an
//! admin to approve.
//!
//! It does not parse bundles, check signatures or write files beneath the
//! root itself (the bundle library does), and it does not build TLS trust
//! (the PKI library's client configuration does): it wires them to the
//! network with bounded time, size and retries.
//!
//! Modules, in the order a boot uses them:
//! - [`run`]: one boot run, inputs → discover → download → verify → stage every bundle → commit them together → report.
//! - [`settings`]: every limit and timeout, in one place.
//! - [`cmdline`]: the kernel command line (pure).
//! - [`netif`]: the MAC from sysfs when `BOOTIF=` is absent.
//! - [`discover`]: SRV lookup and RFC 2782 ordering (pure core + DNS edge).
//! - [`session`]: the ordered candidates, tried in turn under one deadline.
//! - [`http`]: one HTTPS request to one address, bounded in every phase.
//! - [`retry`]: backoff, `Retry-After`, deadline (pure).
//! - [`index`]: the boot index, parsed strictly against what this image applies.
//! - [`apply`]: download and verify each bundle, and stage it for the boot's one commit.
//! - [`report`]: the report posted at the end of a run.
//! - [`capture`]: `satchel-fetch capture`, hand-made files to the quarantine.
//! - [`log`]: one-line `satchel:` messages to stderr and the kernel log.

#![forbid(unsafe_code)]

pub mod apply;
pub mod capture;
pub mod cmdline;
pub mod discover;
pub mod http;
pub mod index;
pub mod log;
pub mod netif;
pub mod report;
pub mod retry;
pub mod run;
pub mod session;
pub mod settings;
