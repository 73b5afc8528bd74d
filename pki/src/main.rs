//! `satchel-pki`: the CA command line.
fn main() {}
