//! Real-distro boot test: a Debian root with systemd, an initrd built by
//! real dracut with the project's `contrib/dracut/95satchel` module, the
//! root delivered as stateless nodes get it, and bundles made and served
//! by the real satchel CLIs and server.
//!
//! - **Root**: `tests/boot/distro-root.sh` (mmdebstrap, the release the
//!   machine's apt sources name, `systemd-sysv`, merged-/usr), cached in
//!   `.cache/boot/distro/` by the hash of its recipe. The guest gets it as
//!   a squashfs on a read-only virtio disk (`root=live:/dev/vda`, dracut's
//!   dmsquash-live, `rd.live.overlay.overlayfs=1`): `/sysroot` is the image
//!   under a tmpfs overlay, and there is no writable disk at all.
//! - **Initrd**: `tests/boot/distro-initrd.sh`: dracut inside that root,
//!   with its own kernel (so modules match), systemd and systemd-networkd
//!   (`ip=dhcp`, answered by QEMU's user network) and 95satchel carrying
//!   the static fetcher built here; cached by the hash of the script, the
//!   module and the fetcher. It holds no credentials: this test appends the
//!   node's fresh enrollment (`etc/satchel/`) as a cpio, as an operator
//!   appends per-node pieces to one generic initrd.
//! - **Bundles**: the site bundle carries `satchel-demo.service`, enabled by
//!   a `multi-user.target.wants` link, its script, `etc/localtime` and a
//!   whiteout of the image's `etc/motd`; the host bundle `etc/hostname` and
//!   a per-host file. Both are published to `satchel-server` on 127.0.0.1;
//!   the guest reaches it (and the DNS server answering the SRV name over
//!   TCP) only through QEMU `guestfwd` with `restrict=on`.
//! - **Asserted from the serial console**: PID 1 of the real root is
//!   systemd and ran `satchel-demo.service`, which printed the per-host
//!   file, `hostname`, `readlink /etc/localtime` (and the zone it gives)
//!   and that `etc/motd` is gone; the inventory shows the applied report.
//!   A second boot, the host bundle re-signed by a rogue key, with
//!   `satchel.required=1`, ends in the initrd's emergency target (dracut's
//!   "Boot has failed" with `rd.shell=0 rd.emergency=poweroff`, as a node
//!   with no console shell does), the demo unit never runs, and the
//!   inventory shows the failure.
//! - **Measured** (printed, not asserted): the root and initrd builds,
//!   kernel start to the demo unit running (`/proc/uptime` in the unit),
//!   the hook's run from the console's timestamps and the fetcher's own
//!   timing line.
//!
//! The site bundle is written as an operator writes one for a merged-/usr
//! distro: the unit at `lib/systemd/system/satchel-demo.service` (the
//! overlay lands it in `usr/lib/` through the root's `lib -> usr/lib`),
//! enabled by `satchel-bundle create --enable`, and
//! `etc/localtime -> /usr/share/zoneinfo/Europe/Berlin`, absolute.
//!
//! Runs as root (mmdebstrap, chroot, mount namespaces). The first run
//! downloads the root's packages from the machine's Debian mirror (the only
//! network it uses besides loopback) and takes a few minutes; later runs
//! reuse the cached root and initrd. Set `SATCHEL_BOOT_LOG=1` to print the
//! serial log of passing boots too.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use satchel_tests::boot::{
    boot_dir, guest_services, need, netdev, run, satchel_params, static_fetcher, write_tree,
    FileSpec, Fleet, Image, KillOnDrop, GUEST_BOOTIF, GUEST_MAC, GUEST_MAC_CANON, SITE,
};

