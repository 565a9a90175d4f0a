//! The `analytics` query: figures over what the caller may see, each one aggregate query.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{
    AnalyticsService,
    service::{DeliveryRow, PaymentMinuteRow, PaymentOutcomeRow, Period, SalesRow, WorkRow},
};
use crate::{
    graphql::{ContextExt, relay::encode_id, scalars::Int64},
    records::RecordKind,
};

fn service<'a>(ctx: &Context<'a>) -> &'a AnalyticsService {
    ctx.data_unchecked::<AnalyticsService>()
}

/// Sales of one product by one supplier on one day (UTC).
#[derive(SimpleObject)]
pub struct SalesFigure {
    /// `YYYY-MM-DD`, the UTC day the orders were placed.
    day: String,
    product_id: ID,
    /// Null for the retailer's own products.
    supplier_id: Option<ID>,
    currency: String,
    quantity: Int64,
    revenue_minor: Int64,
    /// Orders with such a line.
    orders: Int64,
}

impl From<SalesRow> for SalesFigure {
    fn from(row: SalesRow) -> Self {
        Self {
            day: row.day,
            product_id: encode_id(RecordKind::Product, row.product_id),
            supplier_id: row
                .supplier_id
                .map(|id| encode_id(RecordKind::Organization, id)),
            currency: row.currency,
            quantity: Int64(row.quantity),
            revenue_minor: Int64(row.revenue_minor),
            orders: Int64(row.orders),
        }
    }
}

/// Submissions at one terminal with one outcome (and decline reason).
#[derive(SimpleObject)]
pub struct PaymentOutcomeFigure {
    terminal_id: ID,
    authorized: bool,
    /// Null for authorizations.
    decline_reason: Option<String>,
    count: Int64,
}

impl From<PaymentOutcomeRow> for PaymentOutcomeFigure {
    fn from(row: PaymentOutcomeRow) -> Self {
        Self {
            terminal_id: encode_id(RecordKind::Device, row.terminal_id),
            authorized: row.authorized,
            decline_reason: row.decline_reason,
            count: Int64(row.count),
        }
    }
}

/// Card submissions judged in one minute (UTC).
#[derive(SimpleObject)]
pub struct PaymentMinuteFigure {
    /// The minute's start.
    minute: DateTime<Utc>,
    authorized: Int64,
    declined: Int64,
}

impl From<PaymentMinuteRow> for PaymentMinuteFigure {
    fn from(row: PaymentMinuteRow) -> Self {
        Self {
            minute: row.minute,
            authorized: Int64(row.authorized),
            declined: Int64(row.declined),
        }
    }
}

/// How one carrier delivered.
#[derive(SimpleObject)]
pub struct DeliveryFigure {
    carrier_id: ID,
    delivered: Int64,
    /// Delivered by the end of the promised window.
    on_time: Int64,
    /// `onTime / delivered`.
    on_time_rate: f64,
    /// Mean seconds from pick-up to delivery.
    mean_transit_seconds: f64,
}

impl From<DeliveryRow> for DeliveryFigure {
    fn from(row: DeliveryRow) -> Self {
        Self {
            carrier_id: encode_id(RecordKind::Organization, row.carrier_id),
            on_time_rate: if row.delivered > 0 {
                row.on_time as f64 / row.delivered as f64
            } else {
                0.0
            },
            delivered: Int64(row.delivered),
            on_time: Int64(row.on_time),
            mean_transit_seconds: row.mean_transit_seconds,
        }
    }
}

/// Work one assignee recorded.
#[derive(SimpleObject)]
pub struct WorkFigure {
    assignee_id: ID,
    records: Int64,
    minutes: Int64,
    /// Plans with at least one of those records.
    plans: Int64,
}

impl From<WorkRow> for WorkFigure {
    fn from(row: WorkRow) -> Self {
        Self {
            assignee_id: encode_id(RecordKind::Organization, row.assignee_id),
            records: Int64(row.records),
            minutes: Int64(row.minutes),
            plans: Int64(row.plans),
        }
    }
}

/// Figures over `[from, to)` (at most 366 days), each computed in the database over exactly what the
/// caller may see.
pub struct Analytics {
    period: Period,
}

#[Object]
impl Analytics {
    /// Order lines of placed (not cancelled) orders, by day, product and supplier. A supplier sees
    /// only the lines of its own products.
    async fn sales(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SalesFigure>> {
        let rows = service(ctx).sales(ctx.principal()?, self.period).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
    /// Card submissions by terminal, outcome and decline reason (at the caller's terminals, or of
    /// the cards it issued).
    async fn payment_outcomes(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PaymentOutcomeFigure>> {
        let rows = service(ctx)
            .payment_outcomes(ctx.principal()?, self.period)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
    /// The same submissions by the minute they were judged in (minutes without any are absent): what
    /// an operator's chart of payments per minute and approval rate plots.
    async fn payments_by_minute(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PaymentMinuteFigure>> {
        let rows = service(ctx)
            .payments_by_minute(ctx.principal()?, self.period)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
    /// Deliveries delivered in the period, by carrier.
    async fn deliveries(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DeliveryFigure>> {
        let rows = service(ctx)
            .delivery_performance(ctx.principal()?, self.period)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
    /// Work records whose work ended in the period, by assignee.
    async fn work(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkFigure>> {
        let rows = service(ctx)
            .work_done(ctx.principal()?, self.period)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Figures over the shared data for the period `[from, to)`.
    async fn analytics(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Analytics> {
        Ok(Analytics {
            period: Period::new(from, to)?,
        })
    }
}
