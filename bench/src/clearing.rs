//! The settlement scenarios: `capture-refund` (per operation, capture a payment whole and refund half
//! of it: two requests) over payments authorized beforehand through the payments fixture, and
//! `close-batch` (the time to close a clearing batch of many entries, seeded straight into PostgreSQL,
//! and to fetch its manifest).

use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::{
    client::Hub,
    payments::{PaymentFixture, id_at},
};

const CAPTURE: &str =
    "mutation CapturePayment($input: CapturePaymentInput!) { capturePayment(input: $input) {
    payment { status capturedMinor } entry { batchId } } }";
const REFUND: &str =
    "mutation RefundPayment($input: RefundPaymentInput!) { refundPayment(input: $input) {
    payment { status refundedMinor } } }";
const CLOSE: &str =
    "mutation CloseClearingBatch($id: ID!) { closeClearingBatch(input: { id: $id }) {
    batch { status entryCount manifestSha256 } } }";
const MANIFEST: &str =
    "query ClearingBatch($id: ID!) { clearingBatch(id: $id) { manifest manifestSha256 } }";

/// Authorized payments waiting to be captured, shared by the clients (which take them at their own
/// pace).
pub struct SettleFixture {
    hub: Hub,
    pool: Mutex<Vec<String>>,
}

impl SettleFixture {
    /// Authorizes `per_client` payments of 1.00 for each client, the clients in parallel.
    pub async fn seed(
        payments: Arc<PaymentFixture>,
        hub: &Hub,
        clients: usize,
        per_client: usize,
    ) -> anyhow::Result<Self> {
        let mut seeding = Vec::with_capacity(clients);
        for client in 0..clients {
            let payments = payments.clone();
            seeding.push(tokio::spawn(async move {
                let mut pool = Vec::with_capacity(per_client);
                for n in 0..per_client {
                    pool.push(payments.pay_once(client, 1_000_000 + n as u64).await?);
                }
                anyhow::Ok(pool)
            }));
        }
        let mut pool = Vec::with_capacity(clients * per_client);
        for task in seeding {
            pool.extend(task.await.context("seeding payments")??);
        }
        Ok(Self {
            hub: hub.clone(),
            pool: Mutex::new(pool),
        })
    }

    /// Captures one of the client's payments whole (1.00) and refunds half of it.
    pub async fn capture_and_refund(&self, client: usize, n: u64) -> anyhow::Result<()> {
        let payment = self
            .pool
            .lock()
            .await
            .pop()
            .context("no authorized payment left: raise --settle-payments")?;
        let captured = self
            .hub
            .graphql(CAPTURE, json!({ "input": { "paymentId": payment, "idempotencyKey": format!("bench-capture-{client}-{n}") } }))
            .await?;
        anyhow::ensure!(
            captured["capturePayment"]["payment"]["status"] == "CAPTURED",
            "capture answered {captured}"
        );
        let refunded = self
            .hub
            .graphql(REFUND, json!({ "input": { "paymentId": payment, "amountMinor": "50", "reason": "bench: half returned",
                "idempotencyKey": format!("bench-refund-{client}-{n}") } }))
            .await?;
        anyhow::ensure!(
            refunded["refundPayment"]["payment"]["refundedMinor"] == "50",
            "refund answered {refunded}"
        );
        Ok(())
    }
}

/// What closing a large batch took.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseReport {
    pub entries: u64,
    pub close_ms: f64,
    pub manifest_bytes: usize,
    pub fetch_ms: f64,
}

impl CloseReport {
    pub fn line(&self) -> String {
        format!(
            "close-batch      entries={:<7} close {:>9.1} ms  manifest {:>9} bytes, fetched in {:>8.1} ms",
            self.entries, self.close_ms, self.manifest_bytes, self.fetch_ms
        )
    }
}

