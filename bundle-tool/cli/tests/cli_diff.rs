//! `satchel-bundle diff`, `completions` and `man` through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    String::from_utf8(o.stdout).expect("utf8")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

struct Keys {
    sign: PathBuf,
    identity: PathBuf,
    recipient: String,
}

fn keys(dir: &Path) -> Keys {
    let prefix = dir.join("admin");
    ok(&["keygen", "signing", "--out", s(&prefix)]);
    let identity = dir.join("admin.age");
    // `--json` is one global flag: before the subcommand as well as after.
    let out = ok(&["--json", "keygen", "identity", "--out", s(&identity)]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    Keys {
        sign: dir.join("admin.key"),
        identity,
        recipient: v["recipient"].as_str().expect("recipient").to_string(),
    }
}

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/app")).expect("mkdir");
    std::fs::write(dir.join("etc/hostname"), "node1\n").expect("write");
    std::fs::write(dir.join("etc/app/config"), "a = 1\n").expect("write");
    std::fs::write(dir.join("etc/motd"), "hello\n").expect("write");
    std::os::unix::fs::symlink("config", dir.join("etc/app/current")).expect("symlink");
}

fn create(k: &Keys, from: &Path, out: &Path) {
    ok(&[
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
    ]);
}

fn diff_json(k: &Keys, a: &Path, b: &Path) -> serde_json::Value {
    let out = ok(&["diff", s(a), s(b), "--identity", s(&k.identity), "--json"]);
    serde_json::from_str::<serde_json::Value>(&out).expect("json")["diff"].clone()
}

fn paths(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_string())
        .collect()
}

#[test]
fn a_bundle_diffs_empty_against_its_source_directory() {
    let t = tempfile::tempdir().expect("tmp");
    let k = keys(t.path());
    let src = t.path().join("src");
    tree(&src);
    let b = t.path().join("b.bundle");
    create(&k, &src, &b);
    for (x, y) in [(&b, &src), (&src, &b), (&b, &b), (&src, &src)] {
        let d = diff_json(&k, x, y);
        assert!(d["added"].as_array().expect("a").is_empty(), "{d}");
        assert!(d["removed"].as_array().expect("r").is_empty(), "{d}");
        assert!(d["changed"].as_array().expect("c").is_empty(), "{d}");
        assert!(d["unchanged"].as_u64().expect("n") >= 5, "{d}");
    }
}

