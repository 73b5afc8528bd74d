//! End-to-end tests: the real `satchel-server` binary on 127.0.0.1, with
//! certificates from the PKI library and bundles from the bundle library.

mod harness;

mod access;
mod crash;
mod demo;
mod flood;
mod forwarding;
mod history;
mod hostile;
mod publish;
mod quarantine;
mod revocation;
mod shutdown;
mod status_page;
