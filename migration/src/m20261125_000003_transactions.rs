//! Financial transactions (orders with lines and parties, invoices, payments), idempotency records and the
//! event outbox.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, VersionedColumns, create_indexes, drop_tables, foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Customer {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Product {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SalesOrder {
    Table,
    Id,
    OwnerOrganizationId,
    CustomerId,
    Status,
    Currency,
    TotalMinor,
    PaidMinor,
    Version,
    CreatedAt,
    UpdatedAt,
    PlacedAt,
}

#[derive(DeriveIden)]
enum OrderLine {
    Table,
    Id,
    OrderId,
    LineNumber,
    ProductId,
    SupplierOrganizationId,
    Quantity,
    UnitPriceMinor,
    LineTotalMinor,
}

#[derive(DeriveIden)]
enum OrderParty {
    Table,
    OrderId,
    OrganizationId,
}

#[derive(DeriveIden)]
enum Invoice {
    Table,
    Id,
    OwnerOrganizationId,
    OrderId,
    AmountMinor,
    Currency,
    Status,
    Version,
    IssuedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Payment {
    Table,
    Id,
    OwnerOrganizationId,
    OrderId,
    InvoiceId,
    AmountMinor,
    Currency,
    Status,
    IssuerOrganizationId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    ScopeId,
    Operation,
    Key,
    Fingerprint,
    Result,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)] // `event_type` is the column's name
