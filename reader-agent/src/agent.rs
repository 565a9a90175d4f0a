//! The long-running agent (`reader-agent run`): three parts that share nothing but channels.
//!
//! - the **follower** keeps the set of the terminal's open payment requests, from the subscription
//!   (reconnecting with backoff; every connection starts with all open requests, so none is missed, and
//!   requests closed while it was away are dropped once the hub has listed what is open now);
//! - the **till** (a thread: PC/SC blocks) takes the oldest open request, waits for a card, has it
//!   sign, seals the tap in the outbox and hands it on; after every exchange it waits for the card to
//!   leave the reader, so a card left lying there never pays the next request too;
//! - the **submitter** submits sealed taps (those of earlier runs first), retrying transient failures
//!   with backoff and the same idempotency key until the hub gives a final answer.
//!
//! The hub refusing the device (revoked, unknown) stops the agent with its exit code; sealed taps stay
//! in the outbox.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{
    AgentError,
    hub::{HubClient, HubFailure, PaymentRequest},
    outbox::{Outbox, Pending, Tap},
    pay::{self, CardWait, TapFailure, Timings, backoff},
    reader::Readers,
    subscription::{self, SessionEnd},
};

/// The longest pause between two attempts to reach the hub.
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// How long the till waits for a card before it looks at the open requests again.
const CARD_WAIT_SLICE: Duration = Duration::from_secs(5);
/// How often the submitter looks for taps it does not know of (an earlier run's, a one-shot's).
const OUTBOX_RESCAN: Duration = Duration::from_secs(5);

pub struct AgentOptions {
    /// The reader to use; `None`: whichever reader a card is presented on.
    pub reader: Option<String>,
}

/// The open requests, each with the subscription session that last reported it.
type OpenRequests = BTreeMap<Uuid, (PaymentRequest, u64)>;

