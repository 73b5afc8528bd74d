//! The report's outputs: the JSON schema documented in `AUDIT.md` (checked
//! against real output and the document's own example), the HTML page, the
//! CLI's exit status, `--connect` against a rustls server on 127.0.0.1, and
//! hostile directory contents.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rcgen::ExtendedKeyUsagePurpose;
use satchel_pki::audit::cli::{run_cli_to, AuditArgs, EXIT_CLEAN, EXIT_FINDINGS, EXIT_INPUT};
use satchel_pki::audit::{self, lints::LINTS, AuditInput, Report};
use serde_json::Value;
use time::Duration;

use super::ledger::{issued_set, rogue_leaf};
use super::support::*;

const AUDIT_MD: &str = include_str!("../../AUDIT.md");

// ---------------------------------------------------------------------------
// A hand-written validator for the schema of AUDIT.md: every object has
// exactly the documented keys, each value has the documented type, and the
// enumerations hold only documented values.

#[derive(Clone, Copy)]
enum Ty {
    Str,
    OptStr,
    Bool,
    OptBool,
    Int,
    OptInt,
    Sha256,
    OptSha256,
    Time,
    OptTime,
    Enum(&'static [&'static str]),
    StrList,
    Sha256List,
    Obj(&'static [(&'static str, Ty)]),
    OptObj(&'static [(&'static str, Ty)]),
    ObjList(&'static [(&'static str, Ty)]),
}

const KINDS: &[&str] = &["ca", "server", "host", "site", "admin", "unknown"];
const STATUSES: &[&str] = &[
    "valid",
    "not-yet-valid",
    "expired",
    "revoked",
    "unknown-to-ledger",
];
const SEVERITIES: &[&str] = &["error", "warning", "notice"];

const KEY: &[(&str, Ty)] = &[("type", Ty::Str), ("bits", Ty::Int), ("curve", Ty::OptStr)];
const CERTIFICATE: &[(&str, Ty)] = &[
    ("sha256", Ty::Sha256),
    ("sources", Ty::StrList),
    ("serial", Ty::Str),
    ("subject", Ty::Str),
    ("issuer", Ty::Str),
    ("sans", Ty::StrList),
    ("scope", Ty::OptStr),
    ("kind", Ty::Enum(KINDS)),
    ("audited_ca", Ty::Bool),
    ("key", Ty::Obj(KEY)),
    ("spki_sha256", Ty::Sha256),
    ("signature_algorithm", Ty::Str),
    ("not_before", Ty::Time),
    ("not_after", Ty::Time),
    ("days_left", Ty::Int),
    ("status", Ty::Enum(STATUSES)),
    ("in_ledger", Ty::OptBool),
];
const FINDING: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("severity", Ty::Enum(SEVERITIES)),
    ("certificate", Ty::OptSha256),
    ("subject", Ty::OptStr),
    ("message", Ty::Str),
    ("hint", Ty::Str),
];
const REPORT: &[(&str, Ty)] = &[
    ("schema", Ty::Enum(&["satchel-pki-audit/1"])),
    ("generated_at", Ty::Time),
    ("pki_dir", Ty::Str),
    (
        "presented",
        Ty::OptObj(&[("address", Ty::Str), ("chain", Ty::Sha256List)]),
    ),
    (
        "summary",
        Ty::Obj(&[
            ("certificates", Ty::Int),
            ("errors", Ty::Int),
            ("warnings", Ty::Int),
            ("notices", Ty::Int),
        ]),
    ),
    ("certificates", Ty::ObjList(CERTIFICATE)),
    (
        "ledger",
        Ty::Obj(&[
            ("path", Ty::Str),
            ("present", Ty::Bool),
            ("entries", Ty::Int),
            ("chain_ok", Ty::OptBool),
            ("error", Ty::OptStr),
        ]),
    ),
    (
        "crl",
        Ty::Obj(&[
            ("source", Ty::OptStr),
            ("number", Ty::OptInt),
            ("this_update", Ty::OptTime),
            ("next_update", Ty::OptTime),
            ("fresh", Ty::OptBool),
            ("revoked_serials", Ty::StrList),
        ]),
    ),
    ("findings", Ty::ObjList(FINDING)),
];

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn is_time(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        && s.ends_with('Z')
}

