//! Devices (checkout terminals): the GraphQL node type, its filter and ordering inputs, the
//! `devices` query and the register, update and revoke mutations.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use entities::device;

use super::{
    OrderDirection, locations::Location, node_selects, optional_id, organization,
    prime_organizations, service,
};
use crate::graphql::relay::IntoConnection;
use crate::{
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    identity::graphql::Organization,
    master_data::service::{DeviceFilter, DevicePatch, DeviceSort, NewDevice},
    records::RecordKind,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::device::DeviceStatus")]
pub enum DeviceStatus {
    /// May authenticate and take payments.
    Active,
    /// Stopped for good: its tokens are refused from the next request on.
    Revoked,
}

// ---- node type ----

/// A checkout terminal with its own ed25519 key.
pub struct Device(pub device::Model);

#[Object]
impl Device {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Device, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn status(&self) -> DeviceStatus {
        self.0.status.into()
    }
    /// The device's ed25519 public key, standard base64.
    async fn public_key(&self) -> String {
        STANDARD.encode(&self.0.public_key)
    }
    /// Null when the caller may see the device but not its location.
    async fn location(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Location>> {
        Ok(ctx
            .scope()
            .location(self.0.location_id)
            .await?
            .map(Location))
    }
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(organization(ctx, self.0.owner_organization_id).await?)
    }
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
pub struct DeviceFilterInput {
    status: Option<DeviceStatus>,
    location_id: Option<ID>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceOrderField {
    #[default]
    Name,
    CreatedAt,
}

#[derive(InputObject, Default)]
pub struct DeviceOrder {
    field: DeviceOrderField,
    #[graphql(default)]
    direction: OrderDirection,
}

#[derive(Default)]
pub struct DeviceQuery;

#[Object]
impl DeviceQuery {
    /// Checkout devices the caller may see.
    #[allow(clippy::too_many_arguments)]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<DeviceFilterInput>,
        order_by: Option<DeviceOrder>,
    ) -> async_graphql::Result<HubConnection<Device>> {
        let principal = ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let order = order_by.unwrap_or_default();
        let sort = match order.field {
            DeviceOrderField::Name => DeviceSort::Name,
            DeviceOrderField::CreatedAt => DeviceSort::CreatedAt,
        };
        let filter = DeviceFilter {
            status: filter.status.map(Into::into),
            location_id: optional_id(
                "filter.locationId",
                RecordKind::Location,
                filter.location_id.as_ref(),
            )?,
        };
        let page = service(ctx)
            .devices(
                principal,
                filter,
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
        prime_organizations(ctx, &page, &[("owner", |d| Some(d.owner_organization_id))]).await?;
        if node_selects(ctx, "location") {
            ctx.scope()
                .prime_locations(page.edges.iter().map(|(_, d)| d.location_id))
                .await?;
        }
        Ok(page.into_connection(Device))
    }
}

// ---- mutation inputs and payloads ----

#[derive(InputObject)]
pub struct RegisterDeviceInput {
    name: String,
    /// One of the caller's own locations.
    location_id: ID,
    /// The device's ed25519 public key, standard base64 of 32 bytes. Invalid and weak (small-order) keys
    /// are refused.
    public_key: String,
    /// Retrying with the same key and input returns the same record (keys are kept 24 hours).
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateDeviceInput {
    id: ID,
    version: i32,
    name: Option<String>,
    location_id: Option<ID>,
}

#[derive(InputObject)]
pub struct RevokeDeviceInput {
    id: ID,
    version: i32,
}

#[derive(SimpleObject)]
pub struct DevicePayload {
    device: Device,
}

#[derive(Default)]
pub struct DeviceMutation;

#[Object]
impl DeviceMutation {
    /// Registers a checkout device at one of the caller's locations (ADMIN).
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        input: RegisterDeviceInput,
    ) -> async_graphql::Result<DevicePayload> {
        let new = NewDevice {
            name: input.name,
            location_id: decode_id("locationId", RecordKind::Location, &input.location_id)?,
            public_key_base64: input.public_key,
        };
        let device = service(ctx)
            .register_device(ctx.principal()?, new, input.idempotency_key.as_deref())
            .await?;
        Ok(DevicePayload {
            device: Device(device),
        })
    }

    /// Renames or moves a device (ADMIN).
    async fn update_device(
        &self,
        ctx: &Context<'_>,
        input: UpdateDeviceInput,
    ) -> async_graphql::Result<DevicePayload> {
        let id = decode_id("id", RecordKind::Device, &input.id)?;
        let changes = DevicePatch {
            name: input.name,
            location_id: optional_id(
                "locationId",
                RecordKind::Location,
                input.location_id.as_ref(),
            )?,
        };
        let device = service(ctx)
            .update_device(ctx.principal()?, id, input.version, changes)
            .await?;
        Ok(DevicePayload {
            device: Device(device),
        })
    }

    /// Revokes a device for good (ADMIN). Devices are never deleted: payments keep pointing at them.
    async fn revoke_device(
        &self,
        ctx: &Context<'_>,
        input: RevokeDeviceInput,
    ) -> async_graphql::Result<DevicePayload> {
        let id = decode_id("id", RecordKind::Device, &input.id)?;
        let device = service(ctx)
            .revoke_device(ctx.principal()?, id, input.version)
            .await?;
        Ok(DevicePayload {
            device: Device(device),
        })
    }
}