/// Hard limit on one boot, from QEMU's start to its end. A boot takes about
/// a minute on two emulated-CPU cores; this leaves room for a loaded CI.
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);
/// Hard limit on building the root (downloads, mmdebstrap, mksquashfs).
const ROOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Hard limit on building the initrd with dracut.
const INITRD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How often the console log is read while a boot runs.
const CONSOLE_POLL: Duration = Duration::from_millis(100);
/// Guest RAM, MiB: the root's overlay and the fetcher's staging are in RAM.
const GUEST_MEM_MIB: u32 = 1536;
/// Where an appended uncompressed cpio may start in an initrd.
const CPIO_ALIGN: usize = 4;
/// The demo unit's marker prefix on the serial console.
const MARKER: &str = "SATCHEL-DISTRO-TEST ";
/// What dracut's emergency service prints with `rd.shell=0`.
const EMERGENCY_MARKER: &str = "Boot has failed";
/// The zone the site bundle's `etc/localtime` names.
const ZONE: &str = "Europe/Berlin";
/// The host bundle's hostname and per-host file.
const HOSTNAME: &str = "node-7";
const PER_HOST_TEXT: &str = "per-host file of node-7";

// --- the root and the initrd ---------------------------------------------------

/// Fails, saying what to do, unless this test can build the root.
fn need_root_tools() {
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "the distro boot test builds a Debian root (mmdebstrap, chroot, mount namespaces) \
         and must run as root: run `sudo tests/run` or cargo test as root"
    );
    need("mmdebstrap", "mmdebstrap");
    need("mksquashfs", "squashfs-tools");
    need("unshare", "util-linux");
    need("cpio", "cpio");
    need("qemu-system-x86_64", "qemu-system-x86");
    need("busybox", "busybox-static");
}

/// Runs a build script with a kill timer; returns the last line of its
/// stdout (the path it prints), its stderr going to the test's.
fn build_step(what: &str, cmd: &mut Command, limit: Duration) -> PathBuf {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let err = tempfile::NamedTempFile::new().expect("temp file");
    cmd.stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"));
    let t = Instant::now();
    let mut child = KillOnDrop(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}")),
    );
    let code = satchel_tests::boot::wait_or_kill(&mut child.0, limit);
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
    assert_eq!(
        code,
        Some(0),
        "{what} failed or ran past {limit:?}:\n{stdout}\n{stderr}"
    );
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default());
    eprint!("{stderr}");
    eprintln!("{what} ready in {:.1?}: {}", t.elapsed(), path.display());
    path
}

/// The cached root (`tests/boot/distro-root.sh`).
fn distro_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        need_root_tools();
        let dir = build_step(
            "distro root",
            Command::new("sh").arg(boot_dir().join("distro-root.sh")),
            ROOT_TIMEOUT,
        );
        for f in ["root.squashfs", "vmlinux", "kver"] {
            assert!(dir.join(f).is_file(), "no {f} in {}", dir.display());
        }
        dir
    })
}

/// The cached dracut initrd for the current static fetcher
/// (`tests/boot/distro-initrd.sh`).
fn distro_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        let root = distro_root();
        let fetcher = static_fetcher();
        build_step(
            "dracut initrd",
            Command::new("sh")
                .arg(boot_dir().join("distro-initrd.sh"))
                .arg(root)
                .arg(fetcher),
            INITRD_TIMEOUT,
        )
    })
}

/// The dracut initrd with the node's enrollment appended as a newc cpio
/// holding `etc/satchel/` (modes kept, owned by root).
fn initrd_for(fleet: &Fleet) -> PathBuf {
    let stage = fleet.path("enroll-cpio");
    let etc = stage.join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    run(Command::new("cp")
        .arg("-a")
        .arg(fleet.path("enroll"))
        .arg(etc.join("satchel")));
    let list = run(Command::new("find")
        .arg(".")
        .arg("-mindepth")
        .arg("1")
        .current_dir(&stage));
    let mut names: Vec<&str> = list.lines().collect();
    names.sort_unstable();
    let cpio = fleet.path("enroll.cpio");
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&cpio).expect("create cpio"))
        .spawn()
        .expect("spawn cpio");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for n in &names {
            writeln!(stdin, "{n}").expect("write cpio list");
        }
    }
    assert!(child.wait().expect("wait cpio").success(), "cpio failed");
    let initrd = fleet.path("initrd.img");
    let mut bytes = std::fs::read(distro_initrd()).expect("read initrd");
    // The kernel takes an uncompressed archive after a compressed one only
    // at a 4-byte boundary, and skips the zeros before it.
    bytes.resize(bytes.len().next_multiple_of(CPIO_ALIGN), 0);
    bytes.extend(std::fs::read(&cpio).expect("read cpio"));
    std::fs::write(&initrd, bytes).expect("write initrd");
    initrd
}

