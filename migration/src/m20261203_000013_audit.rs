//! The audit trail: one entry per mutation, written in the mutation's transaction, then linked into its
//! organization's hash chain after commit (`chain_index`, `link`; null until linked). `seal` is the
//! entry's own MAC, written with it; the byte layouts are in `docs/audit.md`. `audit_key` holds the
//! fingerprint of the key the chains are made with (one row), so a replica given another key is
//! refused before it seals or links anything.

use sea_orm_migration::{prelude::*, schema::*};

use crate::common::{create_indexes, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEntry {
    Table,
    Seq,
    Id,
    OrganizationId,
    ActorKind,
    ActorId,
    Operation,
    RecordType,
    RecordId,
    ChangeDigest,
    RecordedAt,
    Seal,
    ChainIndex,
    Link,
}

#[derive(DeriveIden)]
enum AuditKey {
    Table,
    Id,
    Fingerprint,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditKey::Table)
                    .col(integer(AuditKey::Id).primary_key())
                    .col(string_len(AuditKey::Fingerprint, 16))
                    .col(timestamp_with_time_zone(AuditKey::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEntry::Table)
                    .col(big_integer(AuditEntry::Seq).auto_increment().primary_key())
                    .col(uuid(AuditEntry::Id).unique_key())
                    .col(uuid(AuditEntry::OrganizationId))
                    .col(string_len(AuditEntry::ActorKind, 8))
                    .col(uuid(AuditEntry::ActorId))
                    .col(string_len(AuditEntry::Operation, 64))
                    .col(string_len_null(AuditEntry::RecordType, 32))
                    .col(uuid_null(AuditEntry::RecordId))
                    .col(ColumnDef::new(AuditEntry::ChangeDigest).binary().not_null())
                    .col(timestamp_with_time_zone(AuditEntry::RecordedAt))
                    .col(ColumnDef::new(AuditEntry::Seal).binary().not_null())
                    .col(big_integer_null(AuditEntry::ChainIndex))
                    .col(ColumnDef::new(AuditEntry::Link).binary().null())
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            [
                index(
                    "ux_audit_chain",
                    AuditEntry::Table,
                    [AuditEntry::OrganizationId, AuditEntry::ChainIndex],
                )
                .unique()
                .to_owned(),
                // The linker looks for entries not yet linked.
                index(
                    "ix_audit_unlinked",
                    AuditEntry::Table,
                    [AuditEntry::ChainIndex, AuditEntry::Seq],
                ),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEntry::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditKey::Table).to_owned())
            .await
    }
}
