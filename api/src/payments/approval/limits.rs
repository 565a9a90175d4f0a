//! The limits, single use and review flags of an approval, read in one query under the device's and
//! the card's locks (`docs/payments.md`, "The approval").

use chrono::{DateTime, Utc};
use entities::{
    device, number_use,
    payment::{self, PaymentStatus},
    payment_request,
};
use sea_orm::{
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Func, Query},
};
use uuid::Uuid;

use super::evidence::key_id_column;
use crate::{
    config::PaymentLimits,
    error::{ApiError, ApiResult},
    payments::{decline::DeclineReason, flags::PaymentFlag, number_keys::NumberHashes},
};

/// Authorized payments of a card and of a device within the velocity window, and the card's history
/// the review flags look at.
#[derive(Debug, sea_orm::FromQueryResult)]
pub(super) struct RecentPayments {
    card_count: i64,
    card_sum: i64,
    /// Distinct terminals other than the submitting one where the card paid.
    card_other_terminals: i64,
    device_sum: i64,
    /// The card's payments at other locations since the distant-terminal window opened.
    card_elsewhere_recently: i64,
    /// The highest sequence the card has used, if any.
    card_last_sequence: Option<i64>,
    /// This number was used (its hash under any key of the ring, with that key).
    number_used: bool,
    /// This number's hash, or the card's sequence, is recorded by any use.
    number_or_sequence_used: bool,
}

impl RecentPayments {
    /// One query over the card's and the device's payments (both indexed by time) and the number's
    /// uses (by hash, and by card and sequence), so the work per payment stays flat however many
    /// payments a card has made. In a statement of its own after the locks were taken, so it sees
    /// every payment and use an earlier holder committed.
    pub(super) async fn of(
        txn: &DatabaseTransaction,
        number: (&NumberHashes, u32),
        card_id: Uuid,
        device_id: Uuid,
        since: DateTime<Utc>,
        recently: DateTime<Utc>,
    ) -> ApiResult<Self> {
        let (hashes, sequence) = number;
        let uses = |condition: Condition| {
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(number_use::Entity)
                    .cond_where(condition)
                    .to_owned(),
            )
        };
        let same_number = hashes.all().fold(Condition::any(), |any, hash| {
            any.add(
                Condition::all()
                    .add(Expr::col(number_use::Column::HashKeyId).eq(key_id_column(hash)))
                    .add(Expr::col(number_use::Column::NumberHash).eq(hash.hash.to_vec())),
            )
        });
        let number_or_sequence = Condition::any()
            .add(
                Expr::col(number_use::Column::NumberHash)
                    .is_in(hashes.all().map(|hash| hash.hash.to_vec())),
            )
            .add(
                Condition::all()
                    .add(Expr::col(number_use::Column::CardId).eq(card_id))
                    .add(Expr::col(number_use::Column::Sequence).eq(i64::from(sequence))),
            );
        // The payment's terminal stands at another location than the submitting one: looked up per
        // payment of the card (a handful), never by listing every other terminal.
        let here = Query::select()
            .column(device::Column::LocationId)
            .from(device::Entity)
            .and_where(Expr::col(device::Column::Id).eq(device_id))
            .to_owned();
        let paid_elsewhere = Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(device::Entity)
                .and_where(
                    Expr::col((device::Entity, device::Column::Id))
                        .equals((payment::Entity, payment::Column::DeviceId)),
                )
                .and_where(
                    Expr::col((device::Entity, device::Column::LocationId)).not_in_subquery(here),
                )
                .to_owned(),
        );
        let last_sequence = Query::select()
            .expr(Expr::col(number_use::Column::Sequence).max())
            .from(number_use::Entity)
            .and_where(Expr::col(number_use::Column::CardId).eq(card_id))
            .to_owned();
        let of_card = || Expr::col(payment::Column::CardId).eq(card_id);
        let of_device = || Expr::col(payment::Column::DeviceId).eq(device_id);
        let total = |when: Expr, value: Expr| -> Expr {
            Func::cast_as(
                Func::coalesce([
                    Func::sum(Expr::case(when, value).finally(0)).into(),
                    Expr::val(0),
                ]),
                "BIGINT",
            )
            .into()
        };
        let other_terminal = Expr::case(
            of_card().and(Expr::col(payment::Column::DeviceId).ne(device_id)),
            Expr::col(payment::Column::DeviceId),
        );
        payment::Entity::find()
            .select_only()
            .column_as(total(of_card(), Expr::val(1)), "card_count")
            .column_as(
                total(of_card(), Expr::col(payment::Column::AmountMinor)),
                "card_sum",
            )
            .column_as(
                Expr::from(Func::count_distinct(other_terminal)),
                "card_other_terminals",
            )
            .column_as(
                total(of_device(), Expr::col(payment::Column::AmountMinor)),
                "device_sum",
            )
            .column_as(
                total(
                    of_card()
                        .and(Expr::col(payment::Column::CreatedAt).gte(recently))
                        .and(paid_elsewhere),
                    Expr::val(1),
                ),
                "card_elsewhere_recently",
            )
            .column_as(Expr::from(last_sequence), "card_last_sequence")
            .column_as(uses(same_number), "number_used")
            .column_as(uses(number_or_sequence), "number_or_sequence_used")
            .filter(Condition::any().add(of_card()).add(of_device()))
            // Every approval counts, whatever happened to it since: a capture, a refund or a void must
            // not give a card or a device its limit back.
            .filter(payment::Column::Status.ne(PaymentStatus::Declined))
            .filter(payment::Column::CreatedAt.gte(since))
            .into_model::<Self>()
            .one(txn)
            .await?
            // An aggregate answers one row; none would be a fault, never "no earlier use".
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("the payment history returned no row"))
            })
    }

    /// Why the number cannot be used: it was used (same hash), or another number took its card
    /// sequence.
    pub(super) fn earlier_use(&self) -> Option<DeclineReason> {
        if self.number_used {
            Some(DeclineReason::NumberAlreadyUsed)
        } else if self.number_or_sequence_used {
            Some(DeclineReason::SequenceReused)
        } else {
            None
        }
    }

    /// Card velocity (CVM_REQUIRED) and device cap (LIMIT_EXCEEDED).
    pub(super) fn breach(
        &self,
        limits: &PaymentLimits,
        request: &payment_request::Model,
    ) -> Option<DeclineReason> {
        let recent = self;
        // Terminals other than this one, plus this one.
        if recent.card_count as u64 >= limits.card_velocity_count
            || recent.card_sum + request.amount_minor > limits.card_velocity_sum_minor
            || recent.card_other_terminals as u64 + 1 > limits.card_velocity_terminals
        {
            return Some(DeclineReason::CvmRequired);
        }
        if recent.device_sum + request.amount_minor > limits.device_cap_minor {
            return Some(DeclineReason::LimitExceeded);
        }
        None
    }

    /// What an authorization should be reviewed for (it is authorized all the same).
    pub(super) fn flags(&self, limits: &PaymentLimits, sequence: u32) -> Vec<PaymentFlag> {
        let recent = self;
        let mut flags = Vec::new();
        let last = recent.card_last_sequence.unwrap_or(0);
        if i64::from(sequence) > last + i64::from(limits.sequence_gap_window) {
            flags.push(PaymentFlag::SequenceGap);
        }
        if recent.card_elsewhere_recently > 0 {
            flags.push(PaymentFlag::DistantTerminals);
        }
        flags
    }
}
