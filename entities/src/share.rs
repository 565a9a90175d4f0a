use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The kinds of master data an owner can share.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ResourceType {
    #[sea_orm(string_value = "LOCATION")]
    Location,
    #[sea_orm(string_value = "PRODUCT")]
    Product,
    #[sea_orm(string_value = "CUSTOMER")]
    Customer,
    #[sea_orm(string_value = "DEVICE")]
    Device,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
pub enum ShareAccess {
    #[sea_orm(string_value = "READ")]
    Read,
    #[sea_orm(string_value = "WRITE")]
    Write,
}

/// An owner's grant to another organization: one record (`record_id`) or every record of a type (null).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "share")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    pub grantee_organization_id: Uuid,
    pub resource_type: ResourceType,
    pub record_id: Option<Uuid>,
    pub access: ShareAccess,
    /// Whether the grantee may read decrypted sensitive fields.
    pub include_sensitive: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
