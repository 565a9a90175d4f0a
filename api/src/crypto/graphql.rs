//! `encryptionStatus`: the keys and the re-encryption progress, for the platform operator.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{Vault, reseal};
use crate::{
    graphql::ContextExt,
    policy::{Action, authorize},
};

#[derive(SimpleObject)]
pub struct EncryptionKeyInfo {
    id: u32,
    /// FIELD (seals values) or BLIND_INDEX (keys equality search).
    purpose: &'static str,
    created_at: DateTime<Utc>,
    /// Which master key wraps it (a fingerprint, never the key).
    master_fingerprint: String,
    /// The data key new values are sealed under.
    primary: bool,
}

#[derive(SimpleObject)]
pub struct SealedRowCount {
    key_id: u32,
    rows: i64,
}

#[derive(SimpleObject)]
pub struct SealedTableStatus {
    table: &'static str,
    rows_by_key: Vec<SealedRowCount>,
    /// Rows still under older keys than the primary.
    pending: i64,
}

#[derive(SimpleObject)]
pub struct EncryptionStatus {
    primary_key_id: u32,
    keys: Vec<EncryptionKeyInfo>,
    tables: Vec<SealedTableStatus>,
    /// Rows of every table still to re-encrypt: 0 once a rotation has finished.
    pending: i64,
}

impl From<reseal::EncryptionStatus> for EncryptionStatus {
    fn from(status: reseal::EncryptionStatus) -> Self {
        Self {
            primary_key_id: status.primary,
            keys: status
                .keys
                .into_iter()
                .map(|key| EncryptionKeyInfo {
                    id: key.id,
                    purpose: key.purpose,
                    created_at: key.created_at,
                    master_fingerprint: key.master_fingerprint,
                    primary: key.primary,
                })
                .collect(),
            tables: status
                .tables
                .into_iter()
                .map(|table| SealedTableStatus {
                    table: table.table,
                    rows_by_key: table
                        .rows_by_key
                        .into_iter()
                        .map(|(key_id, rows)| SealedRowCount { key_id, rows })
                        .collect(),
                    pending: table.pending,
                })
                .collect(),
            pending: status.pending,
        }
    }
}

#[derive(Default)]
pub struct EncryptionQuery;

#[Object]
impl EncryptionQuery {
    /// How field-level encryption stands: every key (ids and fingerprints, never material), the rows
    /// of each sealed table per data key, and how many are still to move to the primary after a
    /// rotation. The retailer's ADMIN only.
    async fn encryption_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<EncryptionStatus> {
        authorize(ctx.principal()?, Action::ReadEncryptionStatus)?;
        let vault = ctx.data::<Vault>()?;
        Ok(reseal::status(vault.db()).await?.into())
    }
}
