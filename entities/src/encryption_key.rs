use sea_orm::entity::prelude::*;

/// A key of field-level encryption, wrapped by the master key: data keys (purpose `FIELD`, the highest
/// id is the primary) and the blind-index key (`BLIND_INDEX`). The database never holds one unwrapped.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "encryption_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub purpose: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub wrapped: Vec<u8>,
    /// Which master key wraps it (its fingerprint, never the key).
    pub master_fingerprint: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
