//! One share per (owner, grantee, type, record): a grant is unique, so two concurrent grants cannot both
//! insert it. A whole-type share has no record; the index treats that absence as one value (COALESCE to
//! the nil UUID), so two whole-type grants collide too.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The index's name, as the hub recognises it (`db::constraints::SHARE_GRANT`).
const INDEX: &str = "ux_share_grant";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let nil = match manager.get_database_backend() {
            DbBackend::Postgres => "'00000000-0000-0000-0000-000000000000'::uuid",
            // SQLite keeps UUIDs as 16-byte blobs.
            _ => "x'00000000000000000000000000000000'",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX {INDEX} ON share (owner_organization_id, \
                 grantee_organization_id, resource_type, COALESCE(record_id, {nil}))"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(Alias::new("share"))
                    .to_owned(),
            )
            .await
    }
}
