//! The GraphQL endpoint: body limit, authentication, timeout, metrics, then the schema.

use std::time::Instant;

use async_graphql::{http::GraphiQLSource, parser::types::OperationType};
use axum::{
    Json,
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{Html, IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState, telemetry::operation_label};

pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let limit = state.config.limits.max_body_bytes;
    let request = match axum::body::to_bytes(body, limit).await {
        Err(_) => Err(ApiError::PayloadTooLarge { limit }),
        Ok(bytes) => serde_json::from_slice::<async_graphql::Request>(&bytes)
            .map_err(|err| ApiError::BadRequest(format!("body is not a GraphQL request: {err}"))),
    };
    match request {
        Ok(request) => execute(&state, &headers, request, Transport::Post, started).await,
        Err(err) => refuse(err, "unparsed", started),
    }
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    match async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default()) {
        Ok(request) => execute(&state, &headers, request, Transport::Get, started).await,
        Err(err) => refuse(ApiError::BadRequest(err.to_string()), "unparsed", started),
    }
}

#[derive(PartialEq, Eq)]
enum Transport {
    Get,
    Post,
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    transport: Transport,
    started: Instant,
) -> Response {
    let operation = operation_label(request.operation_name.as_deref());
    // The deadline covers authentication too: a stuck database must not hold a request forever.
    let timeout = state.config.limits.request_timeout();
    let outcome = tokio::time::timeout(
        timeout,
        authenticate_and_run(state, headers, request, transport),
    )
    .await;
    match outcome {
        Ok(Ok(response)) => {
            let outcome = if response.errors.is_empty() {
                "ok"
            } else {
                "error"
            };
            record(&operation, outcome, started);
            Json(response).into_response()
        }
        Ok(Err(err)) => refuse(err, &operation, started),
        Err(_) => refuse(
            ApiError::Timeout {
                seconds: timeout.as_secs(),
            },
            &operation,
            started,
        ),
    }
}

async fn authenticate_and_run(
    state: &AppState,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    transport: Transport,
) -> Result<async_graphql::Response, ApiError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let principal = state.authenticator.authenticate(&state.db, bearer).await?;
    // GET must never change anything: a link or a prefetch could trigger it.
    if transport == Transport::Get && is_mutation(&mut request) {
        return Err(ApiError::BadRequest(
            "mutations must be sent with POST".into(),
        ));
    }
    Ok(state
        .schema
        .execute(crate::graphql::with_caller(
            request,
            &state.services,
            principal,
        ))
        .await)
}

fn is_mutation(request: &mut async_graphql::Request) -> bool {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false; // the schema reports the parse error
    };
    document.operations.iter().any(|(name, operation)| {
        let selected = match (&operation_name, name) {
            (Some(wanted), Some(name)) => wanted == name.as_str(),
            _ => true,
        };
        selected && operation.node.ty == OperationType::Mutation
    })
}

/// Answers an error raised before the schema ran, as a GraphQL response with the right HTTP status.
fn refuse(err: ApiError, operation: &str, started: Instant) -> Response {
    let status: StatusCode = err.http_status();
    record(operation, err.code(), started);
    (status, Json(err.into_graphql_response())).into_response()
}

fn record(operation: &str, outcome: &str, started: Instant) {
    let labels = [
        ("operation", operation.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!("hub_graphql_requests_total", &labels).increment(1);
    metrics::histogram!("hub_graphql_request_duration_seconds", "operation" => operation.to_owned())
        .record(started.elapsed().as_secs_f64());
}
