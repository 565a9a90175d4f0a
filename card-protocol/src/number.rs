//! Card numbers: 16 ASCII digits, Luhn-valid, inside an issuer's prefix range; and the keyed number
//! hash that makes single use checkable without storing the number.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{IssuerId, ProtocolError, Result};

/// A one-time card number: exactly 16 ASCII digits with a valid Luhn check digit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CardNumber([u8; 16]);

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A number is a PAN: never print more than the last four digits.
        write!(f, "CardNumber(************{})", self.last_four())
    }
}

impl CardNumber {
    pub fn parse(digits: &[u8; 16]) -> Result<Self> {
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ProtocolError::InvalidNumber("not 16 digits"));
        }
        if !luhn_valid(digits) {
            return Err(ProtocolError::InvalidNumber("bad check digit"));
        }
        Ok(Self(*digits))
    }

    /// Builds a number from 15 digits by appending their Luhn check digit.
    pub fn with_check_digit(payload: &[u8; 15]) -> Result<Self> {
        if !payload.iter().all(u8::is_ascii_digit) {
            return Err(ProtocolError::InvalidNumber("not digits"));
        }
        let mut digits = [0u8; 16];
        digits[..15].copy_from_slice(payload);
        digits[15] = b'0' + luhn_check_digit(payload);
        Ok(Self(digits))
    }

    pub fn digits(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn last_four(&self) -> String {
        String::from_utf8_lossy(&self.0[12..]).into_owned()
    }
}

fn luhn_sum(digits: impl DoubleEndedIterator<Item = u8>, double_first: bool) -> u32 {
    digits
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if (i % 2 == 0) == double_first {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum()
}

fn luhn_valid(digits: &[u8; 16]) -> bool {
    luhn_sum(digits.iter().copied(), false) % 10 == 0
}

fn luhn_check_digit(payload: &[u8; 15]) -> u8 {
    ((10 - luhn_sum(payload.iter().copied(), true) % 10) % 10) as u8
}

/// An issuer's registered number range: every number starting with `prefix` (6 to 12 digits).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrefixRange {
    prefix: String,
}

impl PrefixRange {
    pub fn new(prefix: &str) -> Result<Self> {
        if !(6..=12).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProtocolError::InvalidNumber("a prefix is 6 to 12 digits"));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn contains(&self, number: &CardNumber) -> bool {
        number.digits().starts_with(self.prefix.as_bytes())
    }

    /// How many account numbers the range holds (digits between prefix and check digit).
    pub fn capacity(&self) -> u64 {
        10u64.saturating_pow(15 - self.prefix.len() as u32)
    }

    /// The `index`-th number of the range (numbers are allocated from a counter, never at random).
    pub fn number(&self, index: u64) -> Result<CardNumber> {
        if index >= self.capacity() {
            return Err(ProtocolError::InvalidNumber(
                "the prefix range is exhausted",
            ));
        }
        let width = 15 - self.prefix.len();
        let payload = format!("{}{:0width$}", self.prefix, index, width = width);
        let payload: [u8; 15] = payload
            .as_bytes()
            .try_into()
            .map_err(|_| ProtocolError::InvalidNumber("range arithmetic"))?;
        CardNumber::with_check_digit(&payload)
    }
}

/// HMAC-SHA-256 of a number under a dedicated key, stored UNIQUE to enforce single use without storing
/// the number. The key id is part of the MAC input, so hashes under different keys never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberHash {
    pub key_id: u32,
    pub hash: [u8; 32],
}

const NUMBER_HASH_DOMAIN: &[u8] = b"ICH/number/v1";

pub fn number_hash(
    key: &[u8; 32],
    key_id: u32,
    issuer: &IssuerId,
    number: &CardNumber,
) -> NumberHash {
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(NUMBER_HASH_DOMAIN);
    mac.update(&key_id.to_be_bytes());
    mac.update(issuer.as_bytes());
    mac.update(number.digits());
    NumberHash {
        key_id,
        hash: mac.finalize().into_bytes().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(CardNumber::parse(b"4111111111111111").is_ok());
        assert!(CardNumber::parse(b"4111111111111112").is_err());
        assert!(CardNumber::parse(b"41111111111111a1").is_err());
        let built = CardNumber::with_check_digit(b"411111111111111").expect("digits");
        assert_eq!(built.digits(), b"4111111111111111");
    }

    #[test]
    fn ranges_allocate_in_range() {
        let range = PrefixRange::new("400012").expect("prefix");
        let first = range.number(0).expect("number");
        assert!(range.contains(&first));
        assert_eq!(&first.digits()[..15], b"400012000000000");
        assert!(range.number(range.capacity()).is_err());
        assert!(!PrefixRange::new("500000").expect("prefix").contains(&first));
        assert!(PrefixRange::new("123").is_err());
        assert_eq!(
            format!("{first:?}"),
            format!("CardNumber(************{})", first.last_four())
        );
    }
}
