use axum::{
    Json,
    extract::State,
    http::{
        HeaderMap, StatusCode,
        header::{CONTENT_TYPE, WWW_AUTHENTICATE},
    },
    response::{IntoResponse, Response},
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// Liveness: the process serves HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database (and Redis, when configured) answer. `listening` says whether other
/// replicas' wake-ups and access announcements reach this one now; without it the replica still
/// serves, with feed polling and cache expiry as the bounds, so it does not make the replica unready.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = crate::db::ping(&state.db).await;
    let redis = match &state.redis {
        None => None,
        Some(conn) => {
            let mut conn = conn.clone();
            let command = redis::cmd("PING");
            let ping = command.query_async::<String>(&mut conn);
            // While Redis is down the connection manager keeps retrying; readiness answers now.
            Some(matches!(
                tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
                Ok(Ok(_))
            ))
        }
    };
    let ready = database && redis.unwrap_or(true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "database": database,
            "redis": redis,
            "listening": state.outbox.bus().is_listening(),
        })),
    )
}

/// `/metrics` on the metrics listener (`--metrics-listen`), which is meant for a private network.
pub async fn metrics(State(state): State<AppState>) -> Response {
    render_metrics(&state)
}

/// `/metrics` on the main listener: only with the configured bearer token, and not served at all when
/// no token is configured (a scraper then uses the metrics listener).
pub async fn metrics_behind_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = state.config.metrics_token.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not served on this listener (see --metrics-listen and --metrics-token)\n",
        )
            .into_response();
    };
    let presented = super::single_bearer(&headers).ok().flatten();
    // Digests compared, so the time taken says nothing about how much of the token matched.
    let matches = presented.is_some_and(|token| Sha256::digest(token) == Sha256::digest(expected));
    if !matches {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer")],
            "metrics need the metrics bearer token\n",
        )
            .into_response();
    }
    render_metrics(&state)
}

fn render_metrics(state: &AppState) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
