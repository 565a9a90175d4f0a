//! Starting the hub: keys, database, migrations and bootstrap, then the HTTP server.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    auth::{Authenticator, SigningKey, TokenIssuer, keys::write_private_file},
    config::{HubConfig, Mode},
    events::{Bus, EventFeed, EventService, Outbox},
    financial::FinancialService,
    graphql::{Schemas, Services},
    identity::IdentityService,
    master_data::MasterDataService,
    payments::{ApprovalService, NumberHashKeys, PaymentKeysService, PaymentRequestService},
    state::AppState,
    telemetry,
};

/// Lifetime of the bootstrap admin token written in embedded mode (renewed at every start).
const BOOTSTRAP_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Everything up to, but not including, listening: used by `serve` and by the command-line tools.
pub async fn prepare(config: HubConfig) -> anyhow::Result<AppState> {
    let mode = config.mode();
    tracing::info!(config = %config.describe(), "starting");
    // Connecting first creates the private data directory the embedded key lives in.
    let statements = crate::db::StatementCounter::default();
    let db = crate::db::connect_counted(&config, &statements).await?;
    let key_path = config.signing_key_path();
    let (key, generated) = SigningKey::load(&key_path, mode == Mode::Embedded)?;
    if generated {
        tracing::warn!(
            path = %key_path.display(),
            "generated a new token-signing key; production must supply its own (HUB_SIGNING_KEY_FILE)"
        );
    }
    let master = load_master_key(&config)?;
    let audit_key = load_audit_key(&config, mode == Mode::Embedded)?;
    let background_db = crate::db::connect_background(&config).await?;
    let (vault, _retailer, admin) =
        crate::db::migrate_and_bootstrap(&db, &background_db, master, &config.retailer_name)
            .await?;

    crate::audit::service::check_key(&db, &audit_key, true).await?;
    let hash_key_path = config.number_hash_key_path();
    let (number_hash_keys, generated) =
        NumberHashKeys::load(&hash_key_path, mode == Mode::Embedded)?;
    if generated {
        tracing::warn!(
            path = %hash_key_path.display(),
            "generated a new number-hash key; production must supply its own (HUB_NUMBER_HASH_KEY_FILE)"
        );
    }
    number_hash_keys.check_coverage(&db).await?;
    let issuer = TokenIssuer::new(&key, &config.token_audience, config.max_token_lifetime());
    let redis = match &config.redis_url {
        None => None,
        Some(url) => {
            let client = redis::Client::open(url.as_str()).context("invalid REDIS_URL")?;
            // Connected lazily: Redis only carries wake-ups, so a replica starts (and its writes
            // succeed) while Redis is down; it polls until Redis answers, and `/readyz` says so.
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(Duration::from_millis(500)));
            let manager =
                redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .context("cannot set up the Redis connection")?;
            Some((client, manager))
        }
    };
    let access = Arc::new(crate::auth::AccessCache::new(Duration::from_millis(
        config.access_cache_ms,
    )));
    let bus = Bus::new(&background_db, redis.clone(), access.clone());
    tracing::info!(carrier = bus.carrier_name(), "event wake-ups");
    let feed = EventFeed::new(
        background_db.clone(),
        bus.wake_ups(),
        Duration::from_millis(config.subscriptions.feed_poll_ms.max(10)),
        config.subscriptions.subscription_buffer,
    );
    feed.initialize()
        .await
        .context("cannot read the event log's newest position")?;
    let outbox = Outbox::new(background_db.clone(), bus.clone());
    let linker = crate::audit::Linker::new(background_db.clone(), audit_key.clone());
    let sales_folder = crate::analytics::SalesFolder::new(background_db.clone());
    let services = Services {
        db: db.clone(),
        identity: IdentityService::new(db.clone(), issuer.clone(), bus.clone()),
        master_data: MasterDataService::new(db.clone(), vault.clone(), bus.clone()),
        financial: FinancialService::new(db.clone(), outbox.clone(), sales_folder.wake()),
        work: crate::work::WorkService::new(db.clone(), outbox.clone()),
        logistics: crate::logistics::LogisticsService::new(
            db.clone(),
            outbox.clone(),
            vault.clone(),
        ),
        events: EventService::new(db.clone()),
        payment_keys: PaymentKeysService::new(db.clone()),
        payment_requests: PaymentRequestService::new(
            db.clone(),
            outbox.clone(),
            config.payment_limits.clone(),
            config.hub_instance_id(),
        ),
        approval: ApprovalService::new(
            db.clone(),
            outbox.clone(),
            config.payment_limits.clone(),
            config.hub_instance_id(),
            number_hash_keys,
            vault.clone(),
        ),
        feed,
        vault,
        analytics: crate::analytics::AnalyticsService::new(db.clone()),
        audit: crate::audit::AuditService::new(db.clone(), audit_key.clone(), key.clone()),
        audit_scope: crate::audit::scope::AuditMutations {
            db: db.clone(),
            key: audit_key,
            linker: linker.wake(),
            root: crate::graphql::root_type_names().1,
        },
        linker,
        sales_folder,
        settlement: crate::payments::SettlementService::new(
            db.clone(),
            outbox.clone(),
            config.clearing.clone(),
        ),
        clearing: crate::clearing::ClearingService::new(
            db.clone(),
            outbox.clone(),
            config.clearing.clone(),
        ),
    };
    if mode == Mode::Embedded {
        write_admin_token(&config, &services.identity, &admin)?;
    }
    let schemas = Schemas::new(&config.limits, &services);
    let (query_root, mutation_root) = crate::graphql::root_type_names();
    let operation_labels =
        telemetry::OperationLabels::from_sdl(&schemas.queries.sdl(), &query_root, &mutation_root);
    Ok(AppState::new(crate::state::Shared {
        connections: Default::default(),
        recent_checks: Default::default(),
        operation_labels,
        schemas,
        authenticator: Authenticator::new(issuer, access),
        services: Arc::new(services),
        db,
        redis: redis.map(|(_, manager)| manager),
        metrics: telemetry::metrics_handle(),
        outbox,
        statements,
        config: Arc::new(config),
    }))
}

