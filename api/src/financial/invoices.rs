//! Invoices: raised from an order's unpaid balance, one open at a time, paid or voided.

use std::collections::HashMap;

use chrono::Utc;
use entities::{
    invoice::{self, InvoiceStatus},
    order::{self, OrderStatus},
};
use sea_orm::{
    ActiveEnum,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::service::{FinancialService, find_order, group_by};
use crate::{
    auth::Principal,
    db::write_transaction,
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, record},
    idempotency::{IdempotencyKey, run_once},
    policy::{Action, authorize, invoice_visible},
    records::RecordKind,
};

impl FinancialService {
    /// Raises an invoice for a PLACED or FULFILLED order's unpaid balance; one open invoice at a time.
    pub async fn raise_invoice(
        &self,
        principal: &Principal,
        order_id: Uuid,
        idempotency_key: Option<&str>,
    ) -> ApiResult<invoice::Model> {
        authorize(principal, Action::WriteRecords)?;
        let key = idempotency_key
            .map(|key| {
                IdempotencyKey::new(principal.organization_id, "raiseInvoice", key, &order_id)
            })
            .transpose()?;
        let caller = principal.clone();
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                let order = find_order(txn, &caller, order_id).await?;
                if order.owner_organization_id != caller.organization_id {
                    return Err(ApiError::Forbidden("only the order's owner invoices it"));
                }
                if !matches!(order.status, OrderStatus::Placed | OrderStatus::Fulfilled) {
                    return Err(ApiError::InvalidTransition {
                        action: "raise an invoice",
                        reason: format!("the order is {}", order.status.to_value()),
                    });
                }
                let balance = order.total_minor - order.paid_minor;
                if balance <= 0 {
                    return Err(ApiError::InvalidTransition {
                        action: "raise an invoice",
                        reason: "the order has no unpaid balance".into(),
                    });
                }
                let open = invoice::Entity::find()
                    .filter(invoice::Column::OrderId.eq(order_id))
                    .filter(invoice::Column::Status.eq(InvoiceStatus::Issued))
                    .one(txn)
                    .await?;
                if open.is_some() {
                    return Err(ApiError::Conflict(
                        "the order already has an open invoice".into(),
                    ));
                }
                // Claim the order's version so two concurrent raises cannot both pass the check above.
                let claimed = order::Entity::update_many()
                    .col_expr(
                        order::Column::Version,
                        Expr::col(order::Column::Version).add(1),
                    )
                    .filter(order::Column::Id.eq(order_id))
                    .filter(order::Column::Version.eq(order.version))
                    .exec(txn)
                    .await?;
                if claimed.rows_affected != 1 {
                    return Err(ApiError::Conflict(
                        "the order changed meanwhile; retry".into(),
                    ));
                }
                let now = Utc::now();
                let id = Uuid::now_v7();
                invoice::Entity::insert(invoice::ActiveModel {
                    id: Set(id),
                    owner_organization_id: Set(caller.organization_id),
                    order_id: Set(order_id),
                    amount_minor: Set(balance),
                    currency: Set(order.currency.clone()),
                    status: Set(InvoiceStatus::Issued),
                    version: Set(1),
                    issued_at: Set(now),
                    updated_at: Set(now),
                })
                .exec_without_returning(txn)
                .await?;
                record(
                    txn,
                    invoice_event(
                        id,
                        caller.organization_id,
                        "invoice.issued",
                        InvoiceStatus::Issued,
                    ),
                )
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.outbox.committed();
        self.invoice(principal, id).await
    }

    /// ISSUED -> PAID (settled outside the card flow, e.g. by bank transfer): the order's balance drops.
    pub async fn pay_invoice(&self, principal: &Principal, id: Uuid) -> ApiResult<invoice::Model> {
        self.settle_invoice(principal, id, InvoiceStatus::Paid)
            .await
    }

    /// ISSUED -> VOID.
    pub async fn void_invoice(&self, principal: &Principal, id: Uuid) -> ApiResult<invoice::Model> {
        self.settle_invoice(principal, id, InvoiceStatus::Void)
            .await
    }

    async fn settle_invoice(
        &self,
        principal: &Principal,
        id: Uuid,
        to: InvoiceStatus,
    ) -> ApiResult<invoice::Model> {
        authorize(principal, Action::WriteRecords)?;
        let caller = principal.clone();
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let invoice = invoice::Entity::find_by_id(id)
                    .filter(invoice_visible(&caller))
                    .one(txn)
                    .await?
                    .ok_or(ApiError::not_found("invoice"))?;
                let (action, event_type) = match to {
                    InvoiceStatus::Paid => ("mark the invoice paid", "invoice.paid"),
                    _ => ("void the invoice", "invoice.voided"),
                };
                let changed = invoice::Entity::update_many()
                    .col_expr(invoice::Column::Status, Expr::value(to))
                    .col_expr(
                        invoice::Column::Version,
                        Expr::col(invoice::Column::Version).add(1),
                    )
                    .col_expr(invoice::Column::UpdatedAt, Expr::value(Utc::now()))
                    .filter(invoice::Column::Id.eq(id))
                    .filter(invoice::Column::Status.eq(InvoiceStatus::Issued))
                    .exec(txn)
                    .await?;
                if changed.rows_affected != 1 {
                    return Err(ApiError::InvalidTransition {
                        action,
                        reason: format!("the invoice is {}", invoice.status.to_value()),
                    });
                }
                if to == InvoiceStatus::Paid {
                    let paid = order::Entity::update_many()
                        .col_expr(
                            order::Column::PaidMinor,
                            Expr::col(order::Column::PaidMinor).add(invoice.amount_minor),
                        )
                        .col_expr(
                            order::Column::Version,
                            Expr::col(order::Column::Version).add(1),
                        )
                        .filter(order::Column::Id.eq(invoice.order_id))
                        .filter(
                            Expr::col(order::Column::PaidMinor)
                                .add(invoice.amount_minor)
                                .lte(Expr::col(order::Column::TotalMinor)),
                        )
                        .exec(txn)
                        .await?;
                    if paid.rows_affected != 1 {
                        return Err(ApiError::InvalidTransition {
                            action,
                            reason: "it would pay more than the order's total".into(),
                        });
                    }
                }
                record(
                    txn,
                    invoice_event(id, caller.organization_id, event_type, to),
                )
                .await?;
                Ok(())
            })
        })
        .await?;
        self.outbox.committed();
        self.invoice(principal, id).await
    }

    pub async fn invoice(&self, principal: &Principal, id: Uuid) -> ApiResult<invoice::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        invoice::Entity::find_by_id(id)
            .filter(invoice_visible(principal))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("invoice"))
    }

    pub async fn invoices(
        &self,
        principal: &Principal,
        order_ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, Vec<invoice::Model>>> {
        let rows = invoice::Entity::find()
            .filter(invoice::Column::OrderId.is_in(order_ids.iter().copied()))
            .filter(invoice_visible(principal))
            .order_by_asc(invoice::Column::IssuedAt)
            .all(&self.db)
            .await?;
        Ok(group_by(rows, |invoice| invoice.order_id))
    }
}

fn invoice_event(
    id: Uuid,
    owner: Uuid,
    event_type: &'static str,
    status: InvoiceStatus,
) -> NewEvent {
    NewEvent {
        event_type,
        family: FINANCIAL,
        record_type: RecordKind::Invoice,
        record_id: id,
        status: status.to_value(),
        owner,
        parties: Vec::new(),
    }
}
