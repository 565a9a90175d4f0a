//! The card's signature binding one token to one payment request:
//!
//! `"ICH/card-pay/v1" || 0x00 || SHA-256(token bytes) || request id (16) || challenge (16) ||
//!  amount (u64 BE) || currency (3 ASCII upper) || merchant id (16) || terminal id (16) || hub instance id (16)`
//!
//! The hub rebuilds this message from its stored payment request, never from what a reader submits.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::{
    HubInstanceId, MerchantId, ProtocolError, RequestId, Result, TerminalId,
    bytes::Reader,
    keys::{parse_public_key, sign, verify},
    token::{Token, valid_currency},
};

pub const CARD_PAY_DOMAIN: &[u8] = b"ICH/card-pay/v1\x00";
/// Length of the encoded request fields (what GENERATE PAYMENT carries).
pub const REQUEST_FIELDS_LEN: usize = 16 + 16 + 8 + 3 + 16 + 16 + 16;
pub const MESSAGE_LEN: usize = CARD_PAY_DOMAIN.len() + 32 + REQUEST_FIELDS_LEN;

/// The payment request a card signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentRequestFields {
    pub request_id: RequestId,
    pub challenge: [u8; 16],
    pub amount_minor: u64,
    pub currency: [u8; 3],
    pub merchant: MerchantId,
    pub terminal: TerminalId,
    pub hub_instance: HubInstanceId,
}

impl PaymentRequestFields {
    pub fn encode(&self) -> [u8; REQUEST_FIELDS_LEN] {
        let mut out = Vec::with_capacity(REQUEST_FIELDS_LEN);
        out.extend_from_slice(self.request_id.as_bytes());
        out.extend_from_slice(&self.challenge);
        out.extend_from_slice(&self.amount_minor.to_be_bytes());
        out.extend_from_slice(&self.currency);
        out.extend_from_slice(self.merchant.as_bytes());
        out.extend_from_slice(self.terminal.as_bytes());
        out.extend_from_slice(self.hub_instance.as_bytes());
        let mut fields = [0u8; REQUEST_FIELDS_LEN];
        fields.copy_from_slice(&out);
        fields
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "payment request fields");
        let fields = Self {
            request_id: r.id()?,
            challenge: r.array()?,
            amount_minor: r.u64()?,
            currency: r.array()?,
            merchant: r.id()?,
            terminal: r.id()?,
            hub_instance: r.id()?,
        };
        r.finish()?;
        if !valid_currency(&fields.currency) {
            return Err(ProtocolError::Malformed("request currency"));
        }
        Ok(fields)
    }
}

/// The exact bytes a card signs (without the domain prefix, which [`sign_payment`] adds).
pub fn payment_message(token: &Token, request: &PaymentRequestFields) -> Vec<u8> {
    let mut message = Vec::with_capacity(MESSAGE_LEN - CARD_PAY_DOMAIN.len());
    message.extend_from_slice(&Sha256::digest(token.encode()));
    message.extend_from_slice(&request.encode());
    message
}

/// The full signed message, domain included (for test vectors and other implementations).
pub fn signed_bytes(token: &Token, request: &PaymentRequestFields) -> Vec<u8> {
    let mut bytes = CARD_PAY_DOMAIN.to_vec();
    bytes.extend_from_slice(&payment_message(token, request));
    bytes
}

pub fn sign_payment(
    card_key: &SigningKey,
    token: &Token,
    request: &PaymentRequestFields,
) -> [u8; 64] {
    sign(card_key, CARD_PAY_DOMAIN, &payment_message(token, request))
}

/// Verifies a card signature with the card key the token carries (the caller has already checked that
/// this key is the registered card's key and that the token itself is valid).
pub fn verify_payment(
    token: &Token,
    request: &PaymentRequestFields,
    signature: &[u8; 64],
) -> Result<()> {
    let card_key = parse_public_key(&token.body.card_public_key)?;
    verify(
        &card_key,
        CARD_PAY_DOMAIN,
        &payment_message(token, request),
        signature,
    )
}
