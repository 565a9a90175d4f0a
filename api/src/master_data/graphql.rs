//! GraphQL types and resolvers for master data and shares: thin, they decode IDs, convert inputs and call
//! [`MasterDataService`]; nested relations go through the request's DataLoaders.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use entities::{customer, device, location, product, share};

use super::{
    MasterDataService,
    sensitive::{self, CustomerContact},
    service::{
        CustomerFilter, CustomerPatch, DeviceFilter, DevicePatch, DeviceSort, Direction,
        LocationFilter, LocationPatch, LocationSort, NewCustomer, NewDevice, NewLocation,
        NewProduct, NewShare, ProductFilter, ProductPatch, ProductSort,
    },
};
use crate::{
    error::ApiResult,
    graphql::{
        ContextExt,
        relay::{HubConnection, Page, PageArgs, decode_id, encode_id, wants_total},
        scalars::Int64,
    },
    identity::graphql::Organization,
    policy::SharedEntity,
};

pub const LOCATION: &str = "Location";
pub const PRODUCT: &str = "Product";
pub const CUSTOMER: &str = "Customer";
pub const DEVICE: &str = "Device";
pub const SHARE: &str = "Share";
const ORGANIZATION: &str = "Organization";

/// The GraphQL type name of a shareable record (the prefix of its global IDs).
fn record_type_name(resource: share::ResourceType) -> &'static str {
    match resource {
        share::ResourceType::Location => LOCATION,
        share::ResourceType::Product => PRODUCT,
        share::ResourceType::Customer => CUSTOMER,
        share::ResourceType::Device => DEVICE,
    }
}

fn service<'a>(ctx: &Context<'a>) -> &'a MasterDataService {
    ctx.data_unchecked::<MasterDataService>()
}

/// The owner (or any organization) of a record, through the request's loader.
async fn organization(ctx: &Context<'_>, id: uuid::Uuid) -> ApiResult<Option<Organization>> {
    Ok(ctx.scope().organization(id).await?.map(Organization::from))
}

// ---- enums ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::location::LocationKind")]
pub enum LocationKind {
    Shop,
    Warehouse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::device::DeviceStatus")]
pub enum DeviceStatus {
    /// May authenticate and take payments.
    Active,
    /// Stopped for good: its tokens are refused from the next request on.
    Revoked,
}

/// The kinds of master data that can be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::share::ResourceType")]
pub enum ShareableType {
    Location,
    Product,
    Customer,
    Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::share::ShareAccess")]
pub enum ShareAccess {
    /// Read the record.
    Read,
    /// Read and update the record (not delete it; deletion stays with the owner).
    Write,
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

// ---- node types ----

/// A shop or warehouse.
pub struct Location(pub location::Model);

#[Object]
impl Location {
    pub async fn id(&self) -> ID {
        encode_id(LOCATION, self.0.id)
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

/// A catalogue item. Prices are minor units of `currency` (cents for EUR).
pub struct Product(pub product::Model);

#[Object]
impl Product {
    pub async fn id(&self) -> ID {
        encode_id(PRODUCT, self.0.id)
    }
    /// Unique per owner.
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn price_minor(&self) -> Int64 {
        Int64(self.0.price_minor)
    }
    /// ISO 4217 code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn supplier(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        match self.0.supplier_organization_id {
            Some(id) => Ok(organization(ctx, id).await?),
            None => Ok(None),
        }
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

/// A customer. Name, email, phone and address are sensitive: they are null for callers whose share does
/// not include sensitive fields.
pub struct Customer(pub customer::Model);

impl Customer {
    async fn contact(&self, ctx: &Context<'_>) -> ApiResult<Option<CustomerContact>> {
        let principal = ctx.principal()?;
        let shares = ctx.scope().received_shares(service(ctx), principal).await?;
        let allowed = shares.may_read_sensitive(
            principal,
            customer::Entity::RESOURCE,
            self.0.owner_organization_id,
            self.0.id,
        );
        Ok(allowed.then(|| sensitive::read_contact(&self.0)))
    }
}

#[Object]
impl Customer {
    pub async fn id(&self) -> ID {
        encode_id(CUSTOMER, self.0.id)
    }
    async fn name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx).await?.map(|c| c.name))
    }
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx).await?.map(|c| c.email))
    }
    async fn phone(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx).await?.and_then(|c| c.phone))
    }
    async fn address(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.contact(ctx).await?.and_then(|c| c.address))
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

