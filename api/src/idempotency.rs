//! Idempotency keys for create mutations, stored in the database so every replica honours them.
//!
//! A request first claims `(scope, operation, key)` with the fingerprint of its input (a short insert that
//! the primary key makes exclusive). The claim is completed with the created record's id in the same
//! transaction as the record itself, so a record never exists without its key or the other way round.
//! A later request with the same key and input gets that record again; with another input,
//! IDEMPOTENCY_MISMATCH; while the first is still in flight, a retryable CONFLICT.

use std::{future::Future, pin::Pin, time::Duration};

use chrono::Utc;
use entities::idempotency_record as record;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, sea_query::OnConflict,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    db::write_transaction,
    error::{ApiError, ApiResult},
};

/// How long a completed key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// An unfinished claim older than this belongs to a request that died: it may be taken over.
const ABANDONED_AFTER: Duration = Duration::from_secs(120);

/// One idempotency key, bound to its scope, operation and input.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    scope: Uuid,
    operation: &'static str,
    key: String,
    fingerprint: String,
}

impl IdempotencyKey {
    /// `scope` is the organization (or device) the key belongs to; `input` is everything that defines
    /// the request except the key itself.
    pub fn new(
        scope: Uuid,
        operation: &'static str,
        key: &str,
        input: &impl Serialize,
    ) -> ApiResult<Self> {
        let valid = (1..=255).contains(&key.len()) && key.chars().all(|c| c.is_ascii_graphic());
        if !valid {
            return Err(ApiError::validation(
                "idempotencyKey",
                "must be 1 to 255 printable ASCII characters",
            ));
        }
        let canonical = serde_json::to_vec(input).map_err(|err| ApiError::Internal(err.into()))?;
        let fingerprint = Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            scope,
            operation,
            key: key.to_owned(),
            fingerprint,
        })
    }
}

/// Runs `work` in a transaction, once per key: returns the id it created, or the id that an earlier
/// request with the same key and input created. Without a key it simply runs `work`.
pub async fn run_once<F>(
    db: &DatabaseConnection,
    key: Option<&IdempotencyKey>,
    work: F,
) -> ApiResult<Uuid>
where
    F: for<'c> FnOnce(
            &'c DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = ApiResult<Uuid>> + Send + 'c>>
        + Send
        + 'static,
{
    if let Some(key) = key
        && let Some(existing) = claim(db, key).await?
    {
        return Ok(existing);
    }
    let completion = key.cloned();
    let result = write_transaction(db, move |txn| {
        Box::pin(async move {
            let id = work(txn).await?;
            if let Some(key) = &completion {
                complete(txn, key, id).await?;
            }
            Ok(id)
        })
    })
    .await;
    if let (Err(_), Some(key)) = (&result, key) {
        // Nothing was created: free the key so a corrected retry may use it.
        release(db, key).await;
    }
    result
}

