use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One line of an order, priced by the hub from the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "order_line")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub order_id: Uuid,
    pub line_number: i32,
    pub product_id: Uuid,
    /// The product's supplier when the line was priced: the party that sees this line.
    pub supplier_organization_id: Option<Uuid>,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
