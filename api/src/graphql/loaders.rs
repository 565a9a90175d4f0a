//! Per-request DataLoaders: every nested relation is fetched in one query per kind and request, not one
//! per parent row. Loaders that read shared records apply the caller's visibility like any other query.

use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::{Arc, OnceLock},
};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entities::{customer, device, location, order, organization, product};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::Services;
use crate::{
    auth::Principal,
    clearing::graphql::{BatchTotalsLoader, PaymentEntriesLoader},
    error::{ApiError, ApiResult},
    financial::graphql::{InvoicesLoader, OrderLinesLoader, OrdersLoader, PaymentsLoader},
    logistics::graphql::TravelRecordsLoader,
    master_data::MasterDataService,
    policy::{Need, ReceivedShares, SharedEntity, visible},
    work::graphql::WorkRecordsLoader,
};

/// Directory entries by id (every caller may read names and kinds).
pub struct OrganizationLoader(DatabaseConnection);

impl Loader<Uuid> for OrganizationLoader {
    type Value = organization::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = organization::Entity::find()
            .filter(organization::Column::Id.is_in(keys.iter().copied()))
            .all(&self.0)
            .await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// Shared records of one type by id, only those the caller may see.
pub struct VisibleLoader<E> {
    db: DatabaseConnection,
    principal: Principal,
    entity: PhantomData<fn() -> E>,
}

impl<E> Loader<Uuid> for VisibleLoader<E>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Clone + Send + Sync + 'static,
{
    type Value = E::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = E::find()
            .filter(E::id_column().is_in(keys.iter().copied()))
            .filter(visible::<E>(&self.principal, Need::Read))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|row| (E::id_of(&row), row)).collect())
    }
}

fn cached<L: Loader<Uuid>>(loader: L) -> DataLoader<L, HashMapCache> {
    DataLoader::with_cache(loader, tokio::spawn, HashMapCache::default())
}

/// What one request caches: its loaders and the shares granted to the caller. Each loader is built
/// the first time the request needs it: most requests use one or two of them, and building all of
/// them for every request was a measurable share of a small read's cost.
pub struct RequestScope {
    services: Arc<Services>,
    principal: Principal,
    organizations: OnceLock<DataLoader<OrganizationLoader, HashMapCache>>,
    locations: OnceLock<DataLoader<VisibleLoader<location::Entity>, HashMapCache>>,
    products: OnceLock<DataLoader<VisibleLoader<product::Entity>, HashMapCache>>,
    customers: OnceLock<DataLoader<VisibleLoader<customer::Entity>, HashMapCache>>,
    devices: OnceLock<DataLoader<VisibleLoader<device::Entity>, HashMapCache>>,
    orders: OnceLock<DataLoader<OrdersLoader, HashMapCache>>,
    order_lines: OnceLock<DataLoader<OrderLinesLoader, HashMapCache>>,
    invoices: OnceLock<DataLoader<InvoicesLoader, HashMapCache>>,
    payments: OnceLock<DataLoader<PaymentsLoader, HashMapCache>>,
    work_records: OnceLock<DataLoader<WorkRecordsLoader, HashMapCache>>,
    travel_records: OnceLock<DataLoader<TravelRecordsLoader, HashMapCache>>,
    payment_entries: OnceLock<DataLoader<PaymentEntriesLoader, HashMapCache>>,
    batch_totals: OnceLock<DataLoader<BatchTotalsLoader, HashMapCache>>,
    /// Clearing manifests served in this request (at most one: each may be megabytes).
    pub manifests_served: std::sync::atomic::AtomicUsize,
    received_shares: OnceCell<Arc<ReceivedShares>>,
    /// Off for a long-lived connection: what it is shown must be read when it is shown.
    caching: bool,
}

impl RequestScope {
    pub fn new(services: &Arc<Services>, principal: &Principal) -> Self {
        Self {
            services: services.clone(),
            principal: principal.clone(),
            organizations: OnceLock::new(),
            locations: OnceLock::new(),
            products: OnceLock::new(),
            customers: OnceLock::new(),
            devices: OnceLock::new(),
            orders: OnceLock::new(),
            order_lines: OnceLock::new(),
            invoices: OnceLock::new(),
            payments: OnceLock::new(),
            work_records: OnceLock::new(),
            travel_records: OnceLock::new(),
            payment_entries: OnceLock::new(),
            batch_totals: OnceLock::new(),
            manifests_served: Default::default(),
            received_shares: OnceCell::new(),
            caching: true,
        }
    }

    /// A scope for a WebSocket connection: batching without caching, so each delivery reads the
    /// records (and the shares that decide what is visible) as they are at delivery time.
    pub fn uncached(services: &Arc<Services>, principal: &Principal) -> Self {
        Self {
            caching: false,
            ..Self::new(services, principal)
        }
    }

