//! Verification of a bundle's header and payload, in a fixed order.
//!
//! [`verify_header`] runs, in this order and stopping at the first refusal:
//! 1. the manifest was parsed with its size bound (done by
//!    [`crate::container::read_header`], which produced the [`Header`]);
//! 2. the signature, by the trusted key whose id the manifest names;
//! 3. the target;
//! 4. the expiry, against `max(now, clock_floor)`;
//! 5. the serial, against the caller's floor.
//!
//! [`verify_payload`] (or [`PayloadCheck`] for callers that stream) then
//! checks the `payload.age` bytes: size and sha256. Only after both does
//! anything decrypt (see [`crate::open`]).
//!
//! Everything here is pure but for reading the payload; the clock and the
//! floors come from the caller.

use std::io::{self, Read};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::container::Header;
use crate::error::VerifyError;
use crate::keys::VerifyingKey;
use crate::manifest::{format_time, Manifest};
use satchel_names::Target;

/// What a bundle is checked against.
#[derive(Clone, Debug)]
pub struct Checks {
    /// The signing keys trusted to sign bundles.
    pub trusted: Vec<VerifyingKey>,
    /// The target the bundle must be for. `None` accepts any target: only
    /// for admin tools that check a bundle's signature, never for a node.
    pub target: Option<Target>,
    /// The current time.
    pub now: OffsetDateTime,
    /// A time the clock cannot be before (a boot image's build time), so a
    /// node whose clock is reset to 1970 still refuses expired bundles.
    pub clock_floor: Option<OffsetDateTime>,
    /// The lowest serial accepted (0 accepts all).
    pub serial_floor: u64,
}

impl Checks {
    /// Checks against `trusted` only: any target, the system clock, no floors.
    pub fn new(trusted: Vec<VerifyingKey>) -> Self {
        Checks {
            trusted,
            target: None,
            now: OffsetDateTime::now_utc(),
            clock_floor: None,
            serial_floor: 0,
        }
    }

    /// The time expiry is checked against: `max(now, clock_floor)`.
    pub fn effective_now(&self) -> OffsetDateTime {
        match self.clock_floor {
            Some(floor) if floor > self.now => floor,
            _ => self.now,
        }
    }
}

/// Checks signature, target, expiry and serial, in that order. Returns the
/// trusted key that signed.
pub fn verify_header<'a>(
    header: &Header,
    checks: &'a Checks,
) -> Result<&'a VerifyingKey, VerifyError> {
    let m = &header.manifest;
    let key_id = m.signer.to_string();
    let key = checks
        .trusted
        .iter()
        .find(|k| k.key_id() == m.signer)
        .ok_or_else(|| VerifyError::UntrustedSigner {
            key_id: key_id.clone(),
        })?;
    if !key.verify(&header.manifest_bytes, &header.signature) {
        return Err(VerifyError::BadSignature { key_id });
    }
    if let Some(expected) = &checks.target {
        if *expected != m.target {
            return Err(VerifyError::WrongTarget {
                expected: expected.to_string(),
                found: m.target.to_string(),
            });
        }
    }
    let now = checks.effective_now();
    if m.expires <= now {
        return Err(VerifyError::Expired {
            expires: format_time(m.expires),
            now: format_time(now),
        });
    }
    if m.serial < checks.serial_floor {
        return Err(VerifyError::SerialBelowFloor {
            serial: m.serial,
            floor: checks.serial_floor,
        });
    }
    Ok(key)
}

/// Checks the `payload.age` member's size (from its tar header) against the
/// manifest before reading any of it.
pub fn check_payload_size(manifest: &Manifest, member_size: u64) -> Result<(), VerifyError> {
    if member_size != manifest.payload.compressed_size {
        return Err(VerifyError::PayloadSizeMismatch {
            expected: manifest.payload.compressed_size,
            found: member_size,
        });
    }
    Ok(())
}

/// Hashes the payload as it streams by; [`PayloadCheck::finish`] compares
/// size and digest with the manifest.
#[derive(Clone, Debug, Default)]
pub struct PayloadCheck {
    hasher: Sha256,
    len: u64,
}

impl PayloadCheck {
    /// A fresh check.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds payload bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Compares what was fed with the manifest: size, then sha256.
    pub fn finish(self, manifest: &Manifest) -> Result<(), VerifyError> {
        check_payload_size(manifest, self.len)?;
        let digest: [u8; 32] = self.hasher.finalize().into();
        if digest != manifest.payload.sha256 {
            return Err(VerifyError::PayloadHashMismatch {
                expected: hex::encode(manifest.payload.sha256),
                found: hex::encode(digest),
            });
        }
        Ok(())
    }
}

