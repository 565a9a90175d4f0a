//! Identity rules, independent of GraphQL: each method takes the caller and asks the policy first.

use std::time::Duration;

use chrono::Utc;
use entities::{
    member::{self, MemberRole},
    organization::{self, OrganizationKind},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::LockType,
};
use uuid::Uuid;

use crate::auth::{AccessKey, Credential};
use crate::{
    auth::{MintedToken, Principal, TokenIssuer},
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::write_transaction,
    error::{ApiError, ApiResult},
    policy::{Action, authorize},
};

/// Default lifetime of a token minted without an explicit one.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
const MAX_NAME_CHARS: usize = 200;

/// The caller as the hub sees it.
pub struct Whoami {
    pub member: Option<member::Model>,
    pub device: Option<entities::device::Model>,
    pub organization: organization::Model,
    pub role: crate::auth::Role,
}

#[derive(Clone)]
pub struct IdentityService {
    db: DatabaseConnection,
    issuer: TokenIssuer,
    /// Announces removals to every replica's access cache.
    bus: crate::events::Bus,
}

impl IdentityService {
    pub fn new(db: DatabaseConnection, issuer: TokenIssuer, bus: crate::events::Bus) -> Self {
        Self { db, issuer, bus }
    }

    /// Who the caller is: its member record or device, and its organization. `credential` is what
    /// authentication loaded for this request; given, nothing is read again.
    pub async fn whoami(
        &self,
        principal: &Principal,
        credential: Option<&Credential>,
    ) -> ApiResult<Whoami> {
        authorize(principal, Action::ReadSelf)?;
        match credential {
            Some(Credential::Member {
                member,
                organization,
            }) if principal.member_id() == Some(member.id) => {
                return Ok(Whoami {
                    member: Some(member.clone()),
                    device: None,
                    organization: organization.clone(),
                    role: principal.role,
                });
            }
            Some(Credential::Device {
                device,
                organization,
            }) if principal.device_id() == Some(device.id) => {
                return Ok(Whoami {
                    member: None,
                    device: Some(device.clone()),
                    organization: organization.clone(),
                    role: principal.role,
                });
            }
            _ => {}
        }
        let member = match principal.member_id() {
            Some(id) => Some(self.own_member(principal, id).await?),
            None => None,
        };
        let device = match principal.device_id() {
            Some(id) => {
                entities::device::Entity::find_by_id(id)
                    .one(&self.db)
                    .await?
            }
            None => None,
        };
        let organization = organization::Entity::find_by_id(principal.organization_id)
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("organization"))?;
        Ok(Whoami {
            member,
            device,
            organization,
            role: principal.role,
        })
    }

    /// The directory: names and kinds of all organizations, ordered by name.
    pub async fn directory(
        &self,
        principal: &Principal,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<organization::Model>> {
        authorize(principal, Action::ReadDirectory)?;
        let by_name = Ordering {
            name: "name",
            column: organization::Column::Name,
            descending: false,
            key: |org: &organization::Model| SortKey::Text(org.name.clone()),
        };
        paginate(
            &self.db,
            organization::Entity::find(),
            organization::Column::Id,
            |org| org.id,
            by_name,
            args,
            with_total,
        )
        .await
    }

    /// A directory entry; every organization's name and kind is visible to every member.
    pub async fn organization(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> ApiResult<organization::Model> {
        authorize(principal, Action::ReadDirectory)?;
        organization::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("organization"))
    }

    /// Creates a partner organization with its first ADMIN member (tokens for that member are minted by
    /// the operator with `hub token create`: no organization issues another's credentials).
    pub async fn create_organization(
        &self,
        principal: &Principal,
        name: &str,
        kind: OrganizationKind,
        admin_name: &str,
    ) -> ApiResult<(organization::Model, member::Model)> {
        authorize(principal, Action::CreateOrganization)?;
        let name = validate_name("name", name)?;
        let admin_name = validate_name("adminName", admin_name)?;
        if kind == OrganizationKind::Retailer {
            return Err(ApiError::validation(
                "kind",
                "there is exactly one retailer: the platform operator",
            ));
        }
        let created = write_transaction(&self.db, |txn| {
            Box::pin(async move {
                let organization = insert_organization(txn, &name, kind).await?;
                let admin =
                    insert_member(txn, organization.id, &admin_name, MemberRole::Admin).await?;
                Ok((organization, admin))
            })
        })
        .await?;
        tracing::info!(organization = %created.0.id, kind = ?kind, "organization created");
        Ok(created)
    }

    /// Members of the caller's own organization, by name.
    pub async fn members(&self, principal: &Principal) -> ApiResult<Vec<member::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        Ok(member::Entity::find()
            .filter(member::Column::OrganizationId.eq(principal.organization_id))
            .order_by_asc(member::Column::Name)
            .all(&self.db)
            .await?)
    }

    /// A member of the caller's own organization; members of others answer NOT_FOUND.
    pub async fn member(&self, principal: &Principal, id: Uuid) -> ApiResult<member::Model> {
        authorize(principal, Action::ReadOwnOrganization)?;
        self.own_member(principal, id).await
    }

    pub async fn create_member(
        &self,
        principal: &Principal,
        name: &str,
        role: MemberRole,
    ) -> ApiResult<member::Model> {
        authorize(principal, Action::ManageMembers)?;
        let name = validate_name("name", name)?;
        let organization = principal.organization_id;
        // In a write transaction, so the mutation's audit entry commits with the member.
        crate::db::write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let member = insert_member(txn, organization, &name, role).await?;
                crate::audit::touch(crate::records::RecordKind::Member, member.id);
                Ok(member)
            })
        })
        .await
    }

    /// Removes a member; its tokens stop working at once. The last ADMIN cannot be removed.
    pub async fn remove_member(&self, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
        authorize(principal, Action::ManageMembers)?;
        let organization_id = principal.organization_id;
        // Announced after the commit, or after a failure or cancellation that may follow it.
        let _announce = self.bus.announce_on_drop(AccessKey::Member(id));
        write_transaction(&self.db, |txn| {
            Box::pin(async move {
                // Removals in one organization take turns on its row (SQLite: one writer), so two
                // concurrent removals cannot both count the other ADMIN and leave none.
                organization::Entity::find_by_id(organization_id)
                    .lock(LockType::NoKeyUpdate)
                    .one(txn)
                    .await?;
                let member = member::Entity::find_by_id(id)
                    .filter(member::Column::OrganizationId.eq(organization_id))
                    .one(txn)
                    .await?
                    .ok_or(ApiError::not_found("member"))?;
                if member.role == MemberRole::Admin {
                    let admins = member::Entity::find()
                        .filter(member::Column::OrganizationId.eq(organization_id))
                        .filter(member::Column::Role.eq(MemberRole::Admin))
                        .count(txn)
                        .await?;
                    if admins <= 1 {
                        return Err(ApiError::Conflict(
                            "the last ADMIN of an organization cannot be removed".into(),
                        ));
                    }
                }
                member::Entity::delete_by_id(id).exec(txn).await?;
                Ok(id)
            })
        })
        .await?;
        Ok(id)
    }

    /// Mints a token for a member of the caller's own organization.
    pub async fn issue_token(
        &self,
        principal: &Principal,
        member_id: Uuid,
        ttl: Option<Duration>,
    ) -> ApiResult<(member::Model, MintedToken)> {
        authorize(principal, Action::IssueTokens)?;
        let ttl = validate_ttl(ttl, self.issuer.max_lifetime())?;
        let member = self.own_member(principal, member_id).await?;
        let minted = self.mint(&member, ttl)?;
        tracing::info!(member = %member.id, token_id = %minted.token_id, "token issued");
        Ok((member, minted))
    }

    async fn own_member(&self, principal: &Principal, id: Uuid) -> ApiResult<member::Model> {
        member::Entity::find_by_id(id)
            .filter(member::Column::OrganizationId.eq(principal.organization_id))
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("member"))
    }

    fn mint(&self, member: &member::Model, ttl: Duration) -> ApiResult<MintedToken> {
        self.issuer
            .mint(member.id, member.organization_id, member.role, ttl)
            .map_err(|err| ApiError::Internal(err.into()))
    }

    // ---- operator paths (command line and bootstrap): trusted, no principal ----

    /// Finds an organization by UUID or exact name.
    pub async fn find_organization(&self, reference: &str) -> ApiResult<organization::Model> {
        let by_id = match Uuid::parse_str(reference) {
            Ok(id) => organization::Entity::find_by_id(id).one(&self.db).await?,
            Err(_) => None,
        };
        let found = match by_id {
            Some(org) => Some(org),
            None => {
                organization::Entity::find()
                    .filter(organization::Column::Name.eq(reference))
                    .one(&self.db)
                    .await?
            }
        };
        found.ok_or(ApiError::not_found("organization"))
    }

    /// Returns the member `name` of an organization, creating it with `role` if absent; an existing
    /// member keeps its role only when it matches, so the command line never silently re-roles someone.
    pub async fn ensure_member(
        &self,
        organization_id: Uuid,
        name: &str,
        role: MemberRole,
    ) -> ApiResult<member::Model> {
        let name = validate_name("member", name)?;
        let existing = member::Entity::find()
            .filter(member::Column::OrganizationId.eq(organization_id))
            .filter(member::Column::Name.eq(name.as_str()))
            .one(&self.db)
            .await?;
        match existing {
            Some(member) if member.role == role => Ok(member),
            Some(member) => Err(ApiError::Conflict(format!(
                "member {} already exists with role {:?}",
                member.name, member.role
            ))),
            None => insert_member(&self.db, organization_id, &name, role).await,
        }
    }

    pub fn mint_for(
        &self,
        member: &member::Model,
        ttl: Option<Duration>,
    ) -> ApiResult<MintedToken> {
        let ttl = validate_ttl(ttl, self.issuer.max_lifetime())?;
        self.mint(member, ttl)
    }

    /// Creates the retailer organization and its first admin once; later calls return them.
    /// Runs under the migration lock, so concurrent replicas create them exactly once.
    pub async fn ensure_retailer<C: ConnectionTrait>(
        db: &C,
        retailer_name: &str,
    ) -> ApiResult<(organization::Model, member::Model)> {
        let retailer = match organization::Entity::find()
            .filter(organization::Column::Kind.eq(OrganizationKind::Retailer))
            .one(db)
            .await?
        {
            Some(org) => org,
            None => {
                let name = validate_name("retailerName", retailer_name)?;
                insert_organization(db, &name, OrganizationKind::Retailer).await?
            }
        };
        let admin = match member::Entity::find()
            .filter(member::Column::OrganizationId.eq(retailer.id))
            .filter(member::Column::Name.eq(BOOTSTRAP_ADMIN))
            .one(db)
            .await?
        {
            Some(admin) => admin,
            None => insert_member(db, retailer.id, BOOTSTRAP_ADMIN, MemberRole::Admin).await?,
        };
        Ok((retailer, admin))
    }
}

