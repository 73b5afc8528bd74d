//! Real-kernel boot tests, and the host-side checks of the boot-integration
//! files in `contrib/`.
//!
//! A Debian kernel (`tests/boot/kernel.sh`, cached in `.cache/boot/`) boots
//! under QEMU (software emulation) a minimal busybox initramfs standing in
//! for a distro initrd (`tests/boot/initramfs.sh base`, `/init` from
//! `tests/boot/init`), with an overlay cpio concatenated after it exactly as
//! an operator does (`cat base.cpio.gz overlay.cpio.zst > initrd`). `/init`
//! brings up the virtio NIC at 10.0.2.15, mounts an empty `/sysroot`, runs
//! the hook the overlay installs (`contrib/satchel-hook.sh`), prints the
//! hook's status file, a tree hash of `/sysroot` (`tests/boot/treehash.sh`,
//! recomputed here by [`tree_listing`]) and the hook's exit status on the
//! serial console, and powers off. The guest reaches the host only through
//! QEMU's `guestfwd` forwards to 127.0.0.1 (`restrict=on`).
//!
//! What this file does not do yet: run the real fetcher. The smoke boots use
//! `tests/boot/standin-fetch.sh` at the fetcher's path (plain HTTP from a
//! responder on 127.0.0.1) to prove the guest side; the real flow replaces
//! it (see `tests/boot/README.md`).
//!
//! Layout: limits; paths and tool checks; [`tree_listing`]; the hook and
//! unit checks (no VM); the QEMU driver ([`BootSpec`], [`boot`]); the
//! stand-in responder; the boot tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Hard limit on one boot, from QEMU's start to its exit. A boot takes
/// about 4 s on two emulated-CPU cores; this leaves room for a loaded CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Hard limit on one run of the hook on the host.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Guest RAM, MiB.
const GUEST_MEM_MIB: u32 = 512;
/// The serial console's marker prefix (see `tests/boot/init`).
const MARKER: &str = "SATCHEL-BOOT-TEST ";
/// The guest's MAC, as QEMU takes it, and in `BOOTIF=` form.
const GUEST_MAC: &str = "52:54:00:5a:7c:01";
const GUEST_BOOTIF: &str = "01-52-54-00-5a-7c-01";
/// Guest-side address QEMU forwards to the server's port on host loopback.
const GUEST_SERVER: &str = "10.0.2.100:443";
/// sha256 of the empty listing: the tree hash of an empty `/sysroot`.
const EMPTY_TREE: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// --- paths and tools ---------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn boot_dir() -> PathBuf {
    repo().join("tests/boot")
}

fn hook_script() -> PathBuf {
    repo().join("contrib/satchel-hook.sh")
}

/// Fails with the Debian packages to install when a tool is missing.
fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: the boot tests need the Debian package {package} \
         (.ci/run installs it)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel directory `tests/boot/kernel.sh` prepares (downloaded once,
/// then cached in `.cache/boot/`).
fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let t = Instant::now();
        let out = run(Command::new("sh").arg(boot_dir().join("kernel.sh")));
        let dir = PathBuf::from(out.lines().last().expect("kernel.sh printed its directory"));
        assert!(
            dir.join("vmlinux").is_file(),
            "no vmlinux in {}",
            dir.display()
        );
        eprintln!("kernel ready in {:.1?}: {}", t.elapsed(), dir.display());
        dir
    })
}

// --- the tree hash -------------------------------------------------------------

/// The canonical listing of the tree under `root`, as `tests/boot/treehash.sh`
/// prints it: one line per entry below `root`, sorted by the bytes of the
/// relative path, `d <mode> - <path>`, `f <mode> <sha256> <path>`,
/// `l - <target> <path>` or `o <mode> - <path>`.
fn tree_listing(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, String)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(root).expect("below root");
            let rel_s = rel.to_str().expect("utf-8 test paths").to_string();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let mode = md.permissions().mode() & 0o7777;
            let line = if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                format!("l - {} {rel_s}", t.display())
            } else if md.is_dir() {
                walk(root, &p, out);
                format!("d {mode:o} - {rel_s}")
            } else if md.is_file() {
                let h = hex::encode(Sha256::digest(std::fs::read(&p).expect("read")));
                format!("f {mode:o} {h} {rel_s}")
            } else {
                format!("o {mode:o} - {rel_s}")
            };
            out.push((rel_s.into_bytes(), line));
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v.sort();
    v.into_iter().map(|(_, l)| l + "\n").collect()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A tree with names and modes that trip naive scripts.
