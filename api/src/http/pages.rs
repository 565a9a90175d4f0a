//! The pages the hub serves: `/checkout` (the tablet's checkout), `/ops` (operators) and GraphiQL at
//! `/`. Each is built on the public GraphQL API only, from assets compiled into the binary (GraphiQL
//! and React come from the npm registry at build time, see `build.rs`): nothing is fetched from
//! elsewhere, so the pages work offline, and the Content-Security-Policy allows scripts from the hub
//! alone, never inline.

use axum::{
    extract::Path,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The checkout and operations pages: scripts, styles and connections to the hub only; no inline
/// script or style, no plugins, no framing, no form posts elsewhere.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// GraphiQL's editor sets style attributes from its script, so inline styles are allowed there; its
/// scripts come from the hub only, as on every page.
const GRAPHIQL_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Whether the build bundled GraphiQL (npm and the registry were reachable).
pub const GRAPHIQL_BUNDLED: bool = matches!(env!("HUB_GRAPHIQL_BUNDLED").as_bytes(), b"true");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! vendored {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/vendor/", $name))
    };
}

/// The assets under `/assets/`, by name: (content type, bytes).
fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "hub.js" => (JS, include_bytes!("../../web/hub.js")),
        "currencies.js" => (
            JS,
            include_bytes!(concat!(env!("OUT_DIR"), "/currencies.js")),
        ),
        "hub.css" => (CSS, include_bytes!("../../web/hub.css")),
        "checkout.js" => (JS, include_bytes!("../../web/checkout.js")),
        "ops.js" => (JS, include_bytes!("../../web/ops.js")),
        "graphiql-page.js" => (JS, include_bytes!("../../web/graphiql-page.js")),
        "graphiql-page.css" => (CSS, include_bytes!("../../web/graphiql-page.css")),
        "vendor/graphiql.min.js" => (JS, vendored!("graphiql.min.js")),
        "vendor/graphiql.min.css" => (CSS, vendored!("graphiql.min.css")),
        "vendor/react.production.min.js" => (JS, vendored!("react.production.min.js")),
        "vendor/react-dom.production.min.js" => (JS, vendored!("react-dom.production.min.js")),
        "vendor/graphiql.LICENSE" => (TEXT, vendored!("graphiql.LICENSE")),
        "vendor/react.LICENSE" => (TEXT, vendored!("react.LICENSE")),
        "vendor/react-dom.LICENSE" => (TEXT, vendored!("react-dom.LICENSE")),
        _ => return None,
    })
}

/// Every other response of the hub (errors, 404s, GraphQL): nothing may load, nothing may frame it.
pub const DEFAULT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// A page or asset, with its own policy.
fn respond(policy: &'static str, content_type: &'static str, body: &'static [u8]) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(policy),
        ),
        // The assets change with the binary: a browser asks again rather than keep an old page.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (StatusCode::OK, headers, body).into_response()
}

const HTML: &str = "text/html; charset=utf-8";

pub async fn checkout() -> Response {
    respond(PAGE_POLICY, HTML, include_bytes!("../../web/checkout.html"))
}

pub async fn ops() -> Response {
    respond(PAGE_POLICY, HTML, include_bytes!("../../web/ops.html"))
}

pub async fn graphiql() -> Response {
    if GRAPHIQL_BUNDLED {
        respond(
            GRAPHIQL_POLICY,
            HTML,
            include_bytes!("../../web/graphiql.html"),
        )
    } else {
        respond(
            PAGE_POLICY,
            HTML,
            include_bytes!("../../web/graphiql-missing.html"),
        )
    }
}

pub async fn assets(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some((content_type, body)) if !body.is_empty() => respond(PAGE_POLICY, content_type, body),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
