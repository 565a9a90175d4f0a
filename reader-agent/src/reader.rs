//! The card reader, through PC/SC (pcscd on Linux): find a reader with a card, talk to the card's
//! payment application.
//!
//! Calls block (PC/SC is a blocking API): the agent runs them on a thread of their own. Waiting uses
//! `SCardGetStatusChange` in short slices, so a request that is paid, cancelled or past its deadline
//! stops the wait within a slice.

use std::{
    collections::HashSet,
    ffi::{CStr, CString},
    time::{Duration, Instant},
};

use card_protocol::{
    apdu::{self, Command, Response, sw},
    card::{CARD_INFO_LEN, CardInfo},
    card_signature::{PaymentRequestFields, verify_payment},
    token::{TOKEN_LEN, Token},
};
use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use crate::AgentError;

/// How long one `get_status_change` waits before the caller's `keep_waiting` is asked again.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// A reader and whether a card is on it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
}

/// What the card answered to GENERATE PAYMENT, checked: a well-formed token and the card's signature
/// over exactly the request it was given.
pub struct CardAnswer {
    pub token: Token,
    pub signature: [u8; 64],
    pub reader: String,
}

pub struct Readers {
    context: Context,
}

fn pcsc_failure(err: pcsc::Error) -> AgentError {
    match err {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::NoReadersAvailable => {
            AgentError::NoReader(format!(
                "{err} (is pcscd running, and is a reader plugged in?)"
            ))
        }
        other => AgentError::Reader(other.to_string()),
    }
}

impl Readers {
    pub fn connect() -> Result<Self, AgentError> {
        let context = Context::establish(Scope::User).map_err(pcsc_failure)?;
        Ok(Self { context })
    }

    fn names(&self) -> Result<Vec<CString>, AgentError> {
        match self.context.list_readers_owned() {
            Ok(names) => Ok(names),
            Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
            Err(err) => Err(pcsc_failure(err)),
        }
    }

    /// Every reader pcscd knows, with whether a card is present.
    pub fn list(&self) -> Result<Vec<ReaderInfo>, AgentError> {
        let mut states: Vec<ReaderState> = self
            .names()?
            .into_iter()
            .map(|name| ReaderState::new(name, State::UNAWARE))
            .collect();
        if states.is_empty() {
            return Ok(Vec::new());
        }
        self.context
            .get_status_change(Duration::ZERO, &mut states)
            .or_else(|err| match err {
                pcsc::Error::Timeout => Ok(()),
                other => Err(pcsc_failure(other)),
            })?;
        Ok(states
            .iter()
            .map(|state| ReaderInfo {
                name: state.name().to_string_lossy().into_owned(),
                card_present: card_on(state.event_state()),
            })
            .collect())
    }

