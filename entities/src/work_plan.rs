use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum WorkStatus {
    #[sea_orm(string_value = "PLANNED")]
    Planned,
    #[sea_orm(string_value = "IN_PROGRESS")]
    InProgress,
    #[sea_orm(string_value = "DONE")]
    Done,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// Work one organization (the owner, the planner) asks of another (the assignee, a party), about an
/// order, a location or a device.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "work_plan")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    pub assignee_organization_id: Uuid,
    pub title: String,
    pub details: Option<String>,
    pub order_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub scheduled_start: DateTimeUtc,
    pub scheduled_end: DateTimeUtc,
    pub status: WorkStatus,
    /// Work records appended so far.
    pub record_count: i32,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
