//! Every decline reason, each consuming nothing, and a fault that is not a decline.

use super::*;
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use card_protocol::{
    CardId, MerchantId,
    card_signature::sign_payment,
    number::PrefixRange,
    token::{Token, TokenBody},
};
use ed25519_dalek::SigningKey;
use hub_tests::{
    Backend, RecordKind,
    checkout::{CARD_SEED, Checkout, PAY, device_token, replay_for, signed_fields},
    decode_global_id, encode_global_id, on_both_backends,
};
use sea_orm::{EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

async fn every_decline_reason_consumes_nothing(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 60, |config| {
        let limits = &mut config.payment_limits;
        limits.card_velocity_count = 1_000;
        limits.card_velocity_sum_minor = 10_000_000;
        limits.device_cap_minor = 10_000_000;
    })
    .await;
    let other_key = SigningKey::from_bytes(&[0x99; 32]);
    type Edit = Box<dyn FnOnce(&mut TokenBody, &mut [SigningKey; 2])>;
    let cases: Vec<(&str, Edit)> = vec![
        ("UNKNOWN_ISSUER_KEY", Box::new(|body, _| body.key_id = 2)),
        ("BAD_ISSUER_SIGNATURE", {
            let k = other_key.clone();
            Box::new(move |_, keys| keys[0] = k)
        }),
        (
            "NUMBER_OUT_OF_RANGE",
            Box::new(|body, _| {
                body.number = PrefixRange::new("510000").expect("p").number(5).expect("n")
            }),
        ),
        (
            "NUMBER_EXPIRED",
            Box::new(|body, _| body.not_after = chrono::Utc::now().timestamp() as u64 - 60),
        ),
        (
            "DOMAIN_RESTRICTION",
            Box::new(|body, _| body.restrictions.currency = *b"USD"),
        ),
        (
            "DOMAIN_RESTRICTION",
            Box::new(|body, _| {
                body.restrictions.merchant = Some(MerchantId::from_bytes([0x42; 16]))
            }),
        ),
        (
            "CARD_UNKNOWN",
            Box::new(|body, _| body.card_id = CardId::from_bytes([0x99; 16])),
        ),
        ("CARD_KEY_MISMATCH", {
            let k = other_key.clone();
            Box::new(move |body, keys| {
                body.card_public_key = k.verifying_key().to_bytes();
                keys[1] = k;
            })
        }),
    ];
    for (n, (reason, edit)) in cases.into_iter().enumerate() {
        let request = checkout.request(100).await;
        let forged = checkout.forge(&request, n as u64, edit);
        expect_decline(&checkout, &request, forged, reason, &format!("decline-{n}")).await;
        // Nothing was consumed: the right card pays the same request.
        let genuine = checkout.tap(&request);
        authorized(&checkout, &request, genuine, &format!("genuine-{n}")).await;
    }

    // A bad card signature, and an unknown request.
    let request = checkout.request(100).await;
    let (token, signature) = checkout.forge(&request, 20, |_, _| {});
    let mut bad = URL_SAFE_NO_PAD.decode(&signature).expect("b64");
    bad[10] ^= 0x40;
    expect_decline(
        &checkout,
        &request,
        (token.clone(), URL_SAFE_NO_PAD.encode(bad)),
        "BAD_CARD_SIGNATURE",
        "bad-sig",
    )
    .await;
    let mut unknown = request.clone();
    unknown["id"] = json!(encode_global_id(RecordKind::PaymentRequest, Uuid::new_v4()));
    expect_decline(
        &checkout,
        &unknown,
        (token.clone(), signature.clone()),
        "REQUEST_UNKNOWN",
        "unknown",
    )
    .await;
    authorized(
        &checkout,
        &request,
        (token.clone(), signature),
        "forged-but-valid",
    )
    .await;

    // The same number on another request; another number with the same card sequence.
    let request = checkout.request(100).await;
    let reused = {
        let parsed = Token::from_base64url(&token).expect("token");
        URL_SAFE_NO_PAD.encode(sign_payment(
            &SigningKey::from_bytes(&CARD_SEED),
            &parsed,
            &signed_fields(&request),
        ))
    };
    expect_decline(
        &checkout,
        &request,
        (token.clone(), reused),
        "NUMBER_ALREADY_USED",
        "reused-number",
    )
    .await;
    let same_sequence = checkout.forge(&request, 21, |body, _| body.sequence = 10_020);
    expect_decline(
        &checkout,
        &request,
        same_sequence,
        "SEQUENCE_REUSED",
        "reused-sequence",
    )
    .await;
    let genuine = checkout.tap(&request);
    authorized(&checkout, &request, genuine, "after-replays").await;

    // Deadlines are judged by the database clock; a late tap passes only under the offline floor.
    let db = checkout.app.hub.state.db.clone();
    let set_deadlines = |request: &Value, tap_offset: i64, acceptance_offset: i64| {
        let id = decode_global_id(request["id"].as_str().expect("id"));
        let now = chrono::Utc::now();
        let db = db.clone();
        async move {
            entities::payment_request::Entity::update_many()
                .col_expr(
                    entities::payment_request::Column::TapDeadline,
                    sea_orm::sea_query::Expr::value(now + chrono::Duration::seconds(tap_offset)),
                )
                .col_expr(
                    entities::payment_request::Column::AcceptanceDeadline,
                    sea_orm::sea_query::Expr::value(
                        now + chrono::Duration::seconds(acceptance_offset),
                    ),
                )
                .filter(sea_orm::ColumnTrait::eq(
                    &entities::payment_request::Column::Id,
                    id,
                ))
                .exec(&db)
                .await
                .expect("move the deadlines");
        }
    };
    let request = checkout.request(3_000).await;
    set_deadlines(&request, -3_600, -60).await;
    let tap = checkout.forge(&request, 30, |_, _| {});
    expect_decline(
        &checkout,
        &request,
        tap.clone(),
        "PAST_DEADLINE",
        "past-acceptance",
    )
    .await;
    set_deadlines(&request, -60, 600).await;
    expect_decline(
        &checkout,
        &request,
        tap.clone(),
        "PAST_DEADLINE",
        "late-above-floor",
    )
    .await;
    set_deadlines(&request, 60, 600).await;
    authorized(&checkout, &request, tap, "in-time").await;
    let request = checkout.request(300).await;
    set_deadlines(&request, -60, 600).await;
    let late = checkout.forge(&request, 31, |_, _| {});
    authorized(&checkout, &request, late, "late-under-floor").await;

    // Above the contactless limit: cardholder verification required.
    let request = checkout.request(6_000).await;
    let big = checkout.forge(&request, 32, |body, _| {
        body.restrictions.max_amount_minor = 10_000
    });
    expect_decline(
        &checkout,
        &request,
        big,
        "CVM_REQUIRED",
        "above-contactless-limit",
    )
    .await;
    checkout
        .app
        .graphql(Some(&checkout.member), "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }", json!({ "id": request["id"] }))
        .await
        .data("/cancelPaymentRequest");

    // The balance dropped below the request meanwhile (an invoice was paid in full).
    let request = checkout.request(500).await;
    let member = checkout.member.clone();
    let invoice = checkout
        .app
        .graphql(
            Some(&member),
            "mutation($id: ID!) { raiseInvoice(input: { orderId: $id }) { invoice { id } } }",
            json!({ "id": checkout.order }),
        )
        .await
        .data("/raiseInvoice/invoice/id")
        .clone();
    checkout
        .app
        .graphql(
            Some(&member),
            "mutation($id: ID!) { payInvoice(input: { id: $id }) { invoice { status } } }",
            json!({ "id": invoice }),
        )
        .await
        .data("/payInvoice");
    let tap = checkout.forge(&request, 33, |_, _| {});
    expect_decline(
        &checkout,
        &request,
        tap,
        "AMOUNT_ABOVE_BALANCE",
        "balance-gone",
    )
    .await;
    checkout.app.stop().await;
}
on_both_backends!(every_decline_reason, every_decline_reason_consumes_nothing);

