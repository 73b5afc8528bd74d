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
//! Modules:
//! - [`cmdline`]: the kernel command line (pure).
//! - [`discover`]: SRV lookup and RFC 2782 ordering (pure core + DNS edge).
//! - [`retry`]: backoff, `Retry-After`, deadline (pure).
//! - [`netif`]: the MAC from sysfs when `BOOTIF=` is absent.

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
