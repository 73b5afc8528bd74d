//! The static fetcher is the same binary whether it is built on its own
//! (`cargo build -p satchel-fetch`) or with the workspace (`cargo build --bin
//! satchel-fetch` from the root, `--workspace`): cargo compiles every crate
//! of its build graph with the same features both ways. A workspace build
//! turns on, for each dependency, the union of what all members ask for;
//! `fetcher/Cargo.toml` asks for that union itself. When another member
//! starts asking for more, this test names the crate and its features.
//!
//! It compares cargo's resolution (`cargo tree`, seconds), not two builds of
//! the binary (minutes); BENCHMARKS.md records that the files are identical.

use std::collections::BTreeSet;
use std::process::Command;

/// Every `name version [features]` line of satchel-fetch's build graph as
/// `cargo tree` resolves it with `selection`.
fn fetcher_graph(selection: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "--edges",
            "normal,build",
            "--prefix",
            "depth",
            "--no-dedupe",
            "--format",
            "{p} [{f}]",
            selection,
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {selection}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let mut graph = BTreeSet::new();
    let mut in_fetcher = false;
    for line in text.lines() {
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
        let depth = &line[..line.len() - rest.len()];
        if depth == "0" {
            in_fetcher = rest.starts_with("satchel-fetch ");
        }
        if in_fetcher && !rest.is_empty() {
            graph.insert(rest.trim_end_matches(" (*)").to_string());
        }
    }
    graph
}

#[test]
fn the_fetcher_is_built_with_the_same_features_with_and_without_p() {
    let alone = fetcher_graph("--package=satchel-fetch");
    let workspace = fetcher_graph("--workspace");
    assert!(
        alone.iter().any(|l| l.starts_with("tokio ")),
        "the graph was not read: {alone:?}"
    );
    let only_workspace: Vec<_> = workspace.difference(&alone).collect();
    let only_alone: Vec<_> = alone.difference(&workspace).collect();
    assert!(
        only_workspace.is_empty() && only_alone.is_empty(),
        "a workspace build compiles the fetcher's dependencies with other features \
         than `-p satchel-fetch` (so it ships another binary); ask for the union in \
         fetcher/Cargo.toml.\nworkspace build: {only_workspace:#?}\n-p satchel-fetch: {only_alone:#?}"
    );
}
