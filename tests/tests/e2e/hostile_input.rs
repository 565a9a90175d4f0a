//! Hostile input at the edge: documents built to stall validation, hand-made cursors, token headers
//! the hub does not understand, ambiguous credentials, batches, and label floods on `/metrics`. Each
//! is refused with a code, quickly, and changes nothing.

use api::auth::Role;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use entities::organization::OrganizationKind;
use hub_tests::{Backend, TestApp, on_both_backends};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Fragments that each spread the next one twice: about 1 KB of text, 2^depth selections.
fn exponential_fragments(depth: usize) -> String {
    let mut query = String::from("query Bomb { ...F0 }\n");
    for i in 0..depth {
        query.push_str(&format!(
            "fragment F{i} on QueryRoot {{ ...F{} ...F{} }}\n",
            i + 1,
            i + 1
        ));
    }
    query.push_str(&format!(
        "fragment F{depth} on QueryRoot {{ me {{ role }} }}\n"
    ));
    query
}

async fn documents_that_would_stall_validation_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let before = app.fingerprint().await;

    // Two of them at once (the attack froze every other request for a minute); both refused, and an
    // ordinary request sent beside them is answered.
    // 2^26 selections: within the engine's recursion limit, so only the expansion bound stops it.
    let bomb = exponential_fragments(26);
    assert!(bomb.len() < 2_000, "a small document: {} bytes", bomb.len());
    let (first, second, ordinary) = tokio::join!(
        app.graphql(Some(&admin), &bomb, json!({})),
        app.graphql(Some(&admin), &bomb, json!({})),
        app.graphql(Some(&admin), "{ me { role } }", json!({})),
    );
    for response in [&first, &second] {
        response.expect_error("QUERY_TOO_COMPLEX");
    }
    assert_eq!(ordinary.data("/me/role"), "ADMIN");

    // A long chain of fragments (no doubling): quadratic for the overlapping-fields rule.
    let mut chain = String::from("query { ...F0 }\n");
    for i in 0..5_000 {
        chain.push_str(&format!("fragment F{i} on QueryRoot {{ ...F{} }}\n", i + 1));
    }
    chain.push_str("fragment F5000 on QueryRoot { me { role } }\n");
    app.graphql(Some(&admin), &chain, json!({}))
        .await
        .expect_error("QUERY_TOO_COMPLEX");
    // Thousands of arguments on two same-named fields (compared pairwise by validation).
    let arguments: String = (0..5_000).map(|i| format!("a{i}: 1 ")).collect();
    app.graphql(
        Some(&admin),
        &format!("{{ x: me({arguments}) {{ role }} x: me({arguments}) {{ role }} }}"),
        json!({}),
    )
    .await
    .expect_error("GRAPHQL_VALIDATION_FAILED");
    // A fragment that spreads itself.
    app.graphql(
        Some(&admin),
        "query { ...A } fragment A on QueryRoot { ...B } fragment B on QueryRoot { ...A }",
        json!({}),
    )
    .await
    .expect_error("GRAPHQL_VALIDATION_FAILED");
    // Deeply nested selections: refused by the parser's recursion limit, not by a crash.
    let deep = format!(
        "{{ {}me {{ role }}{} }}",
        "me { organization { ".repeat(2_000),
        " } }".repeat(2_000)
    );
    app.graphql(Some(&admin), &deep, json!({}))
        .await
        .expect_error("GRAPHQL_PARSE_FAILED");
    // Fragments within the limit still work.
    let fine = exponential_fragments(4);
    assert_eq!(
        app.graphql(Some(&admin), &fine, json!({}))
            .await
            .data("/me/role"),
        "ADMIN"
    );
    assert_eq!(app.fingerprint().await, before, "nothing changed");
    app.stop().await;
}
on_both_backends!(
    stalling_documents,
    documents_that_would_stall_validation_are_refused
);

