//! Every change of a signed byte is refused; truncated and extended encodings are refused; weak,
//! non-canonical and foreign keys are refused; numbers outside the range or with a bad check digit too.

use card_protocol::{
    IssuerId, ProtocolError,
    batch::NumberBatch,
    card::CardInfo,
    card_signature::{PaymentRequestFields, sign_payment, verify_payment},
    number::PrefixRange,
    token::{IssuerKey, TOKEN_LEN, Token},
};
use ed25519_dalek::SigningKey;

use super::fixtures::*;

/// Decoding and verifying as the hub does; `Ok` only for a fully valid token.
fn accept(bytes: &[u8]) -> Result<Token, ProtocolError> {
    let token = Token::decode(bytes)?;
    token.verify(&registered_issuer_key())?;
    Ok(token)
}

#[test]
fn every_single_byte_change_of_a_token_is_refused() {
    let valid = token().encode();
    assert!(accept(&valid).is_ok());
    for index in 0..TOKEN_LEN {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut tampered = valid;
            tampered[index] ^= mask;
            assert!(
                accept(&tampered).is_err(),
                "byte {index} ^ {mask:#04x} was accepted"
            );
        }
    }
}

#[test]
fn every_single_byte_change_of_a_card_signature_or_signed_field_is_refused() {
    let token = token();
    let request = request();
    let signature = sign_payment(&card_key(), &token, &request);
    assert!(verify_payment(&token, &request, &signature).is_ok());
    for index in 0..64 {
        let mut tampered = signature;
        tampered[index] ^= 0x01;
        assert!(
            verify_payment(&token, &request, &tampered).is_err(),
            "signature byte {index}"
        );
    }
    let encoded = request.encode();
    for index in 0..encoded.len() {
        let mut tampered = encoded;
        tampered[index] ^= 0x01;
        // A change that still decodes must fail verification; one that does not decode is refused anyway.
        if let Ok(changed) = PaymentRequestFields::decode(&tampered) {
            assert!(
                verify_payment(&token, &changed, &signature).is_err(),
                "request byte {index}"
            );
        }
    }
    // The signature covers the whole token: another token (same card) does not verify it.
    let mut other = token;
    other.body.sequence += 1;
    let other = Token::sign(other.body, &issuer_key());
    assert!(verify_payment(&other, &request, &signature).is_err());
    // A signature by another card key does not verify against the token's card key.
    let foreign = sign_payment(&SigningKey::from_bytes(&[0x99; 32]), &token, &request);
    assert_eq!(
        verify_payment(&token, &request, &foreign),
        Err(ProtocolError::BadSignature)
    );
}

#[test]
fn truncated_and_extended_encodings_are_refused() {
    let token = token().encode();
    for bytes in [&token[..TOKEN_LEN - 1], &token[..0], &token[..10]] {
        assert!(Token::decode(bytes).is_err());
    }
    let mut extended = token.to_vec();
    extended.push(0);
    assert!(Token::decode(&extended).is_err());

    let request = request().encode();
    assert!(PaymentRequestFields::decode(&request[..request.len() - 1]).is_err());
    let mut longer = request.to_vec();
    longer.push(0);
    assert!(PaymentRequestFields::decode(&longer).is_err());

    let batch = NumberBatch::sign(
        &issuer_key(),
        ISSUER,
        7,
        CARD_ID,
        card_key().verifying_key().to_bytes(),
        2,
        vec![self::token()],
    )
    .expect("batch")
    .encode();
    assert!(NumberBatch::decode(&batch).is_ok());
    assert!(NumberBatch::decode(&batch[..batch.len() - 1]).is_err());
    let mut longer = batch.clone();
    longer.push(0);
    assert!(NumberBatch::decode(&longer).is_err());

    let info = CardInfo {
        card_id: CARD_ID,
        card_public_key: [1; 32],
        issuer: ISSUER,
        issuer_key_id: 7,
        load_counter: 1,
        next_sequence: 1,
        numbers_left: 3,
    }
    .encode();
    assert!(CardInfo::decode(&info).is_ok());
    assert!(CardInfo::decode(&info[..info.len() - 1]).is_err());
}

#[test]
fn weak_non_canonical_and_foreign_keys_are_refused() {
    // A token carrying a small-order card key does not decode, even when the issuer signed it.
    let mut weak = body();
    weak.card_public_key = [0; 32];
    weak.card_public_key[0] = 1;
    let signed = Token::sign(weak, &issuer_key()).encode();
    assert!(matches!(
        Token::decode(&signed),
        Err(ProtocolError::InvalidKey(_))
    ));
    // A non-canonical card key likewise.
    let mut non_canonical = body();
    non_canonical.card_public_key = [0xff; 32];
    non_canonical.card_public_key[0] = 0xee;
    non_canonical.card_public_key[31] = 0x7f;
    assert!(Token::decode(&Token::sign(non_canonical, &issuer_key()).encode()).is_err());
    // A token signed by another issuer key, or naming another key id or issuer, is refused.
    let forged = Token::sign(body(), &SigningKey::from_bytes(&[0x12; 32]));
    assert_eq!(
        forged.verify(&registered_issuer_key()),
        Err(ProtocolError::BadSignature)
    );
    let mut other_key_id = registered_issuer_key();
    other_key_id.key_id = 8;
    assert!(token().verify(&other_key_id).is_err());
    let other_issuer = IssuerKey {
        issuer: IssuerId::from_bytes([9; 16]),
        ..registered_issuer_key()
    };
    assert!(token().verify(&other_issuer).is_err());
}

#[test]
fn numbers_outside_the_range_or_with_a_bad_check_digit_are_refused() {
    let elsewhere = IssuerKey {
        range: PrefixRange::new("510000").expect("prefix"),
        ..registered_issuer_key()
    };
    assert!(matches!(
        token().verify(&elsewhere),
        Err(ProtocolError::InvalidNumber(_))
    ));
    let mut bytes = token().encode();
    // Number digits sit at offsets 21..37; the last one is the check digit.
    bytes[36] = if bytes[36] == b'9' {
        b'0'
    } else {
        bytes[36] + 1
    };
    assert!(matches!(
        Token::decode(&bytes),
        Err(ProtocolError::InvalidNumber(_))
    ));
    bytes[36] = b'x';
    assert!(Token::decode(&bytes).is_err());
}
