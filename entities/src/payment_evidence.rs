use sea_orm::entity::prelude::*;

/// What was decided about a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Outcome {
    #[sea_orm(string_value = "AUTHORIZED")]
    Authorized,
    #[sea_orm(string_value = "DECLINED")]
    Declined,
}

/// Why a submission was declined (stored by these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum DeclineReason {
    #[sea_orm(string_value = "UNKNOWN_ISSUER_KEY")]
    UnknownIssuerKey,
    #[sea_orm(string_value = "ISSUER_KEY_RETIRED")]
    IssuerKeyRetired,
    #[sea_orm(string_value = "ISSUER_KEY_REVOKED")]
    IssuerKeyRevoked,
    #[sea_orm(string_value = "BAD_ISSUER_SIGNATURE")]
    BadIssuerSignature,
    #[sea_orm(string_value = "NUMBER_OUT_OF_RANGE")]
    NumberOutOfRange,
    #[sea_orm(string_value = "NUMBER_EXPIRED")]
    NumberExpired,
    #[sea_orm(string_value = "DOMAIN_RESTRICTION")]
    DomainRestriction,
    #[sea_orm(string_value = "CARD_UNKNOWN")]
    CardUnknown,
    #[sea_orm(string_value = "CARD_BLOCKED")]
    CardBlocked,
    #[sea_orm(string_value = "CARD_KEY_MISMATCH")]
    CardKeyMismatch,
    #[sea_orm(string_value = "BAD_CARD_SIGNATURE")]
    BadCardSignature,
    #[sea_orm(string_value = "REQUEST_UNKNOWN")]
    RequestUnknown,
    #[sea_orm(string_value = "REQUEST_CANCELLED")]
    RequestCancelled,
    #[sea_orm(string_value = "REQUEST_ALREADY_PAID")]
    RequestAlreadyPaid,
    #[sea_orm(string_value = "PAST_DEADLINE")]
    PastDeadline,
    #[sea_orm(string_value = "AMOUNT_ABOVE_BALANCE")]
    AmountAboveBalance,
    #[sea_orm(string_value = "NUMBER_ALREADY_USED")]
    NumberAlreadyUsed,
    #[sea_orm(string_value = "SEQUENCE_REUSED")]
    SequenceReused,
    #[sea_orm(string_value = "LIMIT_EXCEEDED")]
    LimitExceeded,
    #[sea_orm(string_value = "CVM_REQUIRED")]
    CvmRequired,
}

/// Append-only evidence of every authorization and decline: what was submitted (the number replaced by
/// its keyed hash), by which device and token, judged when, with which keys. Its content never changes;
/// only the sealed token is sealed again under a newer data key after a rotation.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_evidence")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub request_id: Uuid,
    /// The merchant's organization, when the request is known.
    pub owner_organization_id: Option<Uuid>,
    /// The card's issuer, when its signature over the token verified.
    pub issuer_organization_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub outcome: Outcome,
    pub decline_reason: Option<DeclineReason>,
    /// A replay of a number or request that was already used.
    pub replay: bool,
    /// The token with its 16 digits zeroed (the number is only in `number_hash`).
    pub redacted_token: Vec<u8>,
    /// The whole token, sealed (field-level encryption under data key `key_id`): shown only to the
    /// card's issuer. Absent in evidence recorded before the hub kept it.
    pub token_sealed: Option<Vec<u8>>,
    pub key_id: Option<i32>,
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
