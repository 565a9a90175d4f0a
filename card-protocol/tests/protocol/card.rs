//! The card application state machine over APDUs.

use super::fixtures::*;
use card_protocol::{
    CardId,
    apdu::{self, Command, Response, chain, sw},
    batch::NumberBatch,
    card::{CardApplication, CardFile, CardInfo, MAX_RESPONSE_CHUNK, MIN_GENERATE_INTERVAL_MS},
    card_signature::{sign_payment, verify_payment},
    issuer::{Issuance, IssuerFile},
    token::{Channel, DomainRestrictions, TOKEN_LEN, Token},
};

const FAR_FUTURE: u64 = 4_000_000_000;

fn issuance(count: usize) -> Issuance {
    Issuance {
        count,
        restrictions: DomainRestrictions {
            max_amount_minor: 5_000,
            currency: *b"EUR",
            merchant: None,
            channel: Channel::ContactlessPresent,
        },
        not_after: FAR_FUTURE - 1,
    }
}

fn issuer() -> IssuerFile {
    IssuerFile::new(ISSUER, 7, ISSUER_SEED, range(), FAR_FUTURE)
}

fn personalized(count: usize) -> (IssuerFile, CardFile) {
    let mut issuer = issuer();
    let card = issuer
        .personalize(CARD_ID, CARD_SEED, &issuance(count))
        .expect("personalize");
    (issuer, card)
}

/// Sends a command and follows `61xx` with GET RESPONSE, like a reader does.
fn transmit(card: &mut CardApplication, command: &Command, now: u64) -> (Response, bool) {
    let outcome = card.process(&command.encode(), now);
    let mut persist = outcome.persist;
    let mut response = outcome.response;
    let mut data = std::mem::take(&mut response.data);
    while let Some(pending) = response.pending() {
        let next = card.process(
            &Command::new(0x00, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(pending)).encode(),
            now,
        );
        persist |= next.persist;
        response = next.response;
        data.extend_from_slice(&response.data);
    }
    (
        Response {
            data,
            sw: response.sw,
        },
        persist,
    )
}

fn select(card: &mut CardApplication) {
    assert_eq!(
        card.process(&Command::select().encode(), 0).response.sw,
        sw::OK
    );
}

fn generate() -> Command {
    Command::new(
        apdu::CLA_PROPRIETARY,
        apdu::INS_GENERATE_PAYMENT,
        0,
        0,
        &request().encode(),
        Some(256),
    )
}

fn info(card: &mut CardApplication) -> CardInfo {
    let (response, _) = transmit(
        card,
        &Command::new(
            apdu::CLA_PROPRIETARY,
            apdu::INS_CARD_INFO,
            0,
            0,
            &[],
            Some(256),
        ),
        0,
    );
    assert_eq!(response.sw, sw::OK);
    CardInfo::decode(&response.data).expect("card info")
}

#[test]
fn generate_payment_answers_with_chaining_and_exact_bytes() {
    let (_, file) = personalized(3);
    let mut card = CardApplication::from_file(&file).expect("card");
    select(&mut card);
    let first = card.process(&generate().encode(), 1_000);
    assert!(
        first.persist,
        "the sequence must be saved before the answer leaves the card"
    );
    assert_eq!(first.response.data.len(), MAX_RESPONSE_CHUNK);
    assert_eq!(
        first.response.sw,
        sw::MORE_DATA | (TOKEN_LEN + 64 - MAX_RESPONSE_CHUNK) as u16
    );
    let rest = card.process(
        &Command::new(0x00, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(13)).encode(),
        1_000,
    );
    assert_eq!(rest.response.sw, sw::OK);
    let mut answer = first.response.data;
    answer.extend_from_slice(&rest.response.data);
    let token = Token::decode(&answer[..TOKEN_LEN]).expect("token");
    token
        .verify(&registered_issuer_key())
        .expect("issued by the issuer");
    let signature: [u8; 64] = answer[TOKEN_LEN..].try_into().expect("64 bytes");
    assert_eq!(
        signature,
        sign_payment(&card_key(), &token, &request()),
        "exact signature bytes"
    );
    verify_payment(&token, &request(), &signature).expect("card signature verifies");
    assert_eq!(token.body.sequence, 1);
    // Nothing more is pending.
    let extra = card.process(
        &Command::new(0x00, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(256)).encode(),
        1_000,
    );
    assert_eq!(extra.response.sw, sw::COMMAND_NOT_ALLOWED);
}

