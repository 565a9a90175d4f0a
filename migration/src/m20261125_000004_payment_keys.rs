//! Payment-mode master data: issuer keys of financial providers and the cards they issue.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum IssuerKey {
    Table,
    Id,
    OwnerOrganizationId,
    KeyId,
    PublicKey,
    Prefix,
    NotAfter,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Card {
    Table,
    Id,
    IssuerOrganizationId,
    PublicKey,
    Status,
    LastFour,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IssuerKey::Table)
                    .col(
                        ColumnDef::new(IssuerKey::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IssuerKey::OwnerOrganizationId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IssuerKey::KeyId).big_integer().not_null())
                    .col(
                        ColumnDef::new(IssuerKey::PublicKey)
                            .binary_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(IssuerKey::Prefix).string_len(12).not_null())
                    .col(
                        ColumnDef::new(IssuerKey::NotAfter)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IssuerKey::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(IssuerKey::Version)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(IssuerKey::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IssuerKey::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_issuer_key_owner")
                            .from(IssuerKey::Table, IssuerKey::OwnerOrganizationId)
                            .to(Organization::Table, Organization::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_issuer_key_owner_key_id")
                    .table(IssuerKey::Table)
                    .col(IssuerKey::OwnerOrganizationId)
                    .col(IssuerKey::KeyId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Card::Table)
                    .col(ColumnDef::new(Card::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Card::IssuerOrganizationId).uuid().not_null())
                    .col(ColumnDef::new(Card::PublicKey).binary_len(32).not_null())
                    .col(ColumnDef::new(Card::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Card::LastFour).string_len(4).not_null())
                    .col(
                        ColumnDef::new(Card::Version)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(Card::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Card::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_card_issuer")
                            .from(Card::Table, Card::IssuerOrganizationId)
                            .to(Organization::Table, Organization::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_card_issuer")
                    .table(Card::Table)
                    .col(Card::IssuerOrganizationId)
                    .col(Card::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Card::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(IssuerKey::Table).to_owned())
            .await
    }
}
