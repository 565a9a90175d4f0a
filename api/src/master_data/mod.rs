//! Master data: the nouns of the business (locations, products, customers, devices), each owned by one
//! organization and opened to partners through shares.

pub mod graphql;
pub mod sensitive;
pub mod service;
pub mod validate;

pub use service::MasterDataService;

use entities::{customer, device, location, product, share::ResourceType};

use crate::policy::SharedEntity;

/// Master-data tables carry an optimistic-concurrency version and an update time.
pub trait VersionedEntity: SharedEntity {
    fn version_column() -> Self::Column;
    fn updated_at_column() -> Self::Column;
}

macro_rules! shared_entity {
    ($module:ident, $resource:expr) => {
        impl SharedEntity for $module::Entity {
            const RESOURCE: ResourceType = $resource;
            fn id_column() -> Self::Column {
                $module::Column::Id
            }
            fn owner_column() -> Self::Column {
                $module::Column::OwnerOrganizationId
            }
            fn id_of(model: &Self::Model) -> uuid::Uuid {
                model.id
            }
        }
        impl VersionedEntity for $module::Entity {
            fn version_column() -> Self::Column {
                $module::Column::Version
            }
            fn updated_at_column() -> Self::Column {
                $module::Column::UpdatedAt
            }
        }
    };
}

shared_entity!(location, ResourceType::Location);
shared_entity!(product, ResourceType::Product);
shared_entity!(customer, ResourceType::Customer);
shared_entity!(device, ResourceType::Device);
