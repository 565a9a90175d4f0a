//! Locations (shops and warehouses): the GraphQL node type, its filter and ordering inputs, the
//! `locations` query and the create, update and delete mutations.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::location;

use super::{
    DeleteRecordInput, DeleteRecordPayload, OrderDirection, organization, prime_organizations,
    service,
};
use crate::graphql::relay::IntoConnection;
use crate::{
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    identity::graphql::Organization,
    master_data::service::{LocationFilter, LocationPatch, LocationSort, NewLocation},
    records::RecordKind,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::location::LocationKind")]
pub enum LocationKind {
    Shop,
    Warehouse,
}

// ---- node type ----

/// A shop or warehouse.
pub struct Location(pub location::Model);

#[Object]
impl Location {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Location, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> LocationKind {
        self.0.kind.into()
    }
    async fn street(&self) -> &str {
        &self.0.street
    }
    async fn city(&self) -> &str {
        &self.0.city
    }
    async fn postal_code(&self) -> &str {
        &self.0.postal_code
    }
    /// ISO 3166-1 alpha-2.
    async fn country_code(&self) -> &str {
        &self.0.country_code
    }
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(organization(ctx, self.0.owner_organization_id).await?)
    }
    /// Optimistic-concurrency version: pass it back with an update.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

// ---- filters and orderings ----

#[derive(InputObject, Default)]
pub struct LocationFilterInput {
    kind: Option<LocationKind>,
    /// Case-insensitive substring of the name.
    name_contains: Option<String>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocationOrderField {
    #[default]
    Name,
    CreatedAt,
}

#[derive(InputObject, Default)]
pub struct LocationOrder {
    field: LocationOrderField,
    #[graphql(default)]
    direction: OrderDirection,
}

#[derive(Default)]
pub struct LocationQuery;

#[Object]
impl LocationQuery {
    /// Shops and warehouses the caller may see (its own and shared ones).
    #[allow(clippy::too_many_arguments)]
    async fn locations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<LocationFilterInput>,
        order_by: Option<LocationOrder>,
    ) -> async_graphql::Result<HubConnection<Location>> {
        let principal = ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let order = order_by.unwrap_or_default();
        let sort = match order.field {
            LocationOrderField::Name => LocationSort::Name,
            LocationOrderField::CreatedAt => LocationSort::CreatedAt,
        };
        let page = service(ctx)
            .locations(
                principal,
                LocationFilter {
                    kind: filter.kind.map(Into::into),
                    name_contains: filter.name_contains,
                },
                (sort, order.direction.into()),
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        prime_organizations(ctx, &page, &[("owner", |l| Some(l.owner_organization_id))]).await?;
        Ok(page.into_connection(Location))
    }
}

// ---- mutation inputs and payloads ----

#[derive(InputObject)]
pub struct CreateLocationInput {
    name: String,
    kind: LocationKind,
    street: String,
    city: String,
    postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. NL.
    country_code: String,
    /// Retrying with the same key and input returns the same record (keys are kept 24 hours).
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateLocationInput {
    id: ID,
    /// The version you read; a stale one answers CONFLICT.
    version: i32,
    name: Option<String>,
    kind: Option<LocationKind>,
    street: Option<String>,
    city: Option<String>,
    postal_code: Option<String>,
    country_code: Option<String>,
}

#[derive(SimpleObject)]
pub struct LocationPayload {
    location: Location,
}

#[derive(Default)]
pub struct LocationMutation;

#[Object]
impl LocationMutation {
    /// Creates a location owned by the caller's organization (MEMBER or ADMIN).
    async fn create_location(
        &self,
        ctx: &Context<'_>,
        input: CreateLocationInput,
    ) -> async_graphql::Result<LocationPayload> {
        let new = NewLocation {
            name: input.name,
            kind: input.kind.into(),
            street: input.street,
            city: input.city,
            postal_code: input.postal_code,
            country_code: input.country_code,
        };
        let location = service(ctx)
            .create_location(ctx.principal()?, new, input.idempotency_key.as_deref())
            .await?;
        Ok(LocationPayload {
            location: Location(location),
        })
    }

    /// Updates a location the caller owns or holds a WRITE share on.
    async fn update_location(
        &self,
        ctx: &Context<'_>,
        input: UpdateLocationInput,
    ) -> async_graphql::Result<LocationPayload> {
        let id = decode_id("id", RecordKind::Location, &input.id)?;
        let patch = LocationPatch {
            name: input.name,
            kind: input.kind.map(Into::into),
            street: input.street,
            city: input.city,
            postal_code: input.postal_code,
            country_code: input.country_code,
        };
        let location = service(ctx)
            .update_location(ctx.principal()?, id, input.version, patch)
            .await?;
        Ok(LocationPayload {
            location: Location(location),
        })
    }

    /// Deletes a location the caller owns. Refused with CONFLICT while devices or transactions reference
    /// it (foreign keys decide, in the same statement).
    async fn delete_location(
        &self,
        ctx: &Context<'_>,
        input: DeleteRecordInput,
    ) -> async_graphql::Result<DeleteRecordPayload> {
        let id = decode_id("id", RecordKind::Location, &input.id)?;
        let deleted = service(ctx).delete_location(ctx.principal()?, id).await?;
        Ok(DeleteRecordPayload {
            deleted_id: encode_id(RecordKind::Location, deleted),
        })
    }
}
