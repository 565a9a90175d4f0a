//! The card protocol of the IoT Commerce Hub: everything the hub, the reader agent and a card must agree
//! on byte for byte.
//!
//! - [`token`]: the one-time-number token, a fixed-width body signed by the issuing financial provider;
//! - [`card_signature`]: the card's signature binding a token to one payment request;
//! - [`number`]: card numbers (Luhn, issuer prefix ranges) and the keyed number hash used for single use;
//! - [`batch`]: issuer-signed batches of tokens that a card accepts with LOAD NUMBERS;
//! - [`apdu`] and [`card`]: the card application as a pure state machine over ISO 7816 APDUs;
//! - [`issuer`]: issuer tooling (keys, number allocation, personalization, top-ups).
//!
//! Parsing is strict everywhere: every length is checked, trailing bytes are refused, and signatures are
//! verified with `verify_strict` against keys that are canonical and not of small order.

pub mod apdu;
pub mod batch;
mod bytes;
pub mod card;
pub mod card_signature;
mod files;
mod ids;
pub mod issuer;
pub mod keys;
pub mod number;
pub mod token;

#[cfg(feature = "files")]
pub use files::{FileError, write_private};

pub use ids::{CardId, HubInstanceId, IssuerId, MerchantId, RequestId, TerminalId};

/// Why something was refused. Deliberately coarse where detail would help an attacker probe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("invalid public key: {0}")]
    InvalidKey(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("invalid card number: {0}")]
    InvalidNumber(&'static str),
    #[error("{0}")]
    Mismatch(&'static str),
}

pub type Result<T> = std::result::Result<T, ProtocolError>;
