//! The hub's GraphQL API as the agent uses it: read a payment request, submit a tap.
//!
//! Every answer is sorted into what the agent must do next (see [`HubFailure`]): a final answer ends a
//! tap's life in the outbox; anything that is not a final answer keeps it there to be retried with the
//! same idempotency key.

use std::{collections::HashSet, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use card_protocol::card_signature::PaymentRequestFields;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{AgentError, device::TokenSource, ids, outbox::Tap};

pub const REQUEST_FIELDS: &str =
    "id status amountMinor currency challenge tapDeadline acceptanceDeadline
    signingFields { requestId merchantId terminalId hubInstanceId }";

const PAY: &str = "mutation Pay($input: PayWithOneTimeNumberInput!) {
    payWithOneTimeNumber(input: $input) { status declineReason evidenceId payment { id } } }";

/// Why the hub gave no usable answer.
#[derive(Debug)]
pub enum HubFailure {
    /// Not a final answer (unreachable, timed out, 5xx, `INTERNAL`, `TIMEOUT`, a retryable `CONFLICT`):
    /// try again later with the same idempotency key.
    Transient(String),
    /// The hub does not accept this device's token (`UNAUTHENTICATED`).
    DeviceRefused,
    /// A final refusal (`NOT_FOUND`, `VALIDATION`, `IDEMPOTENCY_MISMATCH`, ...).
    Refused { code: String, message: String },
}

impl From<HubFailure> for AgentError {
    fn from(failure: HubFailure) -> Self {
        match failure {
            HubFailure::Transient(reason) => {
                AgentError::HubUnreachable(format!("no final answer ({reason})"))
            }
            HubFailure::DeviceRefused => AgentError::DeviceRefused,
            HubFailure::Refused { code, message } => AgentError::HubRefused { code, message },
        }
    }
}

/// A payment request as the terminal's device sees it (with the challenge the card signs).
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub id: Uuid,
    pub global_id: String,
    pub status: String,
    pub fields: PaymentRequestFields,
    pub currency: String,
    pub tap_deadline: DateTime<Utc>,
    pub acceptance_deadline: DateTime<Utc>,
}

impl PaymentRequest {
    pub fn is_open(&self) -> bool {
        self.status == "OPEN"
    }

    /// Reads the GraphQL object (fields of [`REQUEST_FIELDS`]); `None` if anything is missing or
    /// malformed (a hub this agent does not understand must not make it sign something else).
    pub fn from_json(value: &Value) -> Option<Self> {
        let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        let uuid = |pointer: &str| text(pointer).and_then(|t| Uuid::parse_str(t).ok());
        let time = |pointer: &str| {
            text(pointer)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let amount = match value.get("amountMinor")? {
            Value::String(text) => text.parse::<u64>().ok()?,
            Value::Number(number) => number.as_u64()?,
            _ => return None,
        };
        let currency = text("/currency")?;
        let currency_bytes: [u8; 3] = currency.as_bytes().try_into().ok()?;
        let challenge: [u8; 16] = URL_SAFE_NO_PAD
            .decode(text("/challenge")?)
            .ok()?
            .try_into()
            .ok()?;
        let id = uuid("/signingFields/requestId")?;
        let global_id = text("/id")?.to_owned();
        if ids::parse(ids::PAYMENT_REQUEST, &global_id) != Some(id) {
            return None;
        }
        Some(Self {
            id,
            global_id,
            status: text("/status")?.to_owned(),
            fields: PaymentRequestFields {
                request_id: id.into(),
                challenge,
                amount_minor: amount,
                currency: currency_bytes,
                merchant: uuid("/signingFields/merchantId")?.into(),
                terminal: uuid("/signingFields/terminalId")?.into(),
                hub_instance: uuid("/signingFields/hubInstanceId")?.into(),
            },
            currency: currency.to_owned(),
            tap_deadline: time("/tapDeadline")?,
            acceptance_deadline: time("/acceptanceDeadline")?,
        })
    }
}

/// The hub's final answer to a tap.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayOutcome {
    pub status: String,
    pub decline_reason: Option<String>,
    pub payment_id: Option<String>,
    pub evidence_id: String,
    /// The hub's own time for the request (its `Server-Timing` header), when it sent one.
    pub hub_ms: Option<f64>,
}

