use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A reason to review an authorized payment. `payment.flag` stores a comma-separated list of these
/// names, in the order raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum PaymentFlag {
    /// The issuer key that signed the number was revoked after the payment (a compromise).
    #[sea_orm(string_value = "ISSUER_KEY_REVOKED")]
    IssuerKeyRevoked,
    /// The card's sequence jumped past the gap window: numbers generated and never submitted, or a
    /// cloned card spending ahead of the real one.
    #[sea_orm(string_value = "SEQUENCE_GAP")]
    SequenceGap,
    /// The card paid at a terminal of another location shortly before: two cards with one identity,
    /// or a relay.
    #[sea_orm(string_value = "DISTANT_TERMINALS")]
    DistantTerminals,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum PaymentStatus {
    #[sea_orm(string_value = "AUTHORIZED")]
    Authorized,
    #[sea_orm(string_value = "DECLINED")]
    Declined,
    #[sea_orm(string_value = "CAPTURED")]
    Captured,
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
    #[sea_orm(string_value = "VOIDED")]
    Voided,
    /// Not captured within the capture window: released by the hub.
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

/// A payment toward an order (and optionally one of its invoices). Written by the payment mode.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "payment")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    pub order_id: Uuid,
    pub invoice_id: Option<Uuid>,
    pub amount_minor: i64,
    pub currency: String,
    pub status: PaymentStatus,
    /// The financial provider that issued the card, a party of the payment.
    pub issuer_organization_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
    pub card_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    /// Why the payment must be reviewed, comma-separated (ISSUER_KEY_REVOKED, SEQUENCE_GAP,
    /// DISTANT_TERMINALS); a flagged payment is never silently voided.
    pub flag: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// What the merchant captured (0 until captured); the rest of the authorization was released.
    pub captured_minor: i64,
    /// What was refunded of the capture, across every refund.
    pub refunded_minor: i64,
    pub captured_at: Option<DateTimeUtc>,
    /// When the authorization, or what a capture left of it, was released (voided, expired, captured
    /// in part).
    pub released_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
