//! Field-level encryption of sensitive values (AES-256-GCM-SIV), the envelope keys it uses, and blind
//! indexes for equality search.
//!
//! A sealed field is stored as
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (1) |
//! | 4 | data key id, big-endian |
//! | 12 | nonce (OS random) |
//! | rest | ciphertext with its 16-byte tag |
//!
//! The associated data is `"ICH/field/v1" || 0x00 || table || 0x00 || column || 0x00 || row id (16 bytes)`,
//! so a ciphertext copied to another row, column or table does not open: [`CryptoError::Undecryptable`],
//! never another row's data. Data keys live in the database wrapped by the master key ([`keys`]).
//!
//! [`vault`] holds a running hub's keys, [`reseal`] moves rows to the primary data key and reports
//! progress. The byte layouts are also written
//! down in `docs/encryption.md`.

pub mod graphql;
pub mod keys;
pub mod reseal;
pub mod vault;

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use keys::{DataKey, KeyId, KeyPurpose, KeyRing, MasterKey};
pub use vault::{RowSealer, Vault, VaultError};

const FIELD_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const FIELD_DOMAIN: &[u8] = b"ICH/field/v1\x00";
const BLIND_DOMAIN: &[u8] = b"ICH/blind/v1\x00";

/// Why a value could not be sealed or opened. Carries no plaintext and no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("an encrypted value of {table}.{column} is malformed")]
    Malformed {
        table: &'static str,
        column: &'static str,
    },
    #[error(
        "an encrypted value of {table}.{column} names data key {key_id}, which this hub does not have"
    )]
    UnknownKey {
        table: &'static str,
        column: &'static str,
        key_id: KeyId,
    },
    #[error(
        "an encrypted value of {table}.{column} does not open for this row (altered, or copied from elsewhere)"
    )]
    Undecryptable {
        table: &'static str,
        column: &'static str,
    },
    #[error("the master key does not open the data keys: {0}")]
    MasterKey(String),
    #[error("the operating system random generator failed")]
    Random,
}

/// Where a sealed value belongs: bound into its associated data.
#[derive(Debug, Clone, Copy)]
pub struct FieldPlace {
    pub table: &'static str,
    pub column: &'static str,
    pub row: Uuid,
}

impl FieldPlace {
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = FIELD_DOMAIN.to_vec();
        aad.extend_from_slice(self.table.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.column.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.row.as_bytes());
        aad
    }

    fn malformed(&self) -> CryptoError {
        CryptoError::Malformed {
            table: self.table,
            column: self.column,
        }
    }
}

/// Seals `plaintext` for `place` under the ring's primary data key.
pub fn seal(ring: &KeyRing, place: FieldPlace, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (key_id, key) = ring.primary();
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let ciphertext = key
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &place.associated_data(),
            },
        )
        .map_err(|_| place.malformed())?;
    let mut sealed = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    sealed.push(FIELD_VERSION);
    sealed.extend_from_slice(&key_id.0.to_be_bytes());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// The data key a sealed value is under (for the rotation job: which rows still need re-sealing).
pub fn key_of(place: FieldPlace, sealed: &[u8]) -> Result<KeyId, CryptoError> {
    match sealed {
        [FIELD_VERSION, a, b, c, d, ..] if sealed.len() > HEADER_LEN => {
            Ok(KeyId(u32::from_be_bytes([*a, *b, *c, *d])))
        }
        _ => Err(place.malformed()),
    }
}

/// Opens a value sealed for `place`. The plaintext is zeroized when dropped.
pub fn open(
    ring: &KeyRing,
    place: FieldPlace,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let key_id = key_of(place, sealed)?;
    let key = ring.get(key_id).ok_or(CryptoError::UnknownKey {
        table: place.table,
        column: place.column,
        key_id,
    })?;
    let nonce: [u8; NONCE_LEN] = sealed[5..HEADER_LEN]
        .try_into()
        .map_err(|_| place.malformed())?;
    key.cipher()
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &sealed[HEADER_LEN..],
                aad: &place.associated_data(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Undecryptable {
            table: place.table,
            column: place.column,
        })
}

