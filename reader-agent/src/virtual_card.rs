//! A software contactless card behind a real pcscd, through its virtual reader driver (vpcd).
//!
//! vpcd listens on TCP (port 35963 for the first virtual reader) and the card connects to it: a
//! connected card is a card on the reader, a closed connection is a card taken away. Every message, in
//! both directions, is a 2-byte big-endian length and a payload. From vpcd, a 1-byte payload is a
//! control message (`00` power off, `01` power on, `02` reset: no answer; `04`: answer the ATR); a
//! longer one is a command APDU, answered with one response APDU.
//!
//! The card application is [`card_protocol::card::CardApplication`] over a card file made by the issuer
//! tooling. A command that changes the card's state (GENERATE PAYMENT, LOAD NUMBERS) is saved to the
//! card file, atomically and fsynced, **before** its answer leaves: a crash never hands out a number
//! twice. If the file cannot be saved, the card goes silent instead of answering.
//!
//! A control socket (a Unix socket, one command per line) lets tests and people handle the card:
//! `insert`, `remove`, `tap` (insert, and take the card away once it has answered a payment, or after
//! the hold time), `tear` (insert, and take the card away the moment it is asked for a payment, before
//! answering), `status` (JSON).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpStream},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use card_protocol::{
    apdu::{self, Command, sw},
    card::{CardApplication, CardFile},
};

/// Answer To Reset: direct convention, T=1, no historical bytes, with its check byte.
const ATR: &[u8] = &[0x3B, 0x80, 0x80, 0x01, 0x01];
/// The largest message vpcd sends (a short APDU is at most 261 bytes).
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stays on the reader until removed.
    Resting,
    /// Leaves the reader once a payment's answer is complete, or at the deadline.
    Tap { until: Instant },
    /// Leaves the reader when asked for a payment, without answering.
    Tear,
}

struct Slot {
    inserted: bool,
    mode: Mode,
    /// The live connection to vpcd, to cut it from the control thread.
    connection: Option<TcpStream>,
    payments: u64,
}

pub struct VirtualCard {
    card_path: PathBuf,
    /// Answers like a card of another application (a transit card, say): no payment application.
    foreign: bool,
    app: Mutex<CardApplication>,
    slot: Mutex<Slot>,
    changed: Condvar,
    started: Instant,
}

impl VirtualCard {
    pub fn load(card_path: &Path, inserted: bool, foreign: bool) -> anyhow::Result<Arc<Self>> {
        let file = CardFile::load(card_path)?;
        let app = CardApplication::from_file(&file)
            .map_err(|err| anyhow::anyhow!("{}: {err}", card_path.display()))?;
        Ok(Arc::new(Self {
            card_path: card_path.to_owned(),
            foreign,
            app: Mutex::new(app),
            slot: Mutex::new(Slot {
                inserted,
                mode: Mode::Resting,
                connection: None,
                payments: 0,
            }),
            changed: Condvar::new(),
            started: Instant::now(),
        }))
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, inserted: bool, mode: Mode) {
        let mut slot = self.slot();
        slot.inserted = inserted;
        slot.mode = mode;
        if !inserted && let Some(connection) = slot.connection.take() {
            let _ = connection.shutdown(Shutdown::Both);
        }
        self.changed.notify_all();
    }

    /// Takes the card off the reader before it is presented again, long enough for pcscd to see it go
    /// (it polls vpcd about every 0.45 s): a new tap is a new presentation.
    fn take_away(&self) {
        let was_on = self.slot().inserted;
        self.set(false, Mode::Resting);
        if was_on {
            std::thread::sleep(Duration::from_millis(1_000));
        }
    }

    /// Serves vpcd forever: connects while the card is inserted, answers until it is removed.
    pub fn serve(self: &Arc<Self>, vpcd: &str) -> ! {
        loop {
            {
                let mut slot = self.slot();
                while !slot.inserted {
                    slot = self.changed.wait(slot).unwrap_or_else(|p| p.into_inner());
                }
            }
            let stream = match TcpStream::connect(vpcd) {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%err, "vpcd is not listening yet");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(control) = stream.try_clone() else {
                continue;
            };
            {
                let mut slot = self.slot();
                if !slot.inserted {
                    continue; // removed while connecting
                }
                slot.connection = Some(control);
            }
            tracing::info!("card on the reader");
            let end = self.answer(stream);
            self.app.lock().unwrap_or_else(|p| p.into_inner()).reset();
            let mut slot = self.slot();
            slot.connection = None;
            if end == Leave::Removed {
                slot.inserted = false;
                slot.mode = Mode::Resting;
            }
            tracing::info!("card off the reader");
        }
    }

