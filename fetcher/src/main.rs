//! `satchel-fetch`: the initrd fetcher.
fn main() {}
