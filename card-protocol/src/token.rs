//! The one-time-number token: a fixed-width body signed by the issuer over `"ICH/token/v1" || body`.
//!
//! Body layout (125 bytes, integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version (1) |
//! | 1 | 16 | issuer organization id |
//! | 17 | 4 | issuer key id |
//! | 21 | 16 | number, ASCII digits, Luhn-valid |
//! | 37 | 16 | card id |
//! | 53 | 4 | sequence |
//! | 57 | 8 | not-after, Unix seconds |
//! | 65 | 8 | maximum amount, minor units |
//! | 73 | 3 | currency, ISO 4217 upper-case ASCII |
//! | 76 | 16 | merchant organization id (all zero: any merchant) |
//! | 92 | 1 | channel (1 = CONTACTLESS_PRESENT) |
//! | 93 | 32 | card public key (ed25519) |
//!
//! The token on the wire is `body || signature` (189 bytes), base64url without padding.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::{
    CardId, IssuerId, MerchantId, ProtocolError, Result,
    bytes::Reader,
    keys::{parse_public_key, sign, verify},
    number::{CardNumber, PrefixRange},
};

pub const TOKEN_DOMAIN: &[u8] = b"ICH/token/v1";
pub const TOKEN_VERSION: u8 = 1;
pub const BODY_LEN: usize = 125;
pub const TOKEN_LEN: usize = BODY_LEN + 64;
/// Where the 16 digits of the number sit in the body (and so in the token).
pub const NUMBER_RANGE: std::ops::Range<usize> = 21..37;

/// How the card is presented. Only contactless, card present, exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    ContactlessPresent,
}

impl Channel {
    fn code(self) -> u8 {
        match self {
            Channel::ContactlessPresent => 1,
        }
    }

    fn from_code(code: u8) -> Result<Self> {
        match code {
            1 => Ok(Channel::ContactlessPresent),
            _ => Err(ProtocolError::Malformed("token channel")),
        }
    }
}

/// Limits the issuer puts on where and for how much a number may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainRestrictions {
    pub max_amount_minor: u64,
    pub currency: [u8; 3],
    /// `None`: any merchant.
    pub merchant: Option<MerchantId>,
    pub channel: Channel,
}

impl DomainRestrictions {
    /// Whether a payment of `amount_minor` `currency` at `merchant` over `channel` is allowed.
    pub fn permit(
        &self,
        amount_minor: u64,
        currency: &[u8; 3],
        merchant: &MerchantId,
        channel: Channel,
    ) -> bool {
        amount_minor <= self.max_amount_minor
            && &self.currency == currency
            && self.merchant.is_none_or(|allowed| &allowed == merchant)
            && self.channel == channel
    }
}

/// What the issuer signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBody {
    pub issuer: IssuerId,
    pub key_id: u32,
    pub number: CardNumber,
    pub card_id: CardId,
    pub sequence: u32,
    pub not_after: u64,
    pub restrictions: DomainRestrictions,
    pub card_public_key: [u8; 32],
}

pub(crate) fn valid_currency(code: &[u8; 3]) -> bool {
    code.iter().all(u8::is_ascii_uppercase)
}

impl TokenBody {
    pub fn encode(&self) -> [u8; BODY_LEN] {
        let mut out = Vec::with_capacity(BODY_LEN);
        out.push(TOKEN_VERSION);
        out.extend_from_slice(self.issuer.as_bytes());
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(self.number.digits());
        out.extend_from_slice(self.card_id.as_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out.extend_from_slice(&self.restrictions.max_amount_minor.to_be_bytes());
        out.extend_from_slice(&self.restrictions.currency);
        // Zero bytes stand for "any merchant".
        let merchant = self.restrictions.merchant.map(MerchantId::to_bytes);
        out.extend_from_slice(&merchant.unwrap_or([0; 16]));
        out.push(self.restrictions.channel.code());
        out.extend_from_slice(&self.card_public_key);
        let mut body = [0u8; BODY_LEN];
        body.copy_from_slice(&out);
        body
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != BODY_LEN {
            return Err(ProtocolError::Malformed("token body length"));
        }
        let mut r = Reader::new(bytes, "token body");
        let version = r.u8()?;
        if version != TOKEN_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let issuer = r.id()?;
        let key_id = r.u32()?;
        let number = CardNumber::parse(&r.array()?)?;
        let card_id = r.id()?;
        let sequence = r.u32()?;
        let not_after = r.u64()?;
        let max_amount_minor = r.u64()?;
        let currency: [u8; 3] = r.array()?;
        if !valid_currency(&currency) {
            return Err(ProtocolError::Malformed("token currency"));
        }
        let merchant: [u8; 16] = r.array()?;
        let channel = Channel::from_code(r.u8()?)?;
        let card_public_key: [u8; 32] = r.array()?;
        parse_public_key(&card_public_key)?;
        r.finish()?;
        Ok(Self {
            issuer,
            key_id,
            number,
            card_id,
            sequence,
            not_after,
            restrictions: DomainRestrictions {
                max_amount_minor,
                currency,
                merchant: (merchant != [0; 16]).then_some(MerchantId::from_bytes(merchant)),
                channel,
            },
            card_public_key,
        })
    }
}

/// A signed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub body: TokenBody,
    pub signature: [u8; 64],
}

/// The public half of an issuer key, as the hub registers it: whose it is, its id and its number range.
#[derive(Debug, Clone)]
pub struct IssuerKey {
    pub issuer: IssuerId,
    pub key_id: u32,
    pub public_key: VerifyingKey,
    pub range: PrefixRange,
}

impl Token {
    pub fn sign(body: TokenBody, issuer_key: &SigningKey) -> Self {
        Self {
            signature: sign(issuer_key, TOKEN_DOMAIN, &body.encode()),
            body,
        }
    }

    pub fn encode(&self) -> [u8; TOKEN_LEN] {
        let mut out = [0u8; TOKEN_LEN];
        out[..BODY_LEN].copy_from_slice(&self.body.encode());
        out[BODY_LEN..].copy_from_slice(&self.signature);
        out
    }

    /// Strict decoding: exactly 189 bytes, every field checked. Does not verify the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != TOKEN_LEN {
            return Err(ProtocolError::Malformed("token length"));
        }
        let mut r = Reader::new(bytes, "token");
        let body = TokenBody::decode(r.take(BODY_LEN)?)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self { body, signature })
    }

    /// The token's bytes with the number's 16 digits zeroed: what may be kept as evidence where the
    /// number itself (a PAN in PCI DSS terms) may not.
    pub fn redacted(&self) -> [u8; TOKEN_LEN] {
        let mut bytes = self.encode();
        bytes[NUMBER_RANGE].fill(0);
        bytes
    }

    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.encode())
    }

    pub fn from_base64url(text: &str) -> Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| ProtocolError::Malformed("token encoding"))?;
        Self::decode(&bytes)
    }

    /// Checks the token against the issuer key it names: same issuer and key id, number inside the key's
    /// range, and a strictly valid signature.
    pub fn verify(&self, key: &IssuerKey) -> Result<()> {
        if self.body.issuer != key.issuer || self.body.key_id != key.key_id {
            return Err(ProtocolError::Mismatch(
                "the token names another issuer key",
            ));
        }
        if !key.range.contains(&self.body.number) {
            return Err(ProtocolError::InvalidNumber(
                "outside the issuer's prefix range",
            ));
        }
        verify(
            &key.public_key,
            TOKEN_DOMAIN,
            &self.body.encode(),
            &self.signature,
        )
    }
}