// --- the bundles -----------------------------------------------------------------

/// The demo unit's script: prints what the configuration changed, one
/// marker line each, then powers the guest off.
const DEMO_SCRIPT: &[u8] = br#"#!/bin/sh
# satchel-demo: print what satchel applied to this root, then power off.
say() { printf 'SATCHEL-DISTRO-TEST %s %s\n' "$1" "$2"; }
say uptime "$(cut -d' ' -f1 /proc/uptime)"
say pid1 "$(readlink /proc/1/exe)"
if [ -e /etc/initrd-release ]; then say initrd yes; else say initrd no; fi
say invocation "${INVOCATION_ID:-none}"
say per-host "$(cat /etc/satchel-demo/host)"
say hostname "$(hostname)"
say localtime "$(readlink /etc/localtime)"
say zone "$(date +%Z)"
if [ -e /etc/motd ] || [ -L /etc/motd ]; then say motd present; else say motd gone; fi
say satchel-status "$(tr '\n' ' ' </run/satchel/status)"
say done ok
systemctl poweroff --force --force
"#;

const DEMO_UNIT: &[u8] = b"[Unit]
Description=satchel demo: print what satchel applied

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/satchel-demo
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
";

/// The fleet with the site and host bundles published; returns it and the
/// link target `etc/localtime` must show.
fn distro_fleet() -> (Fleet, String) {
    let mut fleet = Fleet::new(Image::Host);
    let unit_path = "lib/systemd/system/satchel-demo.service";
    let localtime = format!("/usr/share/zoneinfo/{ZONE}");
    let site = fleet.path("site-tree");
    let site_files: Vec<FileSpec> = vec![
        (unit_path, DEMO_UNIT, 0o644),
        ("usr/local/sbin/satchel-demo", DEMO_SCRIPT, 0o755),
        // A whiteout: the image's etc/motd must be gone.
        ("etc/.wh.motd", b"", 0o644),
    ];
    write_tree(&site, &site_files);
    symlink(&localtime, site.join("etc/localtime")).expect("symlink");
    let host: &[FileSpec] = &[
        ("etc/hostname", b"node-7\n", 0o644),
        ("etc/satchel-demo/host", b"per-host file of node-7\n", 0o644),
    ];
    write_tree(&fleet.path("host-tree"), host);
    fleet.make_bundle_with("site", 1, "alice", &["--enable", "satchel-demo.service"]);
    fleet.make_bundle_with("host", 1, "alice", &[]);
    fleet.start_server(&["alice.pub"]);
    fleet.publish("site");
    fleet.publish("host");
    (fleet, localtime)
}

// --- the QEMU driver ---------------------------------------------------------------

/// What one boot printed.
struct Console {
    log: String,
    /// QEMU's start to its exit.
    elapsed: Duration,
}

impl Console {
    /// The demo unit's `KEY VALUE` lines.
    fn marker(&self, key: &str) -> Option<String> {
        self.log.lines().find_map(|l| {
            let rest = l.split_once(MARKER)?.1;
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            (k == key).then(|| v.trim_end().to_string())
        })
    }

