//! The tables that hold sealed fields, the background job that moves their rows to the primary data key
//! after a rotation, and the progress report (`hub keys status`, `encryptionStatus`, metrics).
//!
//! Every replica runs the job. It walks each table by id, one small batch per transaction, re-sealing
//! rows whose `key_id` is below its primary; on PostgreSQL the batch is locked `FOR UPDATE SKIP LOCKED`,
//! so replicas share the work instead of repeating it, and each row is written back only if its
//! `key_id` is still the old one (a request that rewrote it meanwhile already sealed it under the new
//! key). Progress lives in the rows themselves, so a restarted replica resumes where the table stands.
//! A row that does not open (altered in the database) is logged and skipped, never rewritten.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use entities::encryption_key;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryOrder, Statement, Value,
};
use uuid::Uuid;

use super::{FieldPlace, KeyId, KeyPurpose, Vault};
use crate::{
    db::placeholder,
    error::{ApiError, ApiResult},
};

/// A table with sealed columns: each column's name in the associated data, and its stored name.
#[derive(Debug)]
pub struct SealedTable {
    pub table: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

/// Every table holding sealed fields. A table added here is re-encrypted and reported like the others.
pub const SEALED_TABLES: &[SealedTable] = &[
    SealedTable {
        table: "customer",
        columns: &[
            ("name", "name_sealed"),
            ("email", "email_sealed"),
            ("phone", "phone_sealed"),
            ("address", "address_sealed"),
        ],
    },
    SealedTable {
        table: "payment_evidence",
        columns: &[("token", "token_sealed")],
    },
    SealedTable {
        table: "delivery",
        columns: &[("recipient", "recipient_sealed")],
    },
    SealedTable {
        table: "travel_record",
        columns: &[("position", "position_sealed")],
    },
];

/// How the job paces itself.
#[derive(Debug, Clone, Copy)]
pub struct ResealPace {
    /// Rows per transaction.
    pub batch: u64,
    /// Pause between batches (the job yields the database to requests).
    pub pause: Duration,
    /// Pause when nothing is left to move.
    pub idle: Duration,
}

/// The re-encryption job of one replica.
pub struct Resealer {
    db: DatabaseConnection,
    vault: Vault,
    pace: ResealPace,
    /// Where each (table, old key) walk stands.
    cursors: HashMap<(&'static str, KeyId), Uuid>,
    /// Rows that did not open, reported once each (they stay under their key until someone repairs
    /// them; the status keeps counting them as pending).
    unreadable: HashSet<(&'static str, Uuid)>,
    /// When the progress gauge was last published.
    published: Option<Instant>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub resealed: u64,
    pub failed: u64,
    /// The walk reached the end of the table for this key.
    pub finished: bool,
}

/// How often the progress gauge is recomputed (a count over the index of each sealed table).
const PUBLISH_EVERY: Duration = Duration::from_secs(5);

impl Resealer {
    pub fn new(db: DatabaseConnection, vault: Vault, pace: ResealPace) -> Self {
        Self {
            db,
            vault,
            pace,
            cursors: HashMap::new(),
            unreadable: HashSet::new(),
            published: None,
        }
    }

    /// Runs until the hub stops.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let worked = match self.pass().await {
                    Ok(worked) => worked,
                    Err(err) => {
                        tracing::warn!(error = %err, "re-encryption batch failed; retrying later");
                        false
                    }
                };
                tokio::time::sleep(if worked {
                    self.pace.pause
                } else {
                    self.pace.idle
                })
                .await;
            }
        })
    }

    /// One batch of the first (table, old key) walk that moves rows; false when none did (nothing is
    /// left, or only rows that do not open).
    pub async fn pass(&mut self) -> ApiResult<bool> {
        let (primary, ids) = self.vault.key_ids();
        let mut worked = false;
        'walks: for table in SEALED_TABLES {
            for old in ids.iter().copied().filter(|id| *id < primary) {
                let outcome = self.batch(table, old, primary).await?;
                metrics::counter!("hub_encryption_resealed_total", "table" => table.table)
                    .increment(outcome.resealed);
                if outcome.finished {
                    self.cursors.remove(&(table.table, old));
                }
                if outcome.resealed > 0 {
                    worked = true;
                    break 'walks;
                }
            }
        }
        self.publish_progress().await;
        Ok(worked)
    }

    async fn publish_progress(&mut self) {
        if self
            .published
            .is_some_and(|at| at.elapsed() < PUBLISH_EVERY)
        {
            return;
        }
        self.published = Some(Instant::now());
        match status(&self.db).await {
            Ok(status) => {
                for table in status.tables {
                    metrics::gauge!("hub_encryption_rows_pending", "table" => table.table)
                        .set(table.pending as f64);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot count rows to re-encrypt"),
        }
    }

    /// Re-seals up to one batch of `table`'s rows under `old` with `primary`, after the walk's cursor.
    async fn batch(
        &mut self,
        table: &'static SealedTable,
        old: KeyId,
        primary: KeyId,
    ) -> ApiResult<BatchOutcome> {
        let backend = self.db.get_database_backend();
        let after = self.cursors.get(&(table.table, old)).copied();
        let old_column = old.as_column()?;
        if after.is_none() && !has_rows_under(&self.db, table, old_column).await? {
            // Nothing to walk: no write transaction (SQLite would take its one write lock for it).
            return Ok(BatchOutcome {
                finished: true,
                ..Default::default()
            });
        }
        let columns: Vec<&str> = table.columns.iter().map(|(_, stored)| *stored).collect();
        let mut values = vec![Value::from(old_column)];
        let after_clause = match after {
            Some(after) => {
                values.push(Value::from(after));
                format!(" AND id > {}", placeholder(backend, 2))
            }
            None => String::new(),
        };
        // NO KEY: the update changes no key, so inserts that reference these rows are not blocked.
        let lock = if backend == DbBackend::Postgres {
            " FOR NO KEY UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT id, {} FROM {} WHERE key_id = {}{after_clause} ORDER BY id LIMIT {}{lock}",
            columns.join(", "),
            table.table,
            placeholder(backend, 1),
            self.pace.batch,
        );
        let sealer = self.vault.row_sealer();
        if sealer.key_id() != primary {
            // The ring moved on since the pass began: the next pass uses the new primary.
            return Ok(BatchOutcome::default());
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(backend, select, values))
            .await?;
        let mut outcome = BatchOutcome {
            finished: (rows.len() as u64) < self.pace.batch,
            ..Default::default()
        };
        for row in &rows {
            let id: Uuid = row.try_get("", "id")?;
            self.cursors.insert((table.table, old), id);
            let mut resealed = Vec::with_capacity(columns.len() + 3);
            let mut failure = None;
            for (logical, stored) in table.columns {
                let sealed: Option<Vec<u8>> = row.try_get("", stored)?;
                let Some(sealed) = sealed else {
                    resealed.push(Value::from(None::<Vec<u8>>));
                    continue;
                };
                let place = FieldPlace {
                    table: table.table,
                    column: logical,
                    row: id,
                };
                match self.vault.open(place, &sealed).await {
                    Ok(plain) => resealed.push(Value::from(
                        sealer.seal(place, &plain).map_err(sealing_failed)?,
                    )),
                    Err(err) => {
                        failure = Some(err);
                        break;
                    }
                }
            }
            if let Some(err) = failure {
                outcome.failed += 1;
                if self.unreadable.insert((table.table, id)) {
                    metrics::counter!("hub_encryption_reseal_failures_total", "table" => table.table)
                        .increment(1);
                    tracing::warn!(table = table.table, row = %id, error = %err,
                        "a sealed row does not open and stays under its old key");
                }
                continue;
            }
            let assignments: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, column)| format!("{column} = {}", placeholder(backend, i + 1)))
                .collect();
            let n = columns.len();
            let update = format!(
                "UPDATE {} SET {}, key_id = {} WHERE id = {} AND key_id = {}",
                table.table,
                assignments.join(", "),
                placeholder(backend, n + 1),
                placeholder(backend, n + 2),
                placeholder(backend, n + 3),
            );
            resealed.extend([
                Value::from(primary.as_column()?),
                Value::from(id),
                Value::from(old_column),
            ]);
            let written = txn
                .execute_raw(Statement::from_sql_and_values(backend, update, resealed))
                .await?;
            outcome.resealed += written.rows_affected();
        }
        txn.commit().await?;
        Ok(outcome)
    }
}

