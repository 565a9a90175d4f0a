use sea_orm::entity::prelude::*;

/// One order's contribution to a `sales_daily` row, written in the transaction that placed or
/// cancelled the order (negative when cancelled), and folded into `sales_daily` after commit.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales_pending")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub owner_organization_id: Uuid,
    pub day: Date,
    pub product_id: Uuid,
    pub supplier_organization_id: Option<Uuid>,
    pub currency: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    /// +1 when the order was placed, -1 when it was cancelled.
    pub orders: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
