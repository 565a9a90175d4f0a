//! Who is asking: the hub's signing key, partner tokens (JWT, EdDSA) and the resulting [`Principal`].

pub(crate) mod keys;
mod principal;
mod tokens;

pub use keys::{KeyError, SigningKey, generate_signing_key_file};
pub use principal::{Principal, Role};
pub use tokens::{MAX_TOKEN_TTL, MintedToken, PartnerClaims, TokenIssuer};

use sea_orm::{DatabaseConnection, EntityTrait};

use crate::error::{ApiError, ApiResult};

/// Turns a bearer token into a [`Principal`], checking it against the database on every request so a
/// removed member or a demoted role takes effect at once.
#[derive(Clone)]
pub struct Authenticator {
    issuer: TokenIssuer,
}

impl Authenticator {
    pub fn new(issuer: TokenIssuer) -> Self {
        Self { issuer }
    }

    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        bearer: Option<&str>,
    ) -> ApiResult<Principal> {
        let token = bearer.ok_or(ApiError::Unauthenticated)?;
        let claims = self.issuer.verify(token).map_err(|reason| {
            // The reason helps an operator; the caller only learns "unauthenticated".
            tracing::info!(%reason, "token refused");
            ApiError::Unauthenticated
        })?;
        let found = entities::member::Entity::find_by_id(claims.sub)
            .find_also_related(entities::organization::Entity)
            .one(db)
            .await?;
        let Some((member, Some(organization))) = found else {
            tracing::info!(member = %claims.sub, "token refused: member no longer exists");
            return Err(ApiError::Unauthenticated);
        };
        if member.organization_id != claims.org {
            tracing::info!(member = %claims.sub, "token refused: organization mismatch");
            return Err(ApiError::Unauthenticated);
        }
        Ok(Principal {
            member_id: member.id,
            organization_id: organization.id,
            organization_kind: organization.kind,
            // A token never grants more than the member holds now.
            role: Role::from(claims.role).least(Role::from(member.role)),
            token_id: claims.jti,
        })
    }

    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }
}