    /// The loader in `cell`, built by `make` on first use.
    fn loader<'a, L: Loader<Uuid>>(
        &self,
        cell: &'a OnceLock<DataLoader<L, HashMapCache>>,
        make: impl FnOnce() -> L,
    ) -> &'a DataLoader<L, HashMapCache> {
        cell.get_or_init(|| {
            let loader = cached(make());
            if !self.caching {
                loader.enable_all_cache(false);
            }
            loader
        })
    }

    pub fn organizations(&self) -> &DataLoader<OrganizationLoader, HashMapCache> {
        self.loader(&self.organizations, || {
            OrganizationLoader(self.services.db.clone())
        })
    }

    fn locations(&self) -> &DataLoader<VisibleLoader<location::Entity>, HashMapCache> {
        self.loader(&self.locations, || self.visible())
    }

    fn products(&self) -> &DataLoader<VisibleLoader<product::Entity>, HashMapCache> {
        self.loader(&self.products, || self.visible())
    }

    fn customers(&self) -> &DataLoader<VisibleLoader<customer::Entity>, HashMapCache> {
        self.loader(&self.customers, || self.visible())
    }

    fn devices(&self) -> &DataLoader<VisibleLoader<device::Entity>, HashMapCache> {
        self.loader(&self.devices, || self.visible())
    }

    fn orders(&self) -> &DataLoader<OrdersLoader, HashMapCache> {
        self.loader(&self.orders, || OrdersLoader {
            service: self.services.financial.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn order_lines(&self) -> &DataLoader<OrderLinesLoader, HashMapCache> {
        self.loader(&self.order_lines, || OrderLinesLoader {
            service: self.services.financial.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn invoices(&self) -> &DataLoader<InvoicesLoader, HashMapCache> {
        self.loader(&self.invoices, || InvoicesLoader {
            service: self.services.financial.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn payments(&self) -> &DataLoader<PaymentsLoader, HashMapCache> {
        self.loader(&self.payments, || PaymentsLoader {
            service: self.services.financial.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn work_records(&self) -> &DataLoader<WorkRecordsLoader, HashMapCache> {
        self.loader(&self.work_records, || WorkRecordsLoader {
            service: self.services.work.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn travel_records(&self) -> &DataLoader<TravelRecordsLoader, HashMapCache> {
        self.loader(&self.travel_records, || TravelRecordsLoader {
            service: self.services.logistics.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn payment_entries(&self) -> &DataLoader<PaymentEntriesLoader, HashMapCache> {
        self.loader(&self.payment_entries, || PaymentEntriesLoader {
            service: self.services.clearing.clone(),
            principal: self.principal.clone(),
        })
    }

    pub fn batch_totals(&self) -> &DataLoader<BatchTotalsLoader, HashMapCache> {
        self.loader(&self.batch_totals, || BatchTotalsLoader {
            service: self.services.clearing.clone(),
            principal: self.principal.clone(),
        })
    }

    fn visible<E>(&self) -> VisibleLoader<E>
    where
        E: SharedEntity,
        E::Model: FromQueryResult + Clone + Send + Sync + 'static,
    {
        VisibleLoader {
            db: self.services.db.clone(),
            principal: self.principal.clone(),
            entity: PhantomData,
        }
    }

    /// The caller's received shares, read once per request (each time on a long-lived connection).
    pub async fn received_shares(
        &self,
        service: &MasterDataService,
        principal: &Principal,
    ) -> ApiResult<Arc<ReceivedShares>> {
        if !self.caching {
            return Ok(Arc::new(service.received_shares(principal).await?));
        }
        self.received_shares
            .get_or_try_init(|| async { Ok(Arc::new(service.received_shares(principal).await?)) })
            .await
            .cloned()
    }

    /// Loads the organizations a page refers to in one query, so its rows' nested fields hit the cache
    /// whatever the page size (batch windows alone would split large pages into several queries).
    pub async fn prime_organizations(&self, ids: impl IntoIterator<Item = Uuid>) -> ApiResult<()> {
        self.organizations()
            .load_many(ids)
            .await
            .map(drop)
            .map_err(loader_error)
    }

    pub async fn prime_locations(&self, ids: impl IntoIterator<Item = Uuid>) -> ApiResult<()> {
        self.locations()
            .load_many(ids)
            .await
            .map(drop)
            .map_err(loader_error)
    }

    pub async fn organization(&self, id: Uuid) -> ApiResult<Option<organization::Model>> {
        self.organizations()
            .load_one(id)
            .await
            .map_err(loader_error)
    }

    pub async fn location(&self, id: Uuid) -> ApiResult<Option<location::Model>> {
        self.locations().load_one(id).await.map_err(loader_error)
    }

    pub async fn product(&self, id: Uuid) -> ApiResult<Option<product::Model>> {
        self.products().load_one(id).await.map_err(loader_error)
    }

    pub async fn customer(&self, id: Uuid) -> ApiResult<Option<customer::Model>> {
        self.customers().load_one(id).await.map_err(loader_error)
    }

    pub async fn device(&self, id: Uuid) -> ApiResult<Option<device::Model>> {
        self.devices().load_one(id).await.map_err(loader_error)
    }

    /// An order the caller may see.
    pub async fn order(&self, id: Uuid) -> ApiResult<Option<order::Model>> {
        self.orders()
            .load_one(id)
            .await
            .map_err(|err| ApiError::Internal(anyhow::anyhow!("loading orders failed: {err}")))
    }
}

fn loader_error(err: Arc<DbErr>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("loader query failed: {err}"))
}
