//! Analytics: each figure equals what this test computes from its own workload, and a partner's figures
//! hold only what it may see.

use std::collections::BTreeMap;

use api::auth::Role;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, RecordKind, TestApp, checkout::Checkout, encode_global_id, on_both_backends,
};
use serde_json::{Value, json};

const SALES: &str = "query($from: DateTime!, $to: DateTime!) { analytics(from: $from, to: $to) {
    sales { day productId supplierId currency quantity revenueMinor orders } } }";
const DELIVERIES: &str =
    "query($from: DateTime!, $to: DateTime!) { analytics(from: $from, to: $to) {
    deliveries { carrierId delivered onTime onTimeRate meanTransitSeconds } } }";
const WORK: &str = "query($from: DateTime!, $to: DateTime!) { analytics(from: $from, to: $to) {
    work { assigneeId records minutes plans } } }";
const PAYMENTS: &str = "query($from: DateTime!, $to: DateTime!) { analytics(from: $from, to: $to) {
    paymentOutcomes { terminalId authorized declineReason count } } }";
const PAYMENTS_BY_MINUTE: &str = "query($from: DateTime!, $to: DateTime!) {
    analytics(from: $from, to: $to) { paymentsByMinute { minute authorized declined } } }";

fn period() -> Value {
    json!({ "from": (Utc::now() - TimeDelta::days(1)).to_rfc3339(), "to": (Utc::now() + TimeDelta::days(1)).to_rfc3339() })
}

fn org(id: uuid::Uuid) -> String {
    encode_global_id(RecordKind::Organization, id)
}

fn hours(n: i64) -> String {
    (Utc::now() + TimeDelta::hours(n)).to_rfc3339()
}

async fn figures(app: &TestApp, token: &str, query: &str, field: &str) -> Vec<Value> {
    app.graphql(Some(token), query, period())
        .await
        .data(&format!("/analytics/{field}"))
        .as_array()
        .expect("rows")
        .clone()
}

async fn create(app: &TestApp, token: &str, mutation: &str, input: Value, pointer: &str) -> String {
    app.graphql(Some(token), mutation, json!({ "input": input }))
        .await
        .data(pointer)
        .as_str()
        .expect("id")
        .to_owned()
}

