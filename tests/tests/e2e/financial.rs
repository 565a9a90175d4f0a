//! Orders, invoices, idempotency and the event outbox, end to end.

use std::{collections::HashSet, time::Duration};

use api::auth::Role;
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, GqlResponse, RecordKind, Replicas, TestApp, encode_global_id, on_both_backends,
    on_postgres, post_graphql,
};
use serde_json::{Value, json};

const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
const CREATE_ORDER: &str = "mutation($input: CreateOrderInput!) { createOrder(input: $input) {
    order { id status currency totalMinor balanceMinor lines { lineNumber quantity unitPriceMinor lineTotalMinor supplier { name } } } } }";
const ORDER_VIEW: &str = "query($id: ID!) { node(id: $id) { ... on Order { id status totalMinor paidMinor balanceMinor
    lines { lineNumber quantity unitPriceMinor lineTotalMinor supplier { name } product { sku } } invoices { id status amountMinor } } } }";
const EVENTS: &str = "query($after: String, $first: Int!) { events(after: $after, first: $first) {
    pageInfo { hasNextPage } edges { cursor node { position eventType recordType recordId status } } } }";

fn step(name: &str) -> String {
    format!("mutation($id: ID!) {{ {name}(input: {{ id: $id }}) {{ order {{ id status }} }} }}")
}

async fn product(app: &TestApp, token: &str, sku: &str, price: i64) -> String {
    let response = app
        .graphql(
            Some(token),
            CREATE_PRODUCT,
            json!({ "input": { "sku": sku, "name": sku, "priceMinor": price, "currency": "EUR" } }),
        )
        .await;
    response
        .data("/createProduct/product/id")
        .as_str()
        .expect("id")
        .to_owned()
}

/// A retailer with two suppliers whose products it may see (type-level shares), and one own product.
struct Shop {
    admin: String,
    supplier_a: (uuid::Uuid, String),
    supplier_b: (uuid::Uuid, String),
    products: [String; 3],
}

async fn shop(app: &TestApp) -> Shop {
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let mut suppliers = Vec::new();
    let mut products = Vec::new();
    for name in ["Supplier A", "Supplier B"] {
        let id = app
            .create_organization(name, OrganizationKind::Supplier)
            .await;
        let token = app.token(id, Role::Admin).await;
        products.push(
            product(
                app,
                &token,
                &format!("{}-1", &name[9..]),
                if name.ends_with('A') { 250 } else { 1000 },
            )
            .await,
        );
        app.graphql(Some(&token), "mutation($g: ID!) { grantShare(input: { granteeId: $g, resourceType: PRODUCT, access: READ }) { share { id } } }",
            json!({ "g": encode_global_id(RecordKind::Organization, app.retailer_id) }))
            .await
            .data("/grantShare");
        suppliers.push((id, token));
    }
    products.push(product(app, &admin, "OWN-1", 99).await);
    let supplier_b = suppliers.pop().expect("b");
    let supplier_a = suppliers.pop().expect("a");
    Shop {
        admin,
        supplier_a,
        supplier_b,
        products: [
            products[0].clone(),
            products[1].clone(),
            products[2].clone(),
        ],
    }
}

