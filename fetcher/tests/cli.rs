//! The `satchel-fetch` binary's arguments and the exit codes its doc
//! promises for unusable input, run as the initrd hook runs it. (Being an
//! integration test of this package also makes `cargo test --workspace`
//! build the binary that the end-to-end tests in `tests/` start.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run that has not exited by then is killed and fails the test.
const KILL_AFTER: Duration = Duration::from_secs(30);

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn fetch(args: &[&str]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_satchel-fetch"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn satchel-fetch");
    let end = Instant::now() + KILL_AFTER;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("satchel-fetch {args:?} did not exit within {KILL_AFTER:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn version_and_help_exit_zero() {
    let v = fetch(&["--version"]);
    assert_eq!(v.code, Some(0));
    assert_eq!(
        v.stdout.trim(),
        concat!("satchel-fetch ", env!("CARGO_PKG_VERSION"))
    );
    let h = fetch(&["--help"]);
    assert_eq!(h.code, Some(0));
    assert!(h.stdout.contains("usage: satchel-fetch"), "{}", h.stdout);
    assert!(h.stdout.contains("capture --path"), "{}", h.stdout);
}

#[test]
fn bad_arguments_exit_2_and_name_the_argument() {
    for (args, says) in [
        (&["--bogus"][..], "--bogus"),
        (&["--cmdline"][..], "--cmdline needs a value"),
        (&["--connect-timeout", "abc"][..], "\"abc\""),
        (&["--connect-timeout", "0"][..], "--connect-timeout"),
        (&["--max-bundle-bytes", "-1"][..], "--max-bundle-bytes"),
        (&["--min-rate", "1e9"][..], "--min-rate"),
    ] {
        let o = fetch(args);
        assert_eq!(o.code, Some(2), "{args:?}: {}", o.stderr);
        assert!(
            o.stderr
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("satchel: error:") && l.contains(says)),
            "{args:?}: {}",
            o.stderr
        );
    }
}

#[test]
fn unusable_input_exits_3_when_required_and_0_when_not() {
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path();
    let root = d.join("root");
    std::fs::create_dir(&root).expect("root");
    let kmsg = d.join("kmsg");
    std::fs::write(&kmsg, b"").expect("kmsg");
    // (command line, what the error says, exit code with satchel.required=0)
    let cases = [
        // No node config at the given path.
        (
            format!("satchel.root={}", s(&root)),
            "cannot read node config",
            0,
        ),
        // The real root is not mounted.
        (
            format!("satchel.root={}", s(&d.join("absent"))),
            "is not a directory",
            0,
        ),
        // A hostile command line value: the line as a whole is unusable, so
        // its satchel.required is not trusted either (the hook reads that
        // flag on its own and still lets the boot go on).
        (
            format!("satchel.root={} satchel.timeout=abc", s(&root)),
            "satchel.timeout",
            3,
        ),
    ];
    for (line, says, lenient) in &cases {
        for (required, want) in [("1", 3), ("0", *lenient)] {
            let cmdline = d.join("cmdline");
            std::fs::write(&cmdline, format!("ro {line} satchel.required={required}\n"))
                .expect("cmdline");
            let o = fetch(&[
                "--cmdline",
                s(&cmdline),
                "--config",
                s(&d.join("no-such-satchel.toml")),
                "--kmsg",
                s(&kmsg),
                "--resolv-conf",
                s(&d.join("no-resolv.conf")),
                "--sysfs",
                s(&d.join("no-sys")),
            ]);
            assert_eq!(
                o.code,
                Some(want),
                "{line} required={required}: {}",
                o.stderr
            );
            assert!(o.stderr.contains(says), "{line}: {}", o.stderr);
            assert!(
                o.stderr.lines().all(|l| l.starts_with("satchel: ")),
                "every line is prefixed: {}",
                o.stderr
            );
        }
    }
    // Nothing was written into the root.
    assert_eq!(std::fs::read_dir(&root).expect("root").count(), 0);
}

#[test]
fn capture_without_a_usable_config_exits_3() {
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path();
    let o = fetch(&[
        "capture",
        "--path",
        s(d),
        "--config",
        s(&d.join("no-such-satchel.toml")),
        "--kmsg",
        s(&d.join("kmsg")),
    ]);
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(o.stderr.contains("cannot read node config"), "{}", o.stderr);
}
