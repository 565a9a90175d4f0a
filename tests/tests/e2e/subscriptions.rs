//! Live subscriptions over a real WebSocket: delivery, visibility, resume without gap or duplicate,
//! fan-out across replicas through Redis, and who is refused or cut off.

use std::time::Duration;

use api::auth::Role;
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, PrivateRedis, Received, RecordKind, Replicas, Subscriber, TestApp, checkout::Checkout,
    encode_global_id, on_both_backends, on_postgres,
};
use serde_json::{Value, json};

const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
const CREATE_ORDER: &str =
    "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }";
const METRICS_TOKEN: &str = "scrape-token-0123456789";
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

/// A product of the retailer, created through the hub at `url`.
async fn product_at(client: &reqwest::Client, url: &str, admin: &str) -> Value {
    hub_tests::post_graphql(
        client,
        url,
        admin,
        CREATE_PRODUCT,
        json!({ "input": { "sku": "R-1", "name": "R", "priceMinor": 100, "currency": "EUR" } }),
    )
    .await
    .data("/createProduct/product/id")
    .clone()
}

/// An order of one `product`, created through the hub at `url`; any error fails the test.
async fn order_at(client: &reqwest::Client, url: &str, admin: &str, product: &Value) -> String {
    hub_tests::post_graphql(
        client,
        url,
        admin,
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
    let app = TestApp::start_with(backend, |config| {
        config.metrics_token = Some(METRICS_TOKEN.into());
    })
    .await;
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

    // A hundred missed while away, then resumed from the last cursor: exactly those, in order, then
    // live.
    let mut missed = Vec::new();
    for _ in 0..100 {
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

    // What an operator watches: connections, open subscriptions, deliveries and their lag.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name) && !line.starts_with('#'))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(
        value("hub_subscription_connections"),
        2.0,
        "two open connections"
    );
    assert_eq!(
        value("hub_subscriptions_open"),
        2.0,
        "one subscription on each"
    );
    assert!(
        value("hub_subscription_deliveries_total") >= 104.0,
        "3 live, 100 replayed, 1 live after the replay"
    );
    assert!(value("hub_subscription_delivery_lag_seconds_count") >= 104.0);
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
    let (member, token) = app
        .member_with_token(app.retailer_id, "leaving", Role::Member, None)
        .await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &token).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    app.graphql(
        Some(&admin),
        "mutation($input: RemoveMemberInput!) { removeMember(input: $input) { removedMemberId } }",
        json!({ "input": { "memberId": hub_tests::encode_global_id(hub_tests::RecordKind::Member, member) } }),
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
    let product = product_at(&client, &replicas.urls[0], &admin).await;
    let mut subscriber = Subscriber::acknowledged(&replicas.urls[1], &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    for _ in 0..3 {
        let id = order_at(&client, &replicas.urls[0], &admin, &product).await;
        let (record, _) = next_event(&mut subscriber).await;
        assert_eq!(record, id, "written through A, delivered by B");
    }
    replicas.stop().await;
}

const TERMINAL_REQUESTS: &str =
    "subscription($terminal: ID!) { terminalPaymentRequests(terminalId: $terminal) {
    id status amountMinor } }";
const FOLLOW_REQUEST: &str = "subscription($id: ID!) { paymentRequest(id: $id) {
    id status amountMinor declineCount lastDeclineReason payment { status cardLastFour } } }";
const STEP_CARD: &str = "mutation($id: ID!) { blockCard(input: { id: $id }) { card { status } } }";

/// The bank blocks or unblocks the checkout's card (`mutation`); the card's status after.
async fn step_card(checkout: &Checkout, mutation: &str) -> Value {
    checkout
        .app
        .graphql(
            Some(&checkout.bank_admin),
            &STEP_CARD.replace("blockCard", mutation),
            json!({ "id": checkout.card_gid }),
        )
        .await
        .data(&format!("/{mutation}/card/status"))
        .clone()
}

