//! MAC addresses, site names and targets: any string parses or is refused;
//! what parses displays in canonical form and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel_names::{Mac, SiteName, Target};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Mac::parse(s) {
        let shown = m.to_string();
        assert_eq!(Mac::parse(&shown).expect("canonical MAC parses"), m);
    }
    if let Ok(n) = SiteName::parse(s) {
        assert_eq!(SiteName::parse(&n.to_string()).expect("site parses"), n);
    }
    if let Ok(t) = s.parse::<Target>() {
        assert_eq!(t.to_string().parse::<Target>().expect("target parses"), t);
    }
});
