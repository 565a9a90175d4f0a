//! The subscriptions scenario: S WebSocket subscribers spread over the given replicas and over several
//! organizations (so visibility matters: the retailer sees every order, each supplier only the orders
//! with its products), while orders are committed at a steady rate R. Reports commit-to-client latency
//! (the event's `occurredAt`, stamped by the hub, to its arrival here; hub and bench share a clock on one
//! machine), deliveries per second, missing or repeated deliveries, and the hubs' memory per subscriber.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
use uuid::Uuid;

use crate::{
    client::{Hub, mint_token},
    report::new_histogram,
};

const CREATE_ORGANIZATION: &str = "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }";
const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";
const GRANT_SHARE: &str =
    "mutation($input: GrantShareInput!) { grantShare(input: $input) { share { id } } }";
const CREATE_ORDER: &str =
    "mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }";
const SUBSCRIBE: &str =
    "subscription { events(filter: { eventType: \"order.created\" }) { recordId occurredAt } }";

pub struct SubscriptionLoad<'a> {
    pub hub: &'a Hub,
    pub subscriber_urls: Vec<String>,
    pub retailer_token: String,
    pub subscribers: usize,
    pub suppliers: usize,
    pub events_per_second: u64,
    pub duration: Duration,
    pub hub_bin: &'a Path,
    pub hub_pids: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionReport {
    pub subscribers: usize,
    pub connected: usize,
    pub organizations: usize,
    pub events_committed: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub repeated: u64,
    pub seconds: f64,
    pub deliveries_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub hub_rss_mib_before: f64,
    pub hub_rss_mib_connected: f64,
    pub rss_kib_per_subscriber: f64,
}

impl SubscriptionReport {
    pub fn line(&self) -> String {
        format!(
            "subscriptions    S={} connected={} orgs={} events={} deliveries={}/{} repeated={} {:.0} deliveries/s  p50={:.2}ms p99={:.2}ms max={:.2}ms  hub RSS {:.1} -> {:.1} MiB ({:.1} KiB/subscriber)",
            self.subscribers,
            self.connected,
            self.organizations,
            self.events_committed,
            self.deliveries,
            self.expected_deliveries,
            self.repeated,
            self.deliveries_per_second,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.hub_rss_mib_before,
            self.hub_rss_mib_connected,
            self.rss_kib_per_subscriber,
        )
    }
}

/// One organization taking part: its token, and the product its orders carry.
struct Party {
    token: String,
    product: String,
}

/// Resident memory of the given processes together, in KiB (from /proc).
fn rss_kib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .sum()
}

/// Creates the suppliers, their products shared with the retailer, and one product of the retailer.
async fn seed(load: &SubscriptionLoad<'_>) -> anyhow::Result<(Party, Vec<Party>)> {
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let retailer_product = load
        .hub
        .graphql(CREATE_PRODUCT, json!({ "input": { "sku": format!("SUB-{run}"), "name": "Bench", "priceMinor": 100, "currency": "EUR" } }))
        .await?["createProduct"]["product"]["id"]
        .as_str()
        .context("product id")?
        .to_owned();
    let retailer_id = load
        .hub
        .graphql("{ me { organization { id } } }", json!({}))
        .await?["me"]["organization"]["id"]
        .clone();
    let mut suppliers = Vec::new();
    for index in 0..load.suppliers {
        let name = format!("bench-supplier-{run}-{index}");
        load.hub
            .graphql(
                CREATE_ORGANIZATION,
                json!({ "input": { "name": name, "kind": "SUPPLIER", "adminName": "admin" } }),
            )
            .await?;
        let token = mint_token(&name, load.hub_bin)?;
        let supplier = load.hub.with_token(&token);
        let product = supplier
            .graphql(CREATE_PRODUCT, json!({ "input": { "sku": format!("SUP-{run}-{index}"), "name": "Part", "priceMinor": 100, "currency": "EUR" } }))
            .await?["createProduct"]["product"]["id"]
            .as_str()
            .context("product id")?
            .to_owned();
        supplier
            .graphql(GRANT_SHARE, json!({ "input": { "granteeId": retailer_id, "resourceType": "PRODUCT", "access": "READ" } }))
            .await?;
        suppliers.push(Party { token, product });
    }
    Ok((
        Party {
            token: load.retailer_token.clone(),
            product: retailer_product,
        },
        suppliers,
    ))
}

