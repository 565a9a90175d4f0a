//! Work plans and deliveries end to end: their party rules (the assignee and the carrier see and move
//! only their own records, strangers see nothing), refused steps and bad input that change nothing,
//! sealed recipients and positions, events and the tracking subscription.

use std::time::Duration;

use api::auth::Role;
use chrono::{TimeDelta, Utc};
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, GqlResponse, Received, RecordKind, Subscriber, TestApp, encode_global_id,
    on_both_backends, on_postgres,
};
use serde_json::{Value, json};

const CREATE_PLAN: &str = "mutation($input: CreateWorkPlanInput!) { createWorkPlan(input: $input) {
    workPlan { id status version title planner { name } assignee { name } device { id } location { id } } } }";
const MOVE_PLAN: &str = "mutation($id: ID!, $to: WorkStatus!, $version: Int) {
    moveWorkPlan(input: { id: $id, to: $to, version: $version }) { workPlan { id status version startedAt completedAt } } }";
const RECORD_WORK: &str = "mutation($input: RecordWorkInput!) { recordWork(input: $input) {
    workRecord { description minutes organization { name } } } }";
const PLAN_VIEW: &str = "query($id: ID!) { node(id: $id) { ... on WorkPlan { id status
    records { description minutes } } } }";
const CREATE_DELIVERY: &str =
    "mutation($input: CreateDeliveryInput!) { createDelivery(input: $input) {
    delivery { id status version carrier { name } recipient { name phone address } } } }";
const MOVE_DELIVERY: &str = "mutation($id: ID!, $to: DeliveryStatus!) {
    moveDelivery(input: { id: $id, to: $to }) { delivery { id status version onTime } } }";
const RECORD_TRAVEL: &str = "mutation($input: RecordTravelInput!) { recordTravel(input: $input) {
    travelRecord { sequence status note position { latitude longitude } } } }";
const DELIVERY_VIEW: &str = "query($id: ID!) { node(id: $id) { ... on Delivery { id status onTime
    recipient { name address } order { id } origin { id }
    travelRecords { sequence status note position { latitude longitude } } } } }";

fn org_id(id: uuid::Uuid) -> String {
    encode_global_id(RecordKind::Organization, id)
}

fn hours(n: i64) -> String {
    (Utc::now() + TimeDelta::hours(n)).to_rfc3339()
}

