//! Following the terminal's payment requests over a WebSocket (`graphql-transport-ws`).
//!
//! `terminalPaymentRequests` first sends every request that is open at the terminal, then each one that
//! is opened, paid or cancelled. The set of open requests is therefore the resume point: a connection
//! made after an outage starts with everything still open, and nothing that was opened meanwhile is
//! missed. A session lasts until its device token is due for renewal; the caller then connects again
//! with a fresh token (the hub closes a connection whose token expires).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

use crate::{
    AgentError,
    hub::{HubClient, HubFailure, PaymentRequest, REQUEST_FIELDS},
};

/// The hub pings every 30 s; silence for this long means the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The token is due for renewal: connect again.
    Renew,
    /// The hub refused the device (close code 4403 on `connection_init` with a fresh token, or
    /// `UNAUTHENTICATED`).
    DeviceRefused,
    /// Anything else: reconnect after a backoff.
    Lost(String),
}

/// One connection: sends each request it hears about to `on_request`, until it ends.
/// `on_connected` is called when the hub acknowledges the connection.
pub async fn session(
    hub: &HubClient,
    mut on_connected: impl FnMut(),
    mut on_request: impl FnMut(PaymentRequest),
) -> SessionEnd {
    match run(hub, &mut on_connected, &mut on_request).await {
        Ok(end) | Err(end) => end,
    }
}

async fn run(
    hub: &HubClient,
    on_connected: &mut impl FnMut(),
    on_request: &mut impl FnMut(PaymentRequest),
) -> Result<SessionEnd, SessionEnd> {
    // A fresh token: the session lasts until it is due for renewal.
    let token = hub
        .tokens()
        .fresh_token()
        .map_err(|err| SessionEnd::Lost(err.to_string()))?;
    let url = format!(
        "{}/graphql",
        hub.base_url()
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    let mut request = url
        .into_client_request()
        .map_err(|err| SessionEnd::Lost(format!("bad hub URL: {err}")))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let connect = tokio_tungstenite::connect_async(request);
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| SessionEnd::Lost("WebSocket handshake timed out".into()))?
        .map_err(|err| SessionEnd::Lost(format!("WebSocket: {err}")))?;
    let send = |message: Value| Message::Text(message.to_string().into());
    socket
        .send(send(json!({ "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") } })))
        .await
        .map_err(|err| SessionEnd::Lost(err.to_string()))?;
    let query = format!(
        "subscription Terminal($terminal: ID!) {{ terminalPaymentRequests(terminalId: $terminal) {{ {REQUEST_FIELDS} }} }}"
    );
    let renew_at = tokio::time::Instant::now() + hub.tokens().renew_after();
    let mut subscribed = false;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(SILENCE_LIMIT, socket.next()) => next,
            _ = tokio::time::sleep_until(renew_at) => {
                let _ = socket.close(None).await;
                return Ok(SessionEnd::Renew);
            }
        };
        let message = match next {
            Err(_) => return Err(SessionEnd::Lost("the hub went silent".into())),
            Ok(None) => return Err(SessionEnd::Lost("the connection ended".into())),
            Ok(Some(Err(err))) => return Err(SessionEnd::Lost(err.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                // Refused at `connection_init`, with a token signed a moment ago: the device itself is
                // refused. Later (a token expired by clock skew, a recheck), reconnecting decides.
                return Err(if (code == 4403 || code == 4401) && !subscribed {
                    SessionEnd::DeviceRefused
                } else {
                    SessionEnd::Lost(format!("closed by the hub ({code} {reason})"))
                });
            }
            _ => continue, // WebSocket pings are answered by the library
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            return Err(SessionEnd::Lost("a message that is not JSON".into()));
        };
        match message.get("type").and_then(Value::as_str) {
            Some("connection_ack") if !subscribed => {
                subscribed = true;
                on_connected();
                socket
                    .send(send(json!({ "id": "terminal", "type": "subscribe",
                        "payload": { "query": query, "variables": { "terminal": hub.terminal() } } })))
                    .await
                    .map_err(|err| SessionEnd::Lost(err.to_string()))?;
                tracing::info!("following the terminal's payment requests");
            }
            Some("ping") => {
                socket
                    .send(send(json!({ "type": "pong" })))
                    .await
                    .map_err(|err| SessionEnd::Lost(err.to_string()))?;
            }
            Some("next") => {
                if let Some(errors) = message.pointer("/payload/errors") {
                    return Err(subscription_error(errors));
                }
                match message
                    .pointer("/payload/data/terminalPaymentRequests")
                    .and_then(PaymentRequest::from_json)
                {
                    Some(request) => on_request(request),
                    None => tracing::warn!("ignored a payment request this agent cannot read"),
                }
            }
            Some("error") => return Err(subscription_error(&message["payload"])),
            Some("complete") => {
                return Err(SessionEnd::Lost("the hub ended the subscription".into()));
            }
            _ => {}
        }
    }
}

fn subscription_error(errors: &Value) -> SessionEnd {
    let first = errors.as_array().and_then(|e| e.first()).unwrap_or(errors);
    match crate::hub::classify(first) {
        HubFailure::DeviceRefused => SessionEnd::DeviceRefused,
        HubFailure::Transient(reason)
        | HubFailure::Refused {
            message: reason, ..
        } => SessionEnd::Lost(reason),
    }
}

impl From<SessionEnd> for AgentError {
    fn from(end: SessionEnd) -> Self {
        match end {
            SessionEnd::DeviceRefused => AgentError::DeviceRefused,
            SessionEnd::Renew => AgentError::HubUnreachable("token renewal".into()),
            SessionEnd::Lost(reason) => AgentError::HubUnreachable(reason),
        }
    }
}
