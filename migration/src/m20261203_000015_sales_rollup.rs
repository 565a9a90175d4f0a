//! The daily sales roll-up behind `analytics { sales }`, so a year's figure reads a few thousand rows
//! instead of every order line of the year.
//!
//! - `sales_pending`: what an order adds to (placed) or takes from (cancelled) the roll-up, one row per
//!   order, product and supplier, written in the order's own transaction. Writers only insert, so
//!   orders of the same product never wait for each other.
//! - `sales_daily`: the sums per owner, UTC day, product, supplier (nil UUID for none) and currency,
//!   kept by the folder, which moves pending rows into it after commit.
//!
//! The figure reads both in one statement. Orders placed before this migration are summed into
//! `sales_daily` here.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{DbBackend, Statement, prelude::Uuid},
};

use crate::common::{create_indexes, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SalesDaily {
    Table,
    OwnerOrganizationId,
    Day,
    ProductId,
    SupplierKey,
    Currency,
    Quantity,
    RevenueMinor,
    Orders,
}

#[derive(DeriveIden)]
enum SalesPending {
    Table,
    Seq,
    OwnerOrganizationId,
    Day,
    ProductId,
    SupplierOrganizationId,
    Currency,
    Quantity,
    RevenueMinor,
    Orders,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SalesDaily::Table)
                    .col(uuid(SalesDaily::OwnerOrganizationId))
                    .col(date(SalesDaily::Day))
                    .col(uuid(SalesDaily::ProductId))
                    .col(uuid(SalesDaily::SupplierKey))
                    .col(string_len(SalesDaily::Currency, 3))
                    .col(big_integer(SalesDaily::Quantity))
                    .col(big_integer(SalesDaily::RevenueMinor))
                    .col(big_integer(SalesDaily::Orders))
                    .primary_key(
                        Index::create()
                            .col(SalesDaily::OwnerOrganizationId)
                            .col(SalesDaily::Day)
                            .col(SalesDaily::ProductId)
                            .col(SalesDaily::SupplierKey)
                            .col(SalesDaily::Currency),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SalesPending::Table)
                    .col(
                        big_integer(SalesPending::Seq)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(uuid(SalesPending::OwnerOrganizationId))
                    .col(date(SalesPending::Day))
                    .col(uuid(SalesPending::ProductId))
                    .col(uuid_null(SalesPending::SupplierOrganizationId))
                    .col(string_len(SalesPending::Currency, 3))
                    .col(big_integer(SalesPending::Quantity))
                    .col(big_integer(SalesPending::RevenueMinor))
                    .col(big_integer(SalesPending::Orders))
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            [
                // A supplier's figure reads the rows of its products across every owner.
                index(
                    "ix_sales_daily_supplier",
                    SalesDaily::Table,
                    [SalesDaily::SupplierKey, SalesDaily::Day],
                ),
                // The folder takes one owner's oldest contributions.
                index(
                    "ix_sales_pending_owner",
                    SalesPending::Table,
                    [SalesPending::OwnerOrganizationId, SalesPending::Seq],
                ),
            ],
        )
        .await?;
        // The orders placed so far, summed straight into the roll-up.
        let backend = manager.get_database_backend();
        let (day, none) = match backend {
            DbBackend::Postgres => ("CAST(o.placed_at AT TIME ZONE 'UTC' AS DATE)", "$1"),
            // Timestamps are RFC 3339 text in UTC there: the day is the first ten characters.
            _ => ("substr(o.placed_at, 1, 10)", "?"),
        };
        let supplier = format!("COALESCE(l.supplier_organization_id, {none})");
        manager
            .get_connection()
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO sales_daily (owner_organization_id, day, product_id, supplier_key, \
                     currency, quantity, revenue_minor, orders) \
                     SELECT o.owner_organization_id, {day}, l.product_id, {supplier}, o.currency, \
                     SUM(l.quantity), SUM(l.line_total_minor), COUNT(DISTINCT o.id) \
                     FROM order_line l JOIN sales_order o ON o.id = l.order_id \
                     WHERE o.status IN ('PLACED', 'FULFILLED', 'CLOSED') \
                     GROUP BY o.owner_organization_id, {day}, l.product_id, l.supplier_organization_id, \
                     o.currency"
                ),
                [Uuid::nil().into()],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SalesPending::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SalesDaily::Table).to_owned())
            .await
    }
}
