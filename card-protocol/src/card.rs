//! The card application as a pure state machine over APDUs, and the card file that holds its state.
//!
//! The host (a virtual card program, or a test) feeds command APDUs with a monotonic clock reading and
//! gets an [`Outcome`]: the response, and whether the state changed and must be saved **before** the
//! response is sent. GENERATE PAYMENT always changes state (it consumes a number and advances the
//! sequence), so a lost answer never lets a sequence be used twice.

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{
    CardId, IssuerId, ProtocolError, Result,
    apdu::{self, Command, Response, sw},
    batch::NumberBatch,
    bytes::Reader,
    card_signature::{PaymentRequestFields, REQUEST_FIELDS_LEN, sign_payment},
    files::{hex, unhex},
    keys::parse_public_key,
    token::Token,
};

/// Largest response the card returns at once; longer answers are chained with `61xx` / GET RESPONSE.
pub const MAX_RESPONSE_CHUNK: usize = 240;
/// Smallest interval between two GENERATE PAYMENT commands.
pub const MIN_GENERATE_INTERVAL_MS: u64 = 300;
/// Largest LOAD NUMBERS payload accepted across chained blocks.
const MAX_COMMAND_DATA: usize = 16 * 1024;
pub const CARD_FILE_VERSION: u8 = 1;

/// The persisted state of a card. Holds the card's secret key: keep the file private.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CardFile {
    pub version: u8,
    /// Hex.
    pub card_id: String,
    /// Standard base64 of the 32-byte ed25519 seed.
    pub card_secret_key: String,
    /// Hex.
    pub issuer: String,
    pub issuer_key_id: u32,
    /// Standard base64 of the issuer's public key.
    pub issuer_public_key: String,
    pub load_counter: u32,
    /// Every sequence below this one is used (or skipped) for good.
    pub next_sequence: u32,
    /// Unused tokens, base64url.
    pub numbers: Vec<String>,
}

impl CardFile {
    #[cfg(feature = "files")]
    pub fn load(path: &std::path::Path) -> std::result::Result<Self, crate::FileError> {
        use crate::FileError;
        let text = std::fs::read_to_string(path).map_err(FileError::io(path))?;
        serde_json::from_str(&text)
            .map_err(|_| FileError::content(path, ProtocolError::Malformed("card file")))
    }

    /// Writes the file atomically, readable by its owner only.
    #[cfg(feature = "files")]
    pub fn save(&self, path: &std::path::Path) -> std::result::Result<(), crate::FileError> {
        use crate::FileError;
        let json =
            serde_json::to_vec_pretty(self).map_err(|err| FileError::io(path)(err.into()))?;
        crate::files::write_private(path, &json).map_err(FileError::io(path))
    }
}

/// What CARD INFO answers: identities and counters, never an unused number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInfo {
    pub card_id: CardId,
    pub card_public_key: [u8; 32],
    pub issuer: IssuerId,
    pub issuer_key_id: u32,
    pub load_counter: u32,
    pub next_sequence: u32,
    pub numbers_left: u16,
}

pub const CARD_INFO_LEN: usize = 1 + 16 + 32 + 16 + 4 + 4 + 4 + 2;

impl CardInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CARD_FILE_VERSION];
        out.extend_from_slice(self.card_id.as_bytes());
        out.extend_from_slice(&self.card_public_key);
        out.extend_from_slice(self.issuer.as_bytes());
        out.extend_from_slice(&self.issuer_key_id.to_be_bytes());
        out.extend_from_slice(&self.load_counter.to_be_bytes());
        out.extend_from_slice(&self.next_sequence.to_be_bytes());
        out.extend_from_slice(&self.numbers_left.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "card info");
        let version = r.u8()?;
        if version != CARD_FILE_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let info = Self {
            card_id: r.id()?,
            card_public_key: r.array()?,
            issuer: r.id()?,
            issuer_key_id: r.u32()?,
            load_counter: r.u32()?,
            next_sequence: r.u32()?,
            numbers_left: r.u16()?,
        };
        r.finish()?;
        Ok(info)
    }
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub response: Response,
    /// Save the card file before sending `response`.
    pub persist: bool,
}

impl Outcome {
    fn reply(response: Response) -> Self {
        Self {
            response,
            persist: false,
        }
    }
    fn status(sw: u16) -> Self {
        Self::reply(Response::status(sw))
    }
}

pub struct CardApplication {
    card_id: CardId,
    card_key: SigningKey,
    issuer: IssuerId,
    issuer_key_id: u32,
    issuer_key: VerifyingKey,
    load_counter: u32,
    next_sequence: u32,
    /// Unused tokens, ascending by sequence.
    numbers: Vec<Token>,
    selected: bool,
    /// Response bytes waiting for GET RESPONSE.
    pending_response: Vec<u8>,
    /// Data of a chained command still being received: (instruction, bytes so far).
    chained: Option<(u8, Vec<u8>)>,
    last_generate_ms: Option<u64>,
}

