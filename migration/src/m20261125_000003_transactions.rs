//! Financial transactions (orders with lines and parties, invoices, payments), idempotency records and the
//! event outbox.

use sea_orm_migration::prelude::*;

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

fn fk(
    name: &str,
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::NoAction)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SalesOrder::Table)
                    .col(
                        ColumnDef::new(SalesOrder::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::OwnerOrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SalesOrder::CustomerId).uuid().null())
                    .col(ColumnDef::new(SalesOrder::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(SalesOrder::Currency)
                            .string_len(3)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::TotalMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::PaidMinor)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::Version)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SalesOrder::PlacedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .check(Expr::col(SalesOrder::TotalMinor).gte(0))
                    .check(Expr::col(SalesOrder::PaidMinor).gte(0))
                    .check(Expr::col(SalesOrder::PaidMinor).lte(Expr::col(SalesOrder::TotalMinor)))
                    .foreign_key(&mut fk(
                        "fk_order_owner",
                        (SalesOrder::Table, SalesOrder::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_order_customer",
                        (SalesOrder::Table, SalesOrder::CustomerId),
                        (Customer::Table, Customer::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderLine::Table)
                    .col(
                        ColumnDef::new(OrderLine::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OrderLine::OrderId).uuid().not_null())
                    .col(ColumnDef::new(OrderLine::LineNumber).integer().not_null())
                    .col(ColumnDef::new(OrderLine::ProductId).uuid().not_null())
                    .col(
                        ColumnDef::new(OrderLine::SupplierOrganizationId)
                            .uuid()
                            .null(),
                    )
                    .col(ColumnDef::new(OrderLine::Quantity).integer().not_null())
                    .col(
                        ColumnDef::new(OrderLine::UnitPriceMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OrderLine::LineTotalMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .check(Expr::col(OrderLine::Quantity).gt(0))
                    .foreign_key(&mut fk(
                        "fk_order_line_order",
                        (OrderLine::Table, OrderLine::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_order_line_product",
                        (OrderLine::Table, OrderLine::ProductId),
                        (Product::Table, Product::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_order_line_supplier",
                        (OrderLine::Table, OrderLine::SupplierOrganizationId),
                        (Organization::Table, Organization::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderParty::Table)
                    .col(ColumnDef::new(OrderParty::OrderId).uuid().not_null())
                    .col(ColumnDef::new(OrderParty::OrganizationId).uuid().not_null())
                    .primary_key(
                        Index::create()
                            .col(OrderParty::OrderId)
                            .col(OrderParty::OrganizationId),
                    )
                    .foreign_key(&mut fk(
                        "fk_order_party_order",
                        (OrderParty::Table, OrderParty::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_order_party_organization",
                        (OrderParty::Table, OrderParty::OrganizationId),
                        (Organization::Table, Organization::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invoice::Table)
                    .col(ColumnDef::new(Invoice::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Invoice::OwnerOrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Invoice::OrderId).uuid().not_null())
                    .col(
                        ColumnDef::new(Invoice::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Invoice::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Invoice::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Invoice::Version)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(Invoice::IssuedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Invoice::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Expr::col(Invoice::AmountMinor).gt(0))
                    .foreign_key(&mut fk(
                        "fk_invoice_owner",
                        (Invoice::Table, Invoice::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_invoice_order",
                        (Invoice::Table, Invoice::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payment::Table)
                    .col(ColumnDef::new(Payment::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Payment::OwnerOrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Payment::OrderId).uuid().not_null())
                    .col(ColumnDef::new(Payment::InvoiceId).uuid().null())
                    .col(
                        ColumnDef::new(Payment::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Payment::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Payment::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Payment::IssuerOrganizationId).uuid().null())
                    .col(
                        ColumnDef::new(Payment::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Payment::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Expr::col(Payment::AmountMinor).gt(0))
                    .foreign_key(&mut fk(
                        "fk_payment_owner",
                        (Payment::Table, Payment::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_payment_order",
                        (Payment::Table, Payment::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_payment_invoice",
                        (Payment::Table, Payment::InvoiceId),
                        (Invoice::Table, Invoice::Id),
                    ))
                    .foreign_key(&mut fk(
                        "fk_payment_issuer",
                        (Payment::Table, Payment::IssuerOrganizationId),
                        (Organization::Table, Organization::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecord::Table)
                    .col(ColumnDef::new(IdempotencyRecord::ScopeId).uuid().not_null())
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
                    .col(
                        ColumnDef::new(IdempotencyRecord::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyRecord::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
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
                    .col(
                        ColumnDef::new(Event::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Event::Id).uuid().not_null().unique_key())
                    .col(
                        ColumnDef::new(Event::Position)
                            .big_integer()
                            .null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Event::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(Event::Family).string_len(16).not_null())
                    .col(ColumnDef::new(Event::RecordType).string_len(32).not_null())
                    .col(ColumnDef::new(Event::RecordId).uuid().not_null())
                    .col(ColumnDef::new(Event::Status).string_len(32).not_null())
                    .col(ColumnDef::new(Event::OwnerOrganizationId).uuid().not_null())
                    .col(
                        ColumnDef::new(Event::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventRecipient::Table)
                    .col(ColumnDef::new(EventRecipient::EventId).uuid().not_null())
                    .col(
                        ColumnDef::new(EventRecipient::OrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EventRecipient::EventId)
                            .col(EventRecipient::OrganizationId),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes = [
            Index::create()
                .name("ix_order_owner")
                .table(SalesOrder::Table)
                .col(SalesOrder::OwnerOrganizationId)
                .col(SalesOrder::CreatedAt)
                .to_owned(),
            Index::create()
                .name("ux_order_line_number")
                .table(OrderLine::Table)
                .col(OrderLine::OrderId)
                .col(OrderLine::LineNumber)
                .unique()
                .to_owned(),
            Index::create()
                .name("ix_order_line_product")
                .table(OrderLine::Table)
                .col(OrderLine::ProductId)
                .to_owned(),
            Index::create()
                .name("ix_order_party_organization")
                .table(OrderParty::Table)
                .col(OrderParty::OrganizationId)
                .to_owned(),
            Index::create()
                .name("ix_invoice_order")
                .table(Invoice::Table)
                .col(Invoice::OrderId)
                .to_owned(),
            Index::create()
                .name("ix_payment_order")
                .table(Payment::Table)
                .col(Payment::OrderId)
                .to_owned(),
            Index::create()
                .name("ix_idempotency_expiry")
                .table(IdempotencyRecord::Table)
                .col(IdempotencyRecord::ExpiresAt)
                .to_owned(),
            Index::create()
                .name("ix_event_recipient_organization")
                .table(EventRecipient::Table)
                .col(EventRecipient::OrganizationId)
                .col(EventRecipient::EventId)
                .to_owned(),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EventRecipient::Table.into_iden(),
            Event::Table.into_iden(),
            IdempotencyRecord::Table.into_iden(),
            Payment::Table.into_iden(),
            Invoice::Table.into_iden(),
            OrderParty::Table.into_iden(),
            OrderLine::Table.into_iden(),
            SalesOrder::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
