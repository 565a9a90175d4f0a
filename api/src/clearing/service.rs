//! Clearing batches: joining the open one, closing it into its manifest, the provider's confirmation,
//! and the reconciliation of each batch against its entries.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use card_protocol::keys::parse_public_key;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use ed25519_dalek::Signature;
use entities::{
    clearing_batch::{self, BatchStatus},
    clearing_entry::{self, EntryKind},
    clearing_manifest,
    issuer_key::{self, IssuerKeyStatus},
};
use sea_orm::{
    ActiveEnum,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
    sea_query::{Expr, LockType},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::manifest::{Manifest, ManifestEntry, ManifestInput, digest};
use crate::{
    auth::Principal,
    config::ClearingSettings,
    db::{
        database_now,
        pagination::{Ordering, Page, PageArgs, SortKey, paginate},
        placeholder, serialize_on, write_transaction,
    },
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, Outbox, record},
    policy::{Action, authorize, clearing_batch_visible, clearing_entry_visible},
    records::RecordKind,
};

/// Scheduled closes per round (each one is its own transaction).
const SCHEDULED_CLOSES_PER_ROUND: u64 = 10;

/// The database's clock, at the precision both databases keep (so a manifest's times read back equal).
pub async fn clearing_now<C: ConnectionTrait>(db: &C) -> ApiResult<DateTime<Utc>> {
    let now = database_now(db).await?;
    Ok(now
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now))
}

/// The advisory-lock key of the batches of one merchant, provider and currency (a hash: a collision
/// only makes two triples wait for each other's closes).
fn batch_lock_key(merchant: Uuid, provider: Uuid, currency: &str) -> i64 {
    let digest = Sha256::digest(format!("clearing-batch/{merchant}/{provider}/{currency}"));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Holds the batches of a triple in shared mode until `txn` ends (PostgreSQL; SQLite runs one write
/// transaction at a time): captures and refunds share it, a close takes it alone.
async fn share_batches(txn: &DatabaseTransaction, key: i64) -> ApiResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock_shared({key})"))
            .await?;
    }
    Ok(())
}

/// The open batch of `merchant`, `provider` and `currency`, opened now if there is none; held until
/// `txn` ends, so a close waits for this transaction's entry and a capture never joins a batch that
/// closed under it.
///
/// On PostgreSQL every capture and refund first takes the triple's advisory lock in shared mode (in
/// the lock manager's memory: no row lock, so concurrent captures never write lock records into the
/// batch's row); a close takes it exclusively, so it waits for every transaction that joined the batch
/// to commit, and one that asks for it meanwhile waits for the close, then reads the batch CLOSED and
/// opens the next one. SQLite runs one write transaction at a time.
pub async fn join_open_batch(
    txn: &DatabaseTransaction,
    merchant: Uuid,
    provider: Uuid,
    currency: &str,
    now: DateTime<Utc>,
) -> ApiResult<Uuid> {
    let backend = txn.get_database_backend();
    share_batches(txn, batch_lock_key(merchant, provider, currency)).await?;
    // Twice at most: an open batch read CLOSED after it was found missing is reopened once.
    for _ in 0..3 {
        let open: Option<Uuid> = clearing_batch::Entity::find()
            .select_only()
            .column(clearing_batch::Column::Id)
            .filter(clearing_batch::Column::MerchantOrganizationId.eq(merchant))
            .filter(clearing_batch::Column::ProviderOrganizationId.eq(provider))
            .filter(clearing_batch::Column::Currency.eq(currency))
            .filter(clearing_batch::Column::Status.eq(BatchStatus::Open))
            .into_tuple()
            .one(txn)
            .await?;
        if let Some(id) = open {
            return Ok(id);
        }
        let id = Uuid::now_v7();
        let p = |n| placeholder(backend, n);
        let opened = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO clearing_batch \
                     (id, merchant_organization_id, provider_organization_id, currency, status, opened_at) \
                     VALUES ({}, {}, {}, {}, {}, {}) \
                     ON CONFLICT (merchant_organization_id, provider_organization_id, currency) \
                     WHERE status = 'OPEN' DO NOTHING",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6)
                ),
                [
                    id.into(),
                    merchant.into(),
                    provider.into(),
                    currency.into(),
                    BatchStatus::Open.to_value().into(),
                    now.into(),
                ],
            ))
            .await?;
        // Ours, uncommitted: nobody can close it before this transaction ends.
        if opened.rows_affected() == 1 {
            return Ok(id);
        }
        // Another transaction opened it first (and has committed): read it again.
    }
    Err(ApiError::Conflict(
        "the clearing batch changed repeatedly; retry".into(),
    ))
}

