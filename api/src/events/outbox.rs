//! The outbox. Writers insert an event row (without a position) in the transaction of the change they
//! announce. After commit, one stamper at a time (a PostgreSQL advisory lock; SQLite has a single writer)
//! gives the committed, unstamped rows the next positions in order. Readers follow positions only, so an
//! event that commits late gets a later position instead of one a reader has already passed.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use entities::{event, event_recipient};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
    sea_query::{Expr, ExprTrait, Func, Query},
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::bus::{Bus, PG_CHANNEL};
use crate::{
    auth::Principal,
    db::{
        try_advisory_xact_lock,
        worker::{Pace, Round, spawn_worker},
        write_transaction,
        writes::Writes,
    },
    error::{ApiError, ApiResult},
    records::RecordKind,
};

/// Key of the advisory lock held by the one stamper at work.
const STAMPER_LOCK_KEY: i64 = 0x4943_485f_5354_4d50; // "ICH_STMP"
/// The stamper also wakes on this period, to pick up what another replica committed.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// After a wake-up the stamper waits this long, so that under load one round stamps the events of many
/// commits instead of one transaction per commit.
const GATHER: Duration = Duration::from_millis(5);
/// Rows stamped per round.
const BATCH: i64 = 1000;

/// The family of financial events (orders, invoices, payments and their requests).
pub const FINANCIAL: &str = "FINANCIAL";
/// The family of work events (work plans and their records).
pub const WORK: &str = "WORK";
/// The family of logistic events (deliveries and their travel records).
pub const LOGISTIC: &str = "LOGISTIC";

/// An event to record with a change. Carries ids, types, parties and status, never sensitive values.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub family: &'static str,
    pub record_type: RecordKind,
    pub record_id: Uuid,
    pub status: String,
    pub owner: Uuid,
    /// Organizations besides the owner that may see the event.
    pub parties: Vec<Uuid>,
}

/// Inserts the event and its recipients; call inside the transaction of the change.
pub async fn record<C: ConnectionTrait>(txn: &C, event: NewEvent) -> ApiResult<()> {
    let mut writes = Writes::new();
    stage_event(&mut writes, event);
    writes.run(txn).await.map(drop)
}

/// Adds the event and its recipients to `writes` (for a step that sends its writes together).
pub fn stage_event(writes: &mut Writes, event: NewEvent) {
    // The record an event announces is the one the current mutation changed (for its audit entry).
    crate::audit::touch(event.record_type, event.record_id);
    let id = Uuid::now_v7();
    let mut recipients = vec![event.owner];
    recipients.extend(
        event
            .parties
            .into_iter()
            .filter(|party| *party != event.owner),
    );
    recipients.sort();
    recipients.dedup();
    writes.insert(
        event::Entity::insert(event::ActiveModel {
            id: Set(id),
            position: Set(None),
            event_type: Set(event.event_type.to_owned()),
            family: Set(event.family.to_owned()),
            record_type: Set(event.record_type.name().to_owned()),
            record_id: Set(event.record_id),
            status: Set(event.status),
            owner_organization_id: Set(event.owner),
            occurred_at: Set(Utc::now()),
            ..Default::default()
        })
        .into_query(),
    );
    writes.insert(
        event_recipient::Entity::insert_many(recipients.into_iter().map(|organization| {
            event_recipient::ActiveModel {
                event_id: Set(id),
                organization_id: Set(organization),
            }
        }))
        .into_query(),
    );
}

/// Stamps positions; one per process, woken after local commits and on a timer.
#[derive(Clone)]
pub struct Outbox {
    db: DatabaseConnection,
    wake: Arc<Notify>,
    bus: Bus,
}

