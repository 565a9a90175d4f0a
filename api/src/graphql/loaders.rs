//! Per-request DataLoaders: every nested relation is fetched in one query per kind and request, not one
//! per parent row. Loaders that read shared records apply the caller's visibility like any other query.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use entities::{location, organization};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    master_data::MasterDataService,
    policy::{Need, ReceivedShares, visible},
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

/// Locations by id, only those the caller may see.
pub struct LocationLoader {
    db: DatabaseConnection,
    principal: Principal,
}

impl Loader<Uuid> for LocationLoader {
    type Value = location::Model;
    type Error = Arc<DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = location::Entity::find()
            .filter(location::Column::Id.is_in(keys.iter().copied()))
            .filter(visible::<location::Entity>(&self.principal, Need::Read))
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// What one request caches: its loaders and the shares granted to the caller.
pub struct RequestScope {
    pub organizations: DataLoader<OrganizationLoader, HashMapCache>,
    pub locations: DataLoader<LocationLoader, HashMapCache>,
    received_shares: OnceCell<ReceivedShares>,
}

impl RequestScope {
    pub fn new(db: &DatabaseConnection, principal: &Principal) -> Self {
        Self {
            organizations: DataLoader::with_cache(
                OrganizationLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            locations: DataLoader::with_cache(
                LocationLoader {
                    db: db.clone(),
                    principal: principal.clone(),
                },
                tokio::spawn,
                HashMapCache::default(),
            ),
            received_shares: OnceCell::new(),
        }
    }

    /// The caller's received shares, read once per request.
    pub async fn received_shares(
        &self,
        service: &MasterDataService,
        principal: &Principal,
    ) -> ApiResult<&ReceivedShares> {
        self.received_shares
            .get_or_try_init(|| service.received_shares(principal))
            .await
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
}

fn loader_error(err: Arc<DbErr>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("loader query failed: {err}"))
}
