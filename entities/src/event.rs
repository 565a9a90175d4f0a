use sea_orm::entity::prelude::*;

/// The transactional outbox: one row per committed change of a transaction record, written in the same
/// database transaction. `position` is stamped after commit, in commit order, and is the readers' cursor.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event")]
pub struct Model {
    /// Insert order, used only to order unstamped rows; never a cursor.
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub id: Uuid,
    pub position: Option<i64>,
    /// e.g. `order.placed`.
    pub event_type: String,
    /// FINANCIAL, WORK or LOGISTIC.
    pub family: String,
    pub record_type: String,
    pub record_id: Uuid,
    pub status: String,
    pub owner_organization_id: Uuid,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