#[test]
fn diff_reports_added_removed_content_mode_and_link_changes() {
    let t = tempfile::tempdir().expect("tmp");
    let k = keys(t.path());
    let old = t.path().join("old");
    tree(&old);
    let old_bundle = t.path().join("old.bundle");
    create(&k, &old, &old_bundle);

    let new = t.path().join("new");
    tree(&new);
    std::fs::write(new.join("etc/hostname"), "node2\n").expect("content");
    std::fs::set_permissions(
        new.join("etc/app/config"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("mode");
    std::fs::remove_file(new.join("etc/app/current")).expect("rm");
    std::os::unix::fs::symlink("other", new.join("etc/app/current")).expect("link");
    std::fs::remove_file(new.join("etc/motd")).expect("rm");
    std::fs::write(new.join("etc/issue"), "welcome\n").expect("add");
    let new_bundle = t.path().join("new.bundle");
    create(&k, &new, &new_bundle);

    // Bundle against bundle, bundle against directory: the same answer.
    for (a, b) in [
        (&old_bundle, &new_bundle),
        (&old_bundle, &new),
        (&old, &new_bundle),
    ] {
        let d = diff_json(&k, a, b);
        assert_eq!(paths(&d["added"]), ["etc/issue"], "{d}");
        assert_eq!(paths(&d["removed"]), ["etc/motd"], "{d}");
        let changed: Vec<(String, Vec<String>)> = d["changed"]
            .as_array()
            .expect("changed")
            .iter()
            .map(|c| {
                (
                    c["path"].as_str().expect("p").to_string(),
                    c["changes"]
                        .as_array()
                        .expect("changes")
                        .iter()
                        .map(|x| x["what"].as_str().expect("what").to_string())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            changed,
            vec![
                ("etc/app/config".to_string(), vec!["mode".to_string()]),
                (
                    "etc/app/current".to_string(),
                    vec!["link_target".to_string()]
                ),
                ("etc/hostname".to_string(), vec!["content".to_string()]),
            ]
        );
    }
    // The human output says the same.
    let human = ok(&[
        "diff",
        s(&old_bundle),
        s(&new_bundle),
        "--identity",
        s(&k.identity),
    ]);
    assert!(human.contains("+ etc/issue"), "{human}");
    assert!(human.contains("- etc/motd"), "{human}");
    assert!(
        human.contains("~ etc/app/config (mode 0644 -> 0600)"),
        "{human}"
    );
    assert!(
        human.contains("~ etc/app/current (link config -> other)"),
        "{human}"
    );
    assert!(human.contains("1 added, 1 removed, 3 changed"), "{human}");
}

#[test]
fn diff_of_a_bundle_without_identity_is_a_usage_error() {
    let t = tempfile::tempdir().expect("tmp");
    let k = keys(t.path());
    let src = t.path().join("src");
    tree(&src);
    let b = t.path().join("b.bundle");
    create(&k, &src, &b);
    let o = run(&["diff", s(&b), s(&src)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--identity"));
}

#[test]
fn diff_refuses_a_bundle_it_cannot_decrypt_or_parse() {
    let t = tempfile::tempdir().expect("tmp");
    let k = keys(t.path());
    let other = keys(&{
        let d = t.path().join("other");
        std::fs::create_dir(&d).expect("mkdir");
        d
    });
    let src = t.path().join("src");
    tree(&src);
    let b = t.path().join("b.bundle");
    create(&k, &src, &b);
    let o = run(&["diff", s(&b), s(&src), "--identity", s(&other.identity)]);
    assert_eq!(o.status.code(), Some(1), "not encrypted to this identity");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot decrypt"));

    let junk = t.path().join("junk.bundle");
    std::fs::write(&junk, b"not a bundle at all").expect("junk");
    let o = run(&["diff", s(&junk), s(&src), "--identity", s(&k.identity)]);
    assert_eq!(o.status.code(), Some(1));

    // A flipped payload byte: refused, not diffed.
    let mut bytes = std::fs::read(&b).expect("read");
    let at = bytes.len() - 2048;
    bytes[at] ^= 1;
    let bad = t.path().join("bad.bundle");
    std::fs::write(&bad, bytes).expect("write");
    let o = run(&["diff", s(&bad), s(&src), "--identity", s(&k.identity)]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn completions_are_generated_for_every_shell() {
    for (shell, needle) in [
        ("bash", "complete -F _satchel__bundle"),
        ("zsh", "#compdef satchel-bundle"),
        ("fish", "complete -c satchel-bundle"),
        ("elvish", "satchel-bundle"),
        ("powershell", "satchel-bundle"),
    ] {
        let out = ok(&["completions", shell]);
        assert!(out.contains(needle), "{shell}: {needle} missing");
        for sub in ["approve", "initrd", "publish", "uploads", "diff", "create"] {
            assert!(out.contains(sub), "{shell}: subcommand {sub} missing");
        }
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
    // The bash script parses.
    let t = tempfile::tempdir().expect("tmp");
    let script = t.path().join("satchel-bundle.bash");
    std::fs::write(&script, ok(&["completions", "bash"])).expect("write");
    let o = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn man_pages_are_generated_from_the_clap_definitions() {
    let page = ok(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH satchel-bundle"),
        "{}",
        &page[..200]
    );
    assert!(page.contains("approve"));
    let t = tempfile::tempdir().expect("tmp");
    let dir = t.path().join("man");
    ok(&["man", "--out", s(&dir)]);
    for name in [
        "satchel-bundle.1",
        "satchel-bundle-approve.1",
        "satchel-bundle-initrd.1",
        "satchel-bundle-uploads-pull.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name} is a man page");
    }
    let approve = std::fs::read_to_string(dir.join("satchel-bundle-approve.1")).expect("approve");
    assert!(
        approve.contains("allow\\-anonymous"),
        "flags come from clap"
    );
}