/// One payment captured through the API opens a batch; `entries - 1` more captures (each of a payment
/// of its own, copied from that one) and refunds are written into it straight in PostgreSQL (the
/// columns the hub writes, the same batch), then the
/// batch is closed through the API and its manifest fetched and checked against its digest.
pub async fn close_batch(
    payments: Arc<PaymentFixture>,
    hub: &Hub,
    database_url: &str,
    entries: u64,
) -> anyhow::Result<CloseReport> {
    anyhow::ensure!(entries >= 1, "--batch-entries must be at least 1");
    // Earlier scenarios' captures and refunds are in the open batch: close it, so the batch measured
    // holds exactly what is seeded here.
    let open = hub
        .graphql(
            "{ clearingBatches(filter: { status: OPEN }, first: 100) { edges { node { id } } } }",
            json!({}),
        )
        .await?;
    for edge in open["clearingBatches"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
    {
        hub.graphql(CLOSE, json!({ "id": edge["node"]["id"] }))
            .await?;
    }
    let payment = payments.pay_once(0, 2_000_000).await?;
    let captured = hub
        .graphql(CAPTURE, json!({ "input": { "paymentId": payment, "idempotencyKey": format!("bench-close-{payment}") } }))
        .await?;
    let batch = id_at(&captured, "/capturePayment/entry/batchId")?;
    let payment_uuid = payment
        .parse::<api::records::GlobalId>()?
        .id_of(api::records::RecordKind::Payment)
        .context("the payment's ID names a payment")?;
    let batch_uuid = batch
        .parse::<api::records::GlobalId>()?
        .id_of(api::records::RecordKind::ClearingBatch)
        .context("the entry's batch ID names a batch")?;
    // A payment is captured once (a unique index): each seeded capture gets a payment of its own,
    // copied from the real one; a quarter of the entries are refunds of those captures.
    let captures = (entries - 1).div_ceil(4) * 3;
    let captures = captures.min(entries - 1);
    let refunds = entries - 1 - captures;
    let seed = format!(
        "WITH src AS (SELECT * FROM payment WHERE id = '{payment_uuid}'), \
         pays AS ( \
           INSERT INTO payment (id, owner_organization_id, order_id, amount_minor, currency, status, \
             issuer_organization_id, created_at, updated_at, captured_minor, refunded_minor, captured_at) \
           SELECT gen_random_uuid(), owner_organization_id, order_id, 1000, currency, 'CAPTURED', \
             issuer_organization_id, now(), now(), 1000, 0, now() \
           FROM src, generate_series(1, {captures}) \
           RETURNING id, owner_organization_id, issuer_organization_id, currency ), \
         caps AS ( \
           INSERT INTO clearing_entry (id, batch_id, payment_id, kind, amount_minor, currency, \
             merchant_organization_id, provider_organization_id, reason, created_at) \
           SELECT gen_random_uuid(), '{batch_uuid}', id, 'CAPTURE', 1000, currency, \
             owner_organization_id, issuer_organization_id, NULL, now() FROM pays \
           RETURNING payment_id, currency, merchant_organization_id, provider_organization_id ) \
         INSERT INTO clearing_entry (id, batch_id, payment_id, kind, amount_minor, currency, \
           merchant_organization_id, provider_organization_id, reason, created_at) \
         SELECT gen_random_uuid(), '{batch_uuid}', payment_id, 'REFUND', 250, currency, \
           merchant_organization_id, provider_organization_id, 'bench refund', now() \
         FROM (SELECT * FROM caps LIMIT {refunds}) r; ANALYZE payment; ANALYZE clearing_entry;"
    );
    crate::verbs::psql(database_url, &seed).context("seeding the batch's entries")?;
    let started = Instant::now();
    let closed = hub.graphql(CLOSE, json!({ "id": batch })).await?;
    let close_ms = started.elapsed().as_secs_f64() * 1e3;
    let closed = &closed["closeClearingBatch"]["batch"];
    anyhow::ensure!(closed["status"] == "CLOSED", "close answered {closed}");
    anyhow::ensure!(
        closed["entryCount"].as_str() == Some(entries.to_string().as_str()),
        "the manifest lists {} entries, {entries} were written",
        closed["entryCount"]
    );
    let started = Instant::now();
    let fetched = hub.graphql(MANIFEST, json!({ "id": batch })).await?;
    let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
    let manifest = fetched["clearingBatch"]["manifest"]
        .as_str()
        .context("no manifest")?;
    let digest: String = Sha256::digest(manifest.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    anyhow::ensure!(
        fetched["clearingBatch"]["manifestSha256"] == digest,
        "the manifest does not match its digest"
    );
    Ok(CloseReport {
        entries,
        close_ms,
        manifest_bytes: manifest.len(),
        fetch_ms,
    })
}
