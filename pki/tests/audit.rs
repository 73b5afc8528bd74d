//! Integration tests of `satchel_pki::audit`: one test per lint, the JSON
//! schema of `AUDIT.md`, the HTML page, `--connect` against a real rustls
//! server on 127.0.0.1, and the CLI's exit status.

// Test helpers outside #[test] functions unwrap too; a panic is a failed test.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "audit/lints.rs"]
mod lints;
#[path = "audit/binary.rs"]
mod binary;
#[path = "audit/ledger.rs"]
mod ledger;
#[path = "audit/report.rs"]
mod report;
#[path = "audit/support.rs"]
mod support;
