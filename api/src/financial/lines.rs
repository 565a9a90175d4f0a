//! An order's lines: validated, priced from the catalogue the caller may see, written, and
//! repriced while the order is a draft.

use std::collections::{BTreeSet, HashMap};

use entities::{order, order_line, order_party, product};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::service::NewOrderLine;
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    policy::{Need, visible},
};

const MAX_LINES: usize = 100;
const MAX_QUANTITY: i32 = 1_000_000;

/// A line priced from the catalogue.
pub(super) struct PricedLine {
    pub(super) product_id: Uuid,
    pub(super) supplier: Option<Uuid>,
    pub(super) quantity: i32,
    pub(super) unit_price_minor: i64,
    pub(super) line_total_minor: i64,
}

pub(super) fn validate_lines(lines: &[NewOrderLine]) -> ApiResult<()> {
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
pub(super) async fn price_lines(
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

pub(super) fn order_total(lines: &[PricedLine]) -> ApiResult<i64> {
    lines.iter().try_fold(0i64, |sum, line| {
        sum.checked_add(line.line_total_minor)
            .ok_or_else(|| ApiError::validation("lines", "the order total does not fit in 64 bits"))
    })
}

/// Writes the lines and the parties they imply (suppliers other than the owner). Returns the parties.
pub(super) async fn write_lines(
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
pub(super) async fn reprice(
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
