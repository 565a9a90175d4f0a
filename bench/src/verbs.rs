//! Scenarios over the work and logistics verbs and the analytics: appending travel records (one
//! carrier per client, each with its own deliveries), and the sales figure over a seeded year of orders.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::client::{Hub, mint_token};

/// A delivery holds at most this many travel records (the hub's limit).
const RECORDS_PER_DELIVERY: u64 = 500;
/// Deliveries seeded per client: enough for `DELIVERIES * 500` records each.
const DELIVERIES: usize = 40;

fn id_at(data: &Value, pointer: &str) -> anyhow::Result<String> {
    data.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {pointer} in {data}"))
}

/// Per client: a carrier's connection and the deliveries it carries (picked up, in transit).
pub struct TravelFixture {
    carriers: Vec<(Hub, Vec<String>)>,
}

impl TravelFixture {
    pub async fn seed(
        hub: &Hub,
        clients: usize,
        hub_bin: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let location = hub
            .graphql("mutation { createLocation(input: { name: \"Bench depot\", kind: WAREHOUSE, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
            .await?;
        let location = id_at(&location, "/createLocation/location/id")?;
        let product = hub
            .graphql(
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }",
                json!({ "input": { "sku": format!("BENCH-SHIP-{run}"), "name": "Parcel", "priceMinor": 100, "currency": "EUR" } }),
            )
            .await?;
        let product = id_at(&product, "/createProduct/product/id")?;
        let order = hub
            .graphql(
                "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }",
                json!({ "input": { "lines": [{ "productId": product, "quantity": 1 }] } }),
            )
            .await?;
        let order = id_at(&order, "/createOrder/order/id")?;
        hub.graphql(
            "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
            json!({ "id": order }),
        )
        .await?;
        let now = chrono::Utc::now();
        let mut carriers = Vec::with_capacity(clients);
        for client in 0..clients {
            let name = format!("bench-carrier-{run}-{client}");
            let created = hub
                .graphql(
                    "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }",
                    json!({ "input": { "name": name, "kind": "LOGISTICS", "adminName": "admin" } }),
                )
                .await
                .context("seeding carriers (the token must be the retailer's ADMIN)")?;
            let carrier_id = id_at(&created, "/createOrganization/organization/id")?;
            let carrier = hub.with_token(&mint_token(&name, hub_bin)?);
            let mut deliveries = Vec::with_capacity(DELIVERIES);
            for _ in 0..DELIVERIES {
                let delivery = hub
                    .graphql(
                        "mutation($input: CreateDeliveryInput!) { createDelivery(input: $input) { delivery { id } } }",
                        json!({ "input": { "orderId": order, "carrierId": carrier_id, "originLocationId": location,
                            "recipient": { "name": "Bench recipient", "address": "Benchstraat 1, Amsterdam" },
                            "promisedFrom": now.to_rfc3339(), "promisedUntil": (now + chrono::TimeDelta::days(2)).to_rfc3339() } }),
                    )
                    .await?;
                let delivery = id_at(&delivery, "/createDelivery/delivery/id")?;
                for to in ["PICKED_UP", "IN_TRANSIT"] {
                    carrier
                        .graphql(
                            "mutation($id: ID!, $to: DeliveryStatus!) { moveDelivery(input: { id: $id, to: $to }) { delivery { id } } }",
                            json!({ "id": delivery, "to": to }),
                        )
                        .await?;
                }
                deliveries.push(delivery);
            }
            carriers.push((carrier, deliveries));
        }
        Ok(Self { carriers })
    }

    /// The `n`-th travel record of client `client`'s carrier.
    pub async fn record(self: Arc<Self>, client: usize, n: u64) -> anyhow::Result<()> {
        let (carrier, deliveries) = &self.carriers[client % self.carriers.len()];
        let index = (n / RECORDS_PER_DELIVERY) as usize;
        let delivery = deliveries
            .get(index)
            .context("the seeded deliveries are full: run shorter or seed more")?;
        carrier
            .graphql(
                "mutation TravelRecord($input: RecordTravelInput!) { recordTravel(input: $input) { travelRecord { sequence } } }",
                json!({ "input": { "deliveryId": delivery, "recordedAt": chrono::Utc::now().to_rfc3339(),
                    "position": { "latitude": 52.0 + (n % 100) as f64 / 1000.0, "longitude": 4.9 },
                    "note": "scan" } }),
            )
            .await
            .map(drop)
    }
}