fn validate(v: &Value, ty: Ty, at: &str, errs: &mut Vec<String>) {
    let mut bad = |what: &str| errs.push(format!("{at}: expected {what}, got {v}"));
    match ty {
        Ty::Str => {
            if !v.is_string() {
                bad("string")
            }
        }
        Ty::Bool => {
            if !v.is_boolean() {
                bad("boolean")
            }
        }
        Ty::Int => {
            if !(v.is_i64() || v.is_u64()) {
                bad("integer")
            }
        }
        Ty::Sha256 => {
            if !v.as_str().is_some_and(is_sha256) {
                bad("sha256 hex")
            }
        }
        Ty::Time => {
            if !v.as_str().is_some_and(is_time) {
                bad("RFC 3339 UTC time")
            }
        }
        Ty::OptStr | Ty::OptBool | Ty::OptInt | Ty::OptSha256 | Ty::OptTime | Ty::OptObj(_)
            if v.is_null() => {}
        Ty::OptStr => validate(v, Ty::Str, at, errs),
        Ty::OptBool => validate(v, Ty::Bool, at, errs),
        Ty::OptInt => validate(v, Ty::Int, at, errs),
        Ty::OptSha256 => validate(v, Ty::Sha256, at, errs),
        Ty::OptTime => validate(v, Ty::Time, at, errs),
        Ty::OptObj(f) => validate(v, Ty::Obj(f), at, errs),
        Ty::Enum(vals) => {
            if !v.as_str().is_some_and(|s| vals.contains(&s)) {
                bad(&format!("one of {vals:?}"))
            }
        }
        Ty::StrList | Ty::Sha256List => match v.as_array() {
            None => bad("array"),
            Some(a) => {
                let item = if matches!(ty, Ty::StrList) {
                    Ty::Str
                } else {
                    Ty::Sha256
                };
                for (i, x) in a.iter().enumerate() {
                    validate(x, item, &format!("{at}[{i}]"), errs);
                }
            }
        },
        Ty::ObjList(f) => match v.as_array() {
            None => bad("array"),
            Some(a) => {
                for (i, x) in a.iter().enumerate() {
                    validate(x, Ty::Obj(f), &format!("{at}[{i}]"), errs);
                }
            }
        },
        Ty::Obj(fields) => match v.as_object() {
            None => bad("object"),
            Some(o) => {
                let want: BTreeSet<&str> = fields.iter().map(|(k, _)| *k).collect();
                let got: BTreeSet<&str> = o.keys().map(String::as_str).collect();
                if want != got {
                    errs.push(format!("{at}: keys {got:?}, documented {want:?}"));
                }
                for (k, t) in fields {
                    if let Some(x) = o.get(*k) {
                        validate(x, *t, &format!("{at}.{k}"), errs);
                    }
                }
            }
        },
    }
}

