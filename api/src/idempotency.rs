//! Idempotency keys for create mutations, stored in the database so every replica honours them.
//!
//! A keyed request runs in one write transaction that first takes a lock on its key (a PostgreSQL
//! transaction-scoped advisory lock; SQLite's single writer serializes anyway), then looks the key up:
//! a stored outcome is returned again (same input) or refused (IDEMPOTENCY_MISMATCH); otherwise the work
//! runs and the key is stored with its outcome in the same transaction. A duplicate arriving while the
//! first holds the lock gets a retryable CONFLICT. A request that dies mid-way rolls back with its lock,
//! so a retry runs afresh at once: no half-claimed keys are ever left behind.

use std::{future::Future, pin::Pin, time::Duration};

use chrono::Utc;
use entities::idempotency_record as record;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    db::{begin_write, write_transaction},
    error::{ApiError, ApiResult},
};

/// How long a completed key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// One idempotency key, bound to its scope, operation and input.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    scope: Uuid,
    operation: &'static str,
    key: String,
    fingerprint: String,
    /// The plain hash an older version stored for the same input (still honoured on a retry).
    legacy_fingerprint: Option<String>,
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
            legacy_fingerprint: None,
        })
    }

    /// For an input holding sensitive values (a card's token, a customer's contact): the stored
    /// fingerprint is a keyed digest (HMAC under the hub's blind-index key), so a stolen record
    /// cannot be checked against guesses of the input. A record an older version stored with the
    /// plain hash of the same input still matches, so a retry across an upgrade is not refused.
    pub fn new_sensitive(
        scope: Uuid,
        operation: &'static str,
        key: &str,
        input: &impl Serialize,
        vault: &crate::crypto::Vault,
    ) -> ApiResult<Self> {
        let mut this = Self::new(scope, operation, key, input)?;
        let canonical = zeroize::Zeroizing::new(
            serde_json::to_vec(input).map_err(|err| ApiError::Internal(err.into()))?,
        );
        let keyed = vault.keyed_digest("idempotency", &canonical);
        this.legacy_fingerprint = Some(std::mem::replace(&mut this.fingerprint, keyed));
        Ok(this)
    }

    fn matches(&self, stored: &str) -> bool {
        stored == self.fingerprint || self.legacy_fingerprint.as_deref() == Some(stored)
    }
}

impl IdempotencyKey {
    /// The advisory-lock id of this key (the first 8 bytes of a hash of scope, operation and key).
    fn lock_id(&self) -> i64 {
        let digest = Sha256::digest(format!("{}/{}/{}", self.scope, self.operation, self.key));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }
}

/// What a key allows.
pub enum Claim {
    /// An earlier request with this key and input produced this id.
    Replay(Uuid),
    /// Go ahead inside this transaction, then [`complete`] and commit it.
    Fresh(DatabaseTransaction),
}

/// Opens the keyed transaction: replay, mismatch, in progress, or fresh.
pub async fn claim(db: &DatabaseConnection, key: &IdempotencyKey) -> ApiResult<Claim> {
    let txn = begin_write(db).await?;
    if !crate::db::try_advisory_xact_lock(&txn, key.lock_id()).await? {
        txn.rollback().await?;
        return Err(ApiError::InProgress);
    }
    let existing = record::Entity::find()
        .filter(primary_key(key))
        .one(&txn)
        .await?;
    let Some(existing) = existing else {
        return Ok(Claim::Fresh(txn));
    };
    if existing.expires_at < Utc::now() {
        record::Entity::delete_many()
            .filter(primary_key(key))
            .exec(&txn)
            .await?;
        return Ok(Claim::Fresh(txn));
    }
    txn.rollback().await?;
    if !key.matches(&existing.fingerprint) {
        return Err(ApiError::IdempotencyMismatch);
    }
    existing
        .result
        .as_ref()
        .and_then(|value| value.get("id"))
        .and_then(|id| id.as_str())
        .and_then(|id| Uuid::parse_str(id).ok())
        .map(Claim::Replay)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotency record without an outcome")))
}

/// Stores the key with its outcome, inside the keyed transaction.
pub async fn complete(txn: &DatabaseTransaction, key: &IdempotencyKey, id: Uuid) -> ApiResult<()> {
    let now = Utc::now();
    record::Entity::insert(record::ActiveModel {
        scope_id: Set(key.scope),
        operation: Set(key.operation.to_owned()),
        key: Set(key.key.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        result: Set(Some(serde_json::json!({ "id": id }))),
        created_at: Set(now),
        expires_at: Set(now
            + chrono::Duration::from_std(RETENTION).unwrap_or_else(|_| chrono::Duration::days(1))),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// What a keyed run produced: the work's own value, or the id an earlier run with the same key and
/// input recorded.
pub enum Once<T> {
    Ran(T),
    Replayed(Uuid),
}

/// Runs `work` in a write transaction, once per key: the key is claimed first, `work` runs in the same
/// transaction, and the id `recorded` reads off its value is stored with the key before one commit (or
/// one rollback, which leaves the key free for a corrected retry). Without a key it simply runs `work`.
pub async fn run_once_with<T, F>(
    db: &DatabaseConnection,
    key: Option<&IdempotencyKey>,
    recorded: fn(&T) -> Uuid,
    work: F,
) -> ApiResult<Once<T>>
where
    T: Send,
    F: for<'c> FnOnce(
            &'c DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'c>>
        + Send
        + 'static,
{
    let Some(key) = key else {
        return write_transaction(db, work).await.map(Once::Ran);
    };
    let txn = match claim(db, key).await? {
        Claim::Replay(id) => {
            crate::audit::scope::replayed();
            return Ok(Once::Replayed(id));
        }
        Claim::Fresh(txn) => txn,
    };
    let outcome = match work(&txn).await {
        Ok(value) => match complete(&txn, key, recorded(&value)).await {
            Ok(()) => crate::audit::scope::append_in(&txn).await.map(|()| value),
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    };
    match outcome {
        Ok(value) => {
            txn.commit().await?;
            crate::audit::scope::committed();
            Ok(Once::Ran(value))
        }
        Err(err) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection discards the transaction");
            }
            Err(err)
        }
    }
}

/// [`run_once_with`] for work that creates one record: returns its id, first time or replayed.
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
    match run_once_with(db, key, |id| *id, work).await? {
        Once::Ran(id) | Once::Replayed(id) => Ok(id),
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
