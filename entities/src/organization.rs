use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The kind of party an organization is; the retailer is the platform operator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum OrganizationKind {
    #[sea_orm(string_value = "RETAILER")]
    Retailer,
    #[sea_orm(string_value = "SUPPLIER")]
    Supplier,
    #[sea_orm(string_value = "LOGISTICS")]
    Logistics,
    #[sea_orm(string_value = "FINANCIAL_PROVIDER")]
    FinancialProvider,
    #[sea_orm(string_value = "SERVICE_PROVIDER")]
    ServiceProvider,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "organization")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    pub kind: OrganizationKind,
    pub created_at: DateTimeUtc,
    pub version: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::member::Entity")]
    Member,
}

impl Related<super::member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Member.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
