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
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_graphql::{Data, http::WebSocketProtocols};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt, stream};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    auth::Session,
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

/// Open WebSocket connections per organization on this replica.
#[derive(Clone, Default)]
pub struct ConnectionCounts(Arc<Mutex<HashMap<Uuid, usize>>>);

/// One organization's connection, counted until dropped.
pub struct CountedConnection {
    counts: ConnectionCounts,
    organization: Uuid,
}

impl ConnectionCounts {
    fn admit(&self, organization: Uuid, limit: usize) -> Option<CountedConnection> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = counts.entry(organization).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        metrics::gauge!("hub_subscription_connections").increment(1.0);
        Some(CountedConnection {
            counts: self.clone(),
            organization,
        })
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = counts.get_mut(&self.organization) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.organization);
            }
        }
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
    let limits = &state.config.subscriptions;
    let Some(_counted) = state.connections.admit(
        session.principal.organization_id,
        limits.max_connections_per_organization,
    ) else {
        let reason = format!(
            "Too many connections for this organization (at most {})",
            limits.max_connections_per_organization
        );
        return close(&mut socket, TOO_MANY_CONNECTIONS, &reason).await;
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

/// Whether the connection's token, member or device is still accepted (checked in the database, or by
/// another connection of the same token within half the interval). A database hiccup is not a
/// revocation: it counts as allowed until the next check.
async fn still_allowed(
    state: &AppState,
    bearer: Option<&str>,
    interval: Duration,
    checked_at: &mut Instant,
) -> bool {
    let key = RecentChecks::key(bearer);
    if let Some(at) = state.recent_checks.fresh(&key, interval / 2) {
        *checked_at = at;
        return true;
    }
    match state
        .authenticator
        .authenticate_session(&state.db, bearer)
        .await
    {
        Ok(_) => {
            *checked_at = Instant::now();
            state.recent_checks.record(key, *checked_at, interval);
            true
        }
        Err(ApiError::Unauthenticated) => false,
        Err(err) => {
            err.log_if_internal();
            true
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
    data.insert(principal);
    let (mut sink, source) = socket.split();
    // The engine sees the `connection_init` already checked, and acknowledges it.
    let incoming = stream::once(async move { init }).chain(source.filter_map(|message| async {
        match message {
            Ok(Message::Text(text)) => Some(text.to_string()),
            Ok(Message::Binary(bytes)) => String::from_utf8(bytes.to_vec()).ok(),
            _ => None,
        }
    }));
    let mut engine = Box::pin(
        async_graphql::http::WebSocket::new(state.schema.clone(), incoming, protocol)
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
    let phase = half.mul_f64((getrandom::u32().unwrap_or(0) as f64) / (u32::MAX as f64));
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + phase, half);
    let mut checked_at = Instant::now();
    let revoked = || Some((FORBIDDEN, "Forbidden: access revoked".to_owned()));
    let closing: Option<(u16, String)> = loop {
        tokio::select! {
            // Expiry and revocation win over a ready message: nothing is delivered after either.
            biased;
            () = &mut expiry => break Some((FORBIDDEN, "Forbidden: token expired".into())),
            _ = recheck.tick() => {
                if !still_allowed(&state, bearer.as_deref(), interval, &mut checked_at).await {
                    break revoked();
                }
            }
            message = engine.next() => match message {
                Some(async_graphql::http::WsMessage::Text(text)) => {
                    // A delivery never rests on a check older than the interval: a removed member or
                    // a disabled device receives nothing later than one interval after the change.
                    if checked_at.elapsed() >= interval
                        && !still_allowed(&state, bearer.as_deref(), interval, &mut checked_at).await
                    {
                        break revoked();
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
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
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}
