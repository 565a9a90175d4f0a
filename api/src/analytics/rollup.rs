//! The daily sales roll-up: what placed orders sold, per owner, UTC day, product, supplier and currency.
//!
//! An order's transaction only inserts its contribution into `sales_pending` (one row per product and
//! supplier; negative when a placed order is cancelled), so orders of the same product never wait on a
//! shared row. The folder moves pending rows into `sales_daily` after commit, one folder at a time (a
//! PostgreSQL advisory lock; SQLite has one writer) and one owner per transaction, deleting them in the
//! same transaction that adds them. A reader that sums both tables in one statement sees every order
//! exactly once, before or after any fold. The rules are in `docs/analytics.md`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::NaiveDate;
use entities::{order, order_line, sales_daily, sales_pending};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    db::{
        try_advisory_xact_lock,
        worker::{Pace, Round, spawn_worker},
        write_transaction,
    },
    error::{ApiError, ApiResult},
};

/// Key of the PostgreSQL advisory lock held by the one folder at work.
pub const FOLDER_LOCK_KEY: i64 = 0x4943_485f_5341_4c45; // "ICH_SALE"
/// The folder also wakes on this period, to fold what another replica committed.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// After a wake-up the folder waits this long, so that one round folds many orders.
const GATHER: Duration = Duration::from_millis(20);
/// Pending rows folded per round (one transaction, one owner).
const BATCH: u64 = 2_000;
/// The pause between two rounds of one wake-up.
const ROUND_PAUSE: Duration = Duration::from_millis(2);
/// How long an owner whose fold failed is left aside before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Roll-up rows per upsert statement (8 values each, within SQLite's bound-parameter limit).
const UPSERT_CHUNK: usize = 500;

/// How an order's step changes what it sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesChange {
    Placed,
    Cancelled,
}

/// The UTC day of an order's placement, as a SQL expression over `sales_order.placed_at`.
pub(crate) fn placed_day(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CAST(sales_order.placed_at AT TIME ZONE 'UTC' AS DATE)",
        // Timestamps are RFC 3339 text in UTC there: the day is the first ten characters.
        _ => "substr(sales_order.placed_at, 1, 10)",
    }
}

/// Writes what order `order_id` adds to the roll-up (placed) or takes from it (cancelled), in the
/// caller's transaction, after the order's status changed. An order that was never placed (a draft
/// being cancelled) changes nothing.
pub async fn record_order_sales<C: ConnectionTrait>(
    txn: &C,
    order_id: Uuid,
    change: SalesChange,
) -> ApiResult<()> {
    let sign: i64 = match change {
        SalesChange::Placed => 1,
        SalesChange::Cancelled => -1,
    };
    let backend = txn.get_database_backend();
    let day = placed_day(backend);
    let mut contribution = Query::select();
    contribution
        .column((order::Entity, order::Column::OwnerOrganizationId))
        .expr(Expr::cust(day))
        .column((order_line::Entity, order_line::Column::ProductId))
        .column((
            order_line::Entity,
            order_line::Column::SupplierOrganizationId,
        ))
        .column((order::Entity, order::Column::Currency))
        .expr(Expr::cust(format!("{sign} * SUM(order_line.quantity)")))
        .expr(Expr::cust(format!(
            "{sign} * SUM(order_line.line_total_minor)"
        )))
        .expr(Expr::val(sign))
        .from(order_line::Entity)
        .inner_join(
            order::Entity,
            Expr::col((order::Entity, order::Column::Id))
                .equals((order_line::Entity, order_line::Column::OrderId)),
        )
        .and_where(Expr::col((order::Entity, order::Column::Id)).eq(order_id))
        .and_where(Expr::col((order::Entity, order::Column::PlacedAt)).is_not_null())
        .add_group_by([
            Expr::col((order::Entity, order::Column::OwnerOrganizationId)),
            Expr::cust(day),
            Expr::col((order_line::Entity, order_line::Column::ProductId)),
            Expr::col((
                order_line::Entity,
                order_line::Column::SupplierOrganizationId,
            )),
            Expr::col((order::Entity, order::Column::Currency)),
        ]);
    let insert = Query::insert()
        .into_table(sales_pending::Entity)
        .columns([
            sales_pending::Column::OwnerOrganizationId,
            sales_pending::Column::Day,
            sales_pending::Column::ProductId,
            sales_pending::Column::SupplierOrganizationId,
            sales_pending::Column::Currency,
            sales_pending::Column::Quantity,
            sales_pending::Column::RevenueMinor,
            sales_pending::Column::Orders,
        ])
        .select_from(contribution)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("sales contribution: {err}")))?
        .to_owned();
    txn.execute(&insert).await?;
    Ok(())
}

