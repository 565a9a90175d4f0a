//! The one path by which customer contact data is read and written. The fields are stored plain for now;
//! field-level encryption (encrypted columns and blind indexes, still to come) replaces these two functions and nothing else.

use entities::customer;
use sea_orm::ActiveValue::Set;

/// A customer's sensitive fields, in clear. Serialized only into an idempotency fingerprint (a hash).
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerContact {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Option<String>,
}

impl std::fmt::Debug for CustomerContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print sensitive plaintext, not even in debug logs.
        f.write_str("CustomerContact(<redacted>)")
    }
}

pub fn read_contact(model: &customer::Model) -> CustomerContact {
    CustomerContact {
        name: model.name.clone(),
        email: model.email.clone(),
        phone: model.phone.clone(),
        address: model.address.clone(),
    }
}

pub fn write_contact(active: &mut customer::ActiveModel, contact: CustomerContact) {
    active.name = Set(contact.name);
    active.email = Set(contact.email);
    active.phone = Set(contact.phone);
    active.address = Set(contact.address);
}

/// Rows whose email equals `normalized_email` (a blind-index lookup once the column is encrypted).
pub fn email_equals(normalized_email: &str) -> sea_orm::Condition {
    use sea_orm::ColumnTrait;
    sea_orm::Condition::all().add(customer::Column::Email.eq(normalized_email))
}
