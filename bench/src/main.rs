//! `hub-bench`: drives a running hub over HTTP with N concurrent clients and reports, per scenario,
//! throughput and latency percentiles. It seeds its own data through the public API, so it measures what a
//! partner system would see.
//!
//! ```sh
//! hub-bench --url http://127.0.0.1:8080 --token-file data/admin.token --clients 8 --duration 20s
//! ```

mod clearing;
mod client;
mod payments;
mod probe;
mod report;
mod scenarios;
mod subscriptions;
mod taps;
mod verbs;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use crate::{client::Hub, report::Report};

#[derive(Debug, Parser)]
#[command(
    name = "hub-bench",
    version,
    about = "Load generator for the IoT Commerce Hub"
)]
struct Args {
    /// Base URL of the hub.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// File holding a token of the retailer's ADMIN (the embedded default writes `data/admin.token`).
    #[arg(long, default_value = "data/admin.token")]
    token_file: PathBuf,
    /// Scenarios to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Scenario::ProductsPage])]
    scenario: Vec<Scenario>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long each scenario runs (ignored when --requests is given).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop each scenario after this many requests instead of after --duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Requests per client before measuring starts (connection set-up, caches).
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// The hub's `/metrics` bearer token (its HUB_METRICS_TOKEN): each scenario then reports the
    /// database statements the hub sent per operation.
    #[arg(long, env = "HUB_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// The hub's process id, on this machine: each scenario then reports the hub's CPU time per
    /// operation.
    #[arg(long)]
    hub_pid: Option<u32>,
    /// Each scenario also reports the CPU time per operation of every `postgres` process on this
    /// machine (a local database only).
    #[arg(long)]
    database_cpu: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// payments: virtual cards per client (64 numbers each).
    #[arg(long, default_value_t = 8)]
    cards_per_client: usize,
    /// payments: a token of the bench bank's ADMIN; default: mint one with `hub token create` (the hub's
    /// DATABASE_URL and HUB_SIGNING_KEY_FILE must be in the environment).
    #[arg(long)]
    bank_token_file: Option<PathBuf>,
    /// payments: the `hub` binary used to mint the bank's token.
    #[arg(long, default_value = "target/release/hub")]
    hub_bin: PathBuf,
    /// payments: also measure the database's ceiling (pgbench, one-row insert transactions, same
    /// client count and duration) and print the ratio.
    #[arg(long)]
    pgbench_url: Option<String>,
    /// subscriptions: concurrent WebSocket subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// subscriptions: supplier organizations (subscribers are spread over the retailer and these; each
    /// order carries one supplier's product, so a supplier sees only its share of the events).
    #[arg(long, default_value_t = 4)]
    suppliers: usize,
    /// subscriptions: orders (events) committed per second.
    #[arg(long, default_value_t = 100)]
    event_rate: u64,
    /// subscriptions: the replicas subscribers connect to, round robin (default: --url).
    #[arg(long, value_delimiter = ',')]
    subscriber_urls: Vec<String>,
    /// subscriptions: process ids of the hubs, for their memory (VmRSS) per subscriber.
    #[arg(long, value_delimiter = ',')]
    hub_pids: Vec<u32>,
    /// sales-year: PostgreSQL URL of the hub's database, where a year of orders is seeded directly.
    #[arg(long)]
    seed_database_url: Option<String>,
    /// sales-year: order lines to seed.
    #[arg(long, default_value_t = 100_000)]
    seed_lines: u64,
    /// capture-refund: payments authorized (through the payments fixture) before measuring, spread
    /// over the clients; each operation settles one.
    #[arg(long, default_value_t = 4_000)]
    settle_payments: usize,
    /// close-batch: entries of the batch closed (seeded through `--seed-database-url`).
    #[arg(long, default_value_t = 100_000)]
    batch_entries: u64,
    /// taps: how many taps (one payment request each).
    #[arg(long, default_value_t = 100)]
    taps: usize,
    /// taps: the `reader-agent` binary.
    #[arg(long, default_value = "target/release/reader-agent")]
    agent_bin: PathBuf,
    /// taps: the `virtual-card` binary.
    #[arg(long, default_value = "target/release/virtual-card")]
    card_bin: PathBuf,
    /// taps: vpcd's address for the virtual card (35963: the first virtual reader).
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: String,
    /// taps: the reader the agent uses (the one vpcd's address above serves).
    #[arg(long, default_value = "Virtual PCD 00 00")]
    reader: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The simplest authenticated query: `{ me { role } }`.
    Me,
    /// Read a page of 50 products with their suppliers.
    ProductsPage,
    /// Read a page of 50 customers with every encrypted field (name, email, phone, address): each is
    /// decrypted for the owner, 200 decryptions per page. Compare with `products-page`.
    CustomersPage,
    /// Create an order with 3 lines (with an idempotency key) and place it: two requests per operation.
    PlaceOrder,
    /// Request a payment at a terminal and pay it with a virtual card's one-time number (full
    /// verification): two requests per operation, one payment.
    Payments,
    /// Live subscribers over WebSocket while orders are committed at a steady rate: commit-to-client
    /// latency, deliveries per second, memory per subscriber (`--subscribers`, `--event-rate`).
    Subscriptions,
    /// Append travel records to deliveries in transit, one carrier per client (`--hub-bin` mints the
    /// carriers' tokens).
    TravelRecords,
    /// The retailer's sales by day, product and supplier over a year of orders seeded straight into
    /// PostgreSQL (`--seed-database-url`, `--seed-lines`).
    SalesYear,
    /// Capture a payment whole and refund half of it: two requests per operation, over payments
    /// authorized beforehand (`--settle-payments`).
    CaptureRefund,
    /// Close a clearing batch of `--batch-entries` entries (seeded through `--seed-database-url`) and
    /// fetch its manifest: one timing, not a loop.
    CloseBatch,
    /// The real tablet: a reader agent and a virtual card behind pcscd, one tap per payment request;
    /// tap-to-authorized latency split into detection, card, outbox, handoff, network and hub (`--taps`).
    Taps,
}

