//! A rack from one template: 200 host bundles rendered from a template and
//! a CSV inventory by the real `satchel-bundle`, published in one command
//! to the real server, 3 of the nodes booted by the real fetcher; then the
//! inventory (3 applied, 197 never seen), a republish that makes the 3
//! stale, and a rollback that the fetcher applies.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use satchel_format::{Identities, Mac, SigningKey, Target};
use satchel_pki::enroll::EnrollOptions;
use satchel_tests::dns::DnsServer;
use satchel_tests::harness;
use satchel_tests::node::tree;

const SERVER_NAME: &str = "cfg.boot.test";
const DOMAIN: &str = "boot.test";
const NODES: usize = 200;
const BOOTED: usize = 3;
const KILL_AFTER: Duration = Duration::from_secs(300);

fn mac(i: usize) -> Mac {
    Mac::from_octets([0x52, 0x54, 0, 0x10, (i >> 8) as u8, i as u8])
}

fn admin_cli(d: &Path, args: &[&str]) -> harness::Finished {
    let mut cmd = Command::new(harness::bin("satchel-bundle"));
    cmd.args(args)
        .env("SATCHEL_ADMIN_CONFIG", d.join("admin.toml"))
        .env_remove("SOURCE_DATE_EPOCH");
    harness::run(cmd, KILL_AFTER)
}