async fn location(app: &TestApp, token: &str) -> String {
    app.graphql(Some(token), "mutation { createLocation(input: { name: \"Store\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .as_str()
        .expect("location id")
        .to_owned()
}

/// A PLACED order of the retailer.
async fn placed_order(app: &TestApp, admin: &str, sku: &str) -> String {
    let product = app
        .graphql(
            Some(admin),
            "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }",
            json!({ "input": { "sku": sku, "name": sku, "priceMinor": 500, "currency": "EUR" } }),
        )
        .await
        .data("/createProduct/product/id")
        .clone();
    let order = app
        .graphql(
            Some(admin),
            "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }",
            json!({ "input": { "lines": [{ "productId": product, "quantity": 2 }] } }),
        )
        .await
        .data("/createOrder/order/id")
        .as_str()
        .expect("order id")
        .to_owned();
    app.graphql(
        Some(admin),
        "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
        json!({ "id": order }),
    )
    .await
    .data("/placeOrder");
    order
}

/// The types of the events of `family` that `token` sees, in commit order.
async fn family_events(app: &TestApp, token: &str, family: &str) -> Vec<String> {
    let events = app
        .graphql(
            Some(token),
            "{ events(first: 50) { edges { node { eventType family } } } }",
            json!({}),
        )
        .await;
    events
        .data("/events/edges")
        .as_array()
        .expect("edges")
        .iter()
        .filter(|edge| edge["node"]["family"] == family)
        .map(|edge| {
            edge["node"]["eventType"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn total(response: &GqlResponse, field: &str) -> i64 {
    response
        .data(&format!("/{field}/totalCount"))
        .as_i64()
        .expect("totalCount")
}

async fn work_plans_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let planner = app.token(app.retailer_id, Role::Admin).await;
    let provider = app
        .create_organization("Fixit Services", OrganizationKind::ServiceProvider)
        .await;
    let assignee = app.token(provider, Role::Member).await;
    let stranger_org = app
        .create_organization("Stranger", OrganizationKind::ServiceProvider)
        .await;
    let stranger = app.token(stranger_org, Role::Admin).await;
    let store = location(&app, &planner).await;

    let created = app
        .graphql(
            Some(&planner),
            CREATE_PLAN,
            json!({ "input": { "assigneeId": org_id(provider), "title": "Service the checkout reader",
                "locationId": store, "scheduledStart": hours(1), "scheduledEnd": hours(3),
                "idempotencyKey": "plan-1" } }),
        )
        .await;
    let plan = created.data("/createWorkPlan/workPlan").clone();
    let id = plan["id"].as_str().expect("id").to_owned();
    assert_eq!(plan["status"], "PLANNED");
    assert_eq!(plan["assignee"]["name"], "Fixit Services");
    assert_eq!(plan["location"]["id"], store.as_str());

    // The assignee sees it (without the planner's location, which it may not see); a stranger sees
    // nothing, in lists and by ID alike.
    let seen = app
        .graphql(
            Some(&assignee),
            "{ workPlans(filter: { role: ASSIGNEE }) { totalCount edges { node { id title location { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(total(&seen, "workPlans"), 1);
    assert_eq!(seen.data("/workPlans/edges/0/node/id"), id.as_str());
    assert!(seen.data("/workPlans/edges/0/node/location").is_null());
    let as_planner = app
        .graphql(
            Some(&assignee),
            "{ workPlans(filter: { role: PLANNER }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(total(&as_planner, "workPlans"), 0);
    let none = app
        .graphql(
            Some(&stranger),
            "{ workPlans { totalCount } events { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(total(&none, "workPlans"), 0);
    assert!(
        none.data("/events/edges")
            .as_array()
            .expect("edges")
            .is_empty()
    );
    app.graphql(Some(&stranger), PLAN_VIEW, json!({ "id": id }))
        .await
        .expect_error("NOT_FOUND");
    app.graphql(
        Some(&stranger),
        MOVE_PLAN,
        json!({ "id": id, "to": "IN_PROGRESS" }),
    )
    .await
    .expect_error("NOT_FOUND");

    // Each party takes only its own steps, and a refused step changes nothing.
    let before = app.fingerprint().await;
    app.graphql(
        Some(&planner),
        MOVE_PLAN,
        json!({ "id": id, "to": "IN_PROGRESS" }),
    )
    .await
    .expect_error("FORBIDDEN");
    app.graphql(
        Some(&assignee),
        MOVE_PLAN,
        json!({ "id": id, "to": "CANCELLED" }),
    )
    .await
    .expect_error("FORBIDDEN");
    app.graphql(
        Some(&assignee),
        MOVE_PLAN,
        json!({ "id": id, "to": "DONE" }),
    )
    .await
    .expect_error("INVALID_TRANSITION");
    app.graphql(
        Some(&assignee),
        MOVE_PLAN,
        json!({ "id": id, "to": "IN_PROGRESS", "version": 7 }),
    )
    .await
    .expect_error("CONFLICT");
    let work = |description: &str, from: i64, to: i64| {
        json!({ "input": { "workPlanId": id, "description": description,
            "startedAt": hours(from), "endedAt": hours(to) } })
    };
    app.graphql(Some(&assignee), RECORD_WORK, work("too early", -2, -1))
        .await
        .expect_error("INVALID_TRANSITION");
    assert_eq!(app.fingerprint().await, before);

    let started = app
        .graphql(
            Some(&assignee),
            MOVE_PLAN,
            json!({ "id": id, "to": "IN_PROGRESS", "version": 1 }),
        )
        .await;
    assert_eq!(started.data("/moveWorkPlan/workPlan/status"), "IN_PROGRESS");
    assert_eq!(started.data("/moveWorkPlan/workPlan/version"), 2);
    let recorded = app
        .graphql(
            Some(&assignee),
            RECORD_WORK,
            work("Replaced the antenna", -2, -1),
        )
        .await;
    assert_eq!(recorded.data("/recordWork/workRecord/minutes"), 60);
    assert_eq!(
        recorded.data("/recordWork/workRecord/organization/name"),
        "Fixit Services"
    );
    app.graphql(Some(&planner), RECORD_WORK, work("not mine", -2, -1))
        .await
        .expect_error("FORBIDDEN");
    app.graphql(
        Some(&assignee),
        MOVE_PLAN,
        json!({ "id": id, "to": "DONE" }),
    )
    .await
    .data("/moveWorkPlan");
    let before = app.fingerprint().await;
    app.graphql(Some(&assignee), RECORD_WORK, work("after the end", -1, 0))
        .await
        .expect_error("INVALID_TRANSITION");
    app.graphql(
        Some(&planner),
        MOVE_PLAN,
        json!({ "id": id, "to": "CANCELLED" }),
    )
    .await
    .expect_error("INVALID_TRANSITION");
    assert_eq!(app.fingerprint().await, before);

    let view = app
        .graphql(Some(&planner), PLAN_VIEW, json!({ "id": id }))
        .await;
    assert_eq!(view.data("/node/status"), "DONE");
    assert_eq!(
        view.data("/node/records/0/description"),
        "Replaced the antenna"
    );

    // Both parties follow the plan's events; the family is WORK.
    for token in [&planner, &assignee] {
        let types = family_events(&app, token, "WORK").await;
        assert_eq!(
            types,
            [
                "work_plan.created",
                "work_plan.started",
                "work_plan.recorded",
                "work_plan.completed"
            ]
        );
    }
    app.stop().await;
}
on_both_backends!(work_plans, work_plans_flow);

/// A retailer, its store, a placed order, a carrier and a second carrier.
struct Shipping {
    shipper: String,
    carrier: String,
    other_carrier: String,
    carrier_id: uuid::Uuid,
    store: String,
    order: String,
    /// The promised window, fixed once so that a retried input is the same input.
    promised: (String, String),
}

async fn shipping(app: &TestApp) -> Shipping {
    let shipper = app.token(app.retailer_id, Role::Admin).await;
    let carrier_id = app
        .create_organization("Swift Parcels", OrganizationKind::Logistics)
        .await;
    let other = app
        .create_organization("Slow Freight", OrganizationKind::Logistics)
        .await;
    Shipping {
        store: location(app, &shipper).await,
        order: placed_order(app, &shipper, "SHIP-1").await,
        carrier: app.token(carrier_id, Role::Member).await,
        other_carrier: app.token(other, Role::Admin).await,
        carrier_id,
        shipper,
        promised: (hours(-1), hours(48)),
    }
}

fn delivery_input(s: &Shipping, key: &str) -> Value {
    json!({ "input": { "orderId": s.order, "carrierId": org_id(s.carrier_id), "originLocationId": s.store,
        "recipient": { "name": "Ada Lovelace", "phone": "+31 20 555 0101", "address": "Keizersgracht 1, Amsterdam" },
        "promisedFrom": s.promised.0, "promisedUntil": s.promised.1, "idempotencyKey": key } })
}

fn travel(delivery: &str, seconds_ago: i64, latitude: f64, note: &str) -> Value {
    json!({ "input": { "deliveryId": delivery,
        "recordedAt": (Utc::now() - TimeDelta::seconds(seconds_ago)).to_rfc3339(),
        "position": { "latitude": latitude, "longitude": 4.9 }, "note": note } })
}

async fn deliveries_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let s = shipping(&app).await;
    let created = app
        .graphql(
            Some(&s.shipper),
            CREATE_DELIVERY,
            delivery_input(&s, "del-1"),
        )
        .await;
    let delivery = created.data("/createDelivery/delivery").clone();
    let id = delivery["id"].as_str().expect("id").to_owned();
    assert_eq!(delivery["status"], "PLANNED");
    assert_eq!(
        delivery["recipient"]["address"],
        "Keizersgracht 1, Amsterdam"
    );
    // The same key and input return the same delivery.
    let again = app
        .graphql(
            Some(&s.shipper),
            CREATE_DELIVERY,
            delivery_input(&s, "del-1"),
        )
        .await;
    assert_eq!(again.data("/createDelivery/delivery/id"), id.as_str());

    // The carrier sees the delivery and its recipient, not the order; the other carrier nothing.
    let seen = app
        .graphql(Some(&s.carrier), DELIVERY_VIEW, json!({ "id": id }))
        .await;
    assert_eq!(seen.data("/node/recipient/name"), "Ada Lovelace");
    assert!(seen.data("/node/order").is_null());
    let listed = app
        .graphql(
            Some(&s.carrier),
            "{ deliveries(filter: { role: CARRIER }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(total(&listed, "deliveries"), 1);
    app.graphql(Some(&s.other_carrier), DELIVERY_VIEW, json!({ "id": id }))
        .await
        .expect_error("NOT_FOUND");
    let none = app
        .graphql(
            Some(&s.other_carrier),
            "{ deliveries { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(total(&none, "deliveries"), 0);

    // Only the carrier moves it and appends its travel; refusals change nothing.
    let before = app.fingerprint().await;
    app.graphql(
        Some(&s.shipper),
        MOVE_DELIVERY,
        json!({ "id": id, "to": "PICKED_UP" }),
    )
    .await
    .expect_error("FORBIDDEN");
    app.graphql(
        Some(&s.other_carrier),
        MOVE_DELIVERY,
        json!({ "id": id, "to": "PICKED_UP" }),
    )
    .await
    .expect_error("NOT_FOUND");
    app.graphql(
        Some(&s.carrier),
        MOVE_DELIVERY,
        json!({ "id": id, "to": "DELIVERED" }),
    )
    .await
    .expect_error("INVALID_TRANSITION");
    app.graphql(
        Some(&s.carrier),
        RECORD_TRAVEL,
        travel(&id, 0, 52.37, "not yet collected"),
    )
    .await
    .expect_error("INVALID_TRANSITION");
    assert_eq!(app.fingerprint().await, before);

    for to in ["PICKED_UP", "IN_TRANSIT"] {
        app.graphql(
            Some(&s.carrier),
            MOVE_DELIVERY,
            json!({ "id": id, "to": to }),
        )
        .await
        .data("/moveDelivery");
    }
    let first = app
        .graphql(
            Some(&s.carrier),
            RECORD_TRAVEL,
            travel(&id, 0, 52.30, "left the depot"),
        )
        .await;
    assert_eq!(first.data("/recordTravel/travelRecord/sequence"), 1);
    assert_eq!(
        first.data("/recordTravel/travelRecord/status"),
        "IN_TRANSIT"
    );
    app.graphql(
        Some(&s.shipper),
        RECORD_TRAVEL,
        travel(&id, 0, 52.36, "not the carrier"),
    )
    .await
    .expect_error("FORBIDDEN");
    app.graphql(
        Some(&s.carrier),
        RECORD_TRAVEL,
        travel(&id, 0, 52.36, "around the corner"),
    )
    .await
    .data("/recordTravel");
    let delivered = app
        .graphql(
            Some(&s.carrier),
            MOVE_DELIVERY,
            json!({ "id": id, "to": "DELIVERED" }),
        )
        .await;
    assert_eq!(delivered.data("/moveDelivery/delivery/status"), "DELIVERED");
    assert_eq!(delivered.data("/moveDelivery/delivery/onTime"), true);

    // A delivered delivery takes no more travel records.
    let before = app.fingerprint().await;
    app.graphql(
        Some(&s.carrier),
        RECORD_TRAVEL,
        travel(&id, 0, 52.37, "after the fact"),
    )
    .await
    .expect_error("INVALID_TRANSITION");
    app.graphql(
        Some(&s.carrier),
        MOVE_DELIVERY,
        json!({ "id": id, "to": "RETURNED" }),
    )
    .await
    .expect_error("INVALID_TRANSITION");
    assert_eq!(app.fingerprint().await, before);

    let view = app
        .graphql(Some(&s.shipper), DELIVERY_VIEW, json!({ "id": id }))
        .await;
    assert_eq!(view.data("/node/order/id"), s.order.as_str());
    let records = view
        .data("/node/travelRecords")
        .as_array()
        .expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["note"], "around the corner");
    assert_eq!(records[1]["position"]["latitude"], 52.36);

    // Recipient and positions are stored sealed: their plaintext is nowhere in the tables.
    let db = &app.hub.state.db;
    for (table, column) in [
        ("delivery", "recipient_sealed"),
        ("travel_record", "position_sealed"),
    ] {
        let rows = hub_tests::sealed_values(db, table, column).await;
        assert!(!rows.is_empty(), "{table}");
        for value in rows {
            let text = String::from_utf8_lossy(&value);
            assert!(
                !text.contains("Keizersgracht") && !text.contains("52.3") && !text.contains("Ada"),
                "{table}.{column} holds plaintext"
            );
            assert_eq!(value[0], 1, "sealed-value format version");
        }
    }

    // Events reach the shipper and the carrier, as the LOGISTIC family.
    for token in [&s.shipper, &s.carrier] {
        let logistic = family_events(&app, token, "LOGISTIC").await;
        assert_eq!(
            logistic,
            [
                "delivery.created",
                "delivery.picked_up",
                "delivery.in_transit",
                "delivery.tracked",
                "delivery.tracked",
                "delivery.delivered"
            ]
        );
    }
    app.stop().await;
}
on_both_backends!(deliveries, deliveries_flow);

/// Out-of-order dates, another organization's order, a carrier that is no carrier, an order not yet
/// placed, positions off the globe, travel in the future: each refused with its code, nothing changed.
async fn bad_input_changes_nothing_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let s = shipping(&app).await;
    let supplier = app
        .create_organization("Own Orders Ltd", OrganizationKind::Supplier)
        .await;
    let supplier_admin = app.token(supplier, Role::Admin).await;
    let supplier_order = placed_order(&app, &supplier_admin, "SUP-1").await;
    let delivery = app
        .graphql(Some(&s.shipper), CREATE_DELIVERY, delivery_input(&s, "ok"))
        .await
        .data("/createDelivery/delivery/id")
        .as_str()
        .expect("id")
        .to_owned();

    let before = app.fingerprint().await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut input = delivery_input(&s, "bad");
        input["input"]["idempotencyKey"] = Value::Null;
        change(&mut input["input"]);
        input
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "window backwards",
            with(&|i| i["promisedUntil"] = json!(hours(-2))),
            "VALIDATION",
        ),
        (
            "window of a year",
            with(&|i| i["promisedUntil"] = json!(hours(24 * 365))),
            "VALIDATION",
        ),
        (
            "another organization's order",
            with(&|i| i["orderId"] = json!(supplier_order)),
            "NOT_FOUND",
        ),
        (
            "a shop as carrier",
            with(&|i| i["carrierId"] = json!(org_id(app.retailer_id))),
            "VALIDATION",
        ),
        (
            "an order ID for the carrier",
            with(&|i| i["carrierId"] = json!(s.order)),
            "VALIDATION",
        ),
        (
            "a blank recipient",
            with(&|i| i["recipient"]["name"] = json!("  ")),
            "VALIDATION",
        ),
        (
            "a location of nobody",
            with(&|i| {
                i["originLocationId"] =
                    json!(encode_global_id(RecordKind::Location, uuid::Uuid::now_v7()))
            }),
            "NOT_FOUND",
        ),
    ];
    for (case, input, code) in cases {
        let response = app.graphql(Some(&s.shipper), CREATE_DELIVERY, input).await;
        assert_eq!(response.error_code(), Some(code), "{case}: {response:?}");
    }
    let start = hours(2);
    let plan = |change: &dyn Fn(&mut Value)| {
        let mut input = json!({ "input": { "assigneeId": org_id(s.carrier_id), "title": "Restock",
            "scheduledStart": start, "scheduledEnd": hours(4) } });
        change(&mut input["input"]);
        input
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "ends before it starts",
            plan(&|i| i["scheduledEnd"] = json!(hours(1))),
            "VALIDATION",
        ),
        (
            "ends as it starts",
            plan(&|i| i["scheduledEnd"] = json!(start)),
            "VALIDATION",
        ),
        ("no title", plan(&|i| i["title"] = json!("")), "VALIDATION"),
        (
            "an unknown assignee",
            plan(&|i| i["assigneeId"] = json!(org_id(uuid::Uuid::now_v7()))),
            "NOT_FOUND",
        ),
        (
            "an order it cannot see",
            plan(&|i| i["orderId"] = json!(supplier_order)),
            "NOT_FOUND",
        ),
    ];
    for (case, input, code) in cases {
        let response = app.graphql(Some(&s.shipper), CREATE_PLAN, input).await;
        assert_eq!(response.error_code(), Some(code), "{case}: {response:?}");
    }
    assert_eq!(app.fingerprint().await, before);
    for to in ["PICKED_UP", "IN_TRANSIT"] {
        app.graphql(
            Some(&s.carrier),
            MOVE_DELIVERY,
            json!({ "id": delivery, "to": to }),
        )
        .await
        .data("/moveDelivery");
    }
    let before_travel = app.fingerprint().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("latitude 91", travel(&delivery, 0, 91.0, "n"), "VALIDATION"),
        (
            "in the future",
            travel(&delivery, -3600, 52.0, "n"),
            "VALIDATION",
        ),
        (
            "before the delivery existed",
            travel(&delivery, 600, 52.0, "n"),
            "VALIDATION",
        ),
    ];
    for (case, input, code) in cases {
        let response = app.graphql(Some(&s.carrier), RECORD_TRAVEL, input).await;
        assert_eq!(response.error_code(), Some(code), "{case}: {response:?}");
    }
    assert_eq!(app.fingerprint().await, before_travel);
    app.stop().await;
}
on_postgres!(bad_input_changes_nothing, bad_input_changes_nothing_flow);

/// `deliveryTracking`: the records after the given sequence, then each new one, ending when delivered.
async fn tracking_subscription_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let s = shipping(&app).await;
    let id = app
        .graphql(
            Some(&s.shipper),
            CREATE_DELIVERY,
            delivery_input(&s, "track"),
        )
        .await
        .data("/createDelivery/delivery/id")
        .as_str()
        .expect("id")
        .to_owned();
    for to in ["PICKED_UP", "IN_TRANSIT"] {
        app.graphql(
            Some(&s.carrier),
            MOVE_DELIVERY,
            json!({ "id": id, "to": to }),
        )
        .await
        .data("/moveDelivery");
    }
    for note in ["one", "two"] {
        app.graphql(Some(&s.carrier), RECORD_TRAVEL, travel(&id, 0, 52.1, note))
            .await
            .data("/recordTravel");
    }
    let query = "subscription($id: ID!, $after: Int) { deliveryTracking(id: $id, after: $after) { sequence note } }";
    let mut stranger = Subscriber::acknowledged(&app.base_url, &s.other_carrier).await;
    stranger.subscribe("1", query, json!({ "id": id })).await;
    match stranger.next(Duration::from_secs(10)).await {
        Some(Received::Next(payload)) => {
            assert_eq!(
                payload["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{payload}"
            )
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    let mut shipper = Subscriber::acknowledged(&app.base_url, &s.shipper).await;
    shipper
        .subscribe("1", query, json!({ "id": id, "after": 1 }))
        .await;
    assert_eq!(shipper.data().await["deliveryTracking"]["note"], "two");
    app.graphql(
        Some(&s.carrier),
        RECORD_TRAVEL,
        travel(&id, 0, 52.2, "three"),
    )
    .await
    .data("/recordTravel");
    let live = shipper.data().await;
    assert_eq!(live["deliveryTracking"]["sequence"], 3);
    assert_eq!(live["deliveryTracking"]["note"], "three");
    app.graphql(
        Some(&s.carrier),
        MOVE_DELIVERY,
        json!({ "id": id, "to": "DELIVERED" }),
    )
    .await
    .data("/moveDelivery");
    match shipper.next(Duration::from_secs(20)).await {
        Some(Received::Complete) => {}
        other => panic!("expected the subscription to complete once delivered, got {other:?}"),
    }
    shipper.close().await;
    stranger.close().await;
    app.stop().await;
}
on_both_backends!(tracking_subscription, tracking_subscription_flow);