/// Cursors are input: one whose key has another type than the ordering's column is VALIDATION on
/// every connection, never a database type error.
async fn hand_made_cursors_are_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let cursor = |order: &str, key: Value| {
        URL_SAFE_NO_PAD
            .encode(json!({ "order": order, "key": key, "id": uuid::Uuid::nil() }).to_string())
    };
    let cases = [
        (
            "{ products(first: 5, orderBy: { field: PRICE }, after: $c) { totalCount } }",
            cursor("price", json!({ "Text": "1" })),
        ),
        (
            "{ products(first: 5, orderBy: { field: NAME }, after: $c) { totalCount } }",
            cursor("name", json!({ "Int": 1 })),
        ),
        (
            "{ products(first: 5, after: $c) { totalCount } }",
            cursor("createdAt", json!({ "Text": "yesterday" })),
        ),
        (
            "{ organizations(first: 5, after: $c) { totalCount } }",
            cursor("name", json!({ "Time": "2026-01-01T00:00:00Z" })),
        ),
        (
            "{ customers(first: 5, before: $c) { totalCount } }",
            cursor("createdAt", json!({ "Int": 7 })),
        ),
        (
            "{ locations(first: 5, after: $c) { totalCount } }",
            cursor("name", json!({ "Int": 7 })),
        ),
        (
            "{ devices(first: 5, after: $c) { totalCount } }",
            cursor("name", json!({ "Int": 7 })),
        ),
        (
            "{ orders(first: 5, after: $c) { totalCount } }",
            cursor("createdAt", json!({ "Int": 7 })),
        ),
        (
            "{ paymentRequests(first: 5, after: $c) { totalCount } }",
            cursor("createdAt", json!({ "Text": "x" })),
        ),
        (
            "{ products(first: 5, orderBy: { field: NAME }, after: $c) { totalCount } }",
            cursor("name", json!({ "Text": "nul\0byte" })),
        ),
        (
            "{ products(first: 5, after: $c) { totalCount } }",
            cursor("createdAt", json!({ "Time": "+20000-01-01T00:00:00Z" })),
        ),
        (
            "{ paymentDeclines(first: 5, after: $c) { totalCount } }",
            cursor("recordedAt", json!({ "Int": 7 })),
        ),
    ];
    for (query, cursor) in cases {
        let query = format!("query($c: String) {query}");
        let response = app
            .graphql(Some(&admin), &query, json!({ "c": cursor }))
            .await;
        response.expect_error("VALIDATION");
    }
    // A genuine cursor still pages.
    app.graphql(Some(&admin), "mutation { createProduct(input: { sku: \"C-1\", name: \"c\", priceMinor: \"5\", currency: \"EUR\" }) { product { id } } }", json!({}))
        .await
        .data("/createProduct");
    let page = app
        .graphql(
            Some(&admin),
            "{ products(first: 1, orderBy: { field: PRICE }) { edges { cursor } } }",
            json!({}),
        )
        .await;
    let genuine = page.data("/products/edges/0/cursor").clone();
    app.graphql(
        Some(&admin),
        "query($c: String) { products(first: 1, orderBy: { field: PRICE }, after: $c) { totalCount } }",
        json!({ "c": genuine }),
    )
    .await
    .data("/products/totalCount");
    app.stop().await;
}
on_both_backends!(cursor_types, hand_made_cursors_are_validated);

/// Signs `claims` with `header` and the hub's own key: everything valid but the one thing tested.
fn hub_signed(app: &TestApp, header: &Header, claims: &Value) -> String {
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(app.signing_key_path()).expect("key file"),
    )
    .expect("hub key");
    let der = key.to_pkcs8_der().expect("pkcs8");
    jsonwebtoken::encode(header, claims, &EncodingKey::from_ed_der(der.as_bytes())).expect("sign")
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims")
}

