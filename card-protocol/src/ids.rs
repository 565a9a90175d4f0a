//! The 16-byte identifiers the protocol carries (each a UUID's raw bytes), one type per role.
//!
//! Tokens and signed request fields hold several ids side by side; as distinct types, an issuer id
//! cannot be written where a card id belongs, nor a terminal where the merchant belongs.

use std::fmt;

use uuid::Uuid;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            pub const fn to_bytes(self) -> [u8; 16] {
                self.0
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl From<[u8; 16]> for $name {
            fn from(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id.into_bytes())
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                Uuid::from_bytes(id.0)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), crate::files::hex(self.0))
            }
        }
    )+};
}

ids! {
    /// The issuing financial provider (its organization id at the hub).
    IssuerId;
    /// A card, named by its issuer at personalization.
    CardId;
    /// The merchant a payment is for (the retailer's organization id).
    MerchantId;
    /// A payment request at the hub.
    RequestId;
    /// The terminal (a registered device) that submits the payment.
    TerminalId;
    /// The hub instance a card signature is bound to.
    HubInstanceId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_bytes_and_name_their_role_in_debug() {
        let bytes = [0xab; 16];
        let card = CardId::from_bytes(bytes);
        assert_eq!(card.to_bytes(), bytes);
        assert_eq!(format!("{card:?}"), format!("CardId({})", "ab".repeat(16)));
    }
}
