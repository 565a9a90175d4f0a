//! What every request handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use crate::{
    auth::Authenticator,
    config::HubConfig,
    graphql::{Schemas, Services},
};

/// Cloned for every request (axum's `State`), so one reference count, not a copy of every
/// service: cloning the fields one by one was about a tenth of the hub's CPU on small reads.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<HubConfig>,
    pub db: DatabaseConnection,
    pub authenticator: Authenticator,
    pub schemas: Schemas,
    pub services: Arc<Services>,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub metrics: PrometheusHandle,
    pub outbox: crate::events::Outbox,
    pub statements: crate::db::StatementCounter,
    /// Open subscription connections per organization.
    pub connections: crate::http::subscriptions::ConnectionCounts,
    /// Recent successful rechecks of subscription tokens.
    pub recent_checks: crate::http::subscriptions::RecentChecks,
    /// The bounded set of operation labels `/metrics` counts requests under.
    pub operation_labels: crate::telemetry::OperationLabels,
}

impl AppState {
    /// SQL statements this hub has executed so far.
    pub fn db_statements(&self) -> u64 {
        self.statements.get()
    }
}
