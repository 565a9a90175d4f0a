//! Issuer keys and cards: registered by financial providers with the issuer tooling's keys, checked
//! strictly, visible to their issuer only.

use api::auth::Role;
use base64::{Engine, engine::general_purpose::STANDARD};
use card_protocol::{
    CardId,
    issuer::{Issuance, IssuerFile},
    number::PrefixRange,
    token::{Channel, DomainRestrictions},
};
use entities::organization::OrganizationKind;
use hub_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

const REGISTER_KEY: &str = "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id keyId prefix status } } }";
const REGISTER_CARD: &str = "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id cardId status lastFour } } }";

fn key_input(issuer: &IssuerFile, key_id: u32, prefix: &str) -> Value {
    let public = issuer.signing_key().expect("key").verifying_key();
    json!({ "input": { "keyId": key_id, "publicKey": STANDARD.encode(public.as_bytes()), "prefix": prefix, "notAfter": "2030-01-01T00:00:00Z" } })
}

async fn issuer_keys_and_cards(backend: Backend) {
    let app = TestApp::start(backend).await;
    let bank = app
        .create_organization("Bank", OrganizationKind::FinancialProvider)
        .await;
    let other_bank = app
        .create_organization("Other Bank", OrganizationKind::FinancialProvider)
        .await;
    let supplier = app
        .create_organization("Not A Bank", OrganizationKind::Supplier)
        .await;
    let (bank_admin, bank_member) = (
        app.token(bank, Role::Admin).await,
        app.token(bank, Role::Member).await,
    );
    let other_admin = app.token(other_bank, Role::Admin).await;

    // The issuer tooling's key and a personalized card, as a bank would have them.
    let mut issuer = IssuerFile::new(
        bank.into(),
        1,
        [0x31; 32],
        PrefixRange::new("400012").expect("prefix"),
        1_900_000_000,
    );
    let card = issuer
        .personalize(
            CardId::from_bytes([0xca; 16]),
            [0x41; 32],
            &Issuance {
                count: 2,
                restrictions: DomainRestrictions {
                    max_amount_minor: 5000,
                    currency: *b"EUR",
                    merchant: None,
                    channel: Channel::ContactlessPresent,
                },
                not_after: 1_890_000_000,
            },
        )
        .expect("personalize");
    let card_key = card_protocol::card::CardApplication::from_file(&card)
        .expect("card")
        .info()
        .card_public_key;

    let key = app
        .graphql(
            Some(&bank_admin),
            REGISTER_KEY,
            key_input(&issuer, 1, "400012"),
        )
        .await;
    assert_eq!(key.data("/registerIssuerKey/issuerKey/status"), "ACTIVE");
    let key_id = key.data("/registerIssuerKey/issuerKey/id").clone();
    let registered = app
        .graphql(Some(&bank_member), REGISTER_CARD, json!({ "input": { "cardId": card.card_id, "publicKey": STANDARD.encode(card_key), "lastFour": "4242" } }))
        .await;
    assert_eq!(registered.data("/registerCard/card/status"), "ACTIVE");
    let card_gid = registered.data("/registerCard/card/id").clone();

    // Refusals, each a coded error that changes nothing.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak_key = json!({ "input": { "keyId": 2, "publicKey": STANDARD.encode(weak), "prefix": "400013", "notAfter": "2030-01-01T00:00:00Z" } });
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    let non_canonical_key = json!({ "input": { "keyId": 2, "publicKey": STANDARD.encode(non_canonical), "prefix": "400013", "notAfter": "2030-01-01T00:00:00Z" } });
    let other_issuer = IssuerFile::new(
        other_bank.into(),
        1,
        [0x32; 32],
        PrefixRange::new("400000").expect("prefix"),
        1_900_000_000,
    );
    let supplier_admin = app.token(supplier, Role::Admin).await;
    let retailer = app.token(app.retailer_id, Role::Admin).await;
    let before = app.fingerprint().await;
    let cases: Vec<(&str, &String, &str, Value, &str)> = vec![
        (
            "weak key",
            &bank_admin,
            REGISTER_KEY,
            weak_key,
            "VALIDATION",
        ),
        (
            "non-canonical key",
            &bank_admin,
            REGISTER_KEY,
            non_canonical_key,
            "VALIDATION",
        ),
        (
            "key id reused",
            &bank_admin,
            REGISTER_KEY,
            key_input(&issuer, 1, "400014"),
            "CONFLICT",
        ),
        (
            "overlapping prefix of another issuer",
            &other_admin,
            REGISTER_KEY,
            key_input(&other_issuer, 1, "4000120"),
            "CONFLICT",
        ),
        (
            "covering prefix of another issuer",
            &other_admin,
            REGISTER_KEY,
            key_input(&other_issuer, 1, "400012"),
            "CONFLICT",
        ),
        (
            "bad prefix",
            &bank_admin,
            REGISTER_KEY,
            key_input(&issuer, 3, "12ab56"),
            "VALIDATION",
        ),
        (
            "a member manages no keys",
            &bank_member,
            REGISTER_KEY,
            key_input(&issuer, 4, "400015"),
            "FORBIDDEN",
        ),
        (
            "duplicate card",
            &bank_member,
            REGISTER_CARD,
            json!({ "input": { "cardId": card.card_id, "publicKey": STANDARD.encode(card_key), "lastFour": "4242" } }),
            "CONFLICT",
        ),
        (
            "bad last four",
            &bank_member,
            REGISTER_CARD,
            json!({ "input": { "cardId": "0123456789abcdef0123456789abcdef", "publicKey": STANDARD.encode(card_key), "lastFour": "42a2" } }),
            "VALIDATION",
        ),
        (
            "bad card id",
            &bank_member,
            REGISTER_CARD,
            json!({ "input": { "cardId": "not-a-card", "publicKey": STANDARD.encode(card_key), "lastFour": "4242" } }),
            "VALIDATION",
        ),
    ];
    for (case, token, query, variables, code) in cases {
        let response = app.graphql(Some(token), query, variables).await;
        assert_eq!(
            response.error_code(),
            Some(code),
            "{case}: {}",
            response.body
        );
    }
    app.graphql(
        Some(&supplier_admin),
        REGISTER_KEY,
        key_input(&issuer, 9, "499999"),
    )
    .await
    .expect_error("FORBIDDEN");
    // Nobody else sees the bank's keys and cards.
    for id in [&key_id, &card_gid] {
        app.graphql(
            Some(&retailer),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .expect_error("NOT_FOUND");
        app.graphql(
            Some(&other_admin),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .expect_error("NOT_FOUND");
    }
    let none = app
        .graphql(
            Some(&other_admin),
            "{ issuerKeys { id } cards { totalCount } }",
            json!({}),
        )
        .await;
    assert!(
        none.data("/issuerKeys")
            .as_array()
            .expect("keys")
            .is_empty()
    );
    assert_eq!(none.data("/cards/totalCount"), 0);
    assert_eq!(app.fingerprint().await, before, "refusals changed nothing");

    // Life cycles: block/unblock a card; retire then revoke a key; the reverse steps are refused.
    let block = "mutation($id: ID!) { blockCard(input: { id: $id }) { card { status } } }";
    assert_eq!(
        app.graphql(Some(&bank_member), block, json!({ "id": card_gid }))
            .await
            .data("/blockCard/card/status"),
        "BLOCKED"
    );
    app.graphql(Some(&bank_member), block, json!({ "id": card_gid }))
        .await
        .expect_error("INVALID_TRANSITION");
    let retire =
        "mutation($id: ID!) { retireIssuerKey(input: { id: $id }) { issuerKey { status } } }";
    let revoke =
        "mutation($id: ID!) { revokeIssuerKey(input: { id: $id }) { issuerKey { status } } }";
    app.graphql(Some(&other_admin), retire, json!({ "id": key_id }))
        .await
        .expect_error("NOT_FOUND");
    assert_eq!(
        app.graphql(Some(&bank_admin), retire, json!({ "id": key_id }))
            .await
            .data("/retireIssuerKey/issuerKey/status"),
        "RETIRED"
    );
    app.graphql(Some(&bank_admin), retire, json!({ "id": key_id }))
        .await
        .expect_error("INVALID_TRANSITION");
    assert_eq!(
        app.graphql(Some(&bank_admin), revoke, json!({ "id": key_id }))
            .await
            .data("/revokeIssuerKey/issuerKey/status"),
        "REVOKED"
    );
    app.graphql(Some(&bank_admin), revoke, json!({ "id": key_id }))
        .await
        .expect_error("INVALID_TRANSITION");
    let listed = app.graphql(Some(&bank_member), "{ issuerKeys { keyId status prefix } cards { totalCount edges { node { lastFour status } } } }", json!({})).await;
    assert_eq!(listed.data("/issuerKeys/0/status"), "REVOKED");
    assert_eq!(listed.data("/cards/edges/0/node/lastFour"), "4242");
    app.stop().await;
}
on_both_backends!(keys_and_cards, issuer_keys_and_cards);
