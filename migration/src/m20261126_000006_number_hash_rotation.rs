//! Number-hash key rotation: each used number keeps its not-after, so the hub knows how long an older
//! hash key must stay in the ring.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NumberUse {
    Table,
    HashKeyId,
    NotAfter,
}

const INDEX: &str = "ix_number_use_key_not_after";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Null for numbers used before this migration: their lifetime is unknown, so their key stays.
        manager
            .alter_table(
                Table::alter()
                    .table(NumberUse::Table)
                    .add_column(timestamp_with_time_zone_null(NumberUse::NotAfter))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(NumberUse::Table)
                    .col(NumberUse::HashKeyId)
                    .col(NumberUse::NotAfter)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(NumberUse::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(NumberUse::Table)
                    .drop_column(NumberUse::NotAfter)
                    .to_owned(),
            )
            .await
    }
}