async fn limits_and_retired_keys(backend: Backend) {
    // A device cap of 10.00: the second payment of 8.00 on this device is over it.
    let mut checkout = Checkout::new_with(backend, 30, |config| {
        config.payment_limits.device_cap_minor = 1_000
    })
    .await;
    let request = checkout.request(800).await;
    let tap = checkout.tap(&request);
    authorized(&checkout, &request, tap, "first").await;
    let request = checkout.request(800).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "LIMIT_EXCEEDED", "over-cap").await;

    // A retired key whose validity has passed: its numbers are refused.
    let retired_seed = [0x64u8; 32];
    let not_after = chrono::Utc::now() + chrono::Duration::seconds(2);
    let key = checkout
        .app
        .graphql(Some(&checkout.bank_admin), "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }",
            json!({ "input": { "keyId": 2, "publicKey": STANDARD.encode(SigningKey::from_bytes(&retired_seed).verifying_key().as_bytes()), "prefix": "400012", "notAfter": not_after.to_rfc3339() } }))
        .await
        .data("/registerIssuerKey/issuerKey/id")
        .clone();
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            "mutation($id: ID!) { retireIssuerKey(input: { id: $id }) { issuerKey { status } } }",
            json!({ "id": key }),
        )
        .await
        .data("/retireIssuerKey");
    // Wait (bounded) until the database clock has passed the key's validity.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api::db::database_now(&checkout.app.hub.state.db)
        .await
        .expect("db time")
        <= not_after
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the database clock did not move"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let retired = checkout.forge(&request, 40, |body, keys| {
        body.key_id = 2;
        keys[0] = SigningKey::from_bytes(&retired_seed);
    });
    expect_decline(
        &checkout,
        &request,
        retired,
        "ISSUER_KEY_RETIRED",
        "retired",
    )
    .await;
    checkout.app.stop().await;
}
on_both_backends!(limits_and_retired, limits_and_retired_keys);

