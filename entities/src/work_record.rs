use sea_orm::entity::prelude::*;

/// What was done against a work plan, appended by its assignee. Never changed afterwards.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "work_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub work_plan_id: Uuid,
    /// The organization that did the work (the plan's assignee).
    pub organization_id: Uuid,
    /// The member who recorded it.
    pub recorded_by: Option<Uuid>,
    pub description: String,
    pub started_at: DateTimeUtc,
    pub ended_at: DateTimeUtc,
    /// Whole minutes from start to end, computed by the hub.
    pub minutes: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
