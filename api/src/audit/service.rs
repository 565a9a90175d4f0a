//! Verifying a chain and exporting signed checkpoints of its head.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use entities::audit_entry;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    chain::{ActorKind, AuditKey, EntryFields, Mac32, hex},
    linker::head_of,
};
use crate::{
    auth::SigningKey,
    error::{ApiError, ApiResult},
};

const CHECKPOINT_DOMAIN: &[u8] = b"ICH/audit/checkpoint/v1\x00";
/// Entries read per query while verifying.
const VERIFY_BATCH: u64 = 1000;

/// Checks that `key` is the key the chains are made with: records its fingerprint when the database
/// has none yet (`record_if_new`, the hub at start), and refuses another one. A hub or tool with a
/// wrong key would otherwise seal entries no one can verify and reject every genuine one.
pub async fn check_key(
    db: &DatabaseConnection,
    key: &AuditKey,
    record_if_new: bool,
) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let ours = key.fingerprint();
    if record_if_new {
        let sql = format!(
            "INSERT INTO audit_key (id, fingerprint, created_at) VALUES (1, {}, {}) \
             ON CONFLICT (id) DO NOTHING",
            crate::db::placeholder(backend, 1),
            crate::db::placeholder(backend, 2)
        );
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [ours.clone().into(), Utc::now().into()],
        ))
        .await?;
    }
    let stored = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT fingerprint FROM audit_key WHERE id = 1",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "fingerprint"))
        .transpose()?;
    match stored {
        Some(stored) if stored != ours => anyhow::bail!(
            "the audit key (fingerprint {ours}) is not the one the audit chains are made with \
             (fingerprint {stored}): give every replica and tool the same HUB_AUDIT_KEY_FILE"
        ),
        _ => Ok(()),
    }
}

/// The seal an entry should carry, recomputed from its fields (`None` when a field cannot be part
/// of a genuine entry, e.g. an unknown actor kind).
pub fn seal_of(key: &AuditKey, entry: &audit_entry::Model) -> Option<Vec<u8>> {
    let fields = EntryFields {
        id: entry.id,
        organization: entry.organization_id,
        actor_kind: ActorKind::parse(&entry.actor_kind)?,
        actor: entry.actor_id,
        operation: &entry.operation,
        record_type: entry.record_type.as_deref(),
        record_id: entry.record_id,
        change_digest: &entry.change_digest,
        recorded_at_micros: entry.recorded_at.timestamp_micros(),
    };
    Some(key.seal(&fields).to_vec())
}

/// A signed statement of a chain's head: whoever keeps it can later prove the chain was not cut
/// short or rewritten up to that point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub organization: Uuid,
    pub index: i64,
    /// Hex of the head's link.
    pub link: String,
    pub signed_at: DateTime<Utc>,
    /// Base64 of the hub's ed25519 signature.
    pub signature: String,
    /// Base64 of the hub's public key.
    pub public_key: String,
}

impl Checkpoint {
    fn message(organization: Uuid, index: i64, link: &[u8], signed_at: DateTime<Utc>) -> Vec<u8> {
        let mut message = CHECKPOINT_DOMAIN.to_vec();
        message.extend_from_slice(organization.as_bytes());
        message.extend_from_slice(&index.to_be_bytes());
        message.extend_from_slice(link);
        message.extend_from_slice(&signed_at.timestamp_micros().to_be_bytes());
        message
    }

    /// Whether `public_key` signed this checkpoint.
    fn verifies(&self, public_key: &[u8; 32]) -> bool {
        let Ok(link) = decode_hex(&self.link) else {
            return false;
        };
        let Ok(signature) = STANDARD.decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&signature) else {
            return false;
        };
        let Ok(key) = VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        key.verify(
            &Self::message(self.organization, self.index, &link, self.signed_at),
            &signature,
        )
        .is_ok()
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, ()> {
    if !text.len().is_multiple_of(2) {
        return Err(());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or(())?, 16).map_err(|_| ()))
        .collect()
}

/// Why a chain does not verify, at its first broken place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakReason {
    /// The entry's fields do not match its seal: it was altered.
    AlteredEntry,
    /// The entry's link does not follow from its predecessor: entries were reordered, replaced, or
    /// re-linked without the key.
    BrokenLink,
    /// An index is missing: the entry was deleted.
    MissingEntry,
    /// The chain ends before a checkpoint's index: entries were cut off its end.
    Truncated,
    /// The entry at a checkpoint's index has another link than the checkpoint says.
    CheckpointMismatch,
    /// The checkpoint given was not signed by this hub (or is for another organization).
    InvalidCheckpoint,
}

/// The first broken place of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Break {
    pub index: i64,
    /// The entry found there (none when it is missing).
    pub entry_id: Option<Uuid>,
    pub reason: BreakReason,
}

/// The outcome of verifying one organization's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub organization: Uuid,
    /// Linked entries checked, up to the first break.
    pub entries_checked: u64,
    /// The last index of the chain as stored.
    pub head_index: i64,
    /// Entries committed but not linked yet (the linker runs within a second).
    pub pending: u64,
    /// Rows whose seal did not verify when the linker met them (inserted without the key).
    pub rejected: u64,
    pub first_break: Option<Break>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.first_break.is_none() && self.rejected == 0
    }
}

#[derive(Clone)]
pub struct AuditService {
    db: DatabaseConnection,
    key: AuditKey,
    signer: SigningKey,
}

