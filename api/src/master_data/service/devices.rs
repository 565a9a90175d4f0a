//! Devices (checkout terminals): their filter, sort and input types, and the service methods that
//! list, read, register, update and revoke them.

use chrono::Utc;
use entities::{
    device::{self, DeviceStatus},
    location,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::AccessKey;

use super::{
    Direction, MasterDataService, NAME_MAX, find_visible, require, versioned_update, visible_rows,
};
use crate::{
    auth::Principal,
    db::pagination::{Page, PageArgs, SortKey},
    error::{ApiError, ApiResult},
    master_data::validate,
    policy::{Action, DeviceChange, Need, authorize, device_change_need},
};

// ---- inputs (plain data; the GraphQL layer converts into these) ----

#[derive(Debug, Default)]
pub struct DeviceFilter {
    pub status: Option<DeviceStatus>,
    pub location_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, Default)]
pub enum DeviceSort {
    #[default]
    Name,
    CreatedAt,
}

#[derive(Serialize)]
pub struct NewDevice {
    pub name: String,
    pub location_id: Uuid,
    pub public_key_base64: String,
}

#[derive(Default)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub location_id: Option<Uuid>,
}

impl MasterDataService {
    pub async fn devices(
        &self,
        principal: &Principal,
        filter: DeviceFilter,
        sort: (DeviceSort, Direction),
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<device::Model>> {
        let mut select = visible_rows::<device::Entity>(principal)?;
        if let Some(status) = filter.status {
            select = select.filter(device::Column::Status.eq(status));
        }
        if let Some(location) = filter.location_id {
            select = select.filter(device::Column::LocationId.eq(location));
        }
        let by: (_, _, fn(&device::Model) -> SortKey) = match sort.0 {
            DeviceSort::Name => (device::Column::Name, "name", |d| {
                SortKey::Text(d.name.clone())
            }),
            DeviceSort::CreatedAt => (device::Column::CreatedAt, "createdAt", |d| {
                SortKey::Time(d.created_at)
            }),
        };
        self.page(select, by, sort.1, args, with_total).await
    }

    pub async fn device(&self, principal: &Principal, id: Uuid) -> ApiResult<device::Model> {
        find_visible::<device::Entity, _>(&self.db, principal, id, Need::Read).await
    }

    /// Registers a checkout terminal at one of the caller's own locations (ADMIN).
    pub async fn register_device(
        &self,
        principal: &Principal,
        input: NewDevice,
        idempotency_key: Option<&str>,
    ) -> ApiResult<device::Model> {
        authorize(principal, Action::ManageDevices)?;
        let name = validate::text("name", &input.name, NAME_MAX)?;
        let public_key = validate::device_public_key(&input.public_key_base64)?;
        self.own_location(principal, input.location_id).await?;
        let now = Utc::now();
        let model = device::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_organization_id: Set(principal.organization_id),
            location_id: Set(input.location_id),
            name: Set(name),
            public_key: Set(public_key),
            status: Set(DeviceStatus::Active),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        };
        self.create_once::<device::Entity>(
            principal,
            "registerDevice",
            idempotency_key,
            &input,
            model,
        )
        .await
    }

    pub async fn update_device(
        &self,
        principal: &Principal,
        id: Uuid,
        version: i32,
        patch: DevicePatch,
    ) -> ApiResult<device::Model> {
        authorize(principal, Action::ManageDevices)?;
        let mut changes: device::ActiveModel = Default::default();
        let mut need = device_change_need(DeviceChange::Rename);
        if let Some(name) = patch.name {
            changes.name = Set(validate::text("name", &name, NAME_MAX)?);
        }
        if let Some(location) = patch.location_id {
            need = device_change_need(DeviceChange::Move);
            // A grantee is told it may not move the device before the location is looked up.
            require::<device::Entity, _>(&self.db, principal, id, need).await?;
            self.own_location(principal, location).await?;
            changes.location_id = Set(location);
        }
        // Cached copies (served by `me`) would show the old name or location.
        let _announce = self.bus.announce_on_drop(AccessKey::Device(id));
        versioned_update::<device::Entity>(&self.db, principal, id, version, changes, need).await
    }

    /// Revokes a device: its tokens stop working at once (the status is checked on every request).
    pub async fn revoke_device(
        &self,
        principal: &Principal,
        id: Uuid,
        version: i32,
    ) -> ApiResult<device::Model> {
        authorize(principal, Action::ManageDevices)?;
        let changes = device::ActiveModel {
            status: Set(DeviceStatus::Revoked),
            ..Default::default()
        };
        let need = device_change_need(DeviceChange::Revoke);
        // Announced when this function ends, however it ends: after the commit, this replica refuses
        // the device from its next request on.
        let _announce = self.bus.announce_on_drop(AccessKey::Device(id));
        versioned_update::<device::Entity>(&self.db, principal, id, version, changes, need).await
    }

    /// Devices stand at their owner's own locations.
    async fn own_location(&self, principal: &Principal, id: Uuid) -> ApiResult<()> {
        let found = location::Entity::find_by_id(id)
            .filter(location::Column::OwnerOrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?;
        found.map(|_| ()).ok_or(ApiError::not_found("location"))
    }
}
