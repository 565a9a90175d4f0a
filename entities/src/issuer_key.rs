use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum IssuerKeyStatus {
    /// Signs new numbers.
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    /// Signs no new numbers; numbers already issued stay valid until their not-after.
    #[sea_orm(string_value = "RETIRED")]
    Retired,
    /// Compromised: every number under the key is dead at once.
    #[sea_orm(string_value = "REVOKED")]
    Revoked,
}

/// A financial provider's public issuer key. Key material under a key id never changes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "issuer_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    /// The issuer's own id for the key (the token's key id), unique per issuer.
    pub key_id: i64,
    pub public_key: Vec<u8>,
    /// Card numbers this key may sign start with this prefix.
    pub prefix: String,
    pub not_after: DateTimeUtc,
    pub status: IssuerKeyStatus,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
