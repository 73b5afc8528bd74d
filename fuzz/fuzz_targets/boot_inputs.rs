//! What a node reads at boot before trusting anything: the kernel command
//! line, /etc/resolv.conf, a boot index and a Retry-After header. Any input
//! gives a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel_names::{Mac, Target};
use satchel_fetch::{cmdline, discover, index, retry};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = cmdline::parse(&text);
    let _ = discover::parse_resolv_conf(&text);
    let _ = retry::parse_retry_after(&text, std::time::SystemTime::UNIX_EPOCH);
    let mine = [
        Target::Host(Mac::from_octets([2, 0, 0, 0, 0, 1])),
        "site/dc1".parse::<Target>().expect("site"),
    ];
    if let Ok(entries) = index::parse(data, &mine, 1 << 30) {
        assert!(entries
            .iter()
            .all(|e| mine.contains(&e.target) && e.size <= 1 << 30));
    }
});