    /// Answers vpcd on one connection until the card leaves.
    fn answer(&self, mut stream: TcpStream) -> Leave {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut pending_payment = false;
        loop {
            if let Mode::Tap { until } = self.slot().mode
                && Instant::now() >= until
            {
                return Leave::Removed;
            }
            let message = match read_message(&mut stream) {
                Ok(Some(message)) => message,
                Ok(None) => continue, // nothing within the read timeout: look at the mode again
                Err(_) => {
                    // vpcd went away, or the control thread took the card away.
                    let slot = self.slot();
                    return if slot.inserted {
                        Leave::Reconnect
                    } else {
                        Leave::Removed
                    };
                }
            };
            let reply = match message.as_slice() {
                [0x04] => Some(ATR.to_vec()),
                [0x00] | [0x01] | [0x02] => {
                    self.app.lock().unwrap_or_else(|p| p.into_inner()).reset();
                    None
                }
                [_] => None,
                apdu_bytes => {
                    let is_payment = Command::parse(apdu_bytes).is_ok_and(|c| {
                        c.cla & !apdu::CLA_CHAINING == apdu::CLA_PROPRIETARY
                            && c.ins == apdu::INS_GENERATE_PAYMENT
                    });
                    if is_payment && self.slot().mode == Mode::Tear {
                        tracing::info!("torn away mid-exchange");
                        return Leave::Removed;
                    }
                    let Some(response) = self.process(apdu_bytes) else {
                        return Leave::Removed; // could not save: never answer unsaved
                    };
                    if is_payment {
                        pending_payment = true;
                    }
                    let done = pending_payment && response.ends_with(&sw::OK.to_be_bytes());
                    if done || (pending_payment && response.len() == 2) {
                        pending_payment = false;
                        if done {
                            self.slot().payments += 1;
                        }
                        if write_message(&mut stream, &response).is_err() {
                            return Leave::Reconnect;
                        }
                        if done && matches!(self.slot().mode, Mode::Tap { .. }) {
                            // Give vpcd a moment to pass the answer on before the card leaves.
                            std::thread::sleep(Duration::from_millis(50));
                            return Leave::Removed;
                        }
                        continue;
                    }
                    Some(response)
                }
            };
            if let Some(reply) = reply
                && write_message(&mut stream, &reply).is_err()
            {
                return Leave::Reconnect;
            }
        }
    }

    /// Runs one APDU through the card application, saving the card first when it changed.
    fn process(&self, apdu_bytes: &[u8]) -> Option<Vec<u8>> {
        if self.foreign {
            let selects = Command::parse(apdu_bytes).is_ok_and(|c| c.ins == apdu::INS_SELECT);
            let status = if selects {
                sw::APPLICATION_NOT_FOUND
            } else {
                sw::INS_NOT_SUPPORTED
            };
            return Some(card_protocol::apdu::Response::status(status).encode());
        }
        let mut app = self.app.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = self.started.elapsed().as_millis() as u64;
        let outcome = app.process(apdu_bytes, now_ms);
        if outcome.persist
            && let Err(err) = app.to_file().save(&self.card_path)
        {
            tracing::error!(error = %err, "cannot save the card file; the card goes silent");
            return None;
        }
        Some(outcome.response.encode())
    }

    fn status(&self) -> serde_json::Value {
        let info = self.app.lock().unwrap_or_else(|p| p.into_inner()).info();
        let slot = self.slot();
        serde_json::json!({
            "inserted": slot.inserted,
            "onReader": slot.connection.is_some(),
            "payments": slot.payments,
            "numbersLeft": info.numbers_left,
            "nextSequence": info.next_sequence,
        })
    }

    /// Serves the control socket forever (on its own thread).
    pub fn control(self: &Arc<Self>, listener: UnixListener) {
        for stream in listener.incoming().flatten() {
            let card = self.clone();
            std::thread::spawn(move || card.control_connection(stream));
        }
    }

    fn control_connection(&self, stream: UnixStream) {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut words = line.split_whitespace();
            let answer = match (words.next(), words.next()) {
                (Some("insert"), _) => {
                    self.set(true, Mode::Resting);
                    "ok".to_owned()
                }
                (Some("remove"), _) => {
                    self.set(false, Mode::Resting);
                    "ok".to_owned()
                }
                (Some("tap"), hold) => {
                    let hold_ms = hold.and_then(|h| h.parse().ok()).unwrap_or(10_000);
                    self.take_away();
                    self.set(
                        true,
                        Mode::Tap {
                            until: Instant::now() + Duration::from_millis(hold_ms),
                        },
                    );
                    "ok".to_owned()
                }
                (Some("tear"), _) => {
                    self.take_away();
                    self.set(true, Mode::Tear);
                    "ok".to_owned()
                }
                (Some("status"), _) => self.status().to_string(),
                _ => "error: commands are insert, remove, tap [hold ms], tear, status".to_owned(),
            };
            if writeln!(writer, "{answer}").is_err() {
                return;
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Leave {
    /// The card left the reader (removed, torn, tapped and gone).
    Removed,
    /// The connection broke while the card is still meant to be there: connect again.
    Reconnect,
}

/// Reads one framed message; `None` when nothing arrived within the read timeout.
fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    // vpcd writes a frame's length and its payload separately; with a delayed acknowledgement here, Nagle
    // holds the payload back for about 40 ms per message. Acknowledge at once instead (Linux resets the
    // option as it pleases, hence before every read).
    quick_ack(stream);
    let mut length = [0u8; 2];
    match stream.read_exact(&mut length) {
        Ok(()) => {}
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(err),
    }
    let length = usize::from(u16::from_be_bytes(length));
    if length == 0 || length > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad vpcd frame length",
        ));
    }
    let mut message = vec![0u8; length];
    // The rest of a frame follows at once; wait for it without the short poll timeout.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    quick_ack(stream);
    let read = stream.read_exact(&mut message);
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    read?;
    Ok(Some(message))
}

#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) {}

fn write_message(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let length = u16::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

/// Sends one control command to a running virtual card and returns its answer line.
pub fn command(control: &Path, line: &str) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(control).map_err(|err| {
        anyhow::anyhow!(
            "no virtual card listens on {}: {err} (start one with `virtual-card run`)",
            control.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "{line}")?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim().to_owned();
    if let Some(error) = answer.strip_prefix("error: ") {
        anyhow::bail!("{error}");
    }
    Ok(answer)
}