/// What all subscribers record.
#[derive(Default)]
struct Tally {
    deliveries: AtomicU64,
    repeated: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

/// Opens one subscriber and records what it receives until `stop`.
async fn subscriber(
    url: String,
    token: String,
    tally: Arc<Tally>,
    ready: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ws_url = format!("{}/graphql", url.replacen("http://", "ws://", 1));
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await?;
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.contains("connection_ack") => {}
        other => bail!("no connection_ack: {other:?}"),
    }
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": SUBSCRIBE } });
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    ready.fetch_add(1, Ordering::SeqCst);
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut latencies = Vec::new();
    loop {
        // A watch, unlike a notification, is not missed by a subscriber busy with a message.
        let message = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            message = socket.next() => message,
        };
        let Some(Ok(Message::Text(text))) = message else {
            match message {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => bail!("subscription ended: {message:?}"),
            }
        };
        let arrived = Utc::now();
        let value: Value = serde_json::from_str(&text)?;
        if value["type"] == "ping" {
            socket
                .send(Message::Text(json!({ "type": "pong" }).to_string().into()))
                .await?;
            continue;
        }
        let event = &value["payload"]["data"]["events"];
        let Some(record) = event["recordId"].as_str() else {
            bail!("unexpected message: {text}");
        };
        if seen.insert(record.to_owned(), ()).is_some() {
            tally.repeated.fetch_add(1, Ordering::Relaxed);
        }
        let occurred: DateTime<Utc> = event["occurredAt"]
            .as_str()
            .context("occurredAt")?
            .parse()?;
        latencies.push((arrived - occurred).num_microseconds().unwrap_or(0).max(1) as u64);
        tally.deliveries.fetch_add(1, Ordering::Relaxed);
    }
    tally
        .latencies
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(latencies);
    Ok(())
}

pub async fn run(load: SubscriptionLoad<'_>) -> anyhow::Result<SubscriptionReport> {
    let (retailer, suppliers) = seed(&load).await?;
    let rss_before = rss_kib(&load.hub_pids);
    let tally = Arc::new(Tally::default());
    let ready = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Subscriber i belongs to the retailer when i % (suppliers + 1) == 0, else to supplier i % (suppliers + 1) - 1.
    let organizations = load.suppliers + 1;
    let mut per_party = vec![0u64; organizations];
    let mut tasks = Vec::new();
    for index in 0..load.subscribers {
        let party = index % organizations;
        per_party[party] += 1;
        let token = if party == 0 {
            retailer.token.clone()
        } else {
            suppliers[party - 1].token.clone()
        };
        let url = load.subscriber_urls[index % load.subscriber_urls.len()].clone();
        tasks.push(tokio::spawn(subscriber(
            url,
            token,
            tally.clone(),
            ready.clone(),
            stopped.clone(),
        )));
        if index % 200 == 199 {
            // Connection storms are not what this measures.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (ready.load(Ordering::SeqCst) as usize) < load.subscribers && Instant::now() < deadline {
        if tasks.iter().all(|task| task.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = ready.load(Ordering::SeqCst) as usize;
    // Let the subscriptions register before the first event.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = rss_kib(&load.hub_pids);

    // Orders at a steady rate, each with the retailer's product and one supplier's (in turn).
    let total = load.events_per_second * load.duration.as_secs().max(1);
    let mut per_supplier = vec![0u64; load.suppliers];
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_secs_f64(
        1.0 / load.events_per_second.max(1) as f64,
    ));
    let mut writes = Vec::new();
    for n in 0..total {
        interval.tick().await;
        let mut lines = vec![json!({ "productId": retailer.product, "quantity": 1 })];
        if load.suppliers > 0 {
            let supplier = (n as usize) % load.suppliers;
            per_supplier[supplier] += 1;
            lines.push(json!({ "productId": suppliers[supplier].product, "quantity": 1 }));
        }
        let hub = load.hub.clone();
        writes.push(tokio::spawn(async move {
            hub.graphql(CREATE_ORDER, json!({ "input": { "lines": lines } }))
                .await
        }));
    }
    for write in writes {
        write.await??;
    }
    // Stragglers: wait until every expected delivery came, or 10 s.
    let expected: u64 = per_party[0] * total
        + (1..organizations)
            .map(|party| per_party[party] * per_supplier[party - 1])
            .sum::<u64>();
    let drain = Instant::now() + Duration::from_secs(10);
    while tally.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    for task in tasks {
        if let Ok(Err(err)) = task.await {
            eprintln!("subscriber: {err:#}");
        }
    }
    let mut histogram = new_histogram();
    for latency in tally
        .latencies
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
    {
        histogram.saturating_record(*latency);
    }
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let deliveries = tally.deliveries.load(Ordering::Relaxed);
    Ok(SubscriptionReport {
        subscribers: load.subscribers,
        connected,
        organizations,
        events_committed: total,
        deliveries,
        expected_deliveries: expected,
        repeated: tally.repeated.load(Ordering::Relaxed),
        seconds: elapsed.as_secs_f64(),
        deliveries_per_second: deliveries as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        max_ms: histogram.max() as f64 / 1000.0,
        hub_rss_mib_before: rss_before / 1024.0,
        hub_rss_mib_connected: rss_connected / 1024.0,
        rss_kib_per_subscriber: (rss_connected - rss_before) / connected.max(1) as f64,
    })
}