/// Reads `payload` to its end and checks size and sha256 against the manifest.
pub fn verify_payload<R: Read>(manifest: &Manifest, mut payload: R) -> Result<(), VerifyError> {
    let mut check = PayloadCheck::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match payload.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        check.update(&buf[..n]);
        if check.len > manifest.payload.compressed_size {
            return Err(VerifyError::PayloadSizeMismatch {
                expected: manifest.payload.compressed_size,
                found: check.len,
            });
        }
    }
    check.finish(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::manifest::sample;
    use satchel_names::{Mac, SiteName};

    fn header(sk: &SigningKey, edit: impl FnOnce(&mut Manifest)) -> Header {
        let mut m = sample();
        m.signer = sk.key_id();
        edit(&mut m);
        let bytes = m.to_bytes().unwrap();
        Header {
            signature: sk.sign(&bytes),
            manifest: m,
            manifest_bytes: bytes,
            payload_size: 0,
            payload_offset: 0,
        }
    }

    fn checks(sk: &SigningKey) -> Checks {
        Checks {
            trusted: vec![SigningKey::generate().verifying_key(), sk.verifying_key()],
            target: Some(sample().target),
            now: sample().created,
            clock_floor: None,
            serial_floor: 7,
        }
    }

    #[test]
    fn valid_header_passes() {
        let sk = SigningKey::generate();
        let c = checks(&sk);
        assert_eq!(
            verify_header(&header(&sk, |_| {}), &c).unwrap().key_id(),
            sk.key_id()
        );
    }

    #[test]
    fn each_refusal_has_its_own_variant() {
        let sk = SigningKey::generate();
        let c = checks(&sk);
        let other = SigningKey::generate();
        assert!(matches!(
            verify_header(&header(&other, |_| {}), &c),
            Err(VerifyError::UntrustedSigner { .. })
        ));
        let mut h = header(&sk, |_| {});
        h.signature[10] ^= 1;
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::BadSignature { .. })
        ));
        let mut h = header(&sk, |_| {});
        h.manifest_bytes[20] ^= 1;
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::BadSignature { .. })
        ));
        let h = header(&sk, |m| {
            m.target = Target::Host(Mac::from_octets([1, 2, 3, 4, 5, 6]))
        });
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::WrongTarget { .. })
        ));
        let h = header(&sk, |m| {
            m.target = Target::Site(SiteName::parse("dc1").unwrap());
            m.site = None;
        });
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::WrongTarget { .. })
        ));
        let mut late = c.clone();
        late.now = sample().expires;
        assert!(matches!(
            verify_header(&header(&sk, |_| {}), &late),
            Err(VerifyError::Expired { .. })
        ));
        let h = header(&sk, |m| m.serial = 6);
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::SerialBelowFloor {
                serial: 6,
                floor: 7
            })
        ));
    }

    #[test]
    fn clock_floor_beats_a_clock_in_the_past() {
        let sk = SigningKey::generate();
        let mut c = checks(&sk);
        c.now = OffsetDateTime::UNIX_EPOCH;
        assert!(verify_header(&header(&sk, |_| {}), &c).is_ok());
        c.clock_floor = Some(sample().expires + time::Duration::seconds(1));
        assert!(matches!(
            verify_header(&header(&sk, |_| {}), &c),
            Err(VerifyError::Expired { .. })
        ));
    }

    #[test]
    fn order_is_fixed_signature_before_target_before_expiry_before_serial() {
        let sk = SigningKey::generate();
        let mut c = checks(&sk);
        c.now = sample().expires;
        c.target = Some(Target::Site(SiteName::parse("other").unwrap()));
        let mut h = header(&sk, |m| m.serial = 0);
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::WrongTarget { .. })
        ));
        c.target = None;
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::Expired { .. })
        ));
        h.signature[0] ^= 1;
        assert!(matches!(
            verify_header(&h, &c),
            Err(VerifyError::BadSignature { .. })
        ));
    }

    #[test]
    fn payload_checks() {
        let mut m = sample();
        let data = b"some payload bytes";
        m.payload.compressed_size = data.len() as u64;
        m.payload.sha256 = Sha256::digest(data).into();
        assert!(verify_payload(&m, &data[..]).is_ok());
        assert!(matches!(
            verify_payload(&m, &data[1..]),
            Err(VerifyError::PayloadSizeMismatch { .. })
        ));
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(matches!(
            verify_payload(&m, &longer[..]),
            Err(VerifyError::PayloadSizeMismatch { .. })
        ));
        let mut flipped = data.to_vec();
        flipped[3] ^= 0x40;
        assert!(matches!(
            verify_payload(&m, &flipped[..]),
            Err(VerifyError::PayloadHashMismatch { .. })
        ));
    }
}
