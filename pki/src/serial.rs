//! Certificate serial numbers as text: one canonical spelling everywhere.
//!
//! Canonical form: lowercase hex of the big-endian magnitude, without leading
//! zero bytes, without separators (`7f3a…`). The ledger, the CRL view, the
//! peer identity and the CLI all use it, so a serial can be compared as text.
//! [`parse_serial`] accepts what an operator pastes (`0x` prefix, colons,
//! upper case, openssl's leading `00`) and normalises it.
//!
//! Invariant: a parsed serial is positive and at most [`MAX_SERIAL_OCTETS`]
//! octets (RFC 5280 §4.1.2.2).

/// Largest serial accepted, in octets of magnitude (RFC 5280 allows 20).
pub const MAX_SERIAL_OCTETS: usize = 20;

/// Errors from reading a serial number typed by a person.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SerialError {
    /// Not hex digits (after removing `0x` and `:` separators).
    #[error("serial {0:?} is not hexadecimal (expected e.g. 7f3a09…)")]
    NotHex(String),
    /// Zero or empty.
    #[error("serial {0:?} is zero; certificate serials are positive")]
    Zero(String),
    /// More than [`MAX_SERIAL_OCTETS`].
    #[error("serial {0:?} is longer than {MAX_SERIAL_OCTETS} octets")]
    TooLong(String),
}

/// The canonical text of a serial given its big-endian bytes (a leading sign
/// octet `00` is dropped).
pub fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    hex::encode(&bytes[start..])
}

/// Parses a serial typed by a person into its canonical text.
pub fn parse_serial(input: &str) -> Result<String, SerialError> {
    let shown: String = input.chars().take(80).collect();
    let s = input.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SerialError::NotHex(shown));
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    if trimmed.is_empty() {
        return Err(SerialError::Zero(shown));
    }
    if trimmed.len() > MAX_SERIAL_OCTETS * 2 {
        return Err(SerialError::TooLong(shown));
    }
    // Whole octets: a leading nibble is padded.
    Ok(if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(serial_hex(&[0, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[]), "");
        for (input, want) in [
            ("8f01", "8f01"),
            ("8F:01", "8f01"),
            ("0x008F01", "8f01"),
            ("  f01 ", "0f01"),
            ("00:8f:01", "8f01"),
        ] {
            assert_eq!(parse_serial(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn hostile_serials_are_refused() {
        let long = "ab".repeat(21);
        for bad in [
            "",
            "0",
            "00:00",
            "0x",
            "xyz",
            "12 34",
            "-1",
            "+1",
            "1g",
            "١٢",
            "\0",
            long.as_str(),
        ] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
        assert!(parse_serial(&"ab".repeat(20)).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_or_errors_and_canonical_text_round_trips(s in "\\PC{0,60}") {
            if let Ok(c) = parse_serial(&s) {
                proptest::prop_assert_eq!(parse_serial(&c), Ok(c.clone()));
                proptest::prop_assert!(c.len() <= 2 * MAX_SERIAL_OCTETS);
            }
        }

        #[test]
        fn bytes_round_trip(b in proptest::collection::vec(proptest::num::u8::ANY, 1..20)) {
            let text = serial_hex(&b);
            if !text.is_empty() {
                let back = hex::decode(parse_serial(&text).unwrap_or_default()).unwrap_or_default();
                let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                proptest::prop_assert_eq!(back, b[start..].to_vec());
            }
        }
    }
}
