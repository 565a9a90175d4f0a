use sea_orm::entity::prelude::*;

/// Sales of one owner's orders on one UTC day, by product, supplier and currency: derived from order
/// lines (never written by a request; the analytics folder adds pending rows into it).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales_daily")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner_organization_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: Uuid,
    /// The lines' supplier, or the nil UUID for the owner's own products (a key column cannot be null).
    #[sea_orm(primary_key, auto_increment = false)]
    pub supplier_key: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub currency: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    /// Orders with such a line (zero once every one of them was cancelled).
    pub orders: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
