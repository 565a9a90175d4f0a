use sea_orm::entity::prelude::*;

/// The canonical manifest of a closed clearing batch (ASCII text, layout in `docs/clearing.md`), kept
/// apart from the batch so that listing batches never reads it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clearing_manifest")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub batch_id: Uuid,
    pub manifest: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