fn hostile_tree(root: &Path) {
    let files: &[(&str, &[u8], u32)] = &[
        ("etc/hostname", b"node-7\n", 0o644),
        ("etc/satchel secret", b"k", 0o600),
        ("etc/-n", b"dash", 0o644),
        ("etc/a*b", b"glob", 0o644),
        ("etc/back\\slash", b"bs", 0o644),
        ("etc/tab\there", b"tab", 0o640),
        ("etc/trailing ", b"space", 0o644),
        ("etc/caf\u{e9}", "\u{e9}".as_bytes(), 0o644),
        ("etc/empty", b"", 0o444),
        ("usr/bin/tool", b"#!/bin/sh\n", 0o4755),
        ("a-b", b"sorts before a/b", 0o644),
        ("a/b", b"sorts after a-b", 0o644),
        ("A", b"upper sorts first", 0o644),
    ];
    for (p, data, mode) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, data).expect("write");
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    symlink("../usr/bin/tool", root.join("etc/tool link")).expect("symlink");
    symlink("/nowhere/dangling", root.join("dangling")).expect("symlink");
    symlink("with space target", root.join("etc/spaced")).expect("symlink");
}

#[test]
fn tree_hash_script_matches_the_host_definition() {
    need("busybox", "busybox-static");
    let d = tempfile::tempdir().expect("tempdir");
    hostile_tree(d.path());
    let want = tree_listing(d.path());
    assert_eq!(want.lines().count(), 21, "listing:\n{want}");
    for shell in [&["sh"][..], &["busybox", "sh"][..]] {
        let got = run(Command::new(shell[0])
            .args(&shell[1..])
            .arg(boot_dir().join("treehash.sh"))
            .arg(d.path()));
        assert_eq!(
            got, want,
            "{shell:?} treehash.sh disagrees with tree_listing"
        );
        // A trailing slash names the same tree.
        let got = run(Command::new(shell[0])
            .args(&shell[1..])
            .arg(boot_dir().join("treehash.sh"))
            .arg(format!("{}/", d.path().display())));
        assert_eq!(got, want, "{shell:?} treehash.sh DIR/ disagrees");
    }
    // Any change of content, mode or link target changes the listing.
    let before = sha256_hex(&want);
    std::fs::write(d.path().join("etc/empty"), b"x").expect("write");
    let after_content = sha256_hex(&tree_listing(d.path()));
    std::fs::set_permissions(d.path().join("a/b"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let after_mode = sha256_hex(&tree_listing(d.path()));
    std::fs::remove_file(d.path().join("dangling")).expect("rm");
    symlink("/nowhere/else", d.path().join("dangling")).expect("symlink");
    let after_link = sha256_hex(&tree_listing(d.path()));
    let all = [&before, &after_content, &after_mode, &after_link];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let empty = tempfile::tempdir().expect("tempdir");
    assert_eq!(sha256_hex(&tree_listing(empty.path())), EMPTY_TREE);
}

// --- the hook, on the host -----------------------------------------------------

/// What a host run of the hook left behind.
#[derive(Debug)]
struct HookRun {
    exit: i32,
    status: BTreeMap<String, String>,
    /// Arguments the fetcher got, one per line; `None` when it never ran.
    fetcher_args: Option<String>,
    kmsg: String,
    stderr: String,
}

/// How the program at the fetcher's path behaves in a host run of the hook.
#[derive(Clone, Copy, Debug)]
enum Fetcher {
    Exits(i32),
    KilledBySignal,
    Hangs,
    Missing,
}

/// Runs `contrib/satchel-hook.sh` under `shell` with every path pointed into
/// a temp dir. The program at the fetcher's path records its arguments and
/// behaves as `fetcher` says: these runs test the hook's policy on the
/// fetcher's exit status, which is the interface between the two.
fn run_hook(
    shell: &[&str],
    cmdline: &str,
    fetcher: Fetcher,
    with_config: bool,
    dir: &Path,
) -> HookRun {
    let fetch = dir.join("satchel-fetch");
    let args = dir.join("fetcher-args");
    let _ = std::fs::remove_file(&args);
    let body = match fetcher {
        Fetcher::Exits(n) => format!("exit {n}"),
        Fetcher::KilledBySignal => "kill -9 $$".to_string(),
        Fetcher::Hangs => "exec sleep 60".to_string(),
        Fetcher::Missing => String::new(),
    };
    let _ = std::fs::remove_file(&fetch);
    if !matches!(fetcher, Fetcher::Missing) {
        std::fs::write(
            &fetch,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >'{}'\n{body}\n",
                args.display()
            ),
        )
        .expect("write fetcher");
        std::fs::set_permissions(&fetch, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = dir.join("satchel.toml");
    if with_config {
        std::fs::write(&config, "version = 1\n").expect("write config");
    } else {
        let _ = std::fs::remove_file(&config);
    }
    std::fs::write(dir.join("cmdline"), format!("{cmdline}\n")).expect("write cmdline");
    let kmsg = dir.join("kmsg");
    std::fs::write(&kmsg, "").expect("kmsg");
    let mut child = Command::new(shell[0])
        .args(&shell[1..])
        .arg(hook_script())
        .env("SATCHEL_FETCH", &fetch)
        .env("SATCHEL_CONFIG", &config)
        .env("SATCHEL_STATUS_DIR", dir.join("run"))
        .env("SATCHEL_CMDLINE", dir.join("cmdline"))
        .env("SATCHEL_KMSG", &kmsg)
        .env("SATCHEL_HOOK_GRACE", "1")
        .env("SATCHEL_HOOK_KILL_AFTER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"))
        .spawn()
        .expect("spawn hook");
    let exit = wait_or_kill(&mut child, HOOK_TIMEOUT).unwrap_or_else(|| {
        panic!("the hook ran past {HOOK_TIMEOUT:?} (cmdline {cmdline:?}, {fetcher:?})")
    });
    let status = std::fs::read_to_string(dir.join("run/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    HookRun {
        exit,
        status,
        fetcher_args: std::fs::read_to_string(&args).ok(),
        kmsg: std::fs::read_to_string(&kmsg).expect("kmsg"),
        stderr: std::fs::read_to_string(dir.join("stderr")).expect("stderr"),
    }
}

/// Waits for `child` up to `limit`; kills it and returns `None` past that.
fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

const SHELLS: [&[&str]; 2] = [&["sh"], &["busybox", "sh"]];

#[test]
fn hook_reads_satchel_required_like_the_fetcher() {
    need("busybox", "busybox-static");
    // (kernel command line, the policy the hook must apply)
    let cases: &[(&str, &str)] = &[
        ("", "1"),
        ("BOOT_IMAGE=/vmlinuz quiet", "1"),
        ("satchel.required=0", "0"),
        ("satchel.required=1", "1"),
        ("satchel.required", "1"),
        ("satchel.required=no", "0"),
        ("satchel.required=off", "0"),
        ("satchel.required=false", "0"),
        ("satchel.required=n", "0"),
        ("satchel.required=yes", "1"),
        ("satchel.required=on", "1"),
        ("\"satchel.required=0\"", "0"),
        ("satchel.required=\"0\"", "0"),
        ("satchel.required=0 satchel.required=1", "1"),
        ("satchel.required=1 satchel.required=0", "0"),
        ("satchel.required=1\tsatchel.required=0", "0"),
        ("satchel.required=maybe", "1"),
        ("satchel.required=", "1"),
        ("satchel.required=00", "1"),
        ("satchel.required=0;reboot", "1"),
        ("satchel.required=$(reboot)", "1"),
        ("satchel.required=*", "1"),
        ("xsatchel.required=0", "1"),
        ("satchel.requiredx=0", "1"),
        ("satchel.required.x=0", "1"),
        ("  satchel.required=0  ", "0"),
        (
            "satchel.domain=a.test satchel.required=0 BOOTIF=01-aa-bb-cc-dd-ee-ff",
            "0",
        ),
    ];
    let d = tempfile::tempdir().expect("tempdir");
    for shell in SHELLS {
        for (cmdline, want) in cases {
            let r = run_hook(shell, cmdline, Fetcher::Exits(7), true, d.path());
            assert_eq!(
                r.status.get("required").map(String::as_str),
                Some(*want),
                "{shell:?} cmdline {cmdline:?}: {r:?}"
            );
            let want_exit = if *want == "1" { 1 } else { 0 };
            assert_eq!(r.exit, want_exit, "{shell:?} cmdline {cmdline:?}: {r:?}");
            assert_eq!(r.status.get("result").map(String::as_str), Some("failed"));
            assert_eq!(r.status.get("fetch_exit").map(String::as_str), Some("7"));
            std::fs::remove_dir_all(d.path().join("run")).expect("clear status");
        }
    }
}

#[test]
fn hook_maps_fetcher_outcomes_to_status_and_exit() {
    need("busybox", "busybox-static");
    // (fetcher, config present, satchel.required, hook exit, result, fetch_exit)
    let cases: &[(Fetcher, bool, &str, i32, &str, &str)] = &[
        (Fetcher::Exits(0), true, "1", 0, "ok", "0"),
        (Fetcher::Exits(0), true, "0", 0, "ok", "0"),
        (Fetcher::Exits(1), true, "1", 1, "failed", "1"),
        (Fetcher::Exits(1), true, "0", 0, "failed", "1"),
        (Fetcher::Exits(255), true, "1", 1, "failed", "255"),
        (Fetcher::KilledBySignal, true, "1", 1, "failed", "137"),
        (Fetcher::KilledBySignal, true, "0", 0, "failed", "137"),
        (Fetcher::Missing, true, "1", 1, "failed", "127"),
        (Fetcher::Missing, true, "0", 0, "failed", "127"),
        (Fetcher::Exits(0), false, "1", 1, "failed", "126"),
        (Fetcher::Exits(0), false, "0", 0, "failed", "126"),
        (Fetcher::Hangs, true, "1", 1, "failed", "124"),
    ];
    let d = tempfile::tempdir().expect("tempdir");
    for shell in SHELLS {
        for &(fetcher, config, required, exit, result, fetch_exit) in cases {
            // satchel.timeout=1: the hook stops a hung fetcher after 1 s + 1 s grace.
            let cmdline = format!("satchel.required={required} satchel.timeout=1");
            let t = Instant::now();
            let r = run_hook(shell, &cmdline, fetcher, config, d.path());
            let what = format!("{shell:?} {fetcher:?} config={config} required={required}: {r:?}");
            assert_eq!(r.exit, exit, "{what}");
            assert_eq!(
                r.status.get("result").map(String::as_str),
                Some(result),
                "{what}"
            );
            assert_eq!(
                r.status.get("fetch_exit").map(String::as_str),
                Some(fetch_exit),
                "{what}"
            );
            assert_eq!(
                r.status.get("required").map(String::as_str),
                Some(required),
                "{what}"
            );
            let ran = matches!(
                fetcher,
                Fetcher::Exits(_) | Fetcher::KilledBySignal | Fetcher::Hangs
            ) && config;
            if ran {
                let args = r
                    .fetcher_args
                    .as_deref()
                    .unwrap_or_else(|| panic!("{what}"));
                assert_eq!(
                    args,
                    format!("--config\n{}\n", d.path().join("satchel.toml").display())
                );
            } else {
                assert!(r.fetcher_args.is_none(), "the fetcher ran: {what}");
            }
            if result == "ok" {
                assert!(!r.status.contains_key("reason"), "{what}");
                assert!(r.kmsg.starts_with("<6>satchel-hook: "), "{what}");
            } else {
                assert!(!r.status["reason"].is_empty(), "{what}");
                let prio = if required == "1" { "<3>" } else { "<4>" };
                assert!(
                    r.kmsg.starts_with(&format!("{prio}satchel-hook: FAILED")),
                    "{what}"
                );
                assert!(r.stderr.contains("satchel-hook: FAILED"), "{what}");
            }
            if matches!(fetcher, Fetcher::Hangs) {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "{what}: took {:?}",
                    t.elapsed()
                );
            }
            std::fs::remove_dir_all(d.path().join("run")).expect("clear status");
        }
    }
}

#[test]
fn hook_does_not_run_twice_after_success_but_retries_after_failure() {
    let d = tempfile::tempdir().expect("tempdir");
    let r = run_hook(
        &["sh"],
        "satchel.required=1",
        Fetcher::Exits(0),
        true,
        d.path(),
    );
    assert_eq!((r.exit, r.status["result"].as_str()), (0, "ok"));
    let r = run_hook(
        &["sh"],
        "satchel.required=1",
        Fetcher::Exits(9),
        true,
        d.path(),
    );
    assert_eq!(r.exit, 0, "{r:?}");
    assert!(r.fetcher_args.is_none(), "ran again after success: {r:?}");
    assert_eq!(r.status["result"], "ok");

    let d = tempfile::tempdir().expect("tempdir");
    let r = run_hook(
        &["sh"],
        "satchel.required=1",
        Fetcher::Exits(9),
        true,
        d.path(),
    );
    assert_eq!((r.exit, r.status["result"].as_str()), (1, "failed"));
    let r = run_hook(
        &["sh"],
        "satchel.required=1",
        Fetcher::Exits(0),
        true,
        d.path(),
    );
    assert!(
        r.fetcher_args.is_some(),
        "a failed run must be retried: {r:?}"
    );
    assert_eq!((r.exit, r.status["result"].as_str()), (0, "ok"));
}

#[test]
fn hook_unit_and_dracut_module_lint_clean() {
    need("busybox", "busybox-static");
    need("shellcheck", "shellcheck");
    let contrib = repo().join("contrib");
    let posix = [
        hook_script(),
        contrib.join("dracut/95satchel/satchel-pre-pivot.sh"),
        boot_dir().join("init"),
        boot_dir().join("treehash.sh"),
        boot_dir().join("standin-fetch.sh"),
        boot_dir().join("kernel.sh"),
        boot_dir().join("initramfs.sh"),
    ];
    for f in &posix {
        run(Command::new("sh").arg("-n").arg(f));
        run(Command::new("busybox").args(["sh", "-n"]).arg(f));
        run(Command::new("shellcheck").args(["-s", "sh"]).arg(f));
    }
    let setup = contrib.join("dracut/95satchel/module-setup.sh");
    run(Command::new("bash").arg("-n").arg(&setup));
    run(Command::new("shellcheck").args(["-s", "bash"]).arg(&setup));

    // The module ships the very hook and unit in contrib/, not copies.
    for (link, target) in [
        ("dracut/95satchel/satchel-hook.sh", "satchel-hook.sh"),
        (
            "dracut/95satchel/satchel-fetch.service",
            "systemd/satchel-fetch.service",
        ),
    ] {
        assert_eq!(
            std::fs::canonicalize(contrib.join(link)).expect("link resolves"),
            std::fs::canonicalize(contrib.join(target)).expect("target"),
            "{link}"
        );
    }

    // The unit carries the ordering and policy DESIGN fixes for the initrd hook.
    let unit =
        std::fs::read_to_string(contrib.join("systemd/satchel-fetch.service")).expect("read unit");
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut cur = String::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            cur = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        let prev = sections
            .entry(cur.clone())
            .or_default()
            .insert(k.into(), v.into());
        assert!(prev.is_none(), "{k} set twice");
    }
    let words = |sec: &str, key: &str| -> Vec<String> {
        sections[sec]
            .get(key)
            .unwrap_or_else(|| panic!("[{sec}] {key} missing"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(words("Unit", "DefaultDependencies"), ["no"]);
    for t in ["initrd-root-fs.target", "network-online.target"] {
        assert!(words("Unit", "After").contains(&t.to_string()), "After={t}");
    }
    assert!(words("Unit", "Wants").contains(&"network-online.target".to_string()));
    for t in ["initrd-switch-root.target", "initrd.target"] {
        assert!(
            words("Unit", "Before").contains(&t.to_string()),
            "Before={t}"
        );
    }
    assert_eq!(words("Unit", "OnFailure"), ["emergency.target"]);
    assert_eq!(words("Service", "Type"), ["oneshot"]);
    assert_eq!(words("Service", "RemainAfterExit"), ["yes"]);
    assert_eq!(
        words("Service", "ExecStart"),
        ["/usr/lib/satchel/satchel-hook"]
    );
    assert_eq!(words("Install", "WantedBy"), ["initrd.target"]);

    // The hook names the initrd layout the unit and the module use.
    let hook = std::fs::read_to_string(hook_script()).expect("read hook");
    for needle in [
        "SATCHEL_FETCH=${SATCHEL_FETCH:-/usr/lib/satchel/satchel-fetch}",
        "SATCHEL_CONFIG=${SATCHEL_CONFIG:-/etc/satchel/satchel.toml}",
    ] {
        assert!(hook.contains(needle), "hook lacks {needle}");
    }
    let setup_text = std::fs::read_to_string(&setup).expect("read module-setup");
    for needle in [
        "/usr/lib/satchel/satchel-fetch",
        "/usr/lib/satchel/satchel-hook",
        "/etc/satchel",
    ] {
        assert!(
            setup_text.contains(needle),
            "module-setup.sh lacks {needle}"
        );
    }
}

// --- the QEMU driver -------------------------------------------------------------

/// One `guestfwd`: guest TCP connections to `guest` (IP:PORT on QEMU's
/// user network) become new connections to 127.0.0.1:`host_port`.
#[derive(Clone, Debug)]
struct Forward {
    guest: &'static str,
    host_port: u16,
}

/// What to boot.
#[derive(Debug)]
struct BootSpec {
    /// The compressed newc cpio concatenated after the base initramfs.
    overlay: PathBuf,
    /// Kernel parameters after `console=ttyS0 panic=-1 quiet BOOTIF=…`.
    params: Vec<String>,
    forwards: Vec<Forward>,
}

/// What the guest reported on its serial console.
#[derive(Debug)]
struct BootOutcome {
    hook_exit: i32,
    /// sha256 of the guest's `/sysroot` listing.
    tree: String,
    /// The listing itself, one `treehash.sh` line per entry.
    listing: String,
    /// The hook's status file.
    status: BTreeMap<String, String>,
    elapsed: Duration,
    log: String,
}

/// Kills QEMU if the test panics before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots the kernel with `base.cpio.gz + spec.overlay` and parses the serial
/// console. Panics, printing the serial log, when QEMU fails, runs past
/// [`BOOT_TIMEOUT`], or the guest does not finish its report.
fn boot(spec: &BootSpec) -> BootOutcome {
    need("qemu-system-x86_64", "qemu-system-x86");
    need("busybox", "busybox-static");
    need("cpio", "cpio");
    need("zstd", "zstd");
    let kdir = kernel();
    let work = tempfile::tempdir().expect("tempdir");
    let base = work.path().join("base.cpio.gz");
    run(Command::new("sh")
        .arg(boot_dir().join("initramfs.sh"))
        .arg("base")
        .arg(kdir)
        .arg(&base));
    // The operator's step: concatenate the overlay after the distro initrd.
    let initrd = work.path().join("initrd");
    let mut bytes = std::fs::read(&base).expect("read base");
    bytes.extend(std::fs::read(&spec.overlay).expect("read overlay"));
    std::fs::write(&initrd, bytes).expect("write initrd");

    let log_path = work.path().join("serial.log");
    let mut append = vec![
        "console=ttyS0".to_string(),
        "panic=-1".to_string(),
        "quiet".to_string(),
        format!("BOOTIF={GUEST_BOOTIF}"),
    ];
    append.extend(spec.params.iter().cloned());
    let mut netdev = "user,id=n0,restrict=on,ipv6=off".to_string();
    for f in &spec.forwards {
        netdev.push_str(&format!(
            ",guestfwd=tcp:{}-cmd:busybox nc 127.0.0.1 {}",
            f.guest, f.host_port
        ));
    }
    let start = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", &GUEST_MEM_MIB.to_string()])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kdir.join("vmlinux"))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &append.join(" ")])
        .arg("-serial")
        .arg(format!("file:{}", log_path.display()))
        .args(["-netdev", &netdev])
        .args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,romfile=,mac={GUEST_MAC}"),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(work.path().join("qemu.out")).expect("qemu.out"))
        .stderr(std::fs::File::create(work.path().join("qemu.err")).expect("qemu.err"))
        .spawn()
        .expect("spawn qemu-system-x86_64");
    let mut qemu = KillOnDrop(child);
    let exit = wait_or_kill(&mut qemu.0, BOOT_TIMEOUT);
    let elapsed = start.elapsed();
    let log = std::fs::read_to_string(&log_path)
        .map(|s| s.replace('\r', ""))
        .unwrap_or_default();
    let qemu_err = std::fs::read_to_string(work.path().join("qemu.err")).unwrap_or_default();
    let fail = |why: &str| -> ! {
        panic!("boot failed: {why}\n--- qemu stderr ---\n{qemu_err}\n--- serial log ---\n{log}")
    };
    match exit {
        None => fail(&format!("QEMU ran past {BOOT_TIMEOUT:?} and was killed")),
        Some(0) => {}
        Some(n) => fail(&format!("QEMU exited with {n}")),
    }

    let mut hook_exit = None;
    let mut tree = None;
    let mut listing = String::new();
    let mut status = BTreeMap::new();
    let mut done = false;
    for line in log.lines() {
        let Some((_, rest)) = line.split_once(MARKER) else {
            continue;
        };
        let (kind, value) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "entry" => {
                listing.push_str(value);
                listing.push('\n');
            }
            "status" => {
                if let Some((k, v)) = value.split_once('=') {
                    status.insert(k.to_string(), v.to_string());
                }
            }
            "tree" => tree = Some(value.to_string()),
            "hook-exit" => hook_exit = value.parse().ok(),
            "done" => done = true,
            "error" => fail(&format!("the guest's /init failed: {value}")),
            _ => {}
        }
    }
    if !done {
        fail("the guest powered off without finishing its report");
    }
    let (Some(hook_exit), Some(tree)) = (hook_exit, tree) else {
        fail("no hook-exit or tree line on the serial console")
    };
    if sha256_hex(&listing) != tree {
        fail("the printed listing does not hash to the printed tree hash (garbled console?)");
    }
    BootOutcome {
        hook_exit,
        tree,
        listing,
        status,
        elapsed,
        log,
    }
}

// --- the smoke boot's stand-in peer ---------------------------------------------

/// A plain HTTP/1.0 responder on 127.0.0.1: `GET /v1/boot/<mac>` for the
/// guest's MAC answers `body` when there is one; anything else is a 404.
/// Serves only the smoke boot's stand-in fetcher.
struct Responder {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Responder {
    fn start(body: Option<Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let want = format!("GET /v1/boot/{} ", GUEST_BOOTIF.trim_start_matches("01-"));
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => Self::serve(s, &want, body.as_deref()),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Responder {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn serve(mut s: TcpStream, want: &str, body: Option<&[u8]>) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        match body {
            Some(body) if req.starts_with(want.as_bytes()) => {
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(body);
            }
            _ => {
                let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The tree the smoke boot's responder serves (and the guest must end with).
fn smoke_tree(root: &Path) {
    let files: &[(&str, &[u8], u32)] = &[
        ("etc/hostname", b"node-7\n", 0o644),
        ("etc/motd", b"configured by satchel\n", 0o644),
        ("etc/ssh/ssh_host_ed25519_key", b"not a real key\n", 0o600),
        ("etc/with space", b"spaces survive\n", 0o640),
        ("usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
    ];
    for (p, data, mode) in files {
        let full = root.join(p);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, data).expect("write");
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    for d in ["etc", "etc/ssh", "usr", "usr/local", "usr/local/bin"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    symlink("../usr/local/bin/hello", root.join("etc/hello-link")).expect("symlink");
}

/// Builds the smoke overlay: the hook at its installed path, the stand-in at
/// the fetcher's path, and a config file for the hook to find.
fn smoke_overlay(dir: &Path) -> PathBuf {
    let root = dir.join("overlay");
    let lib = root.join("usr/lib/satchel");
    std::fs::create_dir_all(&lib).expect("mkdir");
    std::fs::create_dir_all(root.join("etc/satchel")).expect("mkdir");
    std::fs::copy(hook_script(), lib.join("satchel-hook")).expect("copy hook");
    std::fs::copy(
        boot_dir().join("standin-fetch.sh"),
        lib.join("satchel-fetch"),
    )
    .expect("copy stand-in");
    for f in ["satchel-hook", "satchel-fetch"] {
        std::fs::set_permissions(lib.join(f), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    std::fs::write(
        root.join("etc/satchel/satchel.toml"),
        "# read by the real fetcher; the smoke boot's stand-in only checks it exists\n",
    )
    .expect("write config");
    for d in ["usr", "usr/lib", "usr/lib/satchel", "etc", "etc/satchel"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let out = dir.join("overlay.cpio.zst");
    run(Command::new("sh")
        .arg(boot_dir().join("initramfs.sh"))
        .arg("pack")
        .arg(&root)
        .arg(&out));
    out
}

/// Boots with the stand-in fetcher against a responder serving `tree` as a tar.
fn smoke_boot(serve: Option<&Path>, params: &[&str]) -> BootOutcome {
    let work = tempfile::tempdir().expect("tempdir");
    let body = match serve {
        Some(tree) => {
            let tar = work.path().join("tree.tar");
            let mut top: Vec<String> = std::fs::read_dir(tree)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            top.sort();
            run(Command::new("tar")
                .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
                .arg("-C")
                .arg(tree)
                .arg("-cf")
                .arg(&tar)
                .args(&top));
            Some(std::fs::read(&tar).expect("read tar"))
        }
        // Without a tree the responder answers nothing but 404s.
        None => None,
    };
    let responder = Responder::start(body);
    let spec = BootSpec {
        overlay: smoke_overlay(work.path()),
        params: params.iter().map(|s| s.to_string()).collect(),
        forwards: vec![Forward {
            guest: GUEST_SERVER,
            host_port: responder.port,
        }],
    };
    let out = boot(&spec);
    eprintln!("boot to poweroff: {:.2?}", out.elapsed);
    drop(responder);
    out
}

#[test]
fn smoke_boot_applies_the_served_tree() {
    let work = tempfile::tempdir().expect("tempdir");
    let tree = work.path().join("tree");
    smoke_tree(&tree);
    let want = tree_listing(&tree);
    let out = smoke_boot(Some(&tree), &["satchel.required=1"]);
    assert_eq!(out.hook_exit, 0, "serial log:\n{}", out.log);
    assert_eq!(out.status.get("result").map(String::as_str), Some("ok"));
    assert_eq!(out.listing, want, "serial log:\n{}", out.log);
    assert_eq!(out.tree, sha256_hex(&want));
}

#[test]
fn smoke_boot_failure_with_required_stops_the_boot() {
    let out = smoke_boot(None, &["satchel.required=1"]);
    assert_eq!(out.hook_exit, 1, "serial log:\n{}", out.log);
    assert_eq!(out.status.get("result").map(String::as_str), Some("failed"));
    assert_eq!(out.status.get("required").map(String::as_str), Some("1"));
    assert_eq!(out.tree, EMPTY_TREE, "serial log:\n{}", out.log);
}

#[test]
fn smoke_boot_failure_without_required_continues() {
    let out = smoke_boot(None, &["satchel.required=0"]);
    assert_eq!(out.hook_exit, 0, "serial log:\n{}", out.log);
    assert_eq!(out.status.get("result").map(String::as_str), Some("failed"));
    assert_eq!(out.status.get("required").map(String::as_str), Some("0"));
    assert_eq!(out.tree, EMPTY_TREE, "serial log:\n{}", out.log);
}
