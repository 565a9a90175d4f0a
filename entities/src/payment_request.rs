use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum PaymentRequestStatus {
    #[sea_orm(string_value = "OPEN")]
    Open,
    #[sea_orm(string_value = "PAID")]
    Paid,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// A request for a card payment at one terminal, with its fresh challenge and deadlines.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_request")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The merchant: the organization that requested the payment and owns the order.
    pub owner_organization_id: Uuid,
    pub order_id: Uuid,
    /// The terminal (a device of the merchant).
    pub device_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    /// 16 random bytes the card signs; shown only to the member who opened the request and to the
    /// terminal's device.
    pub challenge: Vec<u8>,
    pub status: PaymentRequestStatus,
    pub tap_deadline: DateTimeUtc,
    pub acceptance_deadline: DateTimeUtc,
    pub payment_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The member who opened the request (none when the terminal's device opened it): with the
    /// terminal's device, the only one shown the challenge.
    pub requested_by_member_id: Option<Uuid>,
    /// Taps at this request's own terminal that were declined while it was open.
    pub decline_count: i32,
    /// Why the latest of those was declined.
    pub last_decline_reason: Option<crate::payment_evidence::DeclineReason>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
