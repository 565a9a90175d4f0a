//! The reader agent of a checkout tablet, and a virtual contactless card to test it with.
//!
//! The agent is a registered device of the merchant. It follows its terminal's payment requests over a
//! WebSocket ([`subscription`]), waits for a card on a PC/SC reader ([`reader`]), has the card sign the
//! request, seals the tap into its outbox ([`outbox`]) and only then submits it to the hub ([`hub`]) with
//! the tap's idempotency key, again and again until the hub gives a final answer. A tap is therefore
//! never lost (it is on disk before anything can fail) and never charged twice (every retry carries the
//! same key, and the hub answers a repeat with the first outcome).
//!
//! - [`device`]: the device key file, self-signed device tokens, the outbox sealing key;
//! - [`agent`]: the long-running loop (`reader-agent run`);
//! - [`pay`]: one payment, for people and scripts (`reader-agent pay --request ID`);
//! - [`virtual_card`]: a software card on pcscd's virtual reader driver (vpcd).

pub mod agent;
pub mod device;
pub mod hub;
pub mod ids;
pub mod outbox;
pub mod pay;
pub mod reader;
pub mod subscription;
pub mod virtual_card;

use std::{path::PathBuf, time::Duration};

/// Everything that stops a payment, each with its own exit code (see [`AgentError::exit_code`]).
/// Messages say what happened and what to do; none carries a token, a number or a signature.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Setup(String),
    #[error("the hub is unreachable: {0}")]
    HubUnreachable(String),
    #[error("the hub refused the request: {code}: {message}")]
    HubRefused { code: String, message: String },
    #[error("no card reader: {0}")]
    NoReader(String),
    #[error("no card was presented within {} s", .0.as_secs())]
    NoCard(Duration),
    #[error("the card was removed during the exchange; nothing was paid: tap again")]
    CardRemoved,
    #[error(
        "the card does not carry the payment application (AID F0 49 43 48 50 41 59 01): use a payment card"
    )]
    UnknownApplication,
    #[error("the card has no one-time numbers left: its issuer must top it up")]
    NoNumbersLeft,
    #[error("the card refused: {0}")]
    CardRefused(String),
    #[error("card reader failure: {0}")]
    Reader(String),
    #[error(
        "the hub does not accept this device (revoked, not registered, or registered with another key)"
    )]
    DeviceRefused,
    #[error("payment request {0} does not exist at this terminal")]
    RequestNotFound(String),
    #[error("payment request {id} is {status}, no longer open")]
    RequestNotOpen { id: String, status: String },
    #[error("the tap deadline of payment request {0} has passed: open a new request")]
    TapDeadlinePassed(String),
    #[error("outbox entry {} is damaged or was not sealed by this device; it was set aside and is never submitted", .0.display())]
    OutboxDamaged(PathBuf),
}

/// Exit codes of the command line, documented in the README. 0 is an authorized payment.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const DECLINED: u8 = 10;
    /// The tap is sealed in the outbox; `reader-agent run` submits it when the hub answers.
    pub const QUEUED: u8 = 11;
    pub const HUB_UNREACHABLE: u8 = 12;
    pub const HUB_REFUSED: u8 = 13;
    pub const NO_READER: u8 = 20;
    pub const NO_CARD: u8 = 21;
    pub const CARD_REMOVED: u8 = 22;
    pub const UNKNOWN_APPLICATION: u8 = 23;
    pub const NO_NUMBERS_LEFT: u8 = 24;
    pub const CARD_REFUSED: u8 = 25;
    pub const READER_FAILURE: u8 = 26;
    pub const DEVICE_REFUSED: u8 = 30;
    pub const REQUEST_NOT_FOUND: u8 = 31;
    pub const REQUEST_NOT_OPEN: u8 = 32;
    pub const TAP_DEADLINE_PASSED: u8 = 33;
    pub const OUTBOX_DAMAGED: u8 = 40;
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Setup(_) => exit::FAILURE,
            Self::HubUnreachable(_) => exit::HUB_UNREACHABLE,
            Self::HubRefused { .. } => exit::HUB_REFUSED,
            Self::NoReader(_) => exit::NO_READER,
            Self::NoCard(_) => exit::NO_CARD,
            Self::CardRemoved => exit::CARD_REMOVED,
            Self::UnknownApplication => exit::UNKNOWN_APPLICATION,
            Self::NoNumbersLeft => exit::NO_NUMBERS_LEFT,
            Self::CardRefused(_) => exit::CARD_REFUSED,
            Self::Reader(_) => exit::READER_FAILURE,
            Self::DeviceRefused => exit::DEVICE_REFUSED,
            Self::RequestNotFound(_) => exit::REQUEST_NOT_FOUND,
            Self::RequestNotOpen { .. } => exit::REQUEST_NOT_OPEN,
            Self::TapDeadlinePassed(_) => exit::TAP_DEADLINE_PASSED,
            Self::OutboxDamaged(_) => exit::OUTBOX_DAMAGED,
        }
    }

    /// A short machine-readable name, printed in one-shot JSON beside the message.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Setup(_) => "SETUP",
            Self::HubUnreachable(_) => "HUB_UNREACHABLE",
            Self::HubRefused { .. } => "HUB_REFUSED",
            Self::NoReader(_) => "NO_READER",
            Self::NoCard(_) => "NO_CARD",
            Self::CardRemoved => "CARD_REMOVED",
            Self::UnknownApplication => "UNKNOWN_CARD_APPLICATION",
            Self::NoNumbersLeft => "CARD_OUT_OF_NUMBERS",
            Self::CardRefused(_) => "CARD_REFUSED",
            Self::Reader(_) => "READER_FAILURE",
            Self::DeviceRefused => "DEVICE_REFUSED",
            Self::RequestNotFound(_) => "REQUEST_NOT_FOUND",
            Self::RequestNotOpen { .. } => "REQUEST_NOT_OPEN",
            Self::TapDeadlinePassed(_) => "TAP_DEADLINE_PASSED",
            Self::OutboxDamaged(_) => "OUTBOX_DAMAGED",
        }
    }
}
