//! `satchel-server demo`: a first run on one machine, then a rerun that
//! reuses the material and publishes a newer bundle.

use std::process::Command;

use satchel_format::{Identities, Target, VerifyingKey};
use satchel_pki::NodeConfig;

use crate::harness::*;

fn curl_fetch(dir: &std::path::Path, node: &NodeConfig, url: &str, out: &std::path::Path) {
    let nd = dir.join("node");
    let st = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "20"])
        .arg("--cert")
        .arg(nd.join(&node.client_cert))
        .arg("--key")
        .arg(nd.join(&node.client_key))
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .arg("--output")
        .arg(out)
        .arg(url)
        .status()
        .expect("curl");
    assert!(st.success());
}

#[test]
fn demo_serves_a_bundle_the_node_can_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("demo");
    let args = || -> Vec<std::ffi::OsString> {
        vec![
            "demo".into(),
            "--dir".into(),
            dir.clone().into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ]
    };
    let mut serials = Vec::new();
    for run in 0..2 {
        let srv = Server::launch(tmp.path(), args());
        let text = srv.stdout_text();
        assert!(text.contains("satchel-fetch"), "{text}");
        assert!(
            text.contains(&format!("127.0.0.1:{}", srv.addr.port())),
            "{text}"
        );
        let node = NodeConfig::load(&dir.join("node/satchel.toml")).expect("node config");
        let mac = node.mac.expect("per-host demo image");
        let url = format!(
            "https://127.0.0.1:{}/v1/bundles/host/{mac}",
            srv.addr.port()
        );
        let out = tmp.path().join(format!("fetched-{run}.bundle"));
        curl_fetch(&dir, &node, &url, &out);
        let bytes = std::fs::read(&out).expect("fetched");
        let key = VerifyingKey::read_pem_file(&dir.join("signer.pub")).expect("signer");
        let mut checks = satchel_format::verify::Checks::new(vec![key]);
        checks.target = Some(Target::Host(mac));
        let ids = Identities::read_file(&dir.join("node").join(&node.identities[0])).expect("ids");
        let (verified, mut tar) =
            satchel_format::open::open_reader(std::io::Cursor::new(bytes), &checks, &ids)
                .expect("the node opens its bundle");
        assert!(satchel_format::open::drain(&mut tar).expect("payload") > 0);
        serials.push(verified.manifest().serial);
        srv.signal("TERM");
        assert_eq!(srv.wait_exit(std::time::Duration::from_secs(20)), Some(0));
    }
    assert!(serials[1] > serials[0], "{serials:?}");
}
