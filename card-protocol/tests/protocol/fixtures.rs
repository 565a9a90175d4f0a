//! Fixed keys and inputs shared by the tests (and by the published vectors).

use card_protocol::{
    CardId, HubInstanceId, IssuerId, MerchantId, RequestId, TerminalId,
    card_signature::PaymentRequestFields,
    number::{CardNumber, PrefixRange},
    token::{Channel, DomainRestrictions, IssuerKey, Token, TokenBody},
};
use ed25519_dalek::SigningKey;

pub const ISSUER_SEED: [u8; 32] = [0x11; 32];
pub const CARD_SEED: [u8; 32] = [0x22; 32];
pub const NUMBER_HASH_KEY: [u8; 32] = [0x33; 32];
pub const ISSUER: IssuerId = IssuerId::from_bytes([
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
]);
pub const CARD_ID: CardId = CardId::from_bytes([0xc0; 16]);
pub const MERCHANT: MerchantId = MerchantId::from_bytes([0x4d; 16]);

pub fn issuer_key() -> SigningKey {
    SigningKey::from_bytes(&ISSUER_SEED)
}

pub fn card_key() -> SigningKey {
    SigningKey::from_bytes(&CARD_SEED)
}

pub fn range() -> PrefixRange {
    PrefixRange::new("400012").expect("prefix")
}

pub fn registered_issuer_key() -> IssuerKey {
    IssuerKey {
        issuer: ISSUER,
        key_id: 7,
        public_key: issuer_key().verifying_key(),
        range: range(),
    }
}

pub fn body() -> TokenBody {
    TokenBody {
        issuer: ISSUER,
        key_id: 7,
        number: CardNumber::parse(b"4000120000000420").expect("number"),
        card_id: CARD_ID,
        sequence: 42,
        not_after: 1_798_761_600, // 2027-01-01T00:00:00Z
        restrictions: DomainRestrictions {
            max_amount_minor: 5_000,
            currency: *b"EUR",
            merchant: Some(MERCHANT),
            channel: Channel::ContactlessPresent,
        },
        card_public_key: card_key().verifying_key().to_bytes(),
    }
}

pub fn token() -> Token {
    Token::sign(body(), &issuer_key())
}

pub fn request() -> PaymentRequestFields {
    PaymentRequestFields {
        request_id: RequestId::from_bytes([0xa1; 16]),
        challenge: [0x5c; 16],
        amount_minor: 1_250,
        currency: *b"EUR",
        merchant: MERCHANT,
        terminal: TerminalId::from_bytes([0x7e; 16]),
        hub_instance: HubInstanceId::from_bytes([0x4b; 16]),
    }
}

pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
