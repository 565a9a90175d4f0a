//! The GraphQL endpoint: body limit, authentication, timeout, metrics, then the schema.

use std::time::Instant;

use async_graphql::http::WebSocketProtocols;
use async_graphql::parser::types::OperationType;
use axum::{
    Json,
    body::Body,
    extract::{FromRequestParts, Request, State, ws::WebSocketUpgrade},
    http::{
        HeaderMap, StatusCode,
        header::{SEC_WEBSOCKET_PROTOCOL, UPGRADE},
        request::Parts,
    },
    response::{IntoResponse, Response},
};

use super::single_bearer;
use crate::{
    config::Limits,
    error::ApiError,
    graphql::{cost, edge},
    state::AppState,
    telemetry::{UNAUTHENTICATED_LABEL, UNPARSED_LABEL},
};

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let limit = state.config.limits.max_body_bytes;
    let request = match axum::body::to_bytes(body, limit).await {
        Err(_) => Err(ApiError::PayloadTooLarge { limit }),
        Ok(bytes) => parse_body(&bytes),
    };
    match request {
        Ok(request) => execute(&state, &headers, request, Transport::Post, started).await,
        Err(err) => refuse(err, UNPARSED_LABEL, started),
    }
}

/// One GraphQL request object. Batching is not supported: a JSON array is refused rather than read as
/// a request (serde would otherwise take an array as the request's fields in order).
fn parse_body(bytes: &[u8]) -> Result<async_graphql::Request, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "the body must be one GraphQL request object (batches are not supported)".into(),
        ));
    }
    serde_json::from_slice::<async_graphql::Request>(bytes)
        .map_err(|err| ApiError::BadRequest(format!("body is not a GraphQL request: {err}")))
}

/// A GraphQL query over GET, or the upgrade to a WebSocket for subscriptions.
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    if parts
        .headers
        .get(UPGRADE)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        return upgrade(state, &mut parts).await;
    }
    let query = parts.uri.query().map(str::to_owned);
    let headers = parts.headers;
    let started = Instant::now();
    match async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default()) {
        Ok(request) => execute(&state, &headers, request, Transport::Get, started).await,
        Err(err) => refuse(
            ApiError::BadRequest(err.to_string()),
            UNPARSED_LABEL,
            started,
        ),
    }
}

/// Read buffer of one WebSocket connection.
const WS_READ_BUFFER: usize = 4 * 1024;

async fn upgrade(state: AppState, parts: &mut Parts) -> Response {
    // The first protocol offered that the hub speaks (graphql-transport-ws or the legacy graphql-ws).
    let protocol = parts
        .headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|name| name.trim().parse::<WebSocketProtocols>().ok())
        });
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "subscriptions speak graphql-transport-ws (Sec-WebSocket-Protocol)",
        )
            .into_response();
    };
    match WebSocketUpgrade::from_request_parts(parts, &state).await {
        Ok(upgrade) => upgrade
            // Answer with the protocol the hub will speak, whatever order the client offered.
            .protocols([protocol.sec_websocket_protocol()])
            // Clients send small protocol messages: a small read buffer keeps thousands of idle
            // subscribers cheap (the default is 128 KiB each), and a message may be no larger than a
            // request body.
            .read_buffer_size(WS_READ_BUFFER)
            .max_message_size(state.config.limits.max_body_bytes)
            .max_frame_size(state.config.limits.max_body_bytes)
            .on_upgrade(move |socket| super::subscriptions::serve(socket, protocol, state))
            .into_response(),
        Err(rejection) => rejection.into_response(),
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
    // Set as the request gets further: what `/metrics` counts it under, from a set the schema bounds.
    let mut label = UNAUTHENTICATED_LABEL.to_owned();
    // The deadline covers authentication too: a stuck database must not hold a request forever.
    let timeout = state.config.limits.request_timeout();
    let outcome = tokio::time::timeout(
        timeout,
        authenticate_and_run(state, headers, request, transport, &mut label),
    )
    .await;
    match outcome {
        Ok(Ok(response)) => {
            let outcome = if response.errors.is_empty() {
                "ok"
            } else {
                "error"
            };
            record(&label, outcome, started);
            Json(response).into_response()
        }
        Ok(Err(err)) => refuse(err, &label, started),
        Err(_) => refuse(
            ApiError::Timeout {
                seconds: timeout.as_secs(),
            },
            &label,
            started,
        ),
    }
}

