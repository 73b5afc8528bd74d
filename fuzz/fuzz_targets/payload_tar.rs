//! The overlay's strict tar reader and its archive-wide rules, without a
//! disk: any bytes are accepted or refused, never a panic, and an accepted
//! archive lists no more entries than the default limit allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel_overlay::{check_archive, Options, MAX_ENTRIES};

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = check_archive(data, &Options::default()) {
        assert!(summary.entries.len() as u64 <= MAX_ENTRIES);
        assert!(summary.tar_bytes <= data.len() as u64);
    }
});
