//! Real-kernel boot tests, and the host-side checks of the boot-integration
//! files in `contrib/`.
//!
//! A Debian kernel (`tests/boot/kernel.sh`, cached in `.cache/boot/`) boots
//! under QEMU (software emulation) a minimal busybox initramfs standing in
//! for a distro initrd (`tests/boot/initramfs.sh base`, `/init` from
//! `tests/boot/init`), with the overlay `satchel-bundle initrd` builds
//! concatenated after it exactly as an operator does (`cat base.cpio.gz
//! overlay.cpio.zst > initrd`). `/init` brings up the virtio NIC at
//! 10.0.2.15, mounts an empty `/sysroot`, runs the hook the overlay installs
//! (`contrib/satchel-hook.sh`), which runs the static `satchel-fetch`
//! (built here with `+crt-static`, no LTO). `/init` then prints the hook's
//! status file, a tree hash of `/sysroot` (`tests/boot/treehash.sh`,
//! recomputed here by [`tree_listing`]) and the hook's exit status on the
//! serial console, and powers off.
//!
//! The host side is real and on 127.0.0.1 only: a fresh PKI (`satchel-pki`),
//! the node's enrollment, site and host bundles (`satchel-bundle create`,
//! `publish`), `satchel-server`, and the in-process DNS server answering the
//! SRV name over TCP. The guest reaches them only through QEMU's `guestfwd`
//! forwards to 127.0.0.1 (`restrict=on`).
//!
//! Layout: limits; paths and tool checks; [`tree_listing`]; the hook and
//! unit checks (no VM); the QEMU driver ([`BootSpec`], [`boot`]); the real
//! flow ([`Fleet`]) and its boots.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use satchel_tests::boot::{
    boot_dir, cli, guest_services, need, netdev, repo, run, satchel_params, static_fetcher,
    wait_or_kill, write_tree, FileSpec, Forward, Image, KillOnDrop, DEAD_NAME, GUEST_BOOTIF,
    GUEST_MAC, GUEST_MAC_CANON, SITE,
};
use satchel_tests::node::{sha256_hex, tree_listing};

/// Hard limit on one boot, from QEMU's start to its exit. A boot takes
/// about 4 s on two emulated-CPU cores; this leaves room for a loaded CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Hard limit on one run of the hook on the host.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Guest RAM, MiB.
const GUEST_MEM_MIB: u32 = 512;
/// The serial console's marker prefix (see `tests/boot/init`).
const MARKER: &str = "SATCHEL-BOOT-TEST ";
/// sha256 of the empty listing: the tree hash of an empty `/sysroot`.
const EMPTY_TREE: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// --- paths and tools ---------------------------------------------------------