    /// The readers a card lies on right now (to ignore those cards until they have left).
    pub fn readers_with_card(&self) -> Result<HashSet<CString>, AgentError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|reader| reader.card_present)
            .filter_map(|reader| CString::new(reader.name).ok())
            .collect())
    }

    /// Waits until a card is on `preferred` (or on any reader when `None`), at most `timeout`, while
    /// `keep_waiting` says so (it is asked every slice). Returns the reader's name.
    ///
    /// A card on a reader listed in `stale` does not count until it has left: a card that was lying on
    /// the reader before the customer was asked to tap must not pay.
    pub fn wait_for_card(
        &self,
        preferred: Option<&str>,
        timeout: Duration,
        stale: &HashSet<CString>,
        mut keep_waiting: impl FnMut() -> Result<(), AgentError>,
    ) -> Result<CString, AgentError> {
        let deadline = Instant::now() + timeout;
        let mut seen_empty: HashSet<CString> = Default::default();
        let mut states: Vec<ReaderState> = Vec::new();
        loop {
            keep_waiting()?;
            let names = self.names()?;
            let names: Vec<CString> = match preferred {
                Some(wanted) => names
                    .into_iter()
                    .filter(|name| name.to_string_lossy() == wanted)
                    .collect(),
                None => names,
            };
            if names.is_empty() {
                return Err(AgentError::NoReader(match preferred {
                    Some(wanted) => format!("no reader named {wanted:?}"),
                    None => "pcscd knows no reader".into(),
                }));
            }
            // Keep what we know of readers that are still there; learn the new ones.
            states.retain(|state| names.iter().any(|name| name.as_c_str() == state.name()));
            for name in names {
                if !states.iter().any(|state| state.name() == name.as_c_str()) {
                    states.push(ReaderState::new(name, State::UNAWARE));
                }
            }
            let slice = WAIT_SLICE.min(deadline.saturating_duration_since(Instant::now()));
            match self.context.get_status_change(slice, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                // A reader was unplugged: list again (within the deadline).
                Err(pcsc::Error::UnknownReader) if Instant::now() < deadline => continue,
                Err(pcsc::Error::UnknownReader) => return Err(AgentError::NoCard(timeout)),
                Err(err) => return Err(pcsc_failure(err)),
            }
            for state in &mut states {
                let event = state.event_state();
                let name = state.name().to_owned();
                if !card_on(event) {
                    seen_empty.insert(name);
                } else if usable(event) && (!stale.contains(&name) || seen_empty.contains(&name)) {
                    return Ok(name);
                }
                state.sync_current_state();
            }
            if Instant::now() >= deadline {
                return Err(AgentError::NoCard(timeout));
            }
        }
    }

    /// Waits (at most `timeout`) until no card is on `reader`: `Ok(true)` once it has left, `Ok(false)`
    /// if it is still there.
    pub fn wait_for_removal(&self, reader: &CStr, timeout: Duration) -> Result<bool, AgentError> {
        let deadline = Instant::now() + timeout;
        let mut states = vec![ReaderState::new(reader.to_owned(), State::UNAWARE)];
        loop {
            let slice = WAIT_SLICE.min(deadline.saturating_duration_since(Instant::now()));
            match self.context.get_status_change(slice, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                // The reader itself is gone: so is the card.
                Err(pcsc::Error::UnknownReader) => return Ok(true),
                Err(err) => return Err(pcsc_failure(err)),
            }
            if !card_on(states[0].event_state()) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            states[0].sync_current_state();
        }
    }

    /// Whether a card is on `reader`; `None` when PC/SC cannot tell.
    fn card_present(&self, reader: &CStr) -> Option<bool> {
        let mut states = vec![ReaderState::new(reader.to_owned(), State::UNAWARE)];
        match self.context.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => Some(card_on(states[0].event_state())),
            Err(_) => None,
        }
    }

    /// Has the card on `reader` sign `request`: SELECT by AID, then GENERATE PAYMENT (with GET RESPONSE
    /// for the chained answer). The answer is checked before it is returned.
    pub fn generate_payment(
        &self,
        reader: &CStr,
        request: &PaymentRequestFields,
    ) -> Result<CardAnswer, AgentError> {
        let session = self.session(reader)?;
        let command = Command::new(
            apdu::CLA_PROPRIETARY,
            apdu::INS_GENERATE_PAYMENT,
            0,
            0,
            &request.encode(),
            Some(256),
        );
        let answer = session.exchange(&command);
        let answer = session.finish(answer)?;
        if answer.len() != TOKEN_LEN + 64 {
            return Err(AgentError::CardRefused(format!(
                "GENERATE PAYMENT answered {} bytes, not {}",
                answer.len(),
                TOKEN_LEN + 64
            )));
        }
        let (token, signature) = answer.split_at(TOKEN_LEN);
        let token = Token::decode(token)
            .map_err(|err| AgentError::CardRefused(format!("its token is malformed: {err}")))?;
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|_| AgentError::CardRefused("malformed signature".into()))?;
        // A card that signed anything but this request would only earn a decline: say so here.
        verify_payment(&token, request, &signature).map_err(|_| {
            AgentError::CardRefused("its signature does not cover this request".into())
        })?;
        Ok(CardAnswer {
            token,
            signature,
            reader: reader.to_string_lossy().into_owned(),
        })
    }

    /// CARD INFO: identities and counters (never a number).
    pub fn card_info(&self, reader: &CStr) -> Result<CardInfo, AgentError> {
        let session = self.session(reader)?;
        let command = Command::new(
            apdu::CLA_PROPRIETARY,
            apdu::INS_CARD_INFO,
            0,
            0,
            &[],
            Some(CARD_INFO_LEN),
        );
        let answer = session.exchange(&command);
        let answer = session.finish(answer)?;
        CardInfo::decode(&answer)
            .map_err(|err| AgentError::CardRefused(format!("CARD INFO is malformed: {err}")))
    }

    /// Connects to the card and selects the payment application.
    fn session(&self, reader: &CStr) -> Result<Session<'_>, AgentError> {
        // Exclusive: no other program's commands can come between ours on this card.
        let card = self
            .context
            .connect(reader, ShareMode::Exclusive, Protocols::ANY)
            .map_err(|err| match err {
                pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => AgentError::CardRemoved,
                pcsc::Error::SharingViolation => {
                    AgentError::Reader("another program is using the card".into())
                }
                other => self.exchange_failure(reader, other),
            })?;
        let session = Session {
            readers: self,
            reader: reader.to_owned(),
            card: Some(card),
        };
        match session.transmit(&Command::select()) {
            Ok(response) if response.sw == sw::OK => Ok(session),
            Ok(response) if response.sw == sw::APPLICATION_NOT_FOUND => {
                Err(AgentError::UnknownApplication)
            }
            Ok(response) => Err(AgentError::CardRefused(format!(
                "SELECT answered {:04X}",
                response.sw
            ))),
            Err(err) => Err(err),
        }
    }

    /// Whether the card has left `reader`, allowing pcscd the time it takes to notice (it polls vpcd
    /// about every 0.45 s; a real reader reports at once; 2 s leaves room for a loaded machine). When
    /// PC/SC cannot tell: no.
    fn card_gone(&self, reader: &CStr) -> bool {
        match self.card_present(reader) {
            Some(false) => true,
            Some(true) => self
                .wait_for_removal(reader, Duration::from_secs(2))
                .unwrap_or(false),
            None => false,
        }
    }

    /// A failed exchange: the card was taken away, or something else broke.
    fn exchange_failure(&self, reader: &CStr, err: pcsc::Error) -> AgentError {
        if self.card_gone(reader) {
            return AgentError::CardRemoved;
        }
        match err {
            pcsc::Error::RemovedCard | pcsc::Error::ResetCard => AgentError::CardRemoved,
            other => AgentError::Reader(other.to_string()),
        }
    }
}