/// Which batches to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchFilter {
    pub status: Option<BatchStatus>,
}

/// A batch's totals recomputed from its entries as they are now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recomputed {
    pub entry_count: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
}

#[derive(Clone)]
pub struct ClearingService {
    db: DatabaseConnection,
    outbox: Outbox,
    settings: ClearingSettings,
}

impl ClearingService {
    pub fn new(db: DatabaseConnection, outbox: Outbox, settings: ClearingSettings) -> Self {
        Self {
            db,
            outbox,
            settings,
        }
    }

    pub async fn batch(&self, principal: &Principal, id: Uuid) -> ApiResult<clearing_batch::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        find_batch(&self.db, principal, id, None).await
    }

    /// The caller's batches, as merchant or as provider, newest first.
    pub async fn batches(
        &self,
        principal: &Principal,
        filter: BatchFilter,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<clearing_batch::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let mut select = clearing_batch::Entity::find().filter(clearing_batch_visible(principal));
        if let Some(status) = filter.status {
            select = select.filter(clearing_batch::Column::Status.eq(status));
        }
        let ordering = Ordering {
            name: "openedAt",
            column: clearing_batch::Column::OpenedAt,
            descending: true,
            key: |batch: &clearing_batch::Model| SortKey::Time(batch.opened_at),
        };
        paginate(
            &self.db,
            select,
            clearing_batch::Column::Id,
            |batch| batch.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    /// A batch's captures and refunds, oldest first (the manifest lists them by id).
    pub async fn entries(
        &self,
        principal: &Principal,
        batch_id: Uuid,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<clearing_entry::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let select = clearing_entry::Entity::find()
            .filter(clearing_entry::Column::BatchId.eq(batch_id))
            .filter(clearing_entry_visible(principal));
        let ordering = Ordering {
            name: "createdAt",
            column: clearing_entry::Column::CreatedAt,
            descending: false,
            key: |entry: &clearing_entry::Model| SortKey::Time(entry.created_at),
        };
        paginate(
            &self.db,
            select,
            clearing_entry::Column::Id,
            |entry| entry.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    pub async fn entry(&self, principal: &Principal, id: Uuid) -> ApiResult<clearing_entry::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        clearing_entry::Entity::find_by_id(id)
            .filter(clearing_entry_visible(principal))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("clearing entry"))
    }

    /// The captures and refunds of each payment, oldest first.
    pub async fn entries_of_payments(
        &self,
        principal: &Principal,
        payment_ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, Vec<clearing_entry::Model>>> {
        let rows = clearing_entry::Entity::find()
            .filter(clearing_entry::Column::PaymentId.is_in(payment_ids.iter().copied()))
            .filter(clearing_entry_visible(principal))
            .order_by_asc(clearing_entry::Column::Id)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<Uuid, Vec<clearing_entry::Model>> = HashMap::new();
        for row in rows {
            grouped.entry(row.payment_id).or_default().push(row);
        }
        Ok(grouped)
    }

    /// A closed batch's canonical manifest, exactly as frozen; `None` while the batch is open.
    pub async fn manifest(
        &self,
        principal: &Principal,
        batch_id: Uuid,
    ) -> ApiResult<Option<String>> {
        let batch = self.batch(principal, batch_id).await?;
        if batch.status == BatchStatus::Open {
            return Ok(None);
        }
        let manifest = clearing_manifest::Entity::find_by_id(batch.id)
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("closed batch {} has no manifest", batch.id))
            })?;
        Ok(Some(manifest.manifest))
    }

    /// Each batch's totals recomputed from its entries (batches the caller may see).
    pub async fn recompute(
        &self,
        principal: &Principal,
        batch_ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, Recomputed>> {
        let rows: Vec<(Uuid, EntryKind, i64, Option<i64>)> = clearing_entry::Entity::find()
            .select_only()
            .column(clearing_entry::Column::BatchId)
            .column(clearing_entry::Column::Kind)
            // PostgreSQL counts and sums BIGINTs into NUMERIC; both databases read these as 64-bit.
            .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "entries")
            .column_as(Expr::cust("CAST(SUM(amount_minor) AS BIGINT)"), "amount")
            .filter(clearing_entry::Column::BatchId.is_in(batch_ids.iter().copied()))
            .filter(clearing_entry_visible(principal))
            .group_by(clearing_entry::Column::BatchId)
            .group_by(clearing_entry::Column::Kind)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut totals: HashMap<Uuid, Recomputed> = HashMap::new();
        for (batch, kind, entries, amount) in rows {
            let total = totals.entry(batch).or_default();
            total.entry_count += entries;
            match kind {
                EntryKind::Capture => total.captured_minor += amount.unwrap_or(0),
                EntryKind::Refund => total.refunded_minor += amount.unwrap_or(0),
            }
        }
        Ok(totals)
    }

    /// Closes an open batch now (its merchant's ADMIN): the manifest is frozen with its digest.
    pub async fn close(
        &self,
        principal: &Principal,
        batch_id: Uuid,
    ) -> ApiResult<clearing_batch::Model> {
        authorize(principal, Action::CloseClearingBatch)?;
        let caller = principal.clone();
        let closed = write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let batch = find_batch(txn, &caller, batch_id, None).await?;
                if batch.merchant_organization_id != caller.organization_id {
                    return Err(ApiError::Forbidden("only the batch's merchant closes it"));
                }
                let batch = lock_for_close(txn, batch).await?;
                let now = clearing_now(txn).await?;
                close_locked(txn, batch, now).await
            })
        })
        .await?;
        self.outbox.committed();
        Ok(closed)
    }

    /// Closes the batches open longer than the schedule allows; safe on several replicas (each batch
    /// is closed under its triple's exclusive lock, once). Returns how many it closed.
    pub async fn close_due(&self) -> ApiResult<u64> {
        let Some(after) = self.settings.close_after() else {
            return Ok(0);
        };
        let now = clearing_now(&self.db).await?;
        let due: Vec<Uuid> = clearing_batch::Entity::find()
            .select_only()
            .column(clearing_batch::Column::Id)
            .filter(clearing_batch::Column::Status.eq(BatchStatus::Open))
            .filter(clearing_batch::Column::OpenedAt.lt(now - after))
            .order_by_asc(clearing_batch::Column::OpenedAt)
            .limit(SCHEDULED_CLOSES_PER_ROUND)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut closed = 0;
        for id in due {
            let done = write_transaction(&self.db, move |txn| {
                Box::pin(async move {
                    let Some(batch) = clearing_batch::Entity::find_by_id(id).one(txn).await? else {
                        return Ok(false);
                    };
                    let batch = lock_for_close(txn, batch).await?;
                    // Closed meanwhile, by hand or by another replica.
                    if batch.status != BatchStatus::Open {
                        return Ok(false);
                    }
                    let now = clearing_now(txn).await?;
                    close_locked(txn, batch, now).await.map(|_| true)
                })
            })
            .await?;
            if done {
                closed += 1;
                tracing::info!(batch = %id, "clearing batch closed on schedule");
            }
        }
        if closed > 0 {
            self.outbox.committed();
        }
        Ok(closed)
    }

    /// The provider's confirmation: an ed25519 signature over the batch's manifest bytes, under one of
    /// its issuer keys (not revoked, within its validity). A confirmed batch never changes again.
    pub async fn confirm(
        &self,
        principal: &Principal,
        batch_id: Uuid,
        key_id: i64,
        signature_base64: &str,
    ) -> ApiResult<clearing_batch::Model> {
        authorize(principal, Action::ConfirmClearingBatch)?;
        let signature: [u8; 64] = STANDARD
            .decode(signature_base64.trim())
            .ok()
            .and_then(|bytes| bytes.as_slice().try_into().ok())
            .ok_or_else(|| ApiError::validation("signature", "must be base64 of 64 bytes"))?;
        let caller = principal.clone();
        let confirmed = write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let batch = find_batch(txn, &caller, batch_id, Some(LockType::Update)).await?;
                if batch.provider_organization_id != caller.organization_id {
                    return Err(ApiError::Forbidden("only the batch's provider confirms it"));
                }
                match batch.status {
                    BatchStatus::Closed => {}
                    BatchStatus::Open => {
                        return Err(ApiError::InvalidTransition {
                            action: "confirm the clearing batch",
                            reason: "it is OPEN; a batch is confirmed once closed".into(),
                        });
                    }
                    BatchStatus::Confirmed => {
                        return Err(ApiError::InvalidTransition {
                            action: "confirm the clearing batch",
                            reason: "it is CONFIRMED already".into(),
                        });
                    }
                }
                let now = clearing_now(txn).await?;
                let key = issuer_key::Entity::find()
                    .filter(issuer_key::Column::OwnerOrganizationId.eq(caller.organization_id))
                    .filter(issuer_key::Column::KeyId.eq(key_id))
                    .one(txn)
                    .await?
                    .ok_or_else(|| {
                        ApiError::validation("keyId", "is not one of your issuer keys")
                    })?;
                if key.status == IssuerKeyStatus::Revoked {
                    return Err(ApiError::validation("keyId", "the key is revoked"));
                }
                if now > key.not_after {
                    return Err(ApiError::validation(
                        "keyId",
                        "the key is past its validity",
                    ));
                }
                let public_key = <&[u8; 32]>::try_from(key.public_key.as_slice())
                    .ok()
                    .and_then(|bytes| parse_public_key(bytes).ok())
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!(
                            "issuer key {} is stored malformed",
                            key.id
                        ))
                    })?;
                let manifest = clearing_manifest::Entity::find_by_id(batch.id)
                    .one(txn)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!(
                            "closed batch {} has no manifest",
                            batch.id
                        ))
                    })?;
                // The digest frozen at close: a manifest changed in the database is never confirmed.
                if batch.manifest_sha256.as_deref()
                    != Some(digest(manifest.manifest.as_bytes()).as_str())
                {
                    return Err(ApiError::Internal(anyhow::anyhow!(
                        "the manifest of batch {} does not match its digest",
                        batch.id
                    )));
                }
                if public_key
                    .verify_strict(
                        manifest.manifest.as_bytes(),
                        &Signature::from_bytes(&signature),
                    )
                    .is_err()
                {
                    return Err(ApiError::validation(
                        "signature",
                        "does not verify over this batch's manifest under that key",
                    ));
                }
                let updated = clearing_batch::Entity::update_many()
                    .col_expr(
                        clearing_batch::Column::Status,
                        Expr::value(BatchStatus::Confirmed),
                    )
                    .col_expr(clearing_batch::Column::ConfirmedAt, Expr::value(now))
                    .col_expr(
                        clearing_batch::Column::ConfirmationKeyId,
                        Expr::value(key_id),
                    )
                    .col_expr(
                        clearing_batch::Column::ConfirmationSignature,
                        Expr::value(signature.to_vec()),
                    )
                    .filter(clearing_batch::Column::Id.eq(batch.id))
                    .filter(clearing_batch::Column::Status.eq(BatchStatus::Closed))
                    .exec(txn)
                    .await?;
                if updated.rows_affected != 1 {
                    return Err(ApiError::Conflict(
                        "the batch changed meanwhile; retry".into(),
                    ));
                }
                record(
                    txn,
                    batch_event(&batch, "clearing_batch.confirmed", BatchStatus::Confirmed),
                )
                .await?;
                find_batch(txn, &caller, batch.id, None).await
            })
        })
        .await?;
        self.outbox.committed();
        Ok(confirmed)
    }
}

