//! The hub's global IDs (Relay): base64url without padding of `"<Kind>:<uuid>"`. The agent takes a
//! device or a payment request either as a global ID (what GraphQL shows) or as a bare UUID (what the
//! card protocol carries), and sends global IDs to GraphQL.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

pub const DEVICE: &str = "Device";
pub const PAYMENT_REQUEST: &str = "PaymentRequest";

pub fn global_id(kind: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// The UUID of `text`, a bare UUID or a global ID of `kind`.
pub fn parse(kind: &str, text: &str) -> Option<Uuid> {
    let text = text.trim();
    if let Ok(id) = Uuid::parse_str(text) {
        return Some(id);
    }
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (named, id) = decoded.split_once(':')?;
    (named == kind).then_some(())?;
    Uuid::parse_str(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_round_trip_and_kinds_are_checked() {
        let id = Uuid::new_v4();
        let global = global_id(DEVICE, id);
        assert_eq!(parse(DEVICE, &global), Some(id));
        assert_eq!(parse(DEVICE, &id.to_string()), Some(id));
        assert_eq!(parse(PAYMENT_REQUEST, &global), None, "another kind");
        assert_eq!(parse(DEVICE, "not an id"), None);
    }
}
