use sea_orm::entity::prelude::*;

/// One mutation, as the audit trail keeps it. Written in the mutation's transaction; `chain_index` and
/// `link` are set after commit, when the entry joins its organization's hash chain.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_entry")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub id: Uuid,
    /// The organization the actor acted for: whose chain the entry joins.
    pub organization_id: Uuid,
    /// MEMBER or DEVICE.
    pub actor_kind: String,
    pub actor_id: Uuid,
    /// The mutation's field name, e.g. `createOrder`.
    pub operation: String,
    pub record_type: Option<String>,
    pub record_id: Option<Uuid>,
    /// Keyed digest of the mutation's input.
    pub change_digest: Vec<u8>,
    /// The database's time in the mutation's transaction.
    pub recorded_at: DateTimeUtc,
    /// The entry's MAC over all the fields above.
    pub seal: Vec<u8>,
    pub chain_index: Option<i64>,
    pub link: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
