//! What happens to an authorization after the tap: the merchant captures it (whole or in part, the rest
//! released), voids it, or refunds what it captured; an authorization not captured within the capture
//! window expires. Each step is one conditional update of the payment (the state it requires is in
//! its WHERE clause, so two concurrent steps cannot both pass), then the order's balance, the clearing
//! entry in the open batch, and the event, in the same transaction. Rules: `docs/clearing.md`.

use chrono::{DateTime, Utc};
use entities::{
    clearing_entry::{self, EntryKind},
    order,
    payment::{self, PaymentStatus},
};
use sea_orm::{
    ActiveEnum,
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{CaseStatement, Expr, ExprTrait},
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    auth::Principal,
    clearing::{self, join_open_batch},
    config::ClearingSettings,
    db::write_transaction,
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, Outbox, record},
    idempotency::{IdempotencyKey, run_once},
    master_data::validate,
    policy::{Action, authorize, payment_visible},
    records::RecordKind,
};

/// Authorizations released per expiry round (one transaction).
const EXPIRIES_PER_ROUND: u64 = 100;
/// The longest reason a refund may give.
const MAX_REASON_CHARS: usize = 500;

/// What a capture takes.
#[derive(Debug, Clone, Serialize)]
pub struct Capture {
    pub payment_id: Uuid,
    /// `None`: the whole authorization.
    pub amount_minor: Option<i64>,
}

/// What a refund gives back.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub payment_id: Uuid,
    pub amount_minor: i64,
    pub reason: String,
}

/// A step taken: the payment as it is now, and the clearing entry it wrote (none for a void).
#[derive(Debug, Clone)]
pub struct Settled {
    pub payment: payment::Model,
    pub entry: Option<clearing_entry::Model>,
}

#[derive(Clone)]
pub struct SettlementService {
    db: DatabaseConnection,
    outbox: Outbox,
    settings: ClearingSettings,
}

impl SettlementService {
    pub fn new(db: DatabaseConnection, outbox: Outbox, settings: ClearingSettings) -> Self {
        Self {
            db,
            outbox,
            settings,
        }
    }

    /// Captures an AUTHORIZED payment within the capture window: all of it, or `amount_minor` of it
    /// with the rest released to the order's balance. Once per idempotency key.
    pub async fn capture(
        &self,
        principal: &Principal,
        input: Capture,
        idempotency_key: &str,
    ) -> ApiResult<Settled> {
        authorize(principal, Action::SettlePayments)?;
        if let Some(amount) = input.amount_minor
            && amount <= 0
        {
            return Err(ApiError::validation("amountMinor", "must be positive"));
        }
        let key = IdempotencyKey::new(
            principal.organization_id,
            "capturePayment",
            idempotency_key,
            &input,
        )?;
        let (caller, window) = (principal.clone(), self.settings.capture_window());
        let entry_id = run_once(&self.db, Some(&key), move |txn| {
            Box::pin(async move {
                let now = clearing::clearing_now(txn).await?;
                let captured = match input.amount_minor {
                    Some(amount) => Expr::value(amount),
                    None => Expr::col(payment::Column::AmountMinor),
                };
                let mut update = payment::Entity::update_many()
                    .col_expr(
                        payment::Column::Status,
                        Expr::value(PaymentStatus::Captured),
                    )
                    .col_expr(payment::Column::CapturedMinor, captured)
                    .col_expr(payment::Column::CapturedAt, Expr::value(now))
                    .col_expr(payment::Column::UpdatedAt, Expr::value(now))
                    .filter(payment::Column::Id.eq(input.payment_id))
                    .filter(payment::Column::OwnerOrganizationId.eq(caller.organization_id))
                    .filter(payment::Column::Status.eq(PaymentStatus::Authorized))
                    .filter(payment::Column::CreatedAt.gte(now - window));
                if let Some(amount) = input.amount_minor {
                    // What is not captured is released now.
                    update = update
                        .col_expr(
                            payment::Column::ReleasedAt,
                            CaseStatement::new()
                                .case(
                                    Expr::col(payment::Column::AmountMinor).gt(amount),
                                    Expr::value(now),
                                )
                                .finally(Expr::value(Option::<DateTime<Utc>>::None))
                                .into(),
                        )
                        .filter(payment::Column::AmountMinor.gte(amount));
                }
                if update.exec(txn).await?.rows_affected != 1 {
                    return Err(refusal(
                        txn,
                        &caller,
                        input.payment_id,
                        Step::Capture {
                            amount: input.amount_minor,
                            window_opens: now - window,
                        },
                    )
                    .await);
                }
                let payment = read_payment(txn, input.payment_id).await?;
                let released = payment.amount_minor - payment.captured_minor;
                if released > 0 {
                    release_on_order(txn, payment.order_id, released).await?;
                }
                let entry = insert_entry(
                    txn,
                    &payment,
                    EntryKind::Capture,
                    payment.captured_minor,
                    None,
                    now,
                )
                .await?;
                record(txn, payment_event(&payment, "payment.captured")).await?;
                Ok(entry)
            })
        })
        .await?;
        self.outbox.committed();
        self.settled(principal, Some(entry_id), None).await
    }