/// Reads every event visible to `token`, page by page, waiting (bounded) until at least `expected` arrived.
async fn all_events(
    app_url: &str,
    client: &reqwest::Client,
    token: &str,
    expected: usize,
    page: i64,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let response = post_graphql(
                client,
                app_url,
                token,
                EVENTS,
                json!({ "after": after, "first": page }),
            )
            .await;
            let edges = response
                .data("/events/edges")
                .as_array()
                .expect("edges")
                .clone();
            if let Some(last) = edges.last() {
                after = last["cursor"].as_str().map(str::to_owned);
            }
            events.extend(edges.into_iter().map(|edge| edge["node"].clone()));
            if !response
                .data("/events/pageInfo/hasNextPage")
                .as_bool()
                .expect("bool")
            {
                break;
            }
        }
        if events.len() >= expected || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn orders_and_invoices_flow(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = shop(&app).await;
    let stranger_org = app
        .create_organization("Stranger", OrganizationKind::Logistics)
        .await;
    let stranger = app.token(stranger_org, Role::Admin).await;

    // The client names products and quantities only; prices come from the catalogue.
    let created = app
        .graphql(
            Some(&shop.admin),
            CREATE_ORDER,
            json!({ "input": { "idempotencyKey": "order-1", "lines": [
            { "productId": shop.products[0], "quantity": 4 },
            { "productId": shop.products[1], "quantity": 1 },
            { "productId": shop.products[2], "quantity": 10 } ] } }),
        )
        .await;
    let order = created.data("/createOrder/order").clone();
    let id = order["id"].as_str().expect("id").to_owned();
    assert_eq!(order["status"], "DRAFT");
    assert_eq!(order["totalMinor"], "2990", "4 x 250 + 1 x 1000 + 10 x 99");
    assert_eq!(order["lines"][0]["unitPriceMinor"], "250");
    assert_eq!(order["lines"][0]["lineTotalMinor"], "1000");
    assert_eq!(order["lines"][1]["supplier"]["name"], "Supplier B");

    // A price change before placing is picked up when the order is placed.
    app.graphql(Some(&shop.supplier_a.1), "mutation($id: ID!) { updateProduct(input: { id: $id, version: 1, priceMinor: 300 }) { product { id } } }",
        json!({ "id": shop.products[0] }))
        .await
        .data("/updateProduct");
    app.graphql(Some(&shop.admin), &step("placeOrder"), json!({ "id": id }))
        .await
        .data("/placeOrder");
    let placed = app
        .graphql(Some(&shop.admin), ORDER_VIEW, json!({ "id": id }))
        .await;
    assert_eq!(placed.data("/node/status"), "PLACED");
    assert_eq!(
        placed.data("/node/totalMinor"),
        "3190",
        "re-priced at placing: 4 x 300 + 1000 + 990"
    );

    // A supplier sees the order and its own line only, and no totals.
    let seen_by_a = app
        .graphql(Some(&shop.supplier_a.1), ORDER_VIEW, json!({ "id": id }))
        .await;
    let lines = seen_by_a.data("/node/lines").as_array().expect("lines");
    assert_eq!(lines.len(), 1, "only its own line: {lines:?}");
    assert_eq!(lines[0]["product"]["sku"], "A-1");
    assert!(
        seen_by_a.data("/node/totalMinor").is_null()
            && seen_by_a.data("/node/balanceMinor").is_null()
    );
    assert!(
        seen_by_a
            .data("/node/invoices")
            .as_array()
            .expect("invoices")
            .is_empty()
    );
    let listed = app
        .graphql(
            Some(&shop.supplier_b.1),
            "{ orders { totalCount edges { node { id lines { lineNumber } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.data("/orders/totalCount"), 1);
    assert_eq!(listed.data("/orders/edges/0/node/lines/0/lineNumber"), 2);
    // A stranger sees nothing.
    app.graphql(Some(&stranger), ORDER_VIEW, json!({ "id": id }))
        .await
        .expect_error("NOT_FOUND");
    let none = app
        .graphql(
            Some(&stranger),
            "{ orders { totalCount } events { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(none.data("/orders/totalCount"), 0);
    assert!(
        none.data("/events/edges")
            .as_array()
            .expect("edges")
            .is_empty()
    );

    // Invoice for the balance, paid; then fulfil and close.
    let invoice = app
        .graphql(Some(&shop.admin), "mutation($id: ID!) { raiseInvoice(input: { orderId: $id, idempotencyKey: \"inv-1\" }) { invoice { id amountMinor status } } }", json!({ "id": id }))
        .await;
    assert_eq!(invoice.data("/raiseInvoice/invoice/amountMinor"), "3190");
    let invoice_id = invoice.data("/raiseInvoice/invoice/id").clone();
    let paid = app
        .graphql(
            Some(&shop.admin),
            "mutation($id: ID!) { payInvoice(input: { id: $id }) { invoice { status } } }",
            json!({ "id": invoice_id }),
        )
        .await;
    assert_eq!(paid.data("/payInvoice/invoice/status"), "PAID");
    app.graphql(
        Some(&shop.admin),
        &step("fulfillOrder"),
        json!({ "id": id }),
    )
    .await
    .data("/fulfillOrder");
    let closed = app
        .graphql(Some(&shop.admin), &step("closeOrder"), json!({ "id": id }))
        .await;
    assert_eq!(closed.data("/closeOrder/order/status"), "CLOSED");
    let final_view = app
        .graphql(Some(&shop.admin), ORDER_VIEW, json!({ "id": id }))
        .await;
    assert_eq!(final_view.data("/node/balanceMinor"), "0");

    // Events: the owner sees all six in commit order; a supplier only the order's.
    let client = reqwest::Client::new();
    let owner_events = all_events(&app.base_url, &client, &shop.admin, 6, 4).await;
    let types: Vec<&str> = owner_events
        .iter()
        .filter_map(|e| e["eventType"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "order.placed",
            "invoice.issued",
            "invoice.paid",
            "order.fulfilled",
            "order.closed"
        ]
    );
    let supplier_events = all_events(&app.base_url, &client, &shop.supplier_a.1, 4, 10).await;
    let types: Vec<&str> = supplier_events
        .iter()
        .filter_map(|e| e["eventType"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "order.placed",
            "order.fulfilled",
            "order.closed"
        ]
    );
    app.stop().await;
}
on_both_backends!(orders_and_invoices, orders_and_invoices_flow);

async fn forbidden_transitions_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = shop(&app).await;
    let create = |key: &'static str| {
        app.graphql(Some(&shop.admin), CREATE_ORDER, json!({ "input": { "idempotencyKey": key, "lines": [{ "productId": shop.products[2], "quantity": 2 }] } }))
    };
    let draft = create("draft").await.data("/createOrder/order/id").clone();
    let placed = create("placed").await.data("/createOrder/order/id").clone();
    app.graphql(
        Some(&shop.admin),
        &step("placeOrder"),
        json!({ "id": placed }),
    )
    .await
    .data("/placeOrder");
    let paid = create("paid").await.data("/createOrder/order/id").clone();
    app.graphql(
        Some(&shop.admin),
        &step("placeOrder"),
        json!({ "id": paid }),
    )
    .await
    .data("/placeOrder");
    let invoice = app
        .graphql(
            Some(&shop.admin),
            "mutation($id: ID!) { raiseInvoice(input: { orderId: $id }) { invoice { id } } }",
            json!({ "id": paid }),
        )
        .await
        .data("/raiseInvoice/invoice/id")
        .clone();
    app.graphql(
        Some(&shop.admin),
        "mutation($id: ID!) { payInvoice(input: { id: $id }) { invoice { id } } }",
        json!({ "id": invoice }),
    )
    .await
    .data("/payInvoice");
    let with_supplier = app
        .graphql(
            Some(&shop.admin),
            CREATE_ORDER,
            json!({ "input": { "lines": [{ "productId": shop.products[0], "quantity": 1 }] } }),
        )
        .await
        .data("/createOrder/order/id")
        .clone();
    // Let every event of the setup be stamped, so the fingerprint is stable: 1 + 2 + 4 + 1 events.
    let client = reqwest::Client::new();
    assert_eq!(
        all_events(&app.base_url, &client, &shop.admin, 8, 50)
            .await
            .len(),
        8
    );

    let before = app.fingerprint().await;
    let refusals: Vec<(&str, String, &Value, &str, &str)> = vec![
        (
            "fulfil a draft",
            step("fulfillOrder"),
            &draft,
            "INVALID_TRANSITION",
            &shop.admin,
        ),
        (
            "close a draft",
            step("closeOrder"),
            &draft,
            "INVALID_TRANSITION",
            &shop.admin,
        ),
        (
            "place twice",
            step("placeOrder"),
            &placed,
            "INVALID_TRANSITION",
            &shop.admin,
        ),
        (
            "close an unfulfilled order",
            step("closeOrder"),
            &placed,
            "INVALID_TRANSITION",
            &shop.admin,
        ),
        (
            "cancel a paid order",
            step("cancelOrder"),
            &paid,
            "INVALID_TRANSITION",
            &shop.admin,
        ),
        (
            "supplier places the retailer's order",
            step("placeOrder"),
            &with_supplier,
            "FORBIDDEN",
            &shop.supplier_a.1,
        ),
        (
            "stranger supplier cancels",
            step("cancelOrder"),
            &draft,
            "NOT_FOUND",
            &shop.supplier_b.1,
        ),
    ];
    for (case, query, id, code, token) in refusals {
        let response = app.graphql(Some(token), &query, json!({ "id": id })).await;
        assert_eq!(
            response.error_code(),
            Some(code),
            "{case}: {}",
            response.body
        );
        // Every table and every row, invoices and events included.
        assert_eq!(app.fingerprint().await, before, "{case}: changed nothing");
    }
    let invoice_refusals = [
        ("pay a paid invoice", "payInvoice"),
        ("void a paid invoice", "voidInvoice"),
    ];
    for (case, mutation) in invoice_refusals {
        let response = app
            .graphql(Some(&shop.admin), &format!("mutation($id: ID!) {{ {mutation}(input: {{ id: $id }}) {{ invoice {{ id }} }} }}"), json!({ "id": invoice }))
            .await;
        assert_eq!(
            response.error_code(),
            Some("INVALID_TRANSITION"),
            "{case}: {}",
            response.body
        );
        assert_eq!(app.fingerprint().await, before, "{case}: changed nothing");
    }
    for (case, input) in [
        ("invoice a draft", json!({ "orderId": draft })),
        ("invoice a paid order", json!({ "orderId": paid })),
    ] {
        let response = app.graphql(Some(&shop.admin), "mutation($input: RaiseInvoiceInput!) { raiseInvoice(input: $input) { invoice { id } } }", json!({ "input": input })).await;
        assert_eq!(
            response.error_code(),
            Some("INVALID_TRANSITION"),
            "{case}: {}",
            response.body
        );
        assert_eq!(app.fingerprint().await, before, "{case}: changed nothing");
    }
    // Bad orders: no lines, zero quantity, a product the caller cannot see, mixed currencies.
    let hidden = product(&app, &shop.supplier_b.1, "HIDDEN-1", 5).await;
    let usd = product(&app, &shop.admin, "USD-1", 5).await;
    app.graphql(Some(&shop.admin), "mutation($id: ID!) { updateProduct(input: { id: $id, version: 1, currency: \"USD\" }) { product { id } } }", json!({ "id": usd }))
        .await
        .data("/updateProduct");
    let before_orders = app.fingerprint().await;
    for (case, lines, code) in [
        ("no lines", json!([]), "VALIDATION"),
        (
            "zero quantity",
            json!([{ "productId": shop.products[2], "quantity": 0 }]),
            "VALIDATION",
        ),
        (
            "mixed currencies",
            json!([{ "productId": shop.products[2], "quantity": 1 }, { "productId": usd, "quantity": 1 }]),
            "VALIDATION",
        ),
        (
            "wrong ID type",
            json!([{ "productId": draft, "quantity": 1 }]),
            "VALIDATION",
        ),
    ] {
        let response = app
            .graphql(
                Some(&shop.admin),
                CREATE_ORDER,
                json!({ "input": { "lines": lines } }),
            )
            .await;
        assert_eq!(
            response.error_code(),
            Some(code),
            "{case}: {}",
            response.body
        );
        assert_eq!(
            app.fingerprint().await,
            before_orders,
            "{case}: changed nothing"
        );
    }
    // Supplier B shared its products with the retailer only: supplier A cannot order them.
    let response = app
        .graphql(
            Some(&shop.supplier_a.1),
            CREATE_ORDER,
            json!({ "input": { "lines": [{ "productId": hidden, "quantity": 1 }] } }),
        )
        .await;
    assert_eq!(
        response.error_code(),
        Some("NOT_FOUND"),
        "{}",
        response.body
    );
    assert_eq!(
        app.fingerprint().await,
        before_orders,
        "refused orders changed nothing"
    );
    assert_eq!(
        before.rows("sales_order"),
        before_orders.rows("sales_order")
    );
    assert_eq!(
        before.rows("event"),
        before_orders.rows("event"),
        "refusals left no events"
    );
    app.stop().await;
}
on_both_backends!(forbidden_transitions, forbidden_transitions_change_nothing);

