//! Capture, void, refund, expiry and clearing batches, end to end: authorizations made by the virtual
//! card through the payments fixture, settled over HTTP, on one hub and on two replicas.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use api::auth::Role;
use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signer, SigningKey};
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, GqlResponse,
    checkout::{Checkout, ISSUER_SEED},
    decode_global_id, hub_binary, on_both_backends, on_postgres, post_graphql,
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PAYMENT: &str = "payment { id status amountMinor capturedMinor refundedMinor }";
const ENTRY: &str = "entry { id kind amountMinor reason batchId manifestId }";

fn capture_query() -> String {
    format!(
        "mutation($i: CapturePaymentInput!) {{ capturePayment(input: $i) {{ {PAYMENT} {ENTRY} }} }}"
    )
}
fn refund_query() -> String {
    format!(
        "mutation($i: RefundPaymentInput!) {{ refundPayment(input: $i) {{ {PAYMENT} {ENTRY} }} }}"
    )
}
fn void_query() -> String {
    format!("mutation($i: VoidPaymentInput!) {{ voidPayment(input: $i) {{ {PAYMENT} }} }}")
}

/// A checkout whose card may pay many times a day (the limits are not what these tests are about).
async fn checkout(backend: Backend) -> Checkout {
    Checkout::new_with(backend, 3, |config| {
        config.payment_limits.card_velocity_count = 1_000;
        config.payment_limits.card_velocity_sum_minor = 100_000_000;
        config.payment_limits.device_cap_minor = 100_000_000;
    })
    .await
}

/// An authorization of `amount` on a new order of `quantity` coffees (at 10.00); its payment's ID.
async fn authorize(checkout: &mut Checkout, quantity: i64, amount: i64) -> String {
    let order = checkout.new_order(quantity).await;
    authorize_on(checkout, &order, amount).await
}

async fn authorize_on(checkout: &mut Checkout, order: &str, amount: i64) -> String {
    let request = checkout.request_for(order, amount).await;
    let (token, signature) = checkout.tap(&request);
    let key = format!("tap-{}", uuid::Uuid::new_v4());
    let paid = checkout.pay(&request, &token, &signature, &key).await;
    assert_eq!(paid["status"], "AUTHORIZED", "{paid}");
    paid["payment"]["id"]
        .as_str()
        .expect("payment id")
        .to_owned()
}

async fn capture(
    checkout: &Checkout,
    token: &str,
    payment: &str,
    amount: Option<i64>,
    key: &str,
) -> GqlResponse {
    let mut input = json!({ "paymentId": payment, "idempotencyKey": key });
    if let Some(amount) = amount {
        input["amountMinor"] = json!(amount.to_string());
    }
    checkout
        .app
        .graphql(Some(token), &capture_query(), json!({ "i": input }))
        .await
}

async fn refund(
    checkout: &Checkout,
    token: &str,
    payment: &str,
    amount: i64,
    key: &str,
) -> GqlResponse {
    checkout
        .app
        .graphql(Some(token), &refund_query(), json!({ "i": {
            "paymentId": payment, "amountMinor": amount.to_string(), "reason": "returned by the customer", "idempotencyKey": key } }))
        .await
}

async fn void(checkout: &Checkout, token: &str, payment: &str, key: &str) -> GqlResponse {
    checkout
        .app
        .graphql(
            Some(token),
            &void_query(),
            json!({ "i": { "paymentId": payment, "idempotencyKey": key } }),
        )
        .await
}

/// A refused step: the error `code`, and not one row of any table changed.
async fn refused(
    checkout: &Checkout,
    code: &str,
    step: impl std::future::Future<Output = GqlResponse>,
) -> GqlResponse {
    let before = checkout.app.fingerprint().await;
    let response = step.await;
    response.expect_error(code);
    assert_eq!(
        checkout.app.fingerprint().await,
        before,
        "a refused step changed something: {}",
        response.body
    );
    response
}

async fn order_paid(checkout: &Checkout, order: &str) -> Value {
    checkout
        .app
        .graphql(
            Some(&checkout.member),
            "query($id: ID!) { node(id: $id) { ... on Order { paidMinor balanceMinor } } }",
            json!({ "id": order }),
        )
        .await
        .data("/node/paidMinor")
        .clone()
}