    /// The console timestamp (seconds since kernel start, `[ 12.345678]`
    /// prefix) of the first line containing `needle`.
    fn stamp(&self, needle: &str) -> Option<f64> {
        self.log.lines().find(|l| l.contains(needle)).and_then(|l| {
            let inner = l.trim_start().strip_prefix('[')?.split_once(']')?.0;
            inner.trim().parse().ok()
        })
    }
}

/// Boots the root with `initrd`, `satchel.required=required` and the
/// fleet's server, until QEMU exits (the demo unit or dracut's emergency
/// service power it off). Panics with the console log on a timeout.
fn boot(fleet: &Fleet, initrd: &Path, required: &str) -> Console {
    let root = distro_root();
    let services = guest_services(fleet.port());
    let mut append: Vec<String> = [
        "console=ttyS0",
        "panic=-1",
        "root=live:/dev/vda",
        "rd.live.image",
        "rd.live.overlay.overlayfs=1",
        "ip=dhcp",
        "rd.neednet=1",
        "quiet",
        "systemd.show_status=0",
        "rd.udev.log_level=3",
        "systemd.mask=getty.target",
        // A node without a console shell: a failed boot powers off.
        "rd.shell=0",
        "rd.emergency=poweroff",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    append.push(format!("BOOTIF={GUEST_BOOTIF}"));
    append.extend(satchel_params(required));
    let work = tempfile::tempdir().expect("tempdir");
    let log_path = work.path().join("serial.log");
    // One guest at a time (see boot.rs).
    static ONE_GUEST: Mutex<()> = Mutex::new(());
    let _turn = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            &GUEST_MEM_MIB.to_string(),
            "-smp",
            "2",
        ])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(root.join("vmlinux"))
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append.join(" ")])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            root.join("root.squashfs").display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", log_path.display()))
        .args(["-netdev", &netdev(&services.forwards)])
        .args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,romfile=,mac={GUEST_MAC}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("qemu.err")).expect("qemu.err"))
        .spawn()
        .expect("spawn qemu-system-x86_64");
    let mut qemu = KillOnDrop(child);
    let read_log = || {
        std::fs::read_to_string(&log_path)
            .map(|s| s.replace('\r', ""))
            .unwrap_or_default()
    };
    let exit = loop {
        if let Some(st) = qemu.0.try_wait().expect("try_wait") {
            break st.code();
        }
        if start.elapsed() > BOOT_TIMEOUT {
            panic!(
                "boot ran past {BOOT_TIMEOUT:?}; QEMU killed\n--- serial log ---\n{}\n--- server log ---\n{}",
                read_log(),
                fleet.server_log()
            );
        }
        thread::sleep(CONSOLE_POLL);
    };
    let elapsed = start.elapsed();
    let log = read_log();
    let qemu_err = std::fs::read_to_string(work.path().join("qemu.err")).unwrap_or_default();
    assert_eq!(
        exit,
        Some(0),
        "QEMU failed\n--- qemu stderr ---\n{qemu_err}\n--- serial log ---\n{log}"
    );
    if std::env::var_os("SATCHEL_BOOT_LOG").is_some() {
        eprintln!("--- serial log ---\n{log}");
    }
    Console { log, elapsed }
}

/// Prints the boot's timings from the console.
fn report_timings(what: &str, c: &Console) {
    let unit = c.marker("uptime");
    let hook_start = c.stamp("satchel-hook: running");
    let hook_end = c
        .stamp("satchel-hook: configuration applied")
        .or_else(|| c.stamp("satchel-hook: FAILED"));
    let fetcher = c
        .log
        .lines()
        .find(|l| l.contains(" in ") && l.contains(" ms (") && l.contains("satchel"))
        .map(|l| l.trim().to_string());
    let hook = match (hook_start, hook_end) {
        (Some(a), Some(b)) => format!("{a:.1} s to {b:.1} s ({:.1} s)", b - a),
        _ => "-".to_string(),
    };
    eprintln!(
        "{what}: QEMU start to exit {:.1?}; kernel start to demo unit running: {} s; \
         hook in the initrd (console time): {hook}; fetcher: {}",
        c.elapsed,
        unit.as_deref().unwrap_or("-"),
        fetcher.as_deref().unwrap_or("-")
    );
}

