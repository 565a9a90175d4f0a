//! A tap end to end, and who is shown what of it: the request, its challenge, the declines.

use api::auth::Role;
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use ed25519_dalek::SigningKey;
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, RecordKind,
    checkout::{Checkout, PAY, REQUEST},
    decode_global_id, encode_global_id, on_both_backends,
};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

async fn a_tap_pays_once(backend: Backend) {
    let mut checkout = Checkout::new(backend).await;
    let request = checkout.request(1_200).await;
    let (token, signature) = checkout.tap(&request);
    let paid = checkout.pay(&request, &token, &signature, "tap-1").await;
    assert_eq!(paid["status"], "AUTHORIZED", "{paid}");
    assert_eq!(paid["payment"]["amountMinor"], "1200");
    assert_eq!(
        paid["payment"]["issuer"]["name"], "Card Bank",
        "the card's issuer, a party of the payment"
    );

    // The same bytes under the same key: the original outcome. Under another key: a replay, declined.
    let again = checkout.pay(&request, &token, &signature, "tap-1").await;
    assert_eq!(again["evidenceId"], paid["evidenceId"]);
    assert_eq!(again["status"], "AUTHORIZED");
    let replay = checkout
        .pay(&request, &token, &signature, "tap-1-replay")
        .await;
    assert_eq!(replay["status"], "DECLINED");
    assert_eq!(replay["declineReason"], "REQUEST_ALREADY_PAID");

    let app = &checkout.app;
    let order = app.graphql(Some(&checkout.member), "query($id: ID!) { node(id: $id) { ... on Order { balanceMinor paidMinor payments { status amountMinor } } } }", json!({ "id": checkout.order })).await;
    assert_eq!(order.data("/node/balanceMinor"), "1800");
    assert_eq!(order.data("/node/payments/0/status"), "AUTHORIZED");
    // The number is stored as its keyed hash only; evidence keeps the token with the digits zeroed.
    let digits = card_protocol::token::Token::from_base64url(&token)
        .expect("token")
        .body
        .number;
    let evidence = entities::payment_evidence::Entity::find()
        .all(&app.hub.state.db)
        .await
        .expect("evidence");
    assert_eq!(evidence.len(), 2, "one authorization, one declined replay");
    assert!(evidence.iter().any(|e| e.replay), "the replay is audited");
    for row in &evidence {
        assert!(
            !row.redacted_token.windows(16).any(|w| w == digits.digits()),
            "the full number is not stored"
        );
    }
    // The bank sees its card's payment; nobody else does.
    let bank_view = app
        .graphql(
            Some(&checkout.bank_admin),
            "query($id: ID!) { node(id: $id) { ... on Payment { amountMinor } } }",
            json!({ "id": paid["payment"]["id"] }),
        )
        .await;
    assert_eq!(bank_view.data("/node/amountMinor"), "1200");
    // Declines: the merchant and the card's issuer see them; strangers and devices do not.
    let declines = "{ paymentDeclines { totalCount edges { node { reason replay } } } }";
    for token in [&checkout.member, &checkout.bank_admin] {
        let seen = app.graphql(Some(token), declines, json!({})).await;
        assert_eq!(seen.data("/paymentDeclines/totalCount"), 1);
        assert_eq!(seen.data("/paymentDeclines/edges/0/node/replay"), true);
    }
    let stranger = app
        .create_organization("Stranger Bank", OrganizationKind::FinancialProvider)
        .await;
    let stranger = app.token(stranger, Role::Admin).await;
    assert_eq!(
        app.graphql(Some(&stranger), declines, json!({}))
            .await
            .data("/paymentDeclines/totalCount"),
        0
    );
    assert_eq!(
        app.graphql(
            Some(&stranger),
            "{ paymentRequests { totalCount } }",
            json!({})
        )
        .await
        .data("/paymentRequests/totalCount"),
        0
    );
    app.graphql(Some(&checkout.device_token()), declines, json!({}))
        .await
        .expect_error("FORBIDDEN");
    // A device sees its own terminal's requests only.
    let mine = app
        .graphql(
            Some(&checkout.device_token()),
            "{ paymentRequests { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(mine.data("/paymentRequests/totalCount"), 1);
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let location = app
        .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Other\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let other_key = SigningKey::from_bytes(&[0x66; 32]);
    let other = app
        .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
            json!({ "input": { "name": "Other till", "locationId": location, "publicKey": STANDARD.encode(other_key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    let other_device = Checkout {
        device: decode_global_id(&other),
        device_key: other_key,
        ..checkout
    };
    let theirs = other_device
        .app
        .graphql(
            Some(&other_device.device_token()),
            "{ paymentRequests { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        theirs.data("/paymentRequests/totalCount"),
        0,
        "another terminal's requests are invisible"
    );
    other_device.app.stop().await;
}
on_both_backends!(tap_pays_once, a_tap_pays_once);

async fn declines_consume_nothing_flow(backend: Backend) {
    let mut checkout = Checkout::new(backend).await;
    let request = checkout.request(500).await;
    let (token, signature) = checkout.tap(&request);
    // A tampered card signature is declined; the request and the number stay usable.
    let mut bad = URL_SAFE_NO_PAD.decode(&signature).expect("b64");
    bad[0] ^= 1;
    let before = checkout.app.fingerprint().await;
    let request_before = super::stored_request(&checkout, &request).await;
    let declined = checkout
        .pay(&request, &token, &URL_SAFE_NO_PAD.encode(&bad), "bad-sig")
        .await;
    assert_eq!(
        declined["declineReason"], "BAD_CARD_SIGNATURE",
        "{declined}"
    );
    let after = checkout.app.fingerprint().await;
    // The decline's evidence is recorded, audited like any change, and noted on the open request.
    super::assert_decline_wrote_only_its_own(&before, &after, "BAD_CARD_SIGNATURE");
    super::assert_decline_noted(
        &request_before,
        &super::stored_request(&checkout, &request).await,
        "BAD_CARD_SIGNATURE",
    );
    assert_eq!(
        after.rows("payment_evidence"),
        before.rows("payment_evidence") + 1
    );
    let paid = checkout.pay(&request, &token, &signature, "good-sig").await;
    assert_eq!(
        paid["status"], "AUTHORIZED",
        "the declined attempt consumed nothing: {paid}"
    );

    // A blocked card, a revoked issuer key, a cancelled request.
    let next = checkout.request(300).await;
    let (token, signature) = checkout.tap(&next);
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { blockCard(input: { id: $id }) { card { status } } }",
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data("/blockCard");
    assert_eq!(
        checkout.pay(&next, &token, &signature, "blocked").await["declineReason"],
        "CARD_BLOCKED"
    );
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { unblockCard(input: { id: $id }) { card { status } } }",
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data("/unblockCard");
    let cancel = checkout
        .app
        .graphql(Some(&checkout.member), "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }", json!({ "id": next["id"] }))
        .await;
    assert_eq!(
        cancel.data("/cancelPaymentRequest/paymentRequest/status"),
        "CANCELLED"
    );
    assert_eq!(
        checkout.pay(&next, &token, &signature, "cancelled").await["declineReason"],
        "REQUEST_CANCELLED"
    );
    let third = checkout.request(300).await;
    let (token, signature) = checkout.tap(&third);
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { revokeIssuerKey(input: { id: $id }) { issuerKey { status } } }",
            json!({ "id": checkout.key_gid }),
        )
        .await
        .data("/revokeIssuerKey");
    assert_eq!(
        checkout.pay(&third, &token, &signature, "revoked").await["declineReason"],
        "ISSUER_KEY_REVOKED"
    );
    // The payment authorized earlier under the revoked key is flagged, not voided.
    let flagged = checkout
        .app
        .graphql(
            Some(&checkout.member),
            "query($id: ID!) { node(id: $id) { ... on Order { payments { status flags } } } }",
            json!({ "id": checkout.order }),
        )
        .await;
    assert_eq!(flagged.data("/node/payments/0/status"), "AUTHORIZED");
    assert_eq!(
        flagged.data("/node/payments/0/flags"),
        &json!(["ISSUER_KEY_REVOKED"])
    );

    // Refused requests are errors, not declines: above the balance, a second open request, a stranger.
    let app = &checkout.app;
    let request_input = |amount: i64| json!({ "input": { "orderId": checkout.order, "terminalId": encode_global_id(RecordKind::Device, checkout.device), "amountMinor": amount, "currency": "EUR" } });
    app.graphql(Some(&checkout.member), REQUEST, request_input(10_000))
        .await
        .expect_error("VALIDATION");
    app.graphql(Some(&checkout.member), REQUEST, request_input(100))
        .await
        .expect_error("CONFLICT");
    app.graphql(Some(&checkout.bank_admin), REQUEST, request_input(100))
        .await
        .expect_error("NOT_FOUND");
    // Only the terminal's device submits.
    app.graphql(Some(&checkout.member), PAY, json!({ "input": { "requestId": third["id"], "token": token, "cardSignature": signature, "idempotencyKey": "member" } }))
        .await
        .expect_error("FORBIDDEN");
    checkout.app.stop().await;
}
on_both_backends!(declines_consume_nothing, declines_consume_nothing_flow);

/// Evidence is shown to an issuer only when that issuer's signature verified: a junk token naming a
/// stranger as issuer does not reveal the merchant's requests to it.
async fn only_verified_issuers_see_declines(backend: Backend) {
    let checkout = Checkout::new(backend).await;
    let app = &checkout.app;
    let nosy = app
        .create_organization("Nosy Bank", OrganizationKind::FinancialProvider)
        .await;
    let nosy_admin = app.token(nosy, Role::Admin).await;
    let request = checkout.request(500).await;
    // Names the stranger as issuer, signed by nobody it registered.
    let junk = checkout.forge(&request, 1, |body, keys| {
        body.issuer = nosy.into();
        keys[0] = SigningKey::from_bytes(&[0x55; 32]);
    });
    let outcome = checkout.pay(&request, &junk.0, &junk.1, "junk").await;
    assert_eq!(outcome["declineReason"], "UNKNOWN_ISSUER_KEY", "{outcome}");
    // Names the genuine bank, with a bad signature: the bank does not see it either.
    let bad = checkout.forge(&request, 2, |_, keys| {
        keys[0] = SigningKey::from_bytes(&[0x56; 32]);
    });
    let outcome = checkout.pay(&request, &bad.0, &bad.1, "bad").await;
    assert_eq!(
        outcome["declineReason"], "BAD_ISSUER_SIGNATURE",
        "{outcome}"
    );
    // A verified token declined later on (an amount above the card's domain limit) is the bank's to see.
    let limited = checkout.forge(&request, 3, |body, _| {
        body.restrictions.max_amount_minor = 100;
    });
    let outcome = checkout
        .pay(&request, &limited.0, &limited.1, "limited")
        .await;
    assert_eq!(outcome["declineReason"], "DOMAIN_RESTRICTION", "{outcome}");

    let declines = "{ paymentDeclines { totalCount edges { node { reason } } } }";
    let seen = |token: String| async move {
        app.graphql(Some(&token), declines, json!({}))
            .await
            .data("/paymentDeclines")
            .clone()
    };
    let merchant = seen(checkout.member.clone()).await;
    assert_eq!(merchant["totalCount"], 3, "the merchant sees every decline");
    let nosy_view = seen(nosy_admin).await;
    assert_eq!(nosy_view["totalCount"], 0, "{nosy_view}");
    let bank_view = seen(checkout.bank_admin.clone()).await;
    assert_eq!(bank_view["totalCount"], 1, "{bank_view}");
    assert_eq!(
        bank_view["edges"][0]["node"]["reason"],
        "DOMAIN_RESTRICTION"
    );
    checkout.app.stop().await;
}
on_both_backends!(
    declines_for_verified_issuers,
    only_verified_issuers_see_declines
);

/// The challenge is shown to the member who opened the request and to the terminal's device only.
async fn challenges_are_shown_to_requester_and_terminal(backend: Backend) {
    let checkout = Checkout::new(backend).await;
    let app = &checkout.app;
    let request = checkout.request(500).await;
    assert!(request["challenge"].is_string(), "the requester sees it");
    let query = "query($id: ID!) { node(id: $id) { ... on PaymentRequest { id challenge } } }";
    let id = request["id"].clone();
    let challenge_for = |token: String| {
        let id = id.clone();
        async move {
            app.graphql(Some(&token), query, json!({ "id": id }))
                .await
                .data("/node/challenge")
                .clone()
        }
    };
    assert_eq!(
        challenge_for(checkout.member.clone()).await,
        request["challenge"]
    );
    let viewer = app.token(app.retailer_id, Role::Viewer).await;
    assert_eq!(
        challenge_for(viewer).await,
        Value::Null,
        "another member of the merchant"
    );
    let colleague = app
        .token_for(app.retailer_id, "colleague", Role::Member)
        .await;
    assert_eq!(challenge_for(colleague.clone()).await, Value::Null);
    let admin = app.token(app.retailer_id, Role::Admin).await;
    assert_eq!(challenge_for(admin).await, Value::Null);
    let listed = app
        .graphql(
            Some(&colleague),
            "{ paymentRequests { edges { node { challenge } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.data("/paymentRequests/edges/0/node/challenge"),
        &Value::Null
    );
    let device_view = app
        .graphql(
            Some(&checkout.device_token()),
            "{ paymentRequests { edges { node { challenge } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        device_view.data("/paymentRequests/edges/0/node/challenge"),
        &request["challenge"],
        "the terminal's device signs it with the card"
    );
    checkout.app.stop().await;
}
on_both_backends!(
    challenge_visibility,
    challenges_are_shown_to_requester_and_terminal
);
