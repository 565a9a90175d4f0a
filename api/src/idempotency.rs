//! Idempotency keys for create mutations, stored in the database so every replica honours them.
//!
//! A keyed request runs in one write transaction that first takes a lock on its key (a PostgreSQL
//! transaction-scoped advisory lock; SQLite's single writer serializes anyway) and claims the key's
//! row, in flight, in the same statement. A key seen before is looked up: a stored outcome is returned
//! again (same input) or refused (IDEMPOTENCY_MISMATCH); an expired one is claimed afresh. The work
//! then runs, and the key's row gets its outcome in the same transaction. A duplicate arriving while
//! the first holds the lock gets a retryable CONFLICT. A request that dies mid-way rolls back with its
//! lock and its claim, so a retry runs afresh at once: no half-claimed keys are ever left behind.

use std::{future::Future, pin::Pin, time::Duration};

use chrono::{DateTime, Utc};
use entities::idempotency_record as record;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, Statement,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    db::{
        begin_write, write_transaction,
        writes::{WriteId, Writes},
    },
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
enum Claim {
    /// An earlier request with this key and input produced this id.
    Replay(Uuid),
    /// Go ahead inside this transaction (its database time given), then stage the key's outcome
    /// and commit.
    Fresh(DatabaseTransaction, DateTime<Utc>),
}

/// Opens the keyed transaction: replay, mismatch, in progress, or fresh.
///
/// The key's row is claimed first, in flight (no result yet), so the claim, the lock and the
/// transaction's clock are one statement on PostgreSQL: the try-lock, an insert that does nothing when
/// the key has a row, and `now()`. Only a key seen before needs a second read.
async fn claim(db: &DatabaseConnection, key: &IdempotencyKey) -> ApiResult<Claim> {
    let txn = begin_write(db).await?;
    let claimed = claim_in(&txn, key).await;
    if let Ok(Claimed::Fresh(now)) = claimed {
        return Ok(Claim::Fresh(txn, now));
    }
    if let Err(rollback) = txn.rollback().await {
        tracing::warn!(error = %rollback, "rollback failed; the connection discards the transaction");
    }
    match claimed? {
        Claimed::Replay(id) => Ok(Claim::Replay(id)),
        // `Fresh` returned above.
        Claimed::Busy | Claimed::Fresh(_) => Err(ApiError::InProgress),
    }
}

/// What the claim found.
enum Claimed {
    /// The key is this transaction's (new, or expired and claimed again), at this database time.
    Fresh(DateTime<Utc>),
    /// Another transaction holds the key.
    Busy,
    Replay(Uuid),
}

