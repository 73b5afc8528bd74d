//! `satchel-bundle create --enable` through the real binary: the links in
//! the sealed payload, as the overlay lists and lays them, and the refusals.

// Helpers of this test binary panic on failure by design, like the tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicU64;

use satchel_format::open::{inspect_reader, open_into, overlay_options};
use satchel_format::verify::Checks;
use satchel_format::{Identities, VerifyingKey};
use satchel_overlay::{check_archive, EntryKind, Options};

const BIN: &str = env!("CARGO_BIN_EXE_satchel-bundle");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run satchel-bundle")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Keys {
    sign: PathBuf,
    public: PathBuf,
    identity: PathBuf,
    recipient: String,
}

fn keys(dir: &Path) -> Keys {
    ok(&["keygen", "signing", "--out", s(&dir.join("admin"))]);
    let identity = dir.join("admin.age");
    let out = ok(&["--json", "keygen", "identity", "--out", s(&identity)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    Keys {
        sign: dir.join("admin.key"),
        public: dir.join("admin.pub"),
        identity,
        recipient: v["recipient"].as_str().unwrap().to_string(),
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

const DEMO: &str = "\
[Unit]
Description=satchel demo

[Service]
Type=oneshot
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target
Alias=demo.service
";

const WORKER: &str = "\
[Unit]
Description=worker %i

[Service]
ExecStart=/usr/bin/worker --queue %i

[Install]
WantedBy=multi-user.target
";

fn tree(root: &Path) {
    write(root, "etc/hostname", "node1\n");
    write(root, "lib/systemd/system/satchel-demo.service", DEMO);
    write(root, "usr/lib/systemd/system/worker@.service", WORKER);
}

fn create_args<'a>(k: &'a Keys, from: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "create",
        "--mac",
        "aa:bb:cc:dd:ee:01",
        "--serial",
        "1",
        "--expires",
        "1d",
        "--sign-key",
        s(&k.sign),
        "--recipient",
        &k.recipient,
        "--from-dir",
        s(from),
        "-o",
        s(out),
    ]
}

/// The payload's symlinks, as the overlay lists them (absolute targets
/// accepted, as the node's overlay does).
fn payload_links(k: &Keys, bundle: &Path) -> BTreeMap<String, String> {
    let ids = Identities::read_file(&k.identity).unwrap();
    let (header, mut tar) = inspect_reader(fs::File::open(bundle).unwrap(), &ids).unwrap();
    let opts = overlay_options(&header.manifest, &absolute_ok());
    let listed = check_archive(&mut tar, &opts).unwrap();
    listed
        .entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::Symlink)
        .map(|e| (e.path, e.link_target.unwrap()))
        .collect()
}

fn absolute_ok() -> Options {
    Options::default()
}

const DEMO_FILE: &str = "/lib/systemd/system/satchel-demo.service";
const WORKER_FILE: &str = "/usr/lib/systemd/system/worker@.service";

#[test]
fn enable_adds_the_links_systemctl_would_make() {
    let t = tempfile::tempdir().unwrap();
    let k = keys(t.path());
    let src = t.path().join("src");
    tree(&src);
    let out = t.path().join("b.bundle");
    let mut args = create_args(&k, &src, &out);
    args.extend([
        "--enable",
        "satchel-demo.service",
        "--enable",
        "worker@blue.service",
        "--enable",
        "sshd.service:multi-user.target",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(v["enabled"].as_array().unwrap().len(), 4, "{v}");

    let wants = "etc/systemd/system/multi-user.target.wants";
    let want: BTreeMap<String, String> = [
        ("etc/systemd/system/demo.service", DEMO_FILE),
        (&format!("{wants}/satchel-demo.service"), DEMO_FILE),
        (&format!("{wants}/worker@blue.service"), WORKER_FILE),
        (
            &format!("{wants}/sshd.service"),
            "/usr/lib/systemd/system/sshd.service",
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(payload_links(&k, &out), want);

    // Laid over a root as a node does: the links are there, nothing else moved.
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let trusted = VerifyingKey::read_pem_file(&k.public).unwrap();
    let ids = Identities::read_file(&k.identity).unwrap();
    open_into(
        &out,
        &Checks::new(vec![trusted]),
        &ids,
        &root,
        &absolute_ok(),
        &AtomicU64::new(0),
    )
    .unwrap();
    for (path, target) in &want {
        assert_eq!(
            fs::read_link(root.join(path)).unwrap().to_str().unwrap(),
            target
        );
    }
    assert_eq!(
        fs::read_to_string(root.join("lib/systemd/system/satchel-demo.service")).unwrap(),
        DEMO
    );
    // The source directory is untouched.
    assert!(!src.join("etc/systemd").exists());

    // A link the payload already has, pointing where it should, is kept as is.
    fs::create_dir_all(src.join(wants)).unwrap();
    std::os::unix::fs::symlink(DEMO_FILE, src.join(wants).join("satchel-demo.service")).unwrap();
    let out2 = t.path().join("b2.bundle");
    let mut args = create_args(&k, &src, &out2);
    args.extend(["--enable", "satchel-demo.service"]);
    let text = ok(&args);
    assert!(text.contains("(already in the payload)"), "{text}");
    let links = payload_links(&k, &out2);
    assert_eq!(links.len(), 2, "{links:?}");
}

#[test]
fn enable_works_with_templates_per_row() {
    let t = tempfile::tempdir().unwrap();
    let k = keys(t.path());
    let tmpl = t.path().join("template");
    write(&tmpl, "etc/hostname.j2", "{{ hostname }}\n");
    write(
        &tmpl,
        "lib/systemd/system/role.service.j2",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy={{ role }}.target\n",
    );
    let inv = t.path().join("inventory.csv");
    fs::write(
        &inv,
        format!(
            "mac,hostname,role,recipient\naa-bb-cc-dd-ee-01,web-01,web,{r}\n\
             aa-bb-cc-dd-ee-02,db-01,db,{r}\n",
            r = k.recipient
        ),
    )
    .unwrap();
    let out_dir = t.path().join("rack");
    ok(&[
        "create",
        "--template",
        s(&tmpl),
        "--inventory",
        s(&inv),
        "--out-dir",
        s(&out_dir),
        "--serial",
        "1",
        "--expires",
        "1d",
        "--sign-key",
        s(&k.sign),
        "--enable",
        "role.service",
    ]);
    for (mac, role) in [("aa-bb-cc-dd-ee-01", "web"), ("aa-bb-cc-dd-ee-02", "db")] {
        let links = payload_links(&k, &out_dir.join(format!("host-{mac}.bundle")));
        let want: BTreeMap<String, String> = [(
            format!("etc/systemd/system/{role}.target.wants/role.service"),
            "/lib/systemd/system/role.service".to_string(),
        )]
        .into_iter()
        .collect();
        assert_eq!(links, want);
    }
}

#[test]
fn enable_refusals_name_the_unit_and_what_to_do() {
    let t = tempfile::tempdir().unwrap();
    let k = keys(t.path());
    let src = t.path().join("src");
    tree(&src);
    write(
        &src,
        "etc/systemd/system/plain.service",
        "[Service]\nExecStart=/bin/true\n",
    );
    write(
        &src,
        "etc/systemd/system/evil.service",
        "[Install]\nWantedBy=../../../etc/cron.d/x.target\n",
    );
    write(&src, "usr/lib/systemd/system/twice.service", DEMO);
    write(&src, "lib/systemd/system/twice.service", DEMO);
    let out = t.path().join("b.bundle");
    for (enable, status, want) in [
        (
            "missing.service",
            1,
            "unit missing.service is not in the payload",
        ),
        ("missing.service", 1, "--enable missing.service:TARGET"),
        (
            "plain.service",
            1,
            "has no WantedBy/RequiredBy/Alias; nothing to enable",
        ),
        ("evil.service", 1, "invalid unit name"),
        ("twice.service", 1, "more than once"),
        ("worker@.service", 1, "--enable worker@INSTANCE.service"),
        ("../x.service", 2, "invalid unit name"),
        ("x.service:a/b.target", 2, "invalid unit name"),
    ] {
        let mut args = create_args(&k, &src, &out);
        args.extend(["--enable", enable]);
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(status), "{enable}: {err}");
        assert!(err.contains(want), "{enable}: {err}");
        assert!(!out.exists(), "{enable}: a bundle was written");
    }

    // A link of the payload pointing elsewhere is not replaced.
    let wants = src.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("/opt/old.service", wants.join("satchel-demo.service")).unwrap();
    let mut args = create_args(&k, &src, &out);
    args.extend(["--enable", "satchel-demo.service"]);
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already has this link pointing at /opt/old.service"),
        "{err}"
    );

    // --from-tar has no directory to read units from.
    let tar = t.path().join("p.tar");
    fs::write(&tar, [0u8; 1024]).unwrap();
    let o = run(&[
        "create",
        "--mac",
        "aa:bb:cc:dd:ee:01",
        "--serial",
        "1",
        "--expires",
        "1d",
        "--sign-key",
        s(&k.sign),
        "--recipient",
        &k.recipient,
        "--from-tar",
        s(&tar),
        "--enable",
        "a.service",
        "-o",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--enable"));
}
