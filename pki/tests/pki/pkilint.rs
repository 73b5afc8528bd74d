//! What an independent linter says: DigiCert's pkilint (PyPI `pkilint`) on
//! every certificate kind `satchel-pki` issues, its CRL and the CA→leaf
//! chains, at WARNING level, with 0 findings; and crafted certificates of
//! the older scope URI forms, which pkilint and `satchel-pki audit` must
//! both report.
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
        ("server", &server),
        ("host", &host),
        ("host-with-site", &host_site),
        ("site", &site_cert),
        ("admin", &admin_cert),
    ];
    let mut report = Vec::new();
    let mut unexpected = Vec::new();
    let ca_findings = lint_cert(&ca_file);
    report.push(format!("ca: {}", ca_findings.len()));
    unexpected.extend(ca_findings.into_iter().map(|f| ("ca".to_string(), f)));
    for (name, issued) in leaves {
        let f: PathBuf = write(dir, &format!("{name}.pem"), issued.cert_pem.as_bytes());
        let findings = lint_cert(&f);
        report.push(format!("{name}: {}", findings.len()));
        unexpected.extend(findings.into_iter().map(|x| (name.to_string(), x)));
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
fn the_old_scope_forms_are_reported_by_pkilint_and_by_our_audit() {
    let (tmp, ca) = test_ca();
    // The authority-less form of the previous release: conforming to the
    // RFCs, but pkilint rejects the scheme, and servers refuse it.
    let (pem, _key, _der) = crafted(
        &ca,
        vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
        &["satchel:host:52-54-00-00-00-01", "satchel:site:dc1"],
    );
    let f = write(tmp.path(), "colon.pem", pem.as_bytes());
    let theirs = lint_cert(&f);
    assert!(
        theirs
            .iter()
            .any(|x| x.code == "pkix.invalid_uri_syntax" && x.severity == "ERROR"),
        "pkilint did not report the satchel:KIND:NAME form: {theirs:?}"
    );
    let mut input = AuditInput::new(ca.dir());
    input.extra.push(f);
    let ids = audit::audit(&input).unwrap().finding_ids();
    assert!(ids.contains(&"e_scope_uri_old_form"), "{ids:?}");

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
