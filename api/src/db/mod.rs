//! Database connection, migrations and bootstrap.

pub mod constraints;
pub mod pagination;
pub mod worker;
pub mod writes;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::{
    config::{HubConfig, Mode},
    crypto::{MasterKey, Vault},
    error::ApiResult,
    identity::IdentityService,
};

/// Key of the PostgreSQL advisory lock that serializes migrations and bootstrap across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x4943_485f_4d49_4752; // "ICH_MIGR"

/// Statements executed on one connection pool since it opened (also exported as a Prometheus counter).
#[derive(Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub async fn connect(config: &HubConfig) -> anyhow::Result<DatabaseConnection> {
    connect_counted(config, &StatementCounter::default()).await
}

/// A small separate pool for background work (event stamping, the feed, purges, key refreshes and
/// re-encryption), so it never waits behind requests for a connection and stays out of the request
/// statement count.
pub async fn connect_background(config: &HubConfig) -> anyhow::Result<DatabaseConnection> {
    connect_with(config, &StatementCounter::default(), Pool::Background).await
}

/// Which pool a connection belongs to: the `pool` label of `hub_db_statements_total`.
#[derive(Clone, Copy)]
enum Pool {
    /// Requests (GraphQL operations, subscriptions' reads).
    Requests(u32),
    Background,
}

impl Pool {
    fn size(self) -> u32 {
        match self {
            Self::Requests(size) => size,
            Self::Background => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Requests(_) => "requests",
            Self::Background => "background",
        }
    }
}

/// Connects, counting every statement in `counter` (tests use it to prove DataLoaders batch).
pub async fn connect_counted(
    config: &HubConfig,
    counter: &StatementCounter,
) -> anyhow::Result<DatabaseConnection> {
    let pool_size = match config.mode() {
        Mode::Embedded => 8,
        Mode::Production => 32,
    };
    connect_with(config, counter, Pool::Requests(pool_size)).await
}

