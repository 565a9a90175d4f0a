//! An independent check of the token and card-signature byte layouts.
//!
//! The published vectors (`vectors.rs`) are only compared with what the same encoders wrote, so a
//! layout change would just be republished. Here every byte is assembled by hand from the
//! documented layout (`token.rs`, `card_signature.rs` docs, README), signed and verified with
//! `ed25519_dalek` directly, and compared with the crate's encoder, decoder, signers and verifiers.

use card_protocol::{
    ProtocolError,
    card_signature::{PaymentRequestFields, sign_payment, signed_bytes, verify_payment},
    number::{CardNumber, PrefixRange},
    token::{BODY_LEN, Channel, DomainRestrictions, IssuerKey, TOKEN_LEN, Token, TokenBody},
};
use ed25519_dalek::{Signature, Signer};
use sha2::{Digest, Sha256};

use super::fixtures::{card_key, issuer_key};

/// Prefix 400012, account 987654321, Luhn check digit 5 (worked out by hand).
const NUMBER: &[u8; 16] = b"4000129876543215";
// Integers whose bytes all differ, written out big-endian by hand: a byte-order change shows.
const KEY_ID: u32 = 0x0A0B_0C0D;
const KEY_ID_BE: [u8; 4] = [0x0a, 0x0b, 0x0c, 0x0d];
const SEQUENCE: u32 = 0x1A2B_3C4D;
const SEQUENCE_BE: [u8; 4] = [0x1a, 0x2b, 0x3c, 0x4d];
const NOT_AFTER: u64 = 0x1122_3344_5566_7788;
const NOT_AFTER_BE: [u8; 8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
const MAX_AMOUNT: u64 = 0x0A1B_2C3D_4E5F_6071;
const MAX_AMOUNT_BE: [u8; 8] = [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71];
const AMOUNT: u64 = 0x00A1_B2C3_D4E5_F607;
const AMOUNT_BE: [u8; 8] = [0x00, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07];

/// A distinct 16-byte id per field (`first`, `first + 1`, …): two swapped fields cannot look alike.
fn raw(first: u8) -> [u8; 16] {
    std::array::from_fn(|i| first + i as u8)
}

/// The id of role `T` whose bytes are `raw(first)`.
fn id<T: From<[u8; 16]>>(first: u8) -> T {
    T::from(raw(first))
}

/// Appends `field` at its documented `offset`, checking that nothing was skipped or overlapped.
fn put(out: &mut Vec<u8>, offset: usize, field: &[u8]) {
    assert_eq!(
        out.len(),
        offset,
        "hand layout: a field should start at {offset}"
    );
    out.extend_from_slice(field);
}

fn body() -> TokenBody {
    TokenBody {
        issuer: id(0x10),
        key_id: KEY_ID,
        number: CardNumber::parse(NUMBER).expect("Luhn-valid number"),
        card_id: id(0x30),
        sequence: SEQUENCE,
        not_after: NOT_AFTER,
        restrictions: DomainRestrictions {
            max_amount_minor: MAX_AMOUNT,
            currency: *b"CHF",
            merchant: Some(id(0x50)),
            channel: Channel::ContactlessPresent,
        },
        card_public_key: card_key().verifying_key().to_bytes(),
    }
}

/// The 125-byte body of [`body`], from the documented table.
fn hand_body() -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, 0, &[0x01]); // version
    put(&mut b, 1, &raw(0x10)); // issuer organization id
    put(&mut b, 17, &KEY_ID_BE); // issuer key id
    put(&mut b, 21, NUMBER); // number, ASCII digits
    put(&mut b, 37, &raw(0x30)); // card id
    put(&mut b, 53, &SEQUENCE_BE); // sequence
    put(&mut b, 57, &NOT_AFTER_BE); // not-after
    put(&mut b, 65, &MAX_AMOUNT_BE); // maximum amount
    put(&mut b, 73, b"CHF"); // currency
    put(&mut b, 76, &raw(0x50)); // merchant organization id
    put(&mut b, 92, &[0x01]); // channel: CONTACTLESS_PRESENT
    put(&mut b, 93, card_key().verifying_key().as_bytes()); // card public key
    assert_eq!(b.len(), 125);
    b
}

