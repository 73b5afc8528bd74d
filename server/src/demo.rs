//! `satchel-server demo`: everything for a first run on one machine.
//!
//! [`prepare`] creates (or reuses, on a second run) in one directory: a
//! throwaway CA (plaintext key: demo only), server and admin certificates,
//! a bundle-signing key, an admin age identity, a demo node enrolled with
//! the PKI library (`node/satchel.toml` + credentials), a fresh CRL, and a
//! signed demo bundle for the node's MAC, published into the demo store,
//! which it returns open for the server to serve (sled locks its directory
//! until the last thread of a handle ends, so it is never reopened).
//! [`Demo::finish`] writes the node's kernel command line once the port is
//! known and returns the commands that fetch and apply the bundle.
//!
//! It does not start the server: the binary serves the returned
//! [`Config`] like any other. Nothing here is fit for production keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, Recipient, SigningKey, Target};
use satchel_pki::ca::Ca;
use satchel_pki::enroll::EnrollOptions;
use satchel_pki::{AdminName, NodeConfig};
use time::OffsetDateTime;

use crate::config::Config;
use crate::publish::{self, Signers};
use crate::store::{SledStore, Store};

/// The demo node's MAC (a locally administered, QEMU-style address).
pub const DEMO_MAC: Mac = Mac::from_octets([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// Days the demo bundle stays valid.
pub const DEMO_BUNDLE_DAYS: i64 = 30;
/// The file the demo bundle writes.
pub const DEMO_FILE: &str = "etc/motd";

/// A failed demo step.
#[derive(Debug, thiserror::Error)]
#[error("demo: {step}: {reason}")]
pub struct DemoError {
    step: &'static str,
    reason: String,
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> DemoError {
    move |e| DemoError {
        step,
        reason: e.to_string(),
    }
}

/// A prepared demo.
#[derive(Debug)]
pub struct Demo {
    /// The server settings (listen address as asked).
    pub config: Config,
    dir: PathBuf,
    signer_pub: PathBuf,
    node_config: PathBuf,
}

/// Creates or reuses the demo material in `dir` and publishes a new demo
/// bundle (serial: the current unix time, or one above the last if that is
/// not above it, so every run publishes). Returns the demo and its store,
/// open, for the server to serve.
pub fn prepare(dir: &Path, listen: SocketAddr) -> Result<(Demo, SledStore), DemoError> {
    std::fs::create_dir_all(dir).map_err(step("creating the demo directory"))?;
    let dir = dir
        .canonicalize()
        .map_err(step("resolving the demo directory"))?;
    let ca_dir = dir.join("ca");
    let ca = if ca_dir.join("ca.crt").exists() {
        Ca::open_insecure(&ca_dir).map_err(step("opening the demo CA"))?
    } else {
        Ca::init_insecure(&ca_dir, "satchel demo CA").map_err(step("creating the demo CA"))?
    };
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.cert_pem()).map_err(step("writing ca.pem"))?;
    if !dir.join("server.crt").exists() {
        ca.issue_server(
            &["localhost".to_string()],
            &["127.0.0.1".parse().map_err(step("address"))?],
            None,
        )
        .and_then(|i| i.write(&dir.join("server")))
        .map_err(step("issuing the server certificate"))?;
    }
    if !dir.join("admin.crt").exists() {
        let name = AdminName::parse("demo").map_err(step("admin name"))?;
        ca.issue_admin(name, None)
            .and_then(|i| i.write(&dir.join("admin")))
            .map_err(step("issuing the admin certificate"))?;
    }
    let (signer_key, signer_pub) = (dir.join("signer.key"), dir.join("signer.pub"));
    if !signer_key.exists() {
        SigningKey::generate()
            .write_pair(&dir.join("signer"))
            .map_err(step("writing the signing key"))?;
    }
    let signer = SigningKey::read_pem_file(&signer_key).map_err(step("reading signer.key"))?;
    let admin_age = dir.join("admin.age");
    if !admin_age.exists() {
        let ids = Identities::generate();
        satchel_format::keys::write_secret_file(
            &admin_age,
            ids.to_file_text(&crate::now_rfc3339()).as_bytes(),
        )
        .map_err(step("writing admin.age"))?;
    }
    let admin_ids = Identities::read_file(&admin_age).map_err(step("reading admin.age"))?;
    let node_dir = dir.join("node");
    let node_config = node_dir.join(satchel_pki::NODE_CONFIG_FILE);
    if !node_config.exists() {
        ca.enroll(&EnrollOptions {
            mac: Some(DEMO_MAC),
            signers: vec![signer_pub.clone()],
            admin_recipients: admin_ids
                .recipients()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            domain: "demo.invalid".into(),
            server: Some(format!("127.0.0.1:{}", listen.port().max(1))),
            out: node_dir.clone(),
            ..Default::default()
        })
        .map_err(step("enrolling the demo node"))?;
    }
    let node = NodeConfig::load(&node_config).map_err(step("reading the node config"))?;
    let mut recipients: Vec<Recipient> = admin_ids.recipients();
    for id in &node.identities {
        let ids = Identities::read_file(&node_dir.join(id)).map_err(step("node identity"))?;
        recipients.extend(ids.recipients());
    }
    let crl = ca.crl(None).map_err(step("signing the CRL"))?;
    let crl_path = dir.join("crl.pem");
    std::fs::write(&crl_path, crl.pem).map_err(step("writing crl.pem"))?;

    // The demo bundle: one file, sealed to the node and the admin.
    let src = dir.join("bundle-src");
    std::fs::create_dir_all(src.join("etc")).map_err(step("bundle source"))?;
    std::fs::write(
        src.join(DEMO_FILE),
        "Hello from satchel: this file came from a signed, encrypted bundle.\n",
    )
    .map_err(step("bundle source"))?;
    let now = OffsetDateTime::now_utc();
    let target = Target::Host(DEMO_MAC);
    let data_dir = dir.join("data");
    let store = SledStore::open(&data_dir).map_err(step("opening the demo store"))?;
    let last = store
        .highest_serial(&target)
        .map_err(step("reading the demo store"))?;
    let serial = u64::try_from(now.unix_timestamp())
        .unwrap_or(1)
        .max(last.map_or(1, |s| s.saturating_add(1)));
    let bundle_path = dir.join("demo.bundle");
    seal_to_file(
        &SealParams {
            target: target.clone(),
            site: None,
            serial,
            created: now,
            expires: now + time::Duration::days(DEMO_BUNDLE_DAYS),
            policy: Default::default(),
            recipients,
        },
        Source::Dir {
            path: &src,
            keep_owners: false,
        },
        &signer,
        &bundle_path,
        &AtomicU64::new(0),
    )
    .map_err(step("sealing the demo bundle"))?;
    let bytes = std::fs::read(&bundle_path).map_err(step("reading the demo bundle"))?;
    let signers = Signers::load(&[&signer_pub]).map_err(step("reading signer.pub"))?;
    let checked = publish::verify(&bytes, &target, &signers).map_err(|e| DemoError {
        step: "verifying the demo bundle",
        reason: e.message,
    })?;
    let meta = checked.into_meta(&target, bytes.len() as u64, "admin/demo".into());
    store
        .bundle_put(&target, &meta, &bytes, Config::default().bundle_history)
        .map_err(step("publishing the demo bundle"))?;
    std::fs::create_dir_all(dir.join("root")).map_err(step("creating root/"))?;
    let config = Config {
        listen,
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir,
        ca_cert: ca_pem,
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        crl: crl_path,
        trusted_signers: vec![signer_pub.clone()],
        ..Config::default()
    };
    Ok((
        Demo {
            config,
            dir,
            signer_pub,
            node_config,
        },
        store,
    ))
}

impl Demo {
    /// Writes the node's kernel command line for the bound address and
    /// returns what to print.
    pub fn finish(&self, bound: SocketAddr) -> Result<String, DemoError> {
        let d = &self.dir;
        let root = d.join("root");
        let cmdline = d.join("cmdline");
        std::fs::write(
            &cmdline,
            format!(
                "satchel.server=127.0.0.1:{port} satchel.root={root} BOOTIF=01-{mac}\n",
                port = bound.port(),
                root = root.display(),
                mac = DEMO_MAC,
            ),
        )
        .map_err(step("writing the demo cmdline"))?;
        let node = NodeConfig::load(&self.node_config).map_err(step("reading the node config"))?;
        let nd = d.join("node");
        let url = format!(
            "https://127.0.0.1:{}/v1/bundles/host/{DEMO_MAC}",
            bound.port()
        );
        let identity = node
            .identities
            .first()
            .map(|p| nd.join(p))
            .unwrap_or_default();
        Ok(format!(
            "satchel demo server listening on https://{bound} (Ctrl-C stops it)\n\
             demo files: {dir}\n\n\
             Fetch, verify and apply the demo bundle for node {DEMO_MAC} into {root} with the fetcher:\n\n  \
             cargo run -p satchel-fetch -- --cmdline {cmdline} --config {config} --kmsg /dev/null\n\n\
             or by hand with curl and satchel-bundle:\n\n  \
             curl --fail --cert {cert} --key {key} --cacert {ca} -o {dir}/fetched.bundle {url} && \\\n  \
             cargo run -p satchel-bundle -- open {dir}/fetched.bundle --identity {identity} --trust {trust} --mac {DEMO_MAC} --into {root}\n\n\
             then: cat {root}/{DEMO_FILE}\n",
            dir = d.display(),
            root = root.display(),
            cmdline = cmdline.display(),
            config = self.node_config.display(),
            cert = nd.join(&node.client_cert).display(),
            key = nd.join(&node.client_key).display(),
            ca = self.config.ca_cert.display(),
            identity = identity.display(),
            trust = self.signer_pub.display(),
        ))
    }
}
