//! Master-data rules, independent of GraphQL. Every read filters with `policy::visible` inside the SQL
//! query; every write asks `policy::authorize` first and re-checks visibility in its WHERE clause.

use chrono::Utc;
use entities::{
    customer,
    device::{self, DeviceStatus},
    location::{self, LocationKind},
    organization::{self, OrganizationKind},
    product,
    share::{self, ResourceType, ShareAccess},
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult,
    IntoActiveModel, QueryFilter, QueryOrder, Select, SqlErr,
    sea_query::{Expr, ExprTrait, Func, LikeExpr, SimpleExpr},
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    VersionedEntity,
    sensitive::{self, CustomerContact},
    validate,
};
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    graphql::relay::{Ordering, Page, PageArgs, SortKey, paginate},
    idempotency::{IdempotencyKey, run_once},
    policy::{
        Action, DeviceChange, Need, ReceivedShares, SharedEntity, authorize, device_change_need,
        resource_name, sensitive_visible, visible,
    },
};

/// Sort direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

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

#[derive(Debug, Default)]
pub struct ProductFilter {
    pub sku: Option<String>,
    pub name_contains: Option<String>,
    pub supplier_id: Option<Uuid>,
    pub currency: Option<String>,
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default)]
pub enum ProductSort {
    #[default]
    Sku,
    Name,
    Price,
    CreatedAt,
}

#[derive(Serialize)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price_minor: i64,
    pub currency: String,
    pub supplier_id: Option<Uuid>,
}

#[derive(Default)]
pub struct ProductPatch {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub supplier_id: Option<Option<Uuid>>,
}

#[derive(Debug, Default)]
pub struct CustomerFilter {
    pub email: Option<String>,
}

#[derive(Serialize)]
pub struct NewCustomer {
    pub contact: CustomerContact,
}

#[derive(Default)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<Option<String>>,
    pub address: Option<Option<String>>,
}

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

#[derive(Serialize)]
pub struct NewShare {
    pub grantee_id: Uuid,
    pub resource: ResourceType,
    pub record_id: Option<Uuid>,
    pub access: ShareAccess,
    pub include_sensitive: bool,
}

const NAME_MAX: usize = 200;

#[derive(Clone)]
pub struct MasterDataService {
    db: DatabaseConnection,
}

