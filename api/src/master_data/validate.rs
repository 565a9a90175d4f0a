//! Input rules for master data. Each returns the normalized value or a VALIDATION error naming the field.

use base64::{Engine, engine::general_purpose::STANDARD};

use crate::error::{ApiError, ApiResult};

/// Trimmed, 1..=max characters, no control characters.
pub fn text(field: &'static str, raw: &str, max: usize) -> ApiResult<String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// Like [`text`], for optional fields: absent or blank becomes `None`.
pub fn optional_text(
    field: &'static str,
    raw: Option<&str>,
    max: usize,
) -> ApiResult<Option<String>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => text(field, value, max).map(Some),
    }
}

/// A time window: `end` strictly after `start`, and at most `max` long (a typo in a year is refused, not
/// stored as a plan for the next century).
pub fn window(
    end_field: &'static str,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    max: chrono::TimeDelta,
) -> ApiResult<()> {
    if end <= start {
        return Err(ApiError::validation(end_field, "must be after the start"));
    }
    if end - start > max {
        return Err(ApiError::validation(
            end_field,
            format!("the window may be at most {} days long", max.num_days()),
        ));
    }
    Ok(())
}

/// 1..=64 of `A-Z a-z 0-9 . _ -`; SKUs are compared exactly.
pub fn sku(raw: &str) -> ApiResult<String> {
    let value = raw.trim();
    let valid = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ApiError::validation(
            "sku",
            "must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'",
        ))
    }
}

/// An active ISO 4217 currency with minor units (XAU, XXX and the like are refused).
pub fn currency(raw: &str) -> ApiResult<String> {
    let code = raw.trim();
    match iso_currency::Currency::from_code(code) {
        Some(currency) if currency.exponent().is_some() && code == code.to_ascii_uppercase() => {
            Ok(code.to_owned())
        }
        _ => Err(ApiError::validation(
            "currency",
            "must be an ISO 4217 currency code such as EUR",
        )),
    }
}

/// Prices are non-negative minor units.
pub fn price(minor: i64) -> ApiResult<i64> {
    if minor < 0 {
        Err(ApiError::validation("priceMinor", "must not be negative"))
    } else {
        Ok(minor)
    }
}

/// A plausible address, lower-cased so equality search works (`a@B.com` and `A@b.com` are one customer).
pub fn email(raw: &str) -> ApiResult<String> {
    let value = raw.trim().to_lowercase();
    let well_formed = value.len() <= 254
        && !value.chars().any(char::is_whitespace)
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if well_formed {
        Ok(value)
    } else {
        Err(ApiError::validation("email", "must be an email address"))
    }
}

/// ISO 3166-1 alpha-2, upper case.
pub fn country_code(raw: &str) -> ApiResult<String> {
    let value = raw.trim();
    if value.len() == 2 && value.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::validation(
            "countryCode",
            "must be an ISO 3166-1 alpha-2 code such as NL",
        ))
    }
}

/// A device's ed25519 public key: standard base64 of 32 bytes, a valid curve point and not of small
/// order (a weak key would let anyone forge the device's signatures).
pub fn device_public_key(raw: &str) -> ApiResult<Vec<u8>> {
    let invalid = |why: &str| ApiError::validation("publicKey", why.to_owned());
    let bytes = STANDARD
        .decode(raw.trim())
        .map_err(|_| invalid("must be base64"))?;
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| invalid("must be a 32-byte ed25519 public key"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&array)
        .map_err(|_| invalid("is not a valid ed25519 public key"))?;
    if key.is_weak() {
        return Err(invalid("is a weak (small-order) ed25519 key"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies() {
        assert_eq!(currency("EUR").ok().as_deref(), Some("EUR"));
        assert!(currency("eur").is_err());
        assert!(currency("EURO").is_err());
        assert!(currency("XAU").is_err(), "no minor units");
        assert!(currency("ZZZ").is_err());
    }

    #[test]
    fn device_keys() {
        let good = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert!(device_public_key(&STANDARD.encode(good.as_bytes())).is_ok());
        // The identity point (small order) and a 31-byte key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(device_public_key(&STANDARD.encode(identity)).is_err());
        assert!(device_public_key(&STANDARD.encode([1u8; 31])).is_err());
        assert!(device_public_key("not base64!").is_err());
    }

    #[test]
    fn emails_and_skus() {
        assert_eq!(
            email(" Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        assert!(email("ann@example").is_err());
        assert!(email("a b@example.com").is_err());
        assert!(sku("AB-12.x_3").is_ok());
        assert!(sku("has space").is_err());
        assert!(sku("").is_err());
    }
}