    /// Voids an AUTHORIZED payment that was not captured: the whole amount is owed on the order again.
    /// Once per idempotency key.
    pub async fn void(
        &self,
        principal: &Principal,
        payment_id: Uuid,
        idempotency_key: &str,
    ) -> ApiResult<Settled> {
        authorize(principal, Action::SettlePayments)?;
        let key = IdempotencyKey::new(
            principal.organization_id,
            "voidPayment",
            idempotency_key,
            &payment_id,
        )?;
        let caller = principal.clone();
        let id = run_once(&self.db, Some(&key), move |txn| {
            Box::pin(async move {
                let now = clearing::clearing_now(txn).await?;
                let voided = payment::Entity::update_many()
                    .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Voided))
                    .col_expr(payment::Column::ReleasedAt, Expr::value(now))
                    .col_expr(payment::Column::UpdatedAt, Expr::value(now))
                    .filter(payment::Column::Id.eq(payment_id))
                    .filter(payment::Column::OwnerOrganizationId.eq(caller.organization_id))
                    .filter(payment::Column::Status.eq(PaymentStatus::Authorized))
                    .exec(txn)
                    .await?;
                if voided.rows_affected != 1 {
                    return Err(refusal(txn, &caller, payment_id, Step::Void).await);
                }
                let payment = read_payment(txn, payment_id).await?;
                release_on_order(txn, payment.order_id, payment.amount_minor).await?;
                record(txn, payment_event(&payment, "payment.voided")).await?;
                Ok(payment_id)
            })
        })
        .await?;
        self.outbox.committed();
        self.settled(principal, None, Some(id)).await
    }

    /// Refunds part or all of what a CAPTURED payment has left to refund; the order owes it again.
    /// Each refund is its own entry with its own reason. Once per idempotency key.
    pub async fn refund(
        &self,
        principal: &Principal,
        input: Refund,
        idempotency_key: &str,
    ) -> ApiResult<Settled> {
        authorize(principal, Action::SettlePayments)?;
        if input.amount_minor <= 0 {
            return Err(ApiError::validation("amountMinor", "must be positive"));
        }
        let input = Refund {
            reason: validate::text("reason", &input.reason, MAX_REASON_CHARS)?,
            ..input
        };
        let key = IdempotencyKey::new(
            principal.organization_id,
            "refundPayment",
            idempotency_key,
            &input,
        )?;
        let caller = principal.clone();
        let entry_id = run_once(&self.db, Some(&key), move |txn| {
            Box::pin(async move {
                let now = clearing::clearing_now(txn).await?;
                let amount = input.amount_minor;
                let refunded_after = Expr::col(payment::Column::RefundedMinor).add(amount);
                // Fully refunded once nothing of the capture is left.
                let status = CaseStatement::new()
                    .case(
                        refunded_after
                            .clone()
                            .eq(Expr::col(payment::Column::CapturedMinor)),
                        Expr::value(PaymentStatus::Refunded),
                    )
                    .finally(Expr::value(PaymentStatus::Captured));
                let refunded = payment::Entity::update_many()
                    .col_expr(payment::Column::Status, status.into())
                    .col_expr(payment::Column::RefundedMinor, refunded_after.clone())
                    .col_expr(payment::Column::UpdatedAt, Expr::value(now))
                    .filter(payment::Column::Id.eq(input.payment_id))
                    .filter(payment::Column::OwnerOrganizationId.eq(caller.organization_id))
                    .filter(payment::Column::Status.eq(PaymentStatus::Captured))
                    .filter(refunded_after.lte(Expr::col(payment::Column::CapturedMinor)))
                    .exec(txn)
                    .await?;
                if refunded.rows_affected != 1 {
                    return Err(
                        refusal(txn, &caller, input.payment_id, Step::Refund { amount }).await,
                    );
                }
                let payment = read_payment(txn, input.payment_id).await?;
                release_on_order(txn, payment.order_id, amount).await?;
                let entry = insert_entry(
                    txn,
                    &payment,
                    EntryKind::Refund,
                    amount,
                    Some(input.reason),
                    now,
                )
                .await?;
                record(txn, payment_event(&payment, "payment.refunded")).await?;
                Ok(entry)
            })
        })
        .await?;
        self.outbox.committed();
        self.settled(principal, Some(entry_id), None).await
    }

    /// Releases authorizations older than the capture window, oldest first; safe on several replicas
    /// (each release is a conditional update, so a payment expires once). Returns how many it released.
    pub async fn expire_due(&self) -> ApiResult<u64> {
        let window = self.settings.capture_window();
        // Read first: most rounds find nothing, and need no write transaction (SQLite's one writer).
        let now = clearing::clearing_now(&self.db).await?;
        let due: Vec<Uuid> = payment::Entity::find()
            .select_only()
            .column(payment::Column::Id)
            .filter(payment::Column::Status.eq(PaymentStatus::Authorized))
            .filter(payment::Column::CreatedAt.lt(now - window))
            .order_by_asc(payment::Column::CreatedAt)
            .limit(EXPIRIES_PER_ROUND)
            .into_tuple()
            .all(&self.db)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let expired = write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let now = clearing::clearing_now(txn).await?;
                let mut expired = 0u64;
                for id in due {
                    let released = payment::Entity::update_many()
                        .col_expr(payment::Column::Status, Expr::value(PaymentStatus::Expired))
                        .col_expr(payment::Column::ReleasedAt, Expr::value(now))
                        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
                        .filter(payment::Column::Id.eq(id))
                        .filter(payment::Column::Status.eq(PaymentStatus::Authorized))
                        .filter(payment::Column::CreatedAt.lt(now - window))
                        .exec(txn)
                        .await?;
                    // Captured, voided or expired by another replica meanwhile.
                    if released.rows_affected != 1 {
                        continue;
                    }
                    let payment = read_payment(txn, id).await?;
                    release_on_order(txn, payment.order_id, payment.amount_minor).await?;
                    record(txn, payment_event(&payment, "payment.expired")).await?;
                    expired += 1;
                }
                Ok(expired)
            })
        })
        .await?;
        if expired > 0 {
            self.outbox.committed();
            metrics::counter!("hub_authorizations_expired_total").increment(expired);
            tracing::info!(expired, "uncaptured authorizations released");
        }
        Ok(expired)
    }

    /// The payment and entry of a step, as the caller sees them (first run or replay).
    async fn settled(
        &self,
        principal: &Principal,
        entry_id: Option<Uuid>,
        payment_id: Option<Uuid>,
    ) -> ApiResult<Settled> {
        let entry = match entry_id {
            Some(id) => Some(
                clearing_entry::Entity::find_by_id(id)
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!("clearing entry {id} is missing"))
                    })?,
            ),
            None => None,
        };
        let payment_id = entry
            .as_ref()
            .map(|entry| entry.payment_id)
            .or(payment_id)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a settlement without a payment")))?;
        let payment = payment::Entity::find_by_id(payment_id)
            .filter(payment_visible(principal))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("payment"))?;
        Ok(Settled { payment, entry })
    }
}

