use sea_orm::entity::prelude::*;

use crate::delivery::DeliveryStatus;

/// One tracking event of a delivery, appended by its carrier. Never changed afterwards.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "travel_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub delivery_id: Uuid,
    /// 1, 2, ... per delivery, in the order the hub accepted them.
    pub sequence: i32,
    /// When the carrier says it happened.
    pub recorded_at: DateTimeUtc,
    /// Latitude and longitude, sealed.
    pub position_sealed: Vec<u8>,
    pub key_id: i32,
    /// The delivery's status when the record was appended.
    pub status: DeliveryStatus,
    pub note: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
