//! End-to-end tests: the real `satchel-server` binary on 127.0.0.1, with
//! certificates from the PKI library and bundles from the bundle library.
//!
//! Every test runs on the store `SATCHEL_TEST_STORE` names: sled unless it
//! is `etcd` (see `etcd.rs`); `tests/run` runs them once with each. The
//! `replicas` tests start several servers on one etcd cluster of their own.

mod etcd;
mod harness;

mod access;
mod crash;
mod demo;
mod flood;
mod forwarding;
mod history;
mod hostile;
mod migrate;
mod publish;
mod quarantine;
mod replicas;
mod revocation;
mod shutdown;
mod status_page;