async fn card_velocity_requires_verification(backend: Backend) {
    // Two payments per card per day, at most 25.00: the third tap needs cardholder verification.
    let mut checkout = Checkout::new_with(backend, 30, |config| {
        config.payment_limits.card_velocity_count = 2;
        config.payment_limits.card_velocity_sum_minor = 2_500;
    })
    .await;
    for (i, amount) in [1_000, 1_000].into_iter().enumerate() {
        let request = checkout.request(amount).await;
        let tap = checkout.tap(&request);
        authorized(&checkout, &request, tap, &format!("velocity-{i}")).await;
    }
    let request = checkout.request(100).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "CVM_REQUIRED", "velocity-count").await;
    checkout.app.stop().await;

    // The sum alone, and distinct terminals alone, trip the same rule.
    let mut checkout = Checkout::new_with(backend, 30, |config| {
        config.payment_limits.card_velocity_sum_minor = 1_500
    })
    .await;
    let request = checkout.request(1_000).await;
    let tap = checkout.tap(&request);
    authorized(&checkout, &request, tap, "sum-first").await;
    let request = checkout.request(600).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "CVM_REQUIRED", "velocity-sum").await;
    checkout.app.stop().await;
}
on_both_backends!(card_velocity, card_velocity_requires_verification);

/// The decline reasons that depend on state (a paid, cancelled or blocked record, a revoked key, a
/// token's amount limit, the distinct-terminal velocity): each consumes nothing (fingerprint), and a
/// genuine tap afterwards pays wherever one still can.
async fn stateful_declines_consume_nothing(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 60, |config| {
        let limits = &mut config.payment_limits;
        hub_tests::checkout::generous_limits(limits);
        limits.card_velocity_terminals = 2;
    })
    .await;
    let member = checkout.member.clone();
    let bank_admin = checkout.bank_admin.clone();

    // DOMAIN_RESTRICTION by amount: the token allows 0.50, the request asks 1.00.
    let request = checkout.request(100).await;
    let capped = checkout.forge(&request, 1, |body, _| {
        body.restrictions.max_amount_minor = 50
    });
    expect_decline(
        &checkout,
        &request,
        capped,
        "DOMAIN_RESTRICTION",
        "amount-cap",
    )
    .await;
    let genuine = checkout.tap(&request);
    authorized(&checkout, &request, genuine, "after-amount-cap").await;

    // REQUEST_ALREADY_PAID: the request above is paid; an unused number for it is declined and
    // stays unused (it pays the next request).
    let unused = checkout.forge(&request, 2, |_, _| {});
    expect_decline(
        &checkout,
        &request,
        unused.clone(),
        "REQUEST_ALREADY_PAID",
        "paid",
    )
    .await;
    let next = checkout.request(100).await;
    let unused = replay_for(&unused.0, &next);
    authorized(&checkout, &next, unused, "unused-number-pays").await;

    // REQUEST_CANCELLED.
    let request = checkout.request(100).await;
    checkout
        .app
        .graphql(Some(&member), "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }", json!({ "id": request["id"] }))
        .await
        .data("/cancelPaymentRequest");
    let tap = checkout.tap(&request);
    expect_decline(
        &checkout,
        &request,
        tap.clone(),
        "REQUEST_CANCELLED",
        "cancelled",
    )
    .await;
    let next = checkout.request(100).await;
    authorized(
        &checkout,
        &next,
        replay_for(&tap.0, &next),
        "after-cancelled",
    )
    .await;

    // CARD_BLOCKED: declined while blocked, paid once unblocked.
    assert_eq!(
        step_card(&checkout, &bank_admin, "blockCard").await,
        "BLOCKED"
    );
    let request = checkout.request(100).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap.clone(), "CARD_BLOCKED", "blocked").await;
    assert_eq!(
        step_card(&checkout, &bank_admin, "unblockCard").await,
        "ACTIVE"
    );
    authorized(&checkout, &request, tap, "unblocked").await;

    // Distinct terminals per card: a second terminal is fine, a third needs verification.
    let mut seen = Vec::new();
    for seed in [0xB1u8, 0xB2] {
        let (terminal, key) = checkout.add_terminal(seed).await;
        let order = checkout.new_order(1).await;
        let request = checkout.request_at(&order, &terminal, 100).await;
        let tap = checkout.tap(&request);
        let url = checkout.app.base_url.clone();
        let token = device_token(decode_global_id(&terminal), &key);
        seen.push(
            pay_as(
                &checkout,
                &url,
                &token,
                &request,
                &tap,
                &format!("terminal-{seed}"),
            )
            .await,
        );
    }
    assert_eq!(seen[0]["status"], "AUTHORIZED", "{}", seen[0]);
    assert_eq!(seen[1]["declineReason"], "CVM_REQUIRED", "{}", seen[1]);

    // ISSUER_KEY_REVOKED: every number under the key dies at once; nothing else changes.
    checkout
        .app
        .graphql(
            Some(&bank_admin),
            "mutation($id: ID!) { revokeIssuerKey(input: { id: $id }) { issuerKey { status } } }",
            json!({ "id": checkout.key_gid }),
        )
        .await
        .data("/revokeIssuerKey");
    let request = checkout.request(100).await;
    let tap = checkout.tap(&request);
    expect_decline(&checkout, &request, tap, "ISSUER_KEY_REVOKED", "revoked").await;
    checkout.app.stop().await;
}
on_both_backends!(stateful_declines, stateful_declines_consume_nothing);

