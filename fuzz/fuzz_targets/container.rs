//! The container reader (the outer tar of manifest.json, manifest.sig,
//! payload.age): any bytes give a header or an error, and reading the
//! payload member never yields more than the size its header declared.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use satchel_format::container::read_header;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, mut payload)) = read_header(data) {
        let mut buf = Vec::new();
        if payload.read_to_end(&mut buf).is_ok() {
            assert!(buf.len() as u64 <= header.payload_size);
        }
    }
});
