//! `satchel-bundle`: the offline admin CLI for satchel bundles.
fn main() {}