async fn tokens_and_credentials_are_parsed_strictly(backend: Backend) {
    let app = TestApp::start_with(backend, |config| config.max_token_lifetime_secs = 3_600).await;
    let supplier = app
        .create_organization("Strict Supplier", OrganizationKind::Supplier)
        .await;
    let genuine = app.token(supplier, Role::Admin).await;
    let claims = claims_of(&genuine);
    let query = "{ me { role } }";
    // Control: the same claims re-signed are accepted.
    let plain = Header::new(Algorithm::EdDSA);
    app.graphql(Some(&hub_signed(&app, &plain, &claims)), query, json!({}))
        .await
        .data("/me/role");

    // A critical extension the hub does not understand (RFC 7515 section 4.1.11).
    let mut critical = Header::new(Algorithm::EdDSA);
    critical.crit = Some(vec!["exp".into()]);
    let response = app
        .graphql(
            Some(&hub_signed(&app, &critical, &claims)),
            query,
            json!({}),
        )
        .await;
    response.expect_error("UNAUTHENTICATED");
    assert_eq!(response.status, 401);

    // A lifetime beyond what the hub accepts, up to the end of time.
    let now = chrono::Utc::now().timestamp();
    for exp in [i64::MAX, now + 2 * 3_600] {
        let mut long = claims.clone();
        long["iat"] = json!(now);
        long["exp"] = json!(exp);
        app.graphql(Some(&hub_signed(&app, &plain, &long)), query, json!({}))
            .await
            .expect_error("UNAUTHENTICATED");
    }
    // Issued in the future.
    let mut future = claims.clone();
    future["iat"] = json!(now + 600);
    future["exp"] = json!(now + 1_200);
    app.graphql(Some(&hub_signed(&app, &plain, &future)), query, json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    // The hub never mints past its own limit.
    let members = app
        .graphql(Some(&genuine), "{ members { id name } }", json!({}))
        .await;
    let member = members.data("/members/0/id").clone();
    app.graphql(
        Some(&genuine),
        "mutation($input: IssueTokenInput!) { issueToken(input: $input) { token } }",
        json!({ "input": { "memberId": member, "ttlSeconds": 7200 } }),
    )
    .await
    .expect_error("VALIDATION");

    // Two Authorization headers, even both genuine: refused, not first-wins.
    let response = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .header("authorization", format!("Bearer {genuine}"))
        .header("authorization", "Bearer x.y.z")
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );

    // A JSON array is not a request (batching is not supported).
    for body in [json!([{ "query": query }]), json!([query])] {
        let response = app
            .post_raw(Some(&genuine), body.to_string().into_bytes())
            .await;
        response.expect_error("BAD_REQUEST");
        assert_eq!(response.status, 400);
    }
    app.stop().await;
}
on_both_backends!(strict_tokens, tokens_and_credentials_are_parsed_strictly);

