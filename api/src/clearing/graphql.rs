//! GraphQL types and resolvers for capture, void, refund and clearing batches: thin over
//! [`SettlementService`] and [`ClearingService`].

use std::{collections::HashMap, sync::Arc};

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, dataloader::Loader};
use chrono::{DateTime, Utc};
use entities::{clearing_batch, clearing_entry};
use uuid::Uuid;

use super::{BatchFilter, ClearingService, Recomputed};
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    financial::graphql::Payment,
    graphql::{
        ContextExt,
        relay::{HubConnection, IntoConnection, PageArgs, decode_id, encode_id, wants_total},
        scalars::Int64,
    },
    identity::graphql::Organization,
    payments::settlement::{Capture, Refund, Settled, SettlementService},
    records::RecordKind,
};

fn clearing<'a>(ctx: &Context<'a>) -> &'a ClearingService {
    ctx.data_unchecked::<ClearingService>()
}

fn settlement<'a>(ctx: &Context<'a>) -> &'a SettlementService {
    ctx.data_unchecked::<SettlementService>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::clearing_batch::BatchStatus")]
pub enum ClearingBatchStatus {
    /// Captures and refunds join it.
    Open,
    /// Its manifest is frozen; the provider confirms it.
    Closed,
    /// The provider signed its manifest; it never changes again.
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::clearing_entry::EntryKind")]
pub enum ClearingEntryKind {
    Capture,
    Refund,
}

/// One capture or one refund of a payment, in the clearing batch open when it happened. Seen by the
/// merchant and the card's issuer.
pub struct ClearingEntry(pub clearing_entry::Model);

#[Object]
impl ClearingEntry {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::ClearingEntry, self.0.id)
    }
    async fn kind(&self) -> ClearingEntryKind {
        self.0.kind.into()
    }
    async fn amount_minor(&self) -> Int64 {
        Int64(self.0.amount_minor)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Why the money went back (refunds).
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    async fn payment_id(&self) -> ID {
        encode_id(RecordKind::Payment, self.0.payment_id)
    }
    async fn batch_id(&self) -> ID {
        encode_id(RecordKind::ClearingBatch, self.0.batch_id)
    }
    /// The entry's id as the manifest lists it.
    async fn manifest_id(&self) -> String {
        self.0.id.hyphenated().to_string()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A batch's totals recomputed from its entries now, against what its manifest froze.
#[derive(SimpleObject)]
pub struct Reconciliation {
    entry_count: Int64,
    captured_minor: Int64,
    refunded_minor: Int64,
    net_minor: Int64,
    /// Recomputed net minus the manifest's net (0 while the batch is open, and whenever it balances).
    difference_minor: Int64,
    /// Entries and totals equal the manifest's.
    balanced: bool,
}

/// The captures and refunds between one merchant and one financial provider in one currency, cleared
/// together. Seen by both.
pub struct ClearingBatch(pub clearing_batch::Model);

impl ClearingBatch {
    async fn recomputed(&self, ctx: &Context<'_>) -> ApiResult<Recomputed> {
        ctx.scope()
            .batch_totals()
            .load_one(self.0.id)
            .await
            .map(Option::unwrap_or_default)
            .map_err(|err| {
                ApiError::Internal(anyhow::anyhow!("loading batch totals failed: {err}"))
            })
    }
}

#[Object]
impl ClearingBatch {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::ClearingBatch, self.0.id)
    }
    /// The batch's id as its manifest states it.
    async fn manifest_id(&self) -> String {
        self.0.id.hyphenated().to_string()
    }
    async fn status(&self) -> ClearingBatchStatus {
        self.0.status.into()
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn merchant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.merchant_organization_id)
            .await?
            .map(Organization))
    }
    async fn provider(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.provider_organization_id)
            .await?
            .map(Organization))
    }
    async fn opened_at(&self) -> DateTime<Utc> {
        self.0.opened_at
    }
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at
    }
    /// Entries, captured and refunded sums as the manifest froze them (null while open).
    async fn entry_count(&self) -> Option<Int64> {
        self.0.entry_count.map(Int64)
    }
    async fn captured_minor(&self) -> Option<Int64> {
        self.0.captured_minor.map(Int64)
    }
    async fn refunded_minor(&self) -> Option<Int64> {
        self.0.refunded_minor.map(Int64)
    }
    async fn net_minor(&self) -> Option<Int64> {
        Some(Int64(self.0.captured_minor? - self.0.refunded_minor?))
    }
    /// SHA-256 of the manifest's bytes, lowercase hex (null while open).
    async fn manifest_sha256(&self) -> Option<&str> {
        self.0.manifest_sha256.as_deref()
    }
    /// The canonical manifest, exactly the bytes the provider signs (layout in the repository's
    /// `docs/clearing.md`); null while open. Served for one batch at a time: on `clearingBatch(id:)`.
    async fn manifest(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let top_level = ctx
            .path_node
            .and_then(|node| node.parent)
            .is_some_and(|parent| {
                parent.parent.is_none() && parent.field_name() == "clearingBatch"
            });
        if !top_level {
            return Err(ApiError::BadRequest(
                "a manifest is served by clearingBatch(id:) only, one batch at a time".into(),
            )
            .into());
        }
        Ok(clearing(ctx).manifest(ctx.principal()?, self.0.id).await?)
    }
    async fn confirmed_at(&self) -> Option<DateTime<Utc>> {
        self.0.confirmed_at
    }
    /// The provider's issuer key that signed the manifest.
    async fn confirmation_key_id(&self) -> Option<Int64> {
        self.0.confirmation_key_id.map(Int64)
    }
    /// The totals recomputed from the entries now, and how they compare with the manifest.
    async fn reconciliation(&self, ctx: &Context<'_>) -> async_graphql::Result<Reconciliation> {
        let now = self.recomputed(ctx).await?;
        let net = now.captured_minor - now.refunded_minor;
        let frozen = match (
            self.0.entry_count,
            self.0.captured_minor,
            self.0.refunded_minor,
        ) {
            (Some(count), Some(captured), Some(refunded)) => Some((count, captured, refunded)),
            _ => None,
        };
        let (difference, balanced) = match frozen {
            None => (0, true),
            Some((count, captured, refunded)) => (
                net - (captured - refunded),
                (count, captured, refunded)
                    == (now.entry_count, now.captured_minor, now.refunded_minor),
            ),
        };
        Ok(Reconciliation {
            entry_count: Int64(now.entry_count),
            captured_minor: Int64(now.captured_minor),
            refunded_minor: Int64(now.refunded_minor),
            net_minor: Int64(net),
            difference_minor: Int64(difference),
            balanced,
        })
    }
    /// The batch's captures and refunds, oldest first.
    async fn entries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<HubConnection<ClearingEntry>> {
        let page = clearing(ctx)
            .entries(
                ctx.principal()?,
                self.0.id,
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(ClearingEntry))
    }
}

