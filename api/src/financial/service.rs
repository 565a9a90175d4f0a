//! Order and invoice rules, independent of GraphQL.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use entities::{
    customer,
    order::{self, OrderStatus},
    order_line, order_party, payment,
};
use sea_orm::{
    ActiveEnum,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::lines::{order_total, price_lines, reprice, validate_lines, write_lines};
use crate::{
    analytics::rollup::{SalesChange, record_order_sales},
    auth::Principal,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::write_transaction,
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, Outbox, record},
    idempotency::{IdempotencyKey, run_once},
    policy::{
        Action, Need, authorize, order_line_visible, order_visible, payment_visible, visible,
    },
    records::RecordKind,
};

#[derive(Debug, Clone, Serialize)]
pub struct NewOrderLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// What a client may say about a new order: which products and how many. Prices come from the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct NewOrder {
    pub customer_id: Option<Uuid>,
    pub lines: Vec<NewOrderLine>,
}

/// The steps of the order state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    Place,
    Fulfill,
    Close,
    Cancel,
}

impl OrderAction {
    /// (allowed from, to, verb, event type)
    fn rule(
        self,
    ) -> (
        &'static [OrderStatus],
        OrderStatus,
        &'static str,
        &'static str,
    ) {
        match self {
            Self::Place => (
                &[OrderStatus::Draft],
                OrderStatus::Placed,
                "place the order",
                "order.placed",
            ),
            Self::Fulfill => (
                &[OrderStatus::Placed],
                OrderStatus::Fulfilled,
                "fulfill the order",
                "order.fulfilled",
            ),
            Self::Close => (
                &[OrderStatus::Fulfilled],
                OrderStatus::Closed,
                "close the order",
                "order.closed",
            ),
            Self::Cancel => (
                &[OrderStatus::Draft, OrderStatus::Placed],
                OrderStatus::Cancelled,
                "cancel the order",
                "order.cancelled",
            ),
        }
    }
}

#[derive(Clone)]
pub struct FinancialService {
    pub(super) db: DatabaseConnection,
    pub(super) outbox: Outbox,
    /// Wakes the daily sales folder after an order's sales changed.
    pub(super) sales_folder: Arc<Notify>,
}

impl FinancialService {
    pub fn new(db: DatabaseConnection, outbox: Outbox, sales_folder: Arc<Notify>) -> Self {
        Self {
            db,
            outbox,
            sales_folder,
        }
    }

    // ---- orders ----

    pub async fn orders(
        &self,
        principal: &Principal,
        status: Option<OrderStatus>,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<order::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let mut select = order::Entity::find().filter(order_visible(principal));
        if let Some(status) = status {
            select = select.filter(order::Column::Status.eq(status));
        }
        let ordering = Ordering {
            name: "createdAt",
            column: order::Column::CreatedAt,
            descending: false,
            key: |o: &order::Model| SortKey::Time(o.created_at),
        };
        paginate(
            &self.db,
            select,
            order::Column::Id,
            |o| o.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    pub async fn order(&self, principal: &Principal, id: Uuid) -> ApiResult<order::Model> {
        find_order(&self.db, principal, id).await
    }

    /// The orders among `ids` the caller may see, by id.
    pub async fn orders_by_id(
        &self,
        principal: &Principal,
        ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, order::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let rows = order::Entity::find()
            .filter(order::Column::Id.is_in(ids.iter().copied()))
            .filter(order_visible(principal))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|order| (order.id, order)).collect())
    }

    /// Creates a DRAFT order, pricing every line from the catalogue (ids and quantities are all a client
    /// says). Idempotent per key.
    pub async fn create_order(
        &self,
        principal: &Principal,
        input: NewOrder,
        idempotency_key: Option<&str>,
    ) -> ApiResult<order::Model> {
        authorize(principal, Action::WriteRecords)?;
        validate_lines(&input.lines)?;
        let key = idempotency_key
            .map(|key| IdempotencyKey::new(principal.organization_id, "createOrder", key, &input))
            .transpose()?;
        let caller = principal.clone();
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                if let Some(customer) = input.customer_id {
                    let visible_customer = customer::Entity::find_by_id(customer)
                        .filter(visible::<customer::Entity>(&caller, Need::Read))
                        .one(txn)
                        .await?;
                    visible_customer.ok_or(ApiError::not_found("customer"))?;
                }
                let (currency, lines) = price_lines(txn, &caller, &input.lines).await?;
                let total = order_total(&lines)?;
                let now = Utc::now();
                let id = Uuid::now_v7();
                order::Entity::insert(order::ActiveModel {
                    id: Set(id),
                    owner_organization_id: Set(caller.organization_id),
                    customer_id: Set(input.customer_id),
                    status: Set(OrderStatus::Draft),
                    currency: Set(currency),
                    total_minor: Set(total),
                    paid_minor: Set(0),
                    version: Set(1),
                    created_at: Set(now),
                    updated_at: Set(now),
                    placed_at: Set(None),
                })
                .exec_without_returning(txn)
                .await?;
                let parties = write_lines(txn, id, caller.organization_id, &lines).await?;
                record(
                    txn,
                    order_event(
                        id,
                        caller.organization_id,
                        "order.created",
                        OrderStatus::Draft,
                        parties,
                    ),
                )
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.outbox.committed();
        find_order(&self.db, principal, id).await
    }

