use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum DeliveryStatus {
    #[sea_orm(string_value = "PLANNED")]
    Planned,
    #[sea_orm(string_value = "PICKED_UP")]
    PickedUp,
    #[sea_orm(string_value = "IN_TRANSIT")]
    InTransit,
    #[sea_orm(string_value = "DELIVERED")]
    Delivered,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "RETURNED")]
    Returned,
}

/// The goods of an order on their way, moved by a carrier (a party) for the order's owner.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    pub order_id: Uuid,
    pub carrier_organization_id: Uuid,
    pub origin_location_id: Uuid,
    /// The recipient's name, phone and address, sealed as one value.
    pub recipient_sealed: Vec<u8>,
    pub key_id: i32,
    pub promised_from: DateTimeUtc,
    pub promised_until: DateTimeUtc,
    pub status: DeliveryStatus,
    /// Travel records appended so far (the next one's sequence is this plus one).
    pub travel_count: i32,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub picked_up_at: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
