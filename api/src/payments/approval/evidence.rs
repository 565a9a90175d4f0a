//! What an approval or a decline records: evidence, append-only.

use card_protocol::{number::NumberHash, token::Token};
use chrono::{DateTime, Utc};
use entities::payment_evidence;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryTrait};
use uuid::Uuid;

use crate::{
    crypto::{FieldPlace, Vault},
    db::writes::Writes,
    error::{ApiError, ApiResult},
    payments::decline::{DeclineReason, is_replay},
};

/// Key ids are at most 2^31 - 1 (the ring refuses more), so they fit the integer column.
pub(super) fn key_id_column(hash: &NumberHash) -> i32 {
    i32::try_from(hash.key_id).unwrap_or(i32::MAX)
}

pub(super) struct EvidenceRow<'a> {
    pub(super) request_id: Uuid,
    pub(super) owner: Option<Uuid>,
    /// The issuer shown the evidence: only one whose signature verified.
    pub(super) issuer: Option<Uuid>,
    pub(super) payment_id: Option<Uuid>,
    pub(super) reason: Option<DeclineReason>,
    pub(super) token: &'a Token,
    pub(super) signature: &'a [u8; 64],
    pub(super) hash: &'a NumberHash,
    pub(super) signed_fields: &'a [u8],
    pub(super) device_id: Uuid,
    pub(super) jwt_id: Option<Uuid>,
    pub(super) now: DateTime<Utc>,
}

/// Where an evidence row's whole token is sealed (the issuer reads it through `evidenceToken`).
pub(crate) fn token_place(evidence_id: Uuid) -> FieldPlace {
    FieldPlace {
        table: "payment_evidence",
        column: "token",
        row: evidence_id,
    }
}

/// Appends evidence. The token is kept in clear only with its 16 digits zeroed (the number is searched
/// by its hash); whole, it is sealed, and only when an issuer's signature over it verified (a junk
/// token belongs to nobody who could read it).
pub(super) fn stage_evidence(
    writes: &mut Writes,
    vault: &Vault,
    row: EvidenceRow<'_>,
) -> ApiResult<payment_evidence::Model> {
    let redacted = row.token.redacted().to_vec();
    let id = Uuid::now_v7();
    let (token_sealed, key_id) = match row.issuer {
        Some(_) => {
            let sealer = vault.row_sealer();
            let sealed = sealer
                .seal(token_place(id), &row.token.encode())
                .map_err(|err| ApiError::Internal(anyhow::anyhow!("cannot seal a token: {err}")))?;
            (Some(sealed), Some(sealer.key_id().as_column()?))
        }
        None => (None, None),
    };
    let evidence = payment_evidence::Model {
        id,
        request_id: row.request_id,
        owner_organization_id: row.owner,
        issuer_organization_id: row.issuer,
        payment_id: row.payment_id,
        outcome: if row.reason.is_some() {
            payment_evidence::Outcome::Declined
        } else {
            payment_evidence::Outcome::Authorized
        },
        decline_reason: row.reason,
        replay: row.reason.is_some_and(is_replay),
        redacted_token: redacted,
        token_sealed,
        key_id,
        number_hash: row.hash.hash.to_vec(),
        hash_key_id: key_id_column(row.hash),
        card_signature: row.signature.to_vec(),
        signed_fields: row.signed_fields.to_vec(),
        device_id: row.device_id,
        jwt_id: row.jwt_id,
        issuer_key_id: i64::from(row.token.body.key_id),
        recorded_at: row.now,
    };
    writes.insert(
        payment_evidence::Entity::insert(evidence.clone().into_active_model().reset_all())
            .into_query(),
    );
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sealed_token_is_re_encrypted_under_the_name_it_is_sealed_with() {
        let place = super::token_place(uuid::Uuid::nil());
        let table = crate::crypto::reseal::SEALED_TABLES
            .iter()
            .find(|table| table.table == place.table)
            .expect("evidence is a sealed table");
        assert_eq!(table.columns, &[(place.column, "token_sealed")]);
    }
}
