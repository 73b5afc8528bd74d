use super::*;

fn ok(s: &str) -> BootParams {
    parse(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
}

#[test]
fn typical_lines() {
    let p = ok("BOOT_IMAGE=/vmlinuz ro quiet BOOTIF=01-AA-bb-cc-dd-ee-0f \
                satchel.domain=Boot.Example.Test. satchel.dns=127.0.0.1 \
                satchel.dns=[::1]:5353 satchel.required=0 satchel.timeout=90\n");
    assert_eq!(
        p.bootif.map(|m| m.to_string()).as_deref(),
        Some("aa-bb-cc-dd-ee-0f")
    );
    assert_eq!(p.domain.as_deref(), Some("boot.example.test"));
    assert_eq!(
        p.dns,
        vec![
            "127.0.0.1:53".parse().unwrap(),
            "[::1]:5353".parse().unwrap()
        ]
    );
    assert!(!p.required);
    assert_eq!(p.timeout, Some(Duration::from_secs(90)));
    assert_eq!(p.root, PathBuf::from("/sysroot"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    let d = ok("");
    assert_eq!(d, BootParams::default());
    assert!(d.required);
}

#[test]
fn table() {
    // (line, check)
    type Check = Box<dyn Fn(&BootParams) -> bool>;
    let cases: Vec<(&str, Check)> = vec![
        (
            "satchel.server=cfg.example.test:8443",
            Box::new(|p| {
                p.server
                    == Some(HostPort {
                        host: "cfg.example.test".into(),
                        port: 8443,
                    })
            }),
        ),
        (
            "satchel.server=127.0.0.1:1",
            Box::new(|p| p.server.as_ref().map(|s| s.port) == Some(1)),
        ),
        (
            "satchel.server=[::1]:443",
            Box::new(|p| p.server.as_ref().map(|s| s.host.as_str()) == Some("::1")),
        ),
        ("satchel.dns_tcp=1", Box::new(|p| p.dns_tcp)),
        ("satchel.dns-tcp=1", Box::new(|p| p.dns_tcp)),
        ("satchel.dns_tcp", Box::new(|p| p.dns_tcp)),
        (
            "satchel.dns_tcp=1 satchel.dns_tcp=0",
            Box::new(|p| !p.dns_tcp),
        ),
        (
            "satchel.root=\"/sys root/x\"",
            Box::new(|p| p.root.as_path() == std::path::Path::new("/sys root/x")),
        ),
        (
            "\"satchel.root=/a b\"",
            Box::new(|p| p.root.as_path() == std::path::Path::new("/a b")),
        ),
        (
            "satchel.root=/a satchel.root=/b",
            Box::new(|p| p.root.as_path() == std::path::Path::new("/b")),
        ),
        (
            "satchel.dns=127.0.0.1,127.0.0.2:5300",
            Box::new(|p| p.dns.len() == 2),
        ),
        (
            "satchel.dns=127.0.0.1 satchel.dns=127.0.0.1",
            Box::new(|p| p.dns.len() == 1),
        ),
        (
            "satchel.required=1 satchel.required=0",
            Box::new(|p| !p.required),
        ),
        (
            "satchel.capture=/etc/hosts,/etc/motd",
            Box::new(|p| p.capture.len() == 2),
        ),
        (
            "satchel.frobnicate=1",
            Box::new(|p| p.warnings.len() == 1 && p.warnings[0].contains("satchel.frobnicate")),
        ),
        (
            "BOOTIF=01-zz-bb-cc-dd-ee-ff",
            Box::new(|p| p.bootif.is_none() && p.warnings.len() == 1),
        ),
        (
            "BOOTIF=20-aa-bb-cc-dd-ee-ff",
            Box::new(|p| p.bootif.is_none() && p.warnings.len() == 1),
        ),
        (
            "BOOTIF",
            Box::new(|p| p.bootif.is_none() && p.warnings.len() == 1),
        ),
        (
            "BOOTIF=01-aa-bb-cc-dd-ee-ff BOOTIF=01-00-00-00-00-00-01",
            Box::new(|p| p.bootif.map(|m| m.to_string()) == Some("00-00-00-00-00-01".into())),
        ),
        (
            "satchelx.domain=a satchel=1 satchel.",
            Box::new(|p| p.domain.is_none() && p.warnings.len() == 1),
        ),
        ("   \t\n  ", Box::new(|p| *p == BootParams::default())),
        (
            "\"unterminated satchel.root=/x",
            Box::new(|p| p.root.as_path() == std::path::Path::new("/sysroot")),
        ),
        (
            "satchel.timeout=3600",
            Box::new(|p| p.timeout == Some(Duration::from_secs(3600))),
        ),
    ];
    for (i, (line, check)) in cases.iter().enumerate() {
        let p = ok(line);
        assert!(check(&p), "case {i} {line:?} gave {p:?}");
    }
}

#[test]
fn hostile_lines_are_refused() {
    let huge = "a".repeat(MAX_CMDLINE_BYTES + 1);
    let huge_value = format!("satchel.domain={}", "a.".repeat(200));
    let many_dns = (0..20)
        .map(|i| format!("satchel.dns=127.0.0.{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let refused = [
        huge.as_str(),
        "ro\0 satchel.root=/x",
        "satchel.server=host",
        "satchel.server=host:0",
        "satchel.server=host:65536",
        "satchel.server=host:-1",
        "satchel.server=host:+80",
        "satchel.server=host:99999999999999999999",
        "satchel.server=::1:443",
        "satchel.server=[::1]443",
        "satchel.server=[nothex]:443",
        "satchel.server=bad_-.host:1",
        "satchel.server=-bad:1",
        "satchel.server=:443",
        "satchel.server=a..b:443",
        "satchel.dns=not-an-ip",
        "satchel.dns=127.0.0.1:0",
        "satchel.dns=127.0.0.1:70000",
        "satchel.dns=999.1.1.1",
        "satchel.dns",
        "satchel.dns_tcp=maybe",
        "satchel.required=2",
        "satchel.required=",
        "satchel.root=relative",
        "satchel.root=/a/../etc",
        "satchel.root=",
        "satchel.timeout=0",
        "satchel.timeout=-5",
        "satchel.timeout=3601",
        "satchel.timeout=1.5",
        "satchel.timeout=18446744073709551616",
        "satchel.capture=etc/hosts",
        "satchel.capture=/etc/../shadow",
        "satchel.domain=",
        "satchel.domain=exa!mple",
        "satchel.domain=\"a b\"",
        huge_value.as_str(),
    ];
    for (i, line) in refused.iter().enumerate() {
        assert!(
            parse(line).is_err(),
            "case {i} {:?} was accepted: {:?}",
            shown(line),
            parse(line)
        );
    }
    // Too many nameservers: the first MAX_DNS_SERVERS are kept, the rest warned.
    let p = ok(&many_dns);
    assert_eq!(p.dns.len(), MAX_DNS_SERVERS);
    assert_eq!(p.warnings.len(), 20 - MAX_DNS_SERVERS);
    // Exactly at the limit is fine.
    let at_limit = format!("ro{}", " ".repeat(MAX_CMDLINE_BYTES - 2));
    assert!(parse(&at_limit).is_ok());
}

#[test]
fn error_messages_truncate_long_values() {
    let line = format!("satchel.timeout={}", "9".repeat(10_000));
    let msg = parse(&line).expect_err("refused").to_string();
    assert!(msg.len() < 300, "{msg}");
}

#[test]
fn split_follows_the_kernel() {
    assert_eq!(
        split("a=1 \"b=2 3\" c=\"4 5\" d"),
        vec![
            ("a".into(), Some("1".into())),
            ("b".into(), Some("2 3".into())),
            ("c".into(), Some("4 5".into())),
            ("d".into(), None)
        ]
    );
    assert_eq!(split("x=a=b"), vec![("x".into(), Some("a=b".into()))]);
    assert_eq!(split("\"\""), vec![("".into(), None)]);
}