/// Which step was refused.
enum Step {
    Capture {
        amount: Option<i64>,
        /// Authorizations older than this have expired.
        window_opens: DateTime<Utc>,
    },
    Void,
    Refund {
        amount: i64,
    },
}

/// Why a step changed no row, read again inside its transaction (so in what it would have changed):
/// NOT_FOUND for a payment the caller may not see, FORBIDDEN for its issuer, then the state or amount
/// that stopped it.
async fn refusal(
    txn: &DatabaseTransaction,
    principal: &Principal,
    id: Uuid,
    step: Step,
) -> ApiError {
    let payment = match payment::Entity::find_by_id(id)
        .filter(payment_visible(principal))
        .one(txn)
        .await
    {
        Ok(Some(payment)) => payment,
        Ok(None) => return ApiError::not_found("payment"),
        Err(err) => return err.into(),
    };
    if payment.owner_organization_id != principal.organization_id {
        return ApiError::Forbidden("only the payment's merchant captures, voids or refunds it");
    }
    let state =
        |action: &'static str, reason: String| ApiError::InvalidTransition { action, reason };
    let status = payment.status.to_value();
    match step {
        Step::Capture {
            amount,
            window_opens,
        } => {
            if payment.status != PaymentStatus::Authorized {
                state("capture the payment", format!("it is {status}"))
            } else if payment.created_at < window_opens {
                state("capture the payment", "its authorization expired".into())
            } else if amount.is_some_and(|amount| amount > payment.amount_minor) {
                ApiError::validation(
                    "amountMinor",
                    format!(
                        "at most the authorized {} may be captured",
                        payment.amount_minor
                    ),
                )
            } else {
                ApiError::Conflict("the payment changed meanwhile; retry".into())
            }
        }
        Step::Void => {
            if payment.status != PaymentStatus::Authorized {
                let reason = match payment.status {
                    PaymentStatus::Captured | PaymentStatus::Refunded => {
                        format!("it is {status}; refund it instead")
                    }
                    _ => format!("it is {status}"),
                };
                state("void the payment", reason)
            } else {
                ApiError::Conflict("the payment changed meanwhile; retry".into())
            }
        }
        Step::Refund { amount } => {
            let left = payment.captured_minor - payment.refunded_minor;
            if payment.status == PaymentStatus::Authorized {
                state(
                    "refund the payment",
                    "it is AUTHORIZED; capture or void it first".into(),
                )
            } else if payment.status != PaymentStatus::Captured {
                state("refund the payment", format!("it is {status}"))
            } else if amount > left {
                ApiError::validation(
                    "amountMinor",
                    format!("at most {left} of the capture is left to refund"),
                )
            } else {
                ApiError::Conflict("the payment changed meanwhile; retry".into())
            }
        }
    }
}