impl PayOutcome {
    pub fn authorized(&self) -> bool {
        self.status == "AUTHORIZED"
    }
}

#[derive(Clone)]
pub struct HubClient {
    base_url: String,
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
}

impl HubClient {
    pub fn new(base_url: &str, tokens: Arc<TokenSource>) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| AgentError::Setup(format!("HTTP client: {err}")))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            tokens,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn tokens(&self) -> &Arc<TokenSource> {
        &self.tokens
    }

    /// The terminal this device is (a device is its own terminal), as a global ID.
    pub fn terminal(&self) -> String {
        ids::global_id(ids::DEVICE, self.tokens.device())
    }

    /// Posts one GraphQL operation; returns `data` and the hub's own time.
    async fn graphql(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<(Value, Option<f64>), HubFailure> {
        let token = self
            .tokens
            .token()
            .map_err(|err| HubFailure::Transient(err.to_string()))?;
        let response = self
            .http
            .post(format!("{}/graphql", self.base_url))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|err| HubFailure::Transient(describe_transport(err)))?;
        let status = response.status();
        let hub_ms = response
            .headers()
            .get("server-timing")
            .and_then(|value| value.to_str().ok())
            .and_then(server_timing_ms);
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(_) if status.is_server_error() => {
                return Err(HubFailure::Transient(format!("the hub answered {status}")));
            }
            Err(err) => {
                return Err(HubFailure::Transient(format!(
                    "unreadable answer ({status}): {}",
                    describe_transport(err)
                )));
            }
        };
        if let Some(error) = body
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return Err(classify(error));
        }
        if status.is_server_error() {
            return Err(HubFailure::Transient(format!("the hub answered {status}")));
        }
        Ok((body.get("data").cloned().unwrap_or(Value::Null), hub_ms))
    }

    /// The request as this terminal's device sees it: `RequestNotFound` if it is not one of this
    /// terminal's requests (the hub does not tell which).
    pub async fn payment_request(&self, id: Uuid) -> Result<PaymentRequest, AgentError> {
        let global = ids::global_id(ids::PAYMENT_REQUEST, id);
        let query = format!(
            "query Request($id: ID!) {{ node(id: $id) {{ ... on PaymentRequest {{ {REQUEST_FIELDS} }} }} }}"
        );
        let (data, _) = match self.graphql(&query, json!({ "id": global })).await {
            Err(HubFailure::Refused { code, .. }) if code == "NOT_FOUND" => {
                return Err(AgentError::RequestNotFound(global));
            }
            other => other?,
        };
        match data.get("node") {
            Some(node) if !node.is_null() => {
                PaymentRequest::from_json(node).ok_or_else(|| AgentError::HubRefused {
                    code: "UNEXPECTED_ANSWER".into(),
                    message: "the payment request lacks fields the card must sign".into(),
                })
            }
            _ => Err(AgentError::RequestNotFound(global)),
        }
    }

    /// The requests open at this terminal now (at most one page of 100; `None` if there are more).
    pub async fn open_request_ids(&self) -> Result<Option<HashSet<Uuid>>, AgentError> {
        let query = "query Open { paymentRequests(first: 100, filter: { status: OPEN }) {
            nodes { signingFields { requestId } } pageInfo { hasNextPage } } }";
        let (data, _) = self.graphql(query, json!({})).await?;
        if data.pointer("/paymentRequests/pageInfo/hasNextPage") != Some(&Value::Bool(false)) {
            return Ok(None);
        }
        let nodes = data
            .pointer("/paymentRequests/nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| AgentError::HubRefused {
                code: "UNEXPECTED_ANSWER".into(),
                message: "paymentRequests without nodes".into(),
            })?;
        Ok(Some(
            nodes
                .iter()
                .filter_map(|node| node.pointer("/signingFields/requestId"))
                .filter_map(Value::as_str)
                .filter_map(|id| Uuid::parse_str(id).ok())
                .collect(),
        ))
    }

    /// Submits a sealed tap. The same tap may be submitted any number of times: its idempotency key
    /// makes the hub answer a repeat with the first outcome.
    pub async fn pay(&self, tap: &Tap) -> Result<PayOutcome, HubFailure> {
        let (data, hub_ms) = self
            .graphql(
                PAY,
                json!({ "input": {
                    "requestId": tap.request,
                    "token": tap.token,
                    "cardSignature": tap.card_signature,
                    "idempotencyKey": tap.idempotency_key,
                } }),
            )
            .await?;
        let outcome = data.get("payWithOneTimeNumber").ok_or_else(|| {
            HubFailure::Transient("the answer has no payWithOneTimeNumber".into())
        })?;
        let text = |pointer: &str| {
            outcome
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(PayOutcome {
            status: text("/status")
                .ok_or_else(|| HubFailure::Transient("the answer has no status".into()))?,
            decline_reason: text("/declineReason"),
            payment_id: text("/payment/id"),
            evidence_id: text("/evidenceId").unwrap_or_default(),
            hub_ms,
        })
    }
}

