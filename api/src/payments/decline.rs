//! Why a submission was declined. A decline is an outcome, not an error: it is recorded with its
//! evidence (the reasons are stored by name: `entities::payment_evidence::DeclineReason`) and consumes
//! nothing.

pub use entities::payment_evidence::DeclineReason;

/// Declines that mean somebody submitted something already used: audited as replays.
pub(crate) fn is_replay(reason: DeclineReason) -> bool {
    matches!(
        reason,
        DeclineReason::RequestAlreadyPaid
            | DeclineReason::NumberAlreadyUsed
            | DeclineReason::SequenceReused
    )
}
