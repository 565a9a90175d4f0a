//! The aggregate queries. Each takes a period `[from, to)` (at most 366 days) and the caller, applies the
//! caller's visibility in the query's WHERE clause, and groups in the database.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use entities::{
    delivery::{self, DeliveryStatus},
    order::{self, OrderStatus},
    order_line, payment_evidence, sales_daily, sales_pending, work_plan, work_record,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, QueryResult,
    sea_query::{Alias, Condition, Expr, ExprTrait, Order, Query, SelectStatement, UnionType},
};
use uuid::Uuid;

use super::rollup;
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    policy::{
        Action, authorize, decline_visible, delivery_visible, sales_daily_visible,
        sales_pending_visible, sold_line_visible, work_plan_visible,
    },
};

/// The longest period one figure covers.
const MAX_PERIOD: TimeDelta = TimeDelta::days(366);
/// Rows one figure returns at most (a day x product x supplier grid of a busy year stays far below).
const MAX_ROWS: u64 = 50_000;

/// A period `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> ApiResult<Self> {
        if to <= from {
            return Err(ApiError::validation("to", "must be after from"));
        }
        if to - from > MAX_PERIOD {
            return Err(ApiError::validation("to", "a period is at most 366 days"));
        }
        Ok(Self { from, to })
    }

    /// The UTC days wholly inside the period, as `[first, end)`, if there is at least one.
    fn whole_days(&self) -> Option<(NaiveDate, NaiveDate)> {
        let from_day = self.from.date_naive();
        let first = if self.from == midnight(from_day) {
            from_day
        } else {
            from_day.succ_opt()?
        };
        let end = self.to.date_naive();
        (first < end).then_some((first, end))
    }

    /// The parts of the period outside its whole days (empty ranges left out).
    fn partial_days(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let Some((first, end)) = self.whole_days() else {
            return vec![(self.from, self.to)];
        };
        [(self.from, midnight(first)), (midnight(end), self.to)]
            .into_iter()
            .filter(|(from, to)| from < to)
            .collect()
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Sales of one product by one supplier on one day (UTC), in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesRow {
    pub day: String,
    pub product_id: Uuid,
    pub supplier_id: Option<Uuid>,
    pub currency: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    pub orders: i64,
}

/// Submissions at one terminal with one outcome and decline reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOutcomeRow {
    pub terminal_id: Uuid,
    pub authorized: bool,
    pub decline_reason: Option<String>,
    pub count: i64,
}

/// Card submissions in one minute (UTC): what an operator's chart plots.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentMinuteRow {
    pub minute: DateTime<Utc>,
    pub authorized: i64,
    pub declined: i64,
}

/// Deliveries of one carrier that were delivered in the period.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub carrier_id: Uuid,
    pub delivered: i64,
    pub on_time: i64,
    /// Mean seconds from pick-up to delivery.
    pub mean_transit_seconds: f64,
}

/// Work recorded by one assignee in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRow {
    pub assignee_id: Uuid,
    pub records: i64,
    pub minutes: i64,
    pub plans: i64,
}

#[derive(Clone)]
pub struct AnalyticsService {
    db: DatabaseConnection,
}