/// When a scenario stops.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Duration(Duration),
    Requests(u64),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read {}", args.token_file.display()))?
        .trim()
        .to_owned();
    let hub = Hub::new(&args.url, &token)?;
    let budget = match args.requests {
        Some(n) => Budget::Requests(n),
        None => Budget::Duration(args.duration),
    };
    let probe = probe::Probe::new(
        &args.url,
        args.metrics_token.clone(),
        args.hub_pid,
        args.database_cpu,
    )?;
    let load = scenarios::Load {
        clients: args.clients,
        warmup: args.warmup,
        budget,
        probe: &probe,
    };
    let mut reports: Vec<Report> = Vec::new();
    let mut ceiling = None;
    // Seeded once, for the scenarios that pay or settle.
    let mut payment_fixture: Option<std::sync::Arc<payments::PaymentFixture>> = None;
    for scenario in &args.scenario {
        if matches!(*scenario, Scenario::CaptureRefund | Scenario::CloseBatch)
            && payment_fixture.is_none()
        {
            payment_fixture = Some(std::sync::Arc::new(
                payments::PaymentFixture::seed(
                    &hub,
                    args.clients,
                    args.cards_per_client,
                    args.bank_token_file.as_deref(),
                    &args.hub_bin,
                )
                .await?,
            ));
        }
        if *scenario == Scenario::CloseBatch {
            let url = args
                .seed_database_url
                .as_deref()
                .context("close-batch needs --seed-database-url")?;
            let fixture = payment_fixture.clone().context("the payments fixture")?;
            let report = clearing::close_batch(fixture, &hub, url, args.batch_entries).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprintln!("{}", report.line());
            }
            continue;
        }
        if *scenario == Scenario::Taps {
            let report = taps::run(taps::TapLoad {
                hub: &hub,
                url: &args.url,
                taps: args.taps,
                bank_token_file: args.bank_token_file.as_deref(),
                hub_bin: &args.hub_bin,
                agent_bin: &args.agent_bin,
                card_bin: &args.card_bin,
                vpcd: &args.vpcd,
                reader: &args.reader,
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprint!("{}", report.table());
            }
            continue;
        }
        if *scenario == Scenario::Subscriptions {
            let report = subscriptions::run(subscriptions::SubscriptionLoad {
                hub: &hub,
                subscriber_urls: if args.subscriber_urls.is_empty() {
                    vec![args.url.clone()]
                } else {
                    args.subscriber_urls.clone()
                },
                retailer_token: token.clone(),
                subscribers: args.subscribers,
                suppliers: args.suppliers,
                events_per_second: args.event_rate,
                duration: args.duration,
                hub_bin: &args.hub_bin,
                hub_pids: args.hub_pids.clone(),
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprintln!("{}", report.line());
            }
            continue;
        }
        let report = if *scenario == Scenario::TravelRecords {
            let fixture = std::sync::Arc::new(
                verbs::TravelFixture::seed(&hub, args.clients, &args.hub_bin).await?,
            );
            scenarios::drive("travel-records", load, move |client, n| {
                fixture.clone().record(client, n)
            })
            .await?
        } else if *scenario == Scenario::SalesYear {
            let url = args
                .seed_database_url
                .as_deref()
                .context("sales-year needs --seed-database-url")?;
            verbs::seed_sales_year(&hub, url, args.seed_lines).await?;
            let now = chrono::Utc::now();
            let (from, to) = (
                now - chrono::TimeDelta::days(365),
                now + chrono::TimeDelta::minutes(1),
            );
            let period = serde_json::json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339() });
            let units = verbs::units_sold(url, from, to)?;
            let hub = hub.clone();
            scenarios::drive("sales-year", load, move |_, _| {
                let (hub, period) = (hub.clone(), period.clone());
                async move {
                    let data = hub.graphql(verbs::SALES_YEAR, period).await?;
                    let rows = data["analytics"]["sales"]
                        .as_array()
                        .context("the answer has no sales")?;
                    // A year of ten products: one row per product and day with sales.
                    anyhow::ensure!(
                        rows.len() > 1_000,
                        "the figure has only {} rows",
                        rows.len()
                    );
                    let counted: i64 = rows
                        .iter()
                        .filter_map(|row| row["quantity"].as_str()?.parse::<i64>().ok())
                        .sum();
                    anyhow::ensure!(
                        counted == units,
                        "the figure counts {counted} units, the order lines {units}"
                    );
                    Ok(())
                }
            })
            .await?
        } else if *scenario == Scenario::CaptureRefund {
            let payments = payment_fixture.clone().context("the payments fixture")?;
            let clients = args.clients.max(1);
            let per_client = args.settle_payments.div_ceil(clients);
            let fixture = std::sync::Arc::new(
                clearing::SettleFixture::seed(payments, &hub, clients, per_client).await?,
            );
            scenarios::drive("capture-refund", load, move |client, n| {
                let fixture = fixture.clone();
                async move { fixture.capture_and_refund(client, n).await }
            })
            .await?
        } else if *scenario == Scenario::Payments {
            let fixture = std::sync::Arc::new(
                payments::PaymentFixture::seed(
                    &hub,
                    args.clients,
                    args.cards_per_client,
                    args.bank_token_file.as_deref(),
                    &args.hub_bin,
                )
                .await?,
            );
            scenarios::drive("payments", load, move |client, n| {
                let fixture = fixture.clone();
                async move { fixture.pay_once(client, n).await.map(drop) }
            })
            .await?
        } else {
            scenarios::run(*scenario, &hub, load).await?
        };
        if !args.json {
            eprintln!("{}", report.line());
        }
        if *scenario == Scenario::Payments
            && let Some(url) = &args.pgbench_url
        {
            let seconds = match budget {
                Budget::Duration(duration) => duration.as_secs().max(1),
                Budget::Requests(_) => report.seconds.ceil() as u64,
            };
            let tps = payments::pgbench_ceiling(url, args.clients, seconds)?;
            let ratio = report.throughput_per_second / tps;
            if !args.json {
                eprintln!(
                    "pgbench ceiling  clients={:<3} one-row insert: {tps:.1} tps; payments/ceiling = {ratio:.3}",
                    args.clients
                );
            }
            ceiling = Some(
                serde_json::json!({ "clients": args.clients, "seconds": seconds, "tps": tps, "paymentsToCeilingRatio": ratio }),
            );
        }
        reports.push(report);
    }
    // The cost of decrypting: a page of customers (every field sealed) against a page of products.
    let throughput = |name: &str| {
        reports
            .iter()
            .find(|report| report.scenario == name)
            .map(|report| report.throughput_per_second)
    };
    let decryption_ratio = throughput("customers-page")
        .zip(throughput("products-page"))
        .map(|(customers, products)| customers / products);
    if let Some(ratio) = decryption_ratio
        && !args.json
    {
        eprintln!("customers-page/products-page throughput = {ratio:.3}");
    }
    if args.json {
        let output = serde_json::json!({ "scenarios": reports, "pgbenchCeiling": ceiling,
            "customersToProductsRatio": decryption_ratio });
        println!("{}", serde_json::to_string_pretty(&output)?);
    }
    Ok(())
}
