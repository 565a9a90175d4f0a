//! Device tokens: a checkout device signs its own short-lived JWT with the ed25519 key registered for
//! it, and the hub verifies it with that key. Shared by the hub, the reader agent, the benchmark and the
//! tests, without depending on the hub.
//! Claims: `kid` (header) = `sub` = device id, `iss` = `device:<id>`, `aud` = the hub's audience,
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

/// Refuses a token whose header lists critical extensions (`crit`): RFC 7515 requires a recipient to
/// reject a JWS naming extensions it does not understand, and neither kind of hub token uses any.
pub fn refuse_critical_extensions(token: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|err| err.to_string())?;
    match header.crit {
        Some(_) => {
            Err("the header names critical extensions (crit) the hub does not support".into())
        }
        None => Ok(()),
    }
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
    refuse_critical_extensions(token)?;
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

/// What a device does: signs its own token with its key, valid for `lifetime_secs` (at most
/// [`MAX_DEVICE_TOKEN_LIFETIME_SECS`]) from now, with a fresh `jti`.
pub fn sign(
    device_id: Uuid,
    key: &ed25519_dalek::SigningKey,
    audience: &str,
    lifetime_secs: i64,
) -> Result<String, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    if !(1..=MAX_DEVICE_TOKEN_LIFETIME_SECS).contains(&lifetime_secs) {
        return Err(format!(
            "lifetime {lifetime_secs} s is outside 1..={MAX_DEVICE_TOKEN_LIFETIME_SECS} s"
        ));
    }
    let now = Utc::now().timestamp();
    let claims = DeviceClaims {
        iss: format!("{DEVICE_ISSUER_PREFIX}{device_id}"),
        sub: device_id,
        aud: audience.to_owned(),
        iat: now,
        exp: now + lifetime_secs,
        jti: Some(Uuid::new_v4()),
    };
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = Some(device_id.to_string());
    let der = key.to_pkcs8_der().map_err(|err| err.to_string())?;
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_device_key_only() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let device = Uuid::new_v4();
        let token = sign(device, &key, "hub", 120);
        let Ok(token) = token else {
            panic!("signs: {token:?}");
        };
        assert!(claims_device_issuer(&token));
        assert_eq!(named_device(&token), Some(device));
        let public = key.verifying_key();
        // The hub stores the raw 32 bytes; verification takes them as the EdDSA key.
        assert!(verify(&token, device, public.as_bytes(), "hub").is_ok());
        assert!(verify(&token, device, public.as_bytes(), "other").is_err());
        assert!(verify(&token, Uuid::new_v4(), public.as_bytes(), "hub").is_err());
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(verify(&token, device, other.verifying_key().as_bytes(), "hub").is_err());
        assert!(sign(device, &key, "hub", 301).is_err());
        assert!(sign(device, &key, "hub", 0).is_err());
    }
}