impl AnalyticsService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    async fn rows(&self, statement: &mut SelectStatement) -> ApiResult<Vec<QueryResult>> {
        statement.limit(MAX_ROWS);
        let backend = self.db.get_database_backend();
        Ok(self.db.query_all_raw(backend.build(&*statement)).await?)
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Order lines the caller may see (its own orders' lines; as a supplier, the lines of its own
    /// products) of orders placed in the period and not cancelled, by day, product and supplier.
    ///
    /// Whole days of the period come from the daily roll-up (`sales_daily` and the contributions not
    /// folded into it yet); the partial days at its ends, if any, from the order lines themselves.
    /// One statement, so one snapshot: a fold committing meanwhile is seen entirely or not at all.
    pub async fn sales(&self, principal: &Principal, period: Period) -> ApiResult<Vec<SalesRow>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let none = Uuid::nil();
        let mut parts = Vec::new();
        if let Some((first, end)) = period.whole_days() {
            parts.extend(rolled_up_sales(principal, first, end, none));
        }
        let partial = period.partial_days();
        if !partial.is_empty() {
            parts.push(line_sales(principal, self.backend(), &partial, none));
        }
        let mut parts = parts.into_iter();
        let Some(mut union) = parts.next() else {
            return Ok(Vec::new());
        };
        for part in parts {
            union.union(UnionType::All, part);
        }
        let figures = Alias::new("figures");
        let mut query = Query::select();
        query
            .columns([
                Alias::new("day"),
                Alias::new("product_id"),
                Alias::new("supplier_id"),
                Alias::new("currency"),
            ])
            .expr_as(
                Expr::cust("CAST(SUM(quantity) AS BIGINT)"),
                Alias::new("quantity"),
            )
            .expr_as(
                Expr::cust("CAST(SUM(revenue_minor) AS BIGINT)"),
                Alias::new("revenue_minor"),
            )
            .expr_as(
                Expr::cust("CAST(SUM(orders) AS BIGINT)"),
                Alias::new("orders"),
            )
            .from_subquery(union, figures)
            .group_by_columns([
                Alias::new("day"),
                Alias::new("product_id"),
                Alias::new("supplier_id"),
                Alias::new("currency"),
            ])
            // A day whose orders were all cancelled keeps its roll-up row, at zero.
            .and_having(Expr::cust("SUM(orders)").gt(0))
            .order_by(Alias::new("day"), Order::Asc)
            .order_by(Alias::new("product_id"), Order::Asc)
            .order_by(Alias::new("supplier_id"), Order::Asc)
            .order_by(Alias::new("currency"), Order::Asc);
        self.rows(&mut query)
            .await?
            .iter()
            .map(|row| {
                let day: NaiveDate = row.try_get("", "day")?;
                let supplier: Uuid = row.try_get("", "supplier_id")?;
                Ok(SalesRow {
                    day: day.format("%Y-%m-%d").to_string(),
                    product_id: row.try_get("", "product_id")?,
                    supplier_id: (supplier != none).then_some(supplier),
                    currency: row.try_get("", "currency")?,
                    quantity: row.try_get("", "quantity")?,
                    revenue_minor: row.try_get("", "revenue_minor")?,
                    orders: row.try_get("", "orders")?,
                })
            })
            .collect()
    }

