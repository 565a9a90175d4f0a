//! GraphQL subscriptions over WebSocket on `/graphql`: the `graphql-transport-ws` protocol (and the
//! legacy `graphql-ws` one), authenticated in `connection_init`.
//!
//! The hub reads `connection_init` itself, before the protocol engine sees it, so that a refused
//! caller gets the protocol's close code and nothing else: 4403 for a missing, bad or expired token
//! (or a member or device no longer allowed), 4408 when no `connection_init` arrives in time, 4429
//! when its organization has as many connections as allowed on this replica, 4500 when the check
//! itself failed. An open connection is closed with 4403 when its token expires, and when a periodic
//! check finds its member removed or its device disabled; nothing is delivered after.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_graphql::{Data, http::WebSocketProtocols, parser::types::OperationType};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt, stream, stream::SplitSink};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    auth::{Principal, Session},
    config::Limits,
    error::ApiError,
    graphql::{live::SubscriptionSlots, loaders::RequestScope},
    state::AppState,
};

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

const FORBIDDEN: u16 = 4403;
const INIT_TIMED_OUT: u16 = 4408;
const TOO_MANY_CONNECTIONS: u16 = 4429;
const INTERNAL: u16 = 4500;
const BAD_REQUEST: u16 = 4400;

/// Open WebSocket connections on this replica, per organization and per caller (member or device), so
/// that one member's connections cannot use up what its organization's terminals need.
#[derive(Clone, Default)]
pub struct ConnectionCounts {
    organizations: Counter,
    callers: Counter,
}

#[derive(Clone, Default)]
struct Counter(Arc<Mutex<HashMap<Uuid, usize>>>);

/// One counted place of a connection, given back when dropped.
struct Counted {
    counter: Counter,
    key: Uuid,
}

/// A connection admitted under both limits.
pub struct Admitted {
    _organization: Counted,
    _caller: Counted,
}

/// Which limit refused a connection.
enum Refused {
    Organization(usize),
    Caller(usize),
}