/// Claims the key. `None`: the caller goes ahead. `Some(id)`: an earlier request with this key and
/// input created `id`.
pub(crate) async fn claim(
    db: &DatabaseConnection,
    key: &IdempotencyKey,
) -> ApiResult<Option<Uuid>> {
    let now = Utc::now();
    let row = record::ActiveModel {
        scope_id: Set(key.scope),
        operation: Set(key.operation.to_owned()),
        key: Set(key.key.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        result: Set(None),
        created_at: Set(now),
        expires_at: Set(now
            + chrono::Duration::from_std(RETENTION).unwrap_or_else(|_| chrono::Duration::days(1))),
    };
    let inserted = record::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                record::Column::ScopeId,
                record::Column::Operation,
                record::Column::Key,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await;
    match inserted {
        Ok(1) => return Ok(None),
        Ok(_) | Err(DbErr::RecordNotInserted) => {}
        Err(err) => return Err(err.into()),
    }
    let existing =
        record::Entity::find_by_id((key.scope, key.operation.to_owned(), key.key.clone()))
            .one(db)
            .await?;
    let Some(existing) = existing else {
        // Released by a failed first attempt between our insert and read: try once more later.
        return Err(ApiError::InProgress);
    };
    if existing.expires_at < now {
        return take_over(db, key, &existing).await;
    }
    if existing.fingerprint != key.fingerprint {
        return Err(ApiError::IdempotencyMismatch);
    }
    match existing
        .result
        .as_ref()
        .and_then(|value| value.get("id"))
        .and_then(|id| id.as_str())
    {
        Some(id) => Uuid::parse_str(id)
            .map(Some)
            .map_err(|err| ApiError::Internal(err.into())),
        None if now - existing.created_at
            > chrono::Duration::from_std(ABANDONED_AFTER).unwrap_or_default() =>
        {
            take_over(db, key, &existing).await
        }
        None => Err(ApiError::InProgress),
    }
}

/// Re-claims an expired key or the abandoned claim of a request that died; exactly one taker wins.
async fn take_over(
    db: &DatabaseConnection,
    key: &IdempotencyKey,
    existing: &record::Model,
) -> ApiResult<Option<Uuid>> {
    let now = Utc::now();
    let taken = record::Entity::update_many()
        .col_expr(record::Column::Fingerprint, key.fingerprint.clone().into())
        .col_expr(
            record::Column::Result,
            Option::<serde_json::Value>::None.into(),
        )
        .col_expr(record::Column::CreatedAt, now.into())
        .col_expr(
            record::Column::ExpiresAt,
            (now + chrono::Duration::from_std(RETENTION)
                .unwrap_or_else(|_| chrono::Duration::days(1)))
            .into(),
        )
        .filter(primary_key(key))
        .filter(record::Column::CreatedAt.eq(existing.created_at))
        .exec(db)
        .await?;
    if taken.rows_affected == 1 {
        Ok(None)
    } else {
        Err(ApiError::InProgress)
    }
}

/// Records the outcome, inside the transaction that created the record.
pub(crate) async fn complete(
    txn: &DatabaseTransaction,
    key: &IdempotencyKey,
    id: Uuid,
) -> ApiResult<()> {
    let done = record::Entity::update_many()
        .col_expr(
            record::Column::Result,
            Some(serde_json::json!({ "id": id })).into(),
        )
        .filter(primary_key(key))
        .filter(record::Column::Fingerprint.eq(key.fingerprint.clone()))
        .filter(record::Column::Result.is_null())
        .exec(txn)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        // Our claim was taken over (we ran past the abandonment window): let the transaction roll back.
        Err(ApiError::InProgress)
    }
}

pub(crate) async fn release(db: &DatabaseConnection, key: &IdempotencyKey) {
    let released = record::Entity::delete_many()
        .filter(primary_key(key))
        .filter(record::Column::Fingerprint.eq(key.fingerprint.clone()))
        .filter(record::Column::Result.is_null())
        .exec(db)
        .await;
    if let Err(err) = released {
        // The claim expires on its own after the abandonment window.
        tracing::warn!(error = %err, operation = key.operation, "could not release an idempotency claim");
    }
}

fn primary_key(key: &IdempotencyKey) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(record::Column::ScopeId.eq(key.scope))
        .add(record::Column::Operation.eq(key.operation))
        .add(record::Column::Key.eq(key.key.clone()))
}

/// Deletes expired keys; run periodically.
pub async fn purge_expired(db: &DatabaseConnection) -> ApiResult<u64> {
    let purged = record::Entity::delete_many()
        .filter(record::Column::ExpiresAt.lt(Utc::now()))
        .exec(db)
        .await?;
    Ok(purged.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_the_input() {
        let scope = Uuid::nil();
        let a = IdempotencyKey::new(scope, "op", "k1", &serde_json::json!({ "q": 1 })).ok();
        let b = IdempotencyKey::new(scope, "op", "k1", &serde_json::json!({ "q": 2 })).ok();
        let a2 = IdempotencyKey::new(scope, "op", "k1", &serde_json::json!({ "q": 1 })).ok();
        assert_ne!(
            a.as_ref().map(|k| &k.fingerprint),
            b.as_ref().map(|k| &k.fingerprint)
        );
        assert_eq!(a.map(|k| k.fingerprint), a2.map(|k| k.fingerprint));
        assert!(IdempotencyKey::new(scope, "op", "", &1).is_err());
        assert!(IdempotencyKey::new(scope, "op", "has space", &1).is_err());
    }
}