    /// Submissions the caller may see (at its terminals, or of its cards), by terminal, outcome and
    /// decline reason.
    pub async fn payment_outcomes(
        &self,
        principal: &Principal,
        period: Period,
    ) -> ApiResult<Vec<PaymentOutcomeRow>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let evidence = payment_evidence::Entity;
        let mut query = Query::select();
        query
            .expr_as(
                Expr::col((evidence, payment_evidence::Column::DeviceId)),
                Alias::new("terminal_id"),
            )
            .expr_as(
                Expr::col((evidence, payment_evidence::Column::Outcome)),
                Alias::new("outcome"),
            )
            .expr_as(
                Expr::col((evidence, payment_evidence::Column::DeclineReason)),
                Alias::new("decline_reason"),
            )
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("submissions"))
            .from(evidence)
            .cond_where(decline_visible(principal))
            .and_where(Expr::col((evidence, payment_evidence::Column::RecordedAt)).gte(period.from))
            .and_where(Expr::col((evidence, payment_evidence::Column::RecordedAt)).lt(period.to))
            .add_group_by([
                Expr::col((evidence, payment_evidence::Column::DeviceId)),
                Expr::col((evidence, payment_evidence::Column::Outcome)),
                Expr::col((evidence, payment_evidence::Column::DeclineReason)),
            ])
            .order_by(Alias::new("terminal_id"), Order::Asc)
            .order_by(Alias::new("outcome"), Order::Asc)
            .order_by(Alias::new("decline_reason"), Order::Asc);
        self.rows(&mut query)
            .await?
            .iter()
            .map(|row| {
                let outcome: String = row.try_get("", "outcome")?;
                Ok(PaymentOutcomeRow {
                    terminal_id: row.try_get("", "terminal_id")?,
                    authorized: outcome == "AUTHORIZED",
                    decline_reason: row.try_get("", "decline_reason")?,
                    count: row.try_get("", "submissions")?,
                })
            })
            .collect()
    }

    /// The submissions of `payment_outcomes`, by the minute they were judged in (minutes without any
    /// are absent): one aggregate over the evidence's `(organization, recorded_at)` indexes.
    pub async fn payments_by_minute(
        &self,
        principal: &Principal,
        period: Period,
    ) -> ApiResult<Vec<PaymentMinuteRow>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let evidence = payment_evidence::Entity;
        // `YYYY-MM-DDTHH:MM` of the UTC minute, on either backend.
        let minute = match self.backend() {
            DbBackend::Postgres => {
                "to_char(date_trunc('minute', payment_evidence.recorded_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI')"
            }
            _ => "strftime('%Y-%m-%dT%H:%M', payment_evidence.recorded_at)",
        };
        let mut query = Query::select();
        query
            .expr_as(Expr::cust(minute), Alias::new("minute"))
            .expr_as(
                Expr::cust(
                    "SUM(CASE WHEN payment_evidence.outcome = 'AUTHORIZED' THEN 1 ELSE 0 END)",
                ),
                Alias::new("authorized"),
            )
            .expr_as(
                Expr::cust(
                    "SUM(CASE WHEN payment_evidence.outcome = 'AUTHORIZED' THEN 0 ELSE 1 END)",
                ),
                Alias::new("declined"),
            )
            .from(evidence)
            .cond_where(decline_visible(principal))
            .and_where(Expr::col((evidence, payment_evidence::Column::RecordedAt)).gte(period.from))
            .and_where(Expr::col((evidence, payment_evidence::Column::RecordedAt)).lt(period.to))
            .add_group_by([Expr::cust(minute)])
            .order_by(Alias::new("minute"), Order::Asc);
        self.rows(&mut query)
            .await?
            .iter()
            .map(|row| {
                let minute: String = row.try_get("", "minute")?;
                let minute =
                    NaiveDateTime::parse_from_str(&format!("{minute}:00"), "%Y-%m-%dT%H:%M:%S")
                        .map_err(|err| {
                            ApiError::Internal(anyhow::anyhow!("minute {minute:?}: {err}"))
                        })?
                        .and_utc();
                Ok(PaymentMinuteRow {
                    minute,
                    authorized: row.try_get("", "authorized")?,
                    declined: row.try_get("", "declined")?,
                })
            })
            .collect()
    }

    /// Deliveries the caller may see that were delivered in the period, by carrier: how many, how many
    /// by the end of their promised window, and the mean time from pick-up to delivery.
    pub async fn delivery_performance(
        &self,
        principal: &Principal,
        period: Period,
    ) -> ApiResult<Vec<DeliveryRow>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let transit = match self.backend() {
            DbBackend::Postgres => {
                "CAST(AVG(EXTRACT(EPOCH FROM (delivery.delivered_at - delivery.picked_up_at))) AS DOUBLE PRECISION)"
            }
            _ => {
                "CAST(AVG((julianday(delivery.delivered_at) - julianday(delivery.picked_up_at)) * 86400.0) AS DOUBLE PRECISION)"
            }
        };
        let mut query = Query::select();
        query
            .expr_as(
                Expr::col((delivery::Entity, delivery::Column::CarrierOrganizationId)),
                Alias::new("carrier_id"),
            )
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("delivered"))
            .expr_as(
                Expr::cust(
                    "CAST(SUM(CASE WHEN delivery.delivered_at <= delivery.promised_until THEN 1 ELSE 0 END) AS BIGINT)",
                ),
                Alias::new("on_time"),
            )
            .expr_as(Expr::cust(transit), Alias::new("mean_transit"))
            .from(delivery::Entity)
            .cond_where(delivery_visible(principal))
            .and_where(
                Expr::col((delivery::Entity, delivery::Column::Status))
                    .eq(DeliveryStatus::Delivered),
            )
            .and_where(Expr::col((delivery::Entity, delivery::Column::DeliveredAt)).gte(period.from))
            .and_where(Expr::col((delivery::Entity, delivery::Column::DeliveredAt)).lt(period.to))
            .add_group_by([Expr::col((
                delivery::Entity,
                delivery::Column::CarrierOrganizationId,
            ))])
            .order_by(Alias::new("carrier_id"), Order::Asc);
        self.rows(&mut query)
            .await?
            .iter()
            .map(|row| {
                Ok(DeliveryRow {
                    carrier_id: row.try_get("", "carrier_id")?,
                    delivered: row.try_get("", "delivered")?,
                    on_time: row.try_get("", "on_time")?,
                    mean_transit_seconds: row.try_get("", "mean_transit")?,
                })
            })
            .collect()
    }

    /// Work records (of plans the caller may see) whose work ended in the period, by assignee.
    pub async fn work_done(
        &self,
        principal: &Principal,
        period: Period,
    ) -> ApiResult<Vec<WorkRow>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let mut query = Query::select();
        query
            .expr_as(
                Expr::col((work_record::Entity, work_record::Column::OrganizationId)),
                Alias::new("assignee_id"),
            )
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("records"))
            .expr_as(
                Expr::cust("CAST(SUM(work_record.minutes) AS BIGINT)"),
                Alias::new("minutes"),
            )
            .expr_as(
                Expr::cust("COUNT(DISTINCT work_record.work_plan_id)"),
                Alias::new("plans"),
            )
            .from(work_record::Entity)
            .inner_join(
                work_plan::Entity,
                Expr::col((work_plan::Entity, work_plan::Column::Id))
                    .equals((work_record::Entity, work_record::Column::WorkPlanId)),
            )
            .cond_where(work_plan_visible(principal))
            .and_where(
                Expr::col((work_record::Entity, work_record::Column::EndedAt)).gte(period.from),
            )
            .and_where(Expr::col((work_record::Entity, work_record::Column::EndedAt)).lt(period.to))
            .add_group_by([Expr::col((
                work_record::Entity,
                work_record::Column::OrganizationId,
            ))])
            .order_by(Alias::new("assignee_id"), Order::Asc);
        self.rows(&mut query)
            .await?
            .iter()
            .map(|row| {
                Ok(WorkRow {
                    assignee_id: row.try_get("", "assignee_id")?,
                    records: row.try_get("", "records")?,
                    minutes: row.try_get("", "minutes")?,
                    plans: row.try_get("", "plans")?,
                })
            })
            .collect()
    }
}

