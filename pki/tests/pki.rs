//! Integration tests of the CA: certificates checked by openssl, real TLS
//! handshakes over 127.0.0.1, ledger tampering, and the `satchel-pki`
//! binary end to end.
//!
//! Layout: `pki/harness.rs` (temp CAs, running processes with a kill
//! timer), then one module per flow.

#![allow(clippy::unwrap_used)]

#[path = "pki/harness.rs"]
mod harness;

#[path = "pki/openssl.rs"]
mod openssl;

#[path = "pki/tls.rs"]
mod tls;

#[path = "pki/ledger.rs"]
mod ledger;

#[path = "pki/cli.rs"]
mod cli;

#[path = "pki/pkilint.rs"]
mod pkilint;
