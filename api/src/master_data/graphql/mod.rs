//! GraphQL types and resolvers for master data and shares: thin, they decode IDs, convert inputs and call
//! [`MasterDataService`]; nested relations go through the request's DataLoaders.
//!
//! One module per entity holds its node type, inputs, query fields and mutations; this module
//! merges them into [`MasterDataQuery`] and [`MasterDataMutation`] and keeps the shared helpers.

mod customers;
mod devices;
mod locations;
mod products;
mod shares;

use async_graphql::{Context, Enum, ID, InputObject, MergedObject, SimpleObject};

pub use customers::{
    CreateCustomerInput, Customer, CustomerFilterInput, CustomerPayload, UpdateCustomerInput,
};
pub use devices::{
    Device, DeviceFilterInput, DeviceOrder, DeviceOrderField, DevicePayload, DeviceStatus,
    RegisterDeviceInput, RevokeDeviceInput, UpdateDeviceInput,
};
pub use locations::{
    CreateLocationInput, Location, LocationFilterInput, LocationKind, LocationOrder,
    LocationOrderField, LocationPayload, UpdateLocationInput,
};
pub use products::{
    CreateProductInput, Product, ProductFilterInput, ProductOrder, ProductOrderField,
    ProductPayload, UpdateProductInput,
};
pub use shares::{
    GrantShareInput, RevokeShareInput, RevokeSharePayload, Share, ShareAccess, SharePayload,
    ShareableType,
};

use customers::{CustomerMutation, CustomerQuery};
use devices::{DeviceMutation, DeviceQuery};
use locations::{LocationMutation, LocationQuery};
use products::{ProductMutation, ProductQuery};
use shares::{ShareMutation, ShareQuery};

use super::{MasterDataService, service::Direction};
use crate::{
    db::pagination::Page,
    error::ApiResult,
    graphql::{ContextExt, relay::decode_id},
    identity::graphql::Organization,
    records::RecordKind,
};

fn service<'a>(ctx: &Context<'a>) -> &'a MasterDataService {
    ctx.data_unchecked::<MasterDataService>()
}

/// The owner (or any organization) of a record, through the request's loader.
async fn organization(ctx: &Context<'_>, id: uuid::Uuid) -> ApiResult<Option<Organization>> {
    Ok(ctx.scope().organization(id).await?.map(Organization::from))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
pub enum OrderDirection {
    #[default]
    Asc,
    Desc,
}

impl From<OrderDirection> for Direction {
    fn from(direction: OrderDirection) -> Self {
        match direction {
            OrderDirection::Asc => Direction::Asc,
            OrderDirection::Desc => Direction::Desc,
        }
    }
}

/// Whether the connection's nodes select `field`.
fn node_selects(ctx: &Context<'_>, field: &str) -> bool {
    ctx.look_ahead()
        .field("edges")
        .field("node")
        .field(field)
        .exists()
}

/// Reads an organization id (owner, supplier, ...) off a row.
type OrganizationOf<M> = fn(&M) -> Option<uuid::Uuid>;

/// Primes the request's organization loader with the `owner` (and any other organization fields the
/// nodes select), one query for the whole page.
async fn prime_organizations<M>(
    ctx: &Context<'_>,
    page: &Page<M>,
    fields: &[(&str, OrganizationOf<M>)],
) -> ApiResult<()> {
    let ids: Vec<uuid::Uuid> = fields
        .iter()
        .filter(|(field, _)| node_selects(ctx, field))
        .flat_map(|(_, id_of)| page.edges.iter().filter_map(|(_, row)| id_of(row)))
        .collect();
    if ids.is_empty() {
        Ok(())
    } else {
        ctx.scope().prime_organizations(ids).await
    }
}

fn optional_id(
    field: &'static str,
    kind: RecordKind,
    id: Option<&ID>,
) -> ApiResult<Option<uuid::Uuid>> {
    id.map(|id| decode_id(field, kind, id)).transpose()
}

#[derive(InputObject)]
pub struct DeleteRecordInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteRecordPayload {
    deleted_id: ID,
}

fn patch<T>(value: async_graphql::MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        async_graphql::MaybeUndefined::Undefined => None,
        async_graphql::MaybeUndefined::Null => Some(None),
        async_graphql::MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

// The query fields of each entity, merged in this order (the order of the schema's fields).
#[derive(MergedObject, Default)]
pub struct MasterDataQuery(
    LocationQuery,
    ProductQuery,
    CustomerQuery,
    DeviceQuery,
    ShareQuery,
);

// The mutations of each entity, merged in this order (the order of the schema's fields).
#[derive(MergedObject, Default)]
pub struct MasterDataMutation(
    LocationMutation,
    ProductMutation,
    CustomerMutation,
    DeviceMutation,
    ShareMutation,
);