// ---- loaders ----

/// Each payment's captures and refunds, visible to the caller.
pub struct PaymentEntriesLoader {
    pub service: ClearingService,
    pub principal: Principal,
}

impl Loader<Uuid> for PaymentEntriesLoader {
    type Value = Vec<clearing_entry::Model>;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.service
            .entries_of_payments(&self.principal, keys)
            .await
            .map_err(Arc::new)
    }
}

/// Each batch's totals recomputed from its entries.
pub struct BatchTotalsLoader {
    pub service: ClearingService,
    pub principal: Principal,
}

impl Loader<Uuid> for BatchTotalsLoader {
    type Value = Recomputed;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.service
            .recompute(&self.principal, keys)
            .await
            .map_err(Arc::new)
    }
}

/// The captures and refunds of a payment, for `Payment.clearingEntries`.
pub async fn entries_of_payment(
    ctx: &Context<'_>,
    payment_id: Uuid,
) -> ApiResult<Vec<ClearingEntry>> {
    Ok(ctx
        .scope()
        .payment_entries()
        .load_one(payment_id)
        .await
        .map_err(|err| {
            ApiError::Internal(anyhow::anyhow!("loading clearing entries failed: {err}"))
        })?
        .unwrap_or_default()
        .into_iter()
        .map(ClearingEntry)
        .collect())
}

// ---- queries ----

#[derive(InputObject, Default)]
pub struct ClearingBatchFilter {
    status: Option<ClearingBatchStatus>,
}

#[derive(Default)]
pub struct ClearingQuery;

