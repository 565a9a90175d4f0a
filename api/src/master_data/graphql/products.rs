//! Products (the catalogue): the GraphQL node type, its filter and ordering inputs, the `products`
//! query and the create, update and delete mutations.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::product;

use super::{
    DeleteRecordInput, DeleteRecordPayload, OrderDirection, optional_id, organization, patch,
    prime_organizations, service,
};
use crate::graphql::relay::IntoConnection;
use crate::{
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
        scalars::Int64,
    },
    identity::graphql::Organization,
    master_data::service::{NewProduct, ProductFilter, ProductPatch, ProductSort},
    records::RecordKind,
};

// ---- node type ----

/// A catalogue item. Prices are minor units of `currency` (cents for EUR).
pub struct Product(pub product::Model);

#[Object]
impl Product {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Product, self.0.id)
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

// ---- filters and orderings ----

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

#[derive(Default)]
pub struct ProductQuery;

#[Object]
impl ProductQuery {
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
                RecordKind::Organization,
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
}

// ---- mutation inputs and payloads ----

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

#[derive(Default)]
pub struct ProductMutation;

#[Object]
impl ProductMutation {
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
            supplier_id: optional_id(
                "supplierId",
                RecordKind::Organization,
                input.supplier_id.as_ref(),
            )?,
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
        let id = decode_id("id", RecordKind::Product, &input.id)?;
        let supplier_id = match patch(input.supplier_id) {
            None => None,
            Some(None) => Some(None),
            Some(Some(id)) => Some(Some(decode_id(
                "supplierId",
                RecordKind::Organization,
                &id,
            )?)),
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
        let id = decode_id("id", RecordKind::Product, &input.id)?;
        let deleted = service(ctx).delete_product(ctx.principal()?, id).await?;
        Ok(DeleteRecordPayload {
            deleted_id: encode_id(RecordKind::Product, deleted),
        })
    }
}
