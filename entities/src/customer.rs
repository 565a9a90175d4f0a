use sea_orm::entity::prelude::*;

/// A customer of its owner. Name, email, phone and address are sensitive: they are stored only sealed
/// (field-level encryption, all under the data key `key_id`), and services read and write them only
/// through `api::master_data::sensitive`. `email_index` is the blind index of the normalized email.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customer")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_organization_id: Uuid,
    pub name_sealed: Vec<u8>,
    pub email_sealed: Vec<u8>,
    pub phone_sealed: Option<Vec<u8>>,
    pub address_sealed: Option<Vec<u8>>,
    pub email_index: Vec<u8>,
    pub key_id: i32,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
