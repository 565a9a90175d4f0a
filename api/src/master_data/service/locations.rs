//! Locations: their filter, sort and input types, and the service methods that list, read, create,
//! update and delete them.

use chrono::Utc;
use entities::location::{self, LocationKind};
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Direction, MasterDataService, NAME_MAX, contains_ignoring_case, delete_owned, find_visible,
    versioned_update, visible_rows,
};
use crate::{
    auth::Principal,
    db::pagination::{Page, PageArgs, SortKey},
    error::ApiResult,
    master_data::validate,
    policy::{Action, Need, authorize},
};

// ---- inputs (plain data; the GraphQL layer converts into these) ----

#[derive(Debug, Default)]
pub struct LocationFilter {
    pub kind: Option<LocationKind>,
    pub name_contains: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub enum LocationSort {
    #[default]
    Name,
    CreatedAt,
}

#[derive(Serialize)]
pub struct NewLocation {
    pub name: String,
    pub kind: LocationKind,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub country_code: String,
}

#[derive(Default)]
pub struct LocationPatch {
    pub name: Option<String>,
    pub kind: Option<LocationKind>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub country_code: Option<String>,
}

impl MasterDataService {
    pub async fn locations(
        &self,
        principal: &Principal,
        filter: LocationFilter,
        sort: (LocationSort, Direction),
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<location::Model>> {
        let mut select = visible_rows::<location::Entity>(principal)?;
        if let Some(kind) = filter.kind {
            select = select.filter(location::Column::Kind.eq(kind));
        }
        if let Some(needle) = filter.name_contains {
            select = select.filter(contains_ignoring_case(location::Column::Name, &needle));
        }
        let by: (_, _, fn(&location::Model) -> SortKey) = match sort.0 {
            LocationSort::Name => (location::Column::Name, "name", |l| {
                SortKey::Text(l.name.clone())
            }),
            LocationSort::CreatedAt => (location::Column::CreatedAt, "createdAt", |l| {
                SortKey::Time(l.created_at)
            }),
        };
        self.page(select, by, sort.1, args, with_total).await
    }

    pub async fn location(&self, principal: &Principal, id: Uuid) -> ApiResult<location::Model> {
        find_visible::<location::Entity, _>(&self.db, principal, id, Need::Read).await
    }

    pub async fn create_location(
        &self,
        principal: &Principal,
        input: NewLocation,
        idempotency_key: Option<&str>,
    ) -> ApiResult<location::Model> {
        authorize(principal, Action::WriteRecords)?;
        let now = Utc::now();
        let model = location::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_organization_id: Set(principal.organization_id),
            name: Set(validate::text("name", &input.name, NAME_MAX)?),
            kind: Set(input.kind),
            street: Set(validate::text("street", &input.street, 200)?),
            city: Set(validate::text("city", &input.city, 100)?),
            postal_code: Set(validate::text("postalCode", &input.postal_code, 20)?),
            country_code: Set(validate::country_code(&input.country_code)?),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        };
        self.create_once::<location::Entity>(
            principal,
            "createLocation",
            idempotency_key,
            &input,
            model,
        )
        .await
    }

    pub async fn update_location(
        &self,
        principal: &Principal,
        id: Uuid,
        version: i32,
        patch: LocationPatch,
    ) -> ApiResult<location::Model> {
        authorize(principal, Action::WriteRecords)?;
        let mut changes: location::ActiveModel = Default::default();
        if let Some(name) = patch.name {
            changes.name = Set(validate::text("name", &name, NAME_MAX)?);
        }
        if let Some(kind) = patch.kind {
            changes.kind = Set(kind);
        }
        if let Some(street) = patch.street {
            changes.street = Set(validate::text("street", &street, 200)?);
        }
        if let Some(city) = patch.city {
            changes.city = Set(validate::text("city", &city, 100)?);
        }
        if let Some(postal_code) = patch.postal_code {
            changes.postal_code = Set(validate::text("postalCode", &postal_code, 20)?);
        }
        if let Some(country_code) = patch.country_code {
            changes.country_code = Set(validate::country_code(&country_code)?);
        }
        versioned_update::<location::Entity>(&self.db, principal, id, version, changes, Need::Write)
            .await
    }

    /// Deletes one of the caller's own locations; refused with CONFLICT while devices (or, later,
    /// transactions) reference it.
    pub async fn delete_location(&self, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
        delete_owned::<location::Entity>(&self.db, principal, id).await
    }
}