/// An email as its blind index sees it: surrounding spaces trimmed, case folded.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The blind index of an already normalized value of `column`: HMAC-SHA-256 under the blind-index key
/// (a key of its own, never a data key), so equality can be searched without decrypting the table.
pub fn blind_index(key: &[u8; 32], column: &str, normalized: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(BLIND_DOMAIN);
    mac.update(column.as_bytes());
    mac.update(&[0]);
    mac.update(normalized);
    mac.finalize().into_bytes().into()
}

fn cipher_for(key: &[u8; 32]) -> Aes256GcmSiv {
    Aes256GcmSiv::new(&(*key).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![
            (KeyId(1), DataKey::from_bytes([1; 32])),
            (KeyId(2), DataKey::from_bytes([2; 32])),
        ])
        .expect("ring")
    }

    fn place(column: &'static str, row: Uuid) -> FieldPlace {
        FieldPlace {
            table: "customer",
            column,
            row,
        }
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed() {
        let ring = ring();
        let (row, other_row) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = seal(&ring, place("email", row), b"ada@example.com").expect("sealed");
        assert_eq!(sealed[0], 1);
        assert_eq!(
            key_of(place("email", row), &sealed),
            Ok(KeyId(2)),
            "the primary is the highest id"
        );
        assert!(
            !sealed.windows(3).any(|w| w == b"ada"),
            "no plaintext in the ciphertext"
        );
        let opened = open(&ring, place("email", row), &sealed).expect("opens");
        assert_eq!(opened.as_slice(), b"ada@example.com");

        let undecryptable = |column, row| {
            matches!(
                open(&ring, place(column, row), &sealed),
                Err(CryptoError::Undecryptable { .. })
            )
        };
        assert!(undecryptable("email", other_row), "another row");
        assert!(undecryptable("phone", row), "another column");
        let other_table = FieldPlace {
            table: "delivery",
            column: "email",
            row,
        };
        assert!(open(&ring, other_table, &sealed).is_err(), "another table");
    }

    #[test]
    fn damaged_values_and_unknown_keys_are_errors_not_data() {
        let ring = ring();
        let row = Uuid::new_v4();
        let at = place("name", row);
        let sealed = seal(&ring, at, b"Ada Lovelace").expect("sealed");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            open(&ring, at, &flipped),
            Err(CryptoError::Undecryptable { .. })
        ));
        for cut in [0, 1, 5, HEADER_LEN, sealed.len() - 1] {
            assert!(
                open(&ring, at, &sealed[..cut]).is_err(),
                "truncated to {cut}"
            );
        }
        let mut unknown = sealed.clone();
        unknown[1..5].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            open(&ring, at, &unknown).err(),
            Some(CryptoError::UnknownKey {
                table: "customer",
                column: "name",
                key_id: KeyId(9)
            })
        );
        let mut version = sealed;
        version[0] = 2;
        assert!(matches!(
            open(&ring, at, &version),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn values_sealed_under_an_older_key_still_open() {
        let old = KeyRing::new(vec![(KeyId(1), DataKey::from_bytes([1; 32]))]).expect("ring");
        let row = Uuid::new_v4();
        let sealed = seal(&old, place("phone", row), b"+31 6 1234").expect("sealed");
        assert_eq!(key_of(place("phone", row), &sealed), Ok(KeyId(1)));
        let rotated = ring();
        assert_eq!(
            open(&rotated, place("phone", row), &sealed)
                .expect("opens")
                .as_slice(),
            b"+31 6 1234"
        );
    }

    #[test]
    fn blind_indexes_match_normalized_emails_only() {
        let key = [7u8; 32];
        let index = |email: &str| blind_index(&key, "email", normalize_email(email).as_bytes());
        assert_eq!(index("  Ada@Example.COM "), index("ada@example.com"));
        assert_ne!(index("ada@example.com"), index("bob@example.com"));
        assert_ne!(
            blind_index(&key, "email", b"x"),
            blind_index(&key, "phone", b"x"),
            "bound to the column"
        );
        assert_ne!(
            index("ada@example.com"),
            blind_index(&[8u8; 32], "email", b"ada@example.com")
        );
    }
}