/// Checks a report against the schema, plus what types alone cannot say.
fn check_schema(v: &Value) {
    let mut errs = Vec::new();
    validate(v, Ty::Obj(REPORT), "$", &mut errs);
    assert!(errs.is_empty(), "schema violations:\n{}", errs.join("\n"));
    let certs = v["certificates"].as_array().unwrap();
    let shas: BTreeSet<&str> = certs
        .iter()
        .map(|c| c["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(v["summary"]["certificates"], certs.len());
    let findings = v["findings"].as_array().unwrap();
    for f in findings {
        let id = f["id"].as_str().unwrap();
        let lint = LINTS
            .iter()
            .find(|l| l.id == id)
            .expect("a registered lint id");
        assert_eq!(f["severity"], lint.severity.as_str());
        if let Some(c) = f["certificate"].as_str() {
            assert!(
                shas.contains(c),
                "finding refers to an unlisted certificate"
            );
        }
    }
    for (sev, key) in [
        ("error", "errors"),
        ("warning", "warnings"),
        ("notice", "notices"),
    ] {
        let n = findings.iter().filter(|f| f["severity"] == sev).count();
        assert_eq!(v["summary"][key], n, "{key}");
    }
}

/// The first ```json block of AUDIT.md.
fn doc_example() -> Value {
    let start = AUDIT_MD
        .find("```json\n")
        .expect("a ```json example in AUDIT.md")
        + 8;
    let len = AUDIT_MD[start..].find("```").expect("closing fence");
    serde_json::from_str(&AUDIT_MD[start..start + len]).expect("the example is JSON")
}

#[test]
fn the_documented_example_follows_the_schema() {
    let v = doc_example();
    check_schema(&v);
    // The example shows the interesting parts, not an empty report.
    assert!(!v["certificates"].as_array().unwrap().is_empty());
    assert!(!v["findings"].as_array().unwrap().is_empty());
    assert!(!v["presented"].is_null());
}

#[test]
fn the_document_describes_every_field_and_lint() {
    fn fields(list: &[(&'static str, Ty)], out: &mut BTreeSet<&'static str>) {
        for (k, t) in list {
            out.insert(k);
            match t {
                Ty::Obj(f) | Ty::OptObj(f) | Ty::ObjList(f) => fields(f, out),
                _ => {}
            }
        }
    }
    let mut all = BTreeSet::new();
    fields(REPORT, &mut all);
    for f in all {
        assert!(
            AUDIT_MD.contains(&format!("`{f}`")),
            "AUDIT.md does not describe field `{f}`"
        );
    }
    for l in LINTS {
        let row = format!("| `{}` | {} |", l.id, l.severity.as_str());
        assert!(AUDIT_MD.contains(&row), "AUDIT.md lacks the row {row}");
    }
}

/// A directory with findings of every severity class the report can hold.
fn messy_dir() -> (Dir, Ca) {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    let mut p = leaf_params(LeafKind::Server);
    p.extended_key_usages
        .push(ExtendedKeyUsagePurpose::ClientAuth);
    d.write("certs/server.crt", ca.sign(&p).pem);
    let mut p = leaf_params(LeafKind::Admin);
    p.not_after = now() + Duration::days(2);
    d.write("certs/admin.crt", ca.sign(&p).pem);
    d.write("certs/host.crt", ca.sign(&leaf_params(LeafKind::Host)).pem);
    (d, ca)
}

#[test]
fn real_json_output_follows_the_schema() {
    let (d, _) = messy_dir();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run_cli_to(d.path(), &args(&["--json"]), &mut out, &mut err);
    assert_eq!(code, EXIT_FINDINGS, "{}", String::from_utf8_lossy(&err));
    let v: Value = serde_json::from_slice(&out).expect("stdout is JSON");
    check_schema(&v);
    assert_eq!(v["certificates"].as_array().unwrap().len(), 4);

    // And a clean set from the issuing code, with a live server's chain.
    let t = tempfile::tempdir().unwrap();
    let (ca, issued) = issued_set(t.path());
    let server = TlsServer::start(
        vec![
            issued[0].cert_der.as_ref().to_vec(),
            ca.cert_der().as_ref().to_vec(),
        ],
        issued[0].key_pem.expose(),
        false,
    );
    let mut out = Vec::new();
    let code = run_cli_to(
        t.path(),
        &args(&["--json", "--connect", &server.addr]),
        &mut out,
        &mut err,
    );
    assert_eq!(code, EXIT_CLEAN, "{}", String::from_utf8_lossy(&out));
    let v: Value = serde_json::from_slice(&out).unwrap();
    check_schema(&v);
    assert_eq!(v["presented"]["chain"].as_array().unwrap().len(), 2);
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------------------
// CLI

/// `audit` arguments as the binary parses them; `--json` is the binary's
/// global flag, which sets [`AuditArgs::json`].
fn args(a: &[&str]) -> AuditArgs {
    use clap::{Args as _, FromArgMatches as _};
    let cmd = AuditArgs::augment_args(clap::Command::new("audit"));
    let rest = a.iter().copied().filter(|x| *x != "--json");
    let m = cmd
        .try_get_matches_from(std::iter::once("audit").chain(rest))
        .expect("arguments parse");
    let mut args = AuditArgs::from_arg_matches(&m).expect("arguments");
    args.json = a.contains(&"--json");
    args
}

fn run(dir: &Path, a: &[&str]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run_cli_to(dir, &args(a), &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn exit_status_follows_fail_on() {
    let t = tempfile::tempdir().unwrap();
    let (ca, _) = issued_set(t.path());
    assert_eq!(run(t.path(), &[]).0, EXIT_CLEAN);
    assert_eq!(run(t.path(), &["--fail-on", "notice"]).0, EXIT_CLEAN);

    // A warning: a certificate expiring within the window.
    ca.issue_admin(satchel_pki::AdminName::parse("bob").unwrap(), Some(3))
        .unwrap();
    let (code, text, _) = run(t.path(), &[]);
    assert_eq!(code, EXIT_CLEAN, "warnings do not fail by default");
    assert!(text.contains("w_expiring_soon"), "{text}");
    assert_eq!(run(t.path(), &["--fail-on", "warning"]).0, EXIT_FINDINGS);
    assert_eq!(
        run(t.path(), &["--fail-on", "warning", "--expiring-days", "1"]).0,
        EXIT_CLEAN
    );

    // An error: a certificate file the ledger does not know.
    let stranger = rogue_leaf(t.path(), &ca);
    std::fs::write(t.path().join("certs/stranger.crt"), stranger.pem).unwrap();
    assert_eq!(run(t.path(), &[]).0, EXIT_FINDINGS);
    assert_eq!(run(t.path(), &["--fail-on", "never"]).0, EXIT_CLEAN);
}

#[test]
fn input_errors_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&t.path().join("absent"), &[]);
    assert_eq!(code, EXIT_INPUT);
    assert!(
        err.starts_with("error: ") && err.contains("absent"),
        "{err}"
    );

    let (code, _, err) = run(t.path(), &["missing-extra.pem"]);
    assert_eq!(code, EXIT_INPUT, "{err}");

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = run(t.path(), &["--connect", &closed.to_string()]);
    assert_eq!(code, EXIT_INPUT);
    assert!(err.contains("--connect"), "{err}");

    let (code, _, _) = run(t.path(), &["--connect", "no-port"]);
    assert_eq!(code, EXIT_INPUT);

    let (code, _, err) = run(t.path(), &["--html", "/nonexistent-dir/x/report.html"]);
    assert_eq!(code, EXIT_INPUT, "{err}");

    // Usage errors are clap's, which exits 2 too.
    let cmd = <AuditArgs as clap::Args>::augment_args(clap::Command::new("audit"));
    let e = cmd
        .try_get_matches_from(["audit", "--fail-on", "sometimes"])
        .unwrap_err();
    assert_eq!(e.exit_code(), i32::from(EXIT_INPUT));
}

#[test]
fn text_report_names_everything() {
    let (d, _) = messy_dir();
    let (_, text, _) = run(d.path(), &[]);
    let r = d.audit();
    for c in &r.certificates {
        assert!(
            text.contains(&c.subject) && text.contains(&c.serial),
            "{text}"
        );
    }
    for f in &r.findings {
        assert!(text.contains(f.id) && text.contains(&f.message) && text.contains(f.hint));
    }
}

// ---------------------------------------------------------------------------
// HTML

#[test]
fn html_page_holds_every_certificate_and_finding_and_loads_nothing() {
    let (d, ca) = messy_dir();
    // Attacker-chosen text in a subject must stay text.
    let mut p = leaf_params(LeafKind::Admin);
    p.distinguished_name = dn("<script>alert(1)</script>");
    d.write("certs/evil.crt", ca.sign(&p).pem);
    let page_path = d.path().join("report.html");
    let (code, _, err) = run(
        d.path(),
        &["--html", page_path.to_str().unwrap(), "--fail-on", "never"],
    );
    assert_eq!(code, EXIT_CLEAN, "{err}");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let r: Report = d.audit();
    let esc = satchel_pki::audit::html::escape;
    assert!(page.starts_with("<!DOCTYPE html>"));
    for c in &r.certificates {
        assert!(page.contains(&c.sha256), "certificate {} missing", c.sha256);
        assert!(
            page.contains(&esc(&c.subject)),
            "subject {} missing",
            c.subject
        );
        assert!(page.contains(&esc(&c.serial)));
        assert!(page.contains(c.status.as_str()));
    }
    assert!(r.findings.len() >= 3);
    for f in &r.findings {
        assert!(page.contains(f.id), "finding {} missing", f.id);
        assert!(
            page.contains(&esc(&f.message)),
            "message {} missing",
            f.message
        );
        assert!(page.contains(&esc(f.hint)));
    }
    // Nothing that loads or leaves the page. URIs appear as text (scope
    // URIs are https://DOMAIN/satchel/…), never as a link target.
    let lower = page.to_ascii_lowercase();
    for forbidden in [
        "<script",
        "src=",
        "<link",
        "@import",
        "url(",
        "href=\"http",
        "href='http",
        "href=http",
        "action=",
        "<form",
        "<iframe",
        "<object",
        "<embed",
    ] {
        assert!(!lower.contains(forbidden), "page contains {forbidden}");
    }
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

// ---------------------------------------------------------------------------
// --connect against a real rustls server on 127.0.0.1

struct TlsServer {
    addr: String,
}

impl TlsServer {
    /// Serves `chain` with `key_pem` to every connection on 127.0.0.1:0,
    /// optionally insisting on a client certificate (which the audit never
    /// sends). Socket timeouts bound every connection, so no test hangs.
    fn start(chain: Vec<Vec<u8>>, key_pem: &str, require_client_cert: bool) -> TlsServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = satchel_pki::tls::provider();
        let certs: Vec<CertificateDer<'static>> =
            chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(certs[certs.len() - 1].clone()).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(builder.with_single_cert(certs, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut sock) = stream else { return };
                let _ = sock.set_read_timeout(Some(StdDuration::from_secs(10)));
                let _ = sock.set_write_timeout(Some(StdDuration::from_secs(10)));
                let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
                    return;
                };
                let mut tls = rustls::Stream::new(&mut conn, &mut sock);
                let mut buf = [0u8; 64];
                let _ = tls.read(&mut buf);
                let _ = tls.flush();
            }
        });
        TlsServer { addr }
    }
}

#[test]
fn connect_audits_the_chain_a_live_server_presents() {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    // A server certificate with a wrong EKU, expiring soon: both must be
    // reported although the certificate is nowhere in the directory.
    let mut p = leaf_params(LeafKind::Server);
    p.extended_key_usages
        .push(ExtendedKeyUsagePurpose::ClientAuth);
    p.not_after = now() + Duration::days(5);
    let leaf = ca.sign(&p);
    let server = TlsServer::start(
        vec![leaf.der.clone(), ca.der.clone()],
        &leaf.key.serialize_pem(),
        false,
    );

    let chain = audit::connect::fetch_chain(&server.addr, audit::connect::CONNECT_TIMEOUT).unwrap();
    assert_eq!(chain.certificates, vec![leaf.der.clone(), ca.der.clone()]);

    let mut input = AuditInput::new(d.path());
    input.presented = Some(chain);
    let r = audit::audit(&input).unwrap();
    let ids = ids_for(&r, &leaf.sha256());
    assert!(
        ids.contains(&"e_server_eku_not_server_auth_only"),
        "{ids:?}"
    );
    assert!(ids.contains(&"w_expiring_soon"), "{ids:?}");
    let entry = r
        .certificates
        .iter()
        .find(|c| c.sha256 == leaf.sha256())
        .unwrap();
    assert_eq!(entry.sources, [format!("tls://{}#0", server.addr)]);
    // The CA the server sent is the audited CA, seen in both places.
    assert_eq!(r.certificates[0].sources.len(), 2);
    assert_eq!(r.presented.as_ref().unwrap().address, server.addr);

    // Through the CLI too.
    let (code, text, err) = run(d.path(), &["--connect", &server.addr]);
    assert_eq!(code, EXIT_FINDINGS, "{err}");
    assert!(text.contains("e_server_eku_not_server_auth_only"));
}

#[test]
fn connect_records_the_chain_of_a_server_that_demands_a_client_certificate() {
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&leaf_params(LeafKind::Server));
    let server = TlsServer::start(
        vec![leaf.der.clone(), ca.der.clone()],
        &leaf.key.serialize_pem(),
        true,
    );
    let chain = audit::connect::fetch_chain(&server.addr, audit::connect::CONNECT_TIMEOUT).unwrap();
    assert_eq!(chain.certificates[0], leaf.der);
}

/// Always answers with one certified key, even a mismatched one.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[test]
fn connect_refuses_a_server_without_the_key_of_its_certificate() {
    // The recording verifier accepts any chain but still checks the
    // handshake signature: presenting someone else's certificate fails.
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&leaf_params(LeafKind::Server));
    let other = ca.sign(&leaf_params(LeafKind::Server));
    // rustls refuses a mismatched key at configuration time, so the server
    // signs with `other`'s key while presenting `leaf`: build it by hand.
    let provider = satchel_pki::tls::provider();
    let key = rustls::pki_types::PrivateKeyDer::try_from(other.key.serialize_der()).unwrap();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(
        vec![rustls::pki_types::CertificateDer::from(leaf.der.clone())],
        signing_key,
    ));
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified))),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            let _ = sock.set_read_timeout(Some(StdDuration::from_secs(10)));
            if let Ok(mut conn) = rustls::ServerConnection::new(config) {
                let _ = conn.complete_io(&mut sock);
                let _ = conn.complete_io(&mut sock);
            }
        }
    });
    let r = audit::connect::fetch_chain(&addr, StdDuration::from_secs(10));
    let e = r.expect_err("a server without the certificate's key is refused");
    assert!(e.to_string().contains("did not prove"), "{e}");
}