fn base64_32(text: &str) -> Result<[u8; 32]> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .ok_or(ProtocolError::Malformed("card file key"))
}

impl CardApplication {
    pub fn from_file(file: &CardFile) -> Result<Self> {
        if file.version != CARD_FILE_VERSION {
            return Err(ProtocolError::UnsupportedVersion(file.version));
        }
        let mut numbers = file
            .numbers
            .iter()
            .map(|text| Token::from_base64url(text))
            .collect::<Result<Vec<_>>>()?;
        numbers.sort_by_key(|token| token.body.sequence);
        Ok(Self {
            card_id: CardId::from_bytes(unhex(&file.card_id, "card id")?),
            card_key: SigningKey::from_bytes(&base64_32(&file.card_secret_key)?),
            issuer: IssuerId::from_bytes(unhex(&file.issuer, "issuer id")?),
            issuer_key_id: file.issuer_key_id,
            issuer_key: parse_public_key(&base64_32(&file.issuer_public_key)?)?,
            load_counter: file.load_counter,
            next_sequence: file.next_sequence,
            numbers,
            selected: false,
            pending_response: Vec::new(),
            chained: None,
            last_generate_ms: None,
        })
    }

    pub fn to_file(&self) -> CardFile {
        CardFile {
            version: CARD_FILE_VERSION,
            card_id: hex(self.card_id),
            card_secret_key: STANDARD.encode(self.card_key.to_bytes()),
            issuer: hex(self.issuer),
            issuer_key_id: self.issuer_key_id,
            issuer_public_key: STANDARD.encode(self.issuer_key.to_bytes()),
            load_counter: self.load_counter,
            next_sequence: self.next_sequence,
            numbers: self.numbers.iter().map(Token::to_base64url).collect(),
        }
    }

    pub fn info(&self) -> CardInfo {
        CardInfo {
            card_id: self.card_id,
            card_public_key: self.card_key.verifying_key().to_bytes(),
            issuer: self.issuer,
            issuer_key_id: self.issuer_key_id,
            load_counter: self.load_counter,
            next_sequence: self.next_sequence,
            numbers_left: self.numbers.len().min(usize::from(u16::MAX)) as u16,
        }
    }

    /// Power cycle or reset: nothing selected, nothing pending (the persisted state stays).
    pub fn reset(&mut self) {
        self.selected = false;
        self.pending_response.clear();
        self.chained = None;
    }

    /// Processes one command APDU at monotonic time `now_ms`.
    pub fn process(&mut self, apdu: &[u8], now_ms: u64) -> Outcome {
        let Ok(command) = Command::parse(apdu) else {
            return Outcome::status(sw::WRONG_LENGTH);
        };
        let class = command.cla & !apdu::CLA_CHAINING;
        if command.ins != apdu::INS_GET_RESPONSE {
            // Any other command abandons an unread response.
            self.pending_response.clear();
        }
        match (class, command.ins) {
            (apdu::CLA_ISO, apdu::INS_SELECT) => self.select(&command),
            (apdu::CLA_ISO, apdu::INS_GET_RESPONSE) => self.get_response(&command),
            (apdu::CLA_ISO, _) => Outcome::status(sw::INS_NOT_SUPPORTED),
            (apdu::CLA_PROPRIETARY, ins) => {
                if !self.selected {
                    return Outcome::status(sw::COMMAND_NOT_ALLOWED);
                }
                let Some(data) = self.collect_chain(&command) else {
                    return Outcome::status(if self.chained.is_some() {
                        sw::OK
                    } else {
                        sw::WRONG_LENGTH
                    });
                };
                match ins {
                    apdu::INS_CARD_INFO => self.respond(self.info().encode(), false),
                    apdu::INS_GENERATE_PAYMENT => self.generate_payment(&data, now_ms),
                    apdu::INS_LOAD_NUMBERS => self.load_numbers(&data),
                    _ => Outcome::status(sw::INS_NOT_SUPPORTED),
                }
            }
            _ => Outcome::status(sw::CLA_NOT_SUPPORTED),
        }
    }

