//! Constraint violations read by name, in one place.
//!
//! A database error is a business outcome only when it is the one constraint a write expects to run
//! into: a name taken meanwhile (CONFLICT), or a number used by a concurrent submission (a lost race).
//! Everything else (a dropped connection, a timeout, a serialization failure, a constraint nobody
//! named) is a fault: INTERNAL, and the transaction rolls back.
//!
//! PostgreSQL names the violated constraint; SQLite names the table and columns
//! (`UNIQUE constraint failed: t.a, t.b`), so each key carries both.

use sea_orm::{DbErr, RuntimeErr, sqlx};

use crate::error::ApiError;

/// A unique index or primary key, as each database reports it, and what its violation tells a caller.
#[derive(Debug)]
pub struct UniqueKey {
    /// The constraint's name on PostgreSQL.
    pub postgres: &'static str,
    /// `table.column[, table.column]` as SQLite reports it (`index 'name'` for an index over expressions).
    pub sqlite: &'static str,
    /// The CONFLICT a violation means to the caller; `None` for keys whose violation the writing
    /// code turns into an outcome of its own (see [`UniqueKey::violated_by`]).
    pub conflict: Option<&'static str>,
}

pub const ORGANIZATION_NAME: UniqueKey = UniqueKey {
    postgres: "organization_name_key",
    sqlite: "organization.name",
    conflict: Some("an organization with this name already exists"),
};
pub const MEMBER_NAME: UniqueKey = UniqueKey {
    postgres: "ux_member_organization_name",
    sqlite: "member.organization_id, member.name",
    conflict: Some("a member with this name already exists"),
};
pub const PRODUCT_SKU: UniqueKey = UniqueKey {
    postgres: "ux_product_owner_sku",
    sqlite: "product.owner_organization_id, product.sku",
    conflict: Some("a product with this SKU already exists"),
};
pub const ISSUER_KEY_ID: UniqueKey = UniqueKey {
    postgres: "ux_issuer_key_owner_key_id",
    sqlite: "issuer_key.owner_organization_id, issuer_key.key_id",
    conflict: Some("this key id is registered; key ids are never reused"),
};
pub const CARD_ID: UniqueKey = UniqueKey {
    postgres: "card_pkey",
    sqlite: "card.id",
    conflict: Some("a card with this id is registered"),
};
pub const OPEN_PAYMENT_REQUEST: UniqueKey = UniqueKey {
    postgres: "ux_payment_request_open_order",
    sqlite: "payment_request.order_id",
    conflict: Some("the order already has an open payment request"),
};
pub const SHARE_GRANT: UniqueKey = UniqueKey {
    postgres: "ux_share_grant",
    // An index over an expression: SQLite names the index instead of columns.
    sqlite: "index 'ux_share_grant'",
    conflict: Some("this share exists; revoke it to change it"),
};
/// A one-time number's keyed hash: used once.
pub const NUMBER_USE_HASH: UniqueKey = UniqueKey {
    postgres: "number_use_pkey",
    sqlite: "number_use.number_hash",
    conflict: None,
};
/// A card's sequence: used once.
pub const NUMBER_USE_CARD_SEQUENCE: UniqueKey = UniqueKey {
    postgres: "ux_number_use_card_sequence",
    sqlite: "number_use.card_id, number_use.sequence",
    conflict: None,
};

/// The keys whose violation is a CONFLICT wherever it happens.
const CONFLICTS: [&UniqueKey; 7] = [
    &ORGANIZATION_NAME,
    &MEMBER_NAME,
    &PRODUCT_SKU,
    &ISSUER_KEY_ID,
    &CARD_ID,
    &OPEN_PAYMENT_REQUEST,
    &SHARE_GRANT,
];

impl UniqueKey {
    /// Whether `err` is a violation of this key (and not of another key, nor any other error).
    pub fn violated_by(&self, err: &DbErr) -> bool {
        let Some(database) = database_error(err) else {
            return false;
        };
        if !matches!(database.kind(), sqlx::error::ErrorKind::UniqueViolation) {
            return false;
        }
        match database.constraint() {
            Some(name) => name == self.postgres,
            None => database
                .message()
                .strip_prefix("UNIQUE constraint failed: ")
                .is_some_and(|columns| columns == self.sqlite),
        }
    }
}

/// The CONFLICT a database error means, when it violates one of the keys that name one.
pub fn conflict(err: &DbErr) -> Option<ApiError> {
    CONFLICTS
        .iter()
        .find(|key| key.violated_by(err))
        .and_then(|key| key.conflict)
        .map(|message| ApiError::Conflict(message.to_owned()))
}

/// Whether `err` is the database refusing a write by the constraint named `constraint` (an exclusion
/// constraint, say; PostgreSQL names it in the error).
pub fn violates_constraint(err: &DbErr, constraint: &str) -> bool {
    database_error(err).is_some_and(|database| database.constraint() == Some(constraint))
}

fn database_error(err: &DbErr) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    let (DbErr::Exec(RuntimeErr::SqlxError(source)) | DbErr::Query(RuntimeErr::SqlxError(source))) =
        err
    else {
        return None;
    };
    match source.as_ref() {
        sqlx::Error::Database(database) => Some(database.as_ref()),
        _ => None,
    }
}
