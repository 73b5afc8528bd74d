//! `satchel-server`: runs the bundle server.
fn main() {}
