//! The kinds of records the hub keeps, and their global IDs.
//!
//! A record's kind is named once, here, by the name clients know it by: the name of its GraphQL type.
//! Events carry it (`recordType`), and every global ID starts with it (`base64url("Kind:uuid")`, so IDs
//! are opaque yet say what they name). The GraphQL layer, the tests and the bench all build and read
//! IDs through [`GlobalId`]; a unit test in `graphql` checks each name against the schema.

use std::{fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

macro_rules! record_kinds {
    ($($kind:ident),+ $(,)?) => {
        /// A kind of record with a global ID.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RecordKind {
            $($kind),+
        }

        impl RecordKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [RecordKind] = &[$(RecordKind::$kind),+];

            /// The name of the kind: its GraphQL type name.
            pub const fn name(self) -> &'static str {
                match self {
                    $(RecordKind::$kind => stringify!($kind)),+
                }
            }
        }
    };
}

record_kinds!(
    Organization,
    Member,
    Location,
    Product,
    Customer,
    Device,
    Share,
    Order,
    Invoice,
    Payment,
    IssuerKey,
    Card,
    PaymentRequest,
    WorkPlan,
    Delivery,
    ClearingBatch,
    ClearingEntry,
);

impl RecordKind {
    /// The kind with this name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    /// The global ID of the record `id` of this kind.
    pub fn global_id(self, id: Uuid) -> GlobalId {
        GlobalId { kind: self, id }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record's kind and id: what a global ID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GlobalId {
    pub kind: RecordKind,
    pub id: Uuid,
}

impl GlobalId {
    /// The id, if the global ID names a record of `kind`.
    pub fn id_of(self, kind: RecordKind) -> Option<Uuid> {
        (self.kind == kind).then_some(self.id)
    }
}

impl fmt::Display for GlobalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(self.kind.name(), self.id))
    }
}

/// Why a string is not a global ID. Deliberately without detail: an ID that does not decode names no
/// record, and callers answer it like one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a global ID")]
pub struct MalformedGlobalId;

impl FromStr for GlobalId {
    type Err = MalformedGlobalId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, id) = decode(text).ok_or(MalformedGlobalId)?;
        let kind = RecordKind::from_name(&name).ok_or(MalformedGlobalId)?;
        Ok(GlobalId { kind, id })
    }
}

/// The global ID of a record whose kind is only known by name (an event row written by another hub
/// version may name a kind this one does not know; its ID must still round-trip to that hub).
pub fn global_id_by_name(kind_name: &str, id: Uuid) -> String {
    encode(kind_name, id)
}

fn encode(kind_name: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind_name}:{id}"))
}

fn decode(text: &str) -> Option<(String, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, id) = text.split_once(':')?;
    Some((name.to_owned(), Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_round_trip_for_every_kind() {
        for &kind in RecordKind::ALL {
            let global = kind.global_id(Uuid::now_v7());
            assert_eq!(global.to_string().parse::<GlobalId>(), Ok(global));
            assert_eq!(RecordKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn malformed_and_unknown_ids_are_refused() {
        let unknown = global_id_by_name("Spaceship", Uuid::now_v7());
        for text in ["", "not base64!", "T3JkZXI", unknown.as_str()] {
            assert_eq!(text.parse::<GlobalId>(), Err(MalformedGlobalId), "{text}");
        }
        let order = RecordKind::Order.global_id(Uuid::nil());
        assert_eq!(order.id_of(RecordKind::Invoice), None);
        assert_eq!(order.id_of(RecordKind::Order), Some(Uuid::nil()));
    }
}
