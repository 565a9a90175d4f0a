//! Issuer tooling: the issuer's key and number range, a persistent number counter, personalization of
//! cards and signed top-up batches. The state lives in one JSON file that holds the issuer's secret key.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    CardId, IssuerId, ProtocolError, Result,
    batch::{MAX_BATCH, NumberBatch},
    card::{CARD_FILE_VERSION, CardFile},
    files::{hex, unhex},
    number::{CardNumber, PrefixRange},
    token::{DomainRestrictions, Token, TokenBody},
};

pub const ISSUER_FILE_VERSION: u8 = 1;

/// What the issuer remembers of a card it personalized.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuedCard {
    /// Standard base64.
    pub public_key: String,
    pub load_counter: u32,
    /// The next sequence to issue to this card.
    pub next_sequence: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuerFile {
    pub version: u8,
    /// Hex of the issuer organization's 16-byte id.
    pub issuer: String,
    pub key_id: u32,
    /// Standard base64 of the 32-byte ed25519 seed. Secret.
    pub secret_key: String,
    pub range: PrefixRange,
    /// Unix seconds; no token may outlive its key.
    pub key_not_after: u64,
    /// The next account index of the range: numbers are allocated from this counter, never at random.
    pub next_account: u64,
    /// Cards by hex id.
    pub cards: BTreeMap<String, IssuedCard>,
}

/// What a batch of new numbers may be used for, and until when.
#[derive(Debug, Clone, Copy)]
pub struct Issuance {
    pub count: usize,
    pub restrictions: DomainRestrictions,
    pub not_after: u64,
}

impl IssuerFile {
    pub fn new(
        issuer: IssuerId,
        key_id: u32,
        seed: [u8; 32],
        range: PrefixRange,
        key_not_after: u64,
    ) -> Self {
        Self {
            version: ISSUER_FILE_VERSION,
            issuer: hex(issuer),
            key_id,
            secret_key: STANDARD.encode(seed),
            range,
            key_not_after,
            next_account: 0,
            cards: BTreeMap::new(),
        }
    }

    #[cfg(feature = "files")]
    pub fn load(path: &std::path::Path) -> std::result::Result<Self, crate::FileError> {
        use crate::FileError;
        let text = std::fs::read_to_string(path).map_err(FileError::io(path))?;
        let file: Self = serde_json::from_str(&text)
            .map_err(|_| FileError::content(path, ProtocolError::Malformed("issuer file")))?;
        if file.version != ISSUER_FILE_VERSION {
            return Err(FileError::content(
                path,
                ProtocolError::UnsupportedVersion(file.version),
            ));
        }
        Ok(file)
    }

    /// Atomic, private, durable: the number counter must never go back.
    #[cfg(feature = "files")]
    pub fn save(&self, path: &std::path::Path) -> std::result::Result<(), crate::FileError> {
        use crate::FileError;
        let json =
            serde_json::to_vec_pretty(self).map_err(|err| FileError::io(path)(err.into()))?;
        crate::files::write_private(path, &json).map_err(FileError::io(path))
    }

    pub fn signing_key(&self) -> Result<SigningKey> {
        let seed: [u8; 32] = STANDARD
            .decode(&self.secret_key)
            .ok()
            .and_then(|bytes| bytes.as_slice().try_into().ok())
            .ok_or(ProtocolError::Malformed("issuer secret key"))?;
        Ok(SigningKey::from_bytes(&seed))
    }

    pub fn issuer_id(&self) -> Result<IssuerId> {
        unhex(&self.issuer, "issuer id").map(IssuerId::from_bytes)
    }

    /// Takes the next `count` numbers of the range. Save the file before using them.
    pub fn allocate(&mut self, count: usize) -> Result<Vec<CardNumber>> {
        let numbers = (0..count as u64)
            .map(|offset| self.range.number(self.next_account + offset))
            .collect::<Result<Vec<_>>>()?;
        self.next_account += count as u64;
        Ok(numbers)
    }

    fn tokens(
        &mut self,
        card_id: CardId,
        card_public_key: [u8; 32],
        first_sequence: u32,
        issuance: &Issuance,
    ) -> Result<Vec<Token>> {
        if issuance.count == 0 || issuance.count > MAX_BATCH {
            return Err(ProtocolError::Malformed("1 to 64 numbers at a time"));
        }
        if issuance.not_after > self.key_not_after {
            return Err(ProtocolError::Mismatch(
                "a number may not outlive the issuer key",
            ));
        }
        let key = self.signing_key()?;
        let issuer = self.issuer_id()?;
        let numbers = self.allocate(issuance.count)?;
        Ok(numbers
            .into_iter()
            .enumerate()
            .map(|(i, number)| {
                let body = TokenBody {
                    issuer,
                    key_id: self.key_id,
                    number,
                    card_id,
                    sequence: first_sequence + i as u32,
                    not_after: issuance.not_after,
                    restrictions: issuance.restrictions,
                    card_public_key,
                };
                Token::sign(body, &key)
            })
            .collect())
    }

    /// Personalizes a new card: its key (from `card_seed`), id and a first signed batch, as a card file.
    pub fn personalize(
        &mut self,
        card_id: CardId,
        card_seed: [u8; 32],
        issuance: &Issuance,
    ) -> Result<CardFile> {
        let card_key = SigningKey::from_bytes(&card_seed);
        let card_public_key = card_key.verifying_key().to_bytes();
        if self.cards.contains_key(&hex(card_id)) {
            return Err(ProtocolError::Mismatch("this card id is taken"));
        }
        let tokens = self.tokens(card_id, card_public_key, 1, issuance)?;
        self.cards.insert(
            hex(card_id),
            IssuedCard {
                public_key: STANDARD.encode(card_public_key),
                load_counter: 1,
                next_sequence: 1 + issuance.count as u32,
            },
        );
        Ok(CardFile {
            version: CARD_FILE_VERSION,
            card_id: hex(card_id),
            card_secret_key: STANDARD.encode(card_seed),
            issuer: self.issuer.clone(),
            issuer_key_id: self.key_id,
            issuer_public_key: STANDARD.encode(self.signing_key()?.verifying_key().to_bytes()),
            load_counter: 1,
            next_sequence: 1,
            numbers: tokens.iter().map(Token::to_base64url).collect(),
        })
    }

    /// Signs a batch of new numbers for a card this issuer personalized.
    pub fn top_up(&mut self, card_id: CardId, issuance: &Issuance) -> Result<NumberBatch> {
        let card = self
            .cards
            .get(&hex(card_id))
            .cloned()
            .ok_or(ProtocolError::Mismatch("unknown card"))?;
        let card_public_key: [u8; 32] = STANDARD
            .decode(&card.public_key)
            .ok()
            .and_then(|bytes| bytes.as_slice().try_into().ok())
            .ok_or(ProtocolError::Malformed("card public key"))?;
        let tokens = self.tokens(card_id, card_public_key, card.next_sequence, issuance)?;
        let load_counter = card.load_counter + 1;
        let batch = NumberBatch::sign(
            &self.signing_key()?,
            self.issuer_id()?,
            self.key_id,
            card_id,
            card_public_key,
            load_counter,
            tokens,
        )?;
        self.cards.insert(
            hex(card_id),
            IssuedCard {
                load_counter,
                next_sequence: card.next_sequence + issuance.count as u32,
                ..card
            },
        );
        Ok(batch)
    }
}
