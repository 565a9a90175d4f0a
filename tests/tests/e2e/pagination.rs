//! Pagination follows `orderBy`: for every product ordering field and both directions, paging forwards
//! (`first`/`after`) and backwards (`last`/`before`) must give the order the test sorts by itself from the
//! records it created: the sort value, then the row id as tie-break.
//!
//! Assumptions (from `api::db::pagination::paginate`, which uses sea-orm's `cursor_by((column, id))`;
//! its `desc()` flips every cursor column): DESC reverses the id tie-break too, so a descending listing is
//! the exact reverse of the ascending one. Ids are UUID v7. PostgreSQL compares `uuid` bytewise, and SQLite
//! stores them as 16-byte BLOBs (sqlx) compared with memcmp, so `Uuid`'s `Ord` (over its bytes) is the
//! database order on both. SKUs and names are upper-case ASCII letters and digits of one shape, so a
//! PostgreSQL collation other than `C` orders them as their bytes do. CREATED_AT is expected in creation
//! order: products are created one request at a time, so their timestamps rise with it.

use api::auth::Role;
use hub_tests::{Backend, TestApp, decode_global_id, on_both_backends, workspace_root};
use serde_json::{Value, json};
use uuid::Uuid;

const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
const PRODUCTS: &str =
    "query($first: Int, $after: String, $last: Int, $before: String, $order: ProductOrder) {
    products(first: $first, after: $after, last: $last, before: $before, orderBy: $order) {
        totalCount
        edges { cursor node { id } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

const COUNT: usize = 23;
const PAGE: usize = 5;
/// `ProductOrderField` in schema.graphql (checked below, so a new field cannot go untested).
const FIELDS: [&str; 4] = ["SKU", "NAME", "PRICE", "CREATED_AT"];
/// Few names and prices among many products: most sort values collide, and the id decides.
const NAMES: [&str; 4] = ["PEAR", "APPLE", "MANGO", "KIWI"];
/// Numeric order differs from text order ("1000" < "250" < "99"), so prices sorted as text would show.
const PRICES: [i64; 3] = [250, 99, 1000];

struct Product {
    id: Uuid,
    sku: String,
    name: String,
    price: i64,
    created: usize,
}

/// The value `field` sorts `product` by, comparable as the database compares it.
fn sort_value(product: &Product, field: &str) -> (i64, String) {
    match field {
        "SKU" => (0, product.sku.clone()),
        "NAME" => (0, product.name.clone()),
        "PRICE" => (product.price, String::new()),
        "CREATED_AT" => (product.created as i64, String::new()),
        other => panic!("no expectation for ordering field {other}"),
    }
}

/// The ids in the order `field` and `direction` must list them: sort value, then id; DESC flips both.
fn sorted_ids(products: &[Product], field: &str, direction: &str) -> Vec<Uuid> {
    let mut keyed: Vec<((i64, String), Uuid)> = products
        .iter()
        .map(|product| (sort_value(product, field), product.id))
        .collect();
    keyed.sort();
    if direction == "DESC" {
        keyed.reverse();
    }
    keyed.into_iter().map(|(_, id)| id).collect()
}

struct Page {
    ids: Vec<Uuid>,
    has_next: bool,
    has_previous: bool,
    start: Option<String>,
    end: Option<String>,
}

/// One page of products under `order`, with the page arguments in `variables`.
async fn fetch(app: &TestApp, token: &str, order: &Value, mut variables: Value) -> Page {
    variables["order"] = order.clone();
    let response = app.graphql(Some(token), PRODUCTS, variables).await;
    let connection = response.data("/products");
    assert_eq!(
        connection["totalCount"].as_u64(),
        Some(COUNT as u64),
        "totalCount counts every row, not the page: {order}"
    );
    let edges = connection["edges"].as_array().expect("edges");
    let cursors: Vec<&str> = edges
        .iter()
        .map(|edge| edge["cursor"].as_str().expect("cursor"))
        .collect();
    let info = &connection["pageInfo"];
    assert_eq!(info["startCursor"].as_str(), cursors.first().copied());
    assert_eq!(info["endCursor"].as_str(), cursors.last().copied());
    Page {
        ids: edges
            .iter()
            .map(|edge| decode_global_id(edge["node"]["id"].as_str().expect("id")))
            .collect(),
        has_next: info["hasNextPage"].as_bool().expect("hasNextPage"),
        has_previous: info["hasPreviousPage"].as_bool().expect("hasPreviousPage"),
        start: info["startCursor"].as_str().map(str::to_owned),
        end: info["endCursor"].as_str().map(str::to_owned),
    }
}

async fn pages_follow_the_ordering(backend: Backend) {
    let schema =
        std::fs::read_to_string(workspace_root().join("schema.graphql")).expect("schema.graphql");
    let listed: Vec<&str> = schema
        .split("enum ProductOrderField {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("ProductOrderField in schema.graphql")
        .split_whitespace()
        .filter(|word| word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert_eq!(listed, FIELDS, "every ordering field is checked below");

    let app = TestApp::start(backend).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let mut products = Vec::new();
    for created in 0..COUNT {
        // Distinct SKUs, scrambled against creation order (7 is coprime with 23).
        let sku = format!("P{:02}", (created * 7) % COUNT);
        let name = NAMES[created % NAMES.len()].to_owned();
        let price = PRICES[(created * 2) % PRICES.len()];
        let response = app
            .graphql(
                Some(&admin),
                CREATE_PRODUCT,
                json!({ "input": {
                    "sku": sku, "name": name, "priceMinor": price.to_string(), "currency": "EUR" } }),
            )
            .await;
        let id = response
            .data("/createProduct/product/id")
            .as_str()
            .expect("id");
        products.push(Product {
            id: decode_global_id(id),
            sku,
            name,
            price,
            created,
        });
    }

    let mut seen: Vec<Vec<Uuid>> = Vec::new();
    for field in FIELDS {
        for direction in ["ASC", "DESC"] {
            let label = format!("{field} {direction}");
            let order = json!({ "field": field, "direction": direction });
            let expected = sorted_ids(&products, field, direction);
            assert!(
                !seen.contains(&expected),
                "{label}: same order as another ordering, so the test could not tell them apart"
            );
            seen.push(expected.clone());

            // Forwards from the start, following endCursor.
            let mut forward: Vec<Uuid> = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let variables = json!({ "first": PAGE, "after": after });
                let page = fetch(&app, &admin, &order, variables).await;
                let (read, remaining) = (forward.len(), COUNT - forward.len());
                assert_eq!(
                    page.ids.len(),
                    remaining.min(PAGE),
                    "{label}: page size after {read}"
                );
                assert_eq!(
                    page.has_next,
                    remaining > PAGE,
                    "{label}: hasNextPage after {read}"
                );
                assert_eq!(
                    page.has_previous,
                    after.is_some(),
                    "{label}: with first, hasPreviousPage says whether a cursor was given"
                );
                forward.extend(page.ids);
                if !page.has_next {
                    break;
                }
                after = Some(page.end.expect("endCursor"));
            }
            assert_eq!(forward, expected, "{label}: forward pages");

            // Backwards from the end, following startCursor.
            let mut backward: Vec<Uuid> = Vec::new();
            let mut before: Option<String> = None;
            loop {
                let variables = json!({ "last": PAGE, "before": before });
                let page = fetch(&app, &admin, &order, variables).await;
                let (read, remaining) = (backward.len(), COUNT - backward.len());
                assert_eq!(
                    page.ids.len(),
                    remaining.min(PAGE),
                    "{label}: page size before the last {read}"
                );
                assert_eq!(
                    page.has_previous,
                    remaining > PAGE,
                    "{label}: hasPreviousPage before the last {read}"
                );
                assert_eq!(
                    page.has_next,
                    before.is_some(),
                    "{label}: with last, hasNextPage says whether a cursor was given"
                );
                let mut ids = page.ids;
                ids.append(&mut backward);
                backward = ids;
                if !page.has_previous {
                    break;
                }
                before = Some(page.start.expect("startCursor"));
            }
            assert_eq!(backward, expected, "{label}: backward pages");
        }
    }
    app.stop().await;
}

on_both_backends!(pagination_order, pages_follow_the_ordering);