/// A device token with a critical header extension is refused like a partner token.
async fn device_tokens_with_critical_extensions_are_refused(backend: Backend) {
    use base64::engine::general_purpose::STANDARD;
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let location = app
        .graphql(Some(&admin), "mutation { createLocation(input: { name: \"Shop\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
        .await
        .data("/createLocation/location/id")
        .clone();
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let device = app
        .graphql(Some(&admin), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
            json!({ "input": { "name": "Till", "locationId": location, "publicKey": STANDARD.encode(key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    let device = hub_tests::decode_global_id(&device);
    let genuine = device_token::sign(device, &key, "iot-commerce-hub", 120).expect("token");
    app.graphql(Some(&genuine), "{ me { role } }", json!({}))
        .await
        .data("/me/role");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(device.to_string());
    header.crit = Some(vec!["b64".into()]);
    let der = key.to_pkcs8_der().expect("pkcs8");
    let critical = jsonwebtoken::encode(
        &header,
        &claims_of(&genuine),
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .expect("sign");
    app.graphql(Some(&critical), "{ me { role } }", json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    app.stop().await;
}
on_both_backends!(
    strict_device_tokens,
    device_tokens_with_critical_extensions_are_refused
);

/// The value of `hub_graphql_requests_total` with exactly `labels` in a Prometheus scrape (0 if absent).
fn requests(scrape: &str, labels: &str) -> u64 {
    let prefix = format!("hub_graphql_requests_total{labels} ");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// `/metrics` counts requests under labels the schema bounds, and is served only to those allowed.
async fn metrics_labels_are_bounded_and_private(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        config.metrics_token = Some("scrape-secret-0123456789".into());
    })
    .await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let metrics_addr = app.hub.metrics_addr.expect("metrics listener");
    let scrape = || async move {
        reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    // The recorder is process-wide (other tests count too): compare before and after.
    let (me, unauthenticated) = (
        r#"{operation="query.me",outcome="ok"}"#,
        r#"{operation="unauthenticated",outcome="UNAUTHENTICATED"}"#,
    );
    let before = scrape().await;
    // Unauthenticated callers inventing operation names, and an authenticated one doing the same.
    for i in 0..50 {
        let name = format!("Flood{i}");
        let body =
            json!({ "query": format!("query {name} {{ me {{ role }} }}"), "operationName": name });
        app.post_raw(None, body.to_string().into_bytes()).await;
        app.post_raw(Some(&admin), body.to_string().into_bytes())
            .await;
    }
    let after = scrape().await;
    assert!(
        !after.contains("Flood"),
        "client-chosen names never become labels"
    );
    assert!(
        requests(&after, me) >= requests(&before, me) + 50,
        "{after}"
    );
    assert!(
        requests(&after, unauthenticated) >= requests(&before, unauthenticated) + 50,
        "{after}"
    );
    // On the main listener: only with the metrics token.
    let main = |token: Option<&str>| {
        let mut request = app.client.get(format!("{}/metrics", app.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(main(None).await.expect("get").status(), 401);
    assert_eq!(main(Some("wrong")).await.expect("get").status(), 401);
    assert_eq!(
        main(Some(&admin)).await.expect("get").status(),
        401,
        "a partner token is not it"
    );
    let scraped = main(Some("scrape-secret-0123456789")).await.expect("get");
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .expect("text")
            .contains("hub_graphql_requests_total")
    );
    app.stop().await;

    // Neither configured: not served on the main listener at all.
    let app = TestApp::start(backend).await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    app.stop().await;
}
on_both_backends!(metrics_privacy, metrics_labels_are_bounded_and_private);

/// Creates a retailer location and returns its id (setup).
async fn location(app: &TestApp, admin: &str, name: &str) -> Value {
    app.graphql(Some(admin), "mutation($n: String!) { createLocation(input: { name: $n, kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({ "n": name }))
        .await
        .data("/createLocation/location/id")
        .clone()
}

/// Filtering by a sensitive field needs the right to read it: a share without sensitive fields does
/// not let a count confirm a guessed email.
async fn sensitive_filters_need_the_sensitive_right(backend: Backend) {
    let app = TestApp::start(backend).await;
    let retailer = app.token(app.retailer_id, Role::Admin).await;
    let partner = app
        .create_organization("Curious Carrier", OrganizationKind::Logistics)
        .await;
    let partner_token = app.token(partner, Role::Admin).await;
    app.graphql(Some(&retailer), "mutation { createCustomer(input: { name: \"Ada\", email: \"ada@example.com\" }) { customer { id } } }", json!({}))
        .await
        .data("/createCustomer");
    let grant = |include_sensitive: bool| {
        app.graphql(Some(&retailer), "mutation($input: GrantShareInput!) { grantShare(input: $input) { share { id } } }",
            json!({ "input": { "granteeId": hub_tests::encode_global_id(hub_tests::RecordKind::Organization, partner), "resourceType": "CUSTOMER", "access": "READ", "includeSensitive": include_sensitive } }))
    };
    let share = grant(false).await.data("/grantShare/share/id").clone();
    let guess = "{ all: customers { totalCount } hit: customers(filter: { email: \"ada@example.com\" }) { totalCount edges { node { email } } } miss: customers(filter: { email: \"bob@example.com\" }) { totalCount } }";
    let seen = app.graphql(Some(&partner_token), guess, json!({})).await;
    assert_eq!(
        seen.data("/all/totalCount"),
        1,
        "the share shows the customer"
    );
    assert_eq!(
        seen.data("/hit/totalCount"),
        0,
        "a right guess looks like a wrong one"
    );
    assert_eq!(seen.data("/miss/totalCount"), 0);
    // With sensitive fields shared, the filter finds the customer.
    app.graphql(
        Some(&retailer),
        "mutation($id: ID!) { revokeShare(input: { id: $id }) { revokedShareId } }",
        json!({ "id": share }),
    )
    .await
    .data("/revokeShare");
    grant(true).await.data("/grantShare/share/id");
    let seen = app.graphql(Some(&partner_token), guess, json!({})).await;
    assert_eq!(seen.data("/hit/totalCount"), 1);
    assert_eq!(seen.data("/hit/edges/0/node/email"), "ada@example.com");
    // The owner finds its own customer by email.
    let own = app.graphql(Some(&retailer), guess, json!({})).await;
    assert_eq!(own.data("/hit/totalCount"), 1);

    // Writing contact fields needs the right to read them: a WRITE share without them changes nothing.
    let writer = app
        .create_organization("Blind Writer", OrganizationKind::ServiceProvider)
        .await;
    let writer_token = app.token(writer, Role::Admin).await;
    let customer = app
        .graphql(
            Some(&retailer),
            "{ customers { edges { node { id version } } } }",
            json!({}),
        )
        .await
        .data("/customers/edges/0/node")
        .clone();
    let share = |include_sensitive: bool| {
        app.graphql(Some(&retailer), "mutation($input: GrantShareInput!) { grantShare(input: $input) { share { id } } }",
            json!({ "input": { "granteeId": hub_tests::encode_global_id(hub_tests::RecordKind::Organization, writer), "resourceType": "CUSTOMER", "recordId": customer["id"], "access": "WRITE", "includeSensitive": include_sensitive } }))
    };
    let blind = share(false).await.data("/grantShare/share/id").clone();
    let update = "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { customer { email } } }";
    let overwrite = json!({ "input": { "id": customer["id"], "version": customer["version"], "email": "thief@example.com" } });
    let before = app.fingerprint().await;
    app.graphql(Some(&writer_token), update, overwrite.clone())
        .await
        .expect_error("FORBIDDEN");
    assert_eq!(
        app.fingerprint().await,
        before,
        "the refused write changed nothing"
    );
    app.graphql(
        Some(&retailer),
        "mutation($id: ID!) { revokeShare(input: { id: $id }) { revokedShareId } }",
        json!({ "id": blind }),
    )
    .await
    .data("/revokeShare");
    share(true).await.data("/grantShare/share/id");
    let written = app.graphql(Some(&writer_token), update, overwrite).await;
    assert_eq!(
        written.data("/updateCustomer/customer/email"),
        "thief@example.com"
    );
    app.stop().await;
}
on_both_backends!(
    sensitive_filters,
    sensitive_filters_need_the_sensitive_right
);

/// A WRITE share on a device lets the grantee rename it; moving it (to a location of the grantee's)
/// and revoking it are the owner's acts, refused and changing nothing.
async fn device_shares_do_not_move_or_revoke(backend: Backend) {
    use base64::engine::general_purpose::STANDARD;
    let app = TestApp::start(backend).await;
    let retailer = app.token(app.retailer_id, Role::Admin).await;
    let partner = app
        .create_organization("Service Partner", OrganizationKind::ServiceProvider)
        .await;
    let partner_admin = app.token(partner, Role::Admin).await;
    let shop = location(&app, &retailer, "Shop").await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x44; 32]);
    let device = app
        .graphql(Some(&retailer), "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id version } } }",
            json!({ "input": { "name": "Till", "locationId": shop, "publicKey": STANDARD.encode(key.verifying_key().as_bytes()) } }))
        .await
        .data("/registerDevice/device")
        .clone();
    app.graphql(Some(&retailer), "mutation($input: GrantShareInput!) { grantShare(input: $input) { share { id } } }",
        json!({ "input": { "granteeId": hub_tests::encode_global_id(hub_tests::RecordKind::Organization, partner), "resourceType": "DEVICE", "recordId": device["id"], "access": "WRITE" } }))
        .await
        .data("/grantShare/share/id");
    let partner_location = location(&app, &partner_admin, "Partner depot").await;
    let update = "mutation($input: UpdateDeviceInput!) { updateDevice(input: $input) { device { name version location { id } } } }";
    let owner_other = location(&app, &retailer, "Owner's other shop").await;
    let before = app.fingerprint().await;
    app.graphql(Some(&partner_admin), update, json!({ "input": { "id": device["id"], "version": device["version"], "locationId": partner_location } }))
        .await
        .expect_error("FORBIDDEN");
    // Nor to another of the owner's locations: moving is the owner's act, wherever to.
    app.graphql(Some(&partner_admin), update, json!({ "input": { "id": device["id"], "version": device["version"], "locationId": owner_other } }))
        .await
        .expect_error("FORBIDDEN");
    app.graphql(Some(&partner_admin), "mutation($input: RevokeDeviceInput!) { revokeDevice(input: $input) { device { status } } }",
        json!({ "input": { "id": device["id"], "version": device["version"] } }))
        .await
        .expect_error("FORBIDDEN");
    assert_eq!(
        app.fingerprint().await,
        before,
        "the refused changes changed nothing"
    );
    // Renaming is what the share grants.
    let renamed = app
        .graphql(Some(&partner_admin), update, json!({ "input": { "id": device["id"], "version": device["version"], "name": "Till (serviced)" } }))
        .await;
    assert_eq!(renamed.data("/updateDevice/device/name"), "Till (serviced)");
    // The owner still moves and revokes it.
    let other_shop = location(&app, &retailer, "Other shop").await;
    let moved = app
        .graphql(Some(&retailer), update, json!({ "input": { "id": device["id"], "version": renamed.data("/updateDevice/device/version"), "locationId": other_shop } }))
        .await;
    assert_eq!(moved.data("/updateDevice/device/location/id"), &other_shop);
    app.stop().await;
}
on_both_backends!(device_shares, device_shares_do_not_move_or_revoke);
