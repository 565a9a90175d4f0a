//! The long-running agent (`reader-agent run`): three parts that share nothing but channels.
//!
//! - the **follower** keeps the set of the terminal's open payment requests, from the subscription
//!   (reconnecting with backoff; every connection starts with all open requests, so none is missed);
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
    pay::{self, Timings, backoff},
    reader::Readers,
    subscription::{self, SessionEnd},
};

/// The longest pause between two attempts to reach the hub.
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// How long the till waits for a card before it looks at the open requests again.
const CARD_WAIT_SLICE: Duration = Duration::from_secs(5);

pub struct AgentOptions {
    /// The reader to use; `None`: whichever reader a card is presented on.
    pub reader: Option<String>,
}

type OpenRequests = BTreeMap<Uuid, PaymentRequest>;
type Settled = Arc<std::sync::Mutex<HashSet<Uuid>>>;

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
    // Requests whose tap has had its final answer: the till never arms for them again, even before the
    // subscription reports them paid.
    let settled: Settled = Arc::default();

    let follower = tokio::spawn(follow(
        hub.clone(),
        open_tx,
        fatal_tx.clone(),
        hub_back.clone(),
    ));
    let submitter = tokio::spawn(submit_loop(
        hub.clone(),
        outbox.clone(),
        tap_rx,
        fatal_tx.clone(),
        hub_back,
        settled.clone(),
    ));
    let till = {
        let (outbox, stopping, settled) = (outbox.clone(), stopping.clone(), settled.clone());
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("till".into())
            .spawn(move || {
                let result = till(
                    &runtime, &outbox, &options, open_rx, tap_tx, &settled, &stopping,
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
    // The till notices `stopping` within one wait slice; it never holds anything that must be flushed
    // (a tap is sealed before it is handed on).
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
    open: watch::Sender<OpenRequests>,
    fatal: mpsc::Sender<AgentError>,
    hub_back: Arc<tokio::sync::Notify>,
) {
    let mut failures = 0u32;
    loop {
        let mut acknowledged = false;
        let on_connected = || {
            acknowledged = true;
            // The hub answers again: the submitter need not wait out its backoff.
            hub_back.notify_one();
        };
        let end = subscription::session(&hub, on_connected, |request| {
            open.send_modify(|open| {
                if request.is_open() {
                    if !open.contains_key(&request.id) {
                        tracing::info!(request = %request.global_id,
                            amount = %pay::format_amount(request.fields.amount_minor, &request.currency),
                            "payment request open: waiting for a tap");
                    }
                    open.insert(request.id, request);
                } else {
                    open.remove(&request.id);
                }
            });
        })
        .await;
        // Requests past their tap deadline can no longer be tapped; forget them.
        open.send_modify(|open| open.retain(|_, request| request.tap_deadline > Utc::now()));
        match end {
            SessionEnd::Renew => {
                failures = 0;
                continue;
            }
            SessionEnd::DeviceRefused => {
                let _ = fatal.send(AgentError::DeviceRefused).await;
                return;
            }
            SessionEnd::Lost(reason) => {
                if acknowledged {
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

/// The till: one tap at a time, for the oldest open request nobody has tapped for yet.
fn till(
    runtime: &tokio::runtime::Handle,
    outbox: &Outbox,
    options: &AgentOptions,
    mut open: watch::Receiver<OpenRequests>,
    taps: mpsc::UnboundedSender<Tap>,
    settled: &Settled,
    stopping: &AtomicBool,
) -> Result<(), AgentError> {
    let readers = Readers::connect()?;
    let mut tapped: HashSet<Uuid> = HashSet::new();
    while !stopping.load(Ordering::Relaxed) {
        let next = {
            let current = open.borrow_and_update();
            tapped.retain(|id| current.contains_key(id));
            let mut settled = settled.lock().unwrap_or_else(|p| p.into_inner());
            settled.retain(|id| current.contains_key(id));
            tapped.extend(settled.iter());
            current
                .values()
                .filter(|r| r.is_open() && r.tap_deadline > Utc::now())
                .filter(|r| !tapped.contains(&r.id) && !outbox.contains(r.id))
                .min_by_key(|r| r.tap_deadline)
                .cloned()
        };
        let Some(request) = next else {
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(500), open.changed()).await
            });
            continue;
        };
        let still_open = |open: &watch::Receiver<OpenRequests>| {
            if stopping.load(Ordering::Relaxed) {
                return Err(AgentError::Setup("stopping".into()));
            }
            match open.borrow().get(&request.id) {
                Some(current) if current.is_open() => Ok(()),
                _ => Err(AgentError::RequestNotOpen {
                    id: request.global_id.clone(),
                    status: "no longer open".into(),
                }),
            }
        };
        let mut timings = Timings::default();
        let result = pay::take_tap(
            &readers,
            options.reader.as_deref(),
            outbox,
            &request,
            CARD_WAIT_SLICE,
            || still_open(&open),
            &mut timings,
        );
        match result {
            Ok((reader, tap)) => {
                tapped.insert(request.id);
                tracing::info!(request = %request.global_id, card_ms = timings.card_ms,
                    outbox_ms = timings.outbox_ms, "tap sealed in the outbox; submitting");
                if taps.send(tap).is_err() {
                    return Ok(()); // the submitter is gone: the agent is stopping
                }
                await_removal(&readers, &reader, stopping);
            }
            Err(AgentError::NoCard(_)) => {} // look at the open requests again, then wait on
            Err(AgentError::RequestNotOpen { .. }) | Err(AgentError::TapDeadlinePassed(_)) => {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                tracing::info!(request = %request.global_id, "the request closed before a tap");
                tapped.insert(request.id);
            }
            Err(
                error @ (AgentError::CardRemoved
                | AgentError::UnknownApplication
                | AgentError::NoNumbersLeft
                | AgentError::CardRefused(_)),
            ) => {
                tracing::warn!(request = %request.global_id, code = error.code(), %error, "no payment from this tap");
                if let Some(reader) = card_reader(&readers, options) {
                    await_removal(&readers, &reader, stopping);
                }
            }
            Err(error @ (AgentError::NoReader(_) | AgentError::Reader(_))) => {
                tracing::warn!(code = error.code(), %error, "the reader is not usable; trying again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// The reader a refused card is lying on, to wait for it to leave.
fn card_reader(readers: &Readers, options: &AgentOptions) -> Option<std::ffi::CString> {
    readers
        .list()
        .ok()?
        .into_iter()
        .filter(|reader| reader.card_present)
        .find(|reader| {
            options
                .reader
                .as_ref()
                .is_none_or(|name| *name == reader.name)
        })
        .and_then(|reader| std::ffi::CString::new(reader.name).ok())
}

fn await_removal(readers: &Readers, reader: &std::ffi::CStr, stopping: &AtomicBool) {
    while !stopping.load(Ordering::Relaxed) {
        if readers.wait_for_removal(reader, Duration::from_secs(30)) {
            return;
        }
        tracing::info!(reader = %reader.to_string_lossy(), "remove the card to take the next payment");
    }
}

/// The submitter: every sealed tap until the hub answers for good.
async fn submit_loop(
    hub: HubClient,
    outbox: Arc<Outbox>,
    mut taps: mpsc::UnboundedReceiver<Tap>,
    fatal: mpsc::Sender<AgentError>,
    hub_back: Arc<tokio::sync::Notify>,
    settled: Settled,
) {
    // Taps of an earlier run (or of one-shot commands that could not reach the hub) go first.
    let mut waiting: HashMap<Uuid, (Tap, u32, tokio::time::Instant)> = HashMap::new();
    match outbox.pending() {
        Ok(pending) => {
            for entry in pending {
                if let Pending::Tap(tap) = entry {
                    tracing::info!(request = %tap.request_id, "resubmitting a tap sealed earlier");
                    waiting.insert(tap.request_id, (tap, 0, tokio::time::Instant::now()));
                }
            }
        }
        Err(error) => tracing::error!(%error, "cannot read the outbox"),
    }
    loop {
        let now = tokio::time::Instant::now();
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
            let result = pay::submit(&hub, &outbox, &tap, &mut timings).await;
            if matches!(result, Ok(_) | Err(HubFailure::Refused { .. })) {
                settled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tap.request_id);
            }
            match result {
                Ok(outcome) => {
                    tracing::info!(request = %tap.request_id, status = %outcome.status,
                        submit_ms = timings.submit_ms, hub_ms = ?timings.hub_ms, "final answer");
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
                Some(tap) => { waiting.insert(tap.request_id, (tap, 0, tokio::time::Instant::now())); }
                None => return,
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
