//! The safe overlay on a real directory: whatever the tar bytes, nothing is
//! created, changed or removed outside the root (a sentinel beside the root
//! and one inside it are checked), and a refused archive leaves the root
//! exactly as it was.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use satchel_overlay::{apply, Options};

/// Every path under `dir` with its kind and contents (symlinks not followed).
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&p).ok())
            } else {
                format!("file {:?}", fs::read(&p).ok())
            };
            out.push((p.display().to_string(), what));
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().expect("tmp");
    let root = base.path().join("root");
    fs::create_dir(&root).expect("root");
    fs::write(base.path().join("outside"), b"sentinel").expect("outside");
    fs::write(root.join("inside"), b"sentinel").expect("inside");
    let before_base = snapshot(base.path());
    let before_root = snapshot(&root);
    let opts = Options {
        ownership: satchel_overlay::Ownership::Caller,
        ..Options::default()
    };
    let result = apply(data, &root, &opts);
    // Outside the root: only the root itself may differ.
    let outside: Vec<_> = snapshot(base.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&root.display().to_string()))
        .collect();
    let outside_before: Vec<_> = before_base
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&root.display().to_string()))
        .collect();
    assert_eq!(
        outside, outside_before,
        "something outside the root changed"
    );
    if result.is_err() {
        assert_eq!(
            snapshot(&root),
            before_root,
            "a refused archive changed the root"
        );
    }
});