/// Runs until the hub refuses the device (an error) or the process is stopped.
pub async fn run(
    hub: HubClient,
    outbox: Arc<Outbox>,
    options: AgentOptions,
) -> Result<(), AgentError> {
    let (open_tx, open_rx) = watch::channel(OpenRequests::new());
    let (tap_tx, tap_rx) = mpsc::unbounded_channel::<Tap>();
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<AgentError>(4);
    let hub_back = Arc::new(tokio::sync::Notify::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<Finished>();

    let follower = tokio::spawn(follow(
        hub.clone(),
        Arc::new(open_tx),
        fatal_tx.clone(),
        hub_back.clone(),
    ));
    let submitter = tokio::spawn(submit_loop(
        hub.clone(),
        outbox.clone(),
        tap_rx,
        fatal_tx.clone(),
        hub_back,
        finished_tx,
    ));
    let till = {
        let (hub, outbox, stopping) = (hub.clone(), outbox.clone(), stopping.clone());
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("till".into())
            .spawn(move || {
                let result = till(
                    &runtime,
                    &hub,
                    &outbox,
                    &options,
                    open_rx,
                    tap_tx,
                    finished_rx,
                    &stopping,
                );
                if let Err(error) = result {
                    let _ = fatal_tx.blocking_send(error);
                }
            })
            .map_err(|err| AgentError::Setup(format!("cannot start the till thread: {err}")))?
    };

    let outcome = tokio::select! {
        error = fatal_rx.recv() => error.map_or(Ok(()), Err),
        _ = shutdown_signal() => {
            tracing::info!("stopping; sealed taps stay in the outbox for the next start");
            Ok(())
        }
    };
    stopping.store(true, Ordering::Relaxed);
    follower.abort();
    submitter.abort();
    // The till notices `stopping` within a second; it never holds anything that must be flushed (a tap
    // is sealed before it is handed on).
    let _ = tokio::task::spawn_blocking(move || till.join()).await;
    outcome
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The follower: the open requests of the terminal, kept current across reconnections.
async fn follow(
    hub: HubClient,
    open: Arc<watch::Sender<OpenRequests>>,
    fatal: mpsc::Sender<AgentError>,
    hub_back: Arc<tokio::sync::Notify>,
) {
    let mut failures = 0u32;
    for session in 1u64.. {
        let started = tokio::time::Instant::now();
        let on_connected = || {
            if failures > 0 {
                // The hub answers again: the submitter need not wait out its backoff.
                hub_back.notify_one();
            }
            // Requests closed while the agent was away are dropped once the hub says what is open.
            tokio::spawn(drop_closed(hub.clone(), open.clone(), session));
        };
        let end = subscription::session(&hub, on_connected, |request| {
            open.send_modify(|open| {
                if request.is_open() {
                    if !open.contains_key(&request.id) {
                        tracing::info!(request = %request.global_id,
                            amount = %pay::format_amount(request.fields.amount_minor, &request.currency),
                            "payment request open: waiting for a tap");
                    }
                    open.insert(request.id, (request, session));
                } else {
                    open.remove(&request.id);
                }
            });
        })
        .await;
        // Requests past their tap deadline can no longer be tapped; forget them.
        open.send_modify(|open| open.retain(|_, (request, _)| request.tap_deadline > Utc::now()));
        match end {
            SessionEnd::Renew => failures = 0,
            SessionEnd::DeviceRefused => {
                let _ = fatal.send(AgentError::DeviceRefused).await;
                return;
            }
            SessionEnd::Lost(reason) => {
                // Only a session that lasted resets the backoff: a hub that accepts and then drops
                // every connection is not hammered.
                if started.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                let delay = backoff(failures, MAX_RETRY_INTERVAL);
                failures = failures.saturating_add(1);
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64,
                    "lost the hub's payment requests; reconnecting");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Drops the requests that earlier sessions reported open and that the hub no longer lists as open.
/// Requests reported by this session stay whatever the listing says (it may predate them).
async fn drop_closed(hub: HubClient, open: Arc<watch::Sender<OpenRequests>>, session: u64) {
    match hub.open_request_ids().await {
        Ok(Some(listed)) => open.send_modify(|open| {
            let before = open.len();
            open.retain(|id, (_, reported_in)| *reported_in == session || listed.contains(id));
            if open.len() < before {
                tracing::info!(
                    dropped = before - open.len(),
                    "requests closed while the agent was away are dropped"
                );
            }
        }),
        Ok(None) => {} // more open requests than one page: keep them all, the till confirms each
        Err(error) => {
            tracing::warn!(%error, "cannot list the open requests; keeping what is known")
        }
    }
}

/// What the submitter tells the till about a tap it finished with.
#[derive(Debug)]
enum Finished {
    /// Authorized, refused for good, or declined for a reason that closes the request: the request is
    /// done with at this till. Sent before the outbox entry goes, so the till never re-arms for it.
    Done(Uuid),
    /// Declined for a reason of the card's: the request stays open at the hub and another card may pay
    /// it. Sent after the outbox entry is gone, so the next tap can be sealed.
    Declined(Uuid),
}

/// Decline reasons after which the request cannot be paid at all.
const CLOSING_DECLINES: &[&str] = &[
    "REQUEST_UNKNOWN",
    "REQUEST_CANCELLED",
    "REQUEST_ALREADY_PAID",
    "PAST_DEADLINE",
];

/// The till: one tap at a time, for the oldest open request nobody has tapped for yet.
#[allow(clippy::too_many_arguments)]
fn till(
    runtime: &tokio::runtime::Handle,
    hub: &HubClient,
    outbox: &Outbox,
    options: &AgentOptions,
    mut open: watch::Receiver<OpenRequests>,
    taps: mpsc::UnboundedSender<Tap>,
    finished: std::sync::mpsc::Receiver<Finished>,
    stopping: &AtomicBool,
) -> Result<(), AgentError> {
    let mut readers: Option<Readers> = None;
    // Requests tapped for (and until when to remember them).
    let mut tapped: HashMap<Uuid, chrono::DateTime<Utc>> = HashMap::new();
    let drain = |tapped: &mut HashMap<Uuid, chrono::DateTime<Utc>>| {
        for message in finished.try_iter() {
            match message {
                // Also a tap of an earlier run: never arm for its request again, even before the
                // subscription reports it paid (remembered a while, then forgotten).
                Finished::Done(request) => {
                    tapped.insert(request, Utc::now() + chrono::Duration::minutes(30));
                }
                Finished::Declined(request) => {
                    tapped.remove(&request);
                }
            }
        }
    };
    while !stopping.load(Ordering::Relaxed) {
        let Some(reader_set) = readers.as_ref() else {
            readers = connect_readers(stopping);
            continue;
        };
        drain(&mut tapped);
        tapped.retain(|_, until| *until > Utc::now());
        let next = open
            .borrow_and_update()
            .values()
            .map(|(request, _)| request)
            .filter(|r| r.is_open() && r.tap_deadline > Utc::now())
            .filter(|r| !tapped.contains_key(&r.id) && !outbox.contains(r.id))
            .min_by_key(|r| r.tap_deadline)
            .cloned();
        // A tap that was finished between the look at the channel and the look at the outbox.
        drain(&mut tapped);
        let Some(request) = next.filter(|r| !tapped.contains_key(&r.id)) else {
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(500), open.changed()).await
            });
            continue;
        };
        let still_open = || {
            if stopping.load(Ordering::Relaxed) {
                return Err(AgentError::Setup("stopping".into()));
            }
            match open.borrow().get(&request.id) {
                Some((current, _)) if current.is_open() => Ok(()),
                _ => Err(not_open(&request)),
            }
        };
        let mut timings = Timings::default();
        let mut check_ms = 0.0;
        let how = CardWait {
            preferred: options.reader.as_deref(),
            wait: CARD_WAIT_SLICE,
            stale: HashSet::new(),
        };
        let result = pay::take_tap(
            reader_set,
            &how,
            outbox,
            &request,
            still_open,
            || confirm_open(runtime, hub, &request, &mut check_ms),
            &mut timings,
        );
        timings.check_ms = check_ms;
        let left_on = match result {
            Ok((reader, tap)) => {
                tapped.insert(request.id, request.acceptance_deadline);
                tracing::info!(request = %request.global_id, check_ms = timings.check_ms,
                    card_ms = timings.card_ms, outbox_ms = timings.outbox_ms,
                    "tap sealed in the outbox; submitting");
                if taps.send(tap).is_err() {
                    return Ok(()); // the submitter is gone: the agent is stopping
                }
                Some(reader)
            }
            Err(TapFailure { reader, error }) => {
                match error {
                    AgentError::NoCard(_) => {} // look at the open requests again, then wait on
                    AgentError::RequestNotOpen { .. }
                    | AgentError::RequestNotFound(_)
                    | AgentError::TapDeadlinePassed(_) => {
                        if stopping.load(Ordering::Relaxed) {
                            break;
                        }
                        tracing::info!(request = %request.global_id, code = error.code(), "no tap for this request");
                        tapped.insert(request.id, request.acceptance_deadline);
                    }
                    AgentError::CardRemoved
                    | AgentError::UnknownApplication
                    | AgentError::NoNumbersLeft
                    | AgentError::CardRefused(_) => {
                        tracing::warn!(request = %request.global_id, code = error.code(), %error, "no payment from this tap");
                    }
                    AgentError::NoReader(_) | AgentError::Reader(_) => {
                        tracing::warn!(code = error.code(), %error, "the reader is not usable; reconnecting");
                        readers = None;
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    other => return Err(other),
                }
                reader
            }
        };
        if let Some(reader) = left_on
            && !await_removal(reader_set, &reader, stopping)
        {
            readers = None; // PC/SC failed while watching: start over with a new context
        }
    }
    Ok(())
}

/// A PC/SC context, once a card left lying on a reader has gone (it pays nothing when the agent
/// starts). `None` (after a pause) while pcscd or the reader cannot be used.
fn connect_readers(stopping: &AtomicBool) -> Option<Readers> {
    let failed = |error: AgentError| {
        tracing::warn!(code = error.code(), %error, "no usable card reader yet; trying again");
        std::thread::sleep(Duration::from_secs(2));
        None
    };
    let readers = match Readers::connect() {
        Ok(readers) => readers,
        Err(error) => return failed(error),
    };
    let lying = match readers.readers_with_card() {
        Ok(lying) => lying,
        Err(error) => return failed(error),
    };
    for reader in lying {
        if !await_removal(&readers, &reader, stopping) {
            return failed(AgentError::Reader("lost the reader while waiting".into()));
        }
    }
    Some(readers)
}

fn not_open(request: &PaymentRequest) -> AgentError {
    AgentError::RequestNotOpen {
        id: request.global_id.clone(),
        status: "no longer open".into(),
    }
}

/// Asks the hub, once the card is there and before the card is asked anything, whether the request is
/// still open: a request cancelled while the subscription was reconnecting must not cost the customer a
/// number. A hub that does not answer within 1.5 s is not waited for: the tap is taken offline.
fn confirm_open(
    runtime: &tokio::runtime::Handle,
    hub: &HubClient,
    request: &PaymentRequest,
    check_ms: &mut f64,
) -> Result<(), AgentError> {
    let started = std::time::Instant::now();
    let answer = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(1_500),
            hub.payment_request(request.id),
        )
        .await
    });
    *check_ms = started.elapsed().as_secs_f64() * 1000.0;
    match answer {
        Ok(Ok(current)) if current.is_open() => Ok(()),
        Ok(Ok(_)) | Ok(Err(AgentError::RequestNotFound(_))) => Err(not_open(request)),
        Ok(Err(AgentError::DeviceRefused)) => Err(AgentError::DeviceRefused),
        Ok(Err(error)) => {
            tracing::warn!(%error, "the hub did not confirm the request; taking the tap offline");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("the hub did not answer within 1.5 s; taking the tap offline");
            Ok(())
        }
    }
}

