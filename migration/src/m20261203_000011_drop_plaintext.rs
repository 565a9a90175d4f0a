//! Field-level encryption, second half: once every customer is sealed (the hub does that between the two
//! migrations), the plaintext columns go. Refuses to run while any row is still unsealed, so plaintext
//! is never dropped before its sealed copy exists. On PostgreSQL the sealed columns of required fields
//! then become NOT NULL; SQLite cannot tighten a column in place, and the hub always writes them.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customer {
    Table,
    Name,
    Email,
    Phone,
    Address,
}

/// The name of this migration, for the hub to stop before it and seal what is still plaintext.
pub const DROP_PLAINTEXT: &str = "m20261203_000011_drop_plaintext";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let db = manager.get_connection();
        let unsealed = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COUNT(*) AS unsealed FROM customer WHERE key_id IS NULL",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "unsealed"))
            .transpose()?
            .unwrap_or(0);
        if unsealed > 0 {
            return Err(DbErr::Migration(format!(
                "{unsealed} customers are not sealed yet; start the hub (it seals them before this \
                 migration) instead of running migrations alone"
            )));
        }
        for column in [
            Customer::Name,
            Customer::Email,
            Customer::Phone,
            Customer::Address,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Customer::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        if backend == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE customer ALTER COLUMN name_sealed SET NOT NULL, \
                 ALTER COLUMN email_sealed SET NOT NULL, ALTER COLUMN email_index SET NOT NULL, \
                 ALTER COLUMN key_id SET NOT NULL",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The plaintext is gone by design: there is nothing to restore it from without the keys.
        Err(DbErr::Migration(
            "dropping the plaintext customer columns cannot be undone".into(),
        ))
    }
}
