//! Envelope keys: data keys seal the fields; the master key wraps the data keys, which the database
//! keeps only wrapped. Rotating the master key rewraps the data keys and touches no row; rotating a data
//! key adds a new primary one, and rows move to it as they are re-sealed.
//!
//! A wrapped key is `version (1) || nonce (12) || AES-256-GCM-SIV ciphertext of the 32 key bytes with
//! its tag`, under the master key, with associated data
//! `"ICH/data-key/v1" || 0x00 || purpose (ASCII) || 0x00 || key id (u32 BE)`: a wrapped key moved to
//! another id or purpose (a field key posing as the blind-index key) does not unwrap. The master key is identified by a fingerprint
//! (the first 8 bytes of HMAC-SHA-256 under the key of `"ICH/master-key-id/v1"`, hex), stored beside the
//! wrapped keys, so a hub started with the wrong master key says so instead of failing row by row.
//!
//! Key material is zeroized when dropped and never printed (`Debug` shows ids and fingerprints only).

use std::{collections::BTreeMap, fmt, path::Path, sync::Arc};

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{CryptoError, cipher_for};

const WRAP_VERSION: u8 = 1;
const WRAP_DOMAIN: &[u8] = b"ICH/data-key/v1\x00";
const NONCE_LEN: usize = 12;

/// What a wrapped key is for; bound into its wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// Seals field values ([`DataKey`]s of the ring).
    Field,
    /// Keys the blind indexes (HMAC), never used to encrypt.
    BlindIndex,
}

impl KeyPurpose {
    /// The name stored in the key table and bound into the wrapping.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Field => "FIELD",
            Self::BlindIndex => "BLIND_INDEX",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "FIELD" => Some(Self::Field),
            "BLIND_INDEX" => Some(Self::BlindIndex),
            _ => None,
        }
    }
}

/// A data key's id: positive, stored with every value sealed under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The id as the integer columns store it (the key table creates ids below 2^31).
    pub fn as_column(self) -> Result<i32, CryptoError> {
        i32::try_from(self.0).map_err(|_| {
            CryptoError::MasterKey(format!("data key id {} does not fit a column", self.0))
        })
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 256-bit data key, with its cipher built once (the AES key schedule is wiped on drop too: the
/// `aes` crate's zeroize feature).
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    cipher: Aes256GcmSiv,
}

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self {
            cipher: cipher_for(&bytes),
            bytes,
        }
    }

    /// A new key from the OS random generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|_| CryptoError::Random)?;
        Ok(Self {
            cipher: cipher_for(&bytes),
            bytes,
        })
    }

    pub(super) fn cipher(&self) -> &Aes256GcmSiv {
        &self.cipher
    }

    /// The raw bytes, for keys used as HMAC keys (the blind-index key).
    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The data keys a hub holds, unwrapped; the highest id is the primary (new values are sealed under it).
#[derive(Debug)]
pub struct KeyRing {
    keys: BTreeMap<KeyId, Arc<DataKey>>,
}

impl KeyRing {
    /// A ring of at least one key, with distinct positive ids.
    pub fn new(keys: Vec<(KeyId, DataKey)>) -> Result<Self, CryptoError> {
        let count = keys.len();
        let keys: BTreeMap<KeyId, Arc<DataKey>> = keys
            .into_iter()
            .map(|(id, key)| (id, Arc::new(key)))
            .collect();
        if keys.is_empty() || keys.len() != count || keys.contains_key(&KeyId(0)) {
            return Err(CryptoError::MasterKey(
                "a key ring needs at least one data key, with distinct ids above 0".into(),
            ));
        }
        Ok(Self { keys })
    }

    /// This ring with `more` keys added (ids it holds already are refused).
    pub fn with_keys(&self, more: Vec<(KeyId, DataKey)>) -> Result<Self, CryptoError> {
        let mut keys = self.keys.clone();
        for (id, key) in more {
            if id == KeyId(0) || keys.insert(id, Arc::new(key)).is_some() {
                return Err(CryptoError::MasterKey(format!(
                    "data key {id} is already in the ring, or not above 0"
                )));
            }
        }
        Ok(Self { keys })
    }

    pub fn primary(&self) -> (KeyId, &DataKey) {
        let (id, key) = self
            .keys
            .last_key_value()
            .expect("a ring is never empty (checked in new)");
        (*id, key)
    }

    pub fn get(&self, id: KeyId) -> Option<&DataKey> {
        self.keys.get(&id).map(|key| &**key)
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }
}

