//! Invariants the database enforces itself, so that concurrent writers cannot race past a check:
//!
//! - Number ranges of different issuers are disjoint (PostgreSQL): each issuer key's prefix becomes
//!   the range of 16-digit numbers it covers, and an exclusion constraint refuses a key whose range
//!   overlaps a key of another issuer (keys of one issuer may share or nest ranges: a rotated key
//!   covers the numbers of the key it replaces). `btree_gist` lets the constraint compare owners.
//!   SQLite has no exclusion constraints; its single writer serializes the check and the insert,
//!   which run in one write transaction.
//! - Evidence is shown to the issuer it names only when the issuer's signature over the token
//!   verified. Declines decided before that check named whatever issuer the submitted token claimed;
//!   they lose that name (the token bytes keep the claim, as evidence).
//! - A payment request remembers the member who opened it: the challenge is shown to that member and
//!   to the terminal's device only.

use sea_orm_migration::{
    prelude::*,
    schema::*,
    sea_orm::{DbBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentRequest {
    Table,
    RequestedByMemberId,
}

/// The name the hub recognises when the exclusion constraint refuses a registration.
pub const PREFIX_RANGES_DISJOINT: &str = "ex_issuer_key_number_range_disjoint";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentRequest::Table)
                    .add_column(uuid_null(PaymentRequest::RequestedByMemberId))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE payment_evidence SET issuer_organization_id = NULL \
                 WHERE outcome = 'DECLINED' AND decline_reason IN ('REQUEST_UNKNOWN', \
                 'UNKNOWN_ISSUER_KEY', 'ISSUER_KEY_REVOKED', 'ISSUER_KEY_RETIRED', \
                 'NUMBER_OUT_OF_RANGE', 'BAD_ISSUER_SIGNATURE')",
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS btree_gist")
                .await?;
            // A prefix of 6 to 12 digits covers every 16-digit number that starts with it.
            db.execute_unprepared(
                "ALTER TABLE issuer_key ADD COLUMN number_range int8range GENERATED ALWAYS AS \
                 (int8range((prefix || repeat('0', 16 - length(prefix)))::bigint, \
                            (prefix || repeat('9', 16 - length(prefix)))::bigint, '[]')) STORED",
            )
            .await?;
            // Ranges that raced past the old check must be resolved by an operator first: say which.
            let overlapping = db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT a.id::text AS a, b.id::text AS b FROM issuer_key a JOIN issuer_key b \
                     ON a.id < b.id AND a.owner_organization_id <> b.owner_organization_id \
                     AND a.number_range && b.number_range",
                ))
                .await?;
            if !overlapping.is_empty() {
                let pairs: Vec<String> = overlapping
                    .iter()
                    .map(|row| {
                        let a: String = row.try_get("", "a").unwrap_or_default();
                        let b: String = row.try_get("", "b").unwrap_or_default();
                        format!("{a} and {b}")
                    })
                    .collect();
                return Err(DbErr::Migration(format!(
                    "issuer keys of different issuers have overlapping number ranges; an operator \
                     must remove one key of each pair from the issuer_key table (no API deletes \
                     keys) before upgrading: {}",
                    pairs.join(", ")
                )));
            }
            db.execute_unprepared(&format!(
                "ALTER TABLE issuer_key ADD CONSTRAINT {PREFIX_RANGES_DISJOINT} \
                 EXCLUDE USING gist (number_range WITH &&, owner_organization_id WITH <>)"
            ))
            .await?;
        }
        Ok(())
    }

    /// Evidence whose unverified issuer name was removed keeps it in its token bytes; `down` does not
    /// put it back.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared(&format!(
                "ALTER TABLE issuer_key DROP CONSTRAINT IF EXISTS {PREFIX_RANGES_DISJOINT}"
            ))
            .await?;
            db.execute_unprepared("ALTER TABLE issuer_key DROP COLUMN IF EXISTS number_range")
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(PaymentRequest::Table)
                    .drop_column(PaymentRequest::RequestedByMemberId)
                    .to_owned(),
            )
            .await
    }
}
