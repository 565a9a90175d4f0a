//! What a submission reads under its locks, in one statement: the issuer key (shared), the device,
//! the card, the payment request and its order (each locked for update). Held until the
//! keyed transaction ends, these locks serialize the judgements of one device and of one card, so the
//! limits (read next, in a statement of their own that sees every payment an earlier holder
//! committed) cannot be beaten by concurrent taps, and nothing the judgement relied on can change
//! before the approval is written: a card blocked, a key revoked, a request cancelled or an order
//! paid meanwhile either waits for this judgement or is seen by it.
//!
//! Lock order, forced by each lock's condition on the one before (a subquery PostgreSQL evaluates
//! before it scans): the issuer key, then the device, then the card, then the request, then the
//! request's order. Every submission takes its locks in this one order, so two submissions never wait
//! on each other in a cycle (two devices may name the same card, or requests of the same order); a
//! key revocation (the key, then payments) or a settlement (a payment, then its order) never
//! holds what a submission locks before waiting for what it locks after. `FOR NO KEY UPDATE` leaves
//! the foreign-key checks of unrelated inserts alone.
//!
//! The rows are locked before the signatures are checked (one statement instead of three): a device
//! submitting a forged token holds the card it names for its own transaction only, within the
//! request deadline, and the submission is recorded as a decline at that device. SQLite has no row
//! locks: its write transactions are IMMEDIATE, one writer at a time already, and the statement is
//! the same without the locking clauses.

use entities::{
    card,
    device::{self, DeviceStatus},
    issuer_key, order, payment_request,
};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryResult,
    sea_query::{
        Alias, Asterisk, CommonTableExpression, Expr, ExprTrait, IntoIden, LockType, Query,
        SelectStatement, WithClause,
    },
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// The rows a judgement needs, as locked.
#[derive(Debug)]
pub(super) struct Locked {
    pub(super) device_status: Option<DeviceStatus>,
    pub(super) key: Option<issuer_key::Model>,
    pub(super) card: Option<card::Model>,
    pub(super) request: Option<payment_request::Model>,
    /// The request's order: what is still unpaid.
    pub(super) order_balance: Option<i64>,
}

/// Which rows to lock.
pub(super) struct Wanted {
    pub(super) device_id: Uuid,
    /// The merchant: the caller's organization.
    pub(super) organization_id: Uuid,
    pub(super) request_id: Uuid,
    /// As the token claims them (checked against the stored key and card by the judgement).
    pub(super) issuer: Uuid,
    pub(super) key_id: i64,
    pub(super) card_id: Uuid,
}

impl Locked {
    pub(super) async fn read(txn: &DatabaseTransaction, wanted: &Wanted) -> ApiResult<Self> {
        // Waits for the device's lock, and finds nothing without the device.
        let after_device = || {
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(Alias::new("d"))
                    .to_owned(),
            )
        };
        // Waits for the lock of the CTE `name`, whether it found a row or not (`count >= 0` always
        // holds).
        let evaluated = |name: &str| {
            Expr::SubQuery(
                None,
                Box::new(
                    Query::select()
                        .expr(Expr::col(Asterisk).count())
                        .from(Alias::new(name))
                        .to_owned()
                        .into(),
                ),
            )
            .gte(0)
        };
        let device = Query::select()
            .column(device::Column::Status)
            .from(device::Entity)
            .and_where(Expr::col(device::Column::Id).eq(wanted.device_id))
            .and_where(evaluated("k"))
            .lock(LockType::NoKeyUpdate)
            .to_owned();
        let key = Query::select()
            .columns(issuer_key::Column::iter())
            .from(issuer_key::Entity)
            .and_where(Expr::col(issuer_key::Column::OwnerOrganizationId).eq(wanted.issuer))
            .and_where(Expr::col(issuer_key::Column::KeyId).eq(wanted.key_id))
            // A revocation waits for this judgement (and flags its payment), or precedes it.
            .lock(LockType::Share)
            .to_owned();
        let card = Query::select()
            .columns(card::Column::iter())
            .from(card::Entity)
            .and_where(Expr::col(card::Column::Id).eq(wanted.card_id))
            .and_where(Expr::col(card::Column::IssuerOrganizationId).eq(wanted.issuer))
            .and_where(after_device())
            .lock(LockType::NoKeyUpdate)
            .to_owned();
        let request = Query::select()
            .columns(payment_request::Column::iter())
            .from(payment_request::Entity)
            .and_where(Expr::col(payment_request::Column::Id).eq(wanted.request_id))
            .and_where(Expr::col(payment_request::Column::DeviceId).eq(wanted.device_id))
            .and_where(
                Expr::col(payment_request::Column::OwnerOrganizationId).eq(wanted.organization_id),
            )
            .and_where(after_device())
            .and_where(evaluated("c"))
            .lock(LockType::NoKeyUpdate)
            .to_owned();
        let order = Query::select()
            .expr_as(
                Expr::col(order::Column::TotalMinor).sub(Expr::col(order::Column::PaidMinor)),
                Alias::new("balance"),
            )
            .from(order::Entity)
            .and_where(
                Expr::col(order::Column::Id).in_subquery(
                    Query::select()
                        .column(payment_request::Column::OrderId)
                        .from(Alias::new("r"))
                        .to_owned(),
                ),
            )
            .lock(LockType::NoKeyUpdate)
            .to_owned();
        let mut with = WithClause::new();
        let mut answer = Query::select();
        answer.from_subquery(
            Query::select().expr(Expr::val(1)).to_owned(),
            Alias::new("one"),
        );
        for (name, select) in [
            ("k", key),
            ("d", device),
            ("c", card),
            ("r", request),
            ("o", order),
        ] {
            with.cte(
                CommonTableExpression::new()
                    .query(select)
                    .table_name(Alias::new(name))
                    .to_owned(),
            );
            answer.left_join(Alias::new(name), Expr::cust("TRUE"));
        }
        answer.expr_as(
            Expr::col((Alias::new("d"), device::Column::Status)),
            Alias::new("d_status"),
        );
        answer.expr_as(
            Expr::col((Alias::new("o"), Alias::new("balance"))),
            Alias::new("o_balance"),
        );
        prefixed::<issuer_key::Entity>(&mut answer, "k");
        prefixed::<card::Entity>(&mut answer, "c");
        prefixed::<payment_request::Entity>(&mut answer, "r");
        let row = txn.query_one(&with.query(answer)).await?.ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the locking read returned no row"))
        })?;
        Ok(Self {
            device_status: row.try_get("", "d_status")?,
            key: model(&row, "k")?,
            card: model(&row, "c")?,
            request: model(&row, "r")?,
            order_balance: row.try_get("", "o_balance")?,
        })
    }
}

/// Every column of `E` from the CTE `alias`, as `{alias}_{column}`.
fn prefixed<E: EntityTrait>(select: &mut SelectStatement, alias: &str) {
    for column in E::Column::iter() {
        select.expr_as(
            Expr::col((Alias::new(alias), column.into_iden())),
            Alias::new(format!("{alias}_{}", column.as_str())),
        );
    }
}

/// The model the CTE `alias` found, if any: none when its id is null (the left join found nothing);
/// a row that is there but does not decode is an error, never "not found".
fn model<M: FromQueryResult>(row: &QueryResult, alias: &str) -> ApiResult<Option<M>> {
    let prefix = format!("{alias}_");
    if row.try_get::<Option<Uuid>>(&prefix, "id")?.is_none() {
        return Ok(None);
    }
    Ok(Some(M::from_query_result(row, &prefix)?))
}