/// The master key: a file (`HUB_MASTER_KEY_FILE`), else the environment (`HUB_MASTER_KEY`), else in
/// the embedded default `<data-dir>/master.key`, created with a warning on first start. Production
/// mode never creates one.
pub fn load_master_key(config: &HubConfig) -> anyhow::Result<crate::crypto::MasterKey> {
    use crate::crypto::MasterKey;
    if let Some(path) = &config.master_key_file {
        return Ok(MasterKey::load(path)?);
    }
    // Read from the environment only (never a flag: argv is visible to every user of the machine).
    if let Ok(text) = std::env::var("HUB_MASTER_KEY") {
        let text = zeroize::Zeroizing::new(text);
        return Ok(MasterKey::from_base64(&text)?);
    }
    if config.mode() == Mode::Production {
        anyhow::bail!(
            "production mode needs a master key for field encryption: set HUB_MASTER_KEY_FILE (or \
             HUB_MASTER_KEY); create one with `hub keygen --secret --out FILE`, and give every \
             replica the same"
        );
    }
    let path = config.master_key_path();
    if !path.exists() {
        crate::auth::generate_secret_file(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            "generated a new master key; production must supply its own (HUB_MASTER_KEY_FILE), \
             and losing it loses every encrypted field"
        );
    }
    Ok(MasterKey::load(&path)?)
}

/// The audit key: a file (`HUB_AUDIT_KEY_FILE`), else in the embedded default `<data-dir>/audit.key`,
/// created with a warning on the hub's first start (`generate`; never by a tool, never in production).
pub fn load_audit_key(
    config: &HubConfig,
    generate: bool,
) -> anyhow::Result<crate::audit::AuditKey> {
    let path = config.audit_key_path();
    if config.audit_key_file.is_none() && config.mode() == Mode::Production {
        anyhow::bail!(
            "production mode needs an audit key: set HUB_AUDIT_KEY_FILE (create one with `hub \
             keygen --secret --out FILE`, give every replica the same, and keep it out of the database)"
        );
    }
    if generate && !path.exists() && config.audit_key_file.is_none() {
        crate::auth::generate_secret_file(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            "generated a new audit key; production must supply its own (HUB_AUDIT_KEY_FILE)"
        );
    }
    Ok(crate::audit::AuditKey::load(&path)?)
}

/// Writes a fresh admin token for the embedded default, readable by the owner only.
fn write_admin_token(
    config: &HubConfig,
    identity: &IdentityService,
    admin: &entities::member::Model,
) -> anyhow::Result<()> {
    let minted = identity
        .mint_for(
            admin,
            Some(BOOTSTRAP_TOKEN_TTL.min(config.max_token_lifetime())),
        )
        .map_err(|err| anyhow::anyhow!("cannot mint the admin token: {err}"))?;
    let path = config.admin_token_path();
    let staging = path.with_extension("token.new");
    let _ = std::fs::remove_file(&staging);
    write_private_file(&staging, format!("{}\n", minted.token).as_bytes())
        .and_then(|()| std::fs::rename(&staging, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), expires_at = %minted.expires_at, "admin token written");
    Ok(())
}