/// Name of the retailer's first administrator, created on first start.
pub const BOOTSTRAP_ADMIN: &str = "admin";

async fn insert_organization<C: ConnectionTrait>(
    db: &C,
    name: &str,
    kind: OrganizationKind,
) -> ApiResult<organization::Model> {
    let model = organization::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_owned()),
        kind: Set(kind),
        created_at: Set(Utc::now()),
        version: Set(1),
    };
    organization::Entity::insert(model)
        .exec_with_returning(db)
        .await
        .map_err(ApiError::from)
}

async fn insert_member<C: ConnectionTrait>(
    db: &C,
    organization_id: Uuid,
    name: &str,
    role: MemberRole,
) -> ApiResult<member::Model> {
    let model = member::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(organization_id),
        name: Set(name.to_owned()),
        role: Set(role),
        created_at: Set(Utc::now()),
    };
    member::Entity::insert(model)
        .exec_with_returning(db)
        .await
        .map_err(ApiError::from)
}

/// Names are trimmed, non-empty, at most 200 characters and free of control characters.
fn validate_name(field: &'static str, raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn validate_ttl(ttl: Option<Duration>, max: Duration) -> ApiResult<Duration> {
    match ttl {
        None => Ok(DEFAULT_TOKEN_TTL.min(max)),
        Some(ttl) if ttl.is_zero() || ttl > max => Err(ApiError::validation(
            "ttlSeconds",
            format!("must be between 1 and {} seconds", max.as_secs()),
        )),
        Some(ttl) => Ok(ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::MAX_TOKEN_TTL;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(
            validate_name("name", "  Acme  ").ok().as_deref(),
            Some("Acme")
        );
        assert!(validate_name("name", "   ").is_err());
        assert!(validate_name("name", "a\u{7}b").is_err());
        assert!(validate_name("name", &"x".repeat(201)).is_err());
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(
            validate_ttl(None, MAX_TOKEN_TTL).ok(),
            Some(DEFAULT_TOKEN_TTL)
        );
        assert!(validate_ttl(Some(Duration::ZERO), MAX_TOKEN_TTL).is_err());
        assert!(validate_ttl(Some(MAX_TOKEN_TTL + Duration::from_secs(1)), MAX_TOKEN_TTL).is_err());
        let short = Duration::from_secs(600);
        assert_eq!(validate_ttl(None, short).ok(), Some(short));
        assert!(validate_ttl(Some(Duration::from_secs(601)), short).is_err());
    }
}
