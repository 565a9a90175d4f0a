use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum BatchStatus {
    /// Captures and refunds join it.
    #[sea_orm(string_value = "OPEN")]
    Open,
    /// Its manifest is frozen; waiting for the provider's confirmation.
    #[sea_orm(string_value = "CLOSED")]
    Closed,
    /// The provider signed the manifest: settled, immutable.
    #[sea_orm(string_value = "CONFIRMED")]
    Confirmed,
}

/// The captures and refunds between one merchant and one financial provider in one currency, cleared
/// together. The totals and the manifest's digest are written once, when the batch closes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clearing_batch")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub merchant_organization_id: Uuid,
    pub provider_organization_id: Uuid,
    pub currency: String,
    pub status: BatchStatus,
    pub opened_at: DateTimeUtc,
    pub closed_at: Option<DateTimeUtc>,
    pub entry_count: Option<i64>,
    pub captured_minor: Option<i64>,
    pub refunded_minor: Option<i64>,
    /// SHA-256 of the manifest's bytes, lowercase hex.
    pub manifest_sha256: Option<String>,
    pub confirmed_at: Option<DateTimeUtc>,
    /// The provider's issuer key (its `keyId`) that signed the manifest.
    pub confirmation_key_id: Option<i64>,
    /// The ed25519 signature over the manifest's bytes.
    pub confirmation_signature: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