async fn authenticate_and_run(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    transport: Transport,
    label: &mut String,
) -> Result<async_graphql::Response, ApiError> {
    let bearer = single_bearer(headers).map_err(|()| {
        tracing::info!("request refused: more than one Authorization header");
        ApiError::Unauthenticated
    })?;
    let session = state
        .authenticator
        .authenticate_session(&state.db, bearer)
        .await?;
    *label = UNPARSED_LABEL.to_owned();
    let (mut request, checked) = parse_and_bound(request, &state.config.limits).await?;
    let operation_name = request.operation_name.clone();
    if let Ok(document) = request.parsed_query() {
        *label = state
            .operation_labels
            .label(document, operation_name.as_deref());
    }
    // Answered like the schema's own parse and validation errors: a GraphQL response with HTTP 200.
    if let Err(refusal) = checked {
        return Ok(match refusal {
            Refusal::Parse(error) => edge::parse_failure(error),
            Refusal::Cost(error) => error.into_graphql_response(),
        });
    }
    // GET must never change anything: a link or a prefetch could trigger it.
    if transport == Transport::Get && is_mutation(&mut request) {
        return Err(ApiError::BadRequest(
            "mutations must be sent with POST".into(),
        ));
    }
    // Only a document proven to run a query skips the extensions; anything else is audited.
    let schema = if operation_type(&mut request) == Some(OperationType::Query) {
        &state.schemas.queries
    } else {
        &state.schemas.mutations
    };
    let mut response = schema
        .execute(
            crate::graphql::with_caller(request, &state.services, session.principal)
                .data(session.credential),
        )
        .await;
    edge::assign_codes(&mut response);
    Ok(response)
}

/// Documents up to this size are parsed on the request's task; larger ones on the blocking pool, so a
/// burst of large documents cannot occupy the workers that serve everyone else.
const INLINE_PARSE_BYTES: usize = 16 * 1024;

pub(super) enum Refusal {
    Parse(async_graphql::ServerError),
    Cost(ApiError),
}

/// Parses the document once (the schema reuses it) and refuses one whose fragments expand beyond the
/// limit, before validation could spend time exponential in its size.
pub(super) async fn parse_and_bound(
    mut request: async_graphql::Request,
    limits: &Limits,
) -> Result<(async_graphql::Request, Result<(), Refusal>), ApiError> {
    let max_selections = limits.max_query_selections;
    let check = move |request: &mut async_graphql::Request| match request.parsed_query() {
        Err(error) => Err(Refusal::Parse(error)),
        Ok(document) => cost::check_expanded_size(document, max_selections).map_err(Refusal::Cost),
    };
    if request.query.len() <= INLINE_PARSE_BYTES {
        let checked = check(&mut request);
        return Ok((request, checked));
    }
    tokio::task::spawn_blocking(move || {
        let checked = check(&mut request);
        (request, checked)
    })
    .await
    .map_err(|err| ApiError::Internal(anyhow::anyhow!("parsing task failed: {err}")))
}

fn is_mutation(request: &mut async_graphql::Request) -> bool {
    operation_type(request) == Some(OperationType::Mutation)
}

/// The type of the operation a request runs (`None` when the document does not parse or names no
/// such operation). With several operations and no name, any mutation among them counts: the
/// engine would refuse the request anyway, and a GET must not get that far.
pub(super) fn operation_type(request: &mut async_graphql::Request) -> Option<OperationType> {
    let operation_name = request.operation_name.clone();
    let document = request.parsed_query().ok()?;
    let selected: Vec<OperationType> = document
        .operations
        .iter()
        .filter(|(name, _)| match (&operation_name, name) {
            (Some(wanted), Some(name)) => wanted == name.as_str(),
            _ => true,
        })
        .map(|(_, operation)| operation.node.ty)
        .collect();
    if selected.contains(&OperationType::Mutation) {
        return Some(OperationType::Mutation);
    }
    match selected.as_slice() {
        [only] => Some(*only),
        _ => selected
            .first()
            .copied()
            .filter(|first| selected.iter().all(|ty| ty == first)),
    }
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
