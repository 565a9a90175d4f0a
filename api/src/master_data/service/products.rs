//! Products: their filter, sort and input types, and the service methods that list, read, create,
//! update and delete them (with the rule on who may be named as supplier).

use chrono::Utc;
use entities::{
    organization::{self, OrganizationKind},
    product,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Direction, MasterDataService, NAME_MAX, contains_ignoring_case, delete_owned, find_visible,
    versioned_update, visible_rows,
};
use crate::{
    auth::Principal,
    db::pagination::{Page, PageArgs, SortKey},
    error::{ApiError, ApiResult},
    master_data::validate,
    policy::{Action, Need, authorize},
};

// ---- inputs (plain data; the GraphQL layer converts into these) ----

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

impl MasterDataService {
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
        let by: (_, _, fn(&product::Model) -> SortKey) = match sort.0 {
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
        self.page(select, by, sort.1, args, with_total).await
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
}
