//! The checked-in vectors in `tests/vectors/`: every `fail_*.tar` must be
//! refused by `check_archive` and by `apply` (root unchanged), every
//! `ok_*.tar` accepted by both. They are plain files so that other tools
//! (`satchel-bundle create --from-tar`, fuzzers, other implementations) can
//! use the same cases; the name after `fail_` says the attack.

mod overlay_support;

use std::fs;
use std::path::{Path, PathBuf};

use overlay_support::Fixture;
use satchel_overlay::{self as extract, Options};

fn vectors(prefix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with(prefix) && n.to_string_lossy().ends_with(".tar")
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn fail_vectors_are_refused_everywhere() {
    let fails = vectors("fail_");
    assert!(
        fails.len() >= 20,
        "expected the checked-in fail_ vectors, found {}",
        fails.len()
    );
    for path in fails {
        let bytes = fs::read(&path).expect("read vector");
        let name = path.display();
        assert!(
            extract::check_archive(&bytes[..], &Options::default()).is_err(),
            "check_archive accepted {name}"
        );
        Fixture::new().refuses(&bytes, &Options::default(), |_| true);
    }
}

#[test]
fn ok_vectors_apply() {
    let oks = vectors("ok_");
    assert!(oks.len() >= 2, "expected the checked-in ok_ vectors");
    for path in oks {
        let bytes = fs::read(&path).expect("read vector");
        extract::check_archive(&bytes[..], &Options::default())
            .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
        let fx = Fixture::new();
        extract::apply(&bytes[..], &fx.root, &Options::default())
            .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
        assert!(fx.root.join("etc/ok.conf").is_file());
    }
}
