//! Payment requests, single-use numbers and payment evidence; payments learn their request, card and
//! terminal.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentRequest {
    Table,
    Id,
    OwnerOrganizationId,
    OrderId,
    DeviceId,
    AmountMinor,
    Currency,
    Challenge,
    Status,
    TapDeadline,
    AcceptanceDeadline,
    PaymentId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NumberUse {
    Table,
    NumberHash,
    HashKeyId,
    CardId,
    Sequence,
    PaymentId,
    UsedAt,
}

#[derive(DeriveIden)]
enum PaymentEvidence {
    Table,
    Id,
    RequestId,
    OwnerOrganizationId,
    IssuerOrganizationId,
    PaymentId,
    Outcome,
    DeclineReason,
    Replay,
    RedactedToken,
    NumberHash,
    HashKeyId,
    CardSignature,
    SignedFields,
    DeviceId,
    JwtId,
    IssuerKeyId,
    RecordedAt,
}

#[derive(DeriveIden)]
enum Payment {
    Table,
    RequestId,
    CardId,
    DeviceId,
    Flag,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SalesOrder {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Device {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PaymentRequest::Table)
                    .col(
                        ColumnDef::new(PaymentRequest::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::OwnerOrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PaymentRequest::OrderId).uuid().not_null())
                    .col(ColumnDef::new(PaymentRequest::DeviceId).uuid().not_null())
                    .col(
                        ColumnDef::new(PaymentRequest::AmountMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::Currency)
                            .string_len(3)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::Challenge)
                            .binary_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::TapDeadline)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::AcceptanceDeadline)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PaymentRequest::PaymentId).uuid().null())
                    .col(
                        ColumnDef::new(PaymentRequest::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentRequest::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Expr::col(PaymentRequest::AmountMinor).gt(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payment_request_order")
                            .from(PaymentRequest::Table, PaymentRequest::OrderId)
                            .to(SalesOrder::Table, SalesOrder::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payment_request_device")
                            .from(PaymentRequest::Table, PaymentRequest::DeviceId)
                            .to(Device::Table, Device::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One open request per order, enforced by the database (partial unique index, PostgreSQL and SQLite).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_payment_request_open_order ON payment_request (order_id) WHERE status = 'OPEN'",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_payment_request_device")
                    .table(PaymentRequest::Table)
                    .col(PaymentRequest::DeviceId)
                    .col(PaymentRequest::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NumberUse::Table)
                    .col(
                        ColumnDef::new(NumberUse::NumberHash)
                            .binary_len(32)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(NumberUse::HashKeyId).integer().not_null())
                    .col(ColumnDef::new(NumberUse::CardId).uuid().not_null())
                    .col(ColumnDef::new(NumberUse::Sequence).big_integer().not_null())
                    .col(ColumnDef::new(NumberUse::PaymentId).uuid().not_null())
                    .col(
                        ColumnDef::new(NumberUse::UsedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_number_use_card_sequence")
                    .table(NumberUse::Table)
                    .col(NumberUse::CardId)
                    .col(NumberUse::Sequence)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentEvidence::Table)
                    .col(
                        ColumnDef::new(PaymentEvidence::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PaymentEvidence::RequestId).uuid().not_null())
                    .col(
                        ColumnDef::new(PaymentEvidence::OwnerOrganizationId)
                            .uuid()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::IssuerOrganizationId)
                            .uuid()
                            .null(),
                    )
                    .col(ColumnDef::new(PaymentEvidence::PaymentId).uuid().null())
                    .col(
                        ColumnDef::new(PaymentEvidence::Outcome)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::DeclineReason)
                            .string_len(32)
                            .null(),
                    )
                    .col(ColumnDef::new(PaymentEvidence::Replay).boolean().not_null())
                    .col(
                        ColumnDef::new(PaymentEvidence::RedactedToken)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::NumberHash)
                            .binary_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::HashKeyId)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::CardSignature)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::SignedFields)
                            .binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PaymentEvidence::DeviceId).uuid().not_null())
                    .col(ColumnDef::new(PaymentEvidence::JwtId).uuid().null())
                    .col(
                        ColumnDef::new(PaymentEvidence::IssuerKeyId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PaymentEvidence::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_payment_evidence_request")
                    .table(PaymentEvidence::Table)
                    .col(PaymentEvidence::RequestId)
                    .to_owned(),
            )
            .await?;
        for column in [Payment::RequestId, Payment::CardId, Payment::DeviceId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payment::Table)
                        .add_column(ColumnDef::new(column).uuid().null())
                        .to_owned(),
                )
                .await?;
        }
        // Velocity and device-cap checks aggregate a card's and a device's recent payments.
        for (name, column) in [
            ("ix_payment_card_time", Payment::CardId),
            ("ix_payment_device_time", Payment::DeviceId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Payment::Table)
                        .col(column)
                        .col(Payment::CreatedAt)
                        .to_owned(),
                )
                .await?;
        }
        // Set when something learned later casts doubt on an authorized payment (its issuer key was
        // revoked): flagged for review, never silently voided.
        manager
            .alter_table(
                Table::alter()
                    .table(Payment::Table)
                    .add_column(ColumnDef::new(Payment::Flag).string_len(32).null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Payment::RequestId, Payment::CardId, Payment::DeviceId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payment::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(PaymentEvidence::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NumberUse::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PaymentRequest::Table).to_owned())
            .await
    }
}
