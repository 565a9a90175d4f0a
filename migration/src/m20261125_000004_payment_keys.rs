//! Payment-mode master data: issuer keys of financial providers and the cards they issue.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, VersionedColumns, foreign_key, index};

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
                    .col(uuid(IssuerKey::Id).primary_key())
                    .col(uuid(IssuerKey::OwnerOrganizationId))
                    .col(big_integer(IssuerKey::KeyId))
                    .col(
                        ColumnDef::new(IssuerKey::PublicKey)
                            .binary_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(IssuerKey::Prefix).string_len(12).not_null())
                    .col(timestamp_with_time_zone(IssuerKey::NotAfter))
                    .col(ColumnDef::new(IssuerKey::Status).string_len(16).not_null())
                    .versioned(
                        IssuerKey::Version,
                        IssuerKey::CreatedAt,
                        IssuerKey::UpdatedAt,
                    )
                    .foreign_key(&mut foreign_key(
                        "fk_issuer_key_owner",
                        (IssuerKey::Table, IssuerKey::OwnerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::Unstated,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_issuer_key_owner_key_id",
                    IssuerKey::Table,
                    [IssuerKey::OwnerOrganizationId, IssuerKey::KeyId],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Card::Table)
                    .col(uuid(Card::Id).primary_key())
                    .col(uuid(Card::IssuerOrganizationId))
                    .col(ColumnDef::new(Card::PublicKey).binary_len(32).not_null())
                    .col(ColumnDef::new(Card::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Card::LastFour).string_len(4).not_null())
                    .versioned(Card::Version, Card::CreatedAt, Card::UpdatedAt)
                    .foreign_key(&mut foreign_key(
                        "fk_card_issuer",
                        (Card::Table, Card::IssuerOrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::Unstated,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_card_issuer",
                Card::Table,
                [Card::IssuerOrganizationId, Card::CreatedAt],
            ))
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
