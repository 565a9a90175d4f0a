//! Per-request DataLoaders: every nested relation is fetched in one query per kind and request, not one
//! per parent row. Loaders that read shared records apply the caller's visibility like any other query.

use std::{collections::HashMap, marker::PhantomData, sync::Arc};

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

fn visible_loader<E>(
    db: &DatabaseConnection,
    principal: &Principal,
) -> DataLoader<VisibleLoader<E>, HashMapCache>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Clone + Send + Sync + 'static,
{
    cached(VisibleLoader {
        db: db.clone(),
        principal: principal.clone(),
        entity: PhantomData,
    })
}

/// What one request caches: its loaders and the shares granted to the caller.
pub struct RequestScope {
    pub organizations: DataLoader<OrganizationLoader, HashMapCache>,
    pub locations: DataLoader<VisibleLoader<location::Entity>, HashMapCache>,
    pub products: DataLoader<VisibleLoader<product::Entity>, HashMapCache>,
    pub customers: DataLoader<VisibleLoader<customer::Entity>, HashMapCache>,
    pub devices: DataLoader<VisibleLoader<device::Entity>, HashMapCache>,
    pub orders: DataLoader<OrdersLoader, HashMapCache>,
    pub order_lines: DataLoader<OrderLinesLoader, HashMapCache>,
    pub invoices: DataLoader<InvoicesLoader, HashMapCache>,
    pub payments: DataLoader<PaymentsLoader, HashMapCache>,
    pub work_records: DataLoader<WorkRecordsLoader, HashMapCache>,
    pub travel_records: DataLoader<TravelRecordsLoader, HashMapCache>,
    pub payment_entries: DataLoader<PaymentEntriesLoader, HashMapCache>,
    pub batch_totals: DataLoader<BatchTotalsLoader, HashMapCache>,
    /// Clearing manifests served in this request (at most one: each may be megabytes).
    pub manifests_served: std::sync::atomic::AtomicUsize,
    received_shares: OnceCell<Arc<ReceivedShares>>,
    /// Off for a long-lived connection: what it is shown must be read when it is shown.
    caching: bool,
}

impl RequestScope {
    pub fn new(services: &Services, principal: &Principal) -> Self {
        let db = &services.db;
        let financial = || (services.financial.clone(), principal.clone());
        Self {
            organizations: cached(OrganizationLoader(db.clone())),
            locations: visible_loader(db, principal),
            products: visible_loader(db, principal),
            customers: visible_loader(db, principal),
            devices: visible_loader(db, principal),
            orders: {
                let (service, principal) = financial();
                cached(OrdersLoader { service, principal })
            },
            order_lines: {
                let (service, principal) = financial();
                cached(OrderLinesLoader { service, principal })
            },
            invoices: {
                let (service, principal) = financial();
                cached(InvoicesLoader { service, principal })
            },
            payments: {
                let (service, principal) = financial();
                cached(PaymentsLoader { service, principal })
            },
            work_records: cached(WorkRecordsLoader {
                service: services.work.clone(),
                principal: principal.clone(),
            }),
            travel_records: cached(TravelRecordsLoader {
                service: services.logistics.clone(),
                principal: principal.clone(),
            }),
            payment_entries: cached(PaymentEntriesLoader {
                service: services.clearing.clone(),
                principal: principal.clone(),
            }),
            batch_totals: cached(BatchTotalsLoader {
                service: services.clearing.clone(),
                principal: principal.clone(),
            }),
            manifests_served: Default::default(),
            received_shares: OnceCell::new(),
            caching: true,
        }
    }

    /// A scope for a WebSocket connection: batching without caching, so each delivery reads the
    /// records (and the shares that decide what is visible) as they are at delivery time.
    pub fn uncached(services: &Services, principal: &Principal) -> Self {
        let scope = Self {
            caching: false,
            ..Self::new(services, principal)
        };
        scope.organizations.enable_all_cache(false);
        scope.locations.enable_all_cache(false);
        scope.products.enable_all_cache(false);
        scope.customers.enable_all_cache(false);
        scope.order_lines.enable_all_cache(false);
        scope.invoices.enable_all_cache(false);
        scope.payments.enable_all_cache(false);
        scope.devices.enable_all_cache(false);
        scope.orders.enable_all_cache(false);
        scope.work_records.enable_all_cache(false);
        scope.travel_records.enable_all_cache(false);
        scope.payment_entries.enable_all_cache(false);
        scope.batch_totals.enable_all_cache(false);
        scope
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
        self.organizations
            .load_many(ids)
            .await
            .map(drop)
            .map_err(loader_error)
    }

    pub async fn prime_locations(&self, ids: impl IntoIterator<Item = Uuid>) -> ApiResult<()> {
        self.locations
            .load_many(ids)
            .await
            .map(drop)
            .map_err(loader_error)
    }

    pub async fn organization(&self, id: Uuid) -> ApiResult<Option<organization::Model>> {
        self.organizations.load_one(id).await.map_err(loader_error)
    }

    pub async fn location(&self, id: Uuid) -> ApiResult<Option<location::Model>> {
        self.locations.load_one(id).await.map_err(loader_error)
    }

    pub async fn product(&self, id: Uuid) -> ApiResult<Option<product::Model>> {
        self.products.load_one(id).await.map_err(loader_error)
    }

    pub async fn customer(&self, id: Uuid) -> ApiResult<Option<customer::Model>> {
        self.customers.load_one(id).await.map_err(loader_error)
    }

    pub async fn device(&self, id: Uuid) -> ApiResult<Option<device::Model>> {
        self.devices.load_one(id).await.map_err(loader_error)
    }

    /// An order the caller may see.
    pub async fn order(&self, id: Uuid) -> ApiResult<Option<order::Model>> {
        self.orders
            .load_one(id)
            .await
            .map_err(|err| ApiError::Internal(anyhow::anyhow!("loading orders failed: {err}")))
    }
}

fn loader_error(err: Arc<DbErr>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("loader query failed: {err}"))
}