async fn settlement_steps(backend: Backend) {
    let mut checkout = checkout(backend).await;
    let stranger_bank = checkout
        .app
        .create_organization("Stranger Bank", OrganizationKind::FinancialProvider)
        .await;
    let stranger = checkout.app.token(stranger_bank, Role::Admin).await;
    let viewer = checkout
        .app
        .token(checkout.app.retailer_id, Role::Viewer)
        .await;
    let member = checkout.member.clone();
    let bank_admin = checkout.bank_admin.clone();
    let order = checkout.order.clone();
    let payment = authorize_on(&mut checkout, &order, 1_200).await;

    // Who may not: a stranger is told it does not exist, the issuer that it is not its to move, a
    // viewer that its role does not allow it. Nothing changes.
    refused(
        &checkout,
        "NOT_FOUND",
        capture(&checkout, &stranger, &payment, None, "c-stranger"),
    )
    .await;
    refused(
        &checkout,
        "FORBIDDEN",
        capture(&checkout, &bank_admin, &payment, None, "c-bank"),
    )
    .await;
    refused(
        &checkout,
        "FORBIDDEN",
        capture(&checkout, &viewer, &payment, None, "c-viewer"),
    )
    .await;
    // What may not be, yet.
    refused(
        &checkout,
        "INVALID_TRANSITION",
        refund(&checkout, &member, &payment, 100, "r-early"),
    )
    .await;
    let above = refused(
        &checkout,
        "VALIDATION",
        capture(&checkout, &member, &payment, Some(1_201), "c-above"),
    )
    .await;
    assert_eq!(
        above.body["errors"][0]["extensions"]["field"],
        "amountMinor"
    );
    refused(
        &checkout,
        "VALIDATION",
        capture(&checkout, &member, &payment, Some(0), "c-zero"),
    )
    .await;

    // A partial capture: 1000 taken, 200 released to the order's balance.
    assert_eq!(order_paid(&checkout, &order).await, "1200");
    let captured = capture(&checkout, &member, &payment, Some(1_000), "c-1").await;
    let step = captured.data("/capturePayment");
    assert_eq!(step["payment"]["status"], "CAPTURED", "{step}");
    assert_eq!(step["payment"]["capturedMinor"], "1000");
    assert_eq!(step["entry"]["kind"], "CAPTURE");
    assert_eq!(step["entry"]["amountMinor"], "1000");
    assert_eq!(
        order_paid(&checkout, &order).await,
        "1000",
        "the uncaptured 200 is owed again"
    );
    // The same key and input: the first outcome; another input under it: refused.
    let again = capture(&checkout, &member, &payment, Some(1_000), "c-1").await;
    assert_eq!(again.data("/capturePayment/entry/id"), &step["entry"]["id"]);
    refused(
        &checkout,
        "IDEMPOTENCY_MISMATCH",
        capture(&checkout, &member, &payment, Some(900), "c-1"),
    )
    .await;
    // Captured once; a capture is refunded, not voided.
    refused(
        &checkout,
        "INVALID_TRANSITION",
        capture(&checkout, &member, &payment, None, "c-2"),
    )
    .await;
    let no_void = refused(
        &checkout,
        "INVALID_TRANSITION",
        void(&checkout, &member, &payment, "v-1"),
    )
    .await;
    assert!(
        no_void.body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("refund it instead")
    );

    // Refunds, each its own entry, never more than captured.
    let first = refund(&checkout, &member, &payment, 400, "r-1").await;
    assert_eq!(first.data("/refundPayment/payment/status"), "CAPTURED");
    assert_eq!(first.data("/refundPayment/payment/refundedMinor"), "400");
    assert_eq!(
        first.data("/refundPayment/entry/reason"),
        "returned by the customer"
    );
    assert_eq!(order_paid(&checkout, &order).await, "600");
    let too_much = refused(
        &checkout,
        "VALIDATION",
        refund(&checkout, &member, &payment, 601, "r-2"),
    )
    .await;
    assert!(
        too_much.body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("at most 600")
    );
    refused(
        &checkout,
        "VALIDATION",
        refund(&checkout, &member, &payment, -5, "r-negative"),
    )
    .await;
    let query = refund_query();
    let blank = checkout
        .app
        .graphql(Some(&member), &query, json!({ "i": { "paymentId": payment, "amountMinor": "1", "reason": "  ", "idempotencyKey": "r-blank" } }));
    refused(&checkout, "VALIDATION", blank).await;
    let rest = refund(&checkout, &member, &payment, 600, "r-3").await;
    assert_eq!(rest.data("/refundPayment/payment/status"), "REFUNDED");
    assert_eq!(order_paid(&checkout, &order).await, "0");
    refused(
        &checkout,
        "INVALID_TRANSITION",
        refund(&checkout, &member, &payment, 1, "r-4"),
    )
    .await;

    // A void: the whole authorization is owed again, and nothing more can happen to it.
    let second = authorize_on(&mut checkout, &order, 800).await;
    assert_eq!(order_paid(&checkout, &order).await, "800");
    let voided = void(&checkout, &member, &second, "v-2").await;
    assert_eq!(voided.data("/voidPayment/payment/status"), "VOIDED");
    assert_eq!(order_paid(&checkout, &order).await, "0");
    refused(
        &checkout,
        "INVALID_TRANSITION",
        capture(&checkout, &member, &second, None, "c-3"),
    )
    .await;
    refused(
        &checkout,
        "INVALID_TRANSITION",
        void(&checkout, &member, &second, "v-3"),
    )
    .await;

    // Who sees what: the merchant and the issuer see the entries and the open batch; nobody else.
    let entries = "query($id: ID!) { node(id: $id) { ... on Payment { clearingEntries { id kind amountMinor } } } }";
    for token in [&member, &bank_admin] {
        let seen = checkout
            .app
            .graphql(Some(token), entries, json!({ "id": payment }))
            .await;
        let kinds: Vec<&Value> = seen
            .data("/node/clearingEntries")
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| &e["kind"])
            .collect();
        assert_eq!(
            kinds,
            [&json!("CAPTURE"), &json!("REFUND"), &json!("REFUND")]
        );
    }
    let entry_id = step["entry"]["id"].clone();
    checkout
        .app
        .graphql(
            Some(&stranger),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": entry_id }),
        )
        .await
        .expect_error("NOT_FOUND");
    let batches = "{ clearingBatches { totalCount edges { node { status currency entryCount
        reconciliation { entryCount capturedMinor refundedMinor netMinor differenceMinor balanced } } } } }";
    for token in [&member, &bank_admin] {
        let seen = checkout.app.graphql(Some(token), batches, json!({})).await;
        assert_eq!(seen.data("/clearingBatches/totalCount"), 1);
        let batch = seen.data("/clearingBatches/edges/0/node");
        assert_eq!(batch["status"], "OPEN");
        assert_eq!(
            batch["entryCount"],
            Value::Null,
            "nothing frozen while open"
        );
        assert_eq!(
            batch["reconciliation"],
            json!({ "entryCount": "3", "capturedMinor": "1000", "refundedMinor": "1000", "netMinor": "0", "differenceMinor": "0", "balanced": true })
        );
    }
    assert_eq!(
        checkout
            .app
            .graphql(Some(&stranger), batches, json!({}))
            .await
            .data("/clearingBatches/totalCount"),
        0
    );
    checkout.app.stop().await;
}
on_both_backends!(steps, settlement_steps);

