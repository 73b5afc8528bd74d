//! Mutated archives: random edits to the headers of a valid payload (with
//! checksums fixed up, so the edits reach the parser) must either apply or
//! be refused with the root and its surroundings unchanged — never panic,
//! never write outside, never leave half a payload or a staging directory.

mod overlay_support;

use overlay_support::{assert_no_staging, set_checksum, Fixture, Tar, BLOCK};
use proptest::prelude::*;
use satchel_overlay::{self as extract, Options};

/// A payload touching most code paths: dirs, files, links, PAX and GNU
/// extensions, a whiteout, and paths that exist in the fixture's root.
fn base() -> Vec<u8> {
    Tar::new()
        .dir("etc")
        .file("etc/hostname", b"mutant\n")
        .file("etc/.wh.motd", b"")
        .symlink("etc/link", "hostname")
        .hardlink("etc/hard", "etc/hostname")
        .pax(&[("path", "var/lib/état".as_bytes()), ("mtime", b"1.5")])
        .file("var/lib/x", b"data data data")
        .gnu_long(b'L', format!("opt/{}", "n".repeat(150)).as_bytes())
        .file("opt/short", b"long")
        .dir("new")
        .file("new/f", &[9u8; 700])
        .end()
}

/// Where each header block starts.
fn header_offsets(t: &[u8]) -> Vec<usize> {
    (0..t.len() / BLOCK)
        .map(|i| i * BLOCK)
        .filter(|&o| &t[o + 257..o + 262] == b"ustar")
        .collect()
}

#[derive(Clone, Debug)]
enum Edit {
    /// Set one header byte (checksum fixed afterwards).
    Byte {
        header: prop::sample::Index,
        at: usize,
        value: u8,
    },
    /// Copy `len` bytes of one header over another (same field offsets).
    Splice {
        from: prop::sample::Index,
        to: prop::sample::Index,
        at: usize,
        len: usize,
    },
    /// Cut the stream.
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 0usize..500, any::<u8>())
            .prop_map(|(header, at, value)| Edit::Byte { header, at, value }),
        2 => (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0usize..500, 1usize..100)
            .prop_map(|(from, to, at, len)| Edit::Splice { from, to, at, len }),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn mutate(mut t: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let headers = header_offsets(&t);
        if headers.is_empty() {
            break;
        }
        match e {
            Edit::Byte { header, at, value } => {
                let o = *header.get(&headers);
                if (148..156).contains(at) {
                    continue;
                }
                t[o + at] = *value;
                fix(&mut t, o);
            }
            Edit::Splice { from, to, at, len } => {
                let (f, o) = (*from.get(&headers), *to.get(&headers));
                let end = (at + len).min(500);
                let chunk = t[f + at..f + end].to_vec();
                t[o + at..o + end].copy_from_slice(&chunk);
                fix(&mut t, o);
            }
            Edit::Truncate(i) => {
                let n = i.index(t.len());
                t.truncate(n);
            }
        }
    }
    t
}

fn fix(t: &mut [u8], o: usize) {
    let mut block = [0u8; BLOCK];
    block.copy_from_slice(&t[o..o + BLOCK]);
    set_checksum(&mut block);
    t[o..o + BLOCK].copy_from_slice(&block);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_archives_apply_whole_or_not_at_all(edits in prop::collection::vec(edit(), 1..4)) {
        let t = mutate(base(), &edits);
        let fx = Fixture::new();
        let before = fx.snapshot();
        let checked = extract::check_archive(&t[..], &Options::default());
        match extract::apply(&t[..], &fx.root, &Options::default()) {
            Ok(applied) => {
                // Applied: the listing agrees with the check, and nothing
                // outside the root changed.
                let summary = checked.expect("apply accepted what check_archive refused");
                prop_assert_eq!(summary.entries.len(), applied.summary.entries.len());
                let after = fx.snapshot();
                for (path, node) in &before {
                    if !path.starts_with("root") {
                        prop_assert_eq!(Some(node), after.get(path));
                    }
                }
                prop_assert!(after.keys().all(|p| p.starts_with("root") || before.contains_key(p)));
            }
            Err(_) => prop_assert!(before == fx.snapshot(), "refused but the tree changed"),
        }
        assert_no_staging(&fx.root);
    }
}

#[test]
fn the_unmutated_base_applies() {
    let fx = Fixture::new();
    extract::apply(&base()[..], &fx.root, &Options::default()).expect("base payload applies");
    assert!(fx.root.join("var/lib/état").is_file());
    assert!(!fx.root.join("etc/motd").exists());
}