/// A connected card with the application selected. Left as it is when done (dropping a pcsc card
/// handle resets the card, which a later exchange should not pay for).
struct Session<'a> {
    readers: &'a Readers,
    reader: CString,
    card: Option<pcsc::Card>,
}

impl Session<'_> {
    fn transmit(&self, command: &Command) -> Result<Response, AgentError> {
        let card = self
            .card
            .as_ref()
            .ok_or_else(|| AgentError::Reader("the card session is closed".into()))?;
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE];
        let bytes = card
            .transmit(&command.encode(), &mut buffer)
            .map_err(|err| self.readers.exchange_failure(&self.reader, err))?;
        // Under two bytes there is no status word: the card died mid-answer (usually taken away).
        Response::parse(bytes).map_err(|_| {
            if self.readers.card_gone(&self.reader) {
                AgentError::CardRemoved
            } else {
                AgentError::CardRefused("an answer without a status word".into())
            }
        })
    }

    /// Sends `command` and collects a chained answer with GET RESPONSE.
    fn exchange(&self, command: &Command) -> Result<Vec<u8>, AgentError> {
        let mut response = self.transmit(command)?;
        let mut data = std::mem::take(&mut response.data);
        while let Some(more) = response.pending() {
            let get = Command::new(apdu::CLA_ISO, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(more));
            response = self.transmit(&get)?;
            data.append(&mut response.data);
            if data.len() > 4096 {
                return Err(AgentError::CardRefused("an answer that never ends".into()));
            }
        }
        match response.sw {
            sw::OK => Ok(data),
            sw::NO_NUMBERS_LEFT => Err(AgentError::NoNumbersLeft),
            sw::CONDITIONS_NOT_SATISFIED => Err(AgentError::CardRefused(
                "asked again within 300 ms of its last payment (6985): tap again".into(),
            )),
            sw::COMMAND_NOT_ALLOWED => Err(AgentError::CardRefused(
                "the payment application is not selected (6986)".into(),
            )),
            other => Err(AgentError::CardRefused(format!("status word {other:04X}"))),
        }
    }

    /// Releases the card without resetting it, and returns `result`.
    fn finish(mut self, result: Result<Vec<u8>, AgentError>) -> Result<Vec<u8>, AgentError> {
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(Disposition::LeaveCard);
        }
        result
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

/// A card lies on the reader (perhaps one that does not answer).
fn card_on(state: State) -> bool {
    state.contains(State::PRESENT)
}

/// A card lies on the reader and answered its reset.
fn usable(state: State) -> bool {
    card_on(state) && !state.contains(State::MUTE)
}