fn sealing_failed(err: super::CryptoError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("cannot seal a value: {err}"))
}

/// Whether any row of `table` is sealed under `key` (an index probe).
async fn has_rows_under(db: &DatabaseConnection, table: &SealedTable, key: i32) -> ApiResult<bool> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT id FROM {} WHERE key_id = {} LIMIT 1",
                table.table,
                placeholder(backend, 1)
            ),
            [Value::from(key)],
        ))
        .await?;
    Ok(row.is_some())
}

/// A key as the status shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    pub id: u32,
    pub purpose: &'static str,
    pub created_at: DateTime<Utc>,
    pub master_fingerprint: String,
    pub primary: bool,
}

/// Rows of one table per data key, and how many are still under older keys than the primary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableStatus {
    pub table: &'static str,
    pub rows_by_key: Vec<(u32, i64)>,
    pub pending: i64,
}

/// Where field encryption stands, read from the database (the same on every replica).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncryptionStatus {
    pub primary: u32,
    pub keys: Vec<KeyStatus>,
    pub tables: Vec<TableStatus>,
    /// Rows of every table still under older keys: 0 when a rotation has finished.
    pub pending: i64,
}

pub async fn status(db: &DatabaseConnection) -> ApiResult<EncryptionStatus> {
    let rows = encryption_key::Entity::find()
        .order_by_asc(encryption_key::Column::Purpose)
        .order_by_asc(encryption_key::Column::Id)
        .all(db)
        .await?;
    let primary = rows
        .iter()
        .filter(|row| row.purpose == KeyPurpose::Field.as_str())
        .map(|row| row.id)
        .max()
        .and_then(|id| u32::try_from(id).ok())
        .unwrap_or(0);
    let keys = rows
        .iter()
        .filter_map(|row| {
            let purpose = KeyPurpose::parse(&row.purpose)?;
            let id = u32::try_from(row.id).ok()?;
            Some(KeyStatus {
                id,
                purpose: purpose.as_str(),
                created_at: row.created_at,
                master_fingerprint: row.master_fingerprint.clone(),
                primary: purpose == KeyPurpose::Field && id == primary,
            })
        })
        .collect();
    let backend = db.get_database_backend();
    let mut tables = Vec::new();
    for table in SEALED_TABLES {
        let counts = db
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT key_id, COUNT(*) AS n FROM {} WHERE key_id IS NOT NULL \
                     GROUP BY key_id ORDER BY key_id",
                    table.table
                ),
            ))
            .await?;
        let mut rows_by_key = Vec::new();
        for row in counts {
            let key: i32 = row.try_get("", "key_id")?;
            let n: i64 = row.try_get("", "n")?;
            rows_by_key.push((u32::try_from(key).unwrap_or(0), n));
        }
        let pending = rows_by_key
            .iter()
            .filter(|(key, _)| *key < primary)
            .map(|(_, n)| n)
            .sum();
        tables.push(TableStatus {
            table: table.table,
            rows_by_key,
            pending,
        });
    }
    let pending = tables.iter().map(|table| table.pending).sum();
    Ok(EncryptionStatus {
        primary,
        keys,
        tables,
        pending,
    })
}
