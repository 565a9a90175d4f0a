//! Why a submission was declined. A decline is an outcome, not an error: it is recorded with its
//! evidence and consumes nothing.

/// Why a payment was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    UnknownIssuerKey,
    IssuerKeyRetired,
    IssuerKeyRevoked,
    BadIssuerSignature,
    NumberOutOfRange,
    NumberExpired,
    DomainRestriction,
    CardUnknown,
    CardBlocked,
    CardKeyMismatch,
    BadCardSignature,
    RequestUnknown,
    RequestCancelled,
    RequestAlreadyPaid,
    PastDeadline,
    AmountAboveBalance,
    NumberAlreadyUsed,
    SequenceReused,
    LimitExceeded,
    CvmRequired,
}

impl DeclineReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownIssuerKey => "UNKNOWN_ISSUER_KEY",
            Self::IssuerKeyRetired => "ISSUER_KEY_RETIRED",
            Self::IssuerKeyRevoked => "ISSUER_KEY_REVOKED",
            Self::BadIssuerSignature => "BAD_ISSUER_SIGNATURE",
            Self::NumberOutOfRange => "NUMBER_OUT_OF_RANGE",
            Self::NumberExpired => "NUMBER_EXPIRED",
            Self::DomainRestriction => "DOMAIN_RESTRICTION",
            Self::CardUnknown => "CARD_UNKNOWN",
            Self::CardBlocked => "CARD_BLOCKED",
            Self::CardKeyMismatch => "CARD_KEY_MISMATCH",
            Self::BadCardSignature => "BAD_CARD_SIGNATURE",
            Self::RequestUnknown => "REQUEST_UNKNOWN",
            Self::RequestCancelled => "REQUEST_CANCELLED",
            Self::RequestAlreadyPaid => "REQUEST_ALREADY_PAID",
            Self::PastDeadline => "PAST_DEADLINE",
            Self::AmountAboveBalance => "AMOUNT_ABOVE_BALANCE",
            Self::NumberAlreadyUsed => "NUMBER_ALREADY_USED",
            Self::SequenceReused => "SEQUENCE_REUSED",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::CvmRequired => "CVM_REQUIRED",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        ALL_REASONS
            .iter()
            .copied()
            .find(|reason| reason.code() == code)
    }

    /// Declines that mean somebody submitted something already used: audited as replays.
    pub(crate) fn is_replay(self) -> bool {
        matches!(
            self,
            Self::RequestAlreadyPaid | Self::NumberAlreadyUsed | Self::SequenceReused
        )
    }
}

const ALL_REASONS: [DeclineReason; 20] = [
    DeclineReason::UnknownIssuerKey,
    DeclineReason::IssuerKeyRetired,
    DeclineReason::IssuerKeyRevoked,
    DeclineReason::BadIssuerSignature,
    DeclineReason::NumberOutOfRange,
    DeclineReason::NumberExpired,
    DeclineReason::DomainRestriction,
    DeclineReason::CardUnknown,
    DeclineReason::CardBlocked,
    DeclineReason::CardKeyMismatch,
    DeclineReason::BadCardSignature,
    DeclineReason::RequestUnknown,
    DeclineReason::RequestCancelled,
    DeclineReason::RequestAlreadyPaid,
    DeclineReason::PastDeadline,
    DeclineReason::AmountAboveBalance,
    DeclineReason::NumberAlreadyUsed,
    DeclineReason::SequenceReused,
    DeclineReason::LimitExceeded,
    DeclineReason::CvmRequired,
];
