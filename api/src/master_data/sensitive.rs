//! The one path by which customer contact data is read and written: sealed field by field under the
//! vault's primary data key (associated data: `customer`, the field, the customer's id), with the blind
//! index of the normalized email for equality search. Nothing else touches the sealed columns.

use entities::customer;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, Statement, Value,
};
use uuid::Uuid;

use crate::{
    crypto::{FieldPlace, Vault},
    error::{ApiError, ApiResult},
};

const TABLE: &str = "customer";

/// A customer's sensitive fields, in clear. Serialized only into a keyed idempotency fingerprint
/// (`IdempotencyKey::new_sensitive`).
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

/// One contact field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactField {
    Name,
    Email,
    Phone,
    Address,
}

impl ContactField {
    fn column(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Address => "address",
        }
    }

    fn sealed(self, model: &customer::Model) -> Option<&[u8]> {
        match self {
            Self::Name => Some(&model.name_sealed),
            Self::Email => Some(&model.email_sealed),
            Self::Phone => model.phone_sealed.as_deref(),
            Self::Address => model.address_sealed.as_deref(),
        }
    }
}

fn place(field: ContactField, row: Uuid) -> FieldPlace {
    FieldPlace {
        table: TABLE,
        column: field.column(),
        row,
    }
}

/// One field of a customer, opened.
pub async fn read_field(
    vault: &Vault,
    model: &customer::Model,
    field: ContactField,
) -> ApiResult<Option<String>> {
    match field.sealed(model) {
        None => Ok(None),
        Some(sealed) => vault
            .open_text(place(field, model.id), sealed)
            .await
            .map(Some)
            .map_err(|err| {
                tracing::error!(customer = %model.id, error = %err, "a sealed customer field does not open");
                ApiError::from(err)
            }),
    }
}

/// Every field of a customer, opened.
pub async fn read_contact(vault: &Vault, model: &customer::Model) -> ApiResult<CustomerContact> {
    let text = |value: Option<String>| value.unwrap_or_default();
    Ok(CustomerContact {
        name: text(read_field(vault, model, ContactField::Name).await?),
        email: text(read_field(vault, model, ContactField::Email).await?),
        phone: read_field(vault, model, ContactField::Phone).await?,
        address: read_field(vault, model, ContactField::Address).await?,
    })
}

/// The sealed form of a contact for row `id`: every field under one data key.
pub struct SealedContact {
    name: Vec<u8>,
    email: Vec<u8>,
    phone: Option<Vec<u8>>,
    address: Option<Vec<u8>>,
    email_index: Vec<u8>,
    key_id: i32,
}

pub fn seal_contact(
    vault: &Vault,
    id: Uuid,
    contact: &CustomerContact,
) -> ApiResult<SealedContact> {
    let sealer = vault.row_sealer();
    let seal = |field: ContactField, text: &str| {
        sealer
            .seal(place(field, id), text.as_bytes())
            .map_err(|err| ApiError::Internal(anyhow::anyhow!("cannot seal a customer: {err}")))
    };
    Ok(SealedContact {
        name: seal(ContactField::Name, &contact.name)?,
        email: seal(ContactField::Email, &contact.email)?,
        phone: contact
            .phone
            .as_deref()
            .map(|phone| seal(ContactField::Phone, phone))
            .transpose()?,
        address: contact
            .address
            .as_deref()
            .map(|address| seal(ContactField::Address, address))
            .transpose()?,
        email_index: vault.email_index(&contact.email),
        key_id: sealer.key_id().as_column()?,
    })
}

pub fn write_contact(active: &mut customer::ActiveModel, sealed: SealedContact) {
    active.name_sealed = Set(sealed.name);
    active.email_sealed = Set(sealed.email);
    active.phone_sealed = Set(sealed.phone);
    active.address_sealed = Set(sealed.address);
    active.email_index = Set(sealed.email_index);
    active.key_id = Set(sealed.key_id);
}

/// Rows whose email equals `email` once normalized: a blind-index lookup, no decryption.
pub fn email_equals(vault: &Vault, email: &str) -> Condition {
    Condition::all().add(customer::Column::EmailIndex.eq(vault.email_index(email)))
}

/// Rows sealed per batch when an older schema's plaintext is sealed at start.
const LEGACY_BATCH: u64 = 500;

/// Seals the customers an older schema stored in plaintext, in batches of one transaction each,
/// overwriting the plaintext as it goes (the next migration drops those columns). Resumable: what is
/// left is exactly the rows without a key. Returns how many rows it sealed.
pub async fn seal_legacy_plaintext(db: &DatabaseConnection, vault: &Vault) -> ApiResult<u64> {
    let backend = db.get_database_backend();
    let p = |n: usize| crate::db::placeholder(backend, n);
    let mut sealed = 0u64;
    loop {
        let txn = crate::db::begin_write(db).await?;
        let rows = txn
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT id, name, email, phone, address FROM customer WHERE key_id IS NULL \
                     ORDER BY id LIMIT {LEGACY_BATCH}"
                ),
            ))
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            break;
        }
        for row in &rows {
            let id: Uuid = row.try_get("", "id")?;
            let contact = CustomerContact {
                name: row.try_get("", "name")?,
                email: row.try_get("", "email")?,
                phone: row.try_get("", "phone")?,
                address: row.try_get("", "address")?,
            };
            let s = seal_contact(vault, id, &contact)?;
            let update = format!(
                "UPDATE customer SET name_sealed = {}, email_sealed = {}, phone_sealed = {}, \
                 address_sealed = {}, email_index = {}, key_id = {}, name = '', email = '', \
                 phone = NULL, address = NULL WHERE id = {} AND key_id IS NULL",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7)
            );
            let values: Vec<Value> = vec![
                s.name.into(),
                s.email.into(),
                s.phone.into(),
                s.address.into(),
                s.email_index.into(),
                s.key_id.into(),
                id.into(),
            ];
            txn.execute_raw(Statement::from_sql_and_values(backend, update, values))
                .await?;
        }
        txn.commit().await?;
        sealed += rows.len() as u64;
        tracing::info!(
            sealed,
            "sealing customers stored in plaintext by an older version"
        );
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::reseal::SEALED_TABLES;

    #[test]
    fn every_contact_field_is_re_encrypted_under_the_name_it_is_sealed_with() {
        let table = SEALED_TABLES
            .iter()
            .find(|table| table.table == TABLE)
            .expect("customers are a sealed table");
        let fields = [
            ContactField::Name,
            ContactField::Email,
            ContactField::Phone,
            ContactField::Address,
        ];
        assert_eq!(table.columns.len(), fields.len());
        for field in fields {
            let stored = format!("{}_sealed", field.column());
            assert!(
                table
                    .columns
                    .iter()
                    .any(|(logical, column)| *logical == field.column() && *column == stored),
                "{field:?}"
            );
        }
    }
}