async fn idempotency_keys_return_the_first_result(backend: Backend) {
    let app = TestApp::start(backend).await;
    let shop = shop(&app).await;
    let input = |quantity: i64| json!({ "input": { "idempotencyKey": "same-key", "lines": [{ "productId": shop.products[2], "quantity": quantity }] } });
    let first = app.graphql(Some(&shop.admin), CREATE_ORDER, input(3)).await;
    let again = app.graphql(Some(&shop.admin), CREATE_ORDER, input(3)).await;
    assert_eq!(
        first.data("/createOrder/order/id"),
        again.data("/createOrder/order/id")
    );
    let before = app.fingerprint().await;
    app.graphql(Some(&shop.admin), CREATE_ORDER, input(4))
        .await
        .expect_error("IDEMPOTENCY_MISMATCH");
    assert_eq!(app.fingerprint().await, before);
    assert_eq!(before.rows("sales_order"), 1);
    // Keys are scoped by organization: another organization's same key is its own.
    let other = app.token(shop.supplier_a.0, Role::Admin).await;
    let own = product(&app, &other, "A-OWN", 10).await;
    let theirs = app
        .graphql(Some(&other), CREATE_ORDER, json!({ "input": { "idempotencyKey": "same-key", "lines": [{ "productId": own, "quantity": 3 }] } }))
        .await;
    assert_ne!(
        theirs.data("/createOrder/order/id"),
        first.data("/createOrder/order/id")
    );
    // Master-data creates honour keys the same way.
    let create_product = |price: i64| {
        app.graphql(Some(&shop.admin), CREATE_PRODUCT, json!({ "input": {
            "sku": "IDEM-1", "name": "Idem", "priceMinor": price, "currency": "EUR", "idempotencyKey": "product-key" } }))
    };
    let first_product = create_product(10)
        .await
        .data("/createProduct/product/id")
        .clone();
    assert_eq!(
        create_product(10).await.data("/createProduct/product/id"),
        &first_product
    );
    create_product(11)
        .await
        .expect_error("IDEMPOTENCY_MISMATCH");
    // A bad key is a validation error.
    app.graphql(Some(&shop.admin), CREATE_ORDER, json!({ "input": { "idempotencyKey": "", "lines": [{ "productId": shop.products[2], "quantity": 1 }] } }))
        .await
        .expect_error("VALIDATION");
    app.stop().await;
}
on_both_backends!(idempotency, idempotency_keys_return_the_first_result);

