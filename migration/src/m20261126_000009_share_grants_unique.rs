//! One share per (owner, grantee, type, record): a grant is unique, so two concurrent grants cannot both
//! insert it. A whole-type share has no record; the index treats that absence as one value (COALESCE to
//! the nil UUID), so two whole-type grants collide too.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{DbBackend, Statement},
};

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
        let db = manager.get_connection();
        // Duplicates that raced past the old check must be resolved by an operator first: say which.
        let duplicates = db
            .query_all_raw(Statement::from_string(
                manager.get_database_backend(),
                format!(
                    "SELECT COUNT(*) AS copies FROM share GROUP BY owner_organization_id, \
                     grantee_organization_id, resource_type, COALESCE(record_id, {nil}) \
                     HAVING COUNT(*) > 1"
                ),
            ))
            .await?;
        if !duplicates.is_empty() {
            return Err(DbErr::Migration(format!(
                "{} grants exist more than once in the share table; revoke the extra copies \
                 (revokeShare) before upgrading",
                duplicates.len()
            )));
        }
        db.execute_unprepared(&format!(
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