async fn read_payment(txn: &DatabaseTransaction, id: Uuid) -> ApiResult<payment::Model> {
    payment::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("payment {id} vanished")))
}

/// Lowers what the order holds by `amount`: released, voided, expired or refunded money is owed again.
async fn release_on_order(txn: &DatabaseTransaction, order_id: Uuid, amount: i64) -> ApiResult<()> {
    let released = order::Entity::update_many()
        .col_expr(
            order::Column::PaidMinor,
            Expr::col(order::Column::PaidMinor).sub(amount),
        )
        .col_expr(
            order::Column::Version,
            Expr::col(order::Column::Version).add(1),
        )
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::PaidMinor.gte(amount))
        .exec(txn)
        .await?;
    if released.rows_affected != 1 {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "order {order_id} holds less than the {amount} released from its payment"
        )));
    }
    Ok(())
}

/// Writes the capture or refund into the open batch of the payment's merchant, issuer and currency.
async fn insert_entry(
    txn: &DatabaseTransaction,
    payment: &payment::Model,
    kind: EntryKind,
    amount_minor: i64,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> ApiResult<Uuid> {
    let provider = payment.issuer_organization_id.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("card payment {} has no issuer", payment.id))
    })?;
    let batch_id = join_open_batch(
        txn,
        payment.owner_organization_id,
        provider,
        &payment.currency,
        now,
    )
    .await?;
    let id = Uuid::now_v7();
    clearing_entry::Entity::insert(clearing_entry::ActiveModel {
        id: Set(id),
        batch_id: Set(batch_id),
        payment_id: Set(payment.id),
        kind: Set(kind),
        amount_minor: Set(amount_minor),
        currency: Set(payment.currency.clone()),
        merchant_organization_id: Set(payment.owner_organization_id),
        provider_organization_id: Set(provider),
        reason: Set(reason),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(id)
}

fn payment_event(payment: &payment::Model, event_type: &'static str) -> NewEvent {
    NewEvent {
        event_type,
        family: FINANCIAL,
        record_type: RecordKind::Payment,
        record_id: payment.id,
        status: payment.status.to_value(),
        owner: payment.owner_organization_id,
        parties: payment.issuer_organization_id.into_iter().collect(),
    }
}
