//! The published test vectors (`test-vectors.json`) reproduce exactly. `UPDATE_VECTORS=1` rewrites the
//! file from the code (only for a deliberate format change, reviewed like any other change).

use card_protocol::{
    card_signature::{sign_payment, signed_bytes},
    number::number_hash,
};
use serde_json::{Value, json};

use super::fixtures::*;

fn computed() -> Value {
    let token = token();
    let request = request();
    let hash = number_hash(&NUMBER_HASH_KEY, 3, &ISSUER, &token.body.number);
    json!({
        "inputs": {
            "issuerSeed": hex(ISSUER_SEED),
            "cardSeed": hex(CARD_SEED),
            "numberHashKey": hex(NUMBER_HASH_KEY),
            "numberHashKeyId": 3,
            "issuer": hex(ISSUER),
            "issuerKeyId": 7,
            "number": "4000120000000420",
            "cardId": hex(CARD_ID),
            "sequence": 42,
            "notAfter": 1_798_761_600u64,
            "maxAmountMinor": 5000,
            "currency": "EUR",
            "merchant": hex(MERCHANT),
            "channel": 1,
            "requestId": hex(request.request_id),
            "challenge": hex(request.challenge),
            "amountMinor": request.amount_minor,
            "terminal": hex(request.terminal),
            "hubInstance": hex(request.hub_instance),
        },
        "issuerPublicKey": hex(issuer_key().verifying_key().as_bytes()),
        "cardPublicKey": hex(card_key().verifying_key().as_bytes()),
        "tokenBody": hex(token.body.encode()),
        "issuerSignature": hex(token.signature),
        "token": hex(token.encode()),
        "tokenBase64url": token.to_base64url(),
        "cardPayMessage": hex(signed_bytes(&token, &request)),
        "cardSignature": hex(sign_payment(&card_key(), &token, &request)),
        "numberHash": hex(hash.hash),
    })
}

#[test]
fn vectors_reproduce_exactly() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-vectors.json");
    let computed = computed();
    if std::env::var("UPDATE_VECTORS").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&computed).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vectors");
    }
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("test-vectors.json"))
            .expect("valid JSON");
    assert_eq!(
        published, computed,
        "the code no longer produces the published vectors"
    );
    // And the published bytes verify on their own.
    let token = card_protocol::token::Token::from_base64url(
        published["tokenBase64url"].as_str().expect("token"),
    )
    .expect("decodes");
    token
        .verify(&registered_issuer_key())
        .expect("issuer signature verifies");
}
