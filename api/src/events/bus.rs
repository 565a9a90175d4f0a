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

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::{sync::Notify, task::JoinHandle};

/// The Redis pub/sub channel of stamp wake-ups.
pub const REDIS_CHANNEL: &str = "ich:events:stamped";
/// The PostgreSQL NOTIFY channel of stamp wake-ups (without Redis).
pub const PG_CHANNEL: &str = "ich_events_stamped";
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
}

impl Bus {
    /// The bus for a deployment: Redis when given, else NOTIFY on PostgreSQL, else in-process.
    pub fn new(
        db: &DatabaseConnection,
        redis: Option<(redis::Client, redis::aio::ConnectionManager)>,
    ) -> Self {
        let carrier = match (redis, db.get_database_backend()) {
            (Some((client, publisher)), _) => Carrier::Redis { client, publisher },
            (None, DatabaseBackend::Postgres) => Carrier::Postgres { db: db.clone() },
            (None, _) => Carrier::InProcess,
        };
        Self {
            carrier,
            local: Arc::new(Notify::new()),
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

    /// Woken on every stamp this replica learns of.
    pub fn wake_ups(&self) -> Arc<Notify> {
        self.local.clone()
    }

    /// Called after positions were stamped and committed here: wakes the local feed and tells the
    /// other replicas. Never waits on Redis: the publish runs on its own task with a deadline.
    pub fn stamped(&self) {
        self.local.notify_one();
        if let Carrier::Redis { publisher, .. } = &self.carrier {
            let mut publisher = publisher.clone();
            tokio::spawn(async move {
                let mut command = redis::cmd("PUBLISH");
                command.arg(REDIS_CHANNEL).arg("");
                let publish = command.query_async::<i64>(&mut publisher);
                match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "stamp wake-up not published (readers poll)")
                    }
                    Err(_) => tracing::debug!("stamp wake-up publish timed out (readers poll)"),
                }
            });
        }
    }

    /// Listens for other replicas' wake-ups until the process ends, reconnecting when the carrier
    /// drops. Every (re)connection also wakes the feed, to read what was missed meanwhile.
    pub fn spawn_listener(&self) -> Option<JoinHandle<()>> {
        let local = self.local.clone();
        match self.carrier.clone() {
            Carrier::InProcess => None,
            Carrier::Redis { client, .. } => Some(tokio::spawn(async move {
                loop {
                    match listen_redis(&client, &local).await {
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
                    if let Err(err) = listen_postgres(&db, &local).await {
                        tracing::warn!(error = %err, "PostgreSQL LISTEN failed; readers poll until it is back");
                    }
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            })),
        }
    }
}

async fn listen_redis(client: &redis::Client, local: &Notify) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(REDIS_CHANNEL).await?;
    tracing::info!("listening for stamp wake-ups on Redis");
    local.notify_one();
    let mut messages = pubsub.on_message();
    while messages.next().await.is_some() {
        local.notify_one();
    }
    Ok(())
}

async fn listen_postgres(
    db: &DatabaseConnection,
    local: &Notify,
) -> Result<(), sea_orm::sqlx::Error> {
    let pool = db.get_postgres_connection_pool();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(PG_CHANNEL).await?;
    tracing::info!("listening for stamp wake-ups with LISTEN");
    local.notify_one();
    loop {
        // `recv` reconnects by itself after a dropped connection; wake the feed either way.
        listener.recv().await?;
        local.notify_one();
    }
}
