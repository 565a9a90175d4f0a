//! The live feed of one replica: reads each new batch of stamped events from the table once, and hands
//! each event to the organizations that may see it.
//!
//! Cost does not grow with subscribers times events: the feed reads a batch once per replica, decides
//! visibility once per event and organization (its recipients, fixed when the event was written), and
//! sends one shared copy on that organization's channel. A subscriber wakes only for its own
//! organization's events.
//!
//! Following without gap or duplicate ([`EventFeed::follow`]): a subscriber joins its organization's
//! channel *first*, then replays from the table everything after its cursor, then takes live events,
//! skipping those at or before the last position it delivered. Anything stamped before it joined is in
//! the replay; anything the feed reads after it joined comes through the channel; the overlap is
//! skipped by position.
//!
//! Bounded memory: each organization's channel holds at most `capacity` events. A subscriber that
//! falls further behind than that is not buffered for: it is ended with [`ApiError::SlowConsumer`]
//! and the cursor of the last event it was given, from which it can resume. The one exception is the
//! moment right after a replay, when the channel may have moved on while the table was being read:
//! then the subscriber replays again from the table instead.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use entities::{event, event_recipient};
use futures_util::{Stream, StreamExt};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, Func},
};
use tokio::{
    sync::{Notify, broadcast},
    task::JoinHandle,
};
use uuid::Uuid;

use super::EventService;
use crate::{auth::Principal, error::ApiError, records::RecordKind};

/// Events read per statement.
const READ_BATCH: u64 = 500;
/// Events replayed per statement.
const REPLAY_BATCH: u64 = 500;

/// A replica's live feed of stamped events.
#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    wake: Arc<Notify>,
    poll: Duration,
    capacity: usize,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Arc<event::Model>>>>,
    /// The highest position read so far.
    head: AtomicI64,
}