/// A checkout terminal with its own ed25519 key.
pub struct Device(pub device::Model);

#[Object]
impl Device {
    pub async fn id(&self) -> ID {
        encode_id(DEVICE, self.0.id)
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

/// A grant by an owner to another organization, visible to both.
pub struct Share(pub share::Model);

#[Object]
impl Share {
    pub async fn id(&self) -> ID {
        encode_id(SHARE, self.0.id)
    }
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(organization(ctx, self.0.owner_organization_id).await?)
    }
    async fn grantee(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(organization(ctx, self.0.grantee_organization_id).await?)
    }
    async fn resource_type(&self) -> ShareableType {
        self.0.resource_type.into()
    }
    /// The one shared record, or null when every record of the type is shared.
    async fn record_id(&self) -> Option<ID> {
        let type_name = record_type_name(self.0.resource_type);
        self.0.record_id.map(|id| encode_id(type_name, id))
    }
    async fn access(&self) -> ShareAccess {
        self.0.access.into()
    }
    /// Whether the grantee may read sensitive fields (customer contact data).
    async fn include_sensitive(&self) -> bool {
        self.0.include_sensitive
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
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

#[derive(InputObject, Default)]
pub struct ProductFilterInput {
    /// Exact SKU.
    sku: Option<String>,
    /// Case-insensitive substring of the name.
    name_contains: Option<String>,
    supplier_id: Option<ID>,
    currency: Option<String>,
    min_price_minor: Option<Int64>,
    max_price_minor: Option<Int64>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductOrderField {
    #[default]
    Sku,
    Name,
    Price,
    CreatedAt,
}

#[derive(InputObject, Default)]
pub struct ProductOrder {
    field: ProductOrderField,
    #[graphql(default)]
    direction: OrderDirection,
}

#[derive(InputObject, Default)]
pub struct CustomerFilterInput {
    /// Exact email (case-insensitive).
    email: Option<String>,
}

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
    type_name: &'static str,
    id: Option<&ID>,
) -> ApiResult<Option<uuid::Uuid>> {
    id.map(|id| decode_id(field, type_name, id)).transpose()
}

#[derive(Default)]
pub struct MasterDataQuery;

#[Object]
impl MasterDataQuery {
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

    /// Products the caller may see (its own and shared ones).
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ProductFilterInput>,
        order_by: Option<ProductOrder>,
    ) -> async_graphql::Result<HubConnection<Product>> {
        let principal = ctx.principal()?;
        let filter = filter.unwrap_or_default();
        let order = order_by.unwrap_or_default();
        let sort = match order.field {
            ProductOrderField::Sku => ProductSort::Sku,
            ProductOrderField::Name => ProductSort::Name,
            ProductOrderField::Price => ProductSort::Price,
            ProductOrderField::CreatedAt => ProductSort::CreatedAt,
        };
        let filter = ProductFilter {
            sku: filter.sku,
            name_contains: filter.name_contains,
            supplier_id: optional_id(
                "filter.supplierId",
                ORGANIZATION,
                filter.supplier_id.as_ref(),
            )?,
            currency: filter.currency,
            min_price_minor: filter.min_price_minor.map(|p| p.0),
            max_price_minor: filter.max_price_minor.map(|p| p.0),
        };
        let page = service(ctx)
            .products(
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
        prime_organizations(
            ctx,
            &page,
            &[
                ("owner", |p| Some(p.owner_organization_id)),
                ("supplier", |p| p.supplier_organization_id),
            ],
        )
        .await?;
        Ok(page.into_connection(Product))
    }

    /// Customers the caller may see, newest last (or first with `direction: DESC`).
    #[allow(clippy::too_many_arguments)]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<CustomerFilterInput>,
        #[graphql(default)] direction: OrderDirection,
    ) -> async_graphql::Result<HubConnection<Customer>> {
        let principal = ctx.principal()?;
        let filter = CustomerFilter {
            email: filter.unwrap_or_default().email,
        };
        let page = service(ctx)
            .customers(
                principal,
                filter,
                direction.into(),
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        prime_organizations(ctx, &page, &[("owner", |c| Some(c.owner_organization_id))]).await?;
        Ok(page.into_connection(Customer))
    }

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
            location_id: optional_id("filter.locationId", LOCATION, filter.location_id.as_ref())?,
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

    /// Shares the caller's organization granted to others.
    async fn shares_granted(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Share>> {
        let shares = service(ctx).shares(ctx.principal()?, true).await?;
        Ok(shares.into_iter().map(Share).collect())
    }

    /// Shares other organizations granted to the caller's organization.
    async fn shares_received(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Share>> {
        let shares = service(ctx).shares(ctx.principal()?, false).await?;
        Ok(shares.into_iter().map(Share).collect())
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

#[derive(InputObject)]
pub struct CreateProductInput {
    /// Unique per owner: 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'.
    sku: String,
    name: String,
    description: Option<String>,
    /// Non-negative, in minor units of `currency`.
    price_minor: Int64,
    /// ISO 4217 code, e.g. EUR.
    currency: String,
    /// An organization of kind SUPPLIER; defaults to the caller when the caller is a supplier.
    supplier_id: Option<ID>,
    /// Retrying with the same key and input returns the same record (keys are kept 24 hours).
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateProductInput {
    id: ID,
    version: i32,
    sku: Option<String>,
    name: Option<String>,
    /// Set to null to clear.
    description: async_graphql::MaybeUndefined<String>,
    price_minor: Option<Int64>,
    currency: Option<String>,
    /// Set to null to clear.
    supplier_id: async_graphql::MaybeUndefined<ID>,
}

#[derive(SimpleObject)]
pub struct ProductPayload {
    product: Product,
}

#[derive(InputObject)]
pub struct CreateCustomerInput {
    name: String,
    email: String,
    phone: Option<String>,
    address: Option<String>,
    /// Retrying with the same key and input returns the same record (keys are kept 24 hours).
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateCustomerInput {
    id: ID,
    version: i32,
    name: Option<String>,
    email: Option<String>,
    phone: async_graphql::MaybeUndefined<String>,
    address: async_graphql::MaybeUndefined<String>,
}

#[derive(SimpleObject)]
pub struct CustomerPayload {
    customer: Customer,
}

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

#[derive(InputObject)]
pub struct DeleteRecordInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteRecordPayload {
    deleted_id: ID,
}

#[derive(InputObject)]
pub struct GrantShareInput {
    /// The organization that gains access.
    grantee_id: ID,
    resource_type: ShareableType,
    /// One of the caller's records of `resourceType`; omit to share every record of the type.
    record_id: Option<ID>,
    access: ShareAccess,
    /// Also reveal sensitive fields (customer contact data). Default false.
    #[graphql(default)]
    include_sensitive: bool,
    /// Retrying with the same key and input returns the same record (keys are kept 24 hours).
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct SharePayload {
    share: Share,
}

#[derive(InputObject)]
pub struct RevokeShareInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct RevokeSharePayload {
    revoked_share_id: ID,
}

fn patch<T>(value: async_graphql::MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        async_graphql::MaybeUndefined::Undefined => None,
        async_graphql::MaybeUndefined::Null => Some(None),
        async_graphql::MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

#[derive(Default)]
pub struct MasterDataMutation;

#[Object]
impl MasterDataMutation {
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
        let id = decode_id("id", LOCATION, &input.id)?;
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
        let id = decode_id("id", LOCATION, &input.id)?;
        let deleted = service(ctx).delete_location(ctx.principal()?, id).await?;
        Ok(DeleteRecordPayload {
            deleted_id: encode_id(LOCATION, deleted),
        })
    }

    /// Creates a product owned by the caller's organization (MEMBER or ADMIN).
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let new = NewProduct {
            sku: input.sku,
            name: input.name,
            description: input.description,
            price_minor: input.price_minor.0,
            currency: input.currency,
            supplier_id: optional_id("supplierId", ORGANIZATION, input.supplier_id.as_ref())?,
        };
        let product = service(ctx)
            .create_product(ctx.principal()?, new, input.idempotency_key.as_deref())
            .await?;
        Ok(ProductPayload {
            product: Product(product),
        })
    }

    /// Updates a product the caller owns or holds a WRITE share on.
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        input: UpdateProductInput,
    ) -> async_graphql::Result<ProductPayload> {
        let id = decode_id("id", PRODUCT, &input.id)?;
        let supplier_id = match patch(input.supplier_id) {
            None => None,
            Some(None) => Some(None),
            Some(Some(id)) => Some(Some(decode_id("supplierId", ORGANIZATION, &id)?)),
        };
        let changes = ProductPatch {
            sku: input.sku,
            name: input.name,
            description: patch(input.description),
            price_minor: input.price_minor.map(|p| p.0),
            currency: input.currency,
            supplier_id,
        };
        let product = service(ctx)
            .update_product(ctx.principal()?, id, input.version, changes)
            .await?;
        Ok(ProductPayload {
            product: Product(product),
        })
    }

    /// Deletes a product the caller owns. Refused with CONFLICT while order lines reference it.
    async fn delete_product(
        &self,
        ctx: &Context<'_>,
        input: DeleteRecordInput,
    ) -> async_graphql::Result<DeleteRecordPayload> {
        let id = decode_id("id", PRODUCT, &input.id)?;
        let deleted = service(ctx).delete_product(ctx.principal()?, id).await?;
        Ok(DeleteRecordPayload {
            deleted_id: encode_id(PRODUCT, deleted),
        })
    }

    /// Creates a customer owned by the caller's organization (MEMBER or ADMIN).
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let contact = CustomerContact {
            name: input.name,
            email: input.email,
            phone: input.phone,
            address: input.address,
        };
        let customer = service(ctx)
            .create_customer(
                ctx.principal()?,
                NewCustomer { contact },
                input.idempotency_key.as_deref(),
            )
            .await?;
        Ok(CustomerPayload {
            customer: Customer(customer),
        })
    }

    /// Updates a customer the caller owns or holds a WRITE share on.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = decode_id("id", CUSTOMER, &input.id)?;
        let changes = CustomerPatch {
            name: input.name,
            email: input.email,
            phone: patch(input.phone),
            address: patch(input.address),
        };
        let customer = service(ctx)
            .update_customer(ctx.principal()?, id, input.version, changes)
            .await?;
        Ok(CustomerPayload {
            customer: Customer(customer),
        })
    }

    /// Deletes a customer the caller owns. Refused with CONFLICT while orders reference it.
    async fn delete_customer(
        &self,
        ctx: &Context<'_>,
        input: DeleteRecordInput,
    ) -> async_graphql::Result<DeleteRecordPayload> {
        let id = decode_id("id", CUSTOMER, &input.id)?;
        let deleted = service(ctx).delete_customer(ctx.principal()?, id).await?;
        Ok(DeleteRecordPayload {
            deleted_id: encode_id(CUSTOMER, deleted),
        })
    }

    /// Registers a checkout device at one of the caller's locations (ADMIN).
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        input: RegisterDeviceInput,
    ) -> async_graphql::Result<DevicePayload> {
        let new = NewDevice {
            name: input.name,
            location_id: decode_id("locationId", LOCATION, &input.location_id)?,
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
        let id = decode_id("id", DEVICE, &input.id)?;
        let changes = DevicePatch {
            name: input.name,
            location_id: optional_id("locationId", LOCATION, input.location_id.as_ref())?,
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
        let id = decode_id("id", DEVICE, &input.id)?;
        let device = service(ctx)
            .revoke_device(ctx.principal()?, id, input.version)
            .await?;
        Ok(DevicePayload {
            device: Device(device),
        })
    }

    /// Shares one record, or every record of a type, with another organization (ADMIN of the owner).
    async fn grant_share(
        &self,
        ctx: &Context<'_>,
        input: GrantShareInput,
    ) -> async_graphql::Result<SharePayload> {
        let resource: share::ResourceType = input.resource_type.into();
        let new = NewShare {
            grantee_id: decode_id("granteeId", ORGANIZATION, &input.grantee_id)?,
            resource,
            record_id: optional_id(
                "recordId",
                record_type_name(resource),
                input.record_id.as_ref(),
            )?,
            access: input.access.into(),
            include_sensitive: input.include_sensitive,
        };
        let share = service(ctx)
            .grant_share(ctx.principal()?, new, input.idempotency_key.as_deref())
            .await?;
        Ok(SharePayload {
            share: Share(share),
        })
    }

    /// Revokes a share the caller's organization granted; access ends with the grantee's next request.
    async fn revoke_share(
        &self,
        ctx: &Context<'_>,
        input: RevokeShareInput,
    ) -> async_graphql::Result<RevokeSharePayload> {
        let id = decode_id("id", SHARE, &input.id)?;
        let revoked = service(ctx).revoke_share(ctx.principal()?, id).await?;
        Ok(RevokeSharePayload {
            revoked_share_id: encode_id(SHARE, revoked),
        })
    }
}