on_both_backends!(checkout_screen_and_reader_follow_a_payment, checkout_flow);
async fn checkout_flow(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 3, |config| {
        config.subscriptions.subscription_recheck_ms = 200;
    })
    .await;
    let base_url = checkout.app.base_url.clone();
    let terminal = encode_global_id(RecordKind::Device, checkout.device);

    // The reader (the terminal's own device) learns of the request; a stranger may not follow it.
    let mut reader = Subscriber::acknowledged(&base_url, &checkout.device_token()).await;
    reader
        .subscribe("r", TERMINAL_REQUESTS, json!({ "terminal": terminal }))
        .await;
    let stranger_org = checkout
        .app
        .create_organization("Nosy", OrganizationKind::Supplier)
        .await;
    let stranger = checkout.app.token(stranger_org, Role::Admin).await;
    let mut nosy = Subscriber::acknowledged(&base_url, &stranger).await;
    nosy.subscribe("n", TERMINAL_REQUESTS, json!({ "terminal": terminal }))
        .await;
    match nosy.next(Duration::from_secs(10)).await {
        Some(Received::Next(payload)) => assert_eq!(
            payload["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{payload}"
        ),
        other => panic!("a stranger's terminal subscription: {other:?}"),
    }

    let request = checkout.request(1_000).await;
    let seen = reader.data().await;
    assert_eq!(seen["terminalPaymentRequests"]["id"], request["id"]);
    assert_eq!(seen["terminalPaymentRequests"]["status"], "OPEN");

    // The checkout screen follows the request until it is paid, then the subscription completes.
    let mut screen = Subscriber::acknowledged(&base_url, &checkout.member).await;
    screen
        .subscribe("p", FOLLOW_REQUEST, json!({ "id": request["id"] }))
        .await;
    let first = screen.data().await;
    assert_eq!(first["paymentRequest"]["status"], "OPEN");
    assert_eq!(first["paymentRequest"]["declineCount"], 0);
    assert_eq!(first["paymentRequest"]["lastDeclineReason"], Value::Null);

    // A blocked card is declined: the screen is told why, and the request stays open for another tap.
    assert_eq!(step_card(&checkout, "blockCard").await, "BLOCKED");
    let (token, signature) = checkout.tap(&request);
    let declined = checkout.pay(&request, &token, &signature, "sub-0").await;
    assert_eq!(declined["declineReason"], "CARD_BLOCKED", "{declined}");
    let noted = screen.data().await;
    assert_eq!(noted["paymentRequest"]["status"], "OPEN", "{noted}");
    assert_eq!(noted["paymentRequest"]["declineCount"], 1);
    assert_eq!(noted["paymentRequest"]["lastDeclineReason"], "CARD_BLOCKED");
    assert_eq!(noted["paymentRequest"]["payment"], Value::Null);
    // The reader hears of the request again, still open (its reader waits for the next card).
    assert_eq!(
        reader.data().await["terminalPaymentRequests"]["status"],
        "OPEN"
    );
    assert_eq!(step_card(&checkout, "unblockCard").await, "ACTIVE");

    let (token, signature) = checkout.tap(&request);
    let paid = checkout.pay(&request, &token, &signature, "sub-1").await;
    assert_eq!(paid["status"], "AUTHORIZED", "{paid}");
    let done = screen.data().await;
    assert_eq!(done["paymentRequest"]["status"], "PAID");
    assert_eq!(
        done["paymentRequest"]["payment"],
        json!({ "status": "AUTHORIZED", "cardLastFour": "1234" }),
        "the screen shows which card paid"
    );
    assert!(matches!(
        screen.next(Duration::from_secs(10)).await,
        Some(Received::Complete)
    ));
    let update = reader.data().await;
    assert_eq!(update["terminalPaymentRequests"]["status"], "PAID");

    // Revoking the device closes its connection.
    checkout.revoke_device(&terminal).await;
    match reader.next(Duration::from_secs(10)).await {
        Some(Received::Closed(4403, reason)) => assert!(reason.contains("revoked"), "{reason}"),
        other => panic!("expected close 4403 after the revocation, got {other:?}"),
    }
    checkout.app.stop().await;
}

on_both_backends!(an_expiring_token_ends_the_connection, expiring_token);
async fn expiring_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (_, token) = app
        .member_with_token(
            app.retailer_id,
            "brief",
            Role::Member,
            Some(Duration::from_secs(2)),
        )
        .await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &token).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let started = std::time::Instant::now();
    match subscriber.next(Duration::from_secs(10)).await {
        Some(Received::Closed(4403, reason)) => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("expected close 4403 at expiry, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed at expiry, not at a later check"
    );
    app.stop().await;
}