async fn claim_in(txn: &DatabaseTransaction, key: &IdempotencyKey) -> ApiResult<Claimed> {
    let backend = txn.get_database_backend();
    let now = if backend == DbBackend::Postgres {
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    r#"WITH "lock" AS (SELECT pg_try_advisory_xact_lock($1) AS "locked"),
                    "claimed" AS (
                        INSERT INTO "idempotency_record"
                            ("scope_id", "operation", "key", "fingerprint", "result", "created_at", "expires_at")
                        SELECT $2, $3, $4, $5, NULL, now(), now() + make_interval(secs => $6)
                        FROM "lock" WHERE "locked"
                        ON CONFLICT ("scope_id", "operation", "key") DO NOTHING
                        RETURNING 1)
                    SELECT "locked", EXISTS (SELECT 1 FROM "claimed") AS "fresh", {} AS "now" FROM "lock""#,
                    crate::db::NOW_TEXT_PG
                ),
                [
                    key.lock_id().into(),
                    key.scope.into(),
                    key.operation.into(),
                    key.key.clone().into(),
                    key.fingerprint.clone().into(),
                    (RETENTION.as_secs() as f64).into(),
                ],
            ))
            .await?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the claim returned no row")))?;
        if !row.try_get::<bool>("", "locked")? {
            return Ok(Claimed::Busy);
        }
        let now = crate::db::parse_now(&row.try_get::<String>("", "now")?)?;
        if row.try_get::<bool>("", "fresh")? {
            return Ok(Claimed::Fresh(now));
        }
        now
    } else {
        // SQLite: one writer at a time already, and a statement costs no round trip.
        let now = crate::db::database_now(txn).await?;
        let inserted = record::Entity::insert(in_flight(key, now))
            .on_conflict(
                OnConflict::columns([
                    record::Column::ScopeId,
                    record::Column::Operation,
                    record::Column::Key,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        if inserted == 1 {
            return Ok(Claimed::Fresh(now));
        }
        now
    };
    // Seen before. Nobody else holds the key, so its row is finished (a row in flight is only ever
    // seen by the transaction that holds the key).
    let Some(existing) = record::Entity::find()
        .filter(primary_key(key))
        .one(txn)
        .await?
    else {
        // Purged between the insert and this read: the caller retries and claims it afresh.
        return Ok(Claimed::Busy);
    };
    if existing.expires_at < now {
        let claimed = record::Entity::update_many()
            .set(in_flight(key, now))
            .filter(primary_key(key))
            .exec(txn)
            .await?;
        return Ok(if claimed.rows_affected == 1 {
            Claimed::Fresh(now)
        } else {
            Claimed::Busy
        });
    }
    if !key.matches(&existing.fingerprint) {
        return Err(ApiError::IdempotencyMismatch);
    }
    existing
        .result
        .as_ref()
        .and_then(|value| value.get("id"))
        .and_then(|id| id.as_str())
        .and_then(|id| Uuid::parse_str(id).ok())
        .map(Claimed::Replay)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotency record without an outcome")))
}

/// The key's row while its first request is in flight.
fn in_flight(key: &IdempotencyKey, now: DateTime<Utc>) -> record::ActiveModel {
    record::ActiveModel {
        scope_id: Set(key.scope),
        operation: Set(key.operation.to_owned()),
        key: Set(key.key.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        result: Set(None),
        created_at: Set(now),
        expires_at: Set(now
            + chrono::Duration::from_std(RETENTION).unwrap_or_else(|_| chrono::Duration::days(1))),
    }
}

/// Adds the key's outcome to the keyed transaction's last step (one row: the key's, claimed in flight).
fn stage_completion(writes: &mut Writes, key: &IdempotencyKey, id: Uuid) -> WriteId {
    writes.update(
        Query::update()
            .table(record::Entity)
            .value(record::Column::Result, serde_json::json!({ "id": id }))
            .and_where(Expr::col(record::Column::ScopeId).eq(key.scope))
            .and_where(Expr::col(record::Column::Operation).eq(key.operation))
            .and_where(Expr::col(record::Column::Key).eq(key.key.clone()))
            .to_owned(),
    )
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
    run_once_staged(db, key, recorded, move |txn, _now| {
        Box::pin(async move { work(txn).await.map(|value| (value, Writes::new())) })
    })
    .await
}

/// [`run_once_with`] for work that sends its last writes together: `work` gets the keyed transaction
/// and its database time and returns its value with the writes it staged; the key's outcome and the
/// mutation's audit entry join them, and all go in one step before the commit.
pub async fn run_once_staged<T, F>(
    db: &DatabaseConnection,
    key: &IdempotencyKey,
    recorded: fn(&T) -> Uuid,
    work: F,
) -> ApiResult<Once<T>>
where
    T: Send,
    F: for<'c> FnOnce(
            &'c DatabaseTransaction,
            DateTime<Utc>,
        ) -> Pin<Box<dyn Future<Output = ApiResult<(T, Writes)>> + Send + 'c>>
        + Send
        + 'static,
{
    let (txn, now) = match claim(db, key).await? {
        Claim::Replay(id) => {
            crate::audit::scope::replayed();
            return Ok(Once::Replayed(id));
        }
        Claim::Fresh(txn, now) => (txn, now),
    };
    let mut staged_audit = false;
    let outcome = async {
        let (value, mut writes) = work(&txn, now).await?;
        let completion = stage_completion(&mut writes, key, recorded(&value));
        writes.expect(completion, 1, "the idempotency key's outcome");
        staged_audit = crate::audit::scope::stage_entry(&mut writes, now)?;
        writes.run(&txn).await?;
        Ok(value)
    }
    .await;
    crate::db::settle(txn, outcome, staged_audit)
        .await
        .map(Once::Ran)
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
