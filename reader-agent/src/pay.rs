//! One payment: take a tap for a request, seal it, submit it. Shared by the long-running agent and the
//! one-shot command (`reader-agent pay --request ID`).

use std::{
    collections::HashSet,
    ffi::CString,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    AgentError,
    hub::{HubClient, HubFailure, PayOutcome, PaymentRequest},
    outbox::{Outbox, Tap},
    reader::Readers,
};

/// Where the time of one payment went.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// The hub's confirmation that the request is still open, once the card is there (the agent).
    pub check_ms: f64,
    /// SELECT and GENERATE PAYMENT with the card, from the moment the card was seen.
    pub card_ms: f64,
    /// Sealing the tap into the outbox (fsync included).
    pub outbox_ms: f64,
    /// The submission's round trip.
    pub submit_ms: f64,
    /// The hub's own share of it (its `Server-Timing`), when it says.
    pub hub_ms: Option<f64>,
    /// The rest of the round trip: network, TLS, HTTP.
    pub network_ms: Option<f64>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Why a tap was not taken, and on which reader the card lies (if one was seen), so the caller can
/// wait for it to leave.
#[derive(Debug)]
pub struct TapFailure {
    pub reader: Option<CString>,
    pub error: AgentError,
}

impl From<AgentError> for TapFailure {
    fn from(error: AgentError) -> Self {
        Self {
            reader: None,
            error,
        }
    }
}

/// How the card is to be waited for.
pub struct CardWait<'a> {
    pub preferred: Option<&'a str>,
    pub wait: Duration,
    /// Readers whose card lay there before the tap was asked for: it counts only once it has left.
    pub stale: HashSet<CString>,
}

/// Waits for a card on the reader, has it sign `request` and seals the tap in the outbox. Blocking.
///
/// `keep_waiting` is asked while waiting for the card (a request paid or cancelled elsewhere stops the
/// wait); `check` once the card is there, before the card is asked anything. Returns the reader used (so
/// the caller can wait for the card to leave) with the tap.
pub fn take_tap(
    readers: &Readers,
    how: &CardWait<'_>,
    outbox: &Outbox,
    request: &PaymentRequest,
    mut keep_waiting: impl FnMut() -> Result<(), AgentError>,
    check: impl FnOnce() -> Result<(), AgentError>,
    timings: &mut Timings,
) -> Result<(CString, Tap), TapFailure> {
    let past_deadline = || AgentError::TapDeadlinePassed(request.global_id.clone());
    let until_deadline = (request.tap_deadline - Utc::now())
        .to_std()
        .map_err(|_| past_deadline())?;
    let reader = readers
        .wait_for_card(
            how.preferred,
            how.wait.min(until_deadline),
            &how.stale,
            || {
                keep_waiting()?;
                if Utc::now() >= request.tap_deadline {
                    return Err(past_deadline());
                }
                Ok(())
            },
        )
        .map_err(|error| match error {
            // The wait ended at the tap deadline: say so rather than "no card".
            AgentError::NoCard(_) if Utc::now() >= request.tap_deadline => past_deadline(),
            other => other,
        })?;
    let on_reader = |error: AgentError| TapFailure {
        reader: Some(reader.clone()),
        error,
    };
    // Refused locally after the tap deadline: the card is not asked.
    if Utc::now() >= request.tap_deadline {
        return Err(on_reader(past_deadline()));
    }
    check().map_err(on_reader)?;
    let started = Instant::now();
    let answer = readers
        .generate_payment(&reader, &request.fields)
        .map_err(on_reader)?;
    timings.card_ms = ms(started);
    let tap = Tap {
        request_id: request.id,
        request: request.global_id.clone(),
        token: answer.token.to_base64url(),
        card_signature: URL_SAFE_NO_PAD.encode(answer.signature),
        idempotency_key: Uuid::new_v4().to_string(),
        amount_minor: request.fields.amount_minor,
        currency: request.currency.clone(),
        tapped_at: Utc::now(),
        acceptance_deadline: request.acceptance_deadline,
    };
    let started = Instant::now();
    outbox.store(&tap).map_err(on_reader)?;
    timings.outbox_ms = ms(started);
    Ok((reader, tap))
}

/// Submits a sealed tap once (the outbox entry stays: see [`settle`]).
pub async fn submit(
    hub: &HubClient,
    tap: &Tap,
    timings: &mut Timings,
) -> Result<PayOutcome, HubFailure> {
    let started = Instant::now();
    let result = hub.pay(tap).await;
    timings.submit_ms = ms(started);
    if let Ok(outcome) = &result {
        timings.hub_ms = outcome.hub_ms;
        timings.network_ms = outcome.hub_ms.map(|hub| (timings.submit_ms - hub).max(0.0));
    }
    result
}