on_both_backends!(
    a_slow_consumer_is_ended_with_its_cursor_and_resumes,
    slow_consumer
);
async fn slow_consumer(backend: Backend) {
    use futures_util::StreamExt;
    let app = TestApp::start_with(backend, |config| {
        config.subscriptions.subscription_buffer = 8;
    })
    .await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let product = product(&app, &admin).await;
    let services = &app.hub.state.services;
    let principal = app
        .hub
        .state
        .authenticator
        .authenticate(&app.hub.state.db, Some(&admin))
        .await
        .expect("principal");
    // A subscriber that reads two events and then stops reading (what a stalled socket does to its
    // stream), and a watcher that reads everything live, proving the feed read every event.
    let mut stalled = Box::pin(services.feed.follow(
        services.events.clone(),
        principal.clone(),
        None,
    ));
    let mut watcher = Box::pin(services.feed.follow(
        services.events.clone(),
        principal.clone(),
        None,
    ));
    // The watcher reads as events come, on its own task.
    let watched = tokio::spawn(async move {
        let mut types = Vec::new();
        while types.len() < 22 {
            let event = tokio::time::timeout(Duration::from_secs(20), watcher.next())
                .await
                .expect("the feed reads every order")
                .expect("an event")
                .expect("the watcher keeps up");
            types.push(event.event_type.clone());
        }
        types
    });
    let mut created = Vec::new();
    let mut delivered = Vec::new();
    for _ in 0..2 {
        created.push(create_order(&app, &admin, &product).await);
        let event = tokio::time::timeout(Duration::from_secs(20), stalled.next())
            .await
            .expect("delivered while reading")
            .expect("an event")
            .expect("no error");
        delivered.push(event);
    }
    // Twenty more while it does not read: more than the buffer of eight (the watcher, reading as they
    // come, never holds more than the few a single read of the feed brings).
    for _ in 0..20 {
        created.push(create_order(&app, &admin, &product).await);
    }
    let watched = watched.await.expect("watcher");
    assert!(
        watched.iter().all(|kind| kind == "order.created"),
        "{watched:?}"
    );
    let cursor = match tokio::time::timeout(Duration::from_secs(20), stalled.next())
        .await
        .expect("the stalled stream answers")
    {
        Some(Err(api::error::ApiError::SlowConsumer { cursor })) => cursor,
        other => panic!("expected SLOW_CONSUMER, got {other:?}"),
    };
    assert!(stalled.next().await.is_none(), "the stream ends after it");
    assert_eq!(
        Some(cursor),
        delivered.last().and_then(|event| event.position),
        "the cursor is the last event delivered"
    );
    // Resuming from the cursor gives every later order exactly once.
    let mut resumed = Box::pin(services.feed.follow(
        services.events.clone(),
        principal,
        Some(cursor),
    ));
    let mut records: Vec<String> = delivered
        .iter()
        .filter(|event| event.event_type == "order.created")
        .map(|event| encode_global_id(RecordKind::Order, event.record_id))
        .collect();
    while records.len() < created.len() {
        let event = tokio::time::timeout(Duration::from_secs(20), resumed.next())
            .await
            .expect("resumed")
            .expect("an event")
            .expect("no error");
        if event.event_type == "order.created" {
            records.push(encode_global_id(RecordKind::Order, event.record_id));
        }
    }
    assert_eq!(records, created, "nothing lost, nothing twice, in order");
    app.stop().await;
}

on_postgres!(
    a_redis_outage_loses_no_event_and_fails_no_write,
    redis_outage
);
async fn redis_outage(_backend: Backend) {
    let mut redis = PrivateRedis::start().await;
    let replicas = Replicas::start_with_env(2, &[("REDIS_URL".to_owned(), redis.url())]).await;
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let client = reqwest::Client::new();
    let product = product_at(&client, &replicas.urls[0], &admin).await;
    let mut subscriber = Subscriber::acknowledged(&replicas.urls[1], &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let write = |round: usize| {
        let (client, url, admin, product) = (
            client.clone(),
            replicas.urls[round % 2].clone(),
            admin.clone(),
            product.clone(),
        );
        // Any error fails the test: a write that failed because Redis is down.
        async move { order_at(&client, &url, &admin, &product).await }
    };
    let mut written = Vec::new();
    let mut received = Vec::new();
    for phase in ["before", "during", "after"] {
        match phase {
            "during" => redis.stop(),
            "after" => redis.resume().await,
            _ => {}
        }
        for round in 0..8 {
            written.push(write(round).await);
        }
        while received.len() < written.len() {
            let (record, _) = next_event(&mut subscriber).await;
            received.push(record);
        }
        assert_eq!(
            received, written,
            "{phase} the outage: every event, once, in order"
        );
    }
    replicas.stop().await;
}

on_both_backends!(resume_while_writers_commit, resume_under_writers);
async fn resume_under_writers(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let app = Arc::new(TestApp::start(backend).await);
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let product = product(&app, &admin).await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let created = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (app, admin, product, created) =
                (app.clone(), admin.clone(), product.clone(), created.clone());
            tokio::spawn(async move {
                for _ in 0..15 {
                    let id = create_order(&app, &admin, &product).await;
                    created.lock().expect("list").push(id);
                }
            })
        })
        .collect();
    // Take a few, drop the connection while the writers go on, and come back with the cursor.
    let mut received = Vec::new();
    let mut last = 0;
    for _ in 0..5 {
        let (record, position) = next_event(&mut subscriber).await;
        assert!(position > last);
        last = position;
        received.push(record);
    }
    subscriber.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut resumed = Subscriber::acknowledged(&app.base_url, &admin).await;
    resumed
        .subscribe("2", ORDER_EVENTS, json!({ "after": last.to_string() }))
        .await;
    while received.len() < 30 {
        let (record, position) = next_event(&mut resumed).await;
        assert!(position > last, "in commit order, no repeat at the switch");
        last = position;
        received.push(record);
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut expected = created.lock().expect("list").clone();
    let mut got = received.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every order's event exactly once");
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "nothing more"
    );
}

