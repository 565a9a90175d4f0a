//! Scenarios: each seeds what it needs through the API, then runs one operation in a closed loop.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::Barrier;

use crate::{
    Budget, Scenario,
    client::Hub,
    probe::Probe,
    report::{Report, new_histogram},
};

const ME: &str = "query Me { me { role } }";
const CREATE_ORDER: &str = "mutation CreateOrder($input: CreateOrderInput!) { createOrder(input: $input) { order { id totalMinor } } }";
const PLACE_ORDER: &str =
    "mutation PlaceOrder($id: ID!) { placeOrder(input: { id: $id }) { order { id status } } }";
const PRODUCTS_PAGE: &str = "query ProductsPage { products(first: 50) { edges { node { id sku name priceMinor currency supplier { name } } } } }";
const CUSTOMERS_PAGE: &str = "query CustomersPage { customers(first: 50) { edges { node { id name email phone address } } } }";

pub async fn run(scenario: Scenario, hub: &Hub, load: Load<'_>) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Payments
        | Scenario::Subscriptions
        | Scenario::Taps
        | Scenario::TravelRecords
        | Scenario::SalesYear
        | Scenario::CaptureRefund
        | Scenario::CloseBatch => {
            anyhow::bail!("the {scenario:?} scenario is driven from main with its fixture")
        }
        Scenario::Me => {
            let hub = hub.clone();
            drive("me", load, move |_client, _n| {
                let hub = hub.clone();
                async move { hub.graphql(ME, json!({})).await.map(drop) }
            })
            .await
        }
        Scenario::ProductsPage => {
            seed_catalogue(hub).await?;
            let hub = hub.clone();
            drive("products-page", load, move |_client, _n| {
                let hub = hub.clone();
                async move { hub.graphql(PRODUCTS_PAGE, json!({})).await.map(drop) }
            })
            .await
        }
        Scenario::CustomersPage => {
            seed_customers(hub).await?;
            let hub = hub.clone();
            drive("customers-page", load, move |_client, _n| {
                let hub = hub.clone();
                async move {
                    let page = hub.graphql(CUSTOMERS_PAGE, json!({})).await?;
                    // A page whose fields came back null would measure nothing: refuse it.
                    anyhow::ensure!(
                        page["customers"]["edges"][49]["node"]["address"].is_string(),
                        "the page did not carry 50 decrypted customers"
                    );
                    Ok(())
                }
            })
            .await
        }
        Scenario::PlaceOrder => {
            let products = Arc::new(seed_catalogue(hub).await?);
            let hub = hub.clone();
            let run = uuid::Uuid::new_v4().simple().to_string();
            drive("place-order", load, move |client, n| {
                let (hub, products, run) = (hub.clone(), products.clone(), run.clone());
                async move {
                    // Three different products, spread over the catalogue.
                    let pick = |offset: usize| {
                        products[(client * 31 + n as usize * 7 + offset * 13) % products.len()]
                            .clone()
                    };
                    let created = hub
                        .graphql(
                            CREATE_ORDER,
                            json!({ "input": {
                                "idempotencyKey": format!("bench-{run}-{client}-{n}"),
                                "lines": [
                                    { "productId": pick(0), "quantity": 1 },
                                    { "productId": pick(1), "quantity": 2 },
                                    { "productId": pick(2), "quantity": 3 } ] } }),
                        )
                        .await?;
                    let id = created["createOrder"]["order"]["id"].clone();
                    hub.graphql(PLACE_ORDER, json!({ "id": id }))
                        .await
                        .map(drop)
                }
            })
            .await
        }
    }
}

/// Five suppliers and 100 products referring to them, named after this run.
async fn seed_catalogue(hub: &Hub) -> anyhow::Result<Vec<String>> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut suppliers = Vec::new();
    for i in 0..5 {
        let data = hub
            .graphql(
                "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }",
                json!({ "input": { "name": format!("bench-supplier-{run}-{i}"), "kind": "SUPPLIER", "adminName": "admin" } }),
            )
            .await
            .context("seeding suppliers (the token must be the retailer's ADMIN)")?;
        suppliers.push(
            data["createOrganization"]["organization"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let mut products = Vec::new();
    for i in 0..100 {
        let data = hub
            .graphql(
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }",
                json!({ "input": {
                    "sku": format!("BENCH-{run}-{i:03}"), "name": format!("Bench product {i}"),
                    "priceMinor": 100 + i, "currency": "EUR", "supplierId": suppliers[i % suppliers.len()] } }),
            )
            .await
            .context("seeding products")?;
        products.push(
            data["createProduct"]["product"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(products)
}

/// 100 customers with every contact field, named after this run.
async fn seed_customers(hub: &Hub) -> anyhow::Result<()> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    for i in 0..100 {
        hub.graphql(
            "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { customer { id } } }",
            json!({ "input": {
                "name": format!("Bench customer {run} {i}"), "email": format!("bench-{run}-{i}@example.com"),
                "phone": format!("+31 20 555 {i:04}"), "address": format!("Benchstraat {i}, 1011 AB Amsterdam") } }),
        )
        .await
        .context("seeding customers (the token must be the retailer's ADMIN or MEMBER)")?;
    }
    Ok(())
}

/// Runs `operation` from `clients` concurrent loops: first `warmup` unmeasured calls each, then measured
/// calls until the budget is spent. The operation gets the client index and its call number.
pub async fn drive<F, Fut>(name: &str, load: Load<'_>, operation: F) -> anyhow::Result<Report>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let Load {
        clients,
        warmup,
        budget,
        probe,
    } = load;
    let clients = clients.max(1);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let (barrier, issued, operation) = (barrier.clone(), issued.clone(), operation.clone());
        tasks.push(tokio::spawn(async move {
            let mut calls = 0u64;
            for _ in 0..warmup {
                let _ = operation(client, calls).await;
                calls += 1;
            }
            barrier.wait().await;
            let started = Instant::now();
            let mut histogram = new_histogram();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let go_on = match budget {
                    Budget::Duration(limit) => started.elapsed() < limit,
                    Budget::Requests(limit) => issued.fetch_add(1, Ordering::Relaxed) < limit,
                };
                if !go_on {
                    break;
                }
                let sent = Instant::now();
                match operation(client, calls).await {
                    Ok(()) => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        histogram.saturating_record(micros.max(1));
                    }
                    Err(err) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{err:#}"));
                    }
                }
                calls += 1;
            }
            (histogram, errors, first_error)
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let before = probe.sample().await;
    let mut histogram = new_histogram();
    let mut errors = 0;
    for task in tasks {
        let (client_histogram, client_errors, first_error) =
            task.await.context("client task panicked")?;
        histogram
            .add(&client_histogram)
            .context("merging histograms")?;
        errors += client_errors;
        if let Some(message) = first_error {
            eprintln!("{name}: a request failed: {message}");
        }
    }
    let elapsed = started.elapsed();
    let after = probe.sample().await;
    let mut report = Report::new(name, clients, &histogram, errors, elapsed);
    report.costs = before.costs_until(&after, histogram.len() + errors);
    Ok(report)
}

/// How a scenario is driven: by how many clients, after how many unmeasured calls each, for how
/// long, and where the hub's costs are read.
#[derive(Clone, Copy)]
pub struct Load<'a> {
    pub clients: usize,
    pub warmup: u64,
    pub budget: Budget,
    pub probe: &'a Probe,
}
