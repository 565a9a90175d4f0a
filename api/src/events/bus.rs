//! Wake-ups between replicas: "new event positions were stamped".
//!
//! The event table is the only source of truth; the bus carries no event, only the news that there is
//! something to read. Each replica's feed ([`super::feed`]) reads from the table when woken and also on
//! a timer, so a lost wake-up (Redis down, a dropped LISTEN connection) costs latency, never an event,
//! and a write never waits for or fails because of the bus.
//!
//! - With Redis: the stamper publishes on [`REDIS_CHANNEL`]; every replica subscribes.
//! - PostgreSQL without Redis: the stamping transaction itself sends `NOTIFY` (delivered at commit);
//!   every replica listens.
//! - SQLite (one process): the stamper wakes the feed in-process.
//!
//! The same carrier announces access changes (a member removed, a device revoked) to every replica's
//! [`AccessCache`], on [`ACCESS_REDIS_CHANNEL`] or [`ACCESS_PG_CHANNEL`]. Announcements are best effort
//! like wake-ups: the cache's TTL bounds what a lost one costs, and every (re)connection of the listener
//! empties the cache, since announcements may have been missed while it was away.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::auth::{AccessCache, AccessKey};

use futures_util::StreamExt;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::{sync::Notify, task::JoinHandle};

/// The Redis pub/sub channel of stamp wake-ups.
pub const REDIS_CHANNEL: &str = "ich:events:stamped";
/// The PostgreSQL NOTIFY channel of stamp wake-ups (without Redis).
pub const PG_CHANNEL: &str = "ich_events_stamped";
/// The Redis pub/sub channel of access changes (payload: [`AccessKey::encode`]).
pub const ACCESS_REDIS_CHANNEL: &str = "ich:access:changed";
/// The PostgreSQL NOTIFY channel of access changes (without Redis).
pub const ACCESS_PG_CHANNEL: &str = "ich_access_changed";
/// A publish that takes longer is abandoned: the readers' timers cover it.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a lost subscription waits before it tries again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Clone)]
enum Carrier {
    InProcess,
    Redis {
        client: redis::Client,
        publisher: redis::aio::ConnectionManager,
    },
    Postgres {
        db: DatabaseConnection,
    },
}

/// Carries stamp wake-ups to the feed of this replica and of every other.
#[derive(Clone)]
pub struct Bus {
    carrier: Carrier,
    /// Woken when this replica, or (through the carrier) any other, stamped positions.
    local: Arc<Notify>,
    /// This replica's cache of callers' records, which access announcements invalidate.
    access: Arc<AccessCache>,
    /// Whether the listener is connected now (always, in-process).
    listening: Arc<AtomicBool>,
}

impl Bus {
    /// The bus for a deployment: Redis when given, else NOTIFY on PostgreSQL, else in-process.
    pub fn new(
        db: &DatabaseConnection,
        redis: Option<(redis::Client, redis::aio::ConnectionManager)>,
        access: Arc<AccessCache>,
    ) -> Self {
        let carrier = match (redis, db.get_database_backend()) {
            (Some((client, publisher)), _) => Carrier::Redis { client, publisher },
            (None, DatabaseBackend::Postgres) => Carrier::Postgres { db: db.clone() },
            (None, _) => Carrier::InProcess,
        };
        Self {
            listening: Arc::new(AtomicBool::new(matches!(carrier, Carrier::InProcess))),
            carrier,
            local: Arc::new(Notify::new()),
            access,
        }
    }

