//! The manifest parser (bounded JSON, strict fields): any bytes give a
//! manifest or an error, never a panic; a parsed manifest re-serialises to
//! bytes that parse to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel_format::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let again = serde_json::to_vec(&m).expect("a parsed manifest serialises");
        let back = Manifest::parse(&again).expect("a re-serialised manifest parses");
        assert_eq!(back, m);
    }
});