    /// Moves an order along its state machine; placing re-prices every line from the catalogue.
    pub async fn transition(
        &self,
        principal: &Principal,
        id: Uuid,
        action: OrderAction,
    ) -> ApiResult<order::Model> {
        authorize(principal, Action::WriteRecords)?;
        let caller = principal.clone();
        let db = self.db.clone();
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let (from, to, verb, event_type) = action.rule();
                let now = Utc::now();
                let mut update = order::Entity::update_many()
                    .col_expr(order::Column::Status, Expr::value(to))
                    .col_expr(
                        order::Column::Version,
                        Expr::col(order::Column::Version).add(1),
                    )
                    .col_expr(order::Column::UpdatedAt, Expr::value(now))
                    .filter(order::Column::Id.eq(id))
                    .filter(order::Column::OwnerOrganizationId.eq(caller.organization_id))
                    .filter(order::Column::Status.is_in(from.iter().copied()));
                match action {
                    // Money already received must be refunded first; closing needs a settled balance.
                    OrderAction::Cancel => update = update.filter(order::Column::PaidMinor.eq(0)),
                    OrderAction::Close => {
                        update = update.filter(
                            Expr::col(order::Column::PaidMinor).equals(order::Column::TotalMinor),
                        )
                    }
                    OrderAction::Place => {
                        update = update.col_expr(order::Column::PlacedAt, Expr::value(now))
                    }
                    OrderAction::Fulfill => {}
                }
                if update.exec(txn).await?.rows_affected != 1 {
                    return Err(explain_refusal(txn, &caller, id, action, verb).await);
                }
                let parties = if action == OrderAction::Place {
                    reprice(txn, &caller, id).await?
                } else {
                    order_parties(txn, id).await?
                };
                record(
                    txn,
                    order_event(id, caller.organization_id, event_type, to, parties),
                )
                .await?;
                match action {
                    OrderAction::Place => record_order_sales(txn, id, SalesChange::Placed).await?,
                    OrderAction::Cancel => {
                        record_order_sales(txn, id, SalesChange::Cancelled).await?
                    }
                    OrderAction::Fulfill | OrderAction::Close => {}
                }
                Ok(())
            })
        })
        .await?;
        self.outbox.committed();
        if matches!(action, OrderAction::Place | OrderAction::Cancel) {
            self.sales_folder.notify_one();
        }
        find_order(&db, principal, id).await
    }

    /// Lines of the given orders that the caller may see, by order.
    pub async fn lines(
        &self,
        principal: &Principal,
        order_ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, Vec<order_line::Model>>> {
        let rows = order_line::Entity::find()
            .filter(order_line::Column::OrderId.is_in(order_ids.iter().copied()))
            .filter(order_line_visible(principal))
            .order_by_asc(order_line::Column::LineNumber)
            .all(&self.db)
            .await?;
        Ok(group_by(rows, |line| line.order_id))
    }

    // ---- payments (written by the payment mode) ----

    pub async fn payment(&self, principal: &Principal, id: Uuid) -> ApiResult<payment::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        payment::Entity::find_by_id(id)
            .filter(payment_visible(principal))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("payment"))
    }

    /// The last four digits of a payment's card, as its issuer registered them. The payment was read
    /// with the caller's visibility: whoever may see a payment may see which card paid it.
    pub async fn card_last_four(&self, payment: &payment::Model) -> ApiResult<Option<String>> {
        let Some(card_id) = payment.card_id else {
            return Ok(None);
        };
        Ok(entities::card::Entity::find_by_id(card_id)
            .one(&self.db)
            .await?
            .map(|card| card.last_four))
    }

    pub async fn payments(
        &self,
        principal: &Principal,
        order_ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, Vec<payment::Model>>> {
        let rows = payment::Entity::find()
            .filter(payment::Column::OrderId.is_in(order_ids.iter().copied()))
            .filter(payment_visible(principal))
            .order_by_asc(payment::Column::CreatedAt)
            .all(&self.db)
            .await?;
        Ok(group_by(rows, |payment| payment.order_id))
    }
}

pub(super) fn group_by<T>(rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut grouped: HashMap<Uuid, Vec<T>> = HashMap::new();
    for row in rows {
        grouped.entry(key(&row)).or_default().push(row);
    }
    grouped
}

pub(super) async fn find_order<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<order::Model> {
    authorize(principal, Action::ReadOwnOrganization)?;
    order::Entity::find_by_id(id)
        .filter(order_visible(principal))
        .one(db)
        .await?
        .ok_or(ApiError::not_found("order"))
}

/// Says why a transition changed no row, without revealing orders the caller cannot see.
async fn explain_refusal(
    txn: &DatabaseTransaction,
    principal: &Principal,
    id: Uuid,
    action: OrderAction,
    verb: &'static str,
) -> ApiError {
    let order = match find_order(txn, principal, id).await {
        Ok(order) => order,
        Err(err) => return err,
    };
    if order.owner_organization_id != principal.organization_id {
        return ApiError::Forbidden("only the order's owner changes its state");
    }
    let (from, ..) = action.rule();
    let reason = if !from.contains(&order.status) {
        format!("the order is {}", order.status.to_value())
    } else if action == OrderAction::Cancel {
        "money was received for it; refund it first".to_owned()
    } else {
        "it has an unpaid balance".to_owned()
    };
    ApiError::InvalidTransition {
        action: verb,
        reason,
    }
}

pub(super) async fn order_parties(
    txn: &DatabaseTransaction,
    order_id: Uuid,
) -> ApiResult<Vec<Uuid>> {
    Ok(order_party::Entity::find()
        .filter(order_party::Column::OrderId.eq(order_id))
        .all(txn)
        .await?
        .into_iter()
        .map(|party| party.organization_id)
        .collect())
}

pub(super) fn order_event(
    id: Uuid,
    owner: Uuid,
    event_type: &'static str,
    status: OrderStatus,
    parties: Vec<Uuid>,
) -> NewEvent {
    NewEvent {
        event_type,
        family: FINANCIAL,
        record_type: RecordKind::Order,
        record_id: id,
        status: status.to_value(),
        owner,
        parties,
    }
}
