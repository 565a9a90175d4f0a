//! Capture, void, refund and clearing batches.
//!
//! - `payment` gains what was captured and refunded of it, and when it was captured or released.
//! - `clearing_batch`: the captures and refunds between one merchant and one financial provider in one
//!   currency, OPEN until closed, then CLOSED with its frozen manifest, then CONFIRMED by the provider's
//!   signature. At most one OPEN batch per merchant, provider and currency (a partial unique index).
//! - `clearing_manifest`: a closed batch's canonical manifest (its digest is on the batch).
//! - `clearing_entry`: one capture or one refund, in exactly one batch. A payment has at most one
//!   capture (a partial unique index); a refund is its own entry with its own reason.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, create_indexes, foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Payment {
    Table,
    Id,
    CapturedMinor,
    RefundedMinor,
    CapturedAt,
    ReleasedAt,
}

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ClearingBatch {
    Table,
    Id,
    MerchantOrganizationId,
    ProviderOrganizationId,
    Currency,
    Status,
    OpenedAt,
    ClosedAt,
    EntryCount,
    CapturedMinor,
    RefundedMinor,
    ManifestSha256,
    ConfirmedAt,
    ConfirmationKeyId,
    ConfirmationSignature,
}

/// A closed batch's manifest, apart from the batch so that listing batches never reads it.
#[derive(DeriveIden)]
enum ClearingManifest {
    Table,
    BatchId,
    Manifest,
}

#[derive(DeriveIden)]
enum ClearingEntry {
    Table,
    Id,
    BatchId,
    PaymentId,
    Kind,
    AmountMinor,
    Currency,
    MerchantOrganizationId,
    ProviderOrganizationId,
    Reason,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [
            big_integer(Payment::CapturedMinor).default(0).to_owned(),
            big_integer(Payment::RefundedMinor).default(0).to_owned(),
            timestamp_with_time_zone_null(Payment::CapturedAt).to_owned(),
            timestamp_with_time_zone_null(Payment::ReleasedAt).to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payment::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ClearingBatch::Table)
                    .col(uuid(ClearingBatch::Id).primary_key())
                    .col(uuid(ClearingBatch::MerchantOrganizationId))
                    .col(uuid(ClearingBatch::ProviderOrganizationId))
                    .col(string_len(ClearingBatch::Currency, 3))
                    .col(string_len(ClearingBatch::Status, 16))
                    .col(timestamp_with_time_zone(ClearingBatch::OpenedAt))
                    .col(timestamp_with_time_zone_null(ClearingBatch::ClosedAt))
                    .col(big_integer_null(ClearingBatch::EntryCount))
                    .col(big_integer_null(ClearingBatch::CapturedMinor))
                    .col(big_integer_null(ClearingBatch::RefundedMinor))
                    .col(string_len_null(ClearingBatch::ManifestSha256, 64))
                    .col(timestamp_with_time_zone_null(ClearingBatch::ConfirmedAt))
                    .col(big_integer_null(ClearingBatch::ConfirmationKeyId))
                    .col(blob_null(ClearingBatch::ConfirmationSignature))
                    .foreign_key(&mut foreign_key(
                        "fk_clearing_batch_merchant",
                        (ClearingBatch::Table, ClearingBatch::MerchantOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::Restrict,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_clearing_batch_provider",
                        (ClearingBatch::Table, ClearingBatch::ProviderOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClearingEntry::Table)
                    .col(uuid(ClearingEntry::Id).primary_key())
                    .col(uuid(ClearingEntry::BatchId))
                    .col(uuid(ClearingEntry::PaymentId))
                    .col(string_len(ClearingEntry::Kind, 16))
                    .col(big_integer(ClearingEntry::AmountMinor))
                    .col(string_len(ClearingEntry::Currency, 3))
                    .col(uuid(ClearingEntry::MerchantOrganizationId))
                    .col(uuid(ClearingEntry::ProviderOrganizationId))
                    .col(text_null(ClearingEntry::Reason))
                    .col(timestamp_with_time_zone(ClearingEntry::CreatedAt))
                    .check(Expr::col(ClearingEntry::AmountMinor).gt(0))
                    .foreign_key(&mut foreign_key(
                        "fk_clearing_entry_batch",
                        (ClearingEntry::Table, ClearingEntry::BatchId),
                        (ClearingBatch::Table, ClearingBatch::Id),
                        OnDelete::Restrict,
                    ))
                    .foreign_key(&mut foreign_key(
                        "fk_clearing_entry_payment",
                        (ClearingEntry::Table, ClearingEntry::PaymentId),
                        (Payment::Table, Payment::Id),
                        OnDelete::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClearingManifest::Table)
                    .col(uuid(ClearingManifest::BatchId).primary_key())
                    .col(text(ClearingManifest::Manifest))
                    .foreign_key(&mut foreign_key(
                        "fk_clearing_manifest_batch",
                        (ClearingManifest::Table, ClearingManifest::BatchId),
                        (ClearingBatch::Table, ClearingBatch::Id),
                        OnDelete::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        let connection = manager.get_connection();
        for statement in [
            // One open batch per merchant, provider and currency: the one every capture and refund joins.
            "CREATE UNIQUE INDEX ux_clearing_batch_open ON clearing_batch \
             (merchant_organization_id, provider_organization_id, currency) WHERE status = 'OPEN'",
            // One capture per payment, by the database.
            "CREATE UNIQUE INDEX ux_clearing_entry_capture ON clearing_entry (payment_id) \
             WHERE kind = 'CAPTURE'",
            // The expiry job reads the oldest authorizations only.
            "CREATE INDEX ix_payment_authorized_at ON payment (created_at) WHERE status = 'AUTHORIZED'",
        ] {
            connection.execute_unprepared(statement).await?;
        }
        create_indexes(
            manager,
            [
                // The manifest lists a batch's entries by id.
                index(
                    "ix_clearing_entry_batch",
                    ClearingEntry::Table,
                    [ClearingEntry::BatchId, ClearingEntry::Id],
                ),
                index(
                    "ix_clearing_entry_payment",
                    ClearingEntry::Table,
                    [ClearingEntry::PaymentId],
                ),
                // Each side lists its batches, newest first.
                index(
                    "ix_clearing_batch_merchant",
                    ClearingBatch::Table,
                    [
                        ClearingBatch::MerchantOrganizationId,
                        ClearingBatch::OpenedAt,
                    ],
                ),
                index(
                    "ix_clearing_batch_provider",
                    ClearingBatch::Table,
                    [
                        ClearingBatch::ProviderOrganizationId,
                        ClearingBatch::OpenedAt,
                    ],
                ),
                // The scheduled close reads the oldest open batches.
                index(
                    "ix_clearing_batch_status",
                    ClearingBatch::Table,
                    [ClearingBatch::Status, ClearingBatch::OpenedAt],
                ),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ClearingManifest::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClearingEntry::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClearingBatch::Table).to_owned())
            .await?;
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX ix_payment_authorized_at")
            .await?;
        for column in [
            Payment::ReleasedAt,
            Payment::CapturedAt,
            Payment::RefundedMinor,
            Payment::CapturedMinor,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payment::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
