use sea_orm::entity::prelude::*;

/// Append-only evidence of every authorization and decline: what was submitted (the number replaced by
/// its keyed hash), by which device and token, judged when, with which keys.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_evidence")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub request_id: Uuid,
    /// The merchant's organization, when the request is known.
    pub owner_organization_id: Option<Uuid>,
    /// The card's issuer as the token names it.
    pub issuer_organization_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    /// AUTHORIZED or DECLINED.
    pub outcome: String,
    pub decline_reason: Option<String>,
    /// A replay of a number or request that was already used.
    pub replay: bool,
    /// The token with its 16 digits zeroed (the number is only in `number_hash`).
    pub redacted_token: Vec<u8>,
    pub number_hash: Vec<u8>,
    pub hash_key_id: i32,
    pub card_signature: Vec<u8>,
    /// The request fields the card signature was checked against.
    pub signed_fields: Vec<u8>,
    pub device_id: Uuid,
    pub jwt_id: Option<Uuid>,
    pub issuer_key_id: i64,
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
