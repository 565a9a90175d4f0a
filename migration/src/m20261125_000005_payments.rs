//! Payment requests, single-use numbers and payment evidence; payments learn their request, card and
//! terminal.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, foreign_key, index};

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
                    .col(uuid(PaymentRequest::Id).primary_key())
                    .col(uuid(PaymentRequest::OwnerOrganizationId))
                    .col(uuid(PaymentRequest::OrderId))
                    .col(uuid(PaymentRequest::DeviceId))
                    .col(big_integer(PaymentRequest::AmountMinor))
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
                    .col(timestamp_with_time_zone(PaymentRequest::TapDeadline))
                    .col(timestamp_with_time_zone(PaymentRequest::AcceptanceDeadline))
                    .col(uuid_null(PaymentRequest::PaymentId))
                    .col(timestamp_with_time_zone(PaymentRequest::CreatedAt))
                    .col(timestamp_with_time_zone(PaymentRequest::UpdatedAt))
                    .check(Expr::col(PaymentRequest::AmountMinor).gt(0))
                    .foreign_key(&mut foreign_key(
                        "fk_payment_request_order",
                        (PaymentRequest::Table, PaymentRequest::OrderId),
                        (SalesOrder::Table, SalesOrder::Id),
                        OnDelete::Unstated,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_payment_request_device",
                        (PaymentRequest::Table, PaymentRequest::DeviceId),
                        (Device::Table, Device::Id),
                        OnDelete::Unstated,
                    ))
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
            .create_index(index(
                "ix_payment_request_device",
                PaymentRequest::Table,
                [PaymentRequest::DeviceId, PaymentRequest::CreatedAt],
            ))
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
                    .col(integer(NumberUse::HashKeyId))
                    .col(uuid(NumberUse::CardId))
                    .col(big_integer(NumberUse::Sequence))
                    .col(uuid(NumberUse::PaymentId))
                    .col(timestamp_with_time_zone(NumberUse::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_number_use_card_sequence",
                    NumberUse::Table,
                    [NumberUse::CardId, NumberUse::Sequence],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentEvidence::Table)
                    .col(uuid(PaymentEvidence::Id).primary_key())
                    .col(uuid(PaymentEvidence::RequestId))
                    .col(uuid_null(PaymentEvidence::OwnerOrganizationId))
                    .col(uuid_null(PaymentEvidence::IssuerOrganizationId))
                    .col(uuid_null(PaymentEvidence::PaymentId))
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
                    .col(boolean(PaymentEvidence::Replay))
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
                    .col(integer(PaymentEvidence::HashKeyId))
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
                    .col(uuid(PaymentEvidence::DeviceId))
                    .col(uuid_null(PaymentEvidence::JwtId))
                    .col(big_integer(PaymentEvidence::IssuerKeyId))
                    .col(timestamp_with_time_zone(PaymentEvidence::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_payment_evidence_request",
                PaymentEvidence::Table,
                [PaymentEvidence::RequestId],
            ))
            .await?;
        for column in [Payment::RequestId, Payment::CardId, Payment::DeviceId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payment::Table)
                        .add_column(uuid_null(column))
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