impl AuditService {
    pub fn new(db: DatabaseConnection, key: AuditKey, signer: SigningKey) -> Self {
        Self { db, key, signer }
    }

    /// Organizations with a chain.
    pub async fn organizations(&self) -> ApiResult<Vec<Uuid>> {
        Ok(audit_entry::Entity::find()
            .select_only()
            .column(audit_entry::Column::OrganizationId)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// A signed checkpoint of the organization's chain head as it is now.
    pub async fn checkpoint(&self, organization: Uuid) -> ApiResult<Checkpoint> {
        let (index, link) = head_of(&self.db, organization).await?;
        let signed_at = crate::db::database_now(&self.db).await?;
        let signature = self
            .signer
            .sign(&Checkpoint::message(organization, index, &link, signed_at))
            .map_err(|err| ApiError::Internal(err.into()))?;
        Ok(Checkpoint {
            organization,
            index,
            link: hex(&link),
            signed_at,
            signature: STANDARD.encode(signature),
            public_key: STANDARD.encode(self.signer.public_key()),
        })
    }

    /// Recomputes the organization's chain from its first entry, and names the first broken place;
    /// with a checkpoint, also proves the chain still reaches it unchanged.
    pub async fn verify(
        &self,
        organization: Uuid,
        checkpoint: Option<&Checkpoint>,
    ) -> ApiResult<Verification> {
        // One snapshot for every read: the linker commits meanwhile, and a head read before its commit
        // with a walk read after it would report a chain longer than its own head.
        let snapshot = crate::db::begin_snapshot(&self.db).await?;
        let outcome = self.verify_in(&snapshot, organization, checkpoint).await;
        snapshot.rollback().await?;
        outcome
    }

    async fn verify_in(
        &self,
        db: &DatabaseTransaction,
        organization: Uuid,
        checkpoint: Option<&Checkpoint>,
    ) -> ApiResult<Verification> {
        let mut outcome = Verification {
            organization,
            entries_checked: 0,
            head_index: head_of(db, organization).await?.0,
            pending: count(db, organization, Unlinked::Pending).await?,
            rejected: count(db, organization, Unlinked::Rejected).await?,
            first_break: None,
        };
        if let Some(checkpoint) = checkpoint
            && (checkpoint.organization != organization
                || !checkpoint.verifies(&self.signer.public_key()))
        {
            outcome.first_break = Some(Break {
                index: checkpoint.index,
                entry_id: None,
                reason: BreakReason::InvalidCheckpoint,
            });
            return Ok(outcome);
        }
        let mut previous: Mac32 = [0; 32];
        let mut expected_index = 1i64;
        loop {
            let batch = audit_entry::Entity::find()
                .filter(audit_entry::Column::OrganizationId.eq(organization))
                .filter(audit_entry::Column::ChainIndex.gte(expected_index))
                .order_by_asc(audit_entry::Column::ChainIndex)
                .limit(VERIFY_BATCH)
                .all(db)
                .await?;
            let last_batch = (batch.len() as u64) < VERIFY_BATCH;
            for entry in batch {
                let index = entry.chain_index.unwrap_or_default();
                let broken = |reason, entry_id| Break {
                    index: if reason == BreakReason::MissingEntry {
                        expected_index
                    } else {
                        index
                    },
                    entry_id,
                    reason,
                };
                if index != expected_index {
                    outcome.first_break = Some(broken(BreakReason::MissingEntry, None));
                    return Ok(outcome);
                }
                if seal_of(&self.key, &entry).as_deref() != Some(entry.seal.as_slice()) {
                    outcome.first_break = Some(broken(BreakReason::AlteredEntry, Some(entry.id)));
                    return Ok(outcome);
                }
                let link = self.key.link(organization, index, &previous, &entry.seal);
                if entry.link.as_deref() != Some(link.as_slice()) {
                    outcome.first_break = Some(broken(BreakReason::BrokenLink, Some(entry.id)));
                    return Ok(outcome);
                }
                if let Some(checkpoint) = checkpoint
                    && checkpoint.index == index
                    && checkpoint.link != hex(&link)
                {
                    outcome.first_break =
                        Some(broken(BreakReason::CheckpointMismatch, Some(entry.id)));
                    return Ok(outcome);
                }
                outcome.entries_checked += 1;
                previous = link;
                expected_index += 1;
            }
            if last_batch {
                break;
            }
        }
        if let Some(checkpoint) = checkpoint
            && checkpoint.index >= expected_index
        {
            outcome.first_break = Some(Break {
                index: expected_index,
                entry_id: None,
                reason: BreakReason::Truncated,
            });
        }
        Ok(outcome)
    }
}

/// Entries of a chain that are not part of it.
#[derive(Clone, Copy)]
enum Unlinked {
    /// Committed, waiting for the linker.
    Pending,
    /// Refused by the linker (a forged seal, or un-linked late): stored with a negative index.
    Rejected,
}

async fn count<C: ConnectionTrait>(db: &C, organization: Uuid, which: Unlinked) -> ApiResult<u64> {
    let select =
        audit_entry::Entity::find().filter(audit_entry::Column::OrganizationId.eq(organization));
    let select = match which {
        Unlinked::Pending => select.filter(audit_entry::Column::ChainIndex.is_null()),
        Unlinked::Rejected => select.filter(audit_entry::Column::ChainIndex.lt(0)),
    };
    Ok(select.count(db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(
            decode_hex(&hex(&[0, 1, 254, 255])),
            Ok(vec![0, 1, 254, 255])
        );
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
    }
}
