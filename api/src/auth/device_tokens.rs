//! Device tokens: a checkout device signs its own short-lived JWT with the ed25519 key registered for
//! it. Claims: `kid` (header) = `sub` = device id, `iss` = `device:<id>`, `aud` = the hub's audience,
//! `iat` not in the future, `exp - iat` at most 300 s. Partner and device tokens never share a rule.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest lifetime of a device token.
pub const MAX_DEVICE_TOKEN_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY_SECS: i64 = 30;
pub const DEVICE_ISSUER_PREFIX: &str = "device:";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceClaims {
    pub iss: String,
    pub sub: Uuid,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

/// Whether a bearer token claims to come from a device (the `iss` prefix; nothing is trusted yet).
pub fn claims_device_issuer(token: &str) -> bool {
    token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|claims| {
            claims
                .get("iss")
                .and_then(|iss| iss.as_str())
                .map(|iss| iss.starts_with(DEVICE_ISSUER_PREFIX))
        })
        .unwrap_or(false)
}

/// The device the token names in its `kid` header (unverified: only selects the key to verify with).
pub fn named_device(token: &str) -> Option<Uuid> {
    jsonwebtoken::decode_header(token)
        .ok()?
        .kid
        .and_then(|kid| Uuid::parse_str(&kid).ok())
}

/// Verifies a device token with the device's registered public key.
pub fn verify(
    token: &str,
    device_id: Uuid,
    public_key: &[u8],
    audience: &str,
) -> Result<DeviceClaims, String> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.algorithms = vec![Algorithm::EdDSA];
    validation.set_audience(&[audience]);
    validation.set_issuer(&[format!("{DEVICE_ISSUER_PREFIX}{device_id}")]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = false;
    validation.leeway = LEEWAY_SECS as u64;
    let claims = jsonwebtoken::decode::<DeviceClaims>(
        token,
        &DecodingKey::from_ed_der(public_key),
        &validation,
    )
    .map_err(|err| err.to_string())?
    .claims;
    if claims.sub != device_id {
        return Err("sub is not the device".into());
    }
    let lifetime = claims.exp - claims.iat;
    if lifetime <= 0 || lifetime > MAX_DEVICE_TOKEN_LIFETIME_SECS {
        return Err(format!(
            "lifetime {lifetime} s is outside 1..={MAX_DEVICE_TOKEN_LIFETIME_SECS} s"
        ));
    }
    if claims.iat > Utc::now().timestamp() + LEEWAY_SECS {
        return Err("issued in the future".into());
    }
    Ok(claims)
}
