//! `satchel-test-support`: what satchel's process tests share, so the
//! server's end-to-end suite, the CA's suite and `satchel-tests` start,
//! watch and stop real processes the same way.
//!
//! It does:
//! - find a workspace binary and never hand out a stale one: a binary older
//!   than a source it is built from is rebuilt with cargo first ([`bin`]);
//! - run child processes with a kill timer (a hung child cannot hang CI),
//!   killed on drop, signalled, waited for by their exit event, their output
//!   captured or logged to files, and a bound address read from a log line
//!   ([`proc`]);
//! - wait on events rather than on the clock ([`wait`]);
//! - reserve loopback ports by holding a socket, never by binding and
//!   dropping one ([`net`]);
//! - receive the reports a server forwards, as the engine's webhook
//!   would ([`engine`]);
//! - start a real etcd cluster on 127.0.0.1 with temporary data, killed on
//!   drop, one member killed and restarted at will ([`etcd`]).
//!
//! It does not know satchel: it depends on none of satchel's crates (the
//! server and the CA use it as a dev-dependency, and a satchel crate here
//! would be a second copy of the crate under test). Certificates, bundles,
//! server configs and clients stay in each suite's own harness. Everything
//! it binds is loopback.

pub mod bin;
pub mod engine;
pub mod etcd;
pub mod net;
pub mod proc;
pub mod wait;

pub use bin::workspace_bin;
pub use etcd::{EtcdCluster, MemberTls};
pub use net::{listen_reuseport, refused_tcp_port, refused_udp_port, reserved_reuseport};
pub use proc::{addr_in, output, run, Finished, Proc, Signal};
pub use wait::{eventually, wait_until};

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("satchel-test-")
        .tempdir()
        .expect("create a temporary directory")
}
