//! `satchel-tests`: end-to-end tests that start satchel's real binaries.
