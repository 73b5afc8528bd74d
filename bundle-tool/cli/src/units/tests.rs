// Tests panic on failure by design.
#![allow(clippy::unwrap_used)]

use super::*;

/// A payload in memory: path → kind, and the unit files' texts.
#[derive(Default)]
struct Mem {
    kinds: BTreeMap<String, Kind>,
    texts: BTreeMap<String, String>,
}

impl Mem {
    fn file(mut self, path: &str, text: &str) -> Mem {
        let mut parent = String::new();
        for c in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            self.kinds.insert(parent.clone(), Kind::Dir);
        }
        self.kinds.insert(path.into(), Kind::File);
        self.texts.insert(path.into(), text.into());
        self
    }
    fn put(mut self, path: &str, kind: Kind) -> Mem {
        self.kinds.insert(path.into(), kind);
        self
    }
}

impl Payload for Mem {
    fn kind(&self, path: &str) -> Result<Kind, UnitError> {
        Ok(self.kinds.get(path).cloned().unwrap_or(Kind::Missing))
    }
    fn read(&self, path: &str) -> Result<String, UnitError> {
        Ok(self.texts.get(path).cloned().unwrap_or_default())
    }
}

fn name(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

fn links(plan: &Plan) -> Vec<(&str, &str)> {
    plan.add
        .iter()
        .map(|l| (l.path.as_str(), l.target.as_str()))
        .collect()
}

fn enable(payload: &Mem, requests: &[&str]) -> Result<Plan, UnitError> {
    let rs: Vec<Request> = requests
        .iter()
        .map(|r| Request::parse(r).unwrap())
        .collect();
    plan(&rs, payload)
}

#[test]
fn unit_names_follow_systemds_rules() {
    for ok in [
        "sshd.service",
        "getty@tty1.service",
        "getty@.service",
        "dev-disk-by\\x2duuid-1.device",
        "a:b_c.d-e.timer",
        "x@a@b.service",
    ] {
        assert!(UnitName::parse(ok).is_ok(), "{ok}");
    }
    let long = format!("{}.service", "a".repeat(MAX_UNIT_NAME_LEN - 7));
    assert!(UnitName::parse(&long).is_err());
    assert!(UnitName::parse(&long[1..]).is_ok());
    for (bad, why) in [
        ("", "empty"),
        ("sshd", "no type suffix"),
        ("sshd.conf", "unknown type .conf"),
        (".service", "nothing before"),
        ("@x.service", "nothing before"),
        ("../etc.service", "only letters"),
        ("a/b.service", "only letters"),
        ("..", "unknown type"),
        ("a b.service", "only letters"),
        ("x@a/b.service", "instance"),
        ("é.service", "only letters"),
    ] {
        let e = UnitName::parse(bad).expect_err(bad);
        assert!(e.to_string().contains(why), "{bad}: {e}");
    }
    let n = name("foo-bar@baz.service");
    assert_eq!(
        (n.prefix(), n.instance(), n.suffix()),
        ("foo-bar", Some("baz"), "service")
    );
    assert_eq!(n.template(), name("foo-bar@.service"));
    assert!(name("foo@.service").is_template());
    assert!(!name("foo.service").is_instance());
}

#[test]
fn requests_split_at_the_last_colon_only_between_two_unit_names() {
    assert_eq!(
        Request::parse("a.service").unwrap(),
        Request::Unit(name("a.service"))
    );
    assert_eq!(
        Request::parse("a.service:multi-user.target").unwrap(),
        Request::WantedBy {
            unit: name("a.service"),
            target: name("multi-user.target")
        }
    );
    // A colon inside a unit name is part of it.
    assert_eq!(
        Request::parse("a:b.service").unwrap(),
        Request::Unit(name("a:b.service"))
    );
    for bad in [
        "a.service:",
        "a.service:../x.target",
        "x@.service:multi-user.target",
        "nope",
    ] {
        assert!(Request::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_parser_reads_systemds_syntax() {
    let text = "\
# comment
; also a comment
[Unit]
Description=Demo \\
  over two lines
[Service]
ExecStart=/bin/true

[Install]
WantedBy=multi-user.target \\
# a comment inside a continuation is skipped
   graphical.target
WantedBy=  default.target\t
Alias=demo.service
Also=
Also=other.service
Alias=old.service
Alias=
Alias=new.service
RequiredBy=x.target
DefaultInstance=one
DefaultInstance=two
[X-Vendor]
Anything=goes here
";
    let i = parse_install(text, "u.service").unwrap();
    assert_eq!(
        i.wanted_by,
        ["multi-user.target", "graphical.target", "default.target"]
    );
    assert_eq!(i.alias, ["new.service"]);
    assert_eq!(i.also, ["other.service"]);
    assert_eq!(i.required_by, ["x.target"]);
    assert_eq!(i.default_instance.as_deref(), Some("two"));

    // Two [Install] sections merge; CRLF line ends are whitespace.
    let i = parse_install(
        "[Install]\r\nWantedBy=a.target\r\n[Unit]\r\n[Install]\r\nWantedBy=b.target\r\n",
        "u",
    )
    .unwrap();
    assert_eq!(i.wanted_by, ["a.target", "b.target"]);
    // DefaultInstance= resets.
    let i = parse_install("[Install]\nDefaultInstance=x\nDefaultInstance=\n", "u").unwrap();
    assert_eq!(i.default_instance, None);
}

#[test]
fn hostile_unit_files_are_refused_with_the_line() {
    assert_eq!(
        parse_install("[Unit]\nDescription=x\n", "u").unwrap(),
        Install::default(),
        "no [Install] is an empty one"
    );
    assert_eq!(
        parse_install("[Bogus]\nWhatever=1\n", "u").unwrap(),
        Install::default(),
        "an unknown section is read for syntax only"
    );
    for (text, want) in [
        (
            "WantedBy=a.target\n",
            "u.service:1: WantedBy= is outside any [Section]",
        ),
        (
            "[Install]\nWantedBy\n",
            "u.service:2: \"WantedBy\" is neither",
        ),
        (
            "[Install\nWantedBy=a.target\n",
            "u.service:1: a section header must end",
        ),
        ("[]\n", "invalid section name"),
        ("[Install]\nWanted By=a.target\n", "invalid key"),
        ("[Install]\n=a.target\n", "invalid key"),
        (
            "[Install]\nWantedBy=a.target \\",
            "u.service:2: the file ends inside",
        ),
        (
            "[Install]\nwantedby=a.target\n",
            "unknown [Install] key \"wantedby\"",
        ),
        (
            "[Install]\nWantedBy=a\0b.target\n",
            "u.service:2: control character",
        ),
        ("\u{7f}ELF\u{1}\u{2}", "control character"),
        (
            "[Unit]\nDescription=\u{1b}[31m\n",
            "u.service:2: control character",
        ),
    ] {
        let e = parse_install(text, "u.service").expect_err(text);
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
}

#[test]
fn a_huge_or_binary_unit_file_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("etc/systemd/system");
    std::fs::create_dir_all(&dir).unwrap();
    let huge = format!(
        "[Install]\nWantedBy=a.target\n# {}\n",
        "x".repeat(MAX_UNIT_FILE_BYTES as usize)
    );
    std::fs::write(dir.join("big.service"), huge).unwrap();
    std::fs::write(
        dir.join("bin.service"),
        [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0],
    )
    .unwrap();
    let p = DirPayload { root: d.path() };
    let e = plan(&[Request::Unit(name("big.service"))], &p).expect_err("huge");
    assert!(
        e.to_string()
            .contains("big.service is larger than 1048576 bytes"),
        "{e}"
    );
    let e = plan(&[Request::Unit(name("bin.service"))], &p).expect_err("binary");
    assert!(
        e.to_string().contains("bin.service is not UTF-8 text"),
        "{e}"
    );
}

#[test]
fn specifiers_expand_as_for_install_and_others_are_refused() {
    let u = name("foo-bar@baz.service");
    assert_eq!(
        expand("%n %N %p %i %j 100%%", &u).unwrap(),
        "foo-bar@baz.service foo-bar@baz foo-bar baz bar 100%"
    );
    assert!(expand("%H", &u).unwrap_err().contains("%H"));
    assert!(expand("x%", &u).unwrap_err().contains("lone %"));
}

const DEMO: &str = "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n\
[Install]\nWantedBy=multi-user.target\nAlias=demo.service\n";

#[test]
fn wanted_by_required_by_and_alias_make_absolute_links_to_the_payload_path() {
    let p = Mem::default().file(
        "lib/systemd/system/satchel-demo.service",
        &format!("{DEMO}RequiredBy=network-online.target\nUpheldBy=x.target\n"),
    );
    let plan = enable(&p, &["satchel-demo.service"]).unwrap();
    let t = "/lib/systemd/system/satchel-demo.service";
    assert_eq!(
        links(&plan),
        [
            ("etc/systemd/system/demo.service", t),
            (
                "etc/systemd/system/multi-user.target.wants/satchel-demo.service",
                t
            ),
            (
                "etc/systemd/system/network-online.target.requires/satchel-demo.service",
                t
            ),
            (
                "etc/systemd/system/x.target.upholds/satchel-demo.service",
                t
            ),
        ]
    );
    assert!(plan.present.is_empty());
}

#[test]
fn templates_take_the_instance_or_the_default_instance() {
    let tmpl = "[Install]\nWantedBy=multi-user.target getty-%i.target\nAlias=tty@.service\n\
Also=helper@%i.socket\nDefaultInstance=tty1\n";
    let p = Mem::default()
        .file("usr/lib/systemd/system/getty@.service", tmpl)
        .file(
            "usr/lib/systemd/system/helper@.socket",
            "[Install]\nWantedBy=sockets.target\n",
        );
    let t = "/usr/lib/systemd/system/getty@.service";
    let s = "/usr/lib/systemd/system/helper@.socket";
    let want = |i: &str| -> Vec<(String, String)> {
        [
            (format!("getty-{i}.target.wants/getty@{i}.service"), t),
            (format!("multi-user.target.wants/getty@{i}.service"), t),
            (format!("sockets.target.wants/helper@{i}.socket"), s),
            (format!("tty@{i}.service"), t),
        ]
        .into_iter()
        .map(|(p, t)| (format!("etc/systemd/system/{p}"), t.to_string()))
        .collect()
    };
    let owned = |plan: &Plan| -> Vec<(String, String)> {
        links(plan)
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        owned(&enable(&p, &["getty@ttyS0.service"]).unwrap()),
        want("ttyS0")
    );
    assert_eq!(
        owned(&enable(&p, &["getty@.service"]).unwrap()),
        want("tty1")
    );

    let p = Mem::default().file(
        "usr/lib/systemd/system/x@.service",
        "[Install]\nWantedBy=multi-user.target\n",
    );
    let e = enable(&p, &["x@.service"]).unwrap_err();
    assert!(
        e.to_string().contains("give --enable x@INSTANCE.service"),
        "{e}"
    );
}

#[test]
fn a_unit_not_in_the_payload_needs_a_target_and_gets_the_vendor_path() {
    let p = Mem::default();
    let e = enable(&p, &["sshd.service"]).unwrap_err();
    assert!(
        e.to_string().contains("--enable sshd.service:TARGET"),
        "{e}"
    );
    let plan = enable(
        &p,
        &[
            "sshd.service:multi-user.target",
            "serial-getty@ttyS0.service:getty.target",
        ],
    )
    .unwrap();
    assert_eq!(
        links(&plan),
        [
            (
                "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service",
                "/usr/lib/systemd/system/serial-getty@.service"
            ),
            (
                "etc/systemd/system/multi-user.target.wants/sshd.service",
                "/usr/lib/systemd/system/sshd.service"
            ),
        ]
    );
    // In the payload: the link points at its file.
    let p = Mem::default().file("etc/systemd/system/a.service", DEMO);
    let plan = enable(&p, &["a.service:b.target"]).unwrap();
    assert_eq!(
        links(&plan),
        [(
            "etc/systemd/system/b.target.wants/a.service",
            "/etc/systemd/system/a.service"
        )]
    );
}

#[test]
fn refusals_say_what_and_where() {
    let two = Mem::default()
        .file("etc/systemd/system/a.service", DEMO)
        .file("usr/lib/systemd/system/a.service", DEMO);
    let cases: Vec<(Mem, &str, &str)> = vec![
        (
            two,
            "a.service",
            "a.service is in the payload more than once (etc/systemd/system/a.service, \
             usr/lib/systemd/system/a.service)",
        ),
        (
            Mem::default().file("lib/systemd/system/a.service", "[Unit]\nDescription=x\n"),
            "a.service",
            "has no WantedBy/RequiredBy/Alias; nothing to enable",
        ),
        (
            Mem::default().file(
                "lib/systemd/system/a.service",
                "[Install]\nWantedBy=../../x.target\n",
            ),
            "a.service",
            "WantedBy=\"../../x.target\": invalid unit name",
        ),
        (
            Mem::default().file(
                "lib/systemd/system/a.service",
                "[Install]\nWantedBy=a/b.target\n",
            ),
            "a.service",
            "only letters",
        ),
        (
            Mem::default().file(
                "lib/systemd/system/a.service",
                "[Install]\nWantedBy=%H.target\n",
            ),
            "a.service",
            "specifier %H",
        ),
        (
            Mem::default().file(
                "lib/systemd/system/a.service",
                "[Install]\nAlias=a.socket\n",
            ),
            "a.service",
            "keeps the unit's type",
        ),
        (
            Mem::default().file(
                "lib/systemd/system/a.service",
                "[Install]\nAlias=a.service\n",
            ),
            "a.service",
            "must differ",
        ),
        (
            Mem::default().file(
                "lib/systemd/system/a.service",
                "[Install]\nAlso=b.service\n",
            ),
            "a.service",
            "unit b.service is not in the payload",
        ),
        (
            Mem::default()
                .file("lib/systemd/system/a.service", DEMO)
                .put(
                    "etc/systemd/system/demo.service",
                    Kind::Symlink("/lib/systemd/system/other.service".into()),
                ),
            "a.service",
            "already has this link pointing at /lib/systemd/system/other.service",
        ),
        (
            Mem::default()
                .file("lib/systemd/system/a.service", DEMO)
                .file("etc/systemd/system/demo.service", ""),
            "a.service",
            "the payload has a file here",
        ),
        (
            Mem::default()
                .file("lib/systemd/system/a.service", DEMO)
                .file("etc/systemd/system/multi-user.target.wants", ""),
            "a.service",
            "etc/systemd/system/multi-user.target.wants is a file in the payload",
        ),
        (
            Mem::default().put(
                "lib/systemd/system/a.service",
                Kind::Symlink("/dev/null".into()),
            ),
            "a.service",
            "lib/systemd/system/a.service is a symlink in the payload",
        ),
    ];
    for (payload, request, want) in cases {
        let e = enable(&payload, &[request]).expect_err(want);
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    // Two requests that want one link name with two targets.
    let p = Mem::default()
        .file("lib/systemd/system/a.service", DEMO)
        .file("lib/systemd/system/b.service", DEMO);
    let e = enable(&p, &["a.service", "b.service"]).unwrap_err();
    assert!(e.to_string().contains("would point at both"), "{e}");
}

#[test]
fn links_already_in_the_payload_are_kept_and_also_cycles_end() {
    let p = Mem::default()
        .file(
            "lib/systemd/system/a.service",
            "[Install]\nWantedBy=multi-user.target\nAlso=b.service\n",
        )
        .file(
            "lib/systemd/system/b.service",
            "[Install]\nAlso=a.service\n",
        )
        .put(
            "etc/systemd/system/multi-user.target.wants/a.service",
            Kind::Symlink("/lib/systemd/system/a.service".into()),
        );
    let plan = enable(&p, &["a.service", "a.service"]).unwrap();
    assert!(plan.add.is_empty(), "{plan:?}");
    assert_eq!(plan.present.len(), 1);
}

#[test]
fn a_directory_payload_is_not_read_through_its_own_symlinks() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("usr/lib/systemd/system")).unwrap();
    std::fs::write(d.path().join("usr/lib/systemd/system/a.service"), DEMO).unwrap();
    // A merged-/usr link inside the payload: the unit is there once.
    std::os::unix::fs::symlink("usr/lib", d.path().join("lib")).unwrap();
    let p = DirPayload { root: d.path() };
    assert_eq!(
        p.kind("lib/systemd/system/a.service").unwrap(),
        Kind::Missing
    );
    assert_eq!(p.kind("lib").unwrap(), Kind::Symlink("usr/lib".into()));
    let plan = plan(&[Request::Unit(name("a.service"))], &p).unwrap();
    assert!(
        plan.add
            .iter()
            .all(|l| l.target == "/usr/lib/systemd/system/a.service"),
        "{plan:?}"
    );
    assert_eq!(plan.add.len(), 2);
}
