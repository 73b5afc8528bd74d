//! The audit report as one self-contained HTML page.
//!
//! Invariants: the page loads nothing (inline CSS, no scripts, no images, no
//! links to anywhere), and every piece of text taken from a certificate,
//! file name or message goes through [`escape`] — a certificate's subject is
//! attacker-chosen text and must not become markup.

use std::fmt::Write as _;

use super::report::Report;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%;margin-bottom:2em}\
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:0.9em}\
th{background:#f0f0f0}code{font-size:0.85em;word-break:break-all}\
.error{background:#fdd}.warning{background:#ffd}.notice{background:#eef}\
.valid{color:#060}.expired,.revoked,.unknown-to-ledger,.not-yet-valid{color:#a00;font-weight:bold}";

/// Renders the page.
pub fn render(r: &Report) -> String {
    let e = escape;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>satchel-pki audit of {}</title><style>{STYLE}</style></head><body>\n",
        e(&r.pki_dir)
    );
    let _ = writeln!(
        o,
        "<h1>satchel-pki audit</h1><p>PKI directory <code>{}</code>, generated {} (schema {}).</p>",
        e(&r.pki_dir),
        e(&r.generated_at),
        e(r.schema)
    );
    if let Some(p) = &r.presented {
        let _ = writeln!(
            o,
            "<p>Live server <code>{}</code> presented {} certificate(s).</p>",
            e(&p.address),
            p.chain.len()
        );
    }
    let _ = writeln!(
        o,
        "<p><strong>{}</strong> certificates; <strong>{}</strong> errors, <strong>{}</strong> warnings, <strong>{}</strong> notices.</p>",
        r.summary.certificates, r.summary.errors, r.summary.warnings, r.summary.notices
    );

    let _ = writeln!(o, "<h2>Findings</h2>");
    if r.findings.is_empty() {
        let _ = writeln!(o, "<p>None.</p>");
    } else {
        let _ = writeln!(
            o,
            "<table><tr><th>severity</th><th>lint</th><th>certificate</th><th>what</th><th>fix</th></tr>"
        );
        for f in &r.findings {
            let _ = writeln!(
                o,
                "<tr class=\"{sev}\"><td>{sev}</td><td><code>{}</code></td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                e(f.id),
                f.subject.as_deref().map(e).unwrap_or_default(),
                f.certificate
                    .as_deref()
                    .map(|c| format!("<br><code>{}</code>", e(c)))
                    .unwrap_or_default(),
                e(&f.message),
                e(f.hint),
                sev = f.severity.as_str()
            );
        }
        let _ = writeln!(o, "</table>");
    }

    let _ = writeln!(o, "<h2>Certificates</h2>");
    let _ = writeln!(
        o,
        "<table><tr><th>status</th><th>kind</th><th>subject / issuer</th><th>serial</th><th>SANs / scope</th>\
         <th>key</th><th>validity</th><th>sha256 / spki sha256</th><th>found in</th></tr>"
    );
    for c in &r.certificates {
        let status = c.status.as_str();
        let _ = writeln!(
            o,
            "<tr><td class=\"{status}\">{status}</td><td>{}{}</td><td>{}<br><small>issuer {}</small></td>\
             <td><code>{}</code></td><td>{}{}</td><td>{} {}{}</td><td>{} .. {}<br>{} days left</td>\
             <td><code>{}</code><br><code>{}</code></td><td>{}</td></tr>",
            c.kind,
            if c.audited_ca { " (audited CA)" } else { "" },
            e(&c.subject),
            e(&c.issuer),
            e(&c.serial),
            c.sans.iter().map(|s| e(s)).collect::<Vec<_>>().join("<br>"),
            c.scope
                .as_deref()
                .map(|s| format!("<br><strong>scope {}</strong>", e(s)))
                .unwrap_or_default(),
            e(&c.key.key_type),
            c.key.bits,
            c.key.curve.as_deref().map(|s| format!(" {}", e(s))).unwrap_or_default(),
            e(&c.not_before),
            e(&c.not_after),
            c.days_left,
            e(&c.sha256),
            e(&c.spki_sha256),
            c.sources.iter().map(|s| e(s)).collect::<Vec<_>>().join("<br>")
        );
    }
    let _ = writeln!(o, "</table>");

    let _ = writeln!(o, "<h2>Ledger</h2><p><code>{}</code>: ", e(&r.ledger.path));
    if r.ledger.present {
        let _ = write!(
            o,
            "{} entries, hash chain {}",
            r.ledger.entries,
            match r.ledger.chain_ok {
                Some(true) => "verifies",
                Some(false) => "<strong>BROKEN</strong>",
                None => "not checked",
            }
        );
    } else {
        let _ = write!(o, "<strong>absent</strong>");
    }
    if let Some(err) = &r.ledger.error {
        let _ = write!(o, " — {}", e(err));
    }
    let _ = writeln!(o, "</p>");

    let _ = writeln!(o, "<h2>CRL</h2>");
    match &r.crl.source {
        None => {
            let _ = writeln!(o, "<p><strong>No CRL signed by the CA.</strong></p>");
        }
        Some(src) => {
            let _ = writeln!(
                o,
                "<p><code>{}</code>: number {}, thisUpdate {}, nextUpdate {} ({}), revoked serials: {}</p>",
                e(src),
                r.crl.number.map(|n| n.to_string()).unwrap_or("none".into()),
                e(r.crl.this_update.as_deref().unwrap_or("?")),
                e(r.crl.next_update.as_deref().unwrap_or("none")),
                if r.crl.fresh == Some(true) { "fresh" } else { "<strong>stale</strong>" },
                if r.crl.revoked_serials.is_empty() {
                    "none".to_string()
                } else {
                    r.crl
                        .revoked_serials
                        .iter()
                        .map(|s| format!("<code>{}</code>", e(s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
    }
    let _ = writeln!(o, "</body></html>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