impl MasterDataService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Inserts a new row of `E` once per idempotency key and returns it as the caller sees it.
    async fn create_once<E>(
        &self,
        principal: &Principal,
        operation: &'static str,
        idempotency_key: Option<&str>,
        input: &impl Serialize,
        model: E::ActiveModel,
    ) -> ApiResult<E::Model>
    where
        E: SharedEntity,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: ActiveModelTrait<Entity = E> + Send + 'static,
    {
        let key = idempotency_key
            .map(|key| IdempotencyKey::new(principal.organization_id, operation, key, input))
            .transpose()?;
        let id = match model.get(E::id_column()) {
            sea_orm::ActiveValue::Set(sea_orm::Value::Uuid(Some(id))) => id,
            _ => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "a new {operation} row has no id"
                )));
            }
        };
        let created = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                E::insert(model).exec_without_returning(txn).await?;
                Ok(id)
            })
        })
        .await?;
        find_visible::<E, _>(&self.db, principal, created, Need::Read).await
    }

    // ---- locations ----

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
        let (column, name, key): (_, _, fn(&location::Model) -> SortKey) = match sort.0 {
            LocationSort::Name => (location::Column::Name, "name", |l| {
                SortKey::Text(l.name.clone())
            }),
            LocationSort::CreatedAt => (location::Column::CreatedAt, "createdAt", |l| {
                SortKey::Time(l.created_at)
            }),
        };
        let ordering = Ordering {
            name,
            column,
            descending: sort.1 == Direction::Desc,
            key,
        };
        paginate(
            &self.db,
            select,
            location::Column::Id,
            |l| l.id,
            ordering,
            args,
            with_total,
        )
        .await
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

    // ---- products ----

    pub async fn products(
        &self,
        principal: &Principal,
        filter: ProductFilter,
        sort: (ProductSort, Direction),
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<product::Model>> {
        let mut select = visible_rows::<product::Entity>(principal)?;
        if let Some(sku) = filter.sku {
            select = select.filter(product::Column::Sku.eq(sku));
        }
        if let Some(needle) = filter.name_contains {
            select = select.filter(contains_ignoring_case(product::Column::Name, &needle));
        }
        if let Some(supplier) = filter.supplier_id {
            select = select.filter(product::Column::SupplierOrganizationId.eq(supplier));
        }
        if let Some(currency) = filter.currency {
            select = select.filter(product::Column::Currency.eq(currency));
        }
        if let Some(min) = filter.min_price_minor {
            select = select.filter(product::Column::PriceMinor.gte(min));
        }
        if let Some(max) = filter.max_price_minor {
            select = select.filter(product::Column::PriceMinor.lte(max));
        }
        let (column, name, key): (_, _, fn(&product::Model) -> SortKey) = match sort.0 {
            ProductSort::Sku => (product::Column::Sku, "sku", |p| {
                SortKey::Text(p.sku.clone())
            }),
            ProductSort::Name => (product::Column::Name, "name", |p| {
                SortKey::Text(p.name.clone())
            }),
            ProductSort::Price => (product::Column::PriceMinor, "price", |p| {
                SortKey::Int(p.price_minor)
            }),
            ProductSort::CreatedAt => (product::Column::CreatedAt, "createdAt", |p| {
                SortKey::Time(p.created_at)
            }),
        };
        let ordering = Ordering {
            name,
            column,
            descending: sort.1 == Direction::Desc,
            key,
        };
        paginate(
            &self.db,
            select,
            product::Column::Id,
            |p| p.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    pub async fn product(&self, principal: &Principal, id: Uuid) -> ApiResult<product::Model> {
        find_visible::<product::Entity, _>(&self.db, principal, id, Need::Read).await
    }

    /// Creates a product; a supplier's own products name it as their supplier unless told otherwise.
    pub async fn create_product(
        &self,
        principal: &Principal,
        input: NewProduct,
        idempotency_key: Option<&str>,
    ) -> ApiResult<product::Model> {
        authorize(principal, Action::WriteRecords)?;
        let supplier = match input.supplier_id {
            Some(id) => Some(self.supplier(id).await?),
            None if principal.organization_kind == OrganizationKind::Supplier => {
                Some(principal.organization_id)
            }
            None => None,
        };
        let now = Utc::now();
        let model = product::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_organization_id: Set(principal.organization_id),
            sku: Set(validate::sku(&input.sku)?),
            name: Set(validate::text("name", &input.name, NAME_MAX)?),
            description: Set(validate::optional_text(
                "description",
                input.description.as_deref(),
                4000,
            )?),
            price_minor: Set(validate::price(input.price_minor)?),
            currency: Set(validate::currency(&input.currency)?),
            supplier_organization_id: Set(supplier),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        };
        self.create_once::<product::Entity>(
            principal,
            "createProduct",
            idempotency_key,
            &input,
            model,
        )
        .await
    }

    pub async fn update_product(
        &self,
        principal: &Principal,
        id: Uuid,
        version: i32,
        patch: ProductPatch,
    ) -> ApiResult<product::Model> {
        authorize(principal, Action::WriteRecords)?;
        let mut changes: product::ActiveModel = Default::default();
        if let Some(sku) = patch.sku {
            changes.sku = Set(validate::sku(&sku)?);
        }
        if let Some(name) = patch.name {
            changes.name = Set(validate::text("name", &name, NAME_MAX)?);
        }
        if let Some(description) = patch.description {
            changes.description = Set(validate::optional_text(
                "description",
                description.as_deref(),
                4000,
            )?);
        }
        if let Some(price) = patch.price_minor {
            changes.price_minor = Set(validate::price(price)?);
        }
        if let Some(currency) = patch.currency {
            changes.currency = Set(validate::currency(&currency)?);
        }
        if let Some(supplier) = patch.supplier_id {
            changes.supplier_organization_id = Set(match supplier {
                Some(id) => Some(self.supplier(id).await?),
                None => None,
            });
        }
        // A SKU taken by another product surfaces as a unique violation: CONFLICT (see `ApiError`).
        versioned_update::<product::Entity>(&self.db, principal, id, version, changes, Need::Write)
            .await
    }

    pub async fn delete_product(&self, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
        delete_owned::<product::Entity>(&self.db, principal, id).await
    }

    /// A supplier named on a product must be an organization of kind SUPPLIER.
    async fn supplier(&self, id: Uuid) -> ApiResult<Uuid> {
        match organization::Entity::find_by_id(id).one(&self.db).await? {
            Some(org) if org.kind == OrganizationKind::Supplier => Ok(org.id),
            Some(_) => Err(ApiError::validation(
                "supplierId",
                "must name an organization of kind SUPPLIER",
            )),
            None => Err(ApiError::not_found("supplier organization")),
        }
    }

    // ---- customers ----

    pub async fn customers(
        &self,
        principal: &Principal,
        filter: CustomerFilter,
        direction: Direction,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<customer::Model>> {
        let mut select = visible_rows::<customer::Entity>(principal)?;
        if let Some(email) = filter.email {
            // Only among customers whose email the caller may read: the count must not confirm guesses.
            select = select
                .filter(sensitive::email_equals(&validate::email(&email)?))
                .filter(sensitive_visible::<customer::Entity>(principal));
        }
        // Sensitive fields are not sort keys (they will be ciphertext): customers sort by creation.
        let ordering = Ordering {
            name: "createdAt",
            column: customer::Column::CreatedAt,
            descending: direction == Direction::Desc,
            key: |c: &customer::Model| SortKey::Time(c.created_at),
        };
        paginate(
            &self.db,
            select,
            customer::Column::Id,
            |c| c.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    pub async fn customer(&self, principal: &Principal, id: Uuid) -> ApiResult<customer::Model> {
        find_visible::<customer::Entity, _>(&self.db, principal, id, Need::Read).await
    }

    pub async fn create_customer(
        &self,
        principal: &Principal,
        input: NewCustomer,
        idempotency_key: Option<&str>,
    ) -> ApiResult<customer::Model> {
        authorize(principal, Action::WriteRecords)?;
        let contact = validate_contact(input.contact.clone())?;
        let now = Utc::now();
        let mut model = customer::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_organization_id: Set(principal.organization_id),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        sensitive::write_contact(&mut model, contact);
        self.create_once::<customer::Entity>(
            principal,
            "createCustomer",
            idempotency_key,
            &input,
            model,
        )
        .await
    }

    pub async fn update_customer(
        &self,
        principal: &Principal,
        id: Uuid,
        version: i32,
        patch: CustomerPatch,
    ) -> ApiResult<customer::Model> {
        authorize(principal, Action::WriteRecords)?;
        // Contact fields change together through the one accessor, so read the current ones first.
        let current =
            find_visible::<customer::Entity, _>(&self.db, principal, id, Need::Read).await?;
        let mut contact = sensitive::read_contact(&current);
        if let Some(name) = patch.name {
            contact.name = name;
        }
        if let Some(email) = patch.email {
            contact.email = email;
        }
        if let Some(phone) = patch.phone {
            contact.phone = phone;
        }
        if let Some(address) = patch.address {
            contact.address = address;
        }
        let mut changes: customer::ActiveModel = Default::default();
        sensitive::write_contact(&mut changes, validate_contact(contact)?);
        // Every field of a customer is a contact field: changing one needs the right to read them.
        let need = Need::WriteSensitive;
        versioned_update::<customer::Entity>(&self.db, principal, id, version, changes, need).await
    }

    pub async fn delete_customer(&self, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
        delete_owned::<customer::Entity>(&self.db, principal, id).await
    }

    /// Shares granted to the caller's organization: which sensitive fields it may read.
    pub async fn received_shares(&self, principal: &Principal) -> ApiResult<ReceivedShares> {
        let shares = share::Entity::find()
            .filter(share::Column::GranteeOrganizationId.eq(principal.organization_id))
            .all(&self.db)
            .await?;
        Ok(ReceivedShares::new(shares))
    }

    // ---- devices ----

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
        let (column, name, key): (_, _, fn(&device::Model) -> SortKey) = match sort.0 {
            DeviceSort::Name => (device::Column::Name, "name", |d| {
                SortKey::Text(d.name.clone())
            }),
            DeviceSort::CreatedAt => (device::Column::CreatedAt, "createdAt", |d| {
                SortKey::Time(d.created_at)
            }),
        };
        let ordering = Ordering {
            name,
            column,
            descending: sort.1 == Direction::Desc,
            key,
        };
        paginate(
            &self.db,
            select,
            device::Column::Id,
            |d| d.id,
            ordering,
            args,
            with_total,
        )
        .await
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
            self.own_location(principal, location).await?;
            changes.location_id = Set(location);
        }
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

    // ---- shares ----

    /// Grants another organization access to one record or to every record of a type (ADMIN, owner).
    pub async fn grant_share(
        &self,
        principal: &Principal,
        input: NewShare,
        idempotency_key: Option<&str>,
    ) -> ApiResult<share::Model> {
        authorize(principal, Action::ManageShares)?;
        if input.grantee_id == principal.organization_id {
            return Err(ApiError::validation(
                "granteeId",
                "an organization always sees its own records",
            ));
        }
        if organization::Entity::find_by_id(input.grantee_id)
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(ApiError::not_found("organization"));
        }
        if let Some(record) = input.record_id {
            self.assert_owned(principal, input.resource, record).await?;
        }
        let duplicate = share::Entity::find()
            .filter(share::Column::OwnerOrganizationId.eq(principal.organization_id))
            .filter(share::Column::GranteeOrganizationId.eq(input.grantee_id))
            .filter(share::Column::ResourceType.eq(input.resource))
            .filter(match input.record_id {
                Some(record) => share::Column::RecordId.eq(record),
                None => share::Column::RecordId.is_null(),
            })
            .one(&self.db)
            .await?;
        if duplicate.is_some() {
            return Err(ApiError::Conflict(
                "this share exists; revoke it to change it".into(),
            ));
        }
        let model = share::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_organization_id: Set(principal.organization_id),
            grantee_organization_id: Set(input.grantee_id),
            resource_type: Set(input.resource),
            record_id: Set(input.record_id),
            access: Set(input.access),
            include_sensitive: Set(input.include_sensitive),
            created_at: Set(Utc::now()),
        };
        let key = idempotency_key
            .map(|key| IdempotencyKey::new(principal.organization_id, "grantShare", key, &input))
            .transpose()?;
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                let id = Uuid::now_v7();
                share::Entity::insert(share::ActiveModel {
                    id: Set(id),
                    ..model
                })
                .exec_without_returning(txn)
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.share(principal, id).await
    }

    /// Revokes one of the caller's grants; the grantee loses access with its next request.
    pub async fn revoke_share(&self, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
        authorize(principal, Action::ManageShares)?;
        let result = share::Entity::delete_many()
            .filter(share::Column::Id.eq(id))
            .filter(share::Column::OwnerOrganizationId.eq(principal.organization_id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 1 {
            Ok(id)
        } else {
            Err(ApiError::not_found("share"))
        }
    }

    /// Shares the caller's organization granted (as owner) or received (as grantee).
    pub async fn shares(
        &self,
        principal: &Principal,
        granted: bool,
    ) -> ApiResult<Vec<share::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let column = if granted {
            share::Column::OwnerOrganizationId
        } else {
            share::Column::GranteeOrganizationId
        };
        Ok(share::Entity::find()
            .filter(column.eq(principal.organization_id))
            .order_by_asc(share::Column::CreatedAt)
            .order_by_asc(share::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub async fn share(&self, principal: &Principal, id: Uuid) -> ApiResult<share::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        share::Entity::find_by_id(id)
            .filter(
                Condition::any()
                    .add(share::Column::OwnerOrganizationId.eq(principal.organization_id))
                    .add(share::Column::GranteeOrganizationId.eq(principal.organization_id)),
            )
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("share"))
    }

    async fn assert_owned(
        &self,
        principal: &Principal,
        resource: ResourceType,
        id: Uuid,
    ) -> ApiResult<()> {
        let owned = match resource {
            ResourceType::Location => {
                owned_exists::<location::Entity>(&self.db, principal, id).await?
            }
            ResourceType::Product => {
                owned_exists::<product::Entity>(&self.db, principal, id).await?
            }
            ResourceType::Customer => {
                owned_exists::<customer::Entity>(&self.db, principal, id).await?
            }
            ResourceType::Device => owned_exists::<device::Entity>(&self.db, principal, id).await?,
        };
        if owned {
            Ok(())
        } else {
            Err(ApiError::not_found(resource_name(resource)))
        }
    }
}

fn validate_contact(contact: CustomerContact) -> ApiResult<CustomerContact> {
    Ok(CustomerContact {
        name: validate::text("name", &contact.name, NAME_MAX)?,
        email: validate::email(&contact.email)?,
        phone: validate::optional_text("phone", contact.phone.as_deref(), 40)?,
        address: validate::optional_text("address", contact.address.as_deref(), 500)?,
    })
}

/// All rows of `E` the caller may read.
fn visible_rows<E: SharedEntity>(principal: &Principal) -> ApiResult<Select<E>> {
    authorize(principal, Action::ReadOwnOrganization)?;
    Ok(E::find().filter(visible::<E>(principal, Need::Read)))
}

async fn find_visible<E, C>(
    db: &C,
    principal: &Principal,
    id: Uuid,
    need: Need,
) -> ApiResult<E::Model>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Send + Sync,
    C: ConnectionTrait,
{
    authorize(principal, Action::ReadOwnOrganization)?;
    E::find()
        .filter(E::id_column().eq(id))
        .filter(visible::<E>(principal, need))
        .one(db)
        .await?
        .ok_or(ApiError::not_found(resource_name(E::RESOURCE)))
}

async fn owned_exists<E>(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<bool>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Send + Sync,
{
    Ok(E::find()
        .filter(E::id_column().eq(id))
        .filter(E::owner_column().eq(principal.organization_id))
        .one(db)
        .await?
        .is_some())
}

/// Applies `changes` to row `id` only if its version is still `version` and the caller may write it;
/// bumps the version. Stale versions answer CONFLICT, invisible rows NOT_FOUND, read-only ones FORBIDDEN.
async fn versioned_update<E>(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    version: i32,
    changes: <E as EntityTrait>::ActiveModel,
    need: Need,
) -> ApiResult<E::Model>
where
    E: VersionedEntity,
    E::Model: FromQueryResult + IntoActiveModel<E::ActiveModel> + Send + Sync,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
{
    let result = E::update_many()
        .set(changes)
        .col_expr(E::version_column(), Expr::col(E::version_column()).add(1))
        .col_expr(E::updated_at_column(), Expr::value(Utc::now()))
        .filter(E::id_column().eq(id))
        .filter(E::version_column().eq(version))
        .filter(visible::<E>(principal, need))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        return find_visible::<E, _>(db, principal, id, Need::Read).await;
    }
    // Nothing changed: say why, without revealing rows the caller cannot see.
    find_visible::<E, _>(db, principal, id, Need::Read).await?;
    // Visible but not changeable by the caller: say which rule stopped it (a database error stays one).
    match find_visible::<E, _>(db, principal, id, need).await {
        Ok(_) => {}
        Err(ApiError::NotFound { .. }) => {
            return Err(ApiError::Forbidden(match need {
                Need::Own => "only the record's owner may make this change",
                Need::WriteSensitive => {
                    "the record is shared with your organization without its sensitive fields"
                }
                Need::Read | Need::Write => "the record is shared with your organization read-only",
            }));
        }
        Err(other) => return Err(other),
    }
    Err(ApiError::Conflict(format!(
        "stale version {version}: the {} changed since you read it; read it again and retry",
        resource_name(E::RESOURCE)
    )))
}

/// Deletes one of the caller's own rows (owners delete; WRITE shares do not extend to deletion).
async fn delete_owned<E>(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<Uuid>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Send + Sync,
{
    authorize(principal, Action::WriteRecords)?;
    let result = E::delete_many()
        .filter(E::id_column().eq(id))
        .filter(E::owner_column().eq(principal.organization_id))
        .exec(db)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => ApiError::Conflict(format!(
                "the {} is still referenced by other records and cannot be deleted",
                resource_name(E::RESOURCE)
            )),
            _ => err.into(),
        })?;
    if result.rows_affected == 1 {
        return Ok(id);
    }
    find_visible::<E, _>(db, principal, id, Need::Read).await?;
    Err(ApiError::Forbidden("only the owner deletes a record"))
}

/// Case-insensitive substring match with LIKE wildcards in the needle escaped.
fn contains_ignoring_case<C: ColumnTrait>(column: C, needle: &str) -> SimpleExpr {
    let escaped = needle
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Expr::expr(Func::lower(Expr::col(column)))
        .like(LikeExpr::new(format!("%{escaped}%")).escape('\\'))
}