impl EventFeed {
    /// A feed woken by `wake` and, failing that, every `poll`; each organization's channel holds at
    /// most `capacity` events.
    pub fn new(db: DatabaseConnection, wake: Arc<Notify>, poll: Duration, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                wake,
                poll,
                capacity: capacity.max(1),
                channels: Mutex::new(HashMap::new()),
                head: AtomicI64::new(0),
            }),
        }
    }

    /// Starts the feed after the newest event stamped now. Called before the hub serves: a subscriber
    /// that joined earlier would miss what was stamped between its replay and the feed's start.
    pub async fn initialize(&self) -> Result<(), ApiError> {
        let newest = self.newest_position().await?;
        self.inner.head.store(newest, Ordering::SeqCst);
        Ok(())
    }

    /// Reads new events until the process ends (after [`Self::initialize`]).
    pub fn spawn(&self) -> JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            loop {
                // A wake-up that arrives while reading is kept by `Notify` and ends the next wait.
                let _ = tokio::time::timeout(feed.inner.poll, feed.inner.wake.notified()).await;
                loop {
                    match feed.read_new().await {
                        Ok(n) if n >= feed.read_batch() as usize => {
                            // Let subscribers take this batch before the next one is sent.
                            tokio::task::yield_now().await;
                            continue;
                        }
                        Ok(_) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "reading new events failed; retrying");
                            break;
                        }
                    }
                }
            }
        })
    }

    async fn newest_position(&self) -> Result<i64, ApiError> {
        let newest: Option<Option<i64>> = event::Entity::find()
            .select_only()
            .column_as(
                Expr::expr(Func::max(Expr::col(event::Column::Position))),
                "newest",
            )
            .into_tuple()
            .one(&self.inner.db)
            .await?;
        Ok(newest.flatten().unwrap_or(0))
    }

    /// Events sent per read: at most half a channel's capacity, so that a burst (a backlog after an
    /// outage, or many commits stamped at once) never overflows a subscriber that keeps up.
    fn read_batch(&self) -> u64 {
        READ_BATCH.min((self.inner.capacity / 2).max(1) as u64)
    }

    /// Reads the next batch after the head and sends each event to its recipients' channels.
    async fn read_new(&self) -> Result<usize, ApiError> {
        let head = self.inner.head.load(Ordering::SeqCst);
        let events = event::Entity::find()
            .filter(event::Column::Position.gt(head))
            .order_by_asc(event::Column::Position)
            .limit(self.read_batch())
            .all(&self.inner.db)
            .await?;
        let Some(last) = events.last().and_then(|event| event.position) else {
            return Ok(0);
        };
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        let mut recipients: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for row in event_recipient::Entity::find()
            .filter(event_recipient::Column::EventId.is_in(ids))
            .all(&self.inner.db)
            .await?
        {
            recipients
                .entry(row.event_id)
                .or_default()
                .push(row.organization_id);
        }
        let count = events.len();
        {
            let mut channels = self
                .inner
                .channels
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Organizations nobody follows any more give their buffers back.
            channels.retain(|_, channel| channel.receiver_count() > 0);
            for event in events {
                let event = Arc::new(event);
                for organization in recipients.get(&event.id).into_iter().flatten() {
                    if let Some(channel) = channels.get(organization) {
                        // An error means nobody listens any more; the next round drops the channel.
                        let _ = channel.send(event.clone());
                    }
                }
            }
        }
        self.inner.head.store(last, Ordering::SeqCst);
        metrics::counter!("hub_feed_events_read_total").increment(count as u64);
        Ok(count)
    }

    fn join(&self, organization: Uuid) -> broadcast::Receiver<Arc<event::Model>> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channels
            .entry(organization)
            .or_insert_with(|| broadcast::channel(self.inner.capacity).0)
            .subscribe()
    }

    /// The events the caller's organization may see, after `after` (replayed from the table) and then
    /// live, in position order, without gap or duplicate.
    pub fn follow(
        &self,
        events: EventService,
        principal: Principal,
        after: Option<i64>,
    ) -> impl Stream<Item = Result<Arc<event::Model>, ApiError>> + Send + 'static + use<> {
        let mut live = self.join(principal.organization_id);
        // Without a cursor, "live" starts at joining: the newest position this replica had read then
        // (taken here, not at the stream's first poll, which may come much later).
        let start = after.unwrap_or_else(|| self.inner.head.load(Ordering::SeqCst));
        async_stream::stream! {
            let mut cursor = start;
            let mut replay = after.is_some();
            loop {
                if replay {
                    loop {
                        let (rows, more) = match events.events(&principal, Some(cursor), REPLAY_BATCH).await {
                            Ok(page) => page,
                            Err(err) => {
                                yield Err(err);
                                return;
                            }
                        };
                        for row in rows {
                            cursor = row.position.unwrap_or(cursor);
                            yield Ok(Arc::new(row));
                        }
                        if !more {
                            break;
                        }
                    }
                }
                let caught_up = replay;
                let mut first = true;
                loop {
                    match live.recv().await {
                        Ok(event) => {
                            first = false;
                            let position = event.position.unwrap_or_default();
                            if position <= cursor {
                                continue;
                            }
                            cursor = position;
                            yield Ok(event);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) if caught_up && first => {
                            // The channel moved on while the table was read: read the table again.
                            replay = true;
                            break;
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::info!(missed, cursor, "subscriber fell behind; ended with its cursor");
                            metrics::counter!("hub_subscription_slow_consumer_closes_total").increment(1);
                            yield Err(ApiError::SlowConsumer { cursor });
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        }
    }

    /// Follows one record: yields `current`, then the record as `read` finds it after each event about
    /// it (when it changed), until `done` says it is final. The feed is joined before `current` is
    /// passed in, so no change between that read and the first event can be missed.
    pub fn follow_record<M, Read, Fut>(
        followed: impl Stream<Item = Result<Arc<event::Model>, ApiError>> + Send + 'static,
        kind: RecordKind,
        id: Uuid,
        current: M,
        read: Read,
        done: fn(&M) -> bool,
    ) -> impl Stream<Item = Result<M, ApiError>> + Send + 'static
    where
        M: PartialEq + Clone + Send + 'static,
        Read: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<M, ApiError>> + Send,
    {
        async_stream::stream! {
            let mut last = current;
            yield Ok(last.clone());
            if done(&last) {
                return;
            }
            let mut followed = std::pin::pin!(followed);
            while let Some(item) = followed.next().await {
                let event = match item {
                    Ok(event) => event,
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                };
                if event.record_type != kind.name() || event.record_id != id {
                    continue;
                }
                // Read again with the caller's visibility at delivery time.
                match read().await {
                    Ok(now) if now != last => {
                        Self::record_delivery(&event);
                        last = now.clone();
                        yield Ok(now);
                        if done(&last) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                }
            }
        }
    }

    /// Seconds from an event's commit to now, for the delivery-lag metric.
    pub fn record_delivery(event: &event::Model) {
        let lag = (Utc::now() - event.occurred_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        metrics::counter!("hub_subscription_deliveries_total").increment(1);
        metrics::histogram!("hub_subscription_delivery_lag_seconds").record(lag.max(0.0));
    }
}
