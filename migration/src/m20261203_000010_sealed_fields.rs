//! Field-level encryption, first half: the table of wrapped keys, and sealed columns beside the plaintext
//! ones. The hub then seals every existing plaintext row in batches (it holds the keys; a migration does
//! not) before `m20261203_000011_drop_plaintext` removes the plaintext columns.
//!
//! A row's sealed columns are all sealed under one data key, named in `key_id` (the key id is also in
//! each sealed value's header); the index on it is how the re-encryption job finds rows under older keys.
//! `email_index` is the blind index of the normalized email, for equality search.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EncryptionKey {
    Table,
    Purpose,
    Id,
    Wrapped,
    MasterFingerprint,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Customer {
    Table,
    OwnerOrganizationId,
    NameSealed,
    EmailSealed,
    PhoneSealed,
    AddressSealed,
    EmailIndex,
    KeyId,
}

#[derive(DeriveIden)]
enum PaymentEvidence {
    Table,
    TokenSealed,
    KeyId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EncryptionKey::Table)
                    .col(string_len(EncryptionKey::Purpose, 16))
                    .col(integer(EncryptionKey::Id))
                    .col(ColumnDef::new(EncryptionKey::Wrapped).binary().not_null())
                    .col(string_len(EncryptionKey::MasterFingerprint, 16))
                    .col(timestamp_with_time_zone(EncryptionKey::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(EncryptionKey::Purpose)
                            .col(EncryptionKey::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Nullable: existing rows have no sealed values until the hub seals them (SQLite cannot add a
        // NOT NULL column without a default, nor tighten one later).
        for column in [
            Customer::NameSealed,
            Customer::EmailSealed,
            Customer::PhoneSealed,
            Customer::AddressSealed,
            Customer::EmailIndex,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Customer::Table)
                        .add_column(ColumnDef::new(column).binary().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Customer::Table)
                    .add_column(ColumnDef::new(Customer::KeyId).integer().null())
                    .to_owned(),
            )
            .await?;
        for column in [PaymentEvidence::TokenSealed] {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaymentEvidence::Table)
                        .add_column(ColumnDef::new(column).binary().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentEvidence::Table)
                    .add_column(ColumnDef::new(PaymentEvidence::KeyId).integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_customer_email_index")
                    .table(Customer::Table)
                    .col(Customer::OwnerOrganizationId)
                    .col(Customer::EmailIndex)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_customer_key")
                    .table(Customer::Table)
                    .col(Customer::KeyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_payment_evidence_key")
                    .table(PaymentEvidence::Table)
                    .col(PaymentEvidence::KeyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (index, table) in [
            ("ix_payment_evidence_key", "payment_evidence"),
            ("ix_customer_key", "customer"),
            ("ix_customer_email_index", "customer"),
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(Alias::new(table))
                        .to_owned(),
                )
                .await?;
        }
        for column in [PaymentEvidence::TokenSealed, PaymentEvidence::KeyId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(PaymentEvidence::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            Customer::NameSealed,
            Customer::EmailSealed,
            Customer::PhoneSealed,
            Customer::AddressSealed,
            Customer::EmailIndex,
            Customer::KeyId,
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
        manager
            .drop_table(Table::drop().table(EncryptionKey::Table).to_owned())
            .await
    }
}
