//! The HTTP surface: GraphQL, the pages (GraphiQL, checkout, operations), health, readiness and metrics,
//! with request ids and tracing.

mod graphql;
mod health;
mod pages;
pub mod subscriptions;

use std::time::Instant;

use axum::{
    Router,
    extract::Request as AxumRequest,
    http::{
        HeaderMap, HeaderName, HeaderValue, Request,
        header::{self, AUTHORIZATION},
    },
    middleware::{Next, from_fn},
    response::Response,
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::state::AppState;

/// The bearer token of a request's one `Authorization` header (`None` without one, or when it is not a
/// bearer token). More than one header is an error: a proxy and a client disagreeing about who is
/// asking is not something to guess at by letting one of them win.
fn single_bearer(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    Ok(value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim))
}

/// `Server-Timing: hub;dur=<ms>`: the hub's own time for a request, so a client (the reader agent, the
/// benchmark) can tell it apart from the network's.
async fn server_timing(request: AxumRequest, next: Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("hub;dur={millis:.3}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The metrics listener's only route (`--metrics-listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::graphiql))
        .route("/checkout", get(pages::checkout))
        .route("/ops", get(pages::ops))
        .route("/assets/{*name}", get(pages::assets))
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics_behind_token))
        .with_state(state)
        .layer(from_fn(server_timing))
        // On every response, 404s included; a page's own policy is kept: nothing may load by
        // default, frame the hub, sniff a type or learn where the user came from.
        .layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(pages::DEFAULT_POLICY),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                )),
        )
        .layer(
            ServiceBuilder::new()
                // A client-supplied id is kept, so a caller can follow its request through the logs.
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::new()),
        )
}
