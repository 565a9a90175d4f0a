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
    let request_before = stored_request(checkout, request).await;
    let outcome = checkout
        .pay(request, &submission.0, &submission.1, key)
        .await;
    assert_eq!(outcome["status"], "DECLINED", "{reason}: {outcome}");
    assert_eq!(outcome["declineReason"], reason, "{outcome}");
    let after = checkout.app.fingerprint().await;
    let request_after = stored_request(checkout, request).await;
    assert_decline_wrote_only_its_own(&before, &after, reason);
    assert_decline_noted(&request_before, &request_after, reason);
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

/// The tables a recorded decline may write: its evidence, idempotency key and audit entry; and for a
/// request open at the submitting terminal, the request's decline bookkeeping with the event that
/// announces it (checked by [`assert_decline_noted`]). Every other table is as it was.
pub(super) fn assert_decline_wrote_only_its_own(
    before: &hub_tests::Fingerprint,
    after: &hub_tests::Fingerprint,
    what: &str,
) {
    const WRITTEN: [&str; 6] = [
        "payment_evidence",
        "idempotency_record",
        "audit_entry",
        "payment_request",
        "event",
        "event_recipient",
    ];
    for (table, state) in &before.tables {
        if !WRITTEN.contains(&table.as_str()) {
            assert_eq!(
                after.tables.get(table),
                Some(state),
                "{what}: {table} changed"
            );
        }
    }
    assert_eq!(
        after.rows("payment_request"),
        before.rows("payment_request"),
        "{what}: no request added or removed"
    );
}

/// The request as stored, `None` when the test's request id names no stored request.
pub(super) async fn stored_request(
    checkout: &Checkout,
    request: &Value,
) -> Option<entities::payment_request::Model> {
    let id = decode_global_id(request["id"].as_str().expect("id"));
    entities::payment_request::Entity::find_by_id(id)
        .one(&checkout.app.hub.state.db)
        .await
        .expect("payment request")
}

/// An open request counted the decline and kept its reason, and changed in nothing else (its status,
/// challenge and amount stay: the next card may pay it); any other request did not change at all.
pub(super) fn assert_decline_noted(
    before: &Option<entities::payment_request::Model>,
    after: &Option<entities::payment_request::Model>,
    reason: &str,
) {
    let (Some(before), Some(after)) = (before, after) else {
        assert_eq!(before, after, "{reason}: the request");
        return;
    };
    let submitted_at_its_terminal = reason != "REQUEST_UNKNOWN";
    if before.status != entities::payment_request::PaymentRequestStatus::Open
        || !submitted_at_its_terminal
    {
        assert_eq!(
            before, after,
            "{reason}: a closed or foreign request is untouched"
        );
        return;
    }
    assert_eq!(
        after.decline_count,
        before.decline_count + 1,
        "{reason}: counted"
    );
    assert_eq!(
        after
            .last_decline_reason
            .map(|r| sea_orm::ActiveEnum::to_value(&r)),
        Some(reason.to_owned()),
        "{reason}: its reason kept"
    );
    let unchanged = entities::payment_request::Model {
        decline_count: before.decline_count,
        last_decline_reason: before.last_decline_reason,
        updated_at: before.updated_at,
        ..after.clone()
    };
    assert_eq!(
        &unchanged, before,
        "{reason}: nothing else on the request changed"
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
