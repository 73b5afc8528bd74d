//! `satchel-tests`: end-to-end tests that start satchel's real binaries.
//!
//! The library holds what the test files share; the tests themselves are in
//! `tests/` (one file per flow, e.g. `fetch_*.rs` for the fetcher's).
//! Everything binds loopback only.
//!
//! Modules:
//! - [`boot`]: what the QEMU boot tests share (tools, the static
//!   fetcher, the satchel CLIs, the guest network, the host-side fleet).
//! - [`harness`]: the node's fetcher command, the real server and its PKI,
//!   over `satchel-test-support` (temp dirs, binaries, child processes).
//! - [`client`]: a minimal blocking HTTPS client (admin calls in tests).
//! - [`dns`]: an in-process authoritative DNS server (SRV, A, AAAA).
//! - [`node`]: a test CA, node images (`satchel.toml` + credentials) and
//!   real bundles sealed by the bundle library.
//! - [`peer`]: a fault-injecting HTTPS peer for the fetcher's fault tests.

pub mod boot;
pub mod client;
pub mod dns;
pub mod harness;
pub mod node;
pub mod peer;
