//! Live subscriptions over a real WebSocket: delivery, visibility, resume without gap or duplicate,
//! fan-out across replicas through Redis, and who is refused or cut off.

use std::time::Duration;

use api::auth::Role;
use entities::organization::OrganizationKind;
use hub_tests::{Backend, Received, Replicas, Subscriber, TestApp, on_both_backends, on_postgres};
use serde_json::{Value, json};

const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
const CREATE_ORDER: &str =
    "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }";
const ORDER_EVENTS: &str =
    "subscription($after: String) { events(after: $after, filter: { recordType: \"Order\" }) {
    position eventType recordType recordId } }";

async fn product(app: &TestApp, token: &str) -> Value {
    app.graphql(
        Some(token),
        CREATE_PRODUCT,
        json!({ "input": { "sku": "SUB-1", "name": "Sub", "priceMinor": 100, "currency": "EUR" } }),
    )
    .await
    .data("/createProduct/product/id")
    .clone()
}

async fn create_order(app: &TestApp, token: &str, product: &Value) -> String {
    app.graphql(
        Some(token),
        CREATE_ORDER,
        json!({ "input": { "lines": [{ "productId": product, "quantity": 1 }] } }),
    )
    .await
    .data("/createOrder/order/id")
    .as_str()
    .expect("order id")
    .to_owned()
}

/// The next event's record id and position.
async fn next_event(subscriber: &mut Subscriber) -> (String, i64) {
    let data = subscriber.data().await;
    let event = &data["events"];
    assert_eq!(event["recordType"], "Order", "{data}");
    let position = event["position"]
        .as_str()
        .expect("position")
        .parse()
        .expect("int64");
    (
        event["recordId"].as_str().expect("record id").to_owned(),
        position,
    )
}

on_both_backends!(live_events_resume_without_gap_or_repeat, live_events);
async fn live_events(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let product = product(&app, &admin).await;
    let stranger_org = app
        .create_organization("Stranger", OrganizationKind::Supplier)
        .await;
    let stranger = app.token(stranger_org, Role::Admin).await;

    let mut watcher = Subscriber::acknowledged(&app.base_url, &stranger).await;
    watcher
        .subscribe("s", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;

    // Live: each order's creation arrives, in commit order.
    let mut last = 0;
    for _ in 0..3 {
        let id = create_order(&app, &admin, &product).await;
        let (record, position) = next_event(&mut subscriber).await;
        assert_eq!(record, id);
        assert!(position > last, "positions increase");
        last = position;
    }
    subscriber.close().await;

    // Missed while away, then resumed from the last cursor: exactly those, in order, then live.
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(create_order(&app, &admin, &product).await);
    }
    let mut resumed = Subscriber::acknowledged(&app.base_url, &admin).await;
    resumed
        .subscribe("2", ORDER_EVENTS, json!({ "after": last.to_string() }))
        .await;
    for expected in &missed {
        let (record, position) = next_event(&mut resumed).await;
        assert_eq!(&record, expected, "replayed in commit order");
        assert!(position > last);
        last = position;
    }
    let live = create_order(&app, &admin, &product).await;
    let (record, _) = next_event(&mut resumed).await;
    assert_eq!(record, live, "live after the replay, nothing repeated");
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "nothing more"
    );

    // The stranger's organization is no party to these orders.
    assert!(
        watcher.next(Duration::from_millis(300)).await.is_none(),
        "a stranger receives nothing"
    );
    app.stop().await;
}

on_both_backends!(refused_and_cut_off_connections, refused_and_cut_off);
async fn refused_and_cut_off(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.subscriptions.subscription_recheck_ms = 200;
    })
    .await;
    for token in [None, Some("not-a-token")] {
        let mut refused = Subscriber::connect(&app.base_url, token).await;
        match refused.next(Duration::from_secs(10)).await {
            Some(Received::Closed(4403, _)) => {}
            other => panic!("{token:?}: expected close 4403, got {other:?}"),
        }
    }

    // A removed member's open connection is closed, with nothing delivered after.
    let identity = &app.hub.state.services.identity;
    let member = identity
        .ensure_member(
            app.retailer_id,
            "leaving",
            api::auth::Role::Member.try_into().expect("member role"),
        )
        .await
        .expect("member");
    let token = identity.mint_for(&member, None).expect("token").token;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &token).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    app.graphql(
        Some(&admin),
        "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { removedMemberId } }",
        json!({ "input": { "memberId": hub_tests::encode_global_id(hub_tests::RecordKind::Member, member.id) } }),
    )
    .await
    .data("/removeMember");
    // The removal takes effect within one recheck interval (200 ms here); wait past it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let product = product(&app, &admin).await;
    create_order(&app, &admin, &product).await;
    match subscriber.next(Duration::from_secs(10)).await {
        Some(Received::Closed(4403, reason)) => assert!(reason.contains("revoked"), "{reason}"),
        other => panic!("expected close 4403 after the removal, got {other:?}"),
    }
    app.stop().await;
}

on_postgres!(fan_out_across_replicas_through_redis, across_replicas);
async fn across_replicas(_backend: Backend) {
    let replicas =
        Replicas::start_with_env(2, &[("REDIS_URL".to_owned(), hub_tests::redis_url())]).await;
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let client = reqwest::Client::new();
    let product = hub_tests::post_graphql(
        &client,
        &replicas.urls[0],
        &admin,
        CREATE_PRODUCT,
        json!({ "input": { "sku": "R-1", "name": "R", "priceMinor": 100, "currency": "EUR" } }),
    )
    .await
    .data("/createProduct/product/id")
    .clone();
    let mut subscriber = Subscriber::acknowledged(&replicas.urls[1], &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    for _ in 0..3 {
        let id = hub_tests::post_graphql(
            &client,
            &replicas.urls[0],
            &admin,
            CREATE_ORDER,
            json!({ "input": { "lines": [{ "productId": product, "quantity": 1 }] } }),
        )
        .await
        .data("/createOrder/order/id")
        .as_str()
        .expect("id")
        .to_owned();
        let (record, _) = next_event(&mut subscriber).await;
        assert_eq!(record, id, "written through A, delivered by B");
    }
    replicas.stop().await;
}
