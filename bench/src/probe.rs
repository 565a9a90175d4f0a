//! What the hub spent on a scenario: its database statements (its own `hub_db_statements_total`,
//! scraped from `/metrics`) and its CPU time (user + system, from `/proc/<pid>/stat`), sampled when
//! the measured calls start and when they end, and divided by the calls made.

use anyhow::Context as _;

/// Where the hub's costs are read; each part is optional.
#[derive(Clone, Default)]
pub struct Probe {
    http: reqwest::Client,
    /// `{hub}/metrics`, with the bearer token the hub wants there.
    metrics: Option<(String, String)>,
    hub_pid: Option<u32>,
    /// Also sum the CPU time of every `postgres` process on this machine (the database's share).
    database_cpu: bool,
}

/// Counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Statements of the request pool (or of every pool, for a hub that does not label them).
    request_statements: Option<f64>,
    /// Statements of every pool (the background pool stamps events, refreshes keys, ...).
    all_statements: Option<f64>,
    cpu_seconds: Option<f64>,
    database_cpu_seconds: Option<f64>,
}

/// What one operation cost, on average over the measured calls.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Costs {
    pub statements_per_op: Option<f64>,
    pub all_pools_statements_per_op: Option<f64>,
    pub hub_cpu_ms_per_op: Option<f64>,
    pub database_cpu_ms_per_op: Option<f64>,
}

impl Probe {
    pub fn new(
        base_url: &str,
        metrics_token: Option<String>,
        hub_pid: Option<u32>,
        database_cpu: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            metrics: metrics_token
                .map(|token| (format!("{}/metrics", base_url.trim_end_matches('/')), token)),
            hub_pid,
            database_cpu,
        })
    }

    /// The counters now; a part that cannot be read is left out (and said once on stderr).
    pub async fn sample(&self) -> Sample {
        let mut sample = Sample::default();
        if let Some((url, token)) = &self.metrics {
            match self.statements(url, token).await {
                Ok((requests, all)) => {
                    sample.request_statements = Some(requests);
                    sample.all_statements = Some(all);
                }
                Err(err) => eprintln!("probe: cannot read the hub's statements: {err:#}"),
            }
        }
        if let Some(pid) = self.hub_pid {
            match cpu_seconds(pid) {
                Ok(seconds) => sample.cpu_seconds = Some(seconds),
                Err(err) => eprintln!("probe: cannot read the hub's CPU time: {err:#}"),
            }
        }
        if self.database_cpu {
            match postgres_cpu_seconds() {
                Ok(seconds) => sample.database_cpu_seconds = Some(seconds),
                Err(err) => eprintln!("probe: cannot read PostgreSQL's CPU time: {err:#}"),
            }
        }
        sample
    }

    async fn statements(&self, url: &str, token: &str) -> anyhow::Result<(f64, f64)> {
        let text = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut labelled = None;
        let mut all = 0.0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("hub_db_statements_total") else {
                continue;
            };
            let value: f64 = rest
                .rsplit(' ')
                .next()
                .and_then(|value| value.parse().ok())
                .with_context(|| format!("unreadable metric line {line:?}"))?;
            all += value;
            if rest.contains("pool=\"requests\"") {
                *labelled.get_or_insert(0.0) += value;
            }
        }
        Ok((labelled.unwrap_or(all), all))
    }
}

impl Sample {
    /// The cost per operation between `self` (at the start) and `end`, over `operations`.
    pub fn costs_until(&self, end: &Sample, operations: u64) -> Costs {
        let per_op = |start: Option<f64>, end: Option<f64>, scale: f64| {
            start
                .zip(end)
                .filter(|_| operations > 0)
                .map(|(start, end)| (end - start) * scale / operations as f64)
        };
        Costs {
            statements_per_op: per_op(self.request_statements, end.request_statements, 1.0),
            all_pools_statements_per_op: per_op(self.all_statements, end.all_statements, 1.0),
            hub_cpu_ms_per_op: per_op(self.cpu_seconds, end.cpu_seconds, 1000.0),
            database_cpu_ms_per_op: per_op(
                self.database_cpu_seconds,
                end.database_cpu_seconds,
                1000.0,
            ),
        }
    }
}

/// User plus system time of every process named `postgres` (the server and its backends), in
/// seconds. A backend that exits between two samples takes its time with it: the pools keep theirs
/// open, so over a scenario the sum is the database's work.
fn postgres_cpu_seconds() -> anyhow::Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if stat.contains("(postgres)") {
            total += stat_cpu_seconds(&stat)?;
        }
    }
    Ok(total)
}

/// User plus system time of process `pid` (every thread), in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User plus system time from the text of a `/proc/<pid>/stat`.
fn stat_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are the 12th and 13th after the name.
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc stat")?
            .parse::<f64>()?)
    };
    // In USER_HZ: 100 per second on x86 and ARM Linux (sysconf(_SC_CLK_TCK)).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