#[Object]
impl ClearingQuery {
    /// One clearing batch (its merchant or its provider), with its manifest once closed.
    async fn clearing_batch(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<ClearingBatch> {
        let id = decode_id("id", RecordKind::ClearingBatch, &id)?;
        Ok(ClearingBatch(
            clearing(ctx).batch(ctx.principal()?, id).await?,
        ))
    }

    /// The caller's clearing batches, as merchant or provider, newest first: open, closed and
    /// confirmed, each with its reconciliation.
    async fn clearing_batches(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ClearingBatchFilter>,
    ) -> async_graphql::Result<HubConnection<ClearingBatch>> {
        let filter = BatchFilter {
            status: filter.unwrap_or_default().status.map(Into::into),
        };
        let page = clearing(ctx)
            .batches(
                ctx.principal()?,
                filter,
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(ClearingBatch))
    }
}

// ---- mutations ----

#[derive(InputObject)]
pub struct CapturePaymentInput {
    payment_id: ID,
    /// At most the authorized amount; the whole of it when omitted. The rest is released.
    amount_minor: Option<Int64>,
    idempotency_key: String,
}

#[derive(InputObject)]
pub struct VoidPaymentInput {
    payment_id: ID,
    idempotency_key: String,
}

#[derive(InputObject)]
pub struct RefundPaymentInput {
    payment_id: ID,
    /// At most what the capture has left to refund.
    amount_minor: Int64,
    /// Why the money goes back (1 to 500 characters).
    reason: String,
    idempotency_key: String,
}

/// The payment after the step, and the clearing entry it wrote (none for a void).
#[derive(SimpleObject)]
pub struct SettlementPayload {
    payment: Payment,
    entry: Option<ClearingEntry>,
}

impl From<Settled> for SettlementPayload {
    fn from(settled: Settled) -> Self {
        Self {
            payment: Payment(settled.payment),
            entry: settled.entry.map(ClearingEntry),
        }
    }
}

#[derive(Default)]
pub struct SettlementMutation;

#[Object]
impl SettlementMutation {
    /// Captures an AUTHORIZED payment (the merchant's MEMBER or ADMIN), all of it or part of it; what is
    /// not captured is released to the order's balance. The capture joins the open clearing batch.
    async fn capture_payment(
        &self,
        ctx: &Context<'_>,
        input: CapturePaymentInput,
    ) -> async_graphql::Result<SettlementPayload> {
        let payment_id = decode_id("paymentId", RecordKind::Payment, &input.payment_id)?;
        let capture = Capture {
            payment_id,
            amount_minor: input.amount_minor.map(|amount| amount.0),
        };
        Ok(settlement(ctx)
            .capture(ctx.principal()?, capture, &input.idempotency_key)
            .await?
            .into())
    }

    /// Voids an AUTHORIZED, uncaptured payment: the order owes its amount again.
    async fn void_payment(
        &self,
        ctx: &Context<'_>,
        input: VoidPaymentInput,
    ) -> async_graphql::Result<SettlementPayload> {
        let payment_id = decode_id("paymentId", RecordKind::Payment, &input.payment_id)?;
        Ok(settlement(ctx)
            .void(ctx.principal()?, payment_id, &input.idempotency_key)
            .await?
            .into())
    }

    /// Refunds part or all of a CAPTURED payment, never more than captured across its refunds. Each
    /// refund is its own clearing entry with its reason.
    async fn refund_payment(
        &self,
        ctx: &Context<'_>,
        input: RefundPaymentInput,
    ) -> async_graphql::Result<SettlementPayload> {
        let payment_id = decode_id("paymentId", RecordKind::Payment, &input.payment_id)?;
        let refund = Refund {
            payment_id,
            amount_minor: input.amount_minor.0,
            reason: input.reason,
        };
        Ok(settlement(ctx)
            .refund(ctx.principal()?, refund, &input.idempotency_key)
            .await?
            .into())
    }
}

#[derive(InputObject)]
pub struct CloseClearingBatchInput {
    id: ID,
}

#[derive(InputObject)]
pub struct ConfirmClearingBatchInput {
    id: ID,
    /// The provider's issuer key (its `keyId`) that signed.
    key_id: Int64,
    /// base64 of the 64-byte ed25519 signature over the manifest's exact bytes.
    signature: String,
}

#[derive(SimpleObject)]
pub struct ClearingBatchPayload {
    batch: ClearingBatch,
}

#[derive(Default)]
pub struct ClearingMutation;

#[Object]
impl ClearingMutation {
    /// Closes an open batch now (the merchant's ADMIN): its manifest and digest are frozen.
    async fn close_clearing_batch(
        &self,
        ctx: &Context<'_>,
        input: CloseClearingBatchInput,
    ) -> async_graphql::Result<ClearingBatchPayload> {
        let id = decode_id("id", RecordKind::ClearingBatch, &input.id)?;
        Ok(ClearingBatchPayload {
            batch: ClearingBatch(clearing(ctx).close(ctx.principal()?, id).await?),
        })
    }

    /// Confirms a closed batch (the provider's ADMIN) with a signature over its manifest; a
    /// signature over anything else is refused, and a confirmed batch never changes again.
    async fn confirm_clearing_batch(
        &self,
        ctx: &Context<'_>,
        input: ConfirmClearingBatchInput,
    ) -> async_graphql::Result<ClearingBatchPayload> {
        let id = decode_id("id", RecordKind::ClearingBatch, &input.id)?;
        Ok(ClearingBatchPayload {
            batch: ClearingBatch(
                clearing(ctx)
                    .confirm(ctx.principal()?, id, input.key_id.0, &input.signature)
                    .await?,
            ),
        })
    }
}
