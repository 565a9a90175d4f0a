//! Master data end to end: each type through its connection, `node(id:)`, filters and ordering;
//! pagination; isolation between organizations and shares; bad input; N+1.

use api::auth::Role;
use base64::{Engine, engine::general_purpose::STANDARD};
use entities::organization::OrganizationKind;
use hub_tests::{Backend, GqlResponse, RecordKind, TestApp, encode_global_id, on_both_backends};
use serde_json::{Value, json};
use uuid::Uuid;

const CREATE_LOCATION: &str = "mutation($input: CreateLocationInput!) { createLocation(input: $input) { location { id name kind version } } }";
const CREATE_PRODUCT: &str = "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id sku priceMinor currency version supplier { name } } } }";
const CREATE_CUSTOMER: &str = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id name email version } } }";
const REGISTER_DEVICE: &str = "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id status version location { name } } } }";
const GRANT_SHARE: &str =
    "mutation($input: GrantShareInput!) { grantShare(input: $input) { share { id } } }";
const REVOKE_SHARE: &str =
    "mutation($input: RevokeShareInput!) { revokeShare(input: $input) { revokedShareId } }";

fn device_key(seed: u8) -> String {
    STANDARD.encode(
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .as_bytes(),
    )
}

/// One organization's records of every type, created over HTTP.
struct Records {
    location: String,
    product: String,
    customer: String,
    device: String,
}

async fn create_records(app: &TestApp, token: &str, tag: &str) -> Records {
    let location = app
        .graphql(
            Some(token),
            CREATE_LOCATION,
            json!({ "input": {
            "name": format!("{tag} Store"), "kind": "SHOP", "street": "Main 1", "city": "Utrecht",
            "postalCode": "3511 AA", "countryCode": "NL" } }),
        )
        .await;
    let location = location
        .data("/createLocation/location/id")
        .as_str()
        .expect("id")
        .to_owned();
    let product = app
        .graphql(Some(token), CREATE_PRODUCT, json!({ "input": {
            "sku": format!("{tag}-SKU-1"), "name": format!("{tag} Widget"), "priceMinor": "1999", "currency": "EUR" } }))
        .await;
    let product = product
        .data("/createProduct/product/id")
        .as_str()
        .expect("id")
        .to_owned();
    let customer = app
        .graphql(Some(token), CREATE_CUSTOMER, json!({ "input": {
            "name": format!("{tag} Customer"), "email": format!("{}@example.com", tag.to_lowercase()), "phone": "+31 30 123" } }))
        .await;
    let customer = customer
        .data("/createCustomer/customer/id")
        .as_str()
        .expect("id")
        .to_owned();
    let device = app
        .graphql(Some(token), REGISTER_DEVICE, json!({ "input": {
            "name": format!("{tag} Till 1"), "locationId": location, "publicKey": device_key(3) } }))
        .await;
    let device = device
        .data("/registerDevice/device/id")
        .as_str()
        .expect("id")
        .to_owned();
    Records {
        location,
        product,
        customer,
        device,
    }
}