#[test]
fn a_sequence_is_never_reused_across_save_and_load_even_if_the_answer_is_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("card.json");
    let (_, file) = personalized(3);
    file.save(&path).expect("save");
    let mut sequences = Vec::new();
    for attempt in 0..3u64 {
        let mut card =
            CardApplication::from_file(&CardFile::load(&path).expect("load")).expect("card");
        select(&mut card);
        let outcome = card.process(&generate().encode(), attempt * 1_000);
        assert!(outcome.persist);
        card.to_file()
            .save(&path)
            .expect("persist before answering");
        // The first answer is lost on the way (the card "dies" before GET RESPONSE); the others complete.
        if attempt == 0 {
            continue;
        }
        let rest = card.process(
            &Command::new(0x00, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(256)).encode(),
            0,
        );
        let mut answer = outcome.response.data;
        answer.extend_from_slice(&rest.response.data);
        sequences.push(
            Token::decode(&answer[..TOKEN_LEN])
                .expect("token")
                .body
                .sequence,
        );
    }
    assert_eq!(
        sequences,
        [2, 3],
        "sequence 1 went out with the lost answer and never comes back"
    );
    let mut card = CardApplication::from_file(&CardFile::load(&path).expect("load")).expect("card");
    select(&mut card);
    assert_eq!(
        card.process(&generate().encode(), 10_000).response.sw,
        sw::NO_NUMBERS_LEFT
    );
}

#[test]
fn generate_payment_is_rate_limited() {
    let (_, file) = personalized(3);
    let mut card = CardApplication::from_file(&file).expect("card");
    select(&mut card);
    assert!(card.process(&generate().encode(), 5_000).persist);
    let too_soon = card.process(&generate().encode(), 5_000 + MIN_GENERATE_INTERVAL_MS - 1);
    assert_eq!(too_soon.response.sw, sw::CONDITIONS_NOT_SATISFIED);
    assert!(!too_soon.persist, "a refused command changes nothing");
    assert_eq!(info(&mut card).next_sequence, 2);
    assert!(
        card.process(&generate().encode(), 5_000 + MIN_GENERATE_INTERVAL_MS)
            .persist
    );
}

#[test]
fn card_info_reveals_no_unused_number() {
    let (_, file) = personalized(4);
    let mut card = CardApplication::from_file(&file).expect("card");
    select(&mut card);
    let (response, persist) = transmit(
        &mut card,
        &Command::new(
            apdu::CLA_PROPRIETARY,
            apdu::INS_CARD_INFO,
            0,
            0,
            &[],
            Some(256),
        ),
        0,
    );
    assert!(!persist);
    let info = CardInfo::decode(&response.data).expect("info");
    assert_eq!(
        (info.numbers_left, info.next_sequence, info.load_counter),
        (4, 1, 1)
    );
    assert_eq!(info.card_public_key, card_key().verifying_key().to_bytes());
    for text in &file.numbers {
        let token = Token::from_base64url(text).expect("token");
        let digits = token.body.number.digits();
        assert!(
            !response.data.windows(16).any(|window| window == digits),
            "CARD INFO leaked a number"
        );
        assert!(
            !response
                .data
                .windows(4)
                .any(|window| window == &digits[12..]),
            "or its last four"
        );
    }
}

fn load(card: &mut CardApplication, batch: &NumberBatch) -> u16 {
    let commands = chain(
        apdu::CLA_PROPRIETARY,
        apdu::INS_LOAD_NUMBERS,
        &batch.encode(),
    );
    assert!(commands.len() > 1, "a batch needs command chaining");
    let mut last = 0;
    for command in commands {
        last = card.process(&command.encode(), 0).response.sw;
    }
    last
}

#[test]
fn load_numbers_accepts_only_fresh_batches_of_this_cards_issuer() {
    let (mut issuer, file) = personalized(2);
    let mut card = CardApplication::from_file(&file).expect("card");
    select(&mut card);
    let top_up = issuer.top_up(CARD_ID, &issuance(5)).expect("top up");

    // Foreign: signed by another issuer key.
    let mut foreign_issuer = IssuerFile::new(ISSUER, 7, [0x44; 32], range(), FAR_FUTURE);
    foreign_issuer
        .personalize(CARD_ID, CARD_SEED, &issuance(1))
        .expect("personalize");
    let foreign = foreign_issuer
        .top_up(CARD_ID, &issuance(3))
        .expect("foreign batch");
    assert_eq!(load(&mut card, &foreign), sw::SECURITY_NOT_SATISFIED);
    // For another card key.
    let mut other_card_issuer = issuer.clone();
    let other_card = other_card_issuer
        .personalize(CardId::from_bytes([0xd0; 16]), [0x55; 32], &issuance(1))
        .expect("other card");
    let other_batch = other_card_issuer
        .top_up(CardId::from_bytes([0xd0; 16]), &issuance(3))
        .expect("batch for the other card");
    assert_ne!(other_card.card_id, file.card_id);
    assert_eq!(load(&mut card, &other_batch), sw::SECURITY_NOT_SATISFIED);
    // A token for another card key smuggled into a batch signed for this card.
    let smuggled_token = other_batch.tokens[0];
    let smuggled = NumberBatch::sign(
        &issuer_key(),
        ISSUER,
        7,
        CARD_ID,
        card_key().verifying_key().to_bytes(),
        9,
        vec![smuggled_token],
    )
    .expect("batch");
    assert_eq!(load(&mut card, &smuggled), sw::SECURITY_NOT_SATISFIED);
    assert_eq!(
        info(&mut card).numbers_left,
        2,
        "refused batches changed nothing"
    );

    // The genuine top-up loads; replaying it, or an older batch, does not.
    assert_eq!(load(&mut card, &top_up), sw::OK);
    let after = info(&mut card);
    assert_eq!((after.numbers_left, after.load_counter), (7, 2));
    assert_eq!(
        load(&mut card, &top_up),
        sw::SECURITY_NOT_SATISFIED,
        "replayed batch"
    );
    let mut rolled_back = top_up.clone();
    rolled_back.load_counter = 3;
    let rolled_back = NumberBatch::sign(
        &issuer_key(),
        ISSUER,
        7,
        CARD_ID,
        card_key().verifying_key().to_bytes(),
        3,
        rolled_back.tokens,
    )
    .expect("batch");
    assert_eq!(
        load(&mut card, &rolled_back),
        sw::SECURITY_NOT_SATISFIED,
        "sequences the card has passed"
    );
    assert_eq!(info(&mut card).numbers_left, 7);
    // A tampered batch is refused.
    let mut bytes = issuer
        .top_up(CARD_ID, &issuance(2))
        .expect("batch")
        .encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut sw_seen = 0;
    for command in chain(apdu::CLA_PROPRIETARY, apdu::INS_LOAD_NUMBERS, &bytes) {
        sw_seen = card.process(&command.encode(), 0).response.sw;
    }
    assert_eq!(sw_seen, sw::SECURITY_NOT_SATISFIED);
}