async fn connect_with(
    config: &HubConfig,
    counter: &StatementCounter,
    pool: Pool,
) -> anyhow::Result<DatabaseConnection> {
    if config.mode() == Mode::Embedded && config.database_url.is_none() {
        create_private_dir(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    let mut options = ConnectOptions::new(config.database_url());
    options
        .max_connections(pool.size())
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let mut db = Database::connect(options).await.with_context(|| {
        format!(
            "cannot connect to {}",
            crate::config::mask_url_credentials(&config.database_url())
        )
    })?;
    let statements = counter.0.clone();
    let label = pool.label();
    db.set_metric_callback(move |_info| {
        statements.fetch_add(1, Ordering::Relaxed);
        // Looked up per statement: the recorder is installed after the pools connect.
        metrics::counter!("hub_db_statements_total", "pool" => label).increment(1);
    });
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL lets readers proceed while the single writer commits.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

/// Creates the data directory readable by its owner only (it holds keys, tokens and the database).
fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Runs pending migrations and creates the retailer and its first admin, once, even when several
/// replicas start together (PostgreSQL advisory lock held for the duration). Opens the field-encryption
/// keys on the way (creating them on a new database); the vault keeps `vault_db` for its own reads
/// (the background pool, outside the request statement count).
pub async fn migrate_and_bootstrap(
    db: &DatabaseConnection,
    vault_db: &DatabaseConnection,
    master: MasterKey,
    retailer_name: &str,
) -> anyhow::Result<(
    Vault,
    entities::organization::Model,
    entities::member::Model,
)> {
    let lock = migration_lock(db).await?;
    let vault = migrate_under_lock(db, vault_db, master).await?;
    let (retailer, admin) = IdentityService::ensure_retailer(db, retailer_name)
        .await
        .map_err(|err| anyhow::anyhow!("bootstrap failed: {err}"))?;
    // Committing releases the advisory lock.
    lock.commit().await?;
    Ok((vault, retailer, admin))
}

/// Migrations only, for `hub migrate` (it needs the master key: an upgrade seals plaintext rows).
pub async fn migrate(db: &DatabaseConnection, master: MasterKey) -> anyhow::Result<Vault> {
    let lock = migration_lock(db).await?;
    let vault = migrate_under_lock(db, db, master).await?;
    lock.commit().await?;
    Ok(vault)
}

/// Migrates in two steps around the sealing of plaintext an older schema left: first every migration
/// before the one that drops the plaintext columns, then the keys are opened (or created) and what is
/// still plaintext is sealed, then the rest.
async fn migrate_under_lock(
    db: &DatabaseConnection,
    vault_db: &DatabaseConnection,
    master: MasterKey,
) -> anyhow::Result<Vault> {
    let pending: Vec<String> = Migrator::get_pending_migrations(db)
        .await
        .context("cannot list pending migrations")?
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let before_drop = pending
        .iter()
        .position(|name| name == migration::DROP_PLAINTEXT);
    if let Some(count) = before_drop {
        if count > 0 {
            Migrator::up(db, Some(count as u32))
                .await
                .context("migrations failed")?;
        }
    } else {
        Migrator::up(db, None).await.context("migrations failed")?;
    }
    let vault = Vault::load(vault_db.clone(), master).await?;
    if before_drop.is_some() {
        let sealed = crate::master_data::sensitive::seal_legacy_plaintext(db, &vault)
            .await
            .map_err(|err| anyhow::anyhow!("cannot seal plaintext customers: {err}"))?;
        Migrator::up(db, None).await.context("migrations failed")?;
        if sealed > 0 {
            scrub_freed_pages(db).await;
            tracing::info!(
                sealed,
                "customers sealed and their plaintext columns dropped"
            );
        }
    }
    Ok(vault)
}

/// After plaintext columns were dropped, rewrites the table so the old values do not linger in freed
/// pages (PostgreSQL keeps dead row versions and dropped columns' bytes until a rewrite; SQLite keeps
/// freed pages and WAL frames). Best effort: a failure is logged, the values are sealed regardless.
async fn scrub_freed_pages(db: &DatabaseConnection) {
    let statements: &[&str] = match db.get_database_backend() {
        DbBackend::Postgres => &["VACUUM FULL customer"],
        _ => &["VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for statement in statements {
        if let Err(err) = db.execute_unprepared(statement).await {
            tracing::warn!(error = %err, statement, "cannot rewrite the customer table after sealing");
        }
    }
}

/// A transaction holding the migration lock until it ends (PostgreSQL); SQLite has one process.
async fn migration_lock(db: &DatabaseConnection) -> anyhow::Result<DatabaseTransaction> {
    let lock = db.begin().await?;
    if db.get_database_backend() == DbBackend::Postgres {
        lock.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
        ))
        .await
        .context("cannot take the migration lock")?;
    }
    Ok(lock)
}

/// The `n`-th (from 1) bind placeholder of a raw statement on `backend`.
pub fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// Holds the PostgreSQL advisory lock `key` until `txn` ends, so writers of one kind take turns (SQLite's
/// write transactions already do).
pub async fn serialize_on(txn: &DatabaseTransaction, key: i64) -> ApiResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
            .await?;
    }
    Ok(())
}

