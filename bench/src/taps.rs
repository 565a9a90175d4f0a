//! The taps scenario: the real tablet. A `virtual-card` process on pcscd's virtual reader, a
//! `reader-agent run` process following its terminal, and one payment request after another, each paid by
//! a tap. Tap-to-authorized latency is measured from the moment the card is put on the reader to the
//! agent's log line with the hub's final answer, and split into where the time went:
//!
//! - detection: until the agent sees the card (pcscd polls vpcd about every 0.45 s; a real reader
//!   reports at once, so this share is the virtual reader's);
//! - check: the hub confirming the request is still open, before the card is asked;
//! - card: SELECT and GENERATE PAYMENT over PC/SC;
//! - outbox: sealing the tap (fsync);
//! - handoff: from the sealed tap to the submission starting;
//! - network: the submission's round trip minus the hub's own time;
//! - hub: the hub's own time for `payWithOneTimeNumber` (its `Server-Timing`).
//!
//! Needs pcscd with vpcd running, and no other card on the virtual reader.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use card_protocol::card::CardFile;

use crate::{
    client::Hub,
    payments::{BenchBank, BenchShop, id_at},
    report::new_histogram,
};

const REQUEST: &str = "mutation($input: RequestPaymentInput!) { requestPayment(input: $input) { paymentRequest { id } } }";

pub struct TapLoad<'a> {
    pub hub: &'a Hub,
    pub url: &'a str,
    pub taps: usize,
    pub bank_token_file: Option<&'a Path>,
    pub hub_bin: &'a Path,
    pub agent_bin: &'a Path,
    pub card_bin: &'a Path,
    pub vpcd: &'a str,
    pub reader: &'a str,
}

/// Percentiles of one share of the latency, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Share {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TapReport {
    pub taps: usize,
    pub authorized: usize,
    pub shares: Vec<Share>,
}

impl TapReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "taps             {} taps, {} authorized; tap-to-authorized and its shares (ms):\n",
            self.taps, self.authorized
        );
        for share in &self.shares {
            out.push_str(&format!(
                "  {:<18} p50 {:>8.2}  p99 {:>8.2}  max {:>8.2}\n",
                share.name, share.p50_ms, share.p99_ms, share.max_ms
            ));
        }
        out
    }
}

const NUMBERS_PER_CARD: usize = 64;

/// Kills the processes and removes the directory, whatever happened.
struct Tablet {
    dir: PathBuf,
    children: Vec<Child>,
    card: Option<Child>,
}

