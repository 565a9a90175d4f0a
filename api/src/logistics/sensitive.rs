//! The one path by which a delivery's recipient and a travel record's position are sealed and opened.
//! Each is one sealed value (JSON inside), under the vault's primary key, bound to its table, column and
//! row like every sealed field.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    crypto::{FieldPlace, Vault},
    error::{ApiError, ApiResult},
};

pub const DELIVERY_TABLE: &str = "delivery";
pub const RECIPIENT_COLUMN: &str = "recipient";
pub const TRAVEL_TABLE: &str = "travel_record";
pub const POSITION_COLUMN: &str = "position";

/// Who receives a delivery, and where.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub name: String,
    pub phone: Option<String>,
    pub address: String,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipient(<redacted>)")
    }
}

/// Where a travel record was taken (WGS 84 degrees).
#[derive(Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub latitude: f64,
    pub longitude: f64,
}

impl std::fmt::Debug for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Position(<redacted>)")
    }
}

/// A value sealed for one row, and the key it is under (the row's `key_id`).
pub struct Sealed {
    pub value: Vec<u8>,
    pub key_id: i32,
}

fn seal<T: Serialize>(vault: &Vault, place: FieldPlace, value: &T) -> ApiResult<Sealed> {
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(value).map_err(|err| ApiError::Internal(err.into()))?,
    );
    let sealer = vault.row_sealer();
    let value = sealer
        .seal(place, &plain)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("cannot seal {}: {err}", place.table)))?;
    Ok(Sealed {
        value,
        key_id: sealer.key_id().as_column()?,
    })
}

async fn open<T: for<'de> Deserialize<'de>>(
    vault: &Vault,
    place: FieldPlace,
    sealed: &[u8],
) -> ApiResult<T> {
    let plain = vault.open(place, sealed).await.map_err(|err| {
        tracing::error!(table = place.table, row = %place.row, error = %err, "a sealed value does not open");
        ApiError::from(err)
    })?;
    serde_json::from_slice(&plain).map_err(|_| {
        ApiError::from(crate::crypto::CryptoError::Undecryptable {
            table: place.table,
            column: place.column,
        })
    })
}

fn recipient_place(delivery: Uuid) -> FieldPlace {
    FieldPlace {
        table: DELIVERY_TABLE,
        column: RECIPIENT_COLUMN,
        row: delivery,
    }
}

fn position_place(record: Uuid) -> FieldPlace {
    FieldPlace {
        table: TRAVEL_TABLE,
        column: POSITION_COLUMN,
        row: record,
    }
}

pub fn seal_recipient(vault: &Vault, delivery: Uuid, recipient: &Recipient) -> ApiResult<Sealed> {
    seal(vault, recipient_place(delivery), recipient)
}

pub async fn open_recipient(vault: &Vault, delivery: Uuid, sealed: &[u8]) -> ApiResult<Recipient> {
    open(vault, recipient_place(delivery), sealed).await
}

pub fn seal_position(vault: &Vault, record: Uuid, position: &Position) -> ApiResult<Sealed> {
    seal(vault, position_place(record), position)
}

pub async fn open_position(vault: &Vault, record: Uuid, sealed: &[u8]) -> ApiResult<Position> {
    open(vault, position_place(record), sealed).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::reseal::SEALED_TABLES;

    #[test]
    fn recipients_and_positions_are_re_encrypted_under_the_names_they_are_sealed_with() {
        for (table, column) in [
            (DELIVERY_TABLE, RECIPIENT_COLUMN),
            (TRAVEL_TABLE, POSITION_COLUMN),
        ] {
            let sealed = SEALED_TABLES
                .iter()
                .find(|sealed| sealed.table == table)
                .unwrap_or_else(|| panic!("{table} is a sealed table"));
            assert_eq!(
                sealed.columns,
                &[(column, format!("{column}_sealed").as_str())][..],
                "{table}"
            );
        }
    }
}
