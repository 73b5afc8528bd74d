//! Randomised inputs for every parser the server exposes to the network or
//! the operator: none may panic, whatever the bytes. Seeded, so a failure
//! reproduces.

use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::routes::admin::parse_audit_query;
use crate::routes::path;
use crate::routes::reports::parse_report;

/// Inputs per parser.
const CASES: usize = 20_000;

/// Pieces that make random inputs look like the real thing often enough to
/// get past the first check.
const PIECES: &[&str] = &[
    "/",
    "v1",
    "boot",
    "bundles",
    "host",
    "site",
    "uploads",
    "reports",
    "nodes",
    "audit",
    "ca",
    "crl",
    "healthz",
    "aa-bb-cc-dd-ee-ff",
    "AA:BB",
    "dc1",
    "..",
    "%2e",
    "\0",
    "é",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "status",
    "ok",
    "report_id",
    "serials",
    "host/aa-bb-cc-dd-ee-ff",
    "1",
    "-1",
    "1e999",
    "null",
    "true",
    "=",
    "&",
    "after",
    "limit",
    "listen",
    " ",
    "\n",
    "#",
    "max_connections",
    "\"127.0.0.1:1\"",
    "[x]",
];

fn random_input(rng: &mut impl Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.gen_range(0..24) {
        if rng.gen_bool(0.7) {
            out.extend_from_slice(PIECES[rng.gen_range(0..PIECES.len())].as_bytes());
        } else {
            for _ in 0..rng.gen_range(1..6) {
                out.push(rng.gen());
            }
        }
    }
    out
}

#[test]
fn no_parser_panics_on_random_input() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x05a7_c4e1);
    let mac = satchel_names::Mac::from_octets([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    let methods = [
        http::Method::GET,
        http::Method::PUT,
        http::Method::POST,
        http::Method::DELETE,
    ];
    for _ in 0..CASES {
        let bytes = random_input(&mut rng);
        let text = String::from_utf8_lossy(&bytes);
        for m in &methods {
            if let Ok(p) = path::parse(m, &text) {
                // Whatever parsed is a short absolute path naming its MAC canonically.
                assert!(text.starts_with('/') && text.len() <= path::MAX_PATH_BYTES);
                if let Some(mac) = p.route.host_of_interest() {
                    assert!(text.contains(&mac.to_string()), "{text:?}");
                }
            }
        }
        let _ = parse_report(&bytes, mac);
        let _ = parse_audit_query(Some(&text));
        let _ = Config::from_parts(&text, &[]);
        let _ = Config::from_parts("", &[("listen".into(), text.to_string())]);
    }
}
