//! Column and constraint shapes that many tables share, written once.
//!
//! Migrations that have run must keep producing the same schema (a test compares it with a snapshot),
//! so these helpers reproduce exactly what the first migrations wrote, including where they differ.

use sea_orm_migration::{prelude::*, schema::*};

/// What a foreign key says about deleting the referenced row.
///
/// `Unstated` and `NoAction` behave the same (the database default is NO ACTION), but SQLite keeps
/// the DDL text, and tables created without the clause must stay without it.
#[derive(Debug, Clone, Copy)]
pub enum OnDelete {
    Unstated,
    NoAction,
    Restrict,
}

/// A named foreign key from `from` (table, column) to `to` (table, column).
pub fn foreign_key(
    name: &str,
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
    on_delete: OnDelete,
) -> ForeignKeyCreateStatement {
    let mut key = ForeignKey::create();
    key.name(name).from(from.0, from.1).to(to.0, to.1);
    match on_delete {
        OnDelete::Unstated => {}
        OnDelete::NoAction => {
            key.on_delete(ForeignKeyAction::NoAction);
        }
        OnDelete::Restrict => {
            key.on_delete(ForeignKeyAction::Restrict);
        }
    }
    key
}

/// The columns of a record that is updated with optimistic concurrency: its version (from 1) and
/// when it was created and last updated.
pub trait VersionedColumns {
    fn versioned(
        &mut self,
        version: impl IntoIden,
        created_at: impl IntoIden,
        updated_at: impl IntoIden,
    ) -> &mut Self;
}

impl VersionedColumns for TableCreateStatement {
    fn versioned(
        &mut self,
        version: impl IntoIden,
        created_at: impl IntoIden,
        updated_at: impl IntoIden,
    ) -> &mut Self {
        self.col(integer(version).default(1))
            .col(timestamp_with_time_zone(created_at))
            .col(timestamp_with_time_zone(updated_at))
    }
}

/// A named index on `columns` of `table`, in that order.
pub fn index<C: IntoIden>(
    name: &str,
    table: impl IntoIden,
    columns: impl IntoIterator<Item = C>,
) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    index
}

/// Creates the indexes in order.
pub async fn create_indexes(
    manager: &SchemaManager<'_>,
    indexes: impl IntoIterator<Item = IndexCreateStatement>,
) -> Result<(), DbErr> {
    for index in indexes {
        manager.create_index(index).await?;
    }
    Ok(())
}

/// Drops the tables in order (dependents first).
pub async fn drop_tables(
    manager: &SchemaManager<'_>,
    tables: impl IntoIterator<Item = DynIden>,
) -> Result<(), DbErr> {
    for table in tables {
        manager
            .drop_table(Table::drop().table(table).to_owned())
            .await?;
    }
    Ok(())
}
