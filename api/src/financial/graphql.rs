//! GraphQL types and resolvers for orders, invoices and payments: thin over [`FinancialService`], nested
//! lists through per-request DataLoaders.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Context, Enum, ID, InputObject, Object, SimpleObject, Subscription, dataloader::Loader,
};
use chrono::{DateTime, Utc};
use entities::{invoice, order, order_line, payment};
use futures_util::Stream;
use uuid::Uuid;

use super::{
    FinancialService,
    service::{NewOrder, NewOrderLine, OrderAction},
};
use crate::graphql::relay::IntoConnection;
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    events::EventFeed,
    graphql::live::{self, Following},
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
        scalars::Int64,
    },
    identity::graphql::Organization,
    master_data::graphql::{Customer, Product},
    policy::may_see_order_totals,
    records::RecordKind,
};

fn service<'a>(ctx: &Context<'a>) -> &'a FinancialService {
    ctx.data_unchecked::<FinancialService>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::order::OrderStatus")]
pub enum OrderStatus {
    /// Being put together; prices are provisional.
    Draft,
    /// Committed; prices were fixed from the catalogue when it was placed.
    Placed,
    Fulfilled,
    /// Fulfilled and fully paid.
    Closed,
    /// Cancelled from DRAFT or PLACED before any money was received.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::invoice::InvoiceStatus")]
pub enum InvoiceStatus {
    Issued,
    Paid,
    Void,
}

/// Why a payment should be reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::payment::PaymentFlag")]
pub enum PaymentFlag {
    /// The issuer key that signed the number was revoked after the payment.
    IssuerKeyRevoked,
    /// The card's sequence jumped past the gap window (numbers never submitted, or a cloned card).
    SequenceGap,
    /// The card paid at a terminal of another location shortly before.
    DistantTerminals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::payment::PaymentStatus")]
pub enum PaymentStatus {
    /// Approved; the merchant captures or voids it within the capture window.
    Authorized,
    Declined,
    /// The merchant took the money (all or part of the authorization); refunds may follow.
    Captured,
    /// Everything captured was refunded.
    Refunded,
    /// Released by the merchant before capture.
    Voided,
    /// Not captured within the capture window; released by the hub.
    Expired,
}

/// An order. Its owner sees everything; a supplier of one of its products (a party) sees the order, its
/// status and its own lines, but not other suppliers' lines nor the order's totals (null for parties).
pub struct Order(pub order::Model);

impl Order {
    fn totals_visible(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        Ok(may_see_order_totals(ctx.principal()?, &self.0))
    }
}

#[Object]
impl Order {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Order, self.0.id)
    }
    async fn status(&self) -> OrderStatus {
        self.0.status.into()
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Sum of the lines, computed by the hub (owner only).
    async fn total_minor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Int64>> {
        Ok(self
            .totals_visible(ctx)?
            .then_some(Int64(self.0.total_minor)))
    }
    /// Received so far (owner only).
    async fn paid_minor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Int64>> {
        Ok(self
            .totals_visible(ctx)?
            .then_some(Int64(self.0.paid_minor)))
    }
    /// The unpaid balance: total minus paid (owner only).
    async fn balance_minor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Int64>> {
        Ok(self
            .totals_visible(ctx)?
            .then_some(Int64(self.0.total_minor - self.0.paid_minor)))
    }
    /// The lines the caller may see.
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLine>> {
        let lines = ctx
            .scope()
            .order_lines()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?;
        Ok(lines
            .unwrap_or_default()
            .into_iter()
            .map(OrderLine)
            .collect())
    }
    async fn invoices(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Invoice>> {
        let invoices = ctx
            .scope()
            .invoices()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?;
        Ok(invoices
            .unwrap_or_default()
            .into_iter()
            .map(Invoice)
            .collect())
    }
    async fn payments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Payment>> {
        let payments = ctx
            .scope()
            .payments()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?;
        Ok(payments
            .unwrap_or_default()
            .into_iter()
            .map(Payment)
            .collect())
    }
    /// Null when there is none or the caller may not see it.
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        match self.0.customer_id {
            Some(id) => Ok(ctx.scope().customer(id).await?.map(Customer)),
            None => Ok(None),
        }
    }
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.owner_organization_id)
            .await?
            .map(Organization))
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn placed_at(&self) -> Option<DateTime<Utc>> {
        self.0.placed_at
    }
}

