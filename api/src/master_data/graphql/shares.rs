//! Shares (grants of access to another organization): the GraphQL node type and its enums, the
//! granted and received share queries and the grant and revoke mutations.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::share;

use super::{optional_id, organization, service};
use crate::{
    graphql::{
        ContextExt,
        relay::{decode_id, encode_id},
    },
    identity::graphql::Organization,
    master_data::service::NewShare,
    records::RecordKind,
};

/// The kind of record a share of `resource` names.
fn record_kind(resource: share::ResourceType) -> RecordKind {
    match resource {
        share::ResourceType::Location => RecordKind::Location,
        share::ResourceType::Product => RecordKind::Product,
        share::ResourceType::Customer => RecordKind::Customer,
        share::ResourceType::Device => RecordKind::Device,
    }
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

// ---- node type ----

/// A grant by an owner to another organization, visible to both.
pub struct Share(pub share::Model);

#[Object]
impl Share {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Share, self.0.id)
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
        let kind = record_kind(self.0.resource_type);
        self.0.record_id.map(|id| encode_id(kind, id))
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

#[derive(Default)]
pub struct ShareQuery;

#[Object]
impl ShareQuery {
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

#[derive(Default)]
pub struct ShareMutation;

#[Object]
impl ShareMutation {
    /// Shares one record, or every record of a type, with another organization (ADMIN of the owner).
    async fn grant_share(
        &self,
        ctx: &Context<'_>,
        input: GrantShareInput,
    ) -> async_graphql::Result<SharePayload> {
        let resource: share::ResourceType = input.resource_type.into();
        let new = NewShare {
            grantee_id: decode_id("granteeId", RecordKind::Organization, &input.grantee_id)?,
            resource,
            record_id: optional_id("recordId", record_kind(resource), input.record_id.as_ref())?,
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
        let id = decode_id("id", RecordKind::Share, &input.id)?;
        let revoked = service(ctx).revoke_share(ctx.principal()?, id).await?;
        Ok(RevokeSharePayload {
            revoked_share_id: encode_id(RecordKind::Share, revoked),
        })
    }
}