/// Retries while the first request with the key is in flight (retryable CONFLICT), as a client should.
async fn create_until_answered(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    variables: &Value,
) -> GqlResponse {
    for _ in 0..600 {
        let response = post_graphql(client, url, token, CREATE_ORDER, variables.clone()).await;
        let retryable = response
            .body
            .pointer("/errors/0/extensions/retryable")
            .and_then(Value::as_bool)
            == Some(true);
        if !retryable {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no final answer after 600 retries");
}

async fn idempotency_race_on_two_replicas(_backend: Backend) {
    let replicas = Replicas::start(2).await;
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let product = post_graphql(&client, &replicas.urls[0], &admin, CREATE_PRODUCT,
        json!({ "input": { "sku": "RACE-1", "name": "Race", "priceMinor": 100, "currency": "EUR" } }))
        .await
        .data("/createProduct/product/id")
        .clone();
    for round in 0..20 {
        let variables = json!({ "input": { "idempotencyKey": format!("race-{round}"), "lines": [{ "productId": product, "quantity": 3 }] } });
        let mut tasks = Vec::new();
        for caller in 0..64 {
            let (client, url, token, variables) = (
                client.clone(),
                replicas.urls[caller % 2].clone(),
                admin.clone(),
                variables.clone(),
            );
            tasks.push(tokio::spawn(async move {
                create_until_answered(&client, &url, &token, &variables).await
            }));
        }
        let mut ids = HashSet::new();
        for task in tasks {
            let response = task.await.expect("task");
            ids.insert(
                response
                    .data("/createOrder/order/id")
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
        assert_eq!(
            ids.len(),
            1,
            "round {round}: every caller got the same order"
        );
        let mismatch = json!({ "input": { "idempotencyKey": format!("race-{round}"), "lines": [{ "productId": product, "quantity": 4 }] } });
        post_graphql(
            &client,
            &replicas.urls[round % 2],
            &admin,
            CREATE_ORDER,
            mismatch,
        )
        .await
        .expect_error("IDEMPOTENCY_MISMATCH");
    }
    assert_eq!(
        replicas.fingerprint().await.rows("sales_order"),
        20,
        "exactly one order per round"
    );
    replicas.stop().await;
}
on_postgres!(idempotency_race, idempotency_race_on_two_replicas);

/// Follows the event feed at `url` while writers commit: keeps its cursor and reads small pages,
/// returning every event it saw in the order it saw them, once `expected` (known when `done` is set)
/// have arrived.
async fn follow_events(
    client: reqwest::Client,
    url: String,
    token: String,
    expected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<i64> {
    use std::sync::atomic::Ordering;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let response = post_graphql(
            &client,
            &url,
            &token,
            EVENTS,
            json!({ "after": after, "first": 3 }),
        )
        .await;
        let edges = response
            .data("/events/edges")
            .as_array()
            .expect("edges")
            .clone();
        for edge in &edges {
            seen.push(
                edge["node"]["position"]
                    .as_str()
                    .expect("position")
                    .parse::<i64>()
                    .expect("int"),
            );
            after = edge["cursor"].as_str().map(str::to_owned);
        }
        let target = expected.load(Ordering::SeqCst);
        if target > 0 && seen.len() >= target {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower at {url} fell silent at {} events",
            seen.len()
        );
        if edges.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// 8 concurrent writers spread over `urls` create and place orders and now and then try a forbidden
/// step, while one follower per URL reads the feed along with them; then every event is read page by
/// page. Every follower must have seen exactly the final feed, in order: a position stamped below one
/// it already passed would be a gap. Returns how many mutations committed.
async fn outbox_workload(urls: &[String], admin: &str) -> usize {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let product = post_graphql(
        &client,
        &urls[0],
        admin,
        CREATE_PRODUCT,
        json!({ "input": { "sku": "OUT-1", "name": "Out", "priceMinor": 100, "currency": "EUR" } }),
    )
    .await
    .data("/createProduct/product/id")
    .clone();
    let expected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let followers: Vec<_> = urls
        .iter()
        .map(|url| {
            tokio::spawn(follow_events(
                client.clone(),
                url.clone(),
                admin.to_owned(),
                expected.clone(),
            ))
        })
        .collect();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (client, url, token, product) = (
            client.clone(),
            urls[writer % urls.len()].clone(),
            admin.to_owned(),
            product.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut committed = 0usize;
            let mut records = HashSet::new();
            for round in 0..12 {
                let created = post_graphql(&client, &url, &token, CREATE_ORDER,
                    json!({ "input": { "lines": [{ "productId": product, "quantity": 1 + round }] } })).await;
                let id = created.data("/createOrder/order/id").as_str().expect("id").to_owned();
                records.insert(id.clone());
                committed += 1;
                if round % 3 == 0 {
                    post_graphql(&client, &url, &token, &step("fulfillOrder"), json!({ "id": id })).await.expect_error("INVALID_TRANSITION");
                }
                post_graphql(&client, &url, &token, &step("placeOrder"), json!({ "id": id })).await.data("/placeOrder");
                committed += 1;
            }
            (committed, records)
        }));
    }
    let mut committed = 0;
    let mut records = HashSet::new();
    for writer in writers {
        let (c, r) = writer.await.expect("writer");
        committed += c;
        records.extend(r);
    }
    // The product's creation wrote no event; the followers wait for every committed one.
    expected.store(committed, std::sync::atomic::Ordering::SeqCst);
    let events = all_events(&urls[urls.len() - 1], &client, admin, committed, 7).await;
    assert_eq!(
        events.len(),
        committed,
        "one event per committed mutation, none for refused ones"
    );
    let positions: Vec<i64> = events
        .iter()
        .map(|e| {
            e["position"]
                .as_str()
                .expect("position")
                .parse()
                .expect("int")
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "strictly increasing positions"
    );
    let unique: HashSet<i64> = positions.iter().copied().collect();
    assert_eq!(unique.len(), committed, "each event exactly once");
    for (url, follower) in urls.iter().zip(followers) {
        let seen = follower.await.expect("follower");
        assert_eq!(
            seen, positions,
            "the follower at {url} saw the final feed, in order, with no gap or duplicate"
        );
    }
    let per_record = events.iter().fold(
        std::collections::HashMap::<String, Vec<String>>::new(),
        |mut map, e| {
            map.entry(e["recordId"].as_str().expect("id").to_owned())
                .or_default()
                .push(e["eventType"].as_str().expect("type").to_owned());
            map
        },
    );
    assert_eq!(per_record.len(), records.len());
    for (record, types) in per_record {
        assert_eq!(
            types,
            ["order.created", "order.placed"],
            "{record}: created before placed"
        );
    }
    committed
}

async fn outbox_delivers_every_commit_once_in_order(_backend: Backend) {
    let replicas = Replicas::start(2).await;
    let admin = replicas.token(replicas.retailer_id, Role::Admin).await;
    let committed = outbox_workload(&replicas.urls, &admin).await;
    assert_eq!(replicas.fingerprint().await.rows("event"), committed as i64);
    replicas.stop().await;
}
on_postgres!(
    outbox_two_replicas,
    outbox_delivers_every_commit_once_in_order
);

/// The embedded default under the same concurrent workload: one process, SQLite's single writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_on_sqlite_with_concurrent_writers() {
    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let committed = outbox_workload(std::slice::from_ref(&app.base_url), &admin).await;
    assert_eq!(app.fingerprint().await.rows("event"), committed as i64);
    app.stop().await;
}