    /// Gathers chained command data. `None` while more blocks are expected (or the data grew too large,
    /// in which case the chain is dropped); `Some(data)` with the complete data otherwise.
    fn collect_chain(&mut self, command: &Command) -> Option<Vec<u8>> {
        let more = command.cla & apdu::CLA_CHAINING != 0;
        let mut data = match self.chained.take() {
            Some((ins, data)) if ins == command.ins => data,
            _ => Vec::new(),
        };
        data.extend_from_slice(&command.data);
        if data.len() > MAX_COMMAND_DATA {
            return None;
        }
        if more {
            self.chained = Some((command.ins, data));
            None
        } else {
            Some(data)
        }
    }

    fn select(&mut self, command: &Command) -> Outcome {
        if command.p1 != 0x04 || command.p2 != 0x00 {
            return Outcome::status(sw::WRONG_P1_P2);
        }
        if command.data != apdu::AID {
            self.selected = false;
            return Outcome::status(sw::APPLICATION_NOT_FOUND);
        }
        self.selected = true;
        self.chained = None;
        self.respond(apdu::AID.to_vec(), false)
    }

    fn get_response(&mut self, command: &Command) -> Outcome {
        if self.pending_response.is_empty() {
            return Outcome::status(sw::COMMAND_NOT_ALLOWED);
        }
        let pending = std::mem::take(&mut self.pending_response);
        let limit = command.le.unwrap_or(256).min(MAX_RESPONSE_CHUNK);
        self.chunk(pending, limit, false)
    }

    /// Answers `data`, chaining it when longer than one response.
    fn respond(&mut self, data: Vec<u8>, persist: bool) -> Outcome {
        self.chunk(data, MAX_RESPONSE_CHUNK, persist)
    }

    fn chunk(&mut self, mut data: Vec<u8>, limit: usize, persist: bool) -> Outcome {
        if data.len() <= limit {
            return Outcome {
                response: Response { data, sw: sw::OK },
                persist,
            };
        }
        self.pending_response = data.split_off(limit);
        let left = self.pending_response.len();
        let sw = sw::MORE_DATA | if left >= 256 { 0 } else { left as u16 };
        Outcome {
            response: Response { data, sw },
            persist,
        }
    }

    fn generate_payment(&mut self, data: &[u8], now_ms: u64) -> Outcome {
        if data.len() != REQUEST_FIELDS_LEN {
            return Outcome::status(sw::WRONG_LENGTH);
        }
        let Ok(request) = PaymentRequestFields::decode(data) else {
            return Outcome::status(sw::WRONG_DATA);
        };
        if self
            .last_generate_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < MIN_GENERATE_INTERVAL_MS)
        {
            return Outcome::status(sw::CONDITIONS_NOT_SATISFIED);
        }
        // Numbers below the sequence counter are never handed out (defensive: the list is kept so).
        self.numbers
            .retain(|token| token.body.sequence >= self.next_sequence);
        if self.numbers.is_empty() {
            return Outcome::status(sw::NO_NUMBERS_LEFT);
        }
        let token = self.numbers.remove(0);
        self.next_sequence = token.body.sequence.saturating_add(1);
        self.last_generate_ms = Some(now_ms);
        let signature = sign_payment(&self.card_key, &token, &request);
        let mut answer = token.encode().to_vec();
        answer.extend_from_slice(&signature);
        self.respond(answer, true)
    }

    fn load_numbers(&mut self, data: &[u8]) -> Outcome {
        let Ok(batch) = NumberBatch::decode(data) else {
            return Outcome::status(sw::WRONG_DATA);
        };
        let for_this_card = batch.issuer == self.issuer
            && batch.key_id == self.issuer_key_id
            && batch.card_id == self.card_id
            && batch.card_public_key == self.card_key.verifying_key().to_bytes();
        if !for_this_card || batch.verify(&self.issuer_key).is_err() {
            return Outcome::status(sw::SECURITY_NOT_SATISFIED);
        }
        // A replayed or rolled-back batch carries an old counter or sequences the card has passed.
        let floor = self
            .numbers
            .last()
            .map_or(self.next_sequence, |t| t.body.sequence.saturating_add(1))
            .max(self.next_sequence);
        let fresh_counter = batch.load_counter > self.load_counter;
        let mut sequences: Vec<u32> = batch.tokens.iter().map(|t| t.body.sequence).collect();
        sequences.sort_unstable();
        let distinct = sequences.windows(2).all(|pair| pair[0] < pair[1]);
        let above = sequences.first().is_some_and(|first| *first >= floor);
        if !fresh_counter || !above {
            return Outcome::status(sw::SECURITY_NOT_SATISFIED);
        }
        if !distinct {
            return Outcome::status(sw::WRONG_DATA);
        }
        self.load_counter = batch.load_counter;
        self.numbers.extend(batch.tokens);
        self.numbers.sort_by_key(|token| token.body.sequence);
        Outcome {
            response: Response::status(sw::OK),
            persist: true,
        }
    }
}