/// The manifest as `docs/clearing.md` lays it out, written here from the batch's public fields.
fn manifest_from_layout(batch: &Value) -> String {
    let uuid = |id: &Value| {
        decode_global_id(id.as_str().expect("id"))
            .hyphenated()
            .to_string()
    };
    let time = |at: &Value| {
        chrono::DateTime::parse_from_rfc3339(at.as_str().expect("time"))
            .expect("rfc 3339")
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let currency = batch["currency"].as_str().expect("currency");
    let mut entries: Vec<(String, String, String, i64)> = batch["entries"]["edges"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|edge| {
            let entry = &edge["node"];
            (
                entry["manifestId"].as_str().expect("id").to_owned(),
                uuid(&entry["paymentId"]),
                entry["kind"].as_str().expect("kind").to_owned(),
                entry["amountMinor"]
                    .as_str()
                    .expect("amount")
                    .parse()
                    .expect("int"),
            )
        })
        .collect();
    entries.sort();
    let sum = |kind: &str| {
        entries
            .iter()
            .filter(|e| e.2 == kind)
            .map(|e| e.3)
            .sum::<i64>()
    };
    let (captured, refunded) = (sum("CAPTURE"), sum("REFUND"));
    let mut text = format!(
        "ich-clearing-manifest/1\nbatch {}\nmerchant {}\nprovider {}\ncurrency {currency}\nopened {}\nclosed {}\nentries {}\n",
        batch["manifestId"].as_str().expect("id"),
        uuid(&batch["merchant"]["id"]),
        uuid(&batch["provider"]["id"]),
        time(&batch["openedAt"]),
        time(&batch["closedAt"]),
        entries.len()
    );
    for (id, payment, kind, amount) in &entries {
        text.push_str(&format!("entry {id} {payment} {kind} {amount}\n"));
    }
    text.push_str(&format!(
        "total {currency} captured {captured}\ntotal {currency} refunded {refunded}\ntotal {currency} net {}\n",
        captured - refunded
    ));
    text
}

const BATCH: &str = "query($id: ID!) { clearingBatch(id: $id) { id manifestId status currency openedAt closedAt
    merchant { id } provider { id } entryCount capturedMinor refundedMinor netMinor manifest manifestSha256
    confirmationKeyId reconciliation { balanced differenceMinor }
    entries(first: 100) { edges { node { manifestId paymentId kind amountMinor } } } } }";
