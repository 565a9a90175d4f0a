//! Relay conventions shared by every domain: opaque global IDs and cursors.

use async_graphql::ID;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Encodes `Type:uuid` as unpadded base64url, so IDs are opaque and carry their type.
pub fn encode_id(type_name: &str, id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{type_name}:{id}")))
}

/// Decodes a global ID that must name `expected_type`; anything else is a VALIDATION error on `field`.
pub fn decode_id(field: &'static str, expected_type: &str, id: &ID) -> ApiResult<Uuid> {
    let invalid = || ApiError::validation(field, format!("not a valid {expected_type} ID"));
    let bytes = URL_SAFE_NO_PAD.decode(id.as_str()).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let (type_name, uuid) = text.split_once(':').ok_or_else(invalid)?;
    if type_name != expected_type {
        return Err(invalid());
    }
    Uuid::parse_str(uuid).map_err(|_| invalid())
}

/// Opaque cursor over a sort key (here a unique name).
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

pub fn decode_cursor(cursor: &str) -> ApiResult<String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::validation("after", "not a valid cursor"))
}

/// Clamps a requested page size.
pub fn page_size(first: Option<i32>) -> ApiResult<u64> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (0..=MAX_PAGE_SIZE as i32).contains(&n) => Ok(n as u64),
        Some(_) => Err(ApiError::validation(
            "first",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_keep_their_type() {
        let id = Uuid::new_v4();
        let global = encode_id("Organization", id);
        assert_eq!(decode_id("id", "Organization", &global).ok(), Some(id));
        let err = decode_id("id", "Member", &global).err().map(|e| e.code());
        assert_eq!(err, Some("VALIDATION"));
        assert!(decode_id("id", "Organization", &ID("not base64!".into())).is_err());
    }
}
