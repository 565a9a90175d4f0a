//! `auditCheckpoint` and `verifyAudit`: an organization's ADMIN exports signed checkpoints of its own
//! chain and verifies it.

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{
    AuditService, Checkpoint,
    service::{BreakReason, Verification},
};
use crate::{
    error::ApiError,
    graphql::{ContextExt, scalars::Int64},
    policy::{Action, authorize},
};

fn service<'a>(ctx: &Context<'a>) -> &'a AuditService {
    ctx.data_unchecked::<AuditService>()
}

/// A signed statement of the caller's chain head. Keep `document`: passed back to `verifyAudit`
/// later, it proves the chain still reaches this point unchanged.
#[derive(SimpleObject)]
pub struct AuditCheckpoint {
    /// Index of the newest linked entry (0 for an empty chain).
    index: Int64,
    /// Hex of that entry's link.
    link: String,
    signed_at: DateTime<Utc>,
    /// The whole checkpoint as JSON, signed by the hub (ed25519).
    document: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "BreakReason")]
pub enum AuditBreakReason {
    /// The entry's fields do not match its seal: it was altered.
    AlteredEntry,
    /// The link does not follow from the previous entry: reordered, replaced or re-linked.
    BrokenLink,
    /// The entry at this index is missing: deleted.
    MissingEntry,
    /// The chain ends before the checkpoint's index: entries were cut off.
    Truncated,
    /// The entry at the checkpoint's index is not the one the checkpoint signed.
    CheckpointMismatch,
    /// The checkpoint was not signed by this hub for the caller's organization.
    InvalidCheckpoint,
}

/// Where a chain first breaks.
#[derive(SimpleObject)]
pub struct AuditBreak {
    index: Int64,
    /// The id (UUID) of the entry found at that index; null when it is missing.
    entry_id: Option<String>,
    reason: AuditBreakReason,
}

/// The outcome of recomputing the caller's chain.
#[derive(SimpleObject)]
pub struct AuditVerification {
    /// True when every linked entry verifies, nothing is missing, and no forged row was found.
    intact: bool,
    entries_checked: Int64,
    head_index: Int64,
    /// Entries committed but not linked yet.
    pending: Int64,
    /// Rows the linker refused because their seal did not verify (written without the key).
    rejected: Int64,
    first_break: Option<AuditBreak>,
}

impl From<Verification> for AuditVerification {
    fn from(v: Verification) -> Self {
        Self {
            intact: v.intact(),
            entries_checked: Int64(v.entries_checked as i64),
            head_index: Int64(v.head_index),
            pending: Int64(v.pending as i64),
            rejected: Int64(v.rejected as i64),
            first_break: v.first_break.map(|b| AuditBreak {
                index: Int64(b.index),
                entry_id: b.entry_id.map(|id| id.to_string()),
                reason: b.reason.into(),
            }),
        }
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// A signed checkpoint of the caller's organization's audit chain (ADMIN).
    async fn audit_checkpoint(&self, ctx: &Context<'_>) -> async_graphql::Result<AuditCheckpoint> {
        let principal = ctx.principal()?;
        authorize(principal, Action::ReadAudit)?;
        let checkpoint = service(ctx).checkpoint(principal.organization_id).await?;
        Ok(AuditCheckpoint {
            index: Int64(checkpoint.index),
            link: checkpoint.link.clone(),
            signed_at: checkpoint.signed_at,
            document: serde_json::to_string(&checkpoint)
                .map_err(|err| ApiError::Internal(err.into()))?,
        })
    }

    /// Recomputes the caller's organization's audit chain and names its first broken place (ADMIN).
    /// With `checkpoint` (a `document` from `auditCheckpoint`), also checks that the chain still
    /// reaches it unchanged, which is what detects entries cut off its end.
    async fn verify_audit(
        &self,
        ctx: &Context<'_>,
        checkpoint: Option<String>,
    ) -> async_graphql::Result<AuditVerification> {
        let principal = ctx.principal()?;
        authorize(principal, Action::ReadAudit)?;
        let checkpoint: Option<Checkpoint> = checkpoint
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|_| ApiError::validation("checkpoint", "not an audit checkpoint"))
            })
            .transpose()?;
        let verification = service(ctx)
            .verify(principal.organization_id, checkpoint.as_ref())
            .await?;
        Ok(verification.into())
    }
}
