//! What an independent linter says: DigiCert's pkilint (PyPI `pkilint`) on
//! every certificate kind `satchel-pki` issues, its CRL and the CA→leaf
//! chains, at WARNING level; and a crafted certificate of the old scope URI
//! form, which pkilint and `satchel-pki audit` must both report.
//!
//! pkilint is required, never skipped: without its commands on PATH the
//! test fails and says how to install it (`python3 -m pip install pkilint`).

use std::path::{Path, PathBuf};
use std::process::Command;

use satchel_pki::audit::{self, AuditInput};

use super::harness::*;
use super::tls::crafted;

const CERT_LINT: &str = "lint_pkix_cert";
const CRL_LINT: &str = "lint_crl";
const CHAIN_LINT: &str = "lint_pkix_signer_signee_cert_chain";

/// One pkilint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    code: String,
    severity: String,
    message: String,
}

fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "pkilint's `{tool}` is not on PATH; install it with `python3 -m pip install pkilint` \
         (this test lints our certificates with it and is never skipped)"
    );
}

/// Runs a pkilint command with `-s WARNING -f JSON` and returns its findings.
fn pkilint(tool: &str, args: &[&str], files: &[&Path]) -> Vec<Finding> {
    require(tool);
    let mut cmd = Command::new(tool);
    cmd.arg("lint")
        .args(args)
        .args(["-s", "WARNING", "-f", "JSON"]);
    cmd.args(files);
    let out = run(&mut cmd);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{tool} printed no JSON ({e}): {}", text(&out)));
    let mut found = Vec::new();
    for r in v["results"].as_array().expect("results") {
        for d in r["finding_descriptions"].as_array().expect("findings") {
            found.push(Finding {
                code: d["code"].as_str().unwrap_or_default().to_string(),
                severity: d["severity"].as_str().unwrap_or_default().to_string(),
                message: d["message"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    found
}

fn lint_cert(f: &Path) -> Vec<Finding> {
    pkilint(CERT_LINT, &[], &[f])
}

/// pkilint 0.13 checks a URI with python `validators.url` 0.22 (pinned),
/// which accepts only the schemes ftp, ftps, git, http, https, rtsp, sftp,
/// ssh and telnet, always with a host: every URI of any other scheme gets
/// `pkix.invalid_uri_syntax`, RFC 3986 and RFC 5280 §4.2.1.6 conforming or
/// not (`urn:`, `spiffe://`, our `satchel:host:…`). This is the one finding
/// a client certificate may still carry, and only on a well-formed
/// `satchel:KIND:NAME` scope URI; `e_san_uri_syntax` and
/// `e_san_uri_authority_not_fqdn` of our own audit check the RFC rules.
fn is_scheme_allow_list_finding(f: &Finding) -> bool {
    f.code == "pkix.invalid_uri_syntax"
        && ["satchel:host:", "satchel:site:", "satchel:admin:"]
            .iter()
            .any(|p| f.message.contains(&format!("\"{p}")))
}

#[test]
fn every_kind_the_ca_issues_passes_pkilint() {
    let (tmp, ca) = test_ca();
    let dir = tmp.path();
    let ca_file = write(dir, "ca.pem", ca.cert_pem().as_bytes());
    let server = ca
        .issue_server(
            &["boot1.example.net".into()],
            &["192.0.2.10".parse().unwrap()],
            None,
        )
        .unwrap();
    let host = ca.issue_host(mac("52-54-00-00-00-01"), None, None).unwrap();
    let host_site = ca
        .issue_host(mac("52-54-00-00-00-02"), Some(site("dc1")), None)
        .unwrap();
    let site_cert = ca.issue_site(site("dc1"), None).unwrap();
    let admin_cert = ca.issue_admin(admin("alice"), None).unwrap();
    ca.revoke(&host.serial_hex, satchel_pki::ca::Reason::Superseded)
        .unwrap();
    let crl = ca.crl(None).unwrap();
    let crl_file = write(dir, "crl.pem", crl.pem.as_bytes());

    let leaves = [
        ("server", &server, false),
        ("host", &host, true),
        ("host-with-site", &host_site, true),
        ("site", &site_cert, true),
        ("admin", &admin_cert, true),
    ];
    let mut report = Vec::new();
    let mut unexpected = Vec::new();
    let ca_findings = lint_cert(&ca_file);
    report.push(format!("ca: {}", ca_findings.len()));
    unexpected.extend(ca_findings.into_iter().map(|f| ("ca".to_string(), f)));
    for (name, issued, client) in leaves {
        let f: PathBuf = write(dir, &format!("{name}.pem"), issued.cert_pem.as_bytes());
        let findings = lint_cert(&f);
        report.push(format!("{name}: {}", findings.len()));
        for x in findings {
            if !(client && is_scheme_allow_list_finding(&x)) {
                unexpected.push((name.to_string(), x));
            }
        }
        let chain = pkilint(CHAIN_LINT, &[], &[&ca_file, &f]);
        report.push(format!("ca->{name}: {}", chain.len()));
        unexpected.extend(chain.into_iter().map(|x| (format!("ca->{name}"), x)));
    }
    let crl_findings = pkilint(CRL_LINT, &["-t", "CRL", "-p", "PKIX"], &[&crl_file]);
    report.push(format!("crl: {}", crl_findings.len()));
    unexpected.extend(crl_findings.into_iter().map(|f| ("crl".to_string(), f)));
    eprintln!("pkilint findings at WARNING: {}", report.join(", "));
    assert!(unexpected.is_empty(), "pkilint findings: {unexpected:#?}");
}

#[test]
fn the_old_scope_form_is_reported_by_pkilint_and_by_our_audit() {
    let (tmp, ca) = test_ca();
    let (pem, _key, _der) = crafted(
        &ca,
        vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
        &["satchel://host/52-54-00-00-00-01", "satchel://site/dc1"],
    );
    let f = write(tmp.path(), "old.pem", pem.as_bytes());
    let theirs = lint_cert(&f);
    assert!(
        theirs
            .iter()
            .any(|x| x.code == "pkix.invalid_uri_syntax" && x.severity == "ERROR"),
        "pkilint did not report the old form: {theirs:?}"
    );
    let mut input = AuditInput::new(ca.dir());
    input.extra.push(f);
    let ours = audit::audit(&input).unwrap();
    let ids = ours.finding_ids();
    for id in ["e_scope_uri_old_form", "e_san_uri_authority_not_fqdn"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
}