impl Tablet {
    /// Replaces the virtual card process with one holding `card` (off the reader).
    fn swap_card(
        &mut self,
        load: &TapLoad<'_>,
        card: &CardFile,
        control: &Path,
    ) -> anyhow::Result<()> {
        if let Some(mut old) = self.card.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let _ = std::fs::remove_file(control);
        let card_path = self.dir.join("card.json");
        card.save(&card_path)?;
        self.card = Some(
            Command::new(load.card_bin)
                .arg("--control")
                .arg(control)
                .args(["run", "--vpcd", load.vpcd, "--card"])
                .arg(&card_path)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.join("card.log"))?)
                .spawn()
                .with_context(|| format!("running {}", load.card_bin.display()))?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !control.exists() {
            if Instant::now() > deadline {
                bail!("the virtual card did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Tablet {
    fn drop(&mut self) {
        for child in self.children.iter_mut().chain(self.card.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn run(load: TapLoad<'_>) -> anyhow::Result<TapReport> {
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut bank = BenchBank::seed(load.hub, &run, load.bank_token_file, load.hub_bin).await?;
    // A card holds at most 64 numbers: one card per 64 taps, put on the reader in turn.
    let mut cards = Vec::new();
    for _ in 0..load.taps.div_ceil(NUMBERS_PER_CARD) {
        cards.push(bank.card(NUMBERS_PER_CARD).await?);
    }
    let shop = BenchShop::seed(load.hub, &run).await?;
    let order = shop.placed_order(load.hub).await?;

    let dir = std::env::temp_dir().join(format!("hub-bench-taps-{run}"));
    std::fs::create_dir_all(&dir)?;
    let mut tablet = Tablet {
        dir: dir.clone(),
        children: Vec::new(),
        card: None,
    };
    let init = Command::new(load.agent_bin)
        .arg("--state-dir")
        .arg(&dir)
        .arg("init")
        .output()
        .with_context(|| format!("running {}", load.agent_bin.display()))?;
    if !init.status.success() {
        bail!(
            "reader-agent init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let public_key = String::from_utf8(init.stdout)?.trim().to_owned();
    let device = load
        .hub
        .graphql(
            "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
            json!({ "input": { "name": format!("bench-tablet-{run}"), "locationId": shop.location, "publicKey": public_key } }),
        )
        .await?;
    let device = id_at(&device, "/registerDevice/device/id")?;

    let control = dir.join("card.sock");
    let log_path = dir.join("agent.log");
    tablet.children.push(
        Command::new(load.agent_bin)
            .arg("--state-dir")
            .arg(&dir)
            .args(["--log-format", "json", "run"])
            .env("READER_AGENT_HUB", load.url)
            .env("READER_AGENT_DEVICE", &device)
            .env("READER_AGENT_READER", load.reader)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .with_context(|| format!("running {}", load.agent_bin.display()))?,
    );
    let mut log = AgentLog::new(log_path);
    log.wait_for(|line| message(line) == "following the terminal's payment requests")
        .await?;

    let names = [
        "tap-to-authorized",
        "detection",
        "check",
        "card",
        "outbox",
        "handoff",
        "network",
        "hub",
    ];
    let mut histograms: Vec<_> = names.iter().map(|_| new_histogram()).collect();
    let mut authorized = 0;
    for tap in 0..load.taps {
        if tap % NUMBERS_PER_CARD == 0 {
            tablet.swap_card(&load, &cards[tap / NUMBERS_PER_CARD], &control)?;
        }
        let request = load
            .hub
            .graphql(REQUEST, json!({ "input": { "orderId": order, "terminalId": device, "amountMinor": 100, "currency": "EUR" } }))
            .await?;
        let request = id_at(&request, "/requestPayment/paymentRequest/id")?;
        let is_this = |line: &Value, text: &str| {
            message(line) == text && line.pointer("/fields/request") == Some(&json!(request))
        };
        log.wait_for(|line| is_this(line, "payment request open: waiting for a tap"))
            .await?;
        wait_off_reader(&control).await?;
        let tapped_at = Utc::now();
        card_command(&control, "tap 10000")?;
        let sealed = log
            .wait_for(|line| is_this(line, "tap sealed in the outbox; submitting"))
            .await?;
        let answer = log.wait_for(|line| is_this(line, "final answer")).await?;
        if answer.pointer("/fields/status") == Some(&json!("AUTHORIZED")) {
            authorized += 1;
        }
        let number = |line: &Value, field: &str| {
            line.pointer(&format!("/fields/{field}"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        let (check, card, outbox) = (
            number(&sealed, "check_ms"),
            number(&sealed, "card_ms"),
            number(&sealed, "outbox_ms"),
        );
        let (submit, hub) = (number(&answer, "submit_ms"), number(&answer, "hub_ms"));
        let sealed_ms = millis_between(tapped_at, timestamp(&sealed)?);
        let answered_ms = millis_between(tapped_at, timestamp(&answer)?);
        let shares = [
            answered_ms,
            sealed_ms - check - card - outbox,
            check,
            card,
            outbox,
            answered_ms - submit - sealed_ms,
            submit - hub,
            hub,
        ];
        for (histogram, value) in histograms.iter_mut().zip(shares) {
            histogram.record((value.max(0.0) * 1000.0) as u64)?;
        }
    }
    let shares = names
        .iter()
        .zip(&histograms)
        .map(|(name, histogram)| Share {
            name,
            p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: histogram.max() as f64 / 1000.0,
        })
        .collect();
    drop(tablet);
    Ok(TapReport {
        taps: load.taps,
        authorized,
        shares,
    })
}

fn message(line: &Value) -> &str {
    line.pointer("/fields/message")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn timestamp(line: &Value) -> anyhow::Result<DateTime<Utc>> {
    let text = line
        .get("timestamp")
        .and_then(Value::as_str)
        .context("a log line without a timestamp")?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// The agent's JSON log, read as it grows.
struct AgentLog {
    path: PathBuf,
    offset: usize,
}

impl AgentLog {
    fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// The next line (after those already read) for which `wanted` holds; at most 60 s.
    async fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            // Only whole lines: the agent may be half way through writing the last one.
            while let Some(end) = text[self.offset..].find('\n') {
                let line = &text[self.offset..self.offset + end];
                self.offset += end + 1;
                if let Ok(line) = serde_json::from_str::<Value>(line) {
                    if line.get("level") == Some(&json!("ERROR")) {
                        bail!("the agent logged an error: {line}");
                    }
                    if wanted(&line) {
                        return Ok(line);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent did not log what was expected within 60 s (see {})",
                    self.path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// One command to the virtual card's control socket (the card's own client).
fn card_command(control: &Path, line: &str) -> anyhow::Result<String> {
    reader_agent::virtual_card::command(control, line)
}

/// Waits until the card is off the reader and pcscd has had time to see it (the agent arms for the
/// next request only once the last card has left).
async fn wait_off_reader(control: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = card_command(control, "status").unwrap_or_default();
        if serde_json::from_str::<Value>(&status)
            .ok()
            .and_then(|s| s.get("onReader").cloned())
            == Some(json!(false))
        {
            tokio::time::sleep(Duration::from_millis(700)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the virtual card did not leave the reader");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