/// The key of one `sales_daily` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DayKey {
    owner: Uuid,
    day: NaiveDate,
    product: Uuid,
    supplier: Uuid,
    currency: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct DaySums {
    quantity: i64,
    revenue_minor: i64,
    orders: i64,
}

impl DaySums {
    fn add(&mut self, row: &sales_pending::Model) -> ApiResult<()> {
        let overflow = || ApiError::Internal(anyhow::anyhow!("a daily sales sum overflows"));
        self.quantity = self
            .quantity
            .checked_add(row.quantity)
            .ok_or_else(overflow)?;
        self.revenue_minor = self
            .revenue_minor
            .checked_add(row.revenue_minor)
            .ok_or_else(overflow)?;
        self.orders = self.orders.checked_add(row.orders).ok_or_else(overflow)?;
        Ok(())
    }
}

/// What one round of the folder did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldRound {
    /// Folded this many contributions of one owner.
    Folded(u64),
    /// An owner's contributions could not be folded; it is set aside for a while.
    SetAside,
    /// Nothing to fold (or another replica's folder is at work).
    Idle,
}

/// Moves pending contributions into the roll-up, after commit.
///
/// A round folds one owner's contributions (a roll-up row never spans owners), so an owner whose sums
/// cannot be folded (a day's revenue beyond 64 bits, say) holds back only itself: it is set aside for
/// [`RETRY_AFTER`], its figure stays exact from its pending contributions, and the others go on.
#[derive(Clone)]
pub struct SalesFolder {
    db: DatabaseConnection,
    wake: Arc<Notify>,
    set_aside: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl SalesFolder {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
            set_aside: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// What the write path notifies after committing a contribution.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs the folder until the process ends.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let folder = self.clone();
        let pace = Pace {
            poll: POLL_INTERVAL,
            gather: GATHER,
        };
        spawn_worker("sales folder", self.wake.clone(), pace, move || {
            let folder = folder.clone();
            async move {
                Ok(match folder.fold_round().await? {
                    FoldRound::Folded(_) | FoldRound::SetAside => {
                        // A pause between rounds lets requests take SQLite's one write lock.
                        tokio::time::sleep(ROUND_PAUSE).await;
                        Round::More
                    }
                    FoldRound::Idle => Round::Done,
                })
            }
        })
    }

    /// Folds up to one batch of the contributions of the owner with the oldest one (skipping owners set
    /// aside).
    pub async fn fold_round(&self) -> ApiResult<FoldRound> {
        let now = Instant::now();
        let skipped: Vec<Uuid> = {
            let mut set_aside = self
                .set_aside
                .lock()
                .map_err(|_| ApiError::Internal(anyhow::anyhow!("sales folder state poisoned")))?;
            set_aside.retain(|_, until| *until > now);
            set_aside.keys().copied().collect()
        };
        // Nothing pending: no write transaction (SQLite would take its one write lock for it).
        let owner = sales_pending::Entity::find()
            .select_only()
            .column(sales_pending::Column::OwnerOrganizationId)
            .filter(sales_pending::Column::OwnerOrganizationId.is_not_in(skipped))
            .order_by_asc(sales_pending::Column::Seq)
            .limit(1)
            .into_tuple::<Uuid>()
            .one(&self.db)
            .await?;
        let Some(owner) = owner else {
            return Ok(FoldRound::Idle);
        };
        match self.fold_owner(owner).await {
            Ok(0) => Ok(FoldRound::Idle),
            Ok(folded) => {
                metrics::counter!("hub_sales_contributions_folded_total").increment(folded);
                Ok(FoldRound::Folded(folded))
            }
            Err(err) => {
                tracing::error!(organization = %owner, error = %err,
                    "an organization's sales contributions could not be folded; its figure is read \
                     from them meanwhile, and the fold is retried later");
                metrics::counter!("hub_sales_fold_failures_total").increment(1);
                if let Ok(mut set_aside) = self.set_aside.lock() {
                    set_aside.insert(owner, now + RETRY_AFTER);
                }
                Ok(FoldRound::SetAside)
            }
        }
    }