/// Waits until the card has left `reader` (saying so every 30 s), so it never pays twice by lying
/// there. `false` when PC/SC failed meanwhile (the card may still be there: the caller starts over).
fn await_removal(readers: &Readers, reader: &std::ffi::CStr, stopping: &AtomicBool) -> bool {
    let mut waited = Duration::ZERO;
    while !stopping.load(Ordering::Relaxed) {
        match readers.wait_for_removal(reader, Duration::from_secs(1)) {
            Ok(true) => return true,
            Ok(false) => {
                waited += Duration::from_secs(1);
                if waited.as_secs().is_multiple_of(30) {
                    tracing::info!(reader = %reader.to_string_lossy(),
                        "remove the card to take the next payment");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch the reader");
                return false;
            }
        }
    }
    true
}

/// The submitter: every sealed tap until the hub answers for good. It also looks at the outbox every
/// few seconds, for taps sealed by an earlier run or left queued by `reader-agent pay`.
async fn submit_loop(
    hub: HubClient,
    outbox: Arc<Outbox>,
    mut taps: mpsc::UnboundedReceiver<Tap>,
    fatal: mpsc::Sender<AgentError>,
    hub_back: Arc<tokio::sync::Notify>,
    finished: std::sync::mpsc::Sender<Finished>,
) {
    let mut waiting: HashMap<Uuid, (Tap, u32, tokio::time::Instant)> = HashMap::new();
    // Idempotency keys answered for good lately: a tap the rescan found (and submitted) before the
    // till's hand-over arrived is not submitted again. A file found on disk is always submitted: if it
    // was answered already, the hub answers the same again and the file goes.
    let mut answered: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut rescan = tokio::time::interval(OUTBOX_RESCAN);
    loop {
        let now = tokio::time::Instant::now();
        answered.retain(|_, at| now.duration_since(*at) < Duration::from_secs(600));
        let due: Vec<Uuid> = waiting
            .iter()
            .filter(|(_, (_, _, at))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some((tap, attempts, _)) = waiting.remove(&id) else {
                continue;
            };
            let mut timings = Timings::default();
            let result = pay::submit(&hub, &tap, &mut timings).await;
            let reopens = matches!(&result, Ok(outcome) if !outcome.authorized()
                && !outcome.decline_reason.as_deref().is_some_and(|r| CLOSING_DECLINES.contains(&r)));
            let final_answer = matches!(result, Ok(_) | Err(HubFailure::Refused { .. }));
            if final_answer && !reopens {
                let _ = finished.send(Finished::Done(tap.request_id));
            }
            pay::settle(&outbox, &tap, &result);
            if final_answer {
                answered.insert(tap.idempotency_key.clone(), tokio::time::Instant::now());
            }
            if reopens {
                let _ = finished.send(Finished::Declined(tap.request_id));
            }
            match result {
                Ok(outcome) => {
                    tracing::info!(request = %tap.request, status = %outcome.status,
                        submit_ms = timings.submit_ms, hub_ms = timings.hub_ms, "final answer");
                }
                Err(HubFailure::Refused { .. }) => {}
                Err(HubFailure::DeviceRefused) => {
                    let _ = fatal.send(AgentError::DeviceRefused).await;
                    return;
                }
                Err(HubFailure::Transient(_)) => {
                    let at = tokio::time::Instant::now() + backoff(attempts, MAX_RETRY_INTERVAL);
                    waiting.insert(id, (tap, attempts.saturating_add(1), at));
                }
            }
        }
        let next_due = waiting.values().map(|(_, _, at)| *at).min();
        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            tap = taps.recv() => match tap {
                Some(tap) if !answered.contains_key(&tap.idempotency_key) => {
                    waiting.insert(tap.request_id, (tap, 0, tokio::time::Instant::now()));
                }
                Some(_) => {}
                None => return,
            },
            _ = rescan.tick() => match outbox.pending() {
                Ok(pending) => {
                    for entry in pending {
                        match entry {
                            Pending::Tap(tap) if !waiting.contains_key(&tap.request_id) => {
                                tracing::info!(request = %tap.request, "submitting a tap found in the outbox");
                                waiting.insert(tap.request_id, (tap, 0, tokio::time::Instant::now()));
                            }
                            Pending::Tap(_) => {}
                            Pending::Damaged(path) => {
                                outbox.set_aside(&path);
                            }
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the outbox"),
            },
            _ = hub_back.notified() => {
                let now = tokio::time::Instant::now();
                for entry in waiting.values_mut() {
                    entry.2 = now;
                }
            }
            _ = sleep => {}
        }
    }
}
