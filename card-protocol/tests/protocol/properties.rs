//! Property tests: decoders never panic on any input; encodings round-trip.

use card_protocol::{
    MerchantId,
    apdu::Command,
    batch::NumberBatch,
    card::{CardApplication, CardInfo},
    card_signature::PaymentRequestFields,
    number::PrefixRange,
    token::{Channel, DomainRestrictions, Token, TokenBody},
};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::fixtures::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Token::decode(&bytes);
        let _ = NumberBatch::decode(&bytes);
        let _ = PaymentRequestFields::decode(&bytes);
        let _ = CardInfo::decode(&bytes);
        let _ = Command::parse(&bytes);
        let _ = Token::from_base64url(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn the_card_never_panics(commands in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)) {
        let mut issuer = card_protocol::issuer::IssuerFile::new(ISSUER, 7, ISSUER_SEED, range(), 4_000_000_000);
        let issuance = card_protocol::issuer::Issuance {
            count: 2,
            restrictions: DomainRestrictions { max_amount_minor: 1, currency: *b"EUR", merchant: None, channel: Channel::ContactlessPresent },
            not_after: 3_000_000_000,
        };
        let file = issuer.personalize(CARD_ID, CARD_SEED, &issuance).expect("personalize");
        let mut card = CardApplication::from_file(&file).expect("card");
        card.process(&Command::select().encode(), 0);
        for (i, command) in commands.iter().enumerate() {
            let outcome = card.process(command, i as u64 * 1000);
            prop_assert!(outcome.response.sw != 0);
        }
    }

    #[test]
    fn tokens_round_trip(
        index in 0u64..1_000_000_000,
        card_id in any::<[u8; 16]>(),
        sequence in any::<u32>(),
        not_after in any::<u64>(),
        max_amount in any::<u64>(),
        merchant in proptest::option::of(any::<[u8; 16]>().prop_filter("zero means any", |m| *m != [0; 16])),
        card_seed in any::<[u8; 32]>(),
        key_id in any::<u32>(),
    ) {
        let body = TokenBody {
            issuer: ISSUER,
            key_id,
            number: PrefixRange::new("400012").expect("prefix").number(index).expect("number"),
            card_id: card_id.into(),
            sequence,
            not_after,
            restrictions: DomainRestrictions { max_amount_minor: max_amount, currency: *b"USD", merchant: merchant.map(MerchantId::from_bytes), channel: Channel::ContactlessPresent },
            card_public_key: SigningKey::from_bytes(&card_seed).verifying_key().to_bytes(),
        };
        let token = Token::sign(body, &issuer_key());
        prop_assert_eq!(Token::decode(&token.encode()), Ok(token));
        prop_assert_eq!(Token::from_base64url(&token.to_base64url()), Ok(token));
    }

    #[test]
    fn requests_and_commands_round_trip(
        request_id in any::<[u8; 16]>(),
        challenge in any::<[u8; 16]>(),
        amount in any::<u64>(),
        ids in any::<([u8; 16], [u8; 16], [u8; 16])>(),
        ins in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 1..255),
        le in proptest::option::of(1usize..=256),
    ) {
        let fields = PaymentRequestFields {
            request_id: request_id.into(), challenge, amount_minor: amount, currency: *b"EUR",
            merchant: ids.0.into(), terminal: ids.1.into(), hub_instance: ids.2.into(),
        };
        prop_assert_eq!(PaymentRequestFields::decode(&fields.encode()), Ok(fields));
        let command = Command::new(0x80, ins, 0, 0, &data, le);
        prop_assert_eq!(Command::parse(&command.encode()), Ok(command));
    }
}
