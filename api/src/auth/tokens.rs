//! Partner tokens: JWTs signed by the hub with EdDSA, verified with every claim required.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::member::MemberRole;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{device_tokens::refuse_critical_extensions, keys::SigningKey};

/// Default longest lifetime (`exp - iat`) of a partner token, minted or accepted
/// (`--max-token-lifetime-secs`).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Clock skew tolerated on `exp` and `nbf` (the design allows at most 30 s).
const LEEWAY_SECS: u64 = 30;

/// The claims of a partner token; every field is required when decoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartnerClaims {
    pub iss: String,
    pub aud: String,
    /// The member (person or partner system) the token speaks for.
    pub sub: Uuid,
    pub org: Uuid,
    pub role: MemberRole,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

#[derive(Debug, Clone)]
pub struct MintedToken {
    pub token: String,
    pub token_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Mints and verifies partner tokens with the hub's key.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    audience: String,
    max_lifetime: Duration,
}

impl TokenIssuer {
    /// `max_lifetime` bounds both what the hub mints and what it accepts: a token claiming a longer
    /// life (a far-future `exp`, say) is refused even though its signature is good.
    pub fn new(key: &SigningKey, audience: &str, max_lifetime: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Pinned to EdDSA: `alg: none` and HS256-with-the-public-key tokens fail the algorithm check.
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_audience(&[audience]);
        validation.set_issuer(&[audience]);
        // jsonwebtoken accepts a token lacking aud/iss/nbf unless they are required explicitly.
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_ed_der(key.pkcs8_der()),
            decoding: DecodingKey::from_ed_der(&key.public_key()),
            validation,
            audience: audience.to_owned(),
            max_lifetime,
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The longest lifetime a token may be minted with or have when presented.
    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    pub fn mint(
        &self,
        member_id: Uuid,
        organization_id: Uuid,
        role: MemberRole,
        ttl: Duration,
    ) -> Result<MintedToken, jsonwebtoken::errors::Error> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl.min(self.max_lifetime))
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        let expires_at = now + ttl;
        let claims = PartnerClaims {
            iss: self.audience.clone(),
            aud: self.audience.clone(),
            sub: member_id,
            org: organization_id,
            role,
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)?;
        Ok(MintedToken {
            token,
            token_id: claims.jti,
            expires_at,
        })
    }

    /// Verifies header, signature, algorithm and every claim, and that the token's lifetime is within
    /// the accepted maximum and was not issued in the future; the error says why, for the log only.
    pub fn verify(&self, token: &str) -> Result<PartnerClaims, String> {
        refuse_critical_extensions(token)?;
        let claims = jsonwebtoken::decode::<PartnerClaims>(token, &self.decoding, &self.validation)
            .map_err(|err| err.to_string())?
            .claims;
        let lifetime = claims.exp.saturating_sub(claims.iat);
        let max = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if lifetime <= 0 || lifetime > max {
            return Err(format!("lifetime {lifetime} s is outside 1..={max} s"));
        }
        if claims.iat > Utc::now().timestamp() + LEEWAY_SECS as i64 {
            return Err("issued in the future".into());
        }
        Ok(claims)
    }
}
