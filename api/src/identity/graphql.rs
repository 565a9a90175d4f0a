//! GraphQL types and resolvers for identity: thin, they decode IDs and call [`IdentityService`].

use std::time::Duration;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{member, organization};

use super::{IdentityService, service::Whoami};
use crate::graphql::relay::IntoConnection;
use crate::{
    auth::Role,
    graphql::{
        ContextExt,
        relay::{HubConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    records::RecordKind,
};

/// The kind of party an organization is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::organization::OrganizationKind")]
pub enum OrganizationKind {
    Retailer,
    Supplier,
    Logistics,
    FinancialProvider,
    ServiceProvider,
}

/// A directory entry: every authenticated caller may read an organization's name and kind, nothing else.
pub struct Organization(pub organization::Model);

#[Object]
impl Organization {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Organization, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> OrganizationKind {
        self.0.kind.into()
    }
}

impl From<organization::Model> for Organization {
    fn from(model: organization::Model) -> Self {
        Self(model)
    }
}

/// A person or partner system acting for an organization.
pub struct Member(member::Model);

impl From<member::Model> for Member {
    fn from(model: member::Model) -> Self {
        Self(model)
    }
}

#[Object]
impl Member {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Member, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The caller as the hub sees it: a member or a device, of an organization, with a role.
pub struct Viewer(Whoami);

#[Object]
impl Viewer {
    /// The member acting, or null for a device.
    async fn member(&self) -> Option<Member> {
        self.0.member.clone().map(Member)
    }
    /// The checkout device acting, or null for a member.
    async fn device(&self) -> Option<crate::master_data::graphql::Device> {
        self.0
            .device
            .clone()
            .map(crate::master_data::graphql::Device)
    }
    async fn organization(&self) -> Organization {
        self.0.organization.clone().into()
    }
    /// The role this request acts with: a member's token never grants more than the member holds now.
    async fn role(&self) -> Role {
        self.0.role
    }
}

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The authenticated caller: its member record, organization and effective role.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let principal = ctx.principal()?;
        let whoami = ctx
            .data_unchecked::<IdentityService>()
            .whoami(
                principal,
                ctx.data_opt::<std::sync::Arc<crate::auth::Credential>>()
                    .map(|credential| &**credential),
            )
            .await?;
        Ok(Viewer(whoami))
    }

    /// The organization directory (names and kinds), ordered by name.
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<HubConnection<Organization>> {
        let principal = ctx.principal()?;
        let page = ctx
            .data_unchecked::<IdentityService>()
            .directory(
                principal,
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(Organization))
    }

    /// One directory entry.
    async fn organization(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Organization> {
        let principal = ctx.principal()?;
        let id = decode_id("id", RecordKind::Organization, &id)?;
        let org = ctx
            .data_unchecked::<IdentityService>()
            .organization(principal, id)
            .await?;
        Ok(org.into())
    }

    /// Members of the caller's organization.
    async fn members(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Member>> {
        let principal = ctx.principal()?;
        let members = ctx
            .data_unchecked::<IdentityService>()
            .members(principal)
            .await?;
        Ok(members.into_iter().map(Member).collect())
    }
}

#[derive(InputObject)]
pub struct CreateOrganizationInput {
    /// Unique display name, 1 to 200 characters.
    name: String,
    /// Any kind but RETAILER: the retailer is the platform operator and exists once.
    kind: OrganizationKind,
    /// Name of the new organization's first ADMIN member.
    admin_name: String,
}

#[derive(SimpleObject)]
pub struct CreateOrganizationPayload {
    organization: Organization,
    /// The first ADMIN; its token is minted by the operator (`hub token create`), not by another organization.
    admin: Member,
}

#[derive(InputObject)]
pub struct CreateMemberInput {
    /// Unique within the organization, 1 to 200 characters.
    name: String,
    role: Role,
}

#[derive(SimpleObject)]
pub struct CreateMemberPayload {
    member: Member,
}

#[derive(InputObject)]
pub struct RemoveMemberInput {
    member_id: ID,
}

#[derive(SimpleObject)]
pub struct RemoveMemberPayload {
    removed_member_id: ID,
}

#[derive(InputObject)]
pub struct IssueTokenInput {
    /// A member of the caller's own organization.
    member_id: ID,
    /// Lifetime in seconds, 1 to the hub's maximum token lifetime (604800 unless configured; default
    /// 3600).
    ttl_seconds: Option<u32>,
}

#[derive(SimpleObject)]
pub struct IssueTokenPayload {
    /// The bearer token. Shown once; the hub keeps no copy.
    token: String,
    /// The token's `jti`.
    token_id: ID,
    expires_at: DateTime<Utc>,
    member: Member,
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates a partner organization (the retailer's ADMIN only).
    async fn create_organization(
        &self,
        ctx: &Context<'_>,
        input: CreateOrganizationInput,
    ) -> async_graphql::Result<CreateOrganizationPayload> {
        let principal = ctx.principal()?;
        let (organization, admin) = ctx
            .data_unchecked::<IdentityService>()
            .create_organization(principal, &input.name, input.kind.into(), &input.admin_name)
            .await?;
        Ok(CreateOrganizationPayload {
            organization: organization.into(),
            admin: Member(admin),
        })
    }

    /// Adds a member to the caller's organization (ADMIN only).
    async fn create_member(
        &self,
        ctx: &Context<'_>,
        input: CreateMemberInput,
    ) -> async_graphql::Result<CreateMemberPayload> {
        let principal = ctx.principal()?;
        let member = ctx
            .data_unchecked::<IdentityService>()
            .create_member(principal, &input.name, input.role.try_into()?)
            .await?;
        Ok(CreateMemberPayload {
            member: Member(member),
        })
    }

    /// Removes a member of the caller's organization (ADMIN only); its tokens stop working at once.
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        input: RemoveMemberInput,
    ) -> async_graphql::Result<RemoveMemberPayload> {
        let principal = ctx.principal()?;
        let id = decode_id("memberId", RecordKind::Member, &input.member_id)?;
        let removed = ctx
            .data_unchecked::<IdentityService>()
            .remove_member(principal, id)
            .await?;
        Ok(RemoveMemberPayload {
            removed_member_id: encode_id(RecordKind::Member, removed),
        })
    }

    /// Mints a token for a member of the caller's own organization (ADMIN only).
    async fn issue_token(
        &self,
        ctx: &Context<'_>,
        input: IssueTokenInput,
    ) -> async_graphql::Result<IssueTokenPayload> {
        let principal = ctx.principal()?;
        let id = decode_id("memberId", RecordKind::Member, &input.member_id)?;
        let ttl = input
            .ttl_seconds
            .map(|secs| Duration::from_secs(secs.into()));
        let (member, minted) = ctx
            .data_unchecked::<IdentityService>()
            .issue_token(principal, id, ttl)
            .await?;
        Ok(IssueTokenPayload {
            token: minted.token,
            token_id: ID(minted.token_id.to_string()),
            expires_at: minted.expires_at,
            member: Member(member),
        })
    }
}
