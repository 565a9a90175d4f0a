//! The secure payment mode end to end: a card personalized by the issuer tooling answers through the
//! card-protocol state machine; the terminal's device submits; the hub authorizes at most once. The
//! fixture is `hub_tests::checkout`; the helpers below are shared by the files of this directory.

mod declines;
mod flags;
mod flow;
mod keys;
mod races;

use hub_tests::{
    checkout::{Checkout, PAY},
    decode_global_id,
};
use sea_orm::{EntityTrait, QueryFilter};
use serde_json::{Value, json};

/// A submission declined with `reason`, that left everything but its own evidence as it was.
pub(super) async fn expect_decline(
    checkout: &Checkout,
    request: &Value,
    submission: (String, String),
    reason: &str,
    key: &str,
) {
    let before = checkout.app.fingerprint().await;
    let outcome = checkout
        .pay(request, &submission.0, &submission.1, key)
        .await;
    assert_eq!(outcome["status"], "DECLINED", "{reason}: {outcome}");
    assert_eq!(outcome["declineReason"], reason, "{outcome}");
    let after = checkout.app.fingerprint().await;
    for (table, state) in &before.tables {
        if table != "payment_evidence" && table != "idempotency_record" && table != "audit_entry" {
            assert_eq!(
                after.tables.get(table),
                Some(state),
                "{reason}: {table} changed"
            );
        }
    }
    assert_eq!(
        after.rows("payment_evidence"),
        before.rows("payment_evidence") + 1,
        "{reason}: evidence recorded"
    );
    assert_eq!(
        after.rows("audit_entry"),
        before.rows("audit_entry") + 1,
        "{reason}: the recorded decline is audited like any change"
    );
}

pub(super) async fn authorized(
    checkout: &Checkout,
    request: &Value,
    submission: (String, String),
    key: &str,
) {
    let outcome = checkout
        .pay(request, &submission.0, &submission.1, key)
        .await;
    assert_eq!(outcome["status"], "AUTHORIZED", "{key}: {outcome}");
}

pub(super) async fn payments_for(checkout: &Checkout, request: &Value) -> usize {
    let id = decode_global_id(request["id"].as_str().expect("id"));
    entities::payment::Entity::find()
        .filter(sea_orm::ColumnTrait::eq(
            &entities::payment::Column::RequestId,
            id,
        ))
        .all(&checkout.app.hub.state.db)
        .await
        .expect("payments")
        .len()
}

/// One submission; `None` when the hub gave no answer (it died, the connection broke).
pub(super) async fn submit(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    variables: &Value,
) -> Option<Value> {
    loop {
        let response = client
            .post(format!("{url}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": PAY, "variables": variables }))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        if body
            .pointer("/errors/0/extensions/retryable")
            .and_then(Value::as_bool)
            == Some(true)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        return Some(body["data"]["payWithOneTimeNumber"].clone());
    }
}

pub(super) async fn pay_at(
    checkout: &Checkout,
    url: &str,
    request: &Value,
    tap: &(String, String),
    key: &str,
) -> Value {
    pay_as(checkout, url, &checkout.device_token(), request, tap, key).await
}

pub(super) async fn pay_as(
    checkout: &Checkout,
    url: &str,
    device_token: &str,
    request: &Value,
    tap: &(String, String),
    key: &str,
) -> Value {
    hub_tests::post_graphql(
        &checkout.app.client,
        url,
        device_token,
        PAY,
        json!({ "input": { "requestId": request["id"], "token": tap.0, "cardSignature": tap.1, "idempotencyKey": key } }),
    )
    .await
    .data("/payWithOneTimeNumber")
    .clone()
}

/// Blocks or unblocks the checkout's card as its issuer; returns the new status.
pub(super) async fn step_card(checkout: &Checkout, bank_admin: &str, mutation: &str) -> Value {
    checkout
        .app
        .graphql(
            Some(bank_admin),
            &format!(
                "mutation($id: ID!) {{ {mutation}(input: {{ id: $id }}) {{ card {{ status }} }} }}"
            ),
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data(&format!("/{mutation}/card/status"))
        .clone()
}