/// A closed batch's manifest and its digest, for the operator's export (no caller: the command line
/// holds the database itself). Refuses an open batch, and a manifest that no longer matches its digest.
pub async fn export_manifest(
    db: &DatabaseConnection,
    batch_id: Uuid,
) -> anyhow::Result<(String, String)> {
    let batch = clearing_batch::Entity::find_by_id(batch_id)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no clearing batch {batch_id}"))?;
    let Some(sha256) = batch.manifest_sha256 else {
        anyhow::bail!("clearing batch {batch_id} is OPEN: its manifest exists once it is closed");
    };
    let manifest = clearing_manifest::Entity::find_by_id(batch_id)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed batch {batch_id} has no manifest"))?;
    if digest(manifest.manifest.as_bytes()) != sha256 {
        anyhow::bail!("the manifest of batch {batch_id} does not match its digest: it was altered");
    }
    Ok((manifest.manifest, sha256))
}

/// A batch the caller may see (merchant or provider), optionally locked.
async fn find_batch<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    id: Uuid,
    lock: Option<LockType>,
) -> ApiResult<clearing_batch::Model> {
    let mut select =
        clearing_batch::Entity::find_by_id(id).filter(clearing_batch_visible(principal));
    if let Some(lock) = lock {
        select = select.lock(lock);
    }
    select
        .one(db)
        .await?
        .ok_or(ApiError::not_found("clearing batch"))
}

