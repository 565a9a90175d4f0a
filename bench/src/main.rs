//! `hub-bench`: drives a running hub over HTTP with N concurrent clients and reports, per scenario,
//! throughput and latency percentiles. It seeds its own data through the public API, so it measures what a
//! partner system would see.
//!
//! ```sh
//! hub-bench --url http://127.0.0.1:8080 --token-file data/admin.token --clients 8 --duration 20s
//! ```

mod client;
mod report;
mod scenarios;

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
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The simplest authenticated query: `{ me { role } }`.
    Me,
    /// Read a page of 50 products with their suppliers.
    ProductsPage,
    /// Create an order with 3 lines (with an idempotency key) and place it: two requests per operation.
    PlaceOrder,
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
    let mut reports: Vec<Report> = Vec::new();
    for scenario in &args.scenario {
        let report = scenarios::run(*scenario, &hub, args.clients, args.warmup, budget).await?;
        if !args.json {
            eprintln!("{}", report.line());
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}