async fn figures_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let retailer = app.token(app.retailer_id, Role::Admin).await;
    let supplier_id = app
        .create_organization("Figures Supplier", OrganizationKind::Supplier)
        .await;
    let supplier = app.token(supplier_id, Role::Admin).await;
    let stranger_id = app
        .create_organization("Figures Stranger", OrganizationKind::Supplier)
        .await;
    let stranger = app.token(stranger_id, Role::Admin).await;
    let product =
        "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
    let theirs = create(
        &app,
        &supplier,
        product,
        json!({ "sku": "FIG-S", "name": "s", "priceMinor": 250, "currency": "EUR" }),
        "/createProduct/product/id",
    )
    .await;
    app.graphql(Some(&supplier), "mutation($g: ID!) { grantShare(input: { granteeId: $g, resourceType: PRODUCT, access: READ }) { share { id } } }",
        json!({ "g": org(app.retailer_id) })).await.data("/grantShare");
    let ours = create(
        &app,
        &retailer,
        product,
        json!({ "sku": "FIG-R", "name": "r", "priceMinor": 1000, "currency": "EUR" }),
        "/createProduct/product/id",
    )
    .await;

    // Sales: two placed orders count, a cancelled and a draft one do not.
    let order_with = |lines: Value| {
        let retailer = retailer.clone();
        let app = &app;
        async move {
            create(app, &retailer, "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }",
                json!({ "lines": lines }), "/createOrder/order/id").await
        }
    };
    let step = |name: &'static str, id: String| {
        let retailer = retailer.clone();
        let app = &app;
        async move {
            app.graphql(
                Some(&retailer),
                &format!(
                    "mutation($id: ID!) {{ {name}(input: {{ id: $id }}) {{ order {{ id }} }} }}"
                ),
                json!({ "id": id }),
            )
            .await
            .data(&format!("/{name}"));
        }
    };
    let first = order_with(
        json!([{ "productId": theirs, "quantity": 2 }, { "productId": ours, "quantity": 1 }]),
    )
    .await;
    step("placeOrder", first.clone()).await;
    let second = order_with(json!([{ "productId": theirs, "quantity": 3 }])).await;
    step("placeOrder", second.clone()).await;
    let cancelled = order_with(json!([{ "productId": ours, "quantity": 7 }])).await;
    step("placeOrder", cancelled.clone()).await;
    step("cancelOrder", cancelled).await;
    order_with(json!([{ "productId": theirs, "quantity": 11 }])).await;

    let today = Utc::now().format("%Y-%m-%d").to_string();
    let sales = figures(&app, &retailer, SALES, "sales").await;
    let by_product: BTreeMap<String, &Value> = sales
        .iter()
        .map(|row| {
            (
                row["productId"].as_str().unwrap_or_default().to_owned(),
                row,
            )
        })
        .collect();
    assert_eq!(sales.len(), 2, "{sales:?}");
    let supplied = by_product[&theirs];
    assert_eq!(supplied["day"], today.as_str());
    assert_eq!(supplied["supplierId"], org(supplier_id).as_str());
    assert_eq!(
        (
            supplied["quantity"].clone(),
            supplied["revenueMinor"].clone(),
            supplied["orders"].clone()
        ),
        (json!("5"), json!((5 * 250).to_string()), json!("2"))
    );
    let own = by_product[&ours];
    assert!(own["supplierId"].is_null());
    assert_eq!(
        (
            own["quantity"].clone(),
            own["revenueMinor"].clone(),
            own["orders"].clone()
        ),
        (json!("1"), json!("1000"), json!("1"))
    );
    // The supplier sees the lines of its own product only; a stranger nothing.
    let sales = figures(&app, &supplier, SALES, "sales").await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(sales[0]["productId"], theirs.as_str());
    assert_eq!(sales[0]["revenueMinor"], "1250");
    assert!(figures(&app, &stranger, SALES, "sales").await.is_empty());

    // Deliveries: one on time with the first carrier, one late with the second.
    let store = create(&app, &retailer, "mutation { createLocation(input: { name: \"S\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", Value::Null, "/createLocation/location/id").await;
    let mut carriers = Vec::new();
    let mut transit = Vec::new();
    for (name, window) in [("Fast Carrier", (-1, 48)), ("Late Carrier", (-3, -1))] {
        let id = app
            .create_organization(name, OrganizationKind::Logistics)
            .await;
        let token = app.token(id, Role::Member).await;
        let delivery = create(&app, &retailer, "mutation($input: CreateDeliveryInput!) { createDelivery(input: $input) { delivery { id } } }",
            json!({ "orderId": first, "carrierId": org(id), "originLocationId": store,
                "recipient": { "name": "R", "address": "A" }, "promisedFrom": hours(window.0), "promisedUntil": hours(window.1) }),
            "/createDelivery/delivery/id").await;
        let mut last = Value::Null;
        for to in ["PICKED_UP", "IN_TRANSIT", "DELIVERED"] {
            last = app.graphql(Some(&token), "mutation($id: ID!, $to: DeliveryStatus!) { moveDelivery(input: { id: $id, to: $to }) { delivery { pickedUpAt deliveredAt } } }",
                json!({ "id": delivery, "to": to })).await.data("/moveDelivery/delivery").clone();
        }
        let at = |field: &str| {
            DateTime::parse_from_rfc3339(last[field].as_str().expect("time")).expect("rfc3339")
        };
        transit.push(
            (at("deliveredAt") - at("pickedUpAt"))
                .num_microseconds()
                .unwrap_or_default() as f64
                / 1e6,
        );
        carriers.push((id, token));
    }
    let rows = figures(&app, &retailer, DELIVERIES, "deliveries").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for ((id, _), transit) in carriers.iter().zip(&transit) {
        let row = rows
            .iter()
            .find(|row| row["carrierId"] == org(*id).as_str())
            .expect("carrier row");
        assert_eq!(row["delivered"], "1");
        let seconds = row["meanTransitSeconds"].as_f64().expect("seconds");
        assert!((seconds - transit).abs() < 0.01, "{seconds} vs {transit}");
    }
    let on_time: Vec<(Value, Value)> = carriers
        .iter()
        .map(|(id, _)| {
            let row = rows
                .iter()
                .find(|row| row["carrierId"] == org(*id).as_str())
                .expect("row");
            (row["onTime"].clone(), row["onTimeRate"].clone())
        })
        .collect();
    assert_eq!(
        on_time,
        [(json!("1"), json!(1.0)), (json!("0"), json!(0.0))]
    );
    let own = figures(&app, &carriers[1].1, DELIVERIES, "deliveries").await;
    assert_eq!(
        own.len(),
        1,
        "a carrier sees its own deliveries only: {own:?}"
    );
    assert_eq!(own[0]["carrierId"], org(carriers[1].0).as_str());
    assert!(
        figures(&app, &stranger, DELIVERIES, "deliveries")
            .await
            .is_empty()
    );

    // Work: 60 + 30 minutes recorded by the assignee on one plan.
    let provider = app
        .create_organization("Figures Fixers", OrganizationKind::ServiceProvider)
        .await;
    let fixer = app.token(provider, Role::Member).await;
    let plan = create(&app, &retailer, "mutation($input: CreateWorkPlanInput!) { createWorkPlan(input: $input) { workPlan { id } } }",
        json!({ "assigneeId": org(provider), "title": "Restock", "scheduledStart": hours(-4), "scheduledEnd": hours(4) }),
        "/createWorkPlan/workPlan/id").await;
    app.graphql(Some(&fixer), "mutation($id: ID!) { moveWorkPlan(input: { id: $id, to: IN_PROGRESS }) { workPlan { id } } }",
        json!({ "id": plan })).await.data("/moveWorkPlan");
    for (from, to) in [(-180, -120), (-60, -30)] {
        let at = |m: i64| (Utc::now() + TimeDelta::minutes(m)).to_rfc3339();
        create(&app, &fixer, "mutation($input: RecordWorkInput!) { recordWork(input: $input) { workRecord { description } } }",
            json!({ "workPlanId": plan, "description": "shelves", "startedAt": at(from), "endedAt": at(to) }),
            "/recordWork/workRecord/description").await;
    }
    for token in [&retailer, &fixer] {
        let rows = figures(&app, token, WORK, "work").await;
        assert_eq!(
            rows,
            [json!({ "assigneeId": org(provider), "records": "2", "minutes": "90", "plans": "1" })]
        );
    }
    assert!(figures(&app, &stranger, WORK, "work").await.is_empty());

    // A period backwards or longer than a year is refused.
    for (from, to) in [(1, -1), (-24 * 400, 0)] {
        app.graphql(
            Some(&retailer),
            WORK,
            json!({ "from": hours(from), "to": hours(to) }),
        )
        .await
        .expect_error("VALIDATION");
    }
    app.stop().await;
}
on_both_backends!(figures_match_the_workload, figures_flow);

