//! Finding the node's MAC address when `BOOTIF=` is absent: the first
//! non-loopback Ethernet interface with carrier under `<sysfs>/class/net`,
//! interfaces sorted by name.
//!
//! Reads only small sysfs attribute files (`type`, `carrier`, `address`);
//! an unreadable attribute (a down interface answers `carrier` with EINVAL)
//! means "no". It does not bring interfaces up: the initrd's network setup
//! has done that before the fetcher runs.

use std::path::Path;

use satchel_names::Mac;

/// ARPHRD_ETHER: the `type` of an Ethernet interface.
const ARPHRD_ETHER: &str = "1";
/// Most interfaces examined.
pub const MAX_INTERFACES: usize = 1024;
/// Largest attribute read, in bytes.
const MAX_ATTR_BYTES: u64 = 256;

fn attr(dir: &Path, name: &str) -> Option<String> {
    let s = satchel_names::file::read_bounded_text(&dir.join(name), MAX_ATTR_BYTES).ok()?;
    Some(s.trim().to_string())
}

/// The first interface (by name) that is Ethernet, not loopback, has
/// carrier and a valid non-zero MAC. Returns `(interface, mac)`.
pub fn first_with_carrier(sysfs: &Path) -> Option<(String, Mac)> {
    let dir = sysfs.join("class/net");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .take(MAX_INTERFACES)
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        if name == "lo" {
            continue;
        }
        let d = dir.join(&name);
        if attr(&d, "type").as_deref() != Some(ARPHRD_ETHER) {
            continue;
        }
        if attr(&d, "carrier").as_deref() != Some("1") {
            continue;
        }
        let Some(mac) = attr(&d, "address").and_then(|a| Mac::parse(&a).ok()) else {
            continue;
        };
        if mac.octets() == [0; 6] {
            continue;
        }
        return Some((name, mac));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(root: &Path, name: &str, ty: &str, carrier: Option<&str>, addr: &str) {
        let d = root.join("class/net").join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("type"), format!("{ty}\n")).expect("type");
        if let Some(c) = carrier {
            std::fs::write(d.join("carrier"), format!("{c}\n")).expect("carrier");
        }
        std::fs::write(d.join("address"), format!("{addr}\n")).expect("address");
    }

    #[test]
    fn picks_first_ethernet_with_carrier_by_name() {
        let t = tempfile::tempdir().expect("tmp");
        let r = t.path();
        iface(r, "lo", "772", Some("1"), "00:00:00:00:00:00");
        iface(r, "eth2", "1", Some("1"), "52:54:00:00:00:02");
        iface(r, "eth0", "1", Some("0"), "52:54:00:00:00:00");
        iface(r, "eth1", "1", None, "52:54:00:00:00:01");
        iface(r, "dummy0", "1", Some("1"), "00:00:00:00:00:00");
        iface(
            r,
            "ib0",
            "32",
            Some("1"),
            "80:00:02:08:fe:80:00:00:00:00:00:00:00:11:22:33:44:55:66:77",
        );
        iface(r, "bad0", "1", Some("1"), "not a mac");
        iface(r, "a_tun", "65534", Some("1"), "");
        let (name, mac) = first_with_carrier(r).expect("found");
        assert_eq!(name, "eth2");
        assert_eq!(mac.to_string(), "52-54-00-00-00-02");
        iface(r, "enp1s0", "1", Some("1"), "52:54:00:AA:00:01");
        assert_eq!(
            first_with_carrier(r).map(|x| x.0).as_deref(),
            Some("enp1s0")
        );
    }

    #[test]
    fn nothing_usable() {
        let t = tempfile::tempdir().expect("tmp");
        assert!(first_with_carrier(t.path()).is_none());
        iface(t.path(), "lo", "772", Some("1"), "00:00:00:00:00:00");
        // A huge attribute file is read only up to the limit.
        let d = t.path().join("class/net/eth0");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("type"), "1\n").expect("type");
        std::fs::write(d.join("carrier"), "1\n").expect("carrier");
        std::fs::write(d.join("address"), "a".repeat(1 << 20)).expect("address");
        assert!(first_with_carrier(t.path()).is_none());
    }
}