/// Codes that are the hub's final word on a submission: these bytes will never be accepted, so
/// retrying cannot help. Everything else (including codes this agent does not know, which a newer hub
/// may send) is retried with the same idempotency key: a tap is never given up on a guess.
const FINAL_CODES: &[&str] = &["VALIDATION", "IDEMPOTENCY_MISMATCH", "NOT_FOUND"];

/// Sorts a GraphQL error by its code into a retry, a refused device, or a final answer.
pub(crate) fn classify(error: &Value) -> HubFailure {
    let code = error
        .pointer("/extensions/code")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_owned();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match code.as_str() {
        // A device's token refused, or a device that may no longer act for this terminal.
        "UNAUTHENTICATED" | "FORBIDDEN" => HubFailure::DeviceRefused,
        final_code if FINAL_CODES.contains(&final_code) => HubFailure::Refused { code, message },
        _ => HubFailure::Transient(format!("{code}: {message}")),
    }
}

/// A transport error without its URL's query or anything the request carried.
fn describe_transport(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "connection failed".into()
    } else {
        err.without_url().to_string()
    }
}

/// The `dur` of the first metric of a `Server-Timing` header (`hub;dur=1.23`).
fn server_timing_ms(header: &str) -> Option<f64> {
    header
        .split(',')
        .next()?
        .split(';')
        .find_map(|part| part.trim().strip_prefix("dur="))
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_sorted_into_retries_and_final_answers() {
        let error = |code: &str, retryable: bool| json!({ "message": "m", "extensions": { "code": code, "retryable": retryable } });
        assert!(matches!(
            classify(&error("INTERNAL", false)),
            HubFailure::Transient(_)
        ));
        assert!(matches!(
            classify(&error("CONFLICT", true)),
            HubFailure::Transient(_)
        ));
        assert!(matches!(
            classify(&error("CONFLICT", false)),
            HubFailure::Transient(_)
        ));
        assert!(matches!(
            classify(&json!({ "message": "no code" })),
            HubFailure::Transient(_)
        ));
        assert!(matches!(
            classify(&error("GRAPHQL_VALIDATION_FAILED", false)),
            HubFailure::Transient(_)
        ));
        assert!(matches!(
            classify(&error("FORBIDDEN", false)),
            HubFailure::DeviceRefused
        ));
        assert!(matches!(
            classify(&error("NOT_FOUND", false)),
            HubFailure::Refused { .. }
        ));
        assert!(matches!(
            classify(&error("UNAUTHENTICATED", false)),
            HubFailure::DeviceRefused
        ));
        assert!(matches!(
            classify(&error("IDEMPOTENCY_MISMATCH", false)),
            HubFailure::Refused { .. }
        ));
        assert_eq!(server_timing_ms("hub;dur=1.5"), Some(1.5));
        assert_eq!(
            server_timing_ms("hub;desc=\"x\";dur=2, db;dur=1"),
            Some(2.0)
        );
        assert_eq!(server_timing_ms("hub"), None);
    }
}