impl Outbox {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
            bus,
        }
    }

    /// The bus that announces stamped positions.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The background pool the stamper works on.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Tells the stamper that a transaction with events committed.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// Runs the stamper until the process ends.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        let pace = Pace {
            poll: POLL_INTERVAL,
            gather: GATHER,
        };
        spawn_worker("event stamper", self.wake.clone(), pace, move || {
            let outbox = outbox.clone();
            async move {
                let stamped = outbox.stamp().await?;
                if stamped > 0 {
                    outbox.bus.stamped();
                }
                Ok(if stamped >= BATCH as u64 {
                    Round::More
                } else {
                    Round::Done
                })
            }
        })
    }

    /// Gives committed, unstamped events the next positions, in insert order. Returns how many.
    pub async fn stamp(&self) -> ApiResult<u64> {
        let notify = self.bus.notify_in_transaction();
        write_transaction(&self.db, |txn| {
            Box::pin(async move {
                let backend = txn.get_database_backend();
                if !try_advisory_xact_lock(txn, STAMPER_LOCK_KEY).await? {
                    // Another replica is stamping; it (or our next round) picks these rows up.
                    return Ok(0);
                }
                // The pending rows and the base are read once, before any row changes.
                let sql = format!(
                    "UPDATE event SET position = pending.base + pending.n FROM ( \
                       SELECT seq, (SELECT COALESCE(MAX(position), 0) FROM event) AS base, \
                              ROW_NUMBER() OVER (ORDER BY seq) AS n \
                       FROM event WHERE position IS NULL ORDER BY seq LIMIT {BATCH} \
                     ) AS pending WHERE event.seq = pending.seq"
                );
                let stamped = txn
                    .execute_raw(Statement::from_string(backend, sql))
                    .await?
                    .rows_affected();
                if notify && stamped > 0 {
                    // Delivered to every listening replica when this transaction commits.
                    txn.execute_raw(Statement::from_string(
                        backend,
                        format!("SELECT pg_notify('{PG_CHANNEL}', '')"),
                    ))
                    .await?;
                }
                Ok(stamped)
            })
        })
        .await
    }
}

/// Reading events.
#[derive(Clone)]
pub struct EventService {
    db: DatabaseConnection,
}

impl EventService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Refuses a cursor from before the oldest event kept (resuming there would skip the purged ones in
    /// silence) and one beyond the newest (it was never given out, and would skip what comes next).
    /// Positions are contiguous, so the oldest and newest positions say it all.
    async fn check_cursor_kept(&self, cursor: i64) -> ApiResult<()> {
        let bounds: Option<(Option<i64>, Option<i64>)> = event::Entity::find()
            .select_only()
            .column_as(
                Expr::expr(Func::min(Expr::col(event::Column::Position))),
                "oldest",
            )
            .column_as(
                Expr::expr(Func::max(Expr::col(event::Column::Position))),
                "newest",
            )
            .into_tuple()
            .one(&self.db)
            .await?;
        let (oldest, newest) = bounds.unwrap_or_default();
        if let Some(oldest) = oldest
            && oldest > cursor.saturating_add(1)
        {
            return Err(ApiError::CursorExpired { cursor, oldest });
        }
        if cursor > newest.unwrap_or(0) {
            return Err(ApiError::validation("after", "beyond the newest event"));
        }
        Ok(())
    }

    /// Stamped events the caller's organization may see, after `after`, in position order. Returns the
    /// events and whether more follow.
    pub async fn events(
        &self,
        principal: &Principal,
        after: Option<i64>,
        first: u64,
    ) -> ApiResult<(Vec<event::Model>, bool)> {
        crate::policy::authorize(principal, crate::policy::Action::ReadOwnOrganization)?;
        if first == 0 || first > 500 {
            return Err(ApiError::validation("first", "must be between 1 and 500"));
        }
        if let Some(cursor) = after {
            self.check_cursor_kept(cursor).await?;
        }
        let mut recipients = Query::select();
        recipients
            .column(event_recipient::Column::EventId)
            .from(event_recipient::Entity)
            .and_where(
                Expr::col(event_recipient::Column::OrganizationId).eq(principal.organization_id),
            );
        let mut rows = event::Entity::find()
            .filter(event::Column::Position.is_not_null())
            .filter(event::Column::Position.gt(after.unwrap_or(0)))
            .filter(event::Column::Id.in_subquery(recipients.to_owned()))
            .order_by_asc(event::Column::Position)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Ok((rows, more))
    }
}
