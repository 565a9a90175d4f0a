//! A `graphql-transport-ws` client over a real WebSocket, for the subscription tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

/// What the server sent next on a subscription.
#[derive(Debug)]
pub enum Received {
    /// A `next` message's payload (`data` and/or `errors`).
    Next(Value),
    /// `complete`: the subscription ended.
    Complete,
    /// The server closed the connection with this code and reason.
    Closed(u16, String),
}

pub struct Subscriber {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Subscriber {
    /// Opens a connection to `base_url` (http://host:port) and sends `connection_init` with `token`.
    /// Does not wait for the acknowledgement: see [`Self::acknowledged`].
    pub async fn connect(base_url: &str, token: Option<&str>) -> Self {
        let payload = match token {
            Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        Self::connect_sending(
            base_url,
            json!({ "type": "connection_init", "payload": payload }),
        )
        .await
    }

    /// Opens a connection and sends `first` as its first message, whatever it is.
    pub async fn connect_sending(base_url: &str, first: Value) -> Self {
        let url = format!("{}/graphql", base_url.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake");
        let mut subscriber = Self { socket };
        subscriber.send(first).await;
        subscriber
    }

    /// Connects and waits for `connection_ack`.
    pub async fn acknowledged(base_url: &str, token: &str) -> Self {
        let mut subscriber = Self::connect(base_url, Some(token)).await;
        match subscriber.message(Duration::from_secs(10)).await {
            Some(Ok(message)) if message["type"] == "connection_ack" => subscriber,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// Starts subscription `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// Stops subscription `id` (`complete` from the client).
    pub async fn stop(&mut self, id: &str) {
        self.send(json!({ "id": id, "type": "complete" })).await;
    }

    /// The next protocol message, `Err((code, reason))` for a close, `None` after `wait` of silence.
    async fn message(&mut self, wait: Duration) -> Option<Result<Value, (u16, String)>> {
        loop {
            let frame = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
            match frame {
                None => return Some(Err((1006, "connection dropped".into()))),
                Some(Err(_)) => return Some(Err((1006, "connection failed".into()))),
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(Ok(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Err(frame
                        .map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                        .unwrap_or((1005, String::new()))));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// What the server sends next, or `None` after `wait` without anything.
    pub async fn next(&mut self, wait: Duration) -> Option<Received> {
        match self.message(wait).await? {
            Err((code, reason)) => Some(Received::Closed(code, reason)),
            Ok(message) if message["type"] == "next" => {
                Some(Received::Next(message["payload"].clone()))
            }
            Ok(message) if message["type"] == "complete" => Some(Received::Complete),
            Ok(message) if message["type"] == "error" => {
                Some(Received::Next(json!({ "errors": message["payload"] })))
            }
            Ok(other) => panic!("unexpected message {other}"),
        }
    }

    /// The next `next` payload's `data`, panicking on anything else (within 20 s).
    pub async fn data(&mut self) -> Value {
        match self.next(Duration::from_secs(20)).await {
            Some(Received::Next(payload)) if payload.get("errors").is_none() => {
                payload["data"].clone()
            }
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// Closes the connection from the client's side.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
