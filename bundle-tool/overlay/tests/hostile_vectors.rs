//! The checked-in vectors in `tests/vectors/`: every `fail_*.tar` must be
//! refused by `check_archive` and by `apply` (root unchanged) with the
//! [`ExtractError::kind`] its entry in `vectors_gen` names, every `ok_*.tar`
//! accepted by both. They are plain files so that other tools
//! (`satchel-bundle create --from-tar`, fuzzers, other implementations) can
//! use the same cases; the name after `fail_` says the attack and
//! `tests/vectors/EXPECTED` lists the expected answers. `vectors_gen`
//! builds every file; `SATCHEL_WRITE_VECTORS=1` rewrites them from it.
//!
//! [`ExtractError::kind`]: satchel_overlay::ExtractError::kind

mod overlay_support;
mod vectors_gen;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use overlay_support::Fixture;
use satchel_overlay::{self as extract, Options};
use vectors_gen::{Expect, Vector};

/// Set to `1` to rewrite `tests/vectors/` from `vectors_gen`.
const WRITE_ENV: &str = "SATCHEL_WRITE_VECTORS";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The checked-in bytes of a vector.
fn read(v: &Vector) -> Vec<u8> {
    let path = dir().join(v.file_name());
    fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with {WRITE_ENV}=1 to write it",
            path.display()
        )
    })
}

/// Replaces a file of `tests/vectors/` by a rename, so that the tests
/// reading the vectors meanwhile never see half a file.
fn write_whole(name: &str, bytes: &[u8]) {
    let tmp = dir().join(format!("{name}.new"));
    fs::write(&tmp, bytes).expect("write vector");
    fs::rename(&tmp, dir().join(name)).expect("rename vector");
}

#[test]
fn checked_in_vectors_are_what_the_generator_builds() {
    let vectors = vectors_gen::all();
    let expected = vectors_gen::expected_text(&vectors);
    let write = std::env::var_os(WRITE_ENV).is_some_and(|v| v == "1");
    if write {
        for v in &vectors {
            write_whole(&v.file_name(), &v.bytes());
        }
        write_whole("EXPECTED", expected.as_bytes());
    }

    let names: Vec<&str> = vectors.iter().map(|v| v.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        names, sorted,
        "vectors_gen::all() is sorted, without repeats"
    );

    for v in &vectors {
        assert!(
            v.name.starts_with("fail_") || v.name.starts_with("ok_"),
            "{}: a vector is fail_* or ok_*",
            v.name
        );
        assert_eq!(
            v.name.starts_with("ok_"),
            v.expect == Expect::Accepted,
            "{}: ok_* vectors and only they are accepted",
            v.name
        );
        assert!(
            read(v) == v.bytes(),
            "tests/vectors/{} differs from what vectors_gen builds; run with {WRITE_ENV}=1 \
             to rewrite it",
            v.file_name()
        );
    }

    let on_disk: BTreeSet<String> = fs::read_dir(dir())
        .expect("tests/vectors exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    let generated: BTreeSet<String> = vectors.iter().map(Vector::file_name).collect();
    assert_eq!(
        on_disk, generated,
        "every .tar in tests/vectors has an entry in vectors_gen (delete the others)"
    );

    let text = fs::read_to_string(dir().join("EXPECTED")).expect("read EXPECTED");
    assert!(
        text == expected,
        "tests/vectors/EXPECTED differs from what vectors_gen writes; run with {WRITE_ENV}=1"
    );
}

#[test]
fn fail_vectors_are_refused_everywhere() {
    let vectors = vectors_gen::all();
    let mut fails = 0;
    for v in &vectors {
        let Expect::Refused {
            check_archive,
            apply,
        } = v.expect
        else {
            continue;
        };
        fails += 1;
        let bytes = read(v);
        let name = format!("{} ({})", v.name, v.attack);
        let err = extract::check_archive(&bytes[..], &Options::default())
            .expect_err(&format!("check_archive accepted {name}"));
        assert_eq!(
            err.kind(),
            check_archive,
            "check_archive refused {name} for the wrong reason: {err}"
        );
        let err = Fixture::new().refuses(&bytes, &Options::default(), |_| true);
        assert_eq!(
            err.kind(),
            apply,
            "apply refused {name} for the wrong reason: {err}"
        );
    }
    assert!(
        fails >= 20,
        "expected the checked-in fail_ vectors, found {fails}"
    );
}

#[test]
fn ok_vectors_apply() {
    let vectors = vectors_gen::all();
    let oks: Vec<&Vector> = vectors
        .iter()
        .filter(|v| v.expect == Expect::Accepted)
        .collect();
    assert!(oks.len() >= 2, "expected the checked-in ok_ vectors");
    for v in oks {
        let bytes = read(v);
        extract::check_archive(&bytes[..], &Options::default())
            .unwrap_or_else(|e| panic!("{} refused: {e}", v.name));
        let fx = Fixture::new();
        extract::apply(&bytes[..], &fx.root, &Options::default())
            .unwrap_or_else(|e| panic!("{} refused: {e}", v.name));
        assert!(fx.root.join("etc/ok.conf").is_file());
    }
}