/// How often expired idempotency keys are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// The work a serving hub does besides answering requests: stamping event positions, feeding live
/// subscriptions (and listening for other replicas' stamps), purging expired idempotency keys, learning
/// rotated data keys and re-encrypting rows under older ones. Aborted when the hub stops.
pub fn spawn_background(state: &AppState) -> Vec<JoinHandle<()>> {
    let db = state.outbox.db().clone();
    let purge = tokio::spawn(async move {
        let mut interval = tokio::time::interval(PURGE_INTERVAL);
        loop {
            interval.tick().await;
            match crate::idempotency::purge_expired(&db).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
                Err(err) => tracing::warn!(error = %err, "purging idempotency keys failed"),
            }
        }
    });
    let encryption = &state.config.encryption;
    let resealer = crate::crypto::reseal::Resealer::new(
        state.outbox.db().clone(),
        state.services.vault.clone(),
        crate::crypto::reseal::ResealPace {
            batch: encryption.reseal_batch,
            pause: Duration::from_millis(encryption.reseal_pause_ms),
            idle: Duration::from_secs(2),
        },
    );
    let key_refresh = state
        .services
        .vault
        .spawn_refresh(Duration::from_millis(encryption.key_refresh_ms.max(100)));
    let mut tasks = vec![
        state.outbox.spawn(),
        state.services.linker.spawn(),
        state.services.sales_folder.spawn(),
        spawn_settlement_rounds(state),
        state.services.feed.spawn(),
        purge,
        resealer.spawn(),
        key_refresh,
    ];
    tasks.extend(state.outbox.bus().spawn_listener());
    tasks
}

/// How often each replica looks for authorizations past the capture window and batches due to close.
const SETTLEMENT_POLL: Duration = Duration::from_secs(1);

/// Expires uncaptured authorizations and closes clearing batches on schedule. Both are safe on several
/// replicas: every release and every close is conditional on the state it leaves.
fn spawn_settlement_rounds(state: &AppState) -> JoinHandle<()> {
    let (settlement, clearing) = (
        state.services.settlement.clone(),
        state.services.clearing.clone(),
    );
    let pace = crate::db::worker::Pace {
        poll: SETTLEMENT_POLL,
        gather: Duration::ZERO,
    };
    // Nothing wakes it: it runs on its period.
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    crate::db::worker::spawn_worker("settlement", wake, pace, move || {
        let (settlement, clearing) = (settlement.clone(), clearing.clone());
        async move {
            let expired = settlement.expire_due().await?;
            let closed = clearing.close_due().await?;
            Ok(if expired > 0 || closed > 0 {
                crate::db::worker::Round::More
            } else {
                crate::db::worker::Round::Done
            })
        }
    })
}

/// Serves `/metrics` on its own address when one is configured; the task ends with the hub.
pub async fn spawn_metrics_listener(
    state: &AppState,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(listen) = state.config.metrics_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {listen}"))?;
    let addr = listener.local_addr()?;
    let router = crate::http::metrics_router(state.clone());
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!(error = %err, "metrics listener failed");
        }
    });
    tracing::info!(%addr, "metrics at /metrics");
    Ok(Some((addr, task)))
}

/// A hub listening on a socket.
pub struct RunningHub {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `metrics_listen` is configured.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
}

impl RunningHub {
    /// Stops accepting, finishes in-flight requests, and waits for the server to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.context("server task failed")??;
        for task in &self.background {
            task.abort();
        }
        self.state.db.clone().close().await.ok();
        Ok(())
    }
}

/// Binds `listen` and serves until [`RunningHub::stop`].
pub async fn start(config: HubConfig, listen: SocketAddr) -> anyhow::Result<RunningHub> {
    let state = prepare(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let metrics = spawn_metrics_listener(&state).await?;
    let mut background = spawn_background(&state);
    let metrics_addr = metrics.as_ref().map(|(addr, _)| *addr);
    background.extend(metrics.map(|(_, task)| task));
    let task = tokio::spawn(serve_on(listener, state.clone(), async {
        let _ = rx.await;
    }));
    tracing::info!(%addr, "hub listening: GraphQL at /graphql, GraphiQL at /");
    Ok(RunningHub {
        addr,
        metrics_addr,
        state,
        shutdown: Some(tx),
        task,
        background,
    })
}

pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, crate::http::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