/// Begins a write transaction: IMMEDIATE on SQLite (the write lock is taken at BEGIN, so concurrent
/// writers queue on the busy timeout instead of failing when a read transaction tries to upgrade).
pub async fn begin_write(db: &DatabaseConnection) -> ApiResult<DatabaseTransaction> {
    let options = TransactionOptions {
        sqlite_transaction_mode: (db.get_database_backend() == DbBackend::Sqlite)
            .then_some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    Ok(db.begin_with_options(options).await?)
}

/// Begins a read-only transaction whose statements all see one snapshot: REPEATABLE READ on
/// PostgreSQL; on SQLite (WAL) a deferred transaction, whose first read fixes the snapshot. For reads
/// that must agree with each other while writers go on (a chain's head, its pending count, its walk).
pub async fn begin_snapshot(db: &DatabaseConnection) -> ApiResult<DatabaseTransaction> {
    Ok(if db.get_database_backend() == DbBackend::Postgres {
        db.begin_with_config(
            Some(sea_orm::IsolationLevel::RepeatableRead),
            Some(sea_orm::AccessMode::ReadOnly),
        )
        .await?
    } else {
        db.begin().await?
    })
}

/// Runs `work` in a write transaction, committing on `Ok` and rolling back on `Err`. Inside a
/// mutation, the mutation's audit entry is appended in the same transaction (`audit::scope`).
///
/// On SQLite the transaction is IMMEDIATE: it takes the write lock at BEGIN, so concurrent writers queue
/// on the busy timeout instead of failing when a read transaction tries to upgrade.
pub async fn write_transaction<F, T>(db: &DatabaseConnection, work: F) -> ApiResult<T>
where
    F: for<'c> FnOnce(
            &'c DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'c>>
        + Send,
    T: Send,
{
    let txn = begin_write(db).await?;
    let mut staged_audit = false;
    let outcome = async {
        let value = work(&txn).await?;
        staged_audit = crate::audit::scope::append_in(&txn).await?;
        Ok(value)
    }
    .await;
    settle(txn, outcome, staged_audit).await
}

/// Ends a write transaction: commits on `Ok`, rolls back on `Err`. `staged_audit` says whether the
/// mutation's audit entry was written in it: if the transaction does not commit, the entry was not
/// appended after all, and a later transaction of the same mutation appends it.
pub(crate) async fn settle<T>(
    txn: DatabaseTransaction,
    outcome: ApiResult<T>,
    staged_audit: bool,
) -> ApiResult<T> {
    let outcome = match outcome {
        Ok(value) => txn.commit().await.map(|()| value).map_err(Into::into),
        Err(err) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection discards the transaction");
            }
            Err(err)
        }
    };
    match &outcome {
        Ok(_) => crate::audit::scope::committed(),
        Err(_) if staged_audit => crate::audit::scope::not_appended(),
        Err(_) => {}
    }
    outcome
}

/// [`write_transaction`] for work that sends its writes together: `work` gets the transaction and its
/// database time and returns its value with the writes it staged; the mutation's audit entry joins
/// them, and all go in one step (`writes::Writes`) before the commit.
pub async fn write_staged<F, T>(db: &DatabaseConnection, work: F) -> ApiResult<T>
where
    F: for<'c> FnOnce(
            &'c DatabaseTransaction,
            chrono::DateTime<chrono::Utc>,
        )
            -> Pin<Box<dyn Future<Output = ApiResult<(T, writes::Writes)>> + Send + 'c>>
        + Send,
    T: Send,
{
    let txn = begin_write(db).await?;
    let mut staged_audit = false;
    let outcome = async {
        let now = database_now(&txn).await?;
        let (value, mut writes) = work(&txn, now).await?;
        staged_audit = crate::audit::scope::stage_entry(&mut writes, now)?;
        writes.run(&txn).await?;
        Ok(value)
    }
    .await;
    settle(txn, outcome, staged_audit).await
}

/// Takes PostgreSQL's advisory lock `key` until the end of `txn`, without waiting: false when another
/// transaction holds it. Always true on SQLite, whose write transactions already run one at a time.
pub async fn try_advisory_xact_lock<C: ConnectionTrait>(txn: &C, key: i64) -> ApiResult<bool> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(true);
    }
    Ok(txn
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_try_advisory_xact_lock({key}) AS locked"),
        ))
        .await?
        .ok_or_else(|| {
            crate::error::ApiError::Internal(anyhow::anyhow!(
                "the advisory lock query returned no row"
            ))
        })?
        .try_get::<bool>("", "locked")?)
}

/// PostgreSQL's clock as RFC 3339 text in UTC, for a column of a raw statement (`parse_now`).
/// `now()` is the transaction's start: every statement of a transaction reads the same time.
pub(crate) const NOW_TEXT_PG: &str =
    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

/// The database's clock: deadlines are judged by it, never by a caller's or a replica's clock.
pub async fn database_now<C: ConnectionTrait>(db: &C) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => format!("SELECT {NOW_TEXT_PG} AS now"),
        _ => "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS now".to_owned(),
    };
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| {
            crate::error::ApiError::Internal(anyhow::anyhow!("the database returned no time"))
        })?;
    parse_now(&row.try_get::<String>("", "now")?)
}

/// Reads the database's clock as it wrote it (RFC 3339).
pub(crate) fn parse_now(text: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|err| {
            crate::error::ApiError::Internal(anyhow::anyhow!("database time {text}: {err}"))
        })
}

/// Readiness: the database answers a trivial query.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
}