fn hook_script() -> PathBuf {
    repo().join("contrib/satchel-hook.sh")
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
fn hook_reads_satchel_timeout_within_the_fetchers_limits() {
    need("busybox", "busybox-static");
    // (kernel command line, the deadline the hook must use, in seconds)
    let cases: &[(&str, u32)] = &[
        ("", 300),
        ("satchel.timeout=60", 60),
        ("satchel.timeout=1", 1),
        ("satchel.timeout=3600", 3600),
        ("satchel.timeout=3601", 3600),
        ("satchel.timeout=999999", 3600),
        ("satchel.timeout=99999999999999999999999", 3600),
        ("satchel.timeout=0", 300),
        ("satchel.timeout=007", 7),
        ("satchel.timeout=0090", 90),
        ("satchel.timeout=000", 300),
        ("satchel.timeout=0000000000000000000000060", 60),
        ("satchel.timeout=-5", 300),
        ("satchel.timeout=5s", 300),
        ("satchel.timeout=1e3", 300),
        ("satchel.timeout=", 300),
        ("satchel.timeout", 300),
        ("satchel.timeout=$((1+1))", 300),
        ("satchel.timeout=\"45\"", 45),
        ("satchel.timeout=10 satchel.timeout=20", 20),
        ("xsatchel.timeout=10", 300),
    ];
    let d = tempfile::tempdir().expect("tempdir");
    for shell in SHELLS {
        for (cmdline, want) in cases {
            let r = run_hook(shell, cmdline, Fetcher::Exits(0), true, d.path());
            assert_eq!(r.exit, 0, "{shell:?} {cmdline:?}: {r:?}");
            assert!(
                r.stderr.contains(&format!("deadline {want}s)")),
                "{shell:?} {cmdline:?}: want deadline {want}s: {r:?}"
            );
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
        boot_dir().join("kernel.sh"),
        boot_dir().join("initramfs.sh"),
        boot_dir().join("vmlinux.sh"),
        boot_dir().join("distro-root.sh"),
        boot_dir().join("distro-initrd.sh"),
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

/// What to boot.
#[derive(Debug)]
struct BootSpec {
    /// The compressed newc cpio concatenated after the base initramfs.
    overlay: PathBuf,
    /// Kernel parameters after `console=ttyS0 panic=-1 quiet`.
    params: Vec<String>,
    /// Whether the command line carries `BOOTIF=` (as PXELINUX and iPXE
    /// pass it); without it the fetcher finds the MAC on the NIC.
    bootif: bool,
    forwards: Vec<Forward>,
}

/// What the guest reported on its serial console.
#[derive(Debug)]
struct BootOutcome {
    hook_exit: i32,
    /// The hook's run time in the guest (fetcher start to switch-root
    /// readiness), in milliseconds, 10 ms steps.
    hook_ms: Option<u64>,
    /// sha256 of the guest's `/sysroot` listing.
    tree: String,
    /// The listing itself, one `treehash.sh` line per entry.
    listing: String,
    /// The hook's status file.
    status: BTreeMap<String, String>,
    elapsed: Duration,
    log: String,
}

/// Boots the kernel with `base.cpio.gz + spec.overlay` and parses the serial
/// console. Panics, printing the serial log, when QEMU fails, runs past
/// [`BOOT_TIMEOUT`], or the guest does not finish its report.
fn boot(spec: &BootSpec) -> BootOutcome {
    need("qemu-system-x86_64", "qemu-system-x86");
    need("busybox", "busybox-static");
    need("cpio", "cpio");
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
    ];
    if spec.bootif {
        append.push(format!("BOOTIF={GUEST_BOOTIF}"));
    }
    append.extend(spec.params.iter().cloned());
    let netdev = netdev(&spec.forwards);
    // One guest at a time: emulated guests sharing the CPU cores slow down
    // enough to reach the fetcher's handshake timeouts.
    static ONE_GUEST: Mutex<()> = Mutex::new(());
    let _turn = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
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
    let mut hook_ms = None;
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
            "hook-ms" => hook_ms = value.parse().ok(),
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
    if std::env::var_os("SATCHEL_BOOT_LOG").is_some() {
        eprintln!("--- serial log ---\n{log}");
    }
    if sha256_hex(&listing) != tree {
        fail("the printed listing does not hash to the printed tree hash (garbled console?)");
    }
    BootOutcome {
        hook_exit,
        hook_ms,
        tree,
        listing,
        status,
        elapsed,
        log,
    }
}

// --- the real flow ------------------------------------------------------------

/// Benchmark knob: with `SATCHEL_BOOT_BENCH_MIB=N`, the first real boot's
/// host bundle also carries N MiB of incompressible bytes (the test still
/// checks the whole tree); the boot prints the hook's time in the guest.
const BENCH_MIB_ENV: &str = "SATCHEL_BOOT_BENCH_MIB";

/// The shared host side ([`satchel_tests::boot::Fleet`]) with this test's
/// trees: a site bundle overlaid by a host bundle.
struct Fleet {
    f: satchel_tests::boot::Fleet,
    /// The tree the guest must end with: the site's files overlaid by the host's.
    expected: PathBuf,
}

impl Deref for Fleet {
    type Target = satchel_tests::boot::Fleet;
    fn deref(&self) -> &Self::Target {
        &self.f
    }
}

impl DerefMut for Fleet {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.f
    }
}

impl Fleet {
    /// A per-host image (`enroll --mac … --site …`) with both bundles.
    fn new() -> Fleet {
        Fleet::with_image(Image::Host)
    }

    fn with_image(image: Image) -> Fleet {
        let f = satchel_tests::boot::Fleet::new(image);
        let mut f = Fleet {
            expected: f.path("expected"),
            f,
        };

        // The site's files, then the host's: one file is overridden.
        let site: &[FileSpec] = &[
            ("etc/motd", b"site dc1\n", 0o644),
            ("etc/resolv.conf", b"nameserver 192.0.2.53\n", 0o644),
            ("etc/satchel-site", b"dc1\n", 0o644),
        ];
        let host: &[FileSpec] = &[
            ("etc/hostname", b"node-7\n", 0o644),
            ("etc/motd", b"node-7 of site dc1\n", 0o644),
            ("etc/ssh/ssh_host_ed25519_key", b"not a real key\n", 0o600),
            ("usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
        ];
        let trees: &[(&str, &[FileSpec])] = match image {
            Image::Host => &[("site-tree", site), ("host-tree", host)],
            Image::Site => &[("site-tree", site)],
        };
        for &(name, files) in trees {
            write_tree(&f.path(name), files);
            write_tree(&f.expected, files);
        }
        f.make_bundle("site", 1, "alice");
        f.start_server(&["alice.pub"]);
        f.publish("site");
        if matches!(image, Image::Host) {
            f.make_bundle("host", 1, "alice");
            f.publish("host");
        }
        f
    }

    /// `satchel-bundle create` for the site or the host, signed by `signer`.
    fn make_bundle(&self, which: &str, serial: u64, signer: &str) {
        self.make_bundle_with(which, serial, signer, &[]);
    }

    /// The serial log and the server's log, for a failed assertion.
    fn explain(&self, out: &BootOutcome) -> String {
        format!(
            "--- serial log ---\n{}\n--- server log ---\n{}",
            out.log,
            self.server_log()
        )
    }

    /// Adds `mib` MiB of incompressible bytes to the host's tree (for the
    /// timing of a large bundle; see [`BENCH_MIB_ENV`]).
    fn add_noise_file(&self, mib: usize) {
        let mut data = vec![0u8; mib << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in data.chunks_mut(8) {
            // xorshift64: cheap bytes that zstd cannot shrink.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        for root in [self.path("host-tree"), self.expected.clone()] {
            std::fs::write(root.join("etc/noise.bin"), &data).expect("write noise");
        }
    }

    /// The overlay an operator concatenates: `satchel-bundle initrd` around
    /// the static fetcher and this node's enrollment.
    fn overlay(&self) -> PathBuf {
        let fetcher = static_fetcher().display().to_string();
        cli(
            "satchel-bundle",
            &[
                "initrd",
                "--enroll",
                "enroll",
                "--fetcher",
                &fetcher,
                "-o",
                "overlay.cpio.zst",
            ],
            self.dir.path(),
        );
        self.path("overlay.cpio.zst")
    }

    /// Boots the guest against this fleet: DNS answers the SRV name with the
    /// dead target first (priority 10) and the live server second (20).
    fn boot(&self, required: &str, bootif: bool) -> BootOutcome {
        let services = guest_services(self.port());
        let spec = BootSpec {
            overlay: self.overlay(),
            params: satchel_params(required),
            bootif,
            forwards: services.forwards.clone(),
        };
        let out = boot(&spec);
        eprintln!(
            "boot to poweroff: {:.2?}; hook in the guest: {:?} ms",
            out.elapsed, out.hook_ms
        );
        out
    }
}

#[test]
fn real_boot_applies_site_then_host_bundle_past_a_dead_srv_target() {
    let fleet = Fleet::new();
    let host_serial = match std::env::var(BENCH_MIB_ENV) {
        Ok(mib) => {
            let mib: usize = mib.parse().expect("a number of MiB");
            fleet.add_noise_file(mib);
            fleet.make_bundle("host", 2, "alice");
            fleet.publish("host");
            2
        }
        Err(_) => 1,
    };
    let want = tree_listing(&fleet.expected);
    let out = fleet.boot("1", true);
    assert_eq!(out.hook_exit, 0, "{}", fleet.explain(&out));
    assert_eq!(out.status.get("result").map(String::as_str), Some("ok"));
    assert_eq!(out.listing, want, "{}", fleet.explain(&out));
    assert_eq!(out.tree, sha256_hex(&want));
    // The dead target was tried first.
    assert!(
        out.log
            .lines()
            .any(|l| l.contains("warning") && l.contains(&format!("via {DEAD_NAME}:443"))),
        "{}",
        fleet.explain(&out)
    );
    let node = fleet.node_record().expect("the node reported");
    assert_eq!(node["last_status"], "applied", "{node}");
    assert_eq!(node["serials"][format!("site/{SITE}")], 1, "{node}");
    assert_eq!(
        node["serials"][format!("host/{GUEST_MAC_CANON}")],
        host_serial,
        "{node}"
    );
}

#[test]
fn real_boot_of_a_site_image_without_bootif_finds_the_mac_on_the_nic() {
    // A site-wide image carries no MAC: without BOOTIF= the fetcher takes
    // the first interface with carrier, and reports under that MAC.
    let fleet = Fleet::with_image(Image::Site);
    let want = tree_listing(&fleet.expected);
    let out = fleet.boot("1", false);
    assert_eq!(out.hook_exit, 0, "{}", fleet.explain(&out));
    assert_eq!(out.listing, want, "{}", fleet.explain(&out));
    // The server has the report under the NIC's MAC (the image names none).
    let node = fleet
        .node_record()
        .expect("the node reported under the NIC's MAC");
    assert_eq!(node["last_status"], "applied", "{node}");
    assert_eq!(node["serials"][format!("site/{SITE}")], 1, "{node}");
}

/// The rogue scenario: the host bundle re-signed by a key the server trusts
/// (it was restarted trusting it) but the image does not.
fn fleet_with_rogue_host_bundle() -> Fleet {
    let mut fleet = Fleet::new();
    std::fs::write(fleet.path("host-tree/etc/motd"), b"rogue\n").expect("write");
    fleet.publish_rogue_host_bundle();
    fleet
}

#[test]
fn real_boot_refuses_a_rogue_bundle_and_stops_when_required() {
    let fleet = fleet_with_rogue_host_bundle();
    let out = fleet.boot("1", true);
    assert_eq!(out.hook_exit, 1, "{}", fleet.explain(&out));
    assert_eq!(out.status.get("result").map(String::as_str), Some("failed"));
    assert_eq!(out.status.get("fetch_exit").map(String::as_str), Some("6"));
    assert_eq!(out.tree, EMPTY_TREE, "{}", fleet.explain(&out));
    let node = fleet.node_record().expect("the node reported");
    assert_eq!(node["last_status"], "failed", "{node}");
    assert!(
        node["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a trusted key")),
        "{node}"
    );
}

#[test]
fn real_boot_refuses_a_rogue_bundle_and_continues_when_not_required() {
    let fleet = fleet_with_rogue_host_bundle();
    let out = fleet.boot("0", true);
    // The fetcher itself maps a failure under satchel.required=0 to exit 0.
    assert_eq!(out.hook_exit, 0, "{}", fleet.explain(&out));
    assert_eq!(out.status.get("required").map(String::as_str), Some("0"));
    assert_eq!(out.tree, EMPTY_TREE, "{}", fleet.explain(&out));
    let node = fleet.node_record().expect("the node reported");
    assert_eq!(node["last_status"], "failed", "{node}");
}