/// Approval and decline counts by terminal and reason, for the merchant and for the card's issuer.
async fn payment_outcomes_flow(backend: Backend) {
    let started = Utc::now();
    let mut checkout = Checkout::new(backend).await;
    let authorized = checkout.request(100).await;
    let (token, signature) = checkout.tap(&authorized);
    assert_eq!(
        checkout.pay(&authorized, &token, &signature, "a").await["status"],
        "AUTHORIZED"
    );
    // A declined request stays open: both declines are taps for the same one.
    let declined = checkout.request(100).await;
    for n in 0..2 {
        let (token, signature) = checkout.tap(&declined);
        let mut bad = URL_SAFE_NO_PAD.decode(&signature).expect("b64");
        bad[0] ^= 1;
        let outcome = checkout
            .pay(
                &declined,
                &token,
                &URL_SAFE_NO_PAD.encode(&bad),
                &format!("d{n}"),
            )
            .await;
        assert_eq!(outcome["declineReason"], "BAD_CARD_SIGNATURE", "{outcome}");
    }
    let terminal = encode_global_id(RecordKind::Device, checkout.device);
    let expected = json!([
        { "terminalId": terminal, "authorized": true, "declineReason": null, "count": "1" },
        { "terminalId": terminal, "authorized": false, "declineReason": "BAD_CARD_SIGNATURE", "count": "2" }
    ]);
    let app = &checkout.app;
    let merchant = app.token(app.retailer_id, Role::Viewer).await;
    for token in [&merchant, &checkout.bank_admin] {
        let mut rows = figures(app, token, PAYMENTS, "paymentOutcomes").await;
        rows.sort_by_key(|row| !row["authorized"].as_bool().unwrap_or_default());
        assert_eq!(Value::Array(rows), expected);
    }
    // By the minute: the same three submissions, in minutes of this test's run, oldest first.
    let ended = Utc::now();
    for token in [&merchant, &checkout.bank_admin] {
        let minutes = figures(app, token, PAYMENTS_BY_MINUTE, "paymentsByMinute").await;
        let count = |row: &Value, field: &str| {
            row[field]
                .as_str()
                .and_then(|n| n.parse::<i64>().ok())
                .expect("count")
        };
        let total = |field: &str| minutes.iter().map(|row| count(row, field)).sum::<i64>();
        assert_eq!(
            (total("authorized"), total("declined")),
            (1, 2),
            "{minutes:?}"
        );
        let starts: Vec<chrono::DateTime<Utc>> = minutes
            .iter()
            .map(|row| {
                row["minute"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .expect("minute")
            })
            .collect();
        assert!(
            starts.windows(2).all(|pair| pair[0] < pair[1]),
            "{minutes:?}"
        );
        for minute in &starts {
            assert_eq!(minute.timestamp() % 60, 0, "a minute's start: {minute}");
            assert!(
                *minute > started - TimeDelta::minutes(1) && *minute <= ended,
                "{minute} outside the run"
            );
        }
    }
    let stranger_id = app
        .create_organization("No Cards", OrganizationKind::FinancialProvider)
        .await;
    let stranger = app.token(stranger_id, Role::Admin).await;
    assert!(
        figures(app, &stranger, PAYMENTS, "paymentOutcomes")
            .await
            .is_empty()
    );
    assert!(
        figures(app, &stranger, PAYMENTS_BY_MINUTE, "paymentsByMinute")
            .await
            .is_empty()
    );
    checkout.app.stop().await;
}
on_both_backends!(payment_outcomes, payment_outcomes_flow);

/// A sales row's key: day, product, supplier (None for the owner's own products), currency.
type SaleKey = (String, String, Option<String>, String);
/// Sales by key: (quantity, revenue in minor units, orders).
type Sold = BTreeMap<SaleKey, (i64, i64, i64)>;

fn sold(rows: &[Value]) -> Sold {
    let sold: Sold = rows
        .iter()
        .map(|row| {
            let n = |field: &str| {
                row[field]
                    .as_str()
                    .and_then(|v| v.parse::<i64>().ok())
                    .expect("an Int64 figure")
            };
            let text = |field: &str| row[field].as_str().expect(field).to_owned();
            (
                (
                    text("day"),
                    text("productId"),
                    row["supplierId"].as_str().map(str::to_owned),
                    text("currency"),
                ),
                (n("quantity"), n("revenueMinor"), n("orders")),
            )
        })
        .collect();
    assert_eq!(sold.len(), rows.len(), "one row per key: {rows:?}");
    sold
}

async fn sales_in(app: &TestApp, token: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Sold {
    let rows = app
        .graphql(
            Some(token),
            SALES,
            json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339() }),
        )
        .await
        .data("/analytics/sales")
        .as_array()
        .expect("rows")
        .clone();
    sold(&rows)
}

