use sea_orm::entity::prelude::*;

/// A one-time number that authorized a payment: its keyed hash (UNIQUE) and its card sequence (UNIQUE
/// per card). The number itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "number_use")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub number_hash: Vec<u8>,
    pub hash_key_id: i32,
    pub card_id: Uuid,
    pub sequence: i64,
    pub payment_id: Uuid,
    pub used_at: DateTimeUtc,
    /// The number's not-after: until then its hash key must stay checked. None for numbers used before
    /// it was recorded.
    pub not_after: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