    /// What carries wake-ups between replicas, for logs and `/readyz`.
    pub fn carrier_name(&self) -> &'static str {
        match self.carrier {
            Carrier::InProcess => "in-process",
            Carrier::Redis { .. } => "redis",
            Carrier::Postgres { .. } => "postgres-notify",
        }
    }

    /// Whether the stamping transaction must send the NOTIFY itself.
    pub fn notify_in_transaction(&self) -> bool {
        matches!(self.carrier, Carrier::Postgres { .. })
    }

    /// Whether announcements and wake-ups from other replicas reach this one now.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Woken on every stamp this replica learns of.
    pub fn wake_ups(&self) -> Arc<Notify> {
        self.local.clone()
    }

    /// Called after positions were stamped and committed here: wakes the local feed and tells the
    /// other replicas. Never waits on Redis: the publish runs on its own task with a deadline.
    pub fn stamped(&self) {
        self.local.notify_one();
        if let Carrier::Redis { publisher, .. } = &self.carrier {
            publish(publisher.clone(), REDIS_CHANNEL, String::new());
        }
    }

    /// Called after a change that can take access away committed here: drops the caller's cached
    /// records in this replica before returning, and announces the change to the others (without
    /// waiting: their caches' TTL covers an announcement that is lost).
    pub fn access_changed(&self, key: AccessKey) {
        self.access.invalidate(key);
        match &self.carrier {
            Carrier::InProcess => {}
            Carrier::Redis { publisher, .. } => {
                publish(publisher.clone(), ACCESS_REDIS_CHANNEL, key.encode())
            }
            Carrier::Postgres { db } => {
                // Also called from `Drop` (see [`AnnounceOnDrop`]): never panic outside a runtime.
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let db = db.clone();
                runtime.spawn(async move {
                    let statement = sea_orm::Statement::from_sql_and_values(
                        DatabaseBackend::Postgres,
                        "SELECT pg_notify($1, $2)",
                        [ACCESS_PG_CHANNEL.into(), key.encode().into()],
                    );
                    let notify = sea_orm::ConnectionTrait::execute_raw(&db, statement);
                    match tokio::time::timeout(PUBLISH_TIMEOUT, notify).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "access change not announced (other replicas' caches expire)")
                        }
                        Err(_) => tracing::warn!(
                            "access change announcement timed out (other replicas' caches expire)"
                        ),
                    }
                });
            }
        }
    }

    /// A guard that calls [`Self::access_changed`] when dropped. Take it before the transaction that
    /// changes access: however the function ends (answered, failed after the commit, or cancelled by
    /// the request's deadline), the change is announced; an extra announcement costs a cache miss, a
    /// missing one could leave a removed caller in for the cache's TTL.
    pub fn announce_on_drop(&self, key: AccessKey) -> AnnounceOnDrop {
        AnnounceOnDrop {
            bus: self.clone(),
            key,
        }
    }

    /// Listens for other replicas' wake-ups until the process ends, reconnecting when the carrier
    /// drops. Every (re)connection also wakes the feed, to read what was missed meanwhile.
    pub fn spawn_listener(&self) -> Option<JoinHandle<()>> {
        let local = self.local.clone();
        let access = self.access.clone();
        let listening = self.listening.clone();
        match self.carrier.clone() {
            Carrier::InProcess => None,
            Carrier::Redis { client, .. } => Some(tokio::spawn(async move {
                loop {
                    let outcome = listen_redis(&client, &local, &access, &listening).await;
                    listening.store(false, Ordering::Release);
                    match outcome {
                        Ok(()) => tracing::warn!("Redis wake-up subscription ended; reconnecting"),
                        Err(err) => {
                            tracing::warn!(error = %err, "Redis wake-up subscription failed; readers poll until it is back")
                        }
                    }
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            })),
            Carrier::Postgres { db } => Some(tokio::spawn(async move {
                loop {
                    let outcome = listen_postgres(&db, &local, &access, &listening).await;
                    listening.store(false, Ordering::Release);
                    if let Err(err) = outcome {
                        tracing::warn!(error = %err, "PostgreSQL LISTEN failed; readers poll until it is back");
                    }
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            })),
        }
    }
}

/// See [`Bus::announce_on_drop`].
#[must_use = "the announcement is made when the guard is dropped"]
pub struct AnnounceOnDrop {
    bus: Bus,
    key: AccessKey,
}

impl Drop for AnnounceOnDrop {
    fn drop(&mut self) {
        self.bus.access_changed(self.key);
    }
}

/// Publishes on its own task with a deadline: a writer never waits on Redis.
fn publish(mut publisher: redis::aio::ConnectionManager, channel: &'static str, payload: String) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel).arg(payload);
        let publish = command.query_async::<i64>(&mut publisher);
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::debug!(error = %err, channel, "not published (readers poll, caches expire)")
            }
            Err(_) => tracing::debug!(channel, "publish timed out (readers poll, caches expire)"),
        }
    });
}

/// What a (re)connected listener does first: announcements may have been missed while it was away.
fn caught_up(local: &Notify, access: &AccessCache, listening: &AtomicBool) {
    access.clear();
    listening.store(true, Ordering::Release);
    local.notify_one();
}

async fn listen_redis(
    client: &redis::Client,
    local: &Notify,
    access: &AccessCache,
    listening: &AtomicBool,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(&[REDIS_CHANNEL, ACCESS_REDIS_CHANNEL])
        .await?;
    tracing::info!("listening for stamp wake-ups and access changes on Redis");
    caught_up(local, access, listening);
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        if message.get_channel_name() == ACCESS_REDIS_CHANNEL {
            match message.get_payload::<String>() {
                Ok(payload) => access.apply(&payload),
                Err(_) => access.clear(),
            }
        } else {
            local.notify_one();
        }
    }
    Ok(())
}

async fn listen_postgres(
    db: &DatabaseConnection,
    local: &Notify,
    access: &AccessCache,
    listening: &AtomicBool,
) -> Result<(), sea_orm::sqlx::Error> {
    let pool = db.get_postgres_connection_pool();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen_all([PG_CHANNEL, ACCESS_PG_CHANNEL]).await?;
    tracing::info!("listening for stamp wake-ups and access changes with LISTEN");
    caught_up(local, access, listening);
    loop {
        // `None`: the connection was lost (it reconnects on the next call), and with it whatever was
        // sent meanwhile.
        match listener.try_recv().await? {
            Some(notification) if notification.channel() == ACCESS_PG_CHANNEL => {
                access.apply(notification.payload())
            }
            Some(_) => local.notify_one(),
            None => {
                listening.store(false, Ordering::Release);
                caught_up(local, access, listening)
            }
        }
    }
}