async fn pending_contributions(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &app.hub.state.db;
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS pending FROM sales_pending",
    ))
    .await
    .expect("count pending contributions")
    .expect("a row")
    .try_get::<i64>("", "pending")
    .expect("count")
}

/// Waits (at most 30 s) until every sales contribution is folded into the roll-up.
async fn folded(app: &TestApp) {
    for _ in 0..1500 {
        if pending_contributions(app).await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("sales contributions stayed unfolded for 30 s");
}

/// On PostgreSQL, holds the folder's advisory lock in a transaction of the test's own, so that
/// contributions stay pending until it ends (SQLite has no such lock: there the folder runs freely).
async fn hold_folder(app: &TestApp) -> Option<sea_orm::DatabaseTransaction> {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    if app.backend != Backend::Postgres {
        return None;
    }
    let txn = app.hub.state.db.begin().await.expect("begin");
    txn.execute_raw(Statement::from_string(
        sea_orm::DbBackend::Postgres,
        format!(
            "SELECT pg_advisory_xact_lock({})",
            api::analytics::rollup::FOLDER_LOCK_KEY
        ),
    ))
    .await
    .expect("take the folder's lock");
    Some(txn)
}

/// Whole days come from the roll-up and partial days from the order lines: every period that holds the
/// orders gives the same exact figures, with contributions pending or folded, after concurrent orders of
/// one product, after cancellations, and after the roll-up is rebuilt by its migration.
async fn sales_rollup_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let retailer = app.token(app.retailer_id, Role::Admin).await;
    let supplier_id = app
        .create_organization("Rollup Supplier", OrganizationKind::Supplier)
        .await;
    let supplier = app.token(supplier_id, Role::Admin).await;
    let stranger_id = app
        .create_organization("Rollup Stranger", OrganizationKind::Supplier)
        .await;
    let stranger = app.token(stranger_id, Role::Admin).await;
    let product =
        "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
    let theirs = create(
        &app,
        &supplier,
        product,
        json!({ "sku": "ROLL-S", "name": "s", "priceMinor": 250, "currency": "EUR" }),
        "/createProduct/product/id",
    )
    .await;
    app.graphql(Some(&supplier), "mutation($g: ID!) { grantShare(input: { granteeId: $g, resourceType: PRODUCT, access: READ }) { share { id } } }",
        json!({ "g": org(app.retailer_id) })).await.data("/grantShare");
    let ours = create(
        &app,
        &retailer,
        product,
        json!({ "sku": "ROLL-R", "name": "r", "priceMinor": 1000, "currency": "EUR" }),
        "/createProduct/product/id",
    )
    .await;
    let lonely = create(
        &app,
        &retailer,
        product,
        json!({ "sku": "ROLL-L", "name": "l", "priceMinor": 70, "currency": "EUR" }),
        "/createProduct/product/id",
    )
    .await;
    // Places an order and answers its id and UTC day of placement.
    let place = |lines: Value| {
        let retailer = retailer.clone();
        let app = &app;
        async move {
            let id = create(app, &retailer, "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }",
                json!({ "lines": lines }), "/createOrder/order/id").await;
            let placed = app
                .graphql(
                    Some(&retailer),
                    "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { placedAt } } }",
                    json!({ "id": id }),
                )
                .await;
            let at = placed
                .data("/placeOrder/order/placedAt")
                .as_str()
                .expect("placedAt");
            let day = DateTime::parse_from_rfc3339(at)
                .expect("rfc3339")
                .with_timezone(&Utc)
                .format("%Y-%m-%d")
                .to_string();
            (id, day)
        }
    };
    let cancel = |id: String| {
        let retailer = retailer.clone();
        let app = &app;
        async move {
            app.graphql(
                Some(&retailer),
                "mutation($id: ID!) { cancelOrder(input: { id: $id }) { order { status } } }",
                json!({ "id": id }),
            )
            .await
            .data("/cancelOrder");
        }
    };
    let supplier_of = |product: &str| (product == theirs).then(|| org(supplier_id));
    let add =
        |sold: &mut Sold, day: &str, product: &str, quantity: i64, price: i64, orders: i64| {
            let key = (
                day.to_owned(),
                product.to_owned(),
                supplier_of(product),
                "EUR".to_owned(),
            );
            let entry = sold.entry(key).or_default();
            entry.0 += quantity;
            entry.1 += quantity * price;
            entry.2 += orders;
            if entry.2 == 0 {
                sold.retain(|_, sums| sums.2 != 0);
            }
        };
    let started = Utc::now();

    // Twelve orders placed at once, each with the supplier's product (the same roll-up row) and ours.
    let held = hold_folder(&app).await;
    let first: Vec<(String, String)> = futures_util::future::join_all((1..=12).map(|n| {
        place(json!([{ "productId": theirs, "quantity": n }, { "productId": ours, "quantity": 1 }]))
    }))
    .await;
    let mut all = Sold::new();
    for (n, (_, day)) in (1..=12).zip(&first) {
        add(&mut all, day, &theirs, n, 250, 1);
        add(&mut all, day, &ours, 1, 1000, 1);
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // After the cut: three orders; a draft cancelled (never placed: no contribution); the only order of
    // a product placed and cancelled (its row goes).
    let mut later = Sold::new();
    for _ in 0..3 {
        let (_, day) = place(json!([{ "productId": theirs, "quantity": 2 }])).await;
        add(&mut all, &day, &theirs, 2, 250, 1);
        add(&mut later, &day, &theirs, 2, 250, 1);
    }
    let draft = create(
        &app,
        &retailer,
        "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }",
        json!({ "lines": [{ "productId": ours, "quantity": 5 }] }),
        "/createOrder/order/id",
    )
    .await;
    cancel(draft).await;
    let (alone, _) = place(json!([{ "productId": lonely, "quantity": 4 }])).await;
    cancel(alone).await;

    let now = Utc::now();
    // From the first midnight before the test, so that a run across midnight stays whole days.
    let midnight = started
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let check = |all: Sold, later: Sold| {
        let app = &app;
        let (retailer, supplier, stranger) = (retailer.clone(), supplier.clone(), stranger.clone());
        let theirs = theirs.clone();
        async move {
            let periods = [
                // Whole days only (the roll-up).
                (midnight, midnight + TimeDelta::days(2)),
                // A partial day on each side of whole days.
                (now - TimeDelta::days(1), now + TimeDelta::days(1)),
                // Partial days only (the order lines).
                (started - TimeDelta::seconds(1), now + TimeDelta::seconds(1)),
            ];
            let theirs_only: Sold = all
                .iter()
                .filter(|(key, _)| key.1 == theirs)
                .map(|(key, sums)| (key.clone(), *sums))
                .collect();
            for (from, to) in periods {
                assert_eq!(
                    sales_in(app, &retailer, from, to).await,
                    all,
                    "{from}..{to}"
                );
                assert_eq!(
                    sales_in(app, &supplier, from, to).await,
                    theirs_only,
                    "{from}..{to}"
                );
                assert!(
                    sales_in(app, &stranger, from, to).await.is_empty(),
                    "{from}..{to}"
                );
            }
            // From the cut on: the later orders only.
            assert_eq!(
                sales_in(app, &retailer, cut, now + TimeDelta::days(1)).await,
                later
            );
        }
    };
    if let Some(held) = held {
        assert!(
            pending_contributions(&app).await > 0,
            "the orders' contributions wait for the folder"
        );
        check(all.clone(), later.clone()).await;
        held.rollback().await.expect("release the folder");
    }
    folded(&app).await;
    check(all.clone(), later.clone()).await;

    // A placed order cancelled: its contribution comes off, pending and folded.
    let held = hold_folder(&app).await;
    let (last, day) = first[11].clone();
    cancel(last).await;
    add(&mut all, &day, &theirs, -12, 250, -1);
    add(&mut all, &day, &ours, -1, 1000, -1);
    check(all.clone(), later.clone()).await;
    if let Some(held) = held {
        held.rollback().await.expect("release the folder");
    }
    folded(&app).await;
    check(all.clone(), later.clone()).await;

    // The roll-up rebuilt from the order lines by its migration, as on an upgrade.
    {
        use migration::MigratorTrait;
        let db = &app.hub.state.db;
        // Down to before the roll-up: it and every later migration.
        let steps = migration::Migrator::migrations()
            .iter()
            .rev()
            .position(|step| step.name() == "m20261203_000015_sales_rollup")
            .expect("the roll-up's migration")
            + 1;
        migration::Migrator::down(db, Some(steps as u32))
            .await
            .expect("drop the roll-up");
        migration::Migrator::up(db, None)
            .await
            .expect("rebuild the roll-up");
        assert_eq!(pending_contributions(&app).await, 0, "rebuilt in place");
        check(all, later).await;
    }
    app.stop().await;
}
on_both_backends!(sales_from_the_rollup, sales_rollup_flow);

/// A day's revenue beyond 64 bits cannot be folded: that owner is set aside (its contributions stay
/// pending, its figure errs rather than lie) and every other owner's sales are folded all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfoldable_owner_holds_back_only_itself() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::start(Backend::Postgres).await;
    let retailer = app.token(app.retailer_id, Role::Admin).await;
    let other_id = app
        .create_organization("Rollup Other Shop", OrganizationKind::Supplier)
        .await;
    let other = app.token(other_id, Role::Admin).await;
    let product =
        "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
    let order = |token: String, product: String| {
        let app = &app;
        async move {
            let id = create(app, &token, "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }",
                json!({ "lines": [{ "productId": product, "quantity": 1 }] }), "/createOrder/order/id").await;
            app.graphql(
                Some(&token),
                "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
                json!({ "id": id }),
            )
            .await
            .data("/placeOrder");
        }
    };
    let gold = create(&app, &retailer, product,
        json!({ "sku": "ROLL-GOLD", "name": "g", "priceMinor": "5000000000000000000", "currency": "EUR" }),
        "/createProduct/product/id").await;
    let held = hold_folder(&app).await.expect("PostgreSQL");
    order(retailer.clone(), gold.clone()).await;
    order(retailer.clone(), gold).await;
    held.rollback().await.expect("release the folder");

    let plain = create(
        &app,
        &other,
        product,
        json!({ "sku": "ROLL-PLAIN", "name": "p", "priceMinor": 300, "currency": "EUR" }),
        "/createProduct/product/id",
    )
    .await;
    order(other.clone(), plain.clone()).await;
    let pending_of = |owner: uuid::Uuid| {
        let db = app.hub.state.db.clone();
        async move {
            db.query_one_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT COUNT(*) AS pending FROM sales_pending WHERE owner_organization_id = $1",
                [owner.into()],
            ))
            .await
            .expect("count")
            .expect("row")
            .try_get::<i64>("", "pending")
            .expect("count")
        }
    };
    let mut waited = 0;
    while pending_of(other_id).await > 0 {
        waited += 1;
        assert!(waited < 500, "the other owner's sale was never folded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(pending_of(app.retailer_id).await, 2, "set aside, not lost");
    let midnight = Utc::now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let whole_day = (midnight, midnight + TimeDelta::days(1));
    let figure = sales_in(&app, &other, whole_day.0, whole_day.1).await;
    assert_eq!(
        figure.values().copied().collect::<Vec<_>>(),
        [(1, 300, 1)],
        "{figure:?}"
    );
    app.graphql(
        Some(&retailer),
        SALES,
        json!({ "from": whole_day.0.to_rfc3339(), "to": whole_day.1.to_rfc3339() }),
    )
    .await
    .expect_error("INTERNAL");
    app.stop().await;
}