/// The roll-up's rows for the days `[first, end)`: folded sums and pending contributions, with the
/// supplier as a key (`none` for the owner's own products).
fn rolled_up_sales(
    principal: &Principal,
    first: NaiveDate,
    end: NaiveDate,
    none: Uuid,
) -> [SelectStatement; 2] {
    let mut folded = Query::select();
    folded
        .expr_as(Expr::col(sales_daily::Column::Day), Alias::new("day"))
        .expr_as(
            Expr::col(sales_daily::Column::ProductId),
            Alias::new("product_id"),
        )
        .expr_as(
            Expr::col(sales_daily::Column::SupplierKey),
            Alias::new("supplier_id"),
        )
        .expr_as(
            Expr::col(sales_daily::Column::Currency),
            Alias::new("currency"),
        )
        .expr_as(
            Expr::col(sales_daily::Column::Quantity),
            Alias::new("quantity"),
        )
        .expr_as(
            Expr::col(sales_daily::Column::RevenueMinor),
            Alias::new("revenue_minor"),
        )
        .expr_as(Expr::col(sales_daily::Column::Orders), Alias::new("orders"))
        .from(sales_daily::Entity)
        .cond_where(sales_daily_visible(principal))
        .and_where(Expr::col(sales_daily::Column::Day).gte(first))
        .and_where(Expr::col(sales_daily::Column::Day).lt(end));
    let mut pending = Query::select();
    pending
        .expr_as(Expr::col(sales_pending::Column::Day), Alias::new("day"))
        .expr_as(
            Expr::col(sales_pending::Column::ProductId),
            Alias::new("product_id"),
        )
        .expr_as(
            Expr::col(sales_pending::Column::SupplierOrganizationId).if_null(none),
            Alias::new("supplier_id"),
        )
        .expr_as(
            Expr::col(sales_pending::Column::Currency),
            Alias::new("currency"),
        )
        .expr_as(
            Expr::col(sales_pending::Column::Quantity),
            Alias::new("quantity"),
        )
        .expr_as(
            Expr::col(sales_pending::Column::RevenueMinor),
            Alias::new("revenue_minor"),
        )
        .expr_as(
            Expr::col(sales_pending::Column::Orders),
            Alias::new("orders"),
        )
        .from(sales_pending::Entity)
        .cond_where(sales_pending_visible(principal))
        .and_where(Expr::col(sales_pending::Column::Day).gte(first))
        .and_where(Expr::col(sales_pending::Column::Day).lt(end));
    [folded, pending]
}