// ---------------------------------------------------------------------------
// Hostile directory contents

#[test]
fn hostile_directory_contents_become_findings_not_failures() {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    let leaf = ca.sign(&leaf_params(LeafKind::Admin));
    // Oversized file.
    d.write(
        "big.pem",
        vec![b'A'; usize::try_from(audit::limits::MAX_FILE_BYTES).unwrap() + 1],
    );
    // Empty file, truncated PEM, bad base64, DER garbage, a CRL that is not one.
    d.write("empty.crt", b"");
    d.write("trunc.pem", "-----BEGIN CERTIFICATE-----\nMIIB");
    d.write(
        "b64.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    d.write("garbage.der", [0x30u8, 0x03, 0x02, 0x01]);
    d.write("fake.crl", b"not a crl");
    // A certificate with trailing bytes after it.
    let mut trailing = leaf.der.clone();
    trailing.extend_from_slice(b"junk");
    d.write("trailing.der", trailing);
    // A private key beside a certificate in one PEM: only the certificate is read.
    d.write(
        "bundle.pem",
        format!("{}{}", leaf.key.serialize_pem(), leaf.pem),
    );
    // A certificate hidden in a file named like a CRL is still audited.
    d.write("hidden.crl", &leaf.der);
    // Deep nesting beyond the walk's limit.
    let deep = (0..audit::limits::MAX_DEPTH + 2)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    d.write(&format!("{deep}/deep.crt"), &leaf.pem);
    // A symbolic link to a file outside the directory is not followed.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("outside.crt");
    std::fs::write(&target, ca.sign(&leaf_params(LeafKind::Server)).pem).unwrap();
    std::os::unix::fs::symlink(&target, d.path().join("link.crt")).unwrap();

    let r = d.audit();
    let problems: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.id == "e_cert_unparseable")
        .map(|f| f.message.as_str())
        .collect();
    for needle in [
        "empty.crt",
        "trunc.pem",
        "b64.pem",
        "garbage.der",
        "fake.crl",
        "trailing.der",
    ] {
        assert!(
            problems.iter().any(|m| m.contains(needle)),
            "{needle} not reported: {problems:?}"
        );
    }
    let message_of = |id: &str| -> Vec<&str> {
        r.findings
            .iter()
            .filter(|f| f.id == id)
            .map(|f| f.message.as_str())
            .collect()
    };
    let not_read = message_of("w_file_not_read");
    assert!(not_read
        .iter()
        .any(|m| m.starts_with("big.pem: larger than")));
    assert!(not_read.iter().any(|m| m.contains("deeper than")));
    assert_eq!(
        message_of("n_symlink_not_followed"),
        ["link.crt is a symbolic link; not followed"]
    );
    // The CA and the one admin certificate, seen in bundle.pem and hidden.crl.
    assert_eq!(r.certificates.len(), 2, "{}", r.to_text());
    let admin = r
        .certificates
        .iter()
        .find(|c| c.sha256 == leaf.sha256())
        .unwrap();
    assert_eq!(admin.sources, ["bundle.pem", "hidden.crl"]);
    // Nothing of the private key reaches the report.
    let json = r.to_json();
    assert!(!json.contains("PRIVATE KEY"));
}