/// The error code of the next message, which must be an error.
async fn next_error_code(subscriber: &mut Subscriber) -> String {
    match subscriber.next(Duration::from_secs(10)).await {
        Some(Received::Next(payload)) => payload["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {payload}"))
            .to_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

on_both_backends!(limits_say_which, limits);
async fn limits(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.subscriptions.max_subscriptions_per_connection = 2;
        config.subscriptions.max_connections_per_organization = 2;
        config.subscriptions.max_connections_per_caller = 1;
    })
    .await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let product = product(&app, &admin).await;
    create_order(&app, &admin, &product).await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &admin).await;
    // Two subscriptions, each proven running by the event it replays; then a third is one too many.
    for id in ["1", "2"] {
        subscriber
            .subscribe(id, ORDER_EVENTS, json!({ "after": "0" }))
            .await;
        next_event(&mut subscriber).await;
    }
    subscriber
        .subscribe("3", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    assert_eq!(
        next_error_code(&mut subscriber).await,
        "TOO_MANY_SUBSCRIPTIONS"
    );
    assert!(matches!(
        subscriber.next(Duration::from_secs(10)).await,
        Some(Received::Complete)
    ));
    // A stopped subscription frees its slot.
    subscriber.stop("1").await;
    assert!(matches!(
        subscriber.next(Duration::from_secs(10)).await,
        Some(Received::Complete)
    ));
    subscriber
        .subscribe("4", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    next_event(&mut subscriber).await;

    // One connection per member or device here: the same member's second is refused...
    let mut second = Subscriber::connect(&app.base_url, Some(&admin)).await;
    match second.next(Duration::from_secs(10)).await {
        Some(Received::Closed(4429, reason)) => {
            assert!(reason.contains("member or device"), "{reason}")
        }
        other => panic!("expected close 4429 for the member, got {other:?}"),
    }
    // ...another member's is not, and two per organization: a third member's is refused.
    let colleague = app
        .token_for(app.retailer_id, "colleague", Role::Member)
        .await;
    let _colleague = Subscriber::acknowledged(&app.base_url, &colleague).await;
    let third = app.token_for(app.retailer_id, "third", Role::Member).await;
    let mut refused = Subscriber::connect(&app.base_url, Some(&third)).await;
    match refused.next(Duration::from_secs(10)).await {
        Some(Received::Closed(4429, reason)) => {
            assert!(reason.contains("organization"), "{reason}")
        }
        other => panic!("expected close 4429 for the organization, got {other:?}"),
    }
    let other = app
        .create_organization("Other", OrganizationKind::Supplier)
        .await;
    let other_token = app.token(other, Role::Admin).await;
    Subscriber::acknowledged(&app.base_url, &other_token)
        .await
        .close()
        .await;
    app.stop().await;
}

on_both_backends!(a_cursor_older_than_the_log_is_refused, expired_cursor);
async fn expired_cursor(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let product = product(&app, &admin).await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    for _ in 0..3 {
        create_order(&app, &admin, &product).await;
        next_event(&mut subscriber).await;
    }
    subscriber.close().await;
    // What retention will do: the two oldest events are gone.
    let db = &app.hub.state.db;
    for statement in [
        "DELETE FROM event_recipient WHERE event_id IN (SELECT id FROM event WHERE position <= 2)",
        "DELETE FROM event WHERE position <= 2",
    ] {
        db.execute_unprepared(statement).await.expect("purge");
    }
    let mut late = Subscriber::acknowledged(&app.base_url, &admin).await;
    late.subscribe("1", ORDER_EVENTS, json!({ "after": "1" }))
        .await;
    assert_eq!(next_error_code(&mut late).await, "CURSOR_EXPIRED");
    assert!(matches!(
        late.next(Duration::from_secs(10)).await,
        Some(Received::Complete)
    ));
    let query = app
        .graphql(
            Some(&admin),
            "query($after: String) { events(after: $after, first: 10) { edges { cursor } } }",
            json!({ "after": "1" }),
        )
        .await;
    query.expect_error("CURSOR_EXPIRED");
    // From the oldest kept event's predecessor on, all is there.
    late.subscribe("2", ORDER_EVENTS, json!({ "after": "2" }))
        .await;
    let (_, position) = next_event(&mut late).await;
    assert_eq!(position, 3);
    app.stop().await;
}

on_both_backends!(
    only_bounded_subscriptions_run_over_websocket,
    websocket_gate
);
async fn websocket_gate(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let mut subscriber = Subscriber::acknowledged(&app.base_url, &admin).await;
    let before = app.fingerprint().await;
    // Queries and mutations belong to POST /graphql, with its timeout and checks.
    subscriber
        .subscribe("q", "{ me { role } }", json!({}))
        .await;
    assert_eq!(next_error_code(&mut subscriber).await, "BAD_REQUEST");
    subscriber
        .subscribe(
            "m",
            "mutation { createProduct(input: { sku: \"WS\", name: \"WS\", priceMinor: 1, currency: \"EUR\" }) { product { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(next_error_code(&mut subscriber).await, "BAD_REQUEST");
    // A document whose fragments expand exponentially is refused before validation, as over HTTP.
    let mut bomb =
        String::from("subscription { events { ...F30 } } fragment F0 on Event { position }");
    for level in 1..=30 {
        bomb.push_str(&format!(
            " fragment F{level} on Event {{ ...F{prev} ...F{prev} }}",
            prev = level - 1
        ));
    }
    subscriber.subscribe("b", &bomb, json!({})).await;
    assert_eq!(next_error_code(&mut subscriber).await, "QUERY_TOO_COMPLEX");
    // The connection still serves a good subscription.
    let product = product(&app, &admin).await;
    subscriber
        .subscribe("s", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    let order = create_order(&app, &admin, &product).await;
    let (record, _) = next_event(&mut subscriber).await;
    assert_eq!(record, order);
    assert_eq!(
        before.rows("product") + 1,
        app.fingerprint().await.rows("product"),
        "the mutation over WebSocket created nothing (the one product is the test's own)"
    );

    // A subscription before the handshake is refused with 4401.
    let mut early = Subscriber::connect_sending(
        &app.base_url,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { events { position } }" } }),
    )
    .await;
    match early.next(Duration::from_secs(10)).await {
        Some(Received::Closed(4401, _)) => {}
        other => panic!("expected close 4401, got {other:?}"),
    }
    app.stop().await;
}

on_postgres!(
    replicas_start_and_deliver_while_redis_is_down,
    redis_down_at_start
);
async fn redis_down_at_start(_backend: Backend) {
    let mut redis = PrivateRedis::start().await;
    redis.stop();
    let replicas = Replicas::start_with_env(2, &[("REDIS_URL".to_owned(), redis.url())]).await;
    let ready: Value = reqwest::get(format!("{}/readyz", replicas.urls[1]))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["redis"], false, "{ready}");
    assert_eq!(ready["database"], true, "{ready}");
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let client = reqwest::Client::new();
    let product = product_at(&client, &replicas.urls[0], &admin).await;
    let mut subscriber = Subscriber::acknowledged(&replicas.urls[1], &admin).await;
    subscriber
        .subscribe("1", ORDER_EVENTS, json!({ "after": "0" }))
        .await;
    // Written through A while Redis was never up: B's feed finds it by polling.
    let order = order_at(&client, &replicas.urls[0], &admin, &product).await;
    assert_eq!(next_event(&mut subscriber).await.0, order);
    redis.resume().await;
    let order = order_at(&client, &replicas.urls[0], &admin, &product).await;
    assert_eq!(next_event(&mut subscriber).await.0, order);
    replicas.stop().await;
}
