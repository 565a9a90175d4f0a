//! Latency recording and the per-scenario report.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::probe::Costs;

/// Latencies in microseconds, 1 µs to 60 s, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts; it only refuses low < 1 or high < 2 * low.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub clients: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub throughput_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// What the hub spent per operation, where the probe could read it.
    #[serde(flatten)]
    pub costs: Costs,
}

impl Report {
    pub fn new(
        scenario: &str,
        clients: usize,
        histogram: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
    ) -> Self {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        let requests = histogram.len();
        Self {
            scenario: scenario.to_owned(),
            clients,
            requests,
            errors,
            seconds: elapsed.as_secs_f64(),
            throughput_per_second: requests as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: histogram.max() as f64 / 1000.0,
            costs: Costs::default(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:<16} clients={:<3} requests={:<7} errors={:<4} {:>9.1} req/s  p50={:>7.2}ms p90={:>7.2}ms p99={:>7.2}ms max={:>7.2}ms",
            self.scenario,
            self.clients,
            self.requests,
            self.errors,
            self.throughput_per_second,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        ) + &self.costs_line()
    }

    /// `  statements/op=.. (all pools ..) hub CPU/op=..ms`, for what was measured.
    fn costs_line(&self) -> String {
        let mut line = String::new();
        if let Some(statements) = self.costs.statements_per_op {
            line += &format!("  statements/op={statements:.2}");
        }
        if let Some(all) = self.costs.all_pools_statements_per_op {
            line += &format!(" (all pools {all:.2})");
        }
        if let Some(cpu) = self.costs.hub_cpu_ms_per_op {
            line += &format!("  hub CPU/op={cpu:.3}ms");
        }
        if let Some(cpu) = self.costs.database_cpu_ms_per_op {
            line += &format!("  PostgreSQL CPU/op={cpu:.3}ms");
        }
        line
    }
}
