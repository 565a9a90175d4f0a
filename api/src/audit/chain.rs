//! The audit key and the exact bytes the trail's MACs cover (also written down in `docs/audit.md`, so
//! that anyone holding the key can check a chain without this code).
//!
//! The key file holds a 32-byte secret from which two keys are derived (HMAC-SHA-256 of the secret
//! over a label): the **chain key** (`"ICH/audit/chain-key/v1"`) makes seals and links, the **digest
//! key** (`"ICH/audit/digest-key/v1"`) makes change digests. A verifier needs the chain key only, so
//! holding it does not let one test guesses of an input (a card number) against stored digests.
//!
//! Every MAC is HMAC-SHA-256; integers are big-endian; ids are the 16 bytes of the UUID; texts are a
//! 2-byte length followed by their UTF-8 bytes.
//!
//! - **seal** (chain key, written with the entry): `"ICH/audit/entry/v1" 0x00 | entry id |
//!   organization id | actor kind (1 byte: 1 member, 2 device) | actor id | operation (text) | record
//!   type (text, empty when none) | record id (16 zero bytes when none) | change digest (32) |
//!   recorded at (i64, microseconds since the Unix epoch)`.
//! - **link** (chain key, written after commit): `"ICH/audit/link/v1" 0x00 | organization id | chain
//!   index (u64, from 1) | previous link (32 zero bytes for index 1) | seal`.
//! - **change digest** (digest key): `"ICH/audit/change/v1" 0x00 | operation (text) | the mutation's
//!   arguments as JSON`, variables substituted.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

const SEAL_DOMAIN: &[u8] = b"ICH/audit/entry/v1\x00";
const LINK_DOMAIN: &[u8] = b"ICH/audit/link/v1\x00";
const CHANGE_DOMAIN: &[u8] = b"ICH/audit/change/v1\x00";
const CHAIN_KEY_LABEL: &[u8] = b"ICH/audit/chain-key/v1";
const DIGEST_KEY_LABEL: &[u8] = b"ICH/audit/digest-key/v1";
const KEY_ID_LABEL: &[u8] = b"ICH/audit/key-id/v1";

/// A MAC, a digest or a link: 32 bytes.
pub type Mac32 = [u8; 32];

/// Why the audit key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("cannot read the audit key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the audit key {0} is not base64 of 32 bytes")]
    Malformed(String),
}

/// The key the chain's MACs are made with. It lives in a file beside the other keys, never in the
/// database, so someone who can rewrite the tables cannot forge a link.
#[derive(Clone)]
pub struct AuditKey(std::sync::Arc<Keys>);

struct Keys {
    chain: Zeroizing<[u8; 32]>,
    digest: Zeroizing<[u8; 32]>,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Mac32 {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// The keys derived from the secret of a key file.
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        let secret = Zeroizing::new(secret);
        Self(std::sync::Arc::new(Keys {
            chain: Zeroizing::new(hmac(secret.as_slice(), &[CHAIN_KEY_LABEL])),
            digest: Zeroizing::new(hmac(secret.as_slice(), &[DIGEST_KEY_LABEL])),
        }))
    }

    /// Names the key without revealing it (kept in the database, so replicas with another key are
    /// refused before they write or link anything).
    pub fn fingerprint(&self) -> String {
        hex(&hmac(self.0.chain.as_slice(), &[KEY_ID_LABEL])[..8])
    }

    /// Reads a key file (standard base64 of 32 bytes, what `hub keygen --secret` writes).
    pub fn load(path: &Path) -> Result<Self, AuditKeyError> {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| AuditKeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let malformed = || AuditKeyError::Malformed(path.display().to_string());
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| malformed())?);
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(bytes))
    }

    /// The keyed digest of a mutation's arguments (digest key).
    pub fn change_digest(&self, operation: &str, arguments_json: &[u8]) -> Mac32 {
        hmac(
            self.0.digest.as_slice(),
            &[CHANGE_DOMAIN, &text(operation), arguments_json],
        )
    }

    pub fn seal(&self, entry: &EntryFields<'_>) -> Mac32 {
        hmac(self.0.chain.as_slice(), &[SEAL_DOMAIN, &entry.bytes()])
    }

    pub fn link(&self, organization: Uuid, index: i64, previous: &Mac32, seal: &[u8]) -> Mac32 {
        hmac(
            self.0.chain.as_slice(),
            &[
                LINK_DOMAIN,
                organization.as_bytes(),
                &index.to_be_bytes(),
                previous,
                seal,
            ],
        )
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Member,
    Device,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "MEMBER",
            Self::Device => "DEVICE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "MEMBER" => Some(Self::Member),
            "DEVICE" => Some(Self::Device),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Member => 1,
            Self::Device => 2,
        }
    }
}