#[test]
fn unknown_instructions_classes_and_states_answer_the_right_status_words() {
    let (_, file) = personalized(1);
    let mut card = CardApplication::from_file(&file).expect("card");
    let status = |card: &mut CardApplication, bytes: &[u8]| card.process(bytes, 0).response.sw;
    assert_eq!(
        status(&mut card, &generate().encode()),
        sw::COMMAND_NOT_ALLOWED,
        "nothing selected yet"
    );
    assert_eq!(
        status(&mut card, &[0x00, 0xA4, 0x04, 0x00, 0x03, 1, 2, 3, 0x00]),
        sw::APPLICATION_NOT_FOUND
    );
    assert_eq!(
        status(
            &mut card,
            &[
                0x00, 0xA4, 0x00, 0x00, 0x08, 0xF0, b'I', b'C', b'H', b'P', b'A', b'Y', 1
            ]
        ),
        sw::WRONG_P1_P2
    );
    select(&mut card);
    assert_eq!(
        status(&mut card, &[0x80, 0x99, 0x00, 0x00, 0x00]),
        sw::INS_NOT_SUPPORTED
    );
    assert_eq!(
        status(&mut card, &[0x00, 0x99, 0x00, 0x00, 0x00]),
        sw::INS_NOT_SUPPORTED
    );
    assert_eq!(
        status(&mut card, &[0xA0, 0x10, 0x00, 0x00, 0x00]),
        sw::CLA_NOT_SUPPORTED
    );
    assert_eq!(
        status(&mut card, &[0x80, 0x10, 0x00]),
        sw::WRONG_LENGTH,
        "shorter than a header"
    );
    assert_eq!(
        status(&mut card, &[0x80, 0x20, 0x00, 0x00, 0x02, 0x01, 0x02]),
        sw::WRONG_LENGTH,
        "short request"
    );
    assert_eq!(
        status(&mut card, &[0x00, 0xC0, 0x00, 0x00, 0x00]),
        sw::COMMAND_NOT_ALLOWED,
        "nothing to get"
    );
    let mut malformed_currency = request().encode();
    malformed_currency[40] = b'e';
    assert_eq!(
        status(
            &mut card,
            &Command::new(
                0x80,
                apdu::INS_GENERATE_PAYMENT,
                0,
                0,
                &malformed_currency,
                Some(256)
            )
            .encode()
        ),
        sw::WRONG_DATA
    );
    assert_eq!(
        status(
            &mut card,
            &[0x80, apdu::INS_LOAD_NUMBERS, 0x00, 0x00, 0x01, 0x00]
        ),
        sw::WRONG_DATA
    );
    // A power cycle deselects.
    card.reset();
    assert_eq!(
        status(&mut card, &generate().encode()),
        sw::COMMAND_NOT_ALLOWED
    );
    // The card still has its number: nothing above consumed it.
    select(&mut card);
    assert_eq!(info(&mut card).numbers_left, 1);
}

/// A state file that cannot be read says why, with the file system's error as its cause.
#[test]
fn a_missing_state_file_keeps_its_cause() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no-card.json");
    match card_protocol::card::CardFile::load(&missing) {
        Err(card_protocol::FileError::Io { source, path }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(path, missing);
        }
        other => panic!("expected an I/O error with its cause, got {other:?}"),
    }
    std::fs::write(&missing, b"not json").expect("write");
    let garbled = card_protocol::card::CardFile::load(&missing);
    assert!(
        matches!(garbled, Err(card_protocol::FileError::Content { .. })),
        "{garbled:?}"
    );
}