/// One line: the product, its quantity and the price the hub took from the catalogue.
pub struct OrderLine(order_line::Model);

#[Object]
impl OrderLine {
    async fn line_number(&self) -> i32 {
        self.0.line_number
    }
    /// Null if the caller may no longer see the product.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        Ok(ctx.scope().product(self.0.product_id).await?.map(Product))
    }
    async fn product_id(&self) -> ID {
        encode_id(RecordKind::Product, self.0.product_id)
    }
    async fn supplier(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        match self.0.supplier_organization_id {
            Some(id) => Ok(ctx.scope().organization(id).await?.map(Organization)),
            None => Ok(None),
        }
    }
    async fn quantity(&self) -> i32 {
        self.0.quantity
    }
    async fn unit_price_minor(&self) -> Int64 {
        Int64(self.0.unit_price_minor)
    }
    async fn line_total_minor(&self) -> Int64 {
        Int64(self.0.line_total_minor)
    }
}

/// An invoice for an order's unpaid balance (its owner's only).
pub struct Invoice(pub invoice::Model);

#[Object]
impl Invoice {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Invoice, self.0.id)
    }
    async fn order_id(&self) -> ID {
        encode_id(RecordKind::Order, self.0.order_id)
    }
    async fn amount_minor(&self) -> Int64 {
        Int64(self.0.amount_minor)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn status(&self) -> InvoiceStatus {
        self.0.status.into()
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn issued_at(&self) -> DateTime<Utc> {
        self.0.issued_at
    }
}

/// A payment toward an order, seen by the order's owner and the card's issuer.
pub struct Payment(pub payment::Model);

#[Object]
impl Payment {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Payment, self.0.id)
    }
    async fn order_id(&self) -> ID {
        encode_id(RecordKind::Order, self.0.order_id)
    }
    async fn invoice_id(&self) -> Option<ID> {
        self.0
            .invoice_id
            .map(|id| encode_id(RecordKind::Invoice, id))
    }
    async fn amount_minor(&self) -> Int64 {
        Int64(self.0.amount_minor)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn status(&self) -> PaymentStatus {
        self.0.status.into()
    }
    /// Why the payment should be reviewed, in the order raised; empty when nothing is suspicious. A
    /// flagged payment stays as it is until someone acts on it.
    async fn flags(&self) -> Vec<PaymentFlag> {
        crate::payments::flags::parse(self.0.flag.as_deref())
            .into_iter()
            .map(PaymentFlag::from)
            .collect()
    }
    /// The last four digits of the card that paid (what a receipt shows).
    async fn card_last_four(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(service(ctx).card_last_four(&self.0).await?)
    }
    async fn issuer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        match self.0.issuer_organization_id {
            Some(id) => Ok(ctx.scope().organization(id).await?.map(Organization)),
            None => Ok(None),
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// What the merchant captured (0 until captured; what was not captured was released).
    async fn captured_minor(&self) -> Int64 {
        Int64(self.0.captured_minor)
    }
    /// What was refunded of the capture, across every refund.
    async fn refunded_minor(&self) -> Int64 {
        Int64(self.0.refunded_minor)
    }
    async fn captured_at(&self) -> Option<DateTime<Utc>> {
        self.0.captured_at
    }
    /// When the authorization, or what a partial capture left of it, was released.
    async fn released_at(&self) -> Option<DateTime<Utc>> {
        self.0.released_at
    }
    /// The payment's capture and refunds, oldest first, each in its clearing batch.
    async fn clearing_entries(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<crate::clearing::graphql::ClearingEntry>> {
        Ok(crate::clearing::graphql::entries_of_payment(ctx, self.0.id).await?)
    }
}

// ---- loaders: children of orders, by order id, visible to the caller ----

macro_rules! order_children_loader {
    ($name:ident, $model:ty, $method:ident) => {
        pub struct $name {
            pub service: FinancialService,
            pub principal: Principal,
        }

        impl Loader<Uuid> for $name {
            type Value = Vec<$model>;
            type Error = Arc<ApiError>;

            async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
                self.service
                    .$method(&self.principal, keys)
                    .await
                    .map_err(Arc::new)
            }
        }
    };
}

order_children_loader!(OrderLinesLoader, order_line::Model, lines);

/// Orders by id, those the caller may see (a work plan's or a delivery's order).
pub struct OrdersLoader {
    pub service: FinancialService,
    pub principal: Principal,
}

impl Loader<Uuid> for OrdersLoader {
    type Value = order::Model;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.service
            .orders_by_id(&self.principal, keys)
            .await
            .map_err(Arc::new)
    }
}
order_children_loader!(InvoicesLoader, invoice::Model, invoices);
order_children_loader!(PaymentsLoader, payment::Model, payments);