/// `body || signature`, the issuer signing `domain || body` with ed25519_dalek directly.
fn hand_token_signed_over(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut signed = domain.to_vec();
    signed.extend_from_slice(body);
    let mut wire = body.to_vec();
    wire.extend_from_slice(&issuer_key().sign(&signed).to_bytes());
    wire
}

fn hand_token() -> Vec<u8> {
    hand_token_signed_over(b"ICH/token/v1", &hand_body())
}

fn registered() -> IssuerKey {
    IssuerKey {
        issuer: id(0x10),
        key_id: KEY_ID,
        public_key: issuer_key().verifying_key(),
        range: PrefixRange::new("400012").expect("prefix"),
    }
}

fn request() -> PaymentRequestFields {
    PaymentRequestFields {
        request_id: id(0x70),
        challenge: raw(0x90),
        amount_minor: AMOUNT,
        currency: *b"CHF",
        merchant: id(0x50),
        terminal: id(0xb0),
        hub_instance: id(0xd0),
    }
}

/// The full card-signed message for [`request`], over SHA-256 of `token_bytes`.
fn hand_card_message(token_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    put(&mut m, 0, b"ICH/card-pay/v1");
    put(&mut m, 15, &[0x00]);
    put(&mut m, 16, &Sha256::digest(token_bytes));
    put(&mut m, 48, &raw(0x70)); // request id
    put(&mut m, 64, &raw(0x90)); // challenge
    put(&mut m, 80, &AMOUNT_BE); // amount, u64 big-endian
    put(&mut m, 88, b"CHF"); // currency
    put(&mut m, 91, &raw(0x50)); // merchant id
    put(&mut m, 107, &raw(0xb0)); // terminal id
    put(&mut m, 123, &raw(0xd0)); // hub instance id
    assert_eq!(m.len(), 139);
    m
}

/// A well-formed token or payment whose signature covers other bytes.
const BAD_SIGNATURE: Result<(), ProtocolError> = Err(ProtocolError::BadSignature);

#[test]
fn token_body_encoding_matches_the_hand_assembled_layout() {
    assert_eq!((BODY_LEN, TOKEN_LEN), (125, 189));
    let hand = hand_body();
    let encoded = body().encode();
    // Field by field first, so a failure names the field.
    assert_eq!(encoded[0], 0x01, "version");
    assert_eq!(&encoded[1..17], &raw(0x10), "issuer organization id");
    assert_eq!(&encoded[17..21], &KEY_ID_BE, "issuer key id");
    assert_eq!(&encoded[21..37], NUMBER, "number digits");
    assert_eq!(&encoded[37..53], &raw(0x30), "card id");
    assert_eq!(&encoded[53..57], &SEQUENCE_BE, "sequence");
    assert_eq!(&encoded[57..65], &NOT_AFTER_BE, "not-after");
    assert_eq!(&encoded[65..73], &MAX_AMOUNT_BE, "maximum amount");
    assert_eq!(&encoded[73..76], b"CHF", "currency");
    assert_eq!(&encoded[76..92], &raw(0x50), "merchant");
    assert_eq!(encoded[92], 0x01, "channel");
    let card_public_key = card_key().verifying_key().to_bytes();
    assert_eq!(&encoded[93..125], &card_public_key, "card key");
    assert_eq!(encoded.as_slice(), hand.as_slice());

    // The wire token is body || signature, and its redaction zeroes exactly the number's digits
    // (bytes 21..37) and nothing else.
    let token = Token::sign(body(), &issuer_key());
    let wire = token.encode();
    assert_eq!(&wire[..125], hand.as_slice());
    let redacted = token.redacted();
    assert!(!redacted.windows(16).any(|w| w == NUMBER));
    assert_eq!(redacted[21..37], [0u8; 16]);
    assert_eq!(redacted[..21], wire[..21]);
    assert_eq!(redacted[37..], wire[37..]);

    // Any merchant: sixteen zero bytes at 76..92, nothing else moves, decoded back as `None`.
    let mut anywhere = body();
    anywhere.restrictions.merchant = None;
    let encoded = anywhere.encode();
    assert_eq!(&encoded[76..92], &[0u8; 16]);
    assert_eq!((&encoded[..76], &encoded[92..]), (&hand[..76], &hand[92..]));
    let decoded = TokenBody::decode(&encoded).expect("decodes");
    assert_eq!(decoded.restrictions.merchant, None);
}