/// Seeds a year of orders straight into PostgreSQL (`psql`; the API would take far longer than the
/// measurement), with `lines` order lines of ten products of five suppliers, then returns the query
/// to measure: the retailer's sales by day, product and supplier over that year.
pub async fn seed_sales_year(hub: &Hub, database_url: &str, lines: u64) -> anyhow::Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut suppliers = Vec::new();
    for i in 0..5 {
        let created = hub
            .graphql(
                "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }",
                json!({ "input": { "name": format!("bench-year-supplier-{run}-{i}"), "kind": "SUPPLIER", "adminName": "admin" } }),
            )
            .await?;
        suppliers.push(id_at(&created, "/createOrganization/organization/id")?);
    }
    for i in 0..10 {
        hub.graphql(
            "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }",
            json!({ "input": { "sku": format!("BENCH-YEAR-{run}-{i}"), "name": format!("Year product {i}"),
                "priceMinor": 100 + i * 10, "currency": "EUR", "supplierId": suppliers[i % 5] } }),
        )
        .await?;
    }
    let orders = lines.div_ceil(3);
    // Three lines per order; each line's product is picked from the ten by a hash of the order and
    // line number, its quantity 1 to 5; orders are placed at random times over the past year.
    let sql = format!(
        "WITH products AS ( \
           SELECT array_agg(id ORDER BY sku) AS ids, min(owner_organization_id::text)::uuid AS owner \
           FROM product WHERE sku LIKE 'BENCH-YEAR-{run}-%' ), \
         orders AS ( \
           INSERT INTO sales_order (id, owner_organization_id, customer_id, status, currency, total_minor, \
             paid_minor, version, created_at, updated_at, placed_at) \
           SELECT gen_random_uuid(), products.owner, NULL, 'PLACED', 'EUR', 0, 0, 1, t, t, t \
           FROM products, (SELECT now() - random() * interval '365 days' AS t FROM generate_series(1, {orders})) times \
           RETURNING id ) \
         INSERT INTO order_line (id, order_id, line_number, product_id, supplier_organization_id, quantity, \
           unit_price_minor, line_total_minor) \
         SELECT gen_random_uuid(), orders.id, n, p.id, p.supplier_organization_id, q, p.price_minor, q * p.price_minor \
         FROM orders CROSS JOIN generate_series(1, 3) AS n \
         CROSS JOIN products \
         CROSS JOIN LATERAL (SELECT 1 + abs(hashtext(orders.id::text || n::text)) % 5 AS q) quantity \
         JOIN product p ON p.id = products.ids[1 + abs(hashtext(n::text || orders.id::text)) % 10]; \
         ANALYZE sales_order; ANALYZE order_line;"
    );
    psql(database_url, &sql).context("seeding the year of orders")?;
    // What the hub writes when it places an order: its contribution to the daily roll-up, one row per
    // product and supplier, which the hub's folder then adds into `sales_daily`.
    let contributions = format!(
        "INSERT INTO sales_pending (owner_organization_id, day, product_id, supplier_organization_id, \
           currency, quantity, revenue_minor, orders) \
         SELECT o.owner_organization_id, CAST(o.placed_at AT TIME ZONE 'UTC' AS DATE), l.product_id, \
           l.supplier_organization_id, o.currency, SUM(l.quantity), SUM(l.line_total_minor), 1 \
         FROM order_line l JOIN sales_order o ON o.id = l.order_id JOIN product p ON p.id = l.product_id \
         WHERE p.sku LIKE 'BENCH-YEAR-{run}-%' \
         GROUP BY o.id, o.owner_organization_id, CAST(o.placed_at AT TIME ZONE 'UTC' AS DATE), \
           l.product_id, l.supplier_organization_id, o.currency"
    );
    psql(database_url, &contributions).context("writing the seeded orders' sales contributions")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while psql(database_url, "SELECT count(*) FROM sales_pending")? != "0" {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the hub did not fold the seeded sales within 5 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Units sold in `[from, to)` by the database's own count over the order lines: what the figure's
/// quantities must add up to.
pub fn units_sold(
    database_url: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT COALESCE(SUM(l.quantity), 0) FROM order_line l JOIN sales_order o ON o.id = l.order_id \
         WHERE o.status IN ('PLACED', 'FULFILLED', 'CLOSED') \
         AND o.placed_at >= '{}' AND o.placed_at < '{}'",
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    Ok(psql(database_url, &sql)?.parse()?)
}

/// Runs `sql` with psql and returns what it printed, trimmed.
pub(crate) fn psql(database_url: &str, sql: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new("psql")
        .args([database_url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql")?;
    anyhow::ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub const SALES_YEAR: &str =
    "query SalesYear($from: DateTime!, $to: DateTime!) { analytics(from: $from, to: $to) {
    sales { day productId supplierId quantity revenueMinor orders } } }";