fn ids(response: &GqlResponse, connection: &str) -> Vec<String> {
    response
        .data(&format!("/{connection}/edges"))
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| edge["node"]["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn each_type_round_trips(backend: Backend) {
    let app = TestApp::start(backend).await;
    let supplier = app
        .create_organization("Fresh Farms", OrganizationKind::Supplier)
        .await;
    let supplier_id = encode_global_id(RecordKind::Organization, supplier);
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let records = create_records(&app, &admin, "Main").await;

    // A product with a supplier, read back with the supplier nested.
    let created = app
        .graphql(Some(&admin), CREATE_PRODUCT, json!({ "input": {
            "sku": "APL-1", "name": "Apples", "description": "Crisp", "priceMinor": 249, "currency": "EUR",
            "supplierId": supplier_id } }))
        .await;
    assert_eq!(
        created.data("/createProduct/product/supplier/name"),
        "Fresh Farms"
    );
    assert_eq!(
        created.data("/createProduct/product/priceMinor"),
        "249",
        "Int64 is sent as a string"
    );

    let listed = app
        .graphql(Some(&admin), "{ locations { totalCount edges { node { id name kind city countryCode owner { name } } } }
                                   products(orderBy: { field: PRICE, direction: DESC }) { totalCount edges { node { id sku priceMinor } } }
                                   customers { totalCount edges { node { id name email phone } } }
                                   devices { totalCount edges { node { id name status publicKey location { id name } } } } }", json!({}))
        .await;
    assert_eq!(listed.data("/locations/totalCount"), 1);
    assert_eq!(
        listed.data("/locations/edges/0/node/owner/name"),
        "Retailer"
    );
    assert_eq!(listed.data("/products/totalCount"), 2);
    assert_eq!(
        listed.data("/products/edges/0/node/sku"),
        "Main-SKU-1",
        "most expensive first"
    );
    assert_eq!(
        listed.data("/customers/edges/0/node/email"),
        "main@example.com"
    );
    assert_eq!(
        listed.data("/devices/edges/0/node/location/id").as_str(),
        Some(records.location.as_str())
    );
    assert_eq!(
        listed.data("/devices/edges/0/node/publicKey"),
        device_key(3).as_str()
    );

    // Filters.
    let filtered = app
        .graphql(
            Some(&admin),
            "query($s: ID!) {
            bySupplier: products(filter: { supplierId: $s }) { totalCount edges { node { sku } } }
            bySku: products(filter: { sku: \"APL-1\" }) { totalCount }
            byName: products(filter: { nameContains: \"widg\" }) { totalCount }
            byPrice: products(filter: { minPriceMinor: 1000 }) { totalCount }
            shops: locations(filter: { kind: SHOP }) { totalCount }
            warehouses: locations(filter: { kind: WAREHOUSE }) { totalCount }
            active: devices(filter: { status: ACTIVE }) { totalCount }
            byEmail: customers(filter: { email: \"MAIN@example.com\" }) { totalCount } }",
            json!({ "s": supplier_id }),
        )
        .await;
    for (field, expected) in [
        ("bySupplier", 1),
        ("bySku", 1),
        ("byName", 1),
        ("byPrice", 1),
        ("shops", 1),
        ("warehouses", 0),
        ("active", 1),
        ("byEmail", 1),
    ] {
        assert_eq!(
            filtered.data(&format!("/{field}/totalCount")),
            expected,
            "{field}"
        );
    }

    // node(id:) for every type.
    for (id, typename) in [
        (&records.location, "Location"),
        (&records.product, "Product"),
        (&records.customer, "Customer"),
        (&records.device, "Device"),
    ] {
        let node = app
            .graphql(
                Some(&admin),
                "query($id: ID!) { node(id: $id) { __typename id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(node.data("/node/__typename"), typename);
        assert_eq!(node.data("/node/id").as_str(), Some(id.as_str()));
    }

    // Updates carry the version; the version moves on.
    let updated = app
        .graphql(Some(&admin), "mutation($input: UpdateProductInput!) { updateProduct(input: $input) { product { name version priceMinor description } } }",
            json!({ "input": { "id": records.product, "version": 1, "name": "Widget II", "priceMinor": "2500", "description": null } }))
        .await;
    assert_eq!(updated.data("/updateProduct/product/version"), 2);
    assert_eq!(updated.data("/updateProduct/product/name"), "Widget II");
    assert!(updated.data("/updateProduct/product/description").is_null());

    // Revoking a device; deleting a location that still has a device is a conflict.
    let revoked = app
        .graphql(Some(&admin), "mutation($input: RevokeDeviceInput!) { revokeDevice(input: $input) { device { status } } }",
            json!({ "input": { "id": records.device, "version": 1 } }))
        .await;
    assert_eq!(revoked.data("/revokeDevice/device/status"), "REVOKED");
    let before = app.fingerprint().await;
    app.graphql(
        Some(&admin),
        "mutation($input: DeleteRecordInput!) { deleteLocation(input: $input) { deletedId } }",
        json!({ "input": { "id": records.location } }),
    )
    .await
    .expect_error("CONFLICT");
    assert_eq!(app.fingerprint().await, before);
    let deleted = app
        .graphql(
            Some(&admin),
            "mutation($input: DeleteRecordInput!) { deleteCustomer(input: $input) { deletedId } }",
            json!({ "input": { "id": records.customer } }),
        )
        .await;
    assert_eq!(
        deleted.data("/deleteCustomer/deletedId").as_str(),
        Some(records.customer.as_str())
    );
    app.graphql(
        Some(&admin),
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": records.customer }),
    )
    .await
    .expect_error("NOT_FOUND");
    app.stop().await;
}
on_both_backends!(round_trips, each_type_round_trips);

async fn pages_cover_every_record_exactly_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let mut created = Vec::new();
    for i in 0..120 {
        // Prices repeat, so the id tie-break decides the order inside equal prices.
        let response = app
            .graphql(Some(&admin), CREATE_PRODUCT, json!({ "input": {
                "sku": format!("P-{i:03}"), "name": format!("Product {}", 119 - i), "priceMinor": (i % 7) * 100, "currency": "EUR" } }))
            .await;
        created.push(
            response
                .data("/createProduct/product/id")
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    created.sort();
    let query = "query($first: Int, $after: String, $last: Int, $before: String, $order: ProductOrder) {
        products(first: $first, after: $after, last: $last, before: $before, orderBy: $order) {
          totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id } } } }";
    for order in [
        json!({ "field": "SKU" }),
        json!({ "field": "PRICE", "direction": "DESC" }),
        json!({ "field": "NAME" }),
    ] {
        // Forwards.
        let mut forwards = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = app
                .graphql(
                    Some(&admin),
                    query,
                    json!({ "first": 17, "after": after, "order": order }),
                )
                .await;
            assert_eq!(page.data("/products/totalCount"), 120);
            forwards.extend(ids(&page, "products"));
            if !page
                .data("/products/pageInfo/hasNextPage")
                .as_bool()
                .expect("bool")
            {
                break;
            }
            after = page
                .data("/products/pageInfo/endCursor")
                .as_str()
                .map(str::to_owned);
        }
        // Backwards.
        let mut backwards = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let page = app
                .graphql(
                    Some(&admin),
                    query,
                    json!({ "last": 23, "before": before, "order": order }),
                )
                .await;
            let mut chunk = ids(&page, "products");
            chunk.extend(backwards);
            backwards = chunk;
            if !page
                .data("/products/pageInfo/hasPreviousPage")
                .as_bool()
                .expect("bool")
            {
                break;
            }
            before = page
                .data("/products/pageInfo/startCursor")
                .as_str()
                .map(str::to_owned);
        }
        assert_eq!(forwards.len(), 120, "{order}");
        assert_eq!(
            forwards, backwards,
            "both directions give the same order ({order})"
        );
        let mut unique = forwards.clone();
        unique.sort();
        assert_eq!(unique, created, "every record exactly once ({order})");
    }
    // A cursor of one ordering is refused by another.
    let page = app
        .graphql(
            Some(&admin),
            query,
            json!({ "first": 1, "order": { "field": "SKU" } }),
        )
        .await;
    let cursor = page.data("/products/pageInfo/endCursor").clone();
    app.graphql(
        Some(&admin),
        query,
        json!({ "first": 1, "after": cursor, "order": { "field": "PRICE" } }),
    )
    .await
    .expect_error("VALIDATION");
    app.graphql(Some(&admin), query, json!({ "first": 101 }))
        .await
        .expect_error("VALIDATION");
    app.stop().await;
}
on_both_backends!(pagination, pages_cover_every_record_exactly_once);

/// What organization B sees of A's records, as (ids listed per type, totalCounts).
async fn visible_to(app: &TestApp, token: &str) -> Value {
    app.graphql(Some(token), "{ locations { totalCount edges { node { id } } } products { totalCount edges { node { id } } }
                                customers { totalCount edges { node { id name email } } } devices { totalCount edges { node { id location { id } } } } }", json!({}))
        .await
        .body["data"]
        .clone()
}

async fn organizations_see_only_what_they_may(backend: Backend) {
    let app = TestApp::start(backend).await;
    let retailer_admin = app.token(app.retailer_id, Role::Admin).await;
    let other = app
        .create_organization("Nosy Partner", OrganizationKind::ServiceProvider)
        .await;
    let other_id = encode_global_id(RecordKind::Organization, other);
    let other_admin = app.token(other, Role::Admin).await;
    let other_member = app.token(other, Role::Member).await;
    let mine = create_records(&app, &retailer_admin, "Own").await;
    let theirs = create_records(&app, &other_admin, "Theirs").await;

    // Nothing of the retailer's is visible, counted, readable, changeable or deletable.
    let seen = visible_to(&app, &other_admin).await;
    for connection in ["locations", "products", "customers", "devices"] {
        assert_eq!(
            seen[connection]["totalCount"], 1,
            "{connection}: only its own record"
        );
        let listed = seen[connection]["edges"][0]["node"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert!(
            ![&mine.location, &mine.product, &mine.customer, &mine.device].contains(&&listed),
            "{connection}"
        );
    }
    let before = app.fingerprint().await;
    for (id, update, delete) in [
        (
            &mine.location,
            "updateLocation(input: { id: $id, version: 1, name: \"x\" }) { location { id } }",
            Some("deleteLocation"),
        ),
        (
            &mine.product,
            "updateProduct(input: { id: $id, version: 1, name: \"x\" }) { product { id } }",
            Some("deleteProduct"),
        ),
        (
            &mine.customer,
            "updateCustomer(input: { id: $id, version: 1, name: \"x\" }) { customer { id } }",
            Some("deleteCustomer"),
        ),
        (
            &mine.device,
            "updateDevice(input: { id: $id, version: 1, name: \"x\" }) { device { id } }",
            None,
        ),
    ] {
        app.graphql(
            Some(&other_admin),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .expect_error("NOT_FOUND");
        app.graphql(
            Some(&other_admin),
            &format!("mutation($id: ID!) {{ {update} }}"),
            json!({ "id": id }),
        )
        .await
        .expect_error("NOT_FOUND");
        if let Some(delete) = delete {
            app.graphql(
                Some(&other_admin),
                &format!("mutation($id: ID!) {{ {delete}(input: {{ id: $id }}) {{ deletedId }} }}"),
                json!({ "id": id }),
            )
            .await
            .expect_error("NOT_FOUND");
        }
    }
    // Guessed and altered IDs answer like invisible ones.
    let guessed = encode_global_id(RecordKind::Product, Uuid::new_v4());
    let mut altered = mine.product.clone();
    altered.replace_range(3..4, if &altered[3..4] == "A" { "B" } else { "A" });
    for id in [guessed, altered, "%%%".to_owned()] {
        app.graphql(
            Some(&other_admin),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .expect_error("NOT_FOUND");
    }
    // A device cannot be moved to another organization's location.
    app.graphql(Some(&other_admin), "mutation($id: ID!, $l: ID!) { updateDevice(input: { id: $id, version: 1, locationId: $l }) { device { id } } }",
        json!({ "id": theirs.device, "l": mine.location }))
        .await
        .expect_error("NOT_FOUND");
    assert_eq!(
        app.fingerprint().await,
        before,
        "refused requests changed nothing"
    );

    // Share one device (read) and the customers (read, without sensitive fields) with the partner.
    let grant = |input: Value| {
        app.graphql(
            Some(&retailer_admin),
            GRANT_SHARE,
            json!({ "input": input }),
        )
    };
    let device_share = grant(json!({ "granteeId": other_id, "resourceType": "DEVICE", "recordId": mine.device, "access": "READ" })).await;
    let device_share = device_share.data("/grantShare/share/id").clone();
    let customer_share =
        grant(json!({ "granteeId": other_id, "resourceType": "CUSTOMER", "access": "READ" })).await;
    let customer_share = customer_share.data("/grantShare/share/id").clone();
    let seen = visible_to(&app, &other_member).await;
    assert_eq!(seen["devices"]["totalCount"], 2);
    let shared_device = seen["devices"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["id"] == mine.device.as_str())
        .expect("shared device listed");
    assert!(
        shared_device["node"]["location"].is_null(),
        "the device's location is not shared: nested field is null"
    );
    assert_eq!(
        seen["locations"]["totalCount"], 1,
        "locations stay unshared"
    );
    let shared_customer = seen["customers"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["id"] == mine.customer.as_str())
        .expect("shared customer");
    assert!(
        shared_customer["node"]["name"].is_null() && shared_customer["node"]["email"].is_null(),
        "sensitive fields hidden"
    );

    // Within the share's rights: READ is read-only, deletion stays with the owner.
    let before = app.fingerprint().await;
    app.graphql(Some(&other_admin), "mutation($id: ID!) { updateCustomer(input: { id: $id, version: 1, name: \"x\" }) { customer { id } } }", json!({ "id": mine.customer }))
        .await
        .expect_error("FORBIDDEN");
    app.graphql(
        Some(&other_admin),
        "mutation($id: ID!) { deleteCustomer(input: { id: $id }) { deletedId } }",
        json!({ "id": mine.customer }),
    )
    .await
    .expect_error("FORBIDDEN");
    assert_eq!(app.fingerprint().await, before);

    // A WRITE share with sensitive fields on one product and one customer.
    let product_share = grant(json!({ "granteeId": other_id, "resourceType": "PRODUCT", "recordId": mine.product, "access": "WRITE" })).await;
    let product_share = product_share.data("/grantShare/share/id").clone();
    grant(json!({ "granteeId": other_id, "resourceType": "CUSTOMER", "recordId": mine.customer, "access": "WRITE", "includeSensitive": true }))
        .await
        .data("/grantShare");
    let customer = app
        .graphql(
            Some(&other_member),
            "query($id: ID!) { node(id: $id) { ... on Customer { name email version } } }",
            json!({ "id": mine.customer }),
        )
        .await;
    assert_eq!(customer.data("/node/name"), "Own Customer");
    let updated = app
        .graphql(Some(&other_member), "mutation($id: ID!) { updateProduct(input: { id: $id, version: 1, name: \"Partner-edited\" }) { product { name version } } }", json!({ "id": mine.product }))
        .await;
    assert_eq!(updated.data("/updateProduct/product/version"), 2);
    // A viewer of the grantee still cannot write.
    let other_viewer = app.token(other, Role::Viewer).await;
    app.graphql(Some(&other_viewer), "mutation($id: ID!) { updateProduct(input: { id: $id, version: 2, name: \"v\" }) { product { id } } }", json!({ "id": mine.product }))
        .await
        .expect_error("FORBIDDEN");
    // The grantee cannot revoke the owner's shares, nor re-share the owner's records.
    app.graphql(
        Some(&other_admin),
        REVOKE_SHARE,
        json!({ "input": { "id": product_share } }),
    )
    .await
    .expect_error("NOT_FOUND");
    app.graphql(Some(&other_admin), GRANT_SHARE, json!({ "input": { "granteeId": encode_global_id(RecordKind::Organization, app.retailer_id), "resourceType": "PRODUCT", "recordId": mine.product, "access": "READ" } }))
        .await
        .expect_error("NOT_FOUND");

    // After revoking, the records are gone again.
    for share in [device_share, customer_share, product_share] {
        app.graphql(
            Some(&retailer_admin),
            REVOKE_SHARE,
            json!({ "input": { "id": share } }),
        )
        .await
        .data("/revokeShare");
    }
    let seen = visible_to(&app, &other_member).await;
    assert_eq!(seen["devices"]["totalCount"], 1);
    assert_eq!(seen["products"]["totalCount"], 1);
    app.graphql(
        Some(&other_member),
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": mine.device }),
    )
    .await
    .expect_error("NOT_FOUND");
    app.graphql(
        Some(&other_member),
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": mine.product }),
    )
    .await
    .expect_error("NOT_FOUND");
    // The record-level customer share is still there (it was not revoked): one customer with contact data.
    let customer = app
        .graphql(
            Some(&other_member),
            "query($id: ID!) { node(id: $id) { ... on Customer { email } } }",
            json!({ "id": mine.customer }),
        )
        .await;
    assert_eq!(customer.data("/node/email"), "own@example.com");
    app.stop().await;
}
on_both_backends!(isolation, organizations_see_only_what_they_may);

async fn bad_input_changes_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let records = create_records(&app, &admin, "Base").await;
    let mut weak = [0u8; 32];
    weak[0] = 1; // the identity point: small order
    let product = |input: Value| json!({ "input": input });
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "invalid currency",
            CREATE_PRODUCT,
            product(json!({ "sku": "X1", "name": "X", "priceMinor": 1, "currency": "EURO" })),
            "VALIDATION",
        ),
        (
            "lower-case currency",
            CREATE_PRODUCT,
            product(json!({ "sku": "X1", "name": "X", "priceMinor": 1, "currency": "eur" })),
            "VALIDATION",
        ),
        (
            "negative price",
            CREATE_PRODUCT,
            product(json!({ "sku": "X1", "name": "X", "priceMinor": -1, "currency": "EUR" })),
            "VALIDATION",
        ),
        (
            "price beyond 64 bits",
            CREATE_PRODUCT,
            product(
                json!({ "sku": "X1", "name": "X", "priceMinor": "99999999999999999999", "currency": "EUR" }),
            ),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "duplicate SKU",
            CREATE_PRODUCT,
            product(
                json!({ "sku": "Base-SKU-1", "name": "X", "priceMinor": 1, "currency": "EUR" }),
            ),
            "CONFLICT",
        ),
        (
            "bad SKU",
            CREATE_PRODUCT,
            product(json!({ "sku": "has space", "name": "X", "priceMinor": 1, "currency": "EUR" })),
            "VALIDATION",
        ),
        (
            "malformed device key",
            REGISTER_DEVICE,
            json!({ "input": { "name": "T", "locationId": records.location, "publicKey": "bm90LWEta2V5" } }),
            "VALIDATION",
        ),
        (
            "weak device key",
            REGISTER_DEVICE,
            json!({ "input": { "name": "T", "locationId": records.location, "publicKey": STANDARD.encode(weak) } }),
            "VALIDATION",
        ),
        (
            "device at a product id",
            REGISTER_DEVICE,
            json!({ "input": { "name": "T", "locationId": records.product, "publicKey": device_key(5) } }),
            "VALIDATION",
        ),
        (
            "bad email",
            CREATE_CUSTOMER,
            json!({ "input": { "name": "N", "email": "not-an-email" } }),
            "VALIDATION",
        ),
        (
            "bad country",
            CREATE_LOCATION,
            json!({ "input": { "name": "L", "kind": "SHOP", "street": "s", "city": "c", "postalCode": "p", "countryCode": "Netherlands" } }),
            "VALIDATION",
        ),
        (
            "stale version",
            "mutation($input: UpdateProductInput!) { updateProduct(input: $input) { product { id } } }",
            json!({ "input": { "id": records.product, "version": 7, "name": "Y" } }),
            "CONFLICT",
        ),
        (
            "wrong ID type",
            "mutation($input: UpdateProductInput!) { updateProduct(input: $input) { product { id } } }",
            json!({ "input": { "id": records.location, "version": 1, "name": "Y" } }),
            "VALIDATION",
        ),
        (
            "share with itself",
            GRANT_SHARE,
            json!({ "input": { "granteeId": encode_global_id(RecordKind::Organization, app.retailer_id), "resourceType": "PRODUCT", "access": "READ" } }),
            "VALIDATION",
        ),
    ];
    let before = app.fingerprint().await;
    for (case, query, variables, code) in cases {
        let response = app.graphql(Some(&admin), query, variables).await;
        assert_eq!(
            response.error_code(),
            Some(code),
            "{case}: {}",
            response.body
        );
        // Every table, every row: a refused input that still changed a name, or left a stray row
        // anywhere, fails here.
        assert_eq!(app.fingerprint().await, before, "{case}: changed nothing");
    }
    // A duplicate SKU by update is a conflict too.
    app.graphql(
        Some(&admin),
        CREATE_PRODUCT,
        product(json!({ "sku": "Second", "name": "S", "priceMinor": 5, "currency": "USD" })),
    )
    .await
    .data("/createProduct");
    let after_second = app.fingerprint().await;
    let second = app
        .graphql(
            Some(&admin),
            "{ products(filter: { sku: \"Second\" }) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let second = second.data("/products/edges/0/node/id").clone();
    app.graphql(Some(&admin), "mutation($id: ID!) { updateProduct(input: { id: $id, version: 1, sku: \"Base-SKU-1\" }) { product { id } } }", json!({ "id": second }))
        .await
        .expect_error("CONFLICT");
    assert_eq!(
        app.fingerprint().await,
        after_second,
        "the refused update changed nothing"
    );
    assert_eq!(before.rows("product") + 1, after_second.rows("product"));
    app.stop().await;
}
on_both_backends!(bad_input, bad_input_changes_nothing);

async fn nested_suppliers_load_in_bounded_statements(backend: Backend) {
    // Callers' records stay cached for the whole test, so authentication costs nothing below.
    let app = TestApp::start_with(backend, |config| config.access_cache_ms = 60_000).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let mut suppliers = Vec::new();
    for i in 0..5 {
        suppliers.push(encode_global_id(
            RecordKind::Organization,
            app.create_organization(&format!("Supplier {i}"), OrganizationKind::Supplier)
                .await,
        ));
    }
    for i in 0..100 {
        app.graphql(Some(&admin), CREATE_PRODUCT, json!({ "input": {
            "sku": format!("N1-{i:02}"), "name": "Item", "priceMinor": 100, "currency": "EUR", "supplierId": suppliers[i % 5] } }))
            .await
            .data("/createProduct");
    }
    let query = "query($n: Int) { products(first: $n) { totalCount edges { node { sku supplier { name } owner { name } } } } }";
    app.wait_for_bus().await;
    app.graphql(Some(&admin), "{ me { role } }", json!({}))
        .await
        .data("/me/role");
    let mut counts = Vec::new();
    for size in [5, 50, 100] {
        // The hub's background work (audit links, key refresh) may run statements during a request:
        // the least of three is the request's own cost.
        let mut least = u64::MAX;
        for _ in 0..3 {
            let before = app.hub.state.db_statements();
            let page = app.graphql(Some(&admin), query, json!({ "n": size })).await;
            least = least.min(app.hub.state.db_statements() - before);
            assert_eq!(
                page.data("/products/edges").as_array().map(Vec::len),
                Some(size)
            );
            assert!(
                page.data("/products/edges/0/node/supplier/name")
                    .as_str()
                    .is_some_and(|n| n.starts_with("Supplier"))
            );
        }
        counts.push(least);
    }
    // Count (1), page (1), the page's suppliers and owners (1), authentication from the cache (0): the
    // same for every page size, where one query per row would take 50 or 100.
    assert_eq!(
        counts,
        [3, 3, 3],
        "statements per page of 5, 50 and 100 products with suppliers"
    );
    app.stop().await;
}
on_both_backends!(n_plus_one, nested_suppliers_load_in_bounded_statements);
