//! Indexes for the analytics figures: each aggregate reads one period of one kind of record.

use sea_orm_migration::prelude::*;

use crate::common::{create_indexes, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SalesOrder {
    Table,
    OwnerOrganizationId,
    PlacedAt,
}

#[derive(DeriveIden)]
enum OrderLine {
    Table,
    SupplierOrganizationId,
    OrderId,
}

#[derive(DeriveIden)]
enum PaymentEvidence {
    Table,
    OwnerOrganizationId,
    IssuerOrganizationId,
    RecordedAt,
}

#[derive(DeriveIden)]
enum Delivery {
    Table,
    Status,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum WorkRecord {
    Table,
    EndedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_indexes(
            manager,
            [
                index(
                    "ix_order_owner_placed",
                    SalesOrder::Table,
                    [SalesOrder::OwnerOrganizationId, SalesOrder::PlacedAt],
                ),
                index(
                    "ix_order_line_supplier",
                    OrderLine::Table,
                    [OrderLine::SupplierOrganizationId, OrderLine::OrderId],
                ),
                index(
                    "ix_evidence_owner_time",
                    PaymentEvidence::Table,
                    [
                        PaymentEvidence::OwnerOrganizationId,
                        PaymentEvidence::RecordedAt,
                    ],
                ),
                index(
                    "ix_evidence_issuer_time",
                    PaymentEvidence::Table,
                    [
                        PaymentEvidence::IssuerOrganizationId,
                        PaymentEvidence::RecordedAt,
                    ],
                ),
                index(
                    "ix_delivery_delivered",
                    Delivery::Table,
                    [Delivery::Status, Delivery::DeliveredAt],
                ),
                index(
                    "ix_work_record_ended",
                    WorkRecord::Table,
                    [WorkRecord::EndedAt],
                ),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("ix_order_owner_placed", SalesOrder::Table.into_iden()),
            ("ix_order_line_supplier", OrderLine::Table.into_iden()),
            ("ix_evidence_owner_time", PaymentEvidence::Table.into_iden()),
            (
                "ix_evidence_issuer_time",
                PaymentEvidence::Table.into_iden(),
            ),
            ("ix_delivery_delivered", Delivery::Table.into_iden()),
            ("ix_work_record_ended", WorkRecord::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