#[test]
fn unreadable_directory_is_an_error_not_a_finding() {
    let t = tempfile::tempdir().unwrap();
    let e = audit::audit(&AuditInput::new(t.path().join("absent"))).unwrap_err();
    assert!(e.to_string().contains("absent"));
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(audit::audit(&AuditInput::new(&file)).is_err());
}

#[test]
fn every_finding_has_fix_hint_and_statuses_are_right() {
    let ca = Ca::new("Audit Test CA");
    let mut expired = leaf_params(LeafKind::Admin);
    expired.not_before = now() - Duration::days(40);
    expired.not_after = now() - Duration::days(10);
    let mut future = leaf_params(LeafKind::Admin);
    future.not_before = now() + Duration::days(1);
    future.not_after = now() + Duration::days(20);
    let revoked = ca.sign(&leaf_params(LeafKind::Site));
    let d = Dir::new();
    d.write("ca.crt", &ca.pem);
    let serial = {
        let c = satchel_pki::audit::Cert::from_der(&revoked.der).unwrap();
        c.serial_raw
    };
    d.write("crl.pem", ca.crl(5, now() + Duration::days(7), &[&serial]));
    let e = ca.sign(&expired);
    let f = ca.sign(&future);
    d.write("certs/expired.crt", &e.pem);
    d.write("certs/future.crt", &f.pem);
    d.write("certs/revoked.crt", &revoked.pem);
    let r = d.audit();
    let status = |l: &Leaf| {
        r.certificates
            .iter()
            .find(|c| c.sha256 == l.sha256())
            .unwrap()
            .status
    };
    use satchel_pki::audit::Status;
    assert_eq!(status(&e), Status::Expired);
    assert_eq!(status(&f), Status::NotYetValid);
    assert_eq!(status(&revoked), Status::Revoked);
    assert_eq!(r.crl.number, Some(5));
    let days = r
        .certificates
        .iter()
        .find(|c| c.sha256 == e.sha256())
        .unwrap()
        .days_left;
    assert!((-11..=-10).contains(&days), "{days}");
}