const CLOSE: &str = "mutation($id: ID!) { closeClearingBatch(input: { id: $id }) { batch { id status manifestSha256 } } }";
const CONFIRM: &str = "mutation($i: ConfirmClearingBatchInput!) { confirmClearingBatch(input: $i) { batch { status confirmedAt confirmationKeyId } } }";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn open_batch(checkout: &Checkout) -> String {
    let open = checkout
        .app
        .graphql(
            Some(&checkout.member),
            "{ clearingBatches(filter: { status: OPEN }) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    open.data("/clearingBatches/edges/0/node/id")
        .as_str()
        .expect("an open batch")
        .to_owned()
}

async fn batch_close_and_confirm(backend: Backend) {
    let mut checkout = checkout(backend).await;
    let member = checkout.member.clone();
    let bank_admin = checkout.bank_admin.clone();
    let admin = checkout
        .app
        .token(checkout.app.retailer_id, Role::Admin)
        .await;
    let first = authorize(&mut checkout, 2, 2_000).await;
    let second = authorize(&mut checkout, 3, 3_000).await;
    capture(&checkout, &member, &first, None, "c-first")
        .await
        .data("/capturePayment");
    capture(&checkout, &member, &second, Some(2_500), "c-second")
        .await
        .data("/capturePayment");
    refund(&checkout, &member, &first, 700, "r-first")
        .await
        .data("/refundPayment");
    let batch = open_batch(&checkout).await;
    let open = checkout
        .app
        .graphql(Some(&bank_admin), BATCH, json!({ "id": batch }))
        .await;
    assert_eq!(
        open.data("/clearingBatch/manifest"),
        &Value::Null,
        "no manifest while open"
    );

    // Only the merchant's ADMIN closes; the provider cannot confirm an open batch.
    refused(
        &checkout,
        "FORBIDDEN",
        checkout
            .app
            .graphql(Some(&member), CLOSE, json!({ "id": batch })),
    )
    .await;
    refused(
        &checkout,
        "FORBIDDEN",
        checkout
            .app
            .graphql(Some(&bank_admin), CLOSE, json!({ "id": batch })),
    )
    .await;
    let issuer = SigningKey::from_bytes(&ISSUER_SEED);
    let early = json!({ "i": { "id": batch, "keyId": "1", "signature": STANDARD.encode(issuer.sign(b"x").to_bytes()) } });
    refused(
        &checkout,
        "INVALID_TRANSITION",
        checkout.app.graphql(Some(&bank_admin), CONFIRM, early),
    )
    .await;
    let closed = checkout
        .app
        .graphql(Some(&admin), CLOSE, json!({ "id": batch }))
        .await;
    assert_eq!(closed.data("/closeClearingBatch/batch/status"), "CLOSED");
    refused(
        &checkout,
        "INVALID_TRANSITION",
        checkout
            .app
            .graphql(Some(&admin), CLOSE, json!({ "id": batch })),
    )
    .await;

    // The manifest, rebuilt from the documented layout by this test, is the hub's byte for byte.
    let fetched = checkout
        .app
        .graphql(Some(&bank_admin), BATCH, json!({ "id": batch }))
        .await;
    let closed = fetched.data("/clearingBatch").clone();
    let manifest = closed["manifest"].as_str().expect("manifest").to_owned();
    assert_eq!(manifest, manifest_from_layout(&closed));
    assert_eq!(closed["manifestSha256"], sha256_hex(manifest.as_bytes()));
    assert_eq!(
        (
            &closed["entryCount"],
            &closed["capturedMinor"],
            &closed["refundedMinor"],
            &closed["netMinor"]
        ),
        (&json!("3"), &json!("4500"), &json!("700"), &json!("3800"))
    );
    assert_eq!(
        closed["reconciliation"],
        json!({ "balanced": true, "differenceMinor": "0" })
    );
    // The operator's export gives the same bytes.
    let export = std::process::Command::new(hub_binary())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", checkout.app.hub.state.config.database_url())
        .env("RUST_LOG", "warn")
        .args([
            "clearing",
            "export",
            "--batch",
            closed["manifestId"].as_str().expect("id"),
        ])
        .output()
        .expect("hub clearing export runs");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert_eq!(export.stdout, manifest.as_bytes());
    assert!(
        String::from_utf8_lossy(&export.stderr)
            .contains(closed["manifestSha256"].as_str().expect("sha"))
    );
    // Manifests are served one batch at a time.
    checkout
        .app
        .graphql(
            Some(&member),
            "{ clearingBatches { edges { node { manifest } } } }",
            json!({}),
        )
        .await
        .expect_error("BAD_REQUEST");

    // A later capture opens the next batch.
    let third = authorize(&mut checkout, 1, 1_000).await;
    capture(&checkout, &member, &third, None, "c-third")
        .await
        .data("/capturePayment");
    assert_ne!(open_batch(&checkout).await, batch);

    // Confirmation: only the batch's provider, only its own valid key, only over these bytes, once.
    let other_bank = checkout
        .app
        .create_organization("Other Bank", OrganizationKind::FinancialProvider)
        .await;
    let other_admin = checkout.app.token(other_bank, Role::Admin).await;
    let other_key = SigningKey::from_bytes(&[0x45; 32]);
    checkout.app.graphql(Some(&other_admin), "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }",
        json!({ "input": { "keyId": 1, "publicKey": STANDARD.encode(other_key.verifying_key().as_bytes()), "prefix": "500012",
            "notAfter": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339() } })).await.data("/registerIssuerKey");
    let confirm = |key: &SigningKey, key_id: &str, bytes: &[u8]| json!({ "i": { "id": batch, "keyId": key_id, "signature": STANDARD.encode(key.sign(bytes).to_bytes()) } });
    let changed = manifest.replace("captured 4500", "captured 4501");
    let digest_only = sha256_hex(manifest.as_bytes());
    // (caller, signing key, keyId, bytes signed, code, field)
    type Refusal<'a> = (
        &'a str,
        &'a SigningKey,
        &'a str,
        &'a [u8],
        &'a str,
        Option<&'a str>,
    );
    let refusals: [Refusal; 5] = [
        (
            &other_admin,
            &other_key,
            "1",
            manifest.as_bytes(),
            "NOT_FOUND",
            None,
        ),
        (
            &bank_admin,
            &other_key,
            "1",
            manifest.as_bytes(),
            "VALIDATION",
            Some("signature"),
        ),
        (
            &bank_admin,
            &issuer,
            "1",
            changed.as_bytes(),
            "VALIDATION",
            Some("signature"),
        ),
        (
            &bank_admin,
            &issuer,
            "1",
            digest_only.as_bytes(),
            "VALIDATION",
            Some("signature"),
        ),
        (
            &bank_admin,
            &issuer,
            "9",
            manifest.as_bytes(),
            "VALIDATION",
            Some("keyId"),
        ),
    ];
    for (token, key, key_id, bytes, code, field) in refusals {
        let response = refused(
            &checkout,
            code,
            checkout
                .app
                .graphql(Some(token), CONFIRM, confirm(key, key_id, bytes)),
        )
        .await;
        if let Some(field) = field {
            assert_eq!(response.body["errors"][0]["extensions"]["field"], field);
        }
    }
    let confirmed = checkout
        .app
        .graphql(
            Some(&bank_admin),
            CONFIRM,
            confirm(&issuer, "1", manifest.as_bytes()),
        )
        .await;
    assert_eq!(
        confirmed.data("/confirmClearingBatch/batch/status"),
        "CONFIRMED"
    );
    assert_eq!(
        confirmed.data("/confirmClearingBatch/batch/confirmationKeyId"),
        "1"
    );
    refused(
        &checkout,
        "INVALID_TRANSITION",
        checkout.app.graphql(
            Some(&bank_admin),
            CONFIRM,
            confirm(&issuer, "1", manifest.as_bytes()),
        ),
    )
    .await;
    // Confirmed, it stays exactly as it was.
    let after = checkout
        .app
        .graphql(Some(&member), BATCH, json!({ "id": batch }))
        .await;
    assert_eq!(after.data("/clearingBatch/manifest"), &json!(manifest));
    assert_eq!(
        after.data("/clearingBatch/manifestSha256"),
        &closed["manifestSha256"]
    );
    checkout.app.stop().await;
}
on_both_backends!(close_and_confirm, batch_close_and_confirm);

