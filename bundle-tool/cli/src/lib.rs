//! `satchel_bundle`: the library half of the `satchel-bundle` admin CLI —
//! the parts its subcommands share that are more than argument handling.
//!
//! It does not define the bundle format (`satchel_format`), the overlay
//! (`satchel_overlay`) or target names (`satchel_names`); it uses them.
//! Nothing outside this crate depends on it: the fetcher and the server use
//! those libraries only, so none of the CLI's dependencies (clap, indicatif,
//! anyhow, hyper's client, cpio) reach them.
//!
//! Modules:
//! - [`client`]: a small mutual-TLS HTTPS client for `uploads` and `publish`.
//! - [`initrd`]: the node's initrd overlay, a zstd newc cpio.
//! - [`units`]: `create --enable`, the links `systemctl enable` would make.
//!
//! The subcommands themselves are in the binary (`main.rs`, `cli/`).

#![forbid(unsafe_code)]

pub mod client;
pub mod initrd;
pub mod units;
