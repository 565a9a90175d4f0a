//! A payment request remembers its declined taps: how many, and the latest reason. A checkout screen
//! following the request shows a decline live (the card was blocked: try another card) instead of
//! waiting for a status that will not come.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentRequest {
    Table,
    DeclineCount,
    LastDeclineReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds columns one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentRequest::Table)
                    .add_column(
                        ColumnDef::new(PaymentRequest::DeclineCount)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentRequest::Table)
                    .add_column(
                        ColumnDef::new(PaymentRequest::LastDeclineReason)
                            .string_len(32)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            PaymentRequest::LastDeclineReason,
            PaymentRequest::DeclineCount,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaymentRequest::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