/// Sales straight from the order lines placed within `ranges`, one row per order, product and
/// supplier (so that summing `orders` counts each order once).
fn line_sales(
    principal: &Principal,
    backend: DbBackend,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
    none: Uuid,
) -> SelectStatement {
    let day = rollup::placed_day(backend);
    let placed_at = || Expr::col((order::Entity, order::Column::PlacedAt));
    let mut within = Condition::any();
    for (from, to) in ranges {
        within = within.add(placed_at().gte(*from).and(placed_at().lt(*to)));
    }
    let mut query = Query::select();
    query
        .expr_as(Expr::cust(day), Alias::new("day"))
        .expr_as(
            Expr::col((order_line::Entity, order_line::Column::ProductId)),
            Alias::new("product_id"),
        )
        .expr_as(
            Expr::col((
                order_line::Entity,
                order_line::Column::SupplierOrganizationId,
            ))
            .if_null(none),
            Alias::new("supplier_id"),
        )
        .expr_as(
            Expr::col((order::Entity, order::Column::Currency)),
            Alias::new("currency"),
        )
        .expr_as(
            Expr::cust("CAST(SUM(order_line.quantity) AS BIGINT)"),
            Alias::new("quantity"),
        )
        .expr_as(
            Expr::cust("CAST(SUM(order_line.line_total_minor) AS BIGINT)"),
            Alias::new("revenue_minor"),
        )
        .expr_as(Expr::cust("CAST(1 AS BIGINT)"), Alias::new("orders"))
        .from(order_line::Entity)
        .inner_join(
            order::Entity,
            Expr::col((order::Entity, order::Column::Id))
                .equals((order_line::Entity, order_line::Column::OrderId)),
        )
        .cond_where(sold_line_visible(principal))
        .and_where(Expr::col((order::Entity, order::Column::Status)).is_in([
            OrderStatus::Placed,
            OrderStatus::Fulfilled,
            OrderStatus::Closed,
        ]))
        .cond_where(within)
        .add_group_by([
            Expr::col((order::Entity, order::Column::Id)),
            Expr::cust(day),
            Expr::col((order_line::Entity, order_line::Column::ProductId)),
            Expr::col((
                order_line::Entity,
                order_line::Column::SupplierOrganizationId,
            )),
            Expr::col((order::Entity, order::Column::Currency)),
        ]);
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    type Range = (DateTime<Utc>, DateTime<Utc>);

    fn split(from: &str, to: &str) -> (Option<(NaiveDate, NaiveDate)>, Vec<Range>) {
        let period = Period::new(at(from), at(to)).expect("period");
        (period.whole_days(), period.partial_days())
    }

    #[test]
    fn midnight_to_midnight_is_whole_days_only() {
        assert_eq!(
            split("2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z"),
            (Some((day("2026-03-01"), day("2026-03-04"))), vec![])
        );
    }

    #[test]
    fn partial_ends_are_read_from_the_lines() {
        assert_eq!(
            split("2026-03-01T23:59:59.999Z", "2026-03-04T00:00:00.001Z"),
            (
                Some((day("2026-03-02"), day("2026-03-04"))),
                vec![
                    (at("2026-03-01T23:59:59.999Z"), at("2026-03-02T00:00:00Z")),
                    (at("2026-03-04T00:00:00Z"), at("2026-03-04T00:00:00.001Z")),
                ]
            )
        );
    }

    #[test]
    fn a_period_within_one_day_or_across_one_midnight_has_no_whole_day() {
        for (from, to) in [
            ("2026-03-01T08:00:00Z", "2026-03-01T09:00:00Z"),
            ("2026-03-01T00:00:00Z", "2026-03-01T23:59:59Z"),
            ("2026-03-01T12:00:00Z", "2026-03-02T12:00:00Z"),
        ] {
            assert_eq!(split(from, to), (None, vec![(at(from), at(to))]));
        }
    }

    #[test]
    fn offsets_count_in_utc() {
        // 01:00 at +02:00 is 23:00 UTC the day before.
        assert_eq!(
            split("2026-03-02T01:00:00+02:00", "2026-03-03T00:00:00Z").0,
            Some((day("2026-03-02"), day("2026-03-03")))
        );
    }
}