/// A database fault while the number is being used (here a trigger refusing the insert, as a dropped
/// connection or a statement timeout would) is not a decline: the tap answers INTERNAL, nothing is
/// recorded or consumed, and a retry under the same idempotency key, once the fault is gone, pays.
async fn database_faults_are_not_declines(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let mut checkout = Checkout::new(backend).await;
    let db = checkout.app.hub.state.db.clone();
    let (inject, heal) = match backend {
        Backend::Postgres => (
            vec![
                "CREATE FUNCTION injected_fault() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER injected_fault BEFORE INSERT ON number_use FOR EACH ROW EXECUTE FUNCTION injected_fault()",
            ],
            vec![
                "DROP TRIGGER injected_fault ON number_use",
                "DROP FUNCTION injected_fault()",
            ],
        ),
        Backend::Sqlite => (
            vec![
                "CREATE TRIGGER injected_fault BEFORE INSERT ON number_use BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
            ],
            vec!["DROP TRIGGER injected_fault"],
        ),
    };
    let request = checkout.request(500).await;
    let tap = checkout.tap(&request);
    for statement in &inject {
        db.execute_unprepared(statement)
            .await
            .expect("inject the fault");
    }
    let before = checkout.app.fingerprint().await;
    let device = checkout.device_token();
    let variables = json!({ "input": { "requestId": request["id"], "token": tap.0, "cardSignature": tap.1, "idempotencyKey": "faulty" } });
    let response = checkout
        .app
        .graphql(Some(&device), PAY, variables.clone())
        .await;
    response.expect_error("INTERNAL");
    assert!(
        !response.body.to_string().contains("injected fault"),
        "the cause stays in the log: {}",
        response.body
    );
    assert_eq!(
        checkout.app.fingerprint().await,
        before,
        "no evidence, no key, nothing used"
    );
    for statement in &heal {
        db.execute_unprepared(statement)
            .await
            .expect("heal the fault");
    }
    let retried = checkout.app.graphql(Some(&device), PAY, variables).await;
    assert_eq!(
        retried.data("/payWithOneTimeNumber/status"),
        "AUTHORIZED",
        "{}",
        retried.body
    );
    checkout.app.stop().await;
}
on_both_backends!(faults_are_not_declines, database_faults_are_not_declines);