#[test]
fn inventory_agrees_with_openssl() {
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&leaf_params(LeafKind::Host));
    let d = Dir::with_ca(&ca);
    d.write("certs/host.crt", &leaf.pem);
    let r = d.audit();
    let c = r
        .certificates
        .iter()
        .find(|c| c.sha256 == leaf.sha256())
        .unwrap();
    let openssl_out = |args: &[&str], input: &[u8]| -> String {
        let mut child = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is installed (tests/run installs it)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let fp = openssl_out(
        &["x509", "-noout", "-fingerprint", "-sha256"],
        leaf.pem.as_bytes(),
    );
    let fp = fp
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(c.sha256, fp);
    let serial = openssl_out(&["x509", "-noout", "-serial"], leaf.pem.as_bytes());
    assert_eq!(
        c.serial,
        serial.trim().trim_start_matches("serial=").to_lowercase()
    );
    let pubkey = openssl_out(&["x509", "-noout", "-pubkey"], leaf.pem.as_bytes());
    let spki = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            ch.stdin.take().unwrap().write_all(pubkey.as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap()
        .stdout;
    use sha2::Digest;
    assert_eq!(c.spki_sha256, hex::encode(sha2::Sha256::digest(&spki)));
    let text = openssl_out(&["x509", "-noout", "-text"], leaf.pem.as_bytes());
    assert!(text.contains(&format!("URI:https://satchel.test/satchel/host/{MAC}")));
    assert_eq!(c.scope.as_deref(), Some(format!("host/{MAC}").as_str()));
}

#[test]
fn mutated_certificates_never_break_the_audit() {
    // Every single-byte change of a real certificate either parses (and is
    // linted) or is refused; none panics. Deterministic: no RNG needed.
    let ca = Ca::new("Audit Test CA");
    let leaf = ca.sign(&leaf_params(LeafKind::Host));
    let ctx = satchel_pki::audit::lints::Context {
        now: now(),
        policy: Default::default(),
    };
    let mut parsed = 0;
    for i in 0..leaf.der.len() {
        for v in [
            0x00u8,
            0xff,
            leaf.der[i] ^ 0x01,
            leaf.der[i].wrapping_add(0x80),
        ] {
            let mut der = leaf.der.clone();
            der[i] = v;
            if let Ok(c) = satchel_pki::audit::Cert::from_der(&der) {
                parsed += 1;
                let _ = satchel_pki::audit::lints::lint_cert(&c, &ctx);
                let _ = c
                    .signature_verifies_with(&satchel_pki::audit::Cert::from_der(&ca.der).unwrap());
            }
        }
        // Truncations too.
        let _ = satchel_pki::audit::Cert::from_der(&leaf.der[..i]);
    }
    assert!(parsed > 0);
    // And a directory of them audits without error.
    let d = Dir::with_ca(&ca);
    for i in (0..leaf.der.len()).step_by(7) {
        let mut der = leaf.der.clone();
        der[i] ^= 0x55;
        d.write(&format!("certs/m{i}.der"), der);
    }
    let r = d.audit();
    assert!(r.findings.iter().any(|f| f.id == "e_cert_unparseable"));
}

#[test]
fn too_many_certificates_in_one_file_are_cut_off_and_reported() {
    let ca = Ca::new("Audit Test CA");
    let d = Dir::with_ca(&ca);
    let leaf = ca.sign(&leaf_params(LeafKind::Admin));
    d.write(
        "certs/many.pem",
        leaf.pem.repeat(audit::limits::MAX_CERTS_PER_FILE + 1),
    );
    let r = d.audit();
    assert!(r
        .findings
        .iter()
        .any(|f| f.id == "w_file_not_read" && f.message.starts_with("certs/many.pem: more than")));
    // The same certificate a thousand times is one inventory entry.
    let c = r
        .certificates
        .iter()
        .find(|c| c.sha256 == leaf.sha256())
        .unwrap();
    assert_eq!(c.sources.len(), audit::limits::MAX_CERTS_PER_FILE);
}