fn loader_error(err: Arc<ApiError>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("loading order details failed: {err}"))
}

// ---- queries and mutations ----

#[derive(InputObject, Default)]
pub struct OrderFilter {
    status: Option<OrderStatus>,
}

#[derive(Default)]
pub struct FinancialQuery;

#[Object]
impl FinancialQuery {
    /// Orders the caller owns or is a party of, oldest first.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<OrderFilter>,
    ) -> async_graphql::Result<HubConnection<Order>> {
        let principal = ctx.principal()?;
        let status = filter.unwrap_or_default().status.map(Into::into);
        let page = service(ctx)
            .orders(
                principal,
                status,
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(Order))
    }
}

#[derive(InputObject)]
pub struct OrderLineInput {
    product_id: ID,
    /// 1 to 1,000,000.
    quantity: i32,
}

#[derive(InputObject)]
pub struct CreateOrderInput {
    /// One of the caller's customers (or one shared with it).
    customer_id: Option<ID>,
    /// 1 to 100 lines; products the caller may see, all in one currency. Prices come from the catalogue.
    lines: Vec<OrderLineInput>,
    /// Retrying with the same key and input returns the same order; another input fails with
    /// IDEMPOTENCY_MISMATCH. Keys are kept 24 hours.
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct OrderPayload {
    order: Order,
}

#[derive(InputObject)]
pub struct OrderTransitionInput {
    id: ID,
}

#[derive(InputObject)]
pub struct RaiseInvoiceInput {
    order_id: ID,
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct InvoiceTransitionInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct InvoicePayload {
    invoice: Invoice,
}

#[derive(Default)]
pub struct FinancialMutation;

impl FinancialMutation {
    async fn step(
        &self,
        ctx: &Context<'_>,
        input: OrderTransitionInput,
        action: OrderAction,
    ) -> async_graphql::Result<OrderPayload> {
        let id = decode_id("id", RecordKind::Order, &input.id)?;
        let order = service(ctx)
            .transition(ctx.principal()?, id, action)
            .await?;
        Ok(OrderPayload {
            order: Order(order),
        })
    }
}

#[Object]
impl FinancialMutation {
    /// Creates a DRAFT order (MEMBER or ADMIN). Line prices and totals are computed by the hub.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        input: CreateOrderInput,
    ) -> async_graphql::Result<OrderPayload> {
        let lines = input
            .lines
            .iter()
            .map(|line| {
                Ok(NewOrderLine {
                    product_id: decode_id("productId", RecordKind::Product, &line.product_id)?,
                    quantity: line.quantity,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let customer_id = input
            .customer_id
            .as_ref()
            .map(|id| decode_id("customerId", RecordKind::Customer, id))
            .transpose()?;
        let order = service(ctx)
            .create_order(
                ctx.principal()?,
                NewOrder { customer_id, lines },
                input.idempotency_key.as_deref(),
            )
            .await?;
        Ok(OrderPayload {
            order: Order(order),
        })
    }

    /// DRAFT -> PLACED; re-prices every line from the catalogue.
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: OrderTransitionInput,
    ) -> async_graphql::Result<OrderPayload> {
        self.step(ctx, input, OrderAction::Place).await
    }

    /// PLACED -> FULFILLED.
    async fn fulfill_order(
        &self,
        ctx: &Context<'_>,
        input: OrderTransitionInput,
    ) -> async_graphql::Result<OrderPayload> {
        self.step(ctx, input, OrderAction::Fulfill).await
    }

    /// FULFILLED -> CLOSED, once the balance is paid.
    async fn close_order(
        &self,
        ctx: &Context<'_>,
        input: OrderTransitionInput,
    ) -> async_graphql::Result<OrderPayload> {
        self.step(ctx, input, OrderAction::Close).await
    }

    /// DRAFT or PLACED -> CANCELLED, while nothing was paid.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        input: OrderTransitionInput,
    ) -> async_graphql::Result<OrderPayload> {
        self.step(ctx, input, OrderAction::Cancel).await
    }

    /// Raises an invoice for a PLACED or FULFILLED order's unpaid balance (one open invoice at a time).
    async fn raise_invoice(
        &self,
        ctx: &Context<'_>,
        input: RaiseInvoiceInput,
    ) -> async_graphql::Result<InvoicePayload> {
        let order_id = decode_id("orderId", RecordKind::Order, &input.order_id)?;
        let invoice = service(ctx)
            .raise_invoice(ctx.principal()?, order_id, input.idempotency_key.as_deref())
            .await?;
        Ok(InvoicePayload {
            invoice: Invoice(invoice),
        })
    }

    /// ISSUED -> PAID, for money received outside the card flow; lowers the order's balance.
    async fn pay_invoice(
        &self,
        ctx: &Context<'_>,
        input: InvoiceTransitionInput,
    ) -> async_graphql::Result<InvoicePayload> {
        let id = decode_id("id", RecordKind::Invoice, &input.id)?;
        let invoice = service(ctx).pay_invoice(ctx.principal()?, id).await?;
        Ok(InvoicePayload {
            invoice: Invoice(invoice),
        })
    }

    /// ISSUED -> VOID.
    async fn void_invoice(
        &self,
        ctx: &Context<'_>,
        input: InvoiceTransitionInput,
    ) -> async_graphql::Result<InvoicePayload> {
        let id = decode_id("id", RecordKind::Invoice, &input.id)?;
        let invoice = service(ctx).void_invoice(ctx.principal()?, id).await?;
        Ok(InvoicePayload {
            invoice: Invoice(invoice),
        })
    }
}

#[derive(Default)]
pub struct FinancialSubscription;

#[Subscription]
impl FinancialSubscription {
    /// An order as it is now, then each time it changes (placed, fulfilled, paid, ...), for as long as
    /// the caller may see it.
    async fn order(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Order>> + use<>> {
        let id = decode_id("id", RecordKind::Order, &id)?;
        let service = service(ctx).clone();
        let Following {
            slot,
            principal,
            events,
        } = live::follow(ctx, None)?;
        let current = service.order(&principal, id).await?;
        let read = move || {
            let (service, principal) = (service.clone(), principal.clone());
            async move { service.order(&principal, id).await }
        };
        let versions =
            EventFeed::follow_record(events, RecordKind::Order, id, current, read, |_| false);
        Ok(live::deliver(slot, versions, Order))
    }
}
