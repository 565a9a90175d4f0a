use sea_orm::entity::prelude::*;

/// A catalogue item; the SKU is unique per owner.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "product")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    /// Price in the currency's minor units (cents for EUR).
    pub price_minor: i64,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    pub supplier_organization_id: Option<Uuid>,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
