//! Issuer-signed batches of tokens for LOAD NUMBERS.
//!
//! Body: version (1) || issuer id (16) || key id (u32) || card id (16) || card public key (32) ||
//! load counter (u32) || count (u16) || `count` tokens (189 bytes each). The issuer signs
//! `"ICH/batch/v1" || body`; the batch on the wire is `body || signature`.

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::{
    CardId, IssuerId, ProtocolError, Result,
    bytes::Reader,
    keys::{sign, verify},
    token::{TOKEN_LEN, Token},
};

pub const BATCH_DOMAIN: &[u8] = b"ICH/batch/v1";
pub const BATCH_VERSION: u8 = 1;
pub const MAX_BATCH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberBatch {
    pub issuer: IssuerId,
    pub key_id: u32,
    pub card_id: CardId,
    pub card_public_key: [u8; 32],
    /// Strictly increasing per card: a replayed or rolled-back batch is refused.
    pub load_counter: u32,
    pub tokens: Vec<Token>,
    pub signature: [u8; 64],
}

fn encode_body(
    issuer: &IssuerId,
    key_id: u32,
    card_id: &CardId,
    card_public_key: &[u8; 32],
    load_counter: u32,
    tokens: &[Token],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(75 + tokens.len() * TOKEN_LEN);
    body.push(BATCH_VERSION);
    body.extend_from_slice(issuer.as_bytes());
    body.extend_from_slice(&key_id.to_be_bytes());
    body.extend_from_slice(card_id.as_bytes());
    body.extend_from_slice(card_public_key);
    body.extend_from_slice(&load_counter.to_be_bytes());
    body.extend_from_slice(&(tokens.len() as u16).to_be_bytes());
    for token in tokens {
        body.extend_from_slice(&token.encode());
    }
    body
}

impl NumberBatch {
    pub fn sign(
        issuer_key: &SigningKey,
        issuer: IssuerId,
        key_id: u32,
        card_id: CardId,
        card_public_key: [u8; 32],
        load_counter: u32,
        tokens: Vec<Token>,
    ) -> Result<Self> {
        if tokens.is_empty() || tokens.len() > MAX_BATCH {
            return Err(ProtocolError::Malformed("a batch holds 1 to 64 tokens"));
        }
        let body = encode_body(
            &issuer,
            key_id,
            &card_id,
            &card_public_key,
            load_counter,
            &tokens,
        );
        let signature = sign(issuer_key, BATCH_DOMAIN, &body);
        Ok(Self {
            issuer,
            key_id,
            card_id,
            card_public_key,
            load_counter,
            tokens,
            signature,
        })
    }

    fn body(&self) -> Vec<u8> {
        encode_body(
            &self.issuer,
            self.key_id,
            &self.card_id,
            &self.card_public_key,
            self.load_counter,
            &self.tokens,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "number batch");
        let version = r.u8()?;
        if version != BATCH_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let issuer = r.id()?;
        let key_id = r.u32()?;
        let card_id = r.id()?;
        let card_public_key = r.array()?;
        let load_counter = r.u32()?;
        let count = usize::from(r.u16()?);
        if count == 0 || count > MAX_BATCH {
            return Err(ProtocolError::Malformed("batch size"));
        }
        let tokens = (0..count)
            .map(|_| Token::decode(r.take(TOKEN_LEN)?))
            .collect::<Result<Vec<_>>>()?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            issuer,
            key_id,
            card_id,
            card_public_key,
            load_counter,
            tokens,
            signature,
        })
    }

    /// Verifies the batch signature and that every token is the issuer's, for this card and key.
    pub fn verify(&self, issuer_key: &VerifyingKey) -> Result<()> {
        verify(issuer_key, BATCH_DOMAIN, &self.body(), &self.signature)?;
        for token in &self.tokens {
            let b = &token.body;
            if b.issuer != self.issuer || b.key_id != self.key_id {
                return Err(ProtocolError::Mismatch("a token of another issuer key"));
            }
            if b.card_id != self.card_id || b.card_public_key != self.card_public_key {
                return Err(ProtocolError::Mismatch("a token for another card"));
            }
            verify(
                issuer_key,
                crate::token::TOKEN_DOMAIN,
                &b.encode(),
                &token.signature,
            )?;
        }
        Ok(())
    }
}