enum Event {
    Table,
    Seq,
    Id,
    Position,
    EventType,
    Family,
    RecordType,
    RecordId,
    Status,
    OwnerOrganizationId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum EventRecipient {
    Table,
    EventId,
    OrganizationId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SalesOrder::Table)
                    .col(uuid(SalesOrder::Id).primary_key())
                    .col(uuid(SalesOrder::OwnerOrganizationId))
                    .col(uuid_null(SalesOrder::CustomerId))
                    .col(ColumnDef::new(SalesOrder::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(SalesOrder::Currency)
                            .string_len(3)
                            .not_null(),
                    )
                    .col(big_integer(SalesOrder::TotalMinor))
                    .col(big_integer(SalesOrder::PaidMinor).default(0))
                    .versioned(
                        SalesOrder::Version,
                        SalesOrder::CreatedAt,
                        SalesOrder::UpdatedAt,
                    )
                    .col(timestamp_with_time_zone_null(SalesOrder::PlacedAt))
                    .check(Expr::col(SalesOrder::TotalMinor).gte(0))
                    .check(Expr::col(SalesOrder::PaidMinor).gte(0))
                    .check(Expr::col(SalesOrder::PaidMinor).lte(Expr::col(SalesOrder::TotalMinor)))
                    .foreign_key(&mut foreign_key(
                        "fk_order_owner",
                        (SalesOrder::Table, SalesOrder::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_order_customer",
                        (SalesOrder::Table, SalesOrder::CustomerId),
                        (Customer::Table, Customer::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderLine::Table)
                    .col(uuid(OrderLine::Id).primary_key())
                    .col(uuid(OrderLine::OrderId))
                    .col(integer(OrderLine::LineNumber))
                    .col(uuid(OrderLine::ProductId))
                    .col(uuid_null(OrderLine::SupplierOrganizationId))
                    .col(integer(OrderLine::Quantity))
                    .col(big_integer(OrderLine::UnitPriceMinor))
                    .col(big_integer(OrderLine::LineTotalMinor))
                    .check(Expr::col(OrderLine::Quantity).gt(0))
                    .foreign_key(&mut foreign_key(
                        "fk_order_line_order",
                        (OrderLine::Table, OrderLine::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_order_line_product",
                        (OrderLine::Table, OrderLine::ProductId),
                        (Product::Table, Product::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_order_line_supplier",
                        (OrderLine::Table, OrderLine::SupplierOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderParty::Table)
                    .col(uuid(OrderParty::OrderId))
                    .col(uuid(OrderParty::OrganizationId))
                    .primary_key(
                        Index::create()
                            .col(OrderParty::OrderId)
                            .col(OrderParty::OrganizationId),
                    )
                    .foreign_key(&mut foreign_key(
                        "fk_order_party_order",
                        (OrderParty::Table, OrderParty::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_order_party_organization",
                        (OrderParty::Table, OrderParty::OrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invoice::Table)
                    .col(uuid(Invoice::Id).primary_key())
                    .col(uuid(Invoice::OwnerOrganizationId))
                    .col(uuid(Invoice::OrderId))
                    .col(big_integer(Invoice::AmountMinor))
                    .col(ColumnDef::new(Invoice::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Invoice::Status).string_len(16).not_null())
                    .col(integer(Invoice::Version).default(1))
                    .col(timestamp_with_time_zone(Invoice::IssuedAt))
                    .col(timestamp_with_time_zone(Invoice::UpdatedAt))
                    .check(Expr::col(Invoice::AmountMinor).gt(0))
                    .foreign_key(&mut foreign_key(
                        "fk_invoice_owner",
                        (Invoice::Table, Invoice::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_invoice_order",
                        (Invoice::Table, Invoice::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payment::Table)
                    .col(uuid(Payment::Id).primary_key())
                    .col(uuid(Payment::OwnerOrganizationId))
                    .col(uuid(Payment::OrderId))
                    .col(uuid_null(Payment::InvoiceId))
                    .col(big_integer(Payment::AmountMinor))
                    .col(ColumnDef::new(Payment::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Payment::Status).string_len(16).not_null())
                    .col(uuid_null(Payment::IssuerOrganizationId))
                    .col(timestamp_with_time_zone(Payment::CreatedAt))
                    .col(timestamp_with_time_zone(Payment::UpdatedAt))
                    .check(Expr::col(Payment::AmountMinor).gt(0))
                    .foreign_key(&mut foreign_key(
                        "fk_payment_owner",
                        (Payment::Table, Payment::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_payment_order",
                        (Payment::Table, Payment::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_payment_invoice",
                        (Payment::Table, Payment::InvoiceId),
                        (Invoice::Table, Invoice::Id),
                        OnDelete::NoAction,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_payment_issuer",
                        (Payment::Table, Payment::IssuerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::NoAction,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecord::Table)
                    .col(uuid(IdempotencyRecord::ScopeId))
                    .col(
                        ColumnDef::new(IdempotencyRecord::Operation)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyRecord::Key)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyRecord::Fingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(IdempotencyRecord::Result).json().null())
                    .col(timestamp_with_time_zone(IdempotencyRecord::CreatedAt))
                    .col(timestamp_with_time_zone(IdempotencyRecord::ExpiresAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyRecord::ScopeId)
                            .col(IdempotencyRecord::Operation)
                            .col(IdempotencyRecord::Key),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Event::Table)
                    .col(big_integer(Event::Seq).auto_increment().primary_key())
                    .col(uuid(Event::Id).unique_key())
                    .col(big_integer_null(Event::Position).unique_key())
                    .col(ColumnDef::new(Event::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(Event::Family).string_len(16).not_null())
                    .col(ColumnDef::new(Event::RecordType).string_len(32).not_null())
                    .col(uuid(Event::RecordId))
                    .col(ColumnDef::new(Event::Status).string_len(32).not_null())
                    .col(uuid(Event::OwnerOrganizationId))
                    .col(timestamp_with_time_zone(Event::OccurredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventRecipient::Table)
                    .col(uuid(EventRecipient::EventId))
                    .col(uuid(EventRecipient::OrganizationId))
                    .primary_key(
                        Index::create()
                            .col(EventRecipient::EventId)
                            .col(EventRecipient::OrganizationId),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes = [
            index(
                "ix_order_owner",
                SalesOrder::Table,
                [SalesOrder::OwnerOrganizationId, SalesOrder::CreatedAt],
            ),
            index(
                "ux_order_line_number",
                OrderLine::Table,
                [OrderLine::OrderId, OrderLine::LineNumber],
            )
            .unique()
            .to_owned(),
            index(
                "ix_order_line_product",
                OrderLine::Table,
                [OrderLine::ProductId],
            ),
            index(
                "ix_order_party_organization",
                OrderParty::Table,
                [OrderParty::OrganizationId],
            ),
            index("ix_invoice_order", Invoice::Table, [Invoice::OrderId]),
            index("ix_payment_order", Payment::Table, [Payment::OrderId]),
            index(
                "ix_idempotency_expiry",
                IdempotencyRecord::Table,
                [IdempotencyRecord::ExpiresAt],
            ),
            index(
                "ix_event_recipient_organization",
                EventRecipient::Table,
                [EventRecipient::OrganizationId, EventRecipient::EventId],
            ),
        ];
        create_indexes(manager, indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            [
                EventRecipient::Table.into_iden(),
                Event::Table.into_iden(),
                IdempotencyRecord::Table.into_iden(),
                Payment::Table.into_iden(),
                Invoice::Table.into_iden(),
                OrderParty::Table.into_iden(),
                OrderLine::Table.into_iden(),
                SalesOrder::Table.into_iden(),
            ],
        )
        .await
    }
}