/// One mutation over HTTP, retried while the hub answers a retryable CONFLICT.
async fn settle(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> GqlResponse {
    loop {
        let response = post_graphql(client, url, token, query, variables.clone()).await;
        if response.body.pointer("/errors/0/extensions/retryable") == Some(&json!(true)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        return response;
    }
}

async fn refunds_race_on_two_replicas(backend: Backend) {
    let mut checkout = checkout(backend).await;
    let member = checkout.member.clone();
    let payment = authorize(&mut checkout, 3, 3_000).await;
    capture(&checkout, &member, &payment, None, "c-all")
        .await
        .data("/capturePayment");
    let replica = checkout.app.spawn_replica().await;
    let urls = [checkout.app.base_url.clone(), replica.url.clone()];
    // 32 refunds of 150 against 3000 captured: exactly 20 fit.
    let mut racers = Vec::new();
    for n in 0..32 {
        let (client, url, token, payment) = (
            checkout.app.client.clone(),
            urls[n % 2].clone(),
            member.clone(),
            payment.clone(),
        );
        racers.push(tokio::spawn(async move {
            settle(&client, &url, &token, &refund_query(), json!({ "i": {
                "paymentId": payment, "amountMinor": "150", "reason": format!("race {n}"), "idempotencyKey": format!("race-{n}") } })).await
        }));
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for racer in racers {
        let response = racer.await.expect("racer");
        let outcome = match response.error_code() {
            None => "REFUNDED".to_owned(),
            Some(code @ ("VALIDATION" | "INVALID_TRANSITION")) => code.to_owned(),
            Some(other) => panic!("unexpected {other}: {}", response.body),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert_eq!(outcomes.get("REFUNDED"), Some(&20), "{outcomes:?}");
    let db = &checkout.app.hub.state.db;
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(),
            "SELECT CAST(SUM(amount_minor) AS BIGINT) AS refunded, CAST(COUNT(*) AS BIGINT) AS refunds FROM clearing_entry WHERE kind = 'REFUND'"))
        .await
        .expect("query")
        .expect("row");
    assert_eq!(row.try_get::<i64>("", "refunded").expect("sum"), 3_000);
    assert_eq!(row.try_get::<i64>("", "refunds").expect("count"), 20);
    let seen = checkout
        .app
        .graphql(
            Some(&member),
            "query($id: ID!) { node(id: $id) { ... on Payment { status refundedMinor } } }",
            json!({ "id": payment }),
        )
        .await;
    assert_eq!(
        seen.data("/node"),
        &json!({ "status": "REFUNDED", "refundedMinor": "3000" })
    );
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(refund_race, refunds_race_on_two_replicas);

async fn captures_and_refunds_racing_closes(backend: Backend) {
    let mut checkout = checkout(backend).await;
    let member = checkout.member.clone();
    let admin = checkout
        .app
        .token(checkout.app.retailer_id, Role::Admin)
        .await;
    let mut payments = Vec::new();
    for _ in 0..24 {
        payments.push(authorize(&mut checkout, 1, 1_000).await);
    }
    let replica = checkout.app.spawn_replica().await;
    let urls = [checkout.app.base_url.clone(), replica.url.clone()];
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let closer = {
        let (client, urls, token, writing) = (
            checkout.app.client.clone(),
            urls.clone(),
            admin.clone(),
            writing.clone(),
        );
        tokio::spawn(async move {
            let mut closes = 0usize;
            let mut round = 0usize;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                round += 1;
                let url = &urls[round % 2];
                let open = post_graphql(
                    &client,
                    url,
                    &token,
                    "{ clearingBatches(filter: { status: OPEN }) { edges { node { id } } } }",
                    json!({}),
                )
                .await;
                if let Some(id) = open
                    .data("/clearingBatches/edges")
                    .as_array()
                    .and_then(|edges| edges.first())
                    .map(|edge| edge["node"]["id"].clone())
                {
                    let closed = settle(&client, url, &token, CLOSE, json!({ "id": id })).await;
                    match closed.error_code() {
                        None => closes += 1,
                        // Closed by the other replica's request a moment earlier.
                        Some("INVALID_TRANSITION") => {}
                        Some(other) => panic!("close failed with {other}: {}", closed.body),
                    }
                }
            }
            closes
        })
    };
    // Captures (and a refund after every other one) on both replicas, while batches are closed.
    let mut writers = Vec::new();
    for (n, payment) in payments.iter().enumerate() {
        let (client, url, token, payment) = (
            checkout.app.client.clone(),
            urls[n % 2].clone(),
            member.clone(),
            payment.clone(),
        );
        writers.push(tokio::spawn(async move {
            let captured = settle(&client, &url, &token, &capture_query(), json!({ "i": { "paymentId": payment, "idempotencyKey": format!("c-{n}") } })).await;
            let mut entries = vec![captured.data("/capturePayment/entry/manifestId").as_str().expect("entry").to_owned()];
            if n % 2 == 0 {
                let refunded = settle(&client, &url, &token, &refund_query(), json!({ "i": {
                    "paymentId": payment, "amountMinor": "400", "reason": "partial return", "idempotencyKey": format!("r-{n}") } })).await;
                entries.push(refunded.data("/refundPayment/entry/manifestId").as_str().expect("entry").to_owned());
            }
            entries
        }));
    }
    let mut written: Vec<String> = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("writer"));
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let closes = closer.await.expect("closer");
    assert!(closes >= 1, "no close raced with the writers");
    // Close what is still open, then every entry must be in exactly one manifest.
    if let Some(open) = checkout
        .app
        .graphql(
            Some(&admin),
            "{ clearingBatches(filter: { status: OPEN }) { edges { node { id } } } }",
            json!({}),
        )
        .await
        .data("/clearingBatches/edges")
        .as_array()
        .and_then(|edges| edges.first().map(|edge| edge["node"]["id"].clone()))
    {
        checkout
            .app
            .graphql(Some(&admin), CLOSE, json!({ "id": open }))
            .await
            .data("/closeClearingBatch");
    }
    let all = checkout
        .app
        .graphql(
            Some(&admin),
            "{ clearingBatches(first: 100) { edges { node { id status } } } }",
            json!({}),
        )
        .await;
    let mut listed: BTreeMap<String, usize> = BTreeMap::new();
    for edge in all
        .data("/clearingBatches/edges")
        .as_array()
        .expect("batches")
    {
        assert_eq!(edge["node"]["status"], "CLOSED");
        let batch = checkout
            .app
            .graphql(Some(&admin), BATCH, json!({ "id": edge["node"]["id"] }))
            .await;
        let batch = batch.data("/clearingBatch");
        let manifest = batch["manifest"].as_str().expect("manifest");
        assert_eq!(
            manifest,
            manifest_from_layout(batch),
            "the manifest follows its layout"
        );
        assert_eq!(batch["manifestSha256"], sha256_hex(manifest.as_bytes()));
        assert_eq!(
            batch["reconciliation"],
            json!({ "balanced": true, "differenceMinor": "0" })
        );
        for line in manifest.lines().filter(|line| line.starts_with("entry ")) {
            let id = line.split(' ').nth(1).expect("entry id").to_owned();
            *listed.entry(id).or_default() += 1;
        }
        // Stable: read again, the same bytes.
        let again = checkout
            .app
            .graphql(Some(&admin), BATCH, json!({ "id": edge["node"]["id"] }))
            .await;
        assert_eq!(again.data("/clearingBatch/manifest"), &batch["manifest"]);
    }
    written.sort();
    assert_eq!(written.len(), 24 + 12);
    assert!(
        listed.values().all(|&times| times == 1),
        "an entry in two batches: {listed:?}"
    );
    assert_eq!(
        listed.keys().cloned().collect::<Vec<_>>(),
        written,
        "every entry in exactly one batch"
    );
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(close_race, captures_and_refunds_racing_closes);

async fn uncaptured_authorizations_expire_once(backend: Backend) {
    let window = 4;
    let mut checkout = Checkout::new_with(backend, 3, |config| {
        config.payment_limits.card_velocity_count = 1_000;
        config.payment_limits.card_velocity_sum_minor = 100_000_000;
        config.clearing.capture_window_secs = window;
    })
    .await;
    let member = checkout.member.clone();
    let replica = checkout
        .app
        .spawn_replica_with_env(&[("HUB_CAPTURE_WINDOW_SECS".into(), window.to_string())])
        .await;
    let mut expiring = Vec::new();
    for _ in 0..6 {
        let order = checkout.new_order(1).await;
        let payment = authorize_on(&mut checkout, &order, 1_000).await;
        expiring.push((payment, order));
    }
    // Captured within the window: never expires.
    let kept = authorize(&mut checkout, 1, 1_000).await;
    capture(&checkout, &member, &kept, None, "c-kept")
        .await
        .data("/capturePayment");

    let status = "query($id: ID!) { node(id: $id) { ... on Payment { status releasedAt } } }";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (payment, order) in &expiring {
        loop {
            let seen = checkout
                .app
                .graphql(Some(&member), status, json!({ "id": payment }))
                .await;
            if seen.data("/node/status") == "EXPIRED" {
                assert_ne!(seen.data("/node/releasedAt"), &Value::Null);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not expired: {}",
                seen.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            order_paid(&checkout, order).await,
            "0",
            "released once, to the order"
        );
    }
    // Two replicas ran the job: each release happened once.
    let db = &checkout.app.hub.state.db;
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(),
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM event WHERE event_type = 'payment.expired' GROUP BY record_id"))
        .await
        .expect("events");
    assert_eq!(rows.len(), expiring.len());
    assert!(
        rows.iter()
            .all(|row| row.try_get::<i64>("", "n").expect("count") == 1)
    );
    let late = refused(
        &checkout,
        "INVALID_TRANSITION",
        capture(&checkout, &member, &expiring[0].0, None, "c-late"),
    )
    .await;
    assert!(
        late.body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("EXPIRED")
    );
    let kept_status = checkout
        .app
        .graphql(Some(&member), status, json!({ "id": kept }))
        .await;
    assert_eq!(kept_status.data("/node/status"), "CAPTURED");
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(
    expiry_on_two_replicas,
    uncaptured_authorizations_expire_once
);

/// The embedded default runs the same expiry job (one process).
async fn uncaptured_authorization_expires(backend: Backend) {
    let mut checkout =
        Checkout::new_with(backend, 3, |config| config.clearing.capture_window_secs = 2).await;
    let order = checkout.order.clone();
    let payment = authorize_on(&mut checkout, &order, 1_000).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = checkout
            .app
            .graphql(
                Some(&checkout.member),
                "query($id: ID!) { node(id: $id) { ... on Payment { status } } }",
                json!({ "id": payment }),
            )
            .await;
        if seen.data("/node/status") == "EXPIRED" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not expired: {}",
            seen.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(order_paid(&checkout, &order).await, "0");
    checkout.app.stop().await;
}
on_both_backends!(expiry, uncaptured_authorization_expires);

/// A captured, refunded or voided payment still counts toward the card's limits of the day.
async fn settling_gives_no_limit_back(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 3, |config| {
        config.payment_limits.card_velocity_count = 2;
    })
    .await;
    let member = checkout.member.clone();
    let captured = authorize(&mut checkout, 1, 1_000).await;
    capture(&checkout, &member, &captured, None, "c-1")
        .await
        .data("/capturePayment");
    refund(&checkout, &member, &captured, 1_000, "r-1")
        .await
        .data("/refundPayment");
    let voided = authorize(&mut checkout, 1, 1_000).await;
    void(&checkout, &member, &voided, "v-1")
        .await
        .data("/voidPayment");
    let order = checkout.new_order(1).await;
    let request = checkout.request_for(&order, 1_000).await;
    let (token, signature) = checkout.tap(&request);
    let third = checkout.pay(&request, &token, &signature, "tap-3").await;
    assert_eq!(third["status"], "DECLINED", "{third}");
    assert_eq!(third["declineReason"], "CVM_REQUIRED");
    checkout.app.stop().await;
}
on_both_backends!(limits_stay, settling_gives_no_limit_back);