    /// One transaction: deletes up to a batch of `owner`'s contributions and adds them into the
    /// roll-up, so a contribution is folded once or not at all.
    async fn fold_owner(&self, owner: Uuid) -> ApiResult<u64> {
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                if !try_advisory_xact_lock(txn, FOLDER_LOCK_KEY).await? {
                    return Ok(0);
                }
                let mut batch = Query::select();
                batch
                    .column(sales_pending::Column::Seq)
                    .from(sales_pending::Entity)
                    .and_where(Expr::col(sales_pending::Column::OwnerOrganizationId).eq(owner))
                    .order_by(sales_pending::Column::Seq, sea_orm::Order::Asc)
                    .limit(BATCH);
                let moved = sales_pending::Entity::delete_many()
                    .filter(Expr::col(sales_pending::Column::Seq).in_subquery(batch))
                    .exec_with_returning(txn)
                    .await?;
                let mut sums: BTreeMap<DayKey, DaySums> = BTreeMap::new();
                for row in &moved {
                    let key = DayKey {
                        owner: row.owner_organization_id,
                        day: row.day,
                        product: row.product_id,
                        supplier: row.supplier_organization_id.unwrap_or(Uuid::nil()),
                        currency: row.currency.clone(),
                    };
                    sums.entry(key).or_default().add(row)?;
                }
                // In key order, so two folders (were the lock ever bypassed) cannot deadlock.
                let rows: Vec<(DayKey, DaySums)> = sums.into_iter().collect();
                for chunk in rows.chunks(UPSERT_CHUNK) {
                    upsert(txn, chunk).await?;
                }
                Ok(moved.len() as u64)
            })
        })
        .await
    }
}

/// Adds `rows` to their `sales_daily` rows, creating the ones that do not exist yet.
async fn upsert<C: ConnectionTrait>(txn: &C, rows: &[(DayKey, DaySums)]) -> ApiResult<()> {
    let models = rows.iter().map(|(key, sums)| sales_daily::ActiveModel {
        owner_organization_id: sea_orm::Set(key.owner),
        day: sea_orm::Set(key.day),
        product_id: sea_orm::Set(key.product),
        supplier_key: sea_orm::Set(key.supplier),
        currency: sea_orm::Set(key.currency.clone()),
        quantity: sea_orm::Set(sums.quantity),
        revenue_minor: sea_orm::Set(sums.revenue_minor),
        orders: sea_orm::Set(sums.orders),
    });
    let add = |column: sales_daily::Column| {
        let name = sea_orm::IdenStatic::as_str(&column);
        (
            column,
            Expr::cust(format!("sales_daily.{name} + excluded.{name}")),
        )
    };
    sales_daily::Entity::insert_many(models)
        .on_conflict(
            OnConflict::columns([
                sales_daily::Column::OwnerOrganizationId,
                sales_daily::Column::Day,
                sales_daily::Column::ProductId,
                sales_daily::Column::SupplierKey,
                sales_daily::Column::Currency,
            ])
            .values([
                add(sales_daily::Column::Quantity),
                add(sales_daily::Column::RevenueMinor),
                add(sales_daily::Column::Orders),
            ])
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