impl Counter {
    fn admit(&self, key: Uuid, limit: usize) -> Option<Counted> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = counts.entry(key).or_default();
        if *open >= limit {
            if *open == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *open += 1;
        Some(Counted {
            counter: self.clone(),
            key,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = counts.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl ConnectionCounts {
    fn admit(
        &self,
        principal: &Principal,
        limits: &crate::config::SubscriptionLimits,
    ) -> Result<Admitted, Refused> {
        let caller = principal
            .member_id()
            .or(principal.device_id())
            .unwrap_or(principal.organization_id);
        let organization = self
            .organizations
            .admit(
                principal.organization_id,
                limits.max_connections_per_organization,
            )
            .ok_or(Refused::Organization(
                limits.max_connections_per_organization,
            ))?;
        let caller = self
            .callers
            .admit(caller, limits.max_connections_per_caller)
            .ok_or(Refused::Caller(limits.max_connections_per_caller))?;
        metrics::gauge!("hub_subscription_connections").increment(1.0);
        Ok(Admitted {
            _organization: organization,
            _caller: caller,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::gauge!("hub_subscription_connections").decrement(1.0);
    }
}

#[derive(Deserialize)]
struct InitMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// The bearer token of a `connection_init` payload (`{"Authorization": "Bearer ..."}`; the key's case
/// does not matter, as with HTTP headers).
fn bearer_of(payload: Option<&serde_json::Value>) -> Option<String> {
    let object = payload?.as_object()?;
    let value = object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?
        .1
        .as_str()?;
    value
        .strip_prefix("Bearer ")
        .map(|token| token.trim().to_owned())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Serves one upgraded connection until either side ends it.
pub async fn serve(mut socket: WebSocket, protocol: WebSocketProtocols, state: AppState) {
    let init = match tokio::time::timeout(INIT_TIMEOUT, first_text(&mut socket)).await {
        Err(_) => {
            return close(
                &mut socket,
                INIT_TIMED_OUT,
                "Connection initialisation timeout",
            )
            .await;
        }
        Ok(None) => return,
        Ok(Some(text)) => text,
    };
    let bearer = match serde_json::from_str::<InitMessage>(&init) {
        Ok(message) if message.kind == "connection_init" => bearer_of(message.payload.as_ref()),
        Ok(_) => {
            return close(
                &mut socket,
                4401,
                "Unauthorized: connection_init comes first",
            )
            .await;
        }
        Err(_) => return close(&mut socket, BAD_REQUEST, "Invalid message").await,
    };
    let session = match state
        .authenticator
        .authenticate_session(&state.db, bearer.as_deref())
        .await
    {
        Ok(session) => session,
        Err(ApiError::Unauthenticated) => {
            return close(
                &mut socket,
                FORBIDDEN,
                "Forbidden: missing, invalid or expired token",
            )
            .await;
        }
        Err(err) => {
            err.log_if_internal();
            return close(&mut socket, INTERNAL, "Internal error").await;
        }
    };
    let _admitted = match state
        .connections
        .admit(&session.principal, &state.config.subscriptions)
    {
        Ok(admitted) => admitted,
        Err(refused) => {
            let reason = match refused {
                Refused::Organization(limit) => {
                    format!("Too many connections for this organization (at most {limit})")
                }
                Refused::Caller(limit) => {
                    format!("Too many connections for this member or device (at most {limit})")
                }
            };
            return close(&mut socket, TOO_MANY_CONNECTIONS, &reason).await;
        }
    };
    run(socket, protocol, state.clone(), init, bearer, session).await;
}

/// Successful rechecks by token (its SHA-256), shared by the connections of one replica: the
/// connections of one token need one check per half interval between them, not one each. A token's
/// standing depends on its member or device, never on the connection, so sharing is sound.
#[derive(Clone, Default)]
pub struct RecentChecks(Arc<Mutex<HashMap<[u8; 32], Instant>>>);

impl RecentChecks {
    fn key(bearer: Option<&str>) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(bearer.unwrap_or_default().as_bytes()).into()
    }

    /// When the token last passed a check, if that was within `within`.
    fn fresh(&self, key: &[u8; 32], within: Duration) -> Option<Instant> {
        let checks = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.get(key).copied().filter(|at| at.elapsed() < within)
    }

    fn record(&self, key: [u8; 32], at: Instant, keep: Duration) {
        let mut checks = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        checks.insert(key, at);
        // Bounded by the live tokens: entries too old to be used again go.
        if checks.len().is_multiple_of(1024) {
            checks.retain(|_, checked| checked.elapsed() < keep);
        }
    }
}

/// What a recheck of an open connection found.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// The token is accepted, for the same organization and role as when the connection opened.
    Allowed,
    /// The token, member or device is no longer accepted, or now acts with another role.
    Revoked,
    /// The check itself failed (the database is unreachable): neither.
    Unknown,
}

/// Checks the connection's token again (in the database, or through another connection of the same
/// token within half the interval).
async fn recheck_access(
    state: &AppState,
    bearer: Option<&str>,
    opened_as: &Principal,
    interval: Duration,
    checked_at: &mut Instant,
) -> Check {
    let key = RecentChecks::key(bearer);
    if let Some(at) = state.recent_checks.fresh(&key, interval / 2) {
        *checked_at = at;
        return Check::Allowed;
    }
    match state
        .authenticator
        .authenticate_session(&state.db, bearer)
        .await
    {
        Ok(session)
            if session.principal.role == opened_as.role
                && session.principal.organization_id == opened_as.organization_id =>
        {
            *checked_at = Instant::now();
            state.recent_checks.record(key, *checked_at, interval);
            Check::Allowed
        }
        // A demoted member keeps no connection opened with more.
        Ok(_) | Err(ApiError::Unauthenticated) => Check::Revoked,
        Err(err) => {
            err.log_if_internal();
            Check::Unknown
        }
    }
}

/// The first text message, skipping pings; `None` when the client went away.
async fn first_text(socket: &mut WebSocket) -> Option<String> {
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            Message::Text(text) => return Some(text.to_string()),
            Message::Binary(bytes) => return String::from_utf8(bytes.to_vec()).ok(),
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    None
}

/// Server pings this often; a connection that sends nothing (not even a pong) for twice as long is gone.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// A send that takes longer means the client stopped reading long ago: the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// After a recheck that could not reach the database, the next attempt waits this long.
const RECHECK_BACKOFF: Duration = Duration::from_secs(1);

async fn run(
    socket: WebSocket,
    protocol: WebSocketProtocols,
    state: AppState,
    init: String,
    bearer: Option<String>,
    session: Session,
) {
    let principal = session.principal.clone();
    let mut data = Data::default();
    data.insert(RequestScope::uncached(&state.services, &principal));
    data.insert(SubscriptionSlots::new(
        state.config.subscriptions.max_subscriptions_per_connection,
    ));
    data.insert(principal.clone());
    let (mut sink, source) = socket.split();
    let started = Instant::now();
    let last_heard = Arc::new(AtomicU64::new(0));
    let (refusals, mut refused) = tokio::sync::mpsc::channel::<String>(16);
    let incoming = {
        let (last_heard, limits, refusals) = (
            last_heard.clone(),
            state.config.limits.clone(),
            refusals.clone(),
        );
        source.filter_map(move |message| {
            let (last_heard, limits, refusals) =
                (last_heard.clone(), limits.clone(), refusals.clone());
            async move {
                last_heard.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                let text = match message {
                    Ok(Message::Text(text)) => text.to_string(),
                    Ok(Message::Binary(bytes)) => String::from_utf8(bytes.to_vec()).ok()?,
                    _ => return None,
                };
                match screen(text, &limits, protocol).await {
                    Ok(text) => Some(text),
                    Err(refusal) => {
                        // The connection's queue of refusals is small: a client flooding refused
                        // documents waits for its answers like anyone sending too fast.
                        let _ = refusals.send(refusal).await;
                        None
                    }
                }
            }
        })
    };
    // The engine sees the `connection_init` already checked, and acknowledges it.
    let incoming = stream::once(async move { init }).chain(incoming);
    let mut engine = Box::pin(
        async_graphql::http::WebSocket::new(
            state.schemas.subscriptions.clone(),
            incoming,
            protocol,
        )
        .connection_data(data)
        .on_connection_init(|_| async { Ok(Data::default()) }),
    );
    let until_expiry = (session.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let expiry = tokio::time::sleep(until_expiry);
    tokio::pin!(expiry);
    let interval =
        Duration::from_millis(state.config.subscriptions.subscription_recheck_ms.max(100));
    // Checks every half interval, so a delivery rarely finds its last check too old; each connection
    // starts at a random phase, so thousands of connections opened together do not check together.
    let half = interval / 2;
    let phase = half.mul_f64(f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX));
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + phase, half);
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut checked_at = Instant::now();
    let mut next_attempt = Instant::now();
    let revoked = || Some((FORBIDDEN, "Forbidden: access revoked".to_owned()));
    let unverifiable = || Some((INTERNAL, "Access could not be verified".to_owned()));
    let closing: Option<(u16, String)> = loop {
        tokio::select! {
            // Expiry and revocation win over a ready message: nothing is delivered after either.
            biased;
            () = &mut expiry => break Some((FORBIDDEN, "Forbidden: token expired".into())),
            _ = recheck.tick() => {
                match recheck_access(&state, bearer.as_deref(), &principal, interval, &mut checked_at).await {
                    Check::Allowed => {}
                    Check::Revoked => break revoked(),
                    // A database hiccup is not a revocation, but access unverified for two
                    // intervals is not access: the connection closes, and the client reconnects.
                    Check::Unknown if checked_at.elapsed() >= 2 * interval => break unverifiable(),
                    Check::Unknown => next_attempt = Instant::now() + RECHECK_BACKOFF,
                }
            }
            _ = keepalive.tick() => {
                let heard = Duration::from_millis(last_heard.load(Ordering::Relaxed));
                if started.elapsed().saturating_sub(heard) > 2 * KEEPALIVE {
                    break Some((1011, "Keepalive timeout".into()));
                }
                if !send_within(&mut sink, Message::Ping(Default::default())).await {
                    break None;
                }
            }
            Some(refusal) = refused.recv() => {
                if !send_within(&mut sink, Message::Text(refusal.into())).await {
                    break None;
                }
            }
            message = engine.next() => match message {
                Some(async_graphql::http::WsMessage::Text(text)) => {
                    // A delivery never rests on a check older than the interval: a removed member or
                    // a disabled device receives nothing later than one interval after the change
                    // (two while the database cannot be reached, then the connection closes).
                    if checked_at.elapsed() >= interval && Instant::now() >= next_attempt {
                        match recheck_access(&state, bearer.as_deref(), &principal, interval, &mut checked_at).await {
                            Check::Allowed => {}
                            Check::Revoked => break revoked(),
                            Check::Unknown if checked_at.elapsed() >= 2 * interval => break unverifiable(),
                            Check::Unknown => next_attempt = Instant::now() + RECHECK_BACKOFF,
                        }
                    }
                    if !send_within(&mut sink, Message::Text(text.into())).await {
                        break None;
                    }
                }
                Some(async_graphql::http::WsMessage::Close(code, reason)) => break Some((code, reason)),
                None => break None,
            },
        }
    };
    if let Some((code, reason)) = closing {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

/// Sends one message, or says the connection is gone (an error, or a client that stopped reading).
async fn send_within(sink: &mut SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Lets a client message through to the protocol engine, or answers why not. Over WebSocket the hub
/// runs subscriptions only, each document bounded like an HTTP request's before the engine validates
/// it; queries and mutations go to `POST /graphql`, with its timeout and its checks.
async fn screen(
    text: String,
    limits: &Limits,
    protocol: WebSocketProtocols,
) -> Result<String, String> {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(text); // the engine answers a malformed message itself
    };
    let kind = message.get("type").and_then(|kind| kind.as_str());
    if !matches!(kind, Some("subscribe" | "start")) {
        return Ok(text);
    }
    let id = message.get("id").cloned().unwrap_or_default();
    let refuse = |error: ApiError| {
        let code = error.code();
        let message = error.to_string();
        let payload = match protocol {
            WebSocketProtocols::GraphQLWS => {
                serde_json::json!([{ "message": message, "extensions": { "code": code } }])
            }
            _ => serde_json::json!({ "message": message, "extensions": { "code": code } }),
        };
        serde_json::json!({ "id": id, "type": "error", "payload": payload }).to_string()
    };
    let request = match message
        .get("payload")
        .cloned()
        .map(serde_json::from_value::<async_graphql::Request>)
    {
        Some(Ok(request)) => request,
        _ => {
            return Err(refuse(ApiError::BadRequest(
                "the payload is not a GraphQL request".into(),
            )));
        }
    };
    let (mut request, checked) = match super::graphql::parse_and_bound(request, limits).await {
        Ok(parsed) => parsed,
        Err(err) => return Err(refuse(err)),
    };
    match checked {
        Err(super::graphql::Refusal::Cost(err)) => return Err(refuse(err)),
        // The engine reports parse errors in the protocol's own way.
        Err(super::graphql::Refusal::Parse(_)) => return Ok(text),
        Ok(()) => {}
    }
    if super::graphql::operation_type(&mut request) != Some(OperationType::Subscription) {
        return Err(refuse(ApiError::BadRequest(
            "only subscriptions run over WebSocket; send queries and mutations with POST /graphql"
                .into(),
        )));
    }
    Ok(text)
}
