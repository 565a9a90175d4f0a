//! Who is asking: the hub's signing key, partner tokens (JWT, EdDSA) and the resulting [`Principal`].

mod cache;
pub mod device_tokens;
pub(crate) mod keys;
mod principal;
mod tokens;
mod verified;

pub use cache::{AccessCache, AccessKey, Credential, DEFAULT_TTL as ACCESS_CACHE_TTL};
pub use keys::{KeyError, SigningKey, generate_secret_file, generate_signing_key_file};
pub use principal::{Actor, Principal, Role};
pub use tokens::{MAX_TOKEN_TTL, MintedToken, PartnerClaims, TokenIssuer};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::error::{ApiError, ApiResult};

/// An authenticated caller, the rows it was authenticated with, and the end of its token's validity.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub credential: Arc<Credential>,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    fn new(principal: Principal, credential: Arc<Credential>, exp: i64) -> Self {
        Self {
            principal,
            credential,
            expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

/// Turns a bearer token into a [`Principal`]. A partner token's signature and claims are verified
/// once per access-cache window (`verified`); the member's or device's rows come from this replica's
/// [`AccessCache`] (see there for how long a removal or a revocation may take to reach another
/// replica), else from the database.
#[derive(Clone)]
pub struct Authenticator {
    issuer: TokenIssuer,
    access: Arc<AccessCache>,
    verified: Arc<verified::VerifiedTokens>,
}

impl Authenticator {
    pub fn new(issuer: TokenIssuer, access: Arc<AccessCache>) -> Self {
        let verified = Arc::new(verified::VerifiedTokens::new(access.ttl()));
        Self {
            issuer,
            access,
            verified,
        }
    }

    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        bearer: Option<&str>,
    ) -> ApiResult<Principal> {
        Ok(self.authenticate_session(db, bearer).await?.principal)
    }

    /// Like [`Self::authenticate`], and also says until when the token is valid: a long-lived
    /// connection (a subscription) must end when its token does.
    pub async fn authenticate_session(
        &self,
        db: &DatabaseConnection,
        bearer: Option<&str>,
    ) -> ApiResult<Session> {
        let token = bearer.ok_or(ApiError::Unauthenticated)?;
        if device_tokens::claims_device_issuer(token) {
            return self.authenticate_device(db, token).await;
        }
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims = self.issuer.verify(token).map_err(|reason| {
                    // The reason helps an operator; the caller only learns "unauthenticated".
                    tracing::info!(%reason, "token refused");
                    ApiError::Unauthenticated
                })?;
                self.verified.insert(token, &claims);
                claims
            }
        };
        let credential = self.member(db, claims.sub).await?;
        let Some(credential) = credential else {
            tracing::info!(member = %claims.sub, "token refused: member no longer exists");
            return Err(ApiError::Unauthenticated);
        };
        let Credential::Member {
            member,
            organization,
        } = &*credential
        else {
            return Err(ApiError::Unauthenticated);
        };
        if member.organization_id != claims.org {
            tracing::info!(member = %claims.sub, "token refused: organization mismatch");
            return Err(ApiError::Unauthenticated);
        }
        let principal = Principal {
            actor: Actor::Member(member.id),
            organization_id: organization.id,
            organization_kind: organization.kind,
            // A token never grants more than the member holds now.
            role: Role::from(claims.role).least(Role::from(member.role)),
            token_id: Some(claims.jti),
        };
        Ok(Session::new(principal, credential, claims.exp))
    }

    /// A device's own token, verified with its registered key; the device must be ACTIVE now, so a
    /// revoked device is stopped at its next request.
    async fn authenticate_device(
        &self,
        db: &DatabaseConnection,
        token: &str,
    ) -> ApiResult<Session> {
        let refuse = |reason: &str| {
            tracing::info!(%reason, "device token refused");
            ApiError::Unauthenticated
        };
        let device_id =
            device_tokens::named_device(token).ok_or_else(|| refuse("no device id in kid"))?;
        let credential = self
            .device(db, device_id)
            .await?
            .ok_or_else(|| refuse("unknown device"))?;
        let Credential::Device {
            device,
            organization,
        } = &*credential
        else {
            return Err(refuse("unknown device"));
        };
        if device.status != entities::device::DeviceStatus::Active {
            return Err(refuse("device revoked"));
        }
        let claims =
            device_tokens::verify(token, device.id, &device.public_key, self.issuer.audience())
                .map_err(|reason| refuse(&reason))?;
        let principal = Principal {
            actor: Actor::Device(device.id),
            organization_id: organization.id,
            organization_kind: organization.kind,
            role: Role::Device,
            token_id: claims.jti,
        };
        Ok(Session::new(principal, credential.clone(), claims.exp))
    }

    /// A member and its organization: from the cache, else one joined SELECT (then cached).
    async fn member(
        &self,
        db: &DatabaseConnection,
        id: uuid::Uuid,
    ) -> ApiResult<Option<Arc<Credential>>> {
        self.cached(AccessKey::Member(id), || async move {
            let found = entities::member::Entity::find_by_id(id)
                .find_also_related(entities::organization::Entity)
                .one(db)
                .await?;
            Ok(match found {
                Some((member, Some(organization))) => Some(Credential::Member {
                    member,
                    organization,
                }),
                _ => None,
            })
        })
        .await
    }

    /// A device and its owner: from the cache, else one joined SELECT (then cached, revoked or not).
    async fn device(
        &self,
        db: &DatabaseConnection,
        id: uuid::Uuid,
    ) -> ApiResult<Option<Arc<Credential>>> {
        self.cached(AccessKey::Device(id), || async move {
            let found = entities::device::Entity::find_by_id(id)
                .find_also_related(entities::organization::Entity)
                .one(db)
                .await?;
            Ok(match found {
                Some((device, Some(organization))) => Some(Credential::Device {
                    device,
                    organization,
                }),
                _ => None,
            })
        })
        .await
    }

    /// The cached credential for `key`, else what `read` finds (cached unless it overlapped a change).
    async fn cached<F, Fut>(&self, key: AccessKey, read: F) -> ApiResult<Option<Arc<Credential>>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ApiResult<Option<Credential>>>,
    {
        if let Some(credential) = self.access.get(key) {
            return Ok(Some(credential));
        }
        let ticket = self.access.begin_read();
        let Some(first) = read().await?.map(Arc::new) else {
            return Ok(None);
        };
        if self.access.insert(ticket, key, first.clone()) {
            return Ok(Some(first));
        }
        // A change committed during that read may have made it stale; this read starts after it.
        let ticket = self.access.begin_read();
        let second = read().await?.map(Arc::new);
        if let Some(credential) = &second {
            self.access.insert(ticket, key, credential.clone());
        }
        Ok(second)
    }

    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }
}
