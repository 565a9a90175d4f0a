//! Organizations and their members: who may act for whom.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{OnDelete, foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organization {
    Table,
    Id,
    Name,
    Kind,
    CreatedAt,
    Version,
}

#[derive(DeriveIden)]
enum Member {
    Table,
    Id,
    OrganizationId,
    Name,
    Role,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organization::Table)
                    .col(uuid(Organization::Id).primary_key())
                    .col(
                        ColumnDef::new(Organization::Name)
                            .string_len(200)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Organization::Kind).string_len(32).not_null())
                    .col(timestamp_with_time_zone(Organization::CreatedAt))
                    .col(integer(Organization::Version).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Member::Table)
                    .col(uuid(Member::Id).primary_key())
                    .col(uuid(Member::OrganizationId))
                    .col(ColumnDef::new(Member::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Member::Role).string_len(16).not_null())
                    .col(timestamp_with_time_zone(Member::CreatedAt))
                    .foreign_key(&mut foreign_key(
                        "fk_member_organization",
                        (Member::Table, Member::OrganizationId),
                        (Organization::Table, Organization::Id),
                        OnDelete::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_member_organization_name",
                    Member::Table,
                    [Member::OrganizationId, Member::Name],
                )
                .unique()
                .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Member::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Organization::Table).to_owned())
            .await
    }
}
