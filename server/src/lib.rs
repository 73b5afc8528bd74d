//! `satchel_server`: the mutual-TLS bundle server.
#![forbid(unsafe_code)]