/// The fields an entry's seal covers.
pub struct EntryFields<'a> {
    pub id: Uuid,
    pub organization: Uuid,
    pub actor_kind: ActorKind,
    pub actor: Uuid,
    pub operation: &'a str,
    pub record_type: Option<&'a str>,
    pub record_id: Option<Uuid>,
    pub change_digest: &'a [u8],
    pub recorded_at_micros: i64,
}

impl EntryFields<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(160);
        bytes.extend_from_slice(self.id.as_bytes());
        bytes.extend_from_slice(self.organization.as_bytes());
        bytes.push(self.actor_kind.byte());
        bytes.extend_from_slice(self.actor.as_bytes());
        bytes.extend_from_slice(&text(self.operation));
        bytes.extend_from_slice(&text(self.record_type.unwrap_or("")));
        bytes.extend_from_slice(self.record_id.unwrap_or(Uuid::nil()).as_bytes());
        bytes.extend_from_slice(self.change_digest);
        bytes.extend_from_slice(&self.recorded_at_micros.to_be_bytes());
        bytes
    }
}

/// A text as the layouts carry it: 2-byte length, then UTF-8 (operation and kind names are short;
/// longer text is cut at 65,535 bytes rather than wrapping the length).
fn text(value: &str) -> Vec<u8> {
    let bytes = &value.as_bytes()[..value.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(operation: &str) -> EntryFields<'_> {
        EntryFields {
            id: Uuid::from_u128(1),
            organization: Uuid::from_u128(2),
            actor_kind: ActorKind::Member,
            actor: Uuid::from_u128(3),
            operation,
            record_type: Some("Order"),
            record_id: Some(Uuid::from_u128(4)),
            change_digest: &[7; 32],
            recorded_at_micros: 1_700_000_000_000_000,
        }
    }

    /// The seal of a fixed entry under a fixed key, computed independently of `EntryFields::bytes`
    /// from the layout in the module docs: a change to the layout must change the docs too.
    #[test]
    fn the_seal_covers_exactly_the_documented_bytes() {
        let key = AuditKey::from_bytes([9; 32]);
        let mut expected = b"ICH/audit/entry/v1\x00".to_vec();
        expected.extend_from_slice(&1u128.to_be_bytes());
        expected.extend_from_slice(&2u128.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&3u128.to_be_bytes());
        expected.extend_from_slice(&[0, 11]);
        expected.extend_from_slice(b"createOrder");
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"Order");
        expected.extend_from_slice(&4u128.to_be_bytes());
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&1_700_000_000_000_000i64.to_be_bytes());
        let chain_key = hmac(&[9; 32], &[b"ICH/audit/chain-key/v1"]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&chain_key).expect("key");
        mac.update(&expected);
        let expected: Mac32 = mac.finalize().into_bytes().into();
        assert_eq!(key.seal(&fields("createOrder")), expected);
        assert_ne!(key.seal(&fields("createOrdex")), expected);
        assert_ne!(
            AuditKey::from_bytes([8; 32]).seal(&fields("createOrder")),
            expected
        );
    }

    #[test]
    fn links_depend_on_position_and_predecessor() {
        let key = AuditKey::from_bytes([9; 32]);
        let org = Uuid::from_u128(2);
        let first = key.link(org, 1, &[0; 32], &[1; 32]);
        assert_ne!(first, key.link(org, 2, &[0; 32], &[1; 32]));
        assert_ne!(first, key.link(org, 1, &[5; 32], &[1; 32]));
        assert_ne!(first, key.link(Uuid::from_u128(3), 1, &[0; 32], &[1; 32]));
    }
}
