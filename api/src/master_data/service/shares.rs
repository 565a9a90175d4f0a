//! Shares: the input type and the service methods that grant, revoke and list an organization's
//! shares, and read the shares it received (they decide which sensitive fields it may read).

use crate::db::write_transaction;
use chrono::Utc;
use entities::{
    customer, device, location, organization, product,
    share::{self, ResourceType, ShareAccess},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder,
};
use serde::Serialize;
use uuid::Uuid;

use super::MasterDataService;
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    idempotency::{IdempotencyKey, run_once},
    policy::{Action, ReceivedShares, SharedEntity, authorize, resource_name},
};

// ---- inputs (plain data; the GraphQL layer converts into these) ----

#[derive(Serialize)]
pub struct NewShare {
    pub grantee_id: Uuid,
    pub resource: ResourceType,
    pub record_id: Option<Uuid>,
    pub access: ShareAccess,
    pub include_sensitive: bool,
}

impl MasterDataService {
    /// Shares granted to the caller's organization: which sensitive fields it may read.
    pub async fn received_shares(&self, principal: &Principal) -> ApiResult<ReceivedShares> {
        let shares = share::Entity::find()
            .filter(share::Column::GranteeOrganizationId.eq(principal.organization_id))
            .all(&self.db)
            .await?;
        Ok(ReceivedShares::new(shares))
    }

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
        let model = share::ActiveModel {
            owner_organization_id: Set(principal.organization_id),
            grantee_organization_id: Set(input.grantee_id),
            resource_type: Set(input.resource),
            record_id: Set(input.record_id),
            access: Set(input.access),
            include_sensitive: Set(input.include_sensitive),
            created_at: Set(Utc::now()),
            ..Default::default()
        };
        let key = idempotency_key
            .map(|key| IdempotencyKey::new(principal.organization_id, "grantShare", key, &input))
            .transpose()?;
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                // A grant that exists is refused by the unique index (CONFLICT), also when two
                // grants race; a retry with the same key gets the share it made.
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
        let owner = principal.organization_id;
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let result = share::Entity::delete_many()
                    .filter(share::Column::Id.eq(id))
                    .filter(share::Column::OwnerOrganizationId.eq(owner))
                    .exec(txn)
                    .await?;
                // Nothing deleted: rolled back, so the refusal leaves no audit entry either.
                if result.rows_affected == 1 {
                    Ok(id)
                } else {
                    Err(ApiError::not_found("share"))
                }
            })
        })
        .await
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
