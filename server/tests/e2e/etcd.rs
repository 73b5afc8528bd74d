//! The store these tests run on, and the etcd cluster they share in etcd
//! mode. The cluster itself (Debian's `etcd`, members on 127.0.0.1, killed
//! on drop) is `satchel_test_support::EtcdCluster`.

use std::sync::OnceLock;

pub use satchel_test_support::{EtcdCluster, MemberTls};

/// The store the server e2e tests run on: `SATCHEL_TEST_STORE=etcd` runs
/// every one of them on etcd (a cluster shared by the test binary, each
/// test below its own key prefix), anything else on sled.
pub fn etcd_mode() -> bool {
    std::env::var("SATCHEL_TEST_STORE").as_deref() == Ok("etcd")
}

/// The cluster shared by the tests of this process in etcd mode. Never
/// dropped: its members die with the process (their guards' pipe closes),
/// and so does its data ([`EtcdCluster::remove_data_at_exit`]).
pub fn shared() -> &'static EtcdCluster {
    static SHARED: OnceLock<EtcdCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let c = EtcdCluster::start(3);
        c.remove_data_at_exit();
        c
    })
}
