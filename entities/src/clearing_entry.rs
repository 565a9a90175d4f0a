use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum EntryKind {
    /// Money the merchant takes of an authorization.
    #[sea_orm(string_value = "CAPTURE")]
    Capture,
    /// Money given back of a capture.
    #[sea_orm(string_value = "REFUND")]
    Refund,
}

/// One capture or one refund of a payment, in exactly one clearing batch (the one open when it
/// happened).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clearing_entry")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub batch_id: Uuid,
    pub payment_id: Uuid,
    pub kind: EntryKind,
    pub amount_minor: i64,
    pub currency: String,
    pub merchant_organization_id: Uuid,
    pub provider_organization_id: Uuid,
    /// Why the money went back (refunds only).
    pub reason: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