/// What a submission's result does to its outbox entry: an outcome deletes it; a final refusal moves
/// it to `refused/`; a transient failure or a refused device keeps it for the next attempt.
pub fn settle(outbox: &Outbox, tap: &Tap, result: &Result<PayOutcome, HubFailure>) {
    match result {
        Ok(outcome) => {
            if let Err(err) = outbox.remove(tap.request_id) {
                // The next attempt resubmits it with the same key and gets the same answer.
                tracing::error!(request = %tap.request, error = %err, "cannot delete a finished outbox entry");
            }
            if outcome.authorized() {
                tracing::info!(request = %tap.request, payment = ?outcome.payment_id,
                    amount_minor = tap.amount_minor, currency = %tap.currency, "payment authorized");
            } else {
                tracing::warn!(request = %tap.request, reason = ?outcome.decline_reason,
                    "payment declined");
            }
        }
        Err(HubFailure::Refused { code, message }) => {
            // The hub will never accept these bytes: retrying cannot help. Kept aside, not deleted.
            tracing::error!(request = %tap.request, %code, %message,
                "the hub refused the tap for good; it is moved to the outbox's refused/ folder");
            outbox.refused(tap.request_id, code);
        }
        Err(HubFailure::DeviceRefused) => {
            tracing::error!(request = %tap.request, "the hub refuses this device; the tap stays in the outbox");
        }
        Err(HubFailure::Transient(reason)) => {
            tracing::warn!(request = %tap.request, %reason, "submission failed; the tap stays in the outbox and is retried");
        }
    }
}

/// The delay before attempt `attempt + 1` of a failed submission: doubling from 0.5 s to at most
/// `cap`, with up to a quarter of random spread so that many tablets do not retry in step.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.min(10))
        .min(cap);
    let mut byte = [0u8; 1];
    let spread = if getrandom::fill(&mut byte).is_ok() {
        f64::from(byte[0]) / 255.0 * 0.25
    } else {
        0.0
    };
    base.mul_f64(1.0 - spread)
}

/// What the one-shot command prints (JSON) besides its exit code.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub request_id: String,
    /// AUTHORIZED, DECLINED, or QUEUED (sealed in the outbox; `reader-agent run` submits it).
    pub status: String,
    pub decline_reason: Option<String>,
    pub payment_id: Option<String>,
    pub timings: Timings,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match self.status.as_str() {
            "AUTHORIZED" => 0,
            "QUEUED" => crate::exit::QUEUED,
            _ => crate::exit::DECLINED,
        }
    }
}

/// One payment for `request_id`, for a person at the till or a script: the tap (or the tap already
/// sealed for it by an earlier attempt), then submissions until a final answer or `submit_for` passes.
pub async fn one_shot(
    hub: &HubClient,
    outbox: &Outbox,
    preferred_reader: Option<String>,
    request_id: Uuid,
    wait: Duration,
    submit_for: Duration,
) -> Result<Report, AgentError> {
    let mut timings = Timings::default();
    let tap = match outbox.load(request_id)? {
        Some(tap) => tap, // tapped before: never ask the card twice for one request
        None => {
            let request = hub.payment_request(request_id).await?;
            if !request.is_open() {
                return Err(AgentError::RequestNotOpen {
                    id: request.global_id,
                    status: request.status,
                });
            }
            if Utc::now() >= request.tap_deadline {
                return Err(AgentError::TapDeadlinePassed(request.global_id));
            }
            let (tap, tap_timings) = tokio::task::block_in_place(|| {
                let readers = Readers::connect()?;
                // A card lying on the reader before the customer is asked to tap does not pay.
                let how = CardWait {
                    preferred: preferred_reader.as_deref(),
                    wait,
                    stale: readers.readers_with_card()?,
                };
                eprintln!(
                    "tap a card: {} for request {}",
                    format_amount(request.fields.amount_minor, &request.currency),
                    request.global_id
                );
                let mut timings = Timings::default();
                let (_, tap) = take_tap(
                    &readers,
                    &how,
                    outbox,
                    &request,
                    || Ok(()),
                    || Ok(()),
                    &mut timings,
                )
                .map_err(|failure| failure.error)?;
                Ok::<_, AgentError>((tap, timings))
            })?;
            timings = tap_timings;
            tap
        }
    };
    let give_up = Instant::now() + submit_for;
    let mut attempt = 0;
    loop {
        let result = submit(hub, &tap, &mut timings).await;
        settle(outbox, &tap, &result);
        match result {
            Ok(outcome) => {
                return Ok(Report {
                    request_id: tap.request.clone(),
                    status: outcome.status,
                    decline_reason: outcome.decline_reason,
                    payment_id: outcome.payment_id,
                    timings,
                });
            }
            Err(HubFailure::Transient(_)) if Instant::now() < give_up => {
                tokio::time::sleep(backoff(attempt, Duration::from_secs(5))).await;
                attempt += 1;
            }
            Err(HubFailure::Transient(_)) => {
                return Ok(Report {
                    request_id: tap.request.clone(),
                    status: "QUEUED".into(),
                    decline_reason: None,
                    payment_id: None,
                    timings,
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// Minor units as the currency writes them ("12.50 EUR", "1250 JPY"), by its ISO 4217 exponent.
pub fn format_amount(minor: u64, currency: &str) -> String {
    let exponent = iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .unwrap_or(0);
    if exponent == 0 {
        return format!("{minor} {currency}");
    }
    let scale = 10u64.pow(u32::from(exponent));
    format!(
        "{}.{:0width$} {currency}",
        minor / scale,
        minor % scale,
        width = usize::from(exponent)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_currency_exponent() {
        assert_eq!(format_amount(1250, "EUR"), "12.50 EUR");
        assert_eq!(format_amount(1250, "JPY"), "1250 JPY");
        assert_eq!(format_amount(1005, "KWD"), "1.005 KWD");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let cap = Duration::from_secs(10);
        assert!(backoff(0, cap) <= Duration::from_millis(500));
        assert!(backoff(0, cap) >= Duration::from_millis(375));
        assert!(backoff(3, cap) >= Duration::from_millis(3000));
        assert!(backoff(30, cap) <= cap);
    }
}