#[test]
fn numbers_are_prefix_counter_and_luhn_digit() {
    let number = registered().range.number(987_654_321).expect("in range");
    assert_eq!(number.digits(), NUMBER);
    assert!(CardNumber::parse(b"4000129876543216").is_err());
}

#[test]
fn a_hand_signed_token_decodes_and_verifies() {
    let wire = hand_token();
    assert_eq!(wire.len(), 189);
    let token = Token::decode(&wire).expect("the hand-assembled token decodes");
    assert_eq!(token.body, body());
    assert_eq!(&token.signature[..], &wire[125..]);
    token
        .verify(&registered())
        .expect("an ed25519 signature over \"ICH/token/v1\" || body verifies");
    // Ed25519 is deterministic: the crate signs exactly the same message.
    assert_eq!(Token::sign(body(), &issuer_key()), token);

    // One flipped byte in fields that still decode and still name the same key: card id, sequence,
    // not-after, maximum amount, currency, merchant. The unchanged signature no longer verifies.
    for offset in [37, 56, 60, 70, 74, 80] {
        let mut tampered = wire.clone();
        tampered[offset] ^= 0x01;
        let token = Token::decode(&tampered).expect("still decodes");
        let verdict = token.verify(&registered());
        assert_eq!(verdict, BAD_SIGNATURE, "body byte {offset} flipped");
    }

    // The domain is part of the signed message: another domain, or none, is refused.
    let domains: [&[u8]; 3] = [b"ICH/token/v2", b"ICH/token/v1\x00", b""];
    for domain in domains {
        let token = Token::decode(&hand_token_signed_over(domain, &hand_body())).expect("decodes");
        assert_eq!(token.verify(&registered()), BAD_SIGNATURE);
    }
}

#[test]
fn card_signature_message_matches_the_hand_assembled_layout() {
    let wire = hand_token();
    let token = Token::decode(&wire).expect("decodes");
    let request = request();
    let message = hand_card_message(&wire);
    assert_eq!(&request.encode()[..], &message[48..]);
    assert_eq!(signed_bytes(&token, &request), message);

    // Signed by hand, verified by the crate.
    let by_hand = card_key().sign(&message).to_bytes();
    verify_payment(&token, &request, &by_hand).expect("the crate accepts the hand-signed message");

    // Signed by the crate, verified by hand over the hand-assembled message.
    let by_crate = sign_payment(&card_key(), &token, &request);
    card_key()
        .verifying_key()
        .verify_strict(&message, &Signature::from_bytes(&by_crate))
        .expect("the crate's card signature covers the hand-assembled message");
    assert_eq!(by_crate, by_hand);

    // The hash covers the whole 189-byte token (body || issuer signature), not the body alone.
    let body_only = card_key().sign(&hand_card_message(&wire[..125])).to_bytes();
    assert_eq!(verify_payment(&token, &request, &body_only), BAD_SIGNATURE);
    // Without the 0x00 after the domain, the signature is refused.
    let mut no_separator = message.clone();
    assert_eq!(no_separator.remove(15), 0x00);
    let bare = card_key().sign(&no_separator).to_bytes();
    assert_eq!(verify_payment(&token, &request, &bare), BAD_SIGNATURE);
}