/// The master key: it wraps the data keys and nothing else.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Standard base64 of 32 bytes (what `hub keygen --secret` writes, and what an environment variable
    /// holds); surrounding white space is ignored.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            CryptoError::MasterKey("the master key is not base64 of 32 bytes".into())
        })?);
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::MasterKey("the master key is not base64 of 32 bytes".into())
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// Reads a master key file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
            CryptoError::MasterKey(format!("cannot read {}: {err}", path.display()))
        })?);
        Self::from_base64(&text)
    }

    /// Names the key without revealing it: stored beside the wrapped data keys.
    pub fn fingerprint(&self) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()).expect("any key length");
        mac.update(b"ICH/master-key-id/v1");
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn associated_data(purpose: KeyPurpose, id: KeyId) -> Vec<u8> {
        let mut aad = WRAP_DOMAIN.to_vec();
        aad.extend_from_slice(purpose.as_str().as_bytes());
        aad.push(0);
        aad.extend_from_slice(&id.0.to_be_bytes());
        aad
    }

    /// Wraps a key for storage under `purpose` and `id`.
    pub fn wrap(
        &self,
        purpose: KeyPurpose,
        id: KeyId,
        key: &DataKey,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let ciphertext = cipher_for(&self.0)
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: key.bytes.as_slice(),
                    aad: &Self::associated_data(purpose, id),
                },
            )
            .map_err(|_| CryptoError::MasterKey("cannot wrap a data key".into()))?;
        let mut wrapped = vec![WRAP_VERSION];
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ciphertext);
        Ok(wrapped)
    }

    /// Unwraps the key stored under `purpose` and `id`.
    pub fn unwrap_key(
        &self,
        purpose: KeyPurpose,
        id: KeyId,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let refused = || {
            CryptoError::MasterKey(format!(
                "{} key {id} does not unwrap with master key {}",
                purpose.as_str(),
                self.fingerprint()
            ))
        };
        let (&version, rest) = wrapped.split_first().ok_or_else(refused)?;
        if version != WRAP_VERSION {
            return Err(refused());
        }
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN).ok_or_else(refused)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| refused())?;
        let bytes = Zeroizing::new(
            cipher_for(&self.0)
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &Self::associated_data(purpose, id),
                    },
                )
                .map_err(|_| refused())?,
        );
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| refused())?;
        Ok(DataKey::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{FieldPlace, open, seal};

    #[test]
    fn data_keys_unwrap_with_their_master_key_and_id_only() {
        let master = MasterKey::from_bytes([3; 32]);
        let key = DataKey::generate().expect("key");
        let field = KeyPurpose::Field;
        let wrapped = master.wrap(field, KeyId(1), &key).expect("wrapped");
        assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
        let unwrapped = master
            .unwrap_key(field, KeyId(1), &wrapped)
            .expect("unwraps");

        // The unwrapped key opens what the original sealed.
        let place = FieldPlace {
            table: "customer",
            column: "name",
            row: uuid::Uuid::new_v4(),
        };
        let sealed = seal(
            &KeyRing::new(vec![(KeyId(1), key)]).expect("ring"),
            place,
            b"x",
        )
        .expect("sealed");
        let ring = KeyRing::new(vec![(KeyId(1), unwrapped)]).expect("ring");
        assert_eq!(open(&ring, place, &sealed).expect("opens").as_slice(), b"x");

        assert!(
            master.unwrap_key(field, KeyId(2), &wrapped).is_err(),
            "moved to another id"
        );
        assert!(
            master
                .unwrap_key(KeyPurpose::BlindIndex, KeyId(1), &wrapped)
                .is_err(),
            "moved to another purpose"
        );
        let other = MasterKey::from_bytes([4; 32]);
        let refused = other
            .unwrap_key(field, KeyId(1), &wrapped)
            .expect_err("refused");
        assert!(
            refused.to_string().contains(&other.fingerprint()),
            "{refused}"
        );
        assert!(
            master.unwrap_key(field, KeyId(1), &wrapped[..20]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn master_keys_are_named_by_fingerprint_and_never_printed() {
        let master = MasterKey::from_base64(&STANDARD.encode([5u8; 32])).expect("parses");
        assert_eq!(master.fingerprint().len(), 16);
        assert_ne!(
            master.fingerprint(),
            MasterKey::from_bytes([6; 32]).fingerprint()
        );
        let printed = format!("{master:?} {:?}", DataKey::from_bytes([5; 32]));
        assert!(!printed.contains(&STANDARD.encode([5u8; 32])), "{printed}");
        assert!(!printed.contains("5, 5"), "{printed}");
        assert!(MasterKey::from_base64("not base64").is_err());
        assert!(
            MasterKey::from_base64(&STANDARD.encode([1u8; 16])).is_err(),
            "16 bytes"
        );
    }

    #[test]
    fn rings_need_distinct_positive_ids() {
        assert!(KeyRing::new(Vec::new()).is_err());
        assert!(KeyRing::new(vec![(KeyId(0), DataKey::from_bytes([1; 32]))]).is_err());
        assert!(
            KeyRing::new(vec![
                (KeyId(1), DataKey::from_bytes([1; 32])),
                (KeyId(1), DataKey::from_bytes([2; 32])),
            ])
            .is_err()
        );
        let ring = KeyRing::new(vec![
            (KeyId(3), DataKey::from_bytes([1; 32])),
            (KeyId(7), DataKey::from_bytes([2; 32])),
        ])
        .expect("ring");
        assert_eq!(ring.primary().0, KeyId(7));
        assert_eq!(ring.ids().collect::<Vec<_>>(), vec![KeyId(3), KeyId(7)]);
    }
}