/// Takes the batch's triple alone (waiting for every capture and refund that joined it to commit),
/// then its row, and reads it again as it is now.
async fn lock_for_close(
    txn: &DatabaseTransaction,
    batch: clearing_batch::Model,
) -> ApiResult<clearing_batch::Model> {
    let key = batch_lock_key(
        batch.merchant_organization_id,
        batch.provider_organization_id,
        &batch.currency,
    );
    serialize_on(txn, key).await?;
    clearing_batch::Entity::find_by_id(batch.id)
        .lock(LockType::Update)
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("batch {} vanished", batch.id)))
}

/// Closes `batch`, read under its triple's exclusive lock: freezes the manifest of every entry it
/// holds.
async fn close_locked(
    txn: &DatabaseTransaction,
    batch: clearing_batch::Model,
    now: DateTime<Utc>,
) -> ApiResult<clearing_batch::Model> {
    if batch.status != BatchStatus::Open {
        return Err(ApiError::InvalidTransition {
            action: "close the clearing batch",
            reason: format!("it is {}", batch.status.to_value()),
        });
    }
    let entries: Vec<(Uuid, Uuid, EntryKind, i64)> = clearing_entry::Entity::find()
        .select_only()
        .column(clearing_entry::Column::Id)
        .column(clearing_entry::Column::PaymentId)
        .column(clearing_entry::Column::Kind)
        .column(clearing_entry::Column::AmountMinor)
        .filter(clearing_entry::Column::BatchId.eq(batch.id))
        .into_tuple()
        .all(txn)
        .await?;
    let manifest = Manifest::build(ManifestInput {
        batch_id: batch.id,
        merchant: batch.merchant_organization_id,
        provider: batch.provider_organization_id,
        currency: batch.currency.clone(),
        opened_at: batch.opened_at,
        closed_at: now,
        entries: entries
            .into_iter()
            .map(|(id, payment_id, kind, amount_minor)| ManifestEntry {
                id,
                payment_id,
                kind,
                amount_minor,
            })
            .collect(),
    })
    .ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("the totals of batch {} overflow", batch.id))
    })?;
    let updated = clearing_batch::Entity::update_many()
        .col_expr(
            clearing_batch::Column::Status,
            Expr::value(BatchStatus::Closed),
        )
        .col_expr(clearing_batch::Column::ClosedAt, Expr::value(now))
        .col_expr(
            clearing_batch::Column::EntryCount,
            Expr::value(manifest.entry_count),
        )
        .col_expr(
            clearing_batch::Column::CapturedMinor,
            Expr::value(manifest.captured_minor),
        )
        .col_expr(
            clearing_batch::Column::RefundedMinor,
            Expr::value(manifest.refunded_minor),
        )
        .col_expr(
            clearing_batch::Column::ManifestSha256,
            Expr::value(manifest.sha256.clone()),
        )
        .filter(clearing_batch::Column::Id.eq(batch.id))
        .filter(clearing_batch::Column::Status.eq(BatchStatus::Open))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(ApiError::Conflict(
            "the batch changed meanwhile; retry".into(),
        ));
    }
    clearing_manifest::Entity::insert(clearing_manifest::ActiveModel {
        batch_id: Set(batch.id),
        manifest: Set(manifest.text),
    })
    .exec_without_returning(txn)
    .await?;
    record(
        txn,
        batch_event(&batch, "clearing_batch.closed", BatchStatus::Closed),
    )
    .await?;
    clearing_batch::Entity::find_by_id(batch.id)
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("batch {} vanished", batch.id)))
}

fn batch_event(
    batch: &clearing_batch::Model,
    event_type: &'static str,
    status: BatchStatus,
) -> NewEvent {
    NewEvent {
        event_type,
        family: FINANCIAL,
        record_type: RecordKind::ClearingBatch,
        record_id: batch.id,
        status: status.to_value(),
        owner: batch.merchant_organization_id,
        parties: vec![batch.provider_organization_id],
    }
}
