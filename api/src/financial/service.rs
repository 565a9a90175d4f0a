//! Order and invoice rules, independent of GraphQL.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use chrono::Utc;
use entities::{
    customer,
    invoice::{self, InvoiceStatus},
    order::{self, OrderStatus},
    order_line, order_party, payment, product,
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

use crate::{
    analytics::rollup::{SalesChange, record_order_sales},
    auth::Principal,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::write_transaction,
    error::{ApiError, ApiResult},
    events::{FINANCIAL, NewEvent, Outbox, record},
    idempotency::{IdempotencyKey, run_once},
    policy::{
        Action, Need, authorize, invoice_visible, order_line_visible, order_visible,
        payment_visible, visible,
    },
    records::RecordKind,
};

const MAX_LINES: usize = 100;
const MAX_QUANTITY: i32 = 1_000_000;

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

/// A line priced from the catalogue.
struct PricedLine {
    product_id: Uuid,
    supplier: Option<Uuid>,
    quantity: i32,
    unit_price_minor: i64,
    line_total_minor: i64,
}

#[derive(Clone)]
pub struct FinancialService {
    db: DatabaseConnection,
    outbox: Outbox,
    /// Wakes the daily sales folder after an order's sales changed.
    sales_folder: Arc<Notify>,
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

    // ---- invoices ----

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

fn group_by<T>(rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut grouped: HashMap<Uuid, Vec<T>> = HashMap::new();
    for row in rows {
        grouped.entry(key(&row)).or_default().push(row);
    }
    grouped
}

async fn find_order<C: ConnectionTrait>(
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

fn validate_lines(lines: &[NewOrderLine]) -> ApiResult<()> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ApiError::validation(
            "lines",
            format!("an order has 1 to {MAX_LINES} lines"),
        ));
    }
    if lines
        .iter()
        .any(|line| !(1..=MAX_QUANTITY).contains(&line.quantity))
    {
        return Err(ApiError::validation(
            "quantity",
            format!("must be between 1 and {MAX_QUANTITY}"),
        ));
    }
    Ok(())
}

/// Prices lines from the products the caller may see; all must share one currency.
async fn price_lines(
    txn: &DatabaseTransaction,
    principal: &Principal,
    lines: &[NewOrderLine],
) -> ApiResult<(String, Vec<PricedLine>)> {
    let ids: BTreeSet<Uuid> = lines.iter().map(|line| line.product_id).collect();
    let products: HashMap<Uuid, product::Model> = product::Entity::find()
        .filter(product::Column::Id.is_in(ids))
        .filter(visible::<product::Entity>(principal, Need::Read))
        .all(txn)
        .await?
        .into_iter()
        .map(|product| (product.id, product))
        .collect();
    let mut currency: Option<String> = None;
    let mut priced = Vec::with_capacity(lines.len());
    for line in lines {
        let product = products
            .get(&line.product_id)
            .ok_or(ApiError::not_found("product"))?;
        match &currency {
            None => currency = Some(product.currency.clone()),
            Some(existing) if *existing != product.currency => {
                return Err(ApiError::validation(
                    "lines",
                    "all products of an order must share one currency",
                ));
            }
            Some(_) => {}
        }
        let line_total_minor = product
            .price_minor
            .checked_mul(i64::from(line.quantity))
            .ok_or_else(|| {
                ApiError::validation("quantity", "the line total does not fit in 64 bits")
            })?;
        priced.push(PricedLine {
            product_id: product.id,
            supplier: product.supplier_organization_id,
            quantity: line.quantity,
            unit_price_minor: product.price_minor,
            line_total_minor,
        });
    }
    let currency = currency
        .ok_or_else(|| ApiError::validation("lines", "an order needs at least one line"))?;
    Ok((currency, priced))
}

fn order_total(lines: &[PricedLine]) -> ApiResult<i64> {
    lines.iter().try_fold(0i64, |sum, line| {
        sum.checked_add(line.line_total_minor)
            .ok_or_else(|| ApiError::validation("lines", "the order total does not fit in 64 bits"))
    })
}

/// Writes the lines and the parties they imply (suppliers other than the owner). Returns the parties.
async fn write_lines(
    txn: &DatabaseTransaction,
    order_id: Uuid,
    owner: Uuid,
    lines: &[PricedLine],
) -> ApiResult<Vec<Uuid>> {
    order_line::Entity::insert_many(lines.iter().enumerate().map(|(index, line)| {
        order_line::ActiveModel {
            id: Set(Uuid::now_v7()),
            order_id: Set(order_id),
            line_number: Set(index as i32 + 1),
            product_id: Set(line.product_id),
            supplier_organization_id: Set(line.supplier),
            quantity: Set(line.quantity),
            unit_price_minor: Set(line.unit_price_minor),
            line_total_minor: Set(line.line_total_minor),
        }
    }))
    .exec_without_returning(txn)
    .await?;
    let parties: Vec<Uuid> = lines
        .iter()
        .filter_map(|line| line.supplier)
        .filter(|supplier| *supplier != owner)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !parties.is_empty() {
        order_party::Entity::insert_many(parties.iter().map(|party| order_party::ActiveModel {
            order_id: Set(order_id),
            organization_id: Set(*party),
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(parties)
}

/// Re-prices a DRAFT order's lines from the catalogue as it is placed; returns the parties.
async fn reprice(
    txn: &DatabaseTransaction,
    principal: &Principal,
    order_id: Uuid,
) -> ApiResult<Vec<Uuid>> {
    let current: Vec<NewOrderLine> = order_line::Entity::find()
        .filter(order_line::Column::OrderId.eq(order_id))
        .order_by_asc(order_line::Column::LineNumber)
        .all(txn)
        .await?
        .into_iter()
        .map(|line| NewOrderLine {
            product_id: line.product_id,
            quantity: line.quantity,
        })
        .collect();
    let (currency, lines) = price_lines(txn, principal, &current).await?;
    let total = order_total(&lines)?;
    order_line::Entity::delete_many()
        .filter(order_line::Column::OrderId.eq(order_id))
        .exec(txn)
        .await?;
    order_party::Entity::delete_many()
        .filter(order_party::Column::OrderId.eq(order_id))
        .exec(txn)
        .await?;
    let parties = write_lines(txn, order_id, principal.organization_id, &lines).await?;
    order::Entity::update_many()
        .col_expr(order::Column::TotalMinor, Expr::value(total))
        .col_expr(order::Column::Currency, Expr::value(currency))
        .filter(order::Column::Id.eq(order_id))
        .exec(txn)
        .await?;
    Ok(parties)
}

async fn order_parties(txn: &DatabaseTransaction, order_id: Uuid) -> ApiResult<Vec<Uuid>> {
    Ok(order_party::Entity::find()
        .filter(order_party::Column::OrderId.eq(order_id))
        .all(txn)
        .await?
        .into_iter()
        .map(|party| party.organization_id)
        .collect())
}

fn order_event(
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