fn ok_json(f: &harness::Finished) -> serde_json::Value {
    assert_eq!(f.code(), 0, "stdout:\n{}\nstderr:\n{}", f.stdout, f.stderr);
    serde_json::from_str(&f.stdout).unwrap_or_else(|e| panic!("{e}: {}", f.stdout))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The decrypted payload tar of a bundle file.
fn payload_tar(bundle: &Path, ids: &Identities) -> Vec<u8> {
    let f = std::fs::File::open(bundle).expect("bundle");
    let (_, mut tar) = satchel_format::open::inspect_reader(f, ids).expect("decrypt");
    let mut out = Vec::new();
    tar.read_to_end(&mut out).expect("read payload");
    out
}

fn write_inventory(path: &Path, role: &str) {
    let mut csv = String::from("mac,site,hostname,role\n");
    for i in 0..NODES {
        csv.push_str(&format!("{},dc1,node-{i:03},{role}\n", mac(i)));
    }
    std::fs::write(path, csv).expect("inventory");
}

fn boot(node: &Path, server: &harness::Proc) -> Vec<(String, String)> {
    let f = harness::run(harness::node_fetcher(node, &[]), KILL_AFTER);
    assert_eq!(
        f.code(),
        0,
        "fetcher:\n{}\nserver:\n{}",
        f.stderr,
        server.stderr_so_far()
    );
    tree(&node.join("root"))
}

#[test]
fn two_hundred_nodes_from_one_template_publish_boot_go_stale_and_roll_back() {
    let tmp = harness::tempdir();
    let d = tmp.path();
    let (ca, _admin) = harness::server_pki(d, SERVER_NAME);
    let signer = SigningKey::generate();
    std::fs::write(d.join("signer.pub"), signer.verifying_key().to_pem()).expect("pub");
    std::fs::write(
        d.join("signer.key"),
        signer.to_pem().expect("pem").as_bytes(),
    )
    .expect("key");
    let admins = Identities::generate();
    std::fs::write(
        d.join("admins.agekey"),
        admins.to_file_text("test").as_bytes(),
    )
    .expect("identity");
    let admin_rcpt = admins.recipients()[0].to_string();
    let (addr, server) = harness::start_server(d, "", KILL_AFTER);
    // Every connection setting, the identity, the signing key and the
    // admins' recipient come from the profile: no command repeats them.
    std::fs::write(
        d.join("admin.toml"),
        format!(
            "server = \"https://127.0.0.1:{}\"\nserver_name = \"{SERVER_NAME}\"\n\
             cert = \"admin.crt\"\nkey = \"admin.tls.key\"\nca = \"ca.pem\"\n\
             identity = \"admins.agekey\"\nsign_key = \"signer.key\"\n\
             recipients = [\"{admin_rcpt}\"]\n",
            addr.port()
        ),
    )
    .expect("profile");

    // Three real enrollments (their recipients.txt), and recipients for the
    // other 197 as an enrollment would list them.
    let (dns, _dns) = DnsServer::for_server(DOMAIN, SERVER_NAME, addr.port()).expect("dns");
    let mut recipient_files: Vec<PathBuf> = Vec::new();
    let nodes: Vec<PathBuf> = (0..BOOTED)
        .map(|i| {
            let node = d.join(format!("node-{i}"));
            ca.enroll(&EnrollOptions {
                mac: Some(mac(i)),
                signers: vec![d.join("signer.pub")],
                admin_recipients: vec![admin_rcpt.clone()],
                domain: DOMAIN.into(),
                required: Some(vec![Target::Host(mac(i))]),
                out: node.join("image"),
                ..Default::default()
            })
            .expect("enroll");
            recipient_files.push(node.join("image/recipients.txt"));
            std::fs::create_dir_all(node.join("root/etc")).expect("root");
            std::fs::write(node.join("root/etc/hostname"), "image-default\n").expect("hostname");
            std::fs::write(
                node.join("cmdline"),
                format!(
                    "ro satchel.dns={dns} satchel.root={} satchel.timeout=30\n",
                    node.join("root").display()
                ),
            )
            .expect("cmdline");
            std::fs::write(node.join("kmsg"), "").expect("kmsg");
            node
        })
        .collect();
    let others: String = (BOOTED..NODES)
        .map(|i| {
            format!(
                "host/{} {}\n",
                mac(i),
                Identities::generate().recipients()[0]
            )
        })
        .collect();
    std::fs::write(d.join("others.txt"), others).expect("others");
    recipient_files.push(d.join("others.txt"));

    // The template: two rendered files and one copied as is.
    let tpl = d.join("template");
    std::fs::create_dir_all(tpl.join("etc/app")).expect("template");
    std::fs::write(tpl.join("etc/hostname.j2"), "{{ hostname }}\n").expect("t");
    std::fs::write(
        tpl.join("etc/app/role.conf.j2"),
        "role={{ role }}\nsite={{ site }}\n{% if role == \"db\" %}\nreplicas=3\n{% endif %}\n",
    )
    .expect("t");
    std::fs::write(tpl.join("etc/motd"), "managed by satchel\n").expect("t");
    write_inventory(&d.join("inventory.csv"), "web");
    let mut create = vec![
        "create".to_string(),
        "--template".into(),
        s(&tpl).into(),
        "--inventory".into(),
        s(&d.join("inventory.csv")).into(),
        "--expires".into(),
        "2d".into(),
        "--json".into(),
    ];
    for f in &recipient_files {
        create.extend(["--recipients".to_string(), s(f).to_string()]);
    }
    let create_into = |out: &str, serial: &str| {
        let mut args = create.clone();
        args.extend([
            "--out-dir".to_string(),
            s(&d.join(out)).to_string(),
            "--serial".into(),
            serial.into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_json(&admin_cli(d, &args))
    };
    let v = create_into("out", "auto");
    assert_eq!(v["bundles"].as_array().map(Vec::len), Some(NODES), "{v}");
    assert!(v["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .all(|b| b["serial"] == 1));

    // Deterministic: the same template, inventory and serial give the same
    // payload bytes (the signature and age encryption aside).
    create_into("again", "1");
    let name = format!("host-{}.bundle", mac(7));
    assert_eq!(
        payload_tar(&d.join("out").join(&name), &admins),
        payload_tar(&d.join("again").join(&name), &admins),
        "the same inputs gave different payloads"
    );

    // A missing variable is an error naming the file, line and row.
    std::fs::write(tpl.join("etc/extra.j2"), "ok\n{{ rack }}\n").expect("t");
    let mut args = create.clone();
    args.extend([
        "--out-dir".to_string(),
        s(&d.join("bad")).to_string(),
        "--serial".into(),
        "1".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let f = admin_cli(d, &args);
    assert_eq!(f.code(), 2, "{}", f.stderr);
    assert!(
        f.stderr.contains("etc/extra.j2:2") && f.stderr.contains("inventory.csv line 2"),
        "{}",
        f.stderr
    );
    assert!(
        std::fs::read_dir(d.join("bad")).map_or(true, |mut r| r.next().is_none()),
        "bundles were written before every row was checked"
    );
    std::fs::remove_file(tpl.join("etc/extra.j2")).expect("rm");

    // One command publishes the rack; a second finds nothing to send.
    let p = ok_json(&admin_cli(
        d,
        &["publish", "--dir", s(&d.join("out")), "--json"],
    ));
    let results = |p: &serde_json::Value, r: &str| {
        p["bundles"]
            .as_array()
            .expect("bundles")
            .iter()
            .filter(|b| b["result"] == r)
            .count()
    };
    assert_eq!(results(&p, "published"), NODES, "{p}");
    let p = ok_json(&admin_cli(
        d,
        &["publish", "--dir", s(&d.join("out")), "--json"],
    ));
    assert_eq!(results(&p, "unchanged"), NODES, "{p}");

    // Three nodes boot with the real fetcher.
    let first: Vec<Vec<(String, String)>> = nodes.iter().map(|n| boot(n, &server)).collect();
    for (i, t) in first.iter().enumerate() {
        assert!(
            t.contains(&("etc/hostname".into(), format!("node-{i:03}\n"))),
            "{t:?}"
        );
        assert!(
            t.contains(&("etc/app/role.conf".into(), "role=web\nsite=dc1\n".into())),
            "{t:?}"
        );
    }
    let inv = ok_json(&admin_cli(d, &["nodes", "--json"]));
    let applied: Vec<&serde_json::Value> = inv["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["last_status"] == "applied" && n["stale"] == false)
        .collect();
    assert_eq!(applied.len(), BOOTED, "{inv}");
    assert_eq!(
        inv["never_seen"].as_array().map(Vec::len),
        Some(NODES - BOOTED),
        "{inv}"
    );

    // A new role for the rack: rendered at the next serial, shown by a dry
    // run, published; the three booted nodes are now stale.
    write_inventory(&d.join("inventory.csv"), "db");
    let v = create_into("out", "auto");
    assert!(v["bundles"]
        .as_array()
        .expect("bundles")
        .iter()
        .all(|b| b["serial"] == 2));
    let dry = ok_json(&admin_cli(
        d,
        &["publish", "--dir", s(&d.join("out")), "--dry-run", "--json"],
    ));
    assert_eq!(results(&dry, "would change"), NODES, "{dry}");
    let changed = &dry["bundles"][0]["diff"]["changed"];
    assert!(changed.to_string().contains("etc/app/role.conf"), "{dry}");
    let p = ok_json(&admin_cli(
        d,
        &["publish", "--dir", s(&d.join("out")), "--json"],
    ));
    assert_eq!(results(&p, "published"), NODES, "{p}");
    let stale = ok_json(&admin_cli(d, &["nodes", "--stale", "--json"]));
    let mut stale_macs: Vec<String> = stale["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["mac"].as_str().unwrap_or("").to_string())
        .collect();
    stale_macs.sort();
    let mut want: Vec<String> = (0..BOOTED).map(|i| mac(i).to_string()).collect();
    want.sort();
    assert_eq!(stale_macs, want, "{stale}");

    // Rollback of node 0 to serial 1: re-signed above the highest, the
    // fetcher applies it and the tree is the first boot's again.
    let target = format!("host/{}", mac(0));
    let r = ok_json(&admin_cli(d, &["rollback", &target, "--to", "1", "--json"]));
    assert_eq!(r["serial"], 3, "{r}");
    assert!(
        r["diff"]["changed"]
            .to_string()
            .contains("etc/app/role.conf"),
        "{r}"
    );
    assert_eq!(
        boot(&nodes[0], &server),
        first[0],
        "the rollback did not restore the tree"
    );
    let inv = ok_json(&admin_cli(d, &["nodes", "--json"]));
    let n0 = inv["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["mac"] == mac(0).to_string())
        .cloned()
        .expect("node 0");
    assert_eq!(n0["stale"], false, "{n0}");
    assert_eq!(n0["serials"][&target], 3, "{n0}");
    let h = ok_json(&admin_cli(d, &["history", &target, "--json"]));
    assert_eq!(h["current_serial"], 3, "{h}");

    // Refusals are counted and explained, and nothing is lost: the old
    // serials of `again/` are refused by the server (rollback protection),
    // a truncated file by the local check before anything is sent.
    let bytes = std::fs::read(d.join("again").join(&name)).expect("bundle");
    std::fs::write(d.join("again/truncated.bundle"), &bytes[..bytes.len() / 2]).expect("w");
    let f = admin_cli(d, &["publish", "--dir", s(&d.join("again")), "--json"]);
    assert_eq!(f.code(), 1, "{}", f.stderr);
    let p: serde_json::Value = serde_json::from_str(&f.stdout).expect("json");
    assert_eq!(results(&p, "refused"), NODES + 1, "{p}");
    let reasons = p["bundles"].to_string();
    assert!(
        reasons.contains("rollback protection") && reasons.contains("not a valid bundle"),
        "{p}"
    );
    let f = admin_cli(d, &["rollback", &target, "--to", "3"]);
    assert_eq!(f.code(), 2, "{}", f.stderr);
    assert!(f.stderr.contains("already the current"), "{}", f.stderr);
    let f = admin_cli(d, &["rollback", &target, "--to", "99"]);
    assert_eq!(f.code(), 1, "{}", f.stderr);
    assert!(f.stderr.contains("not in its history"), "{}", f.stderr);
    let h = ok_json(&admin_cli(d, &["history", &target, "--json"]));
    assert_eq!(
        h["current_serial"], 3,
        "a refused rollback changed the target: {h}"
    );
    drop(server);
}