// --- the boots ---------------------------------------------------------------------

/// The serial log and the server's log, for a failed assertion.
fn explain(fleet: &Fleet, c: &Console) -> String {
    format!(
        "--- serial log ---\n{}\n--- server log ---\n{}",
        c.log,
        fleet.server_log()
    )
}

#[test]
fn distro_boot_applies_bundles_and_systemd_runs_the_configured_unit() {
    let (mut fleet, localtime) = distro_fleet();
    let initrd = initrd_for(&fleet);

    let c = boot(&fleet, &initrd, "1");
    report_timings("applied boot", &c);
    assert_eq!(
        c.marker("done").as_deref(),
        Some("ok"),
        "the demo unit did not run\n{}",
        explain(&fleet, &c)
    );
    // systemd, PID 1 of the real root (not the initrd), ran the unit.
    assert_eq!(
        c.marker("pid1").as_deref(),
        Some("/usr/lib/systemd/systemd"),
        "{}",
        explain(&fleet, &c)
    );
    assert_eq!(
        c.marker("initrd").as_deref(),
        Some("no"),
        "{}",
        explain(&fleet, &c)
    );
    assert_ne!(
        c.marker("invocation").as_deref(),
        Some("none"),
        "{}",
        explain(&fleet, &c)
    );
    // The host bundle over the site bundle.
    assert_eq!(
        c.marker("per-host").as_deref(),
        Some(PER_HOST_TEXT),
        "{}",
        explain(&fleet, &c)
    );
    assert_eq!(
        c.marker("hostname").as_deref(),
        Some(HOSTNAME),
        "{}",
        explain(&fleet, &c)
    );
    assert_eq!(
        c.marker("localtime"),
        Some(localtime),
        "{}",
        explain(&fleet, &c)
    );
    let zone = c.marker("zone").unwrap_or_default();
    assert!(
        zone == "CET" || zone == "CEST",
        "etc/localtime does not resolve to {ZONE}: {zone:?}\n{}",
        explain(&fleet, &c)
    );
    assert_eq!(
        c.marker("motd").as_deref(),
        Some("gone"),
        "the whiteout did not remove etc/motd\n{}",
        explain(&fleet, &c)
    );
    let status = c.marker("satchel-status").unwrap_or_default();
    assert!(
        status.contains("result=ok") && status.contains("required=1"),
        "{status}\n{}",
        explain(&fleet, &c)
    );
    let node = fleet.node_record().expect("the node reported");
    assert_eq!(node["last_status"], "applied", "{node}");
    assert_eq!(node["serials"][format!("site/{SITE}")], 1, "{node}");
    assert_eq!(
        node["serials"][format!("host/{GUEST_MAC_CANON}")],
        1,
        "{node}"
    );

    // The host bundle re-signed by a key the image does not trust.
    fleet.publish_rogue_host_bundle();
    let c = boot(&fleet, &initrd, "1");
    report_timings("rogue boot", &c);
    assert!(
        c.log.contains("satchel-hook: FAILED"),
        "the hook did not fail\n{}",
        explain(&fleet, &c)
    );
    assert!(
        c.log.contains("nothing was applied"),
        "the fetcher did not say that nothing was applied\n{}",
        explain(&fleet, &c)
    );
    assert!(
        c.log.contains(EMERGENCY_MARKER),
        "no emergency target in the initrd\n{}",
        explain(&fleet, &c)
    );
    assert_eq!(
        c.marker("done"),
        None,
        "the real root booted after a refused bundle\n{}",
        explain(&fleet, &c)
    );
    let node = fleet.node_record().expect("the node reported");
    assert_eq!(node["last_status"], "failed", "{node}");
    assert!(
        node["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a trusted key")),
        "{node}"
    );
}
