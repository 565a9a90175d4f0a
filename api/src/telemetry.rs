//! Logs (tracing) and metrics (Prometheus).

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the log subscriber once per process; later calls (tests starting several hubs) are no-ops.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
}

/// Latency buckets in seconds, from sub-millisecond reads to the request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then these metrics are not exported.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}

/// Metric labels for GraphQL requests, drawn from a set the schema bounds: `query.<root field>` or
/// `mutation.<root field>` of the executed operation. Operation names are the client's free text (an
/// unauthenticated caller could mint any number of label values, and read others' names back), so
/// they are never used; documents that name no root field of the schema fall into `invalid`, requests
/// refused before parsing into `unparsed` or `unauthenticated`.
#[derive(Debug, Clone, Default)]
pub struct OperationLabels {
    known: Arc<HashSet<String>>,
}

pub const UNAUTHENTICATED_LABEL: &str = "unauthenticated";
pub const UNPARSED_LABEL: &str = "unparsed";
pub const INVALID_LABEL: &str = "invalid";

impl OperationLabels {
    /// Every `query.<field>` and `mutation.<field>` of the schema's root types (named as the schema
    /// names them), read from its SDL once at start.
    pub fn from_sdl(sdl: &str, query_root: &str, mutation_root: &str) -> Self {
        use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
        let mut known = HashSet::new();
        let Ok(document) = async_graphql::parser::parse_schema(sdl) else {
            tracing::warn!(
                "cannot read the schema's root fields; every operation is labelled invalid"
            );
            return Self::default();
        };
        for definition in document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let name = ty.node.name.node.as_str();
            let prefix = if name == query_root {
                "query"
            } else if name == mutation_root {
                "mutation"
            } else {
                continue;
            };
            if let TypeKind::Object(object) = &ty.node.kind {
                for field in &object.fields {
                    known.insert(format!("{prefix}.{}", field.node.name.node));
                }
            }
        }
        Self {
            known: Arc::new(known),
        }
    }

    /// The label of the operation a request selects: its type and first root field, when the schema
    /// has that field.
    pub fn label(
        &self,
        document: &async_graphql::parser::types::ExecutableDocument,
        operation_name: Option<&str>,
    ) -> String {
        use async_graphql::parser::types::{OperationType, Selection};
        let operation = document
            .operations
            .iter()
            .find(|(name, _)| match (operation_name, name) {
                (Some(wanted), Some(name)) => wanted == name.as_str(),
                (None, _) => true,
                (Some(_), None) => false,
            })
            .map(|(_, operation)| operation);
        let Some(operation) = operation else {
            return INVALID_LABEL.to_owned();
        };
        let prefix = match operation.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        let field = operation
            .node
            .selection_set
            .node
            .items
            .iter()
            .find_map(|item| match &item.node {
                Selection::Field(field) => Some(field.node.name.node.as_str()),
                _ => None,
            });
        let label = field.map(|field| format!("{prefix}.{field}"));
        match label {
            Some(label) if self.known.contains(&label) => label,
            _ => INVALID_LABEL.to_owned(),
        }
    }
}
