//! Links committed entries into their organization's chain, after commit and in the order they became
//! visible (commit order), so the chain never serializes the write path: writers only insert their
//! entry; one linker at a time (a PostgreSQL advisory lock; SQLite has one writer) gives each the next
//! index of its chain and the link over its predecessor.
//!
//! The linker checks each entry's seal before linking it: a row someone inserted into the table
//! without the key is left unlinked and reported, never made part of a chain.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::TimeDelta;

use entities::audit_entry;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    chain::{AuditKey, Mac32},
    service::seal_of,
};
use crate::{
    db::{
        try_advisory_xact_lock,
        worker::{Pace, Round, spawn_worker},
        write_transaction,
    },
    error::{ApiError, ApiResult},
};

/// Key of the advisory lock held by the one linker at work.
const LINKER_LOCK_KEY: i64 = 0x4943_485f_4155_4454; // "ICH_AUDT"
/// The linker also wakes on this period, to pick up what another replica committed.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// After a wake-up the linker waits this long, so that one round links many commits.
const GATHER: Duration = Duration::from_millis(10);
/// Entries linked per round.
const BATCH: u64 = 500;
/// An entry is linked within this long of its transaction, or never: an entry un-linked in the database
/// later (to have a chain rebuilt without something deleted from it) is refused and reported instead.
const LINK_WINDOW: TimeDelta = TimeDelta::hours(1);

#[derive(Clone)]
pub struct Linker {
    db: DatabaseConnection,
    key: AuditKey,
    wake: Arc<Notify>,
    /// The newest head this linker has seen of each chain: a chain never gets shorter, so a head
    /// read below it means rows were deleted or un-linked, and that chain is not extended.
    seen: Arc<Mutex<HashMap<Uuid, (i64, Mac32)>>>,
}

impl Linker {
    pub fn new(db: DatabaseConnection, key: AuditKey) -> Self {
        Self {
            db,
            key,
            wake: Arc::new(Notify::new()),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// What the write path notifies after committing an entry.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs the linker until the process ends.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let linker = self.clone();
        let pace = Pace {
            poll: POLL_INTERVAL,
            gather: GATHER,
        };
        spawn_worker("audit linker", self.wake.clone(), pace, move || {
            let linker = linker.clone();
            async move {
                Ok(if linker.link_pending().await? >= BATCH {
                    Round::More
                } else {
                    Round::Done
                })
            }
        })
    }

    /// Links committed, unlinked entries, oldest insert first. Returns how many it looked at.
    pub async fn link_pending(&self) -> ApiResult<u64> {
        // Nothing pending: no write transaction (SQLite would take its one write lock for it).
        let pending = audit_entry::Entity::find()
            .filter(audit_entry::Column::ChainIndex.is_null())
            .one(&self.db)
            .await?;
        if pending.is_none() {
            return Ok(0);
        }
        let key = self.key.clone();
        let seen = self.seen.clone();
        let linked_heads = write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                if !try_advisory_xact_lock(txn, LINKER_LOCK_KEY).await? {
                    return Ok((0, HashMap::new()));
                }
                let pending = audit_entry::Entity::find()
                    .filter(audit_entry::Column::ChainIndex.is_null())
                    .order_by_asc(audit_entry::Column::Seq)
                    .limit(BATCH)
                    .all(txn)
                    .await?;
                let looked_at = pending.len() as u64;
                let now = crate::db::database_now(txn).await?;
                let mut heads: HashMap<Uuid, (i64, Mac32)> = HashMap::new();
                let mut regressed: Vec<Uuid> = Vec::new();
                for entry in pending {
                    let forged = seal_of(&key, &entry).as_deref() != Some(entry.seal.as_slice());
                    let late = now - entry.recorded_at > LINK_WINDOW;
                    if forged || late {
                        if forged {
                            tracing::error!(entry = %entry.id, organization = %entry.organization_id,
                                "an audit entry's seal does not verify (written without the audit key); it is not linked");
                            metrics::counter!("hub_audit_forged_entries_total").increment(1);
                        } else {
                            tracing::error!(entry = %entry.id, organization = %entry.organization_id,
                                "an audit entry came to be linked more than an hour after its transaction \
                                 (un-linked in the database?); it is not linked");
                            metrics::counter!("hub_audit_late_entries_total").increment(1);
                        }
                        // Moved out of the pending range, so it is reported once and never linked.
                        audit_entry::Entity::update_many()
                            .col_expr(audit_entry::Column::ChainIndex, Expr::value(-entry.seq))
                            .filter(audit_entry::Column::Seq.eq(entry.seq))
                            .exec(txn)
                            .await?;
                        continue;
                    }
                    if regressed.contains(&entry.organization_id) {
                        continue;
                    }
                    let (index, previous) = match heads.get(&entry.organization_id) {
                        Some(head) => *head,
                        None => {
                            let head = head_of(txn, entry.organization_id).await?;
                            let known = seen
                                .lock()
                                .map_err(|_| ApiError::Internal(anyhow::anyhow!("linker state poisoned")))?
                                .get(&entry.organization_id)
                                .copied();
                            if let Some((known_index, known_link)) = known
                                && (head.0 < known_index || (head.0 == known_index && head.1 != known_link))
                            {
                                tracing::error!(organization = %entry.organization_id, head = head.0, seen = known_index,
                                    "an audit chain's head went back (entries deleted or un-linked); it is not extended");
                                metrics::counter!("hub_audit_chain_regressions_total").increment(1);
                                regressed.push(entry.organization_id);
                                continue;
                            }
                            head
                        }
                    };
                    let index = index + 1;
                    let link = key.link(entry.organization_id, index, &previous, &entry.seal);
                    audit_entry::Entity::update_many()
                        .col_expr(audit_entry::Column::ChainIndex, Expr::value(index))
                        .col_expr(audit_entry::Column::Link, Expr::value(link.to_vec()))
                        .filter(audit_entry::Column::Seq.eq(entry.seq))
                        .exec(txn)
                        .await?;
                    heads.insert(entry.organization_id, (index, link));
                }
                Ok((looked_at, heads))
            })
        })
        .await?;
        // Only heads that committed count as seen.
        let (looked_at, heads) = linked_heads;
        if let Ok(mut seen) = self.seen.lock() {
            seen.extend(heads);
        }
        Ok(looked_at)
    }
}

/// The newest linked entry of an organization's chain: its index and link (0 and zeros when empty).
pub async fn head_of<C: ConnectionTrait>(db: &C, organization: Uuid) -> ApiResult<(i64, Mac32)> {
    let head = audit_entry::Entity::find()
        .filter(audit_entry::Column::OrganizationId.eq(organization))
        .filter(audit_entry::Column::ChainIndex.gt(0))
        .order_by_desc(audit_entry::Column::ChainIndex)
        .one(db)
        .await?;
    match head {
        Some(entry) => {
            // A head without a well-formed link was altered: never extend a chain from it.
            let link: Mac32 = entry
                .link
                .as_deref()
                .and_then(|link| link.try_into().ok())
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!(
                        "the head of the audit chain of {organization} has no well-formed link"
                    ))
                })?;
            Ok((entry.chain_index.unwrap_or_default(), link))
        }
        None => Ok((0, [0; 32])),
    }
}
