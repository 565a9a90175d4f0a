//! Which mutation a transaction belongs to. The GraphQL edge opens a scope around each root mutation
//! field (who, for which organization, which operation, the keyed digest of its arguments); the write
//! helpers (`db::write_transaction`, `idempotency::run_once_with`) append the scope's entry inside the
//! first transaction they commit in it, so an entry exists exactly when the mutation changed
//! something, and commits or rolls back with the change. Services name the record they changed with
//! [`touch`].

use std::sync::{Arc, Mutex};

use async_graphql::{
    ServerResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextResolve, ResolveInfo,
    },
};
use chrono::{DateTime, Utc};
use entities::audit_entry;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait};
use tokio::sync::Notify;
use uuid::Uuid;

use super::chain::{ActorKind, AuditKey, EntryFields, Mac32};
use crate::{
    auth::{Actor, Principal},
    db::writes::Writes,
    error::{ApiError, ApiResult},
    records::RecordKind,
};

tokio::task_local! {
    static SCOPE: Arc<Mutex<Scope>>;
}

/// The mutation being resolved.
struct Scope {
    key: AuditKey,
    linker: Arc<Notify>,
    organization: Uuid,
    actor_kind: ActorKind,
    actor: Uuid,
    operation: String,
    change_digest: Mac32,
    record: Option<(RecordKind, Uuid)>,
    appended: bool,
    replayed: bool,
}

/// Names the record the current mutation changed, unless one is named already (the record a mutation
/// names in `input.id`, or the first it created). No-op outside a mutation.
pub fn touch(kind: RecordKind, id: Uuid) {
    let _ = SCOPE.try_with(|scope| {
        if let Ok(mut scope) = scope.lock()
            && scope.record.is_none()
        {
            scope.record = Some((kind, id));
        }
    });
}

/// The entry of the current mutation, if one is being resolved and has no entry yet. Called by the
/// write helpers inside their transaction, right before commit; true when it wrote the entry.
pub async fn append_in<C: ConnectionTrait>(txn: &C) -> ApiResult<bool> {
    if !pending()? {
        return Ok(false);
    }
    let recorded_at: DateTime<Utc> = crate::db::database_now(txn).await?;
    let mut writes = Writes::new();
    let staged = stage_entry(&mut writes, recorded_at)?;
    if let Err(err) = writes.run(txn).await {
        not_appended();
        return Err(err);
    }
    Ok(staged)
}

/// Whether the current mutation still needs its entry.
fn pending() -> ApiResult<bool> {
    let Ok(scope) = SCOPE.try_with(Arc::clone) else {
        return Ok(false);
    };
    scope
        .lock()
        .map(|s| !s.appended)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the audit scope is poisoned")))
}

/// Adds the entry of the current mutation to `writes`, stamped `recorded_at` (the transaction's
/// database time), if one is being resolved and has no entry yet; true when it did. If the
/// transaction then does not commit, call [`not_appended`].
pub fn stage_entry(writes: &mut Writes, recorded_at: DateTime<Utc>) -> ApiResult<bool> {
    let Ok(scope) = SCOPE.try_with(Arc::clone) else {
        return Ok(false);
    };
    let mut s = scope
        .lock()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the audit scope is poisoned")))?;
    if s.appended {
        return Ok(false);
    }
    s.appended = true;
    let id = Uuid::now_v7();
    let record_type = s.record.map(|(kind, _)| kind.name());
    let fields = EntryFields {
        id,
        organization: s.organization,
        actor_kind: s.actor_kind,
        actor: s.actor,
        operation: &s.operation,
        record_type,
        record_id: s.record.map(|(_, id)| id),
        change_digest: &s.change_digest,
        recorded_at_micros: recorded_at.timestamp_micros(),
    };
    let seal = s.key.seal(&fields);
    let entry = audit_entry::ActiveModel {
        id: Set(id),
        organization_id: Set(s.organization),
        actor_kind: Set(s.actor_kind.as_str().to_owned()),
        actor_id: Set(s.actor),
        operation: Set(s.operation.clone()),
        record_type: Set(record_type.map(str::to_owned)),
        record_id: Set(fields.record_id),
        change_digest: Set(s.change_digest.to_vec()),
        recorded_at: Set(recorded_at),
        seal: Set(seal.to_vec()),
        chain_index: Set(None),
        link: Set(None),
        ..Default::default()
    };
    writes.insert(audit_entry::Entity::insert(entry).into_query());
    Ok(true)
}

/// What an attempt may change in the scope, to be put back when the attempt is abandoned whole.
pub struct Mark {
    record: Option<(RecordKind, Uuid)>,
    appended: bool,
}

/// The scope as it is now (nothing outside a mutation).
pub fn mark() -> Option<Mark> {
    SCOPE
        .try_with(|scope| {
            scope.lock().ok().map(|s| Mark {
                record: s.record,
                appended: s.appended,
            })
        })
        .ok()
        .flatten()
}

/// Puts the scope back as `mark` found it: an attempt that rolled back touched no record and
/// appended nothing, so the next attempt names its own.
pub fn restore(mark: Option<Mark>) {
    let Some(mark) = mark else {
        return;
    };
    let _ = SCOPE.try_with(|scope| {
        if let Ok(mut s) = scope.lock() {
            s.record = mark.record;
            s.appended = mark.appended;
        }
    });
}

/// The step holding the entry failed: a retry of the same mutation in a new transaction appends it.
pub fn not_appended() {
    let _ = SCOPE.try_with(|scope| {
        if let Ok(mut s) = scope.lock() {
            s.appended = false;
        }
    });
}

/// Says the current mutation was answered from its idempotency record: it changes nothing now, so it
/// appends no entry (its first run did).
pub fn replayed() {
    let _ = SCOPE.try_with(|scope| {
        if let Ok(mut scope) = scope.lock() {
            scope.replayed = true;
        }
    });
}

/// Wakes the linker after a commit that may have appended an entry.
pub fn committed() {
    let _ = SCOPE.try_with(|scope| {
        if let Ok(scope) = scope.lock()
            && scope.appended
        {
            scope.linker.notify_one();
        }
    });
}

/// The GraphQL extension that opens a scope around each root mutation field.
#[derive(Clone)]
pub struct AuditMutations {
    pub db: sea_orm::DatabaseConnection,
    pub key: AuditKey,
    pub linker: Arc<Notify>,
    /// The mutation root's type name.
    pub root: String,
}

impl ExtensionFactory for AuditMutations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuditExtension {
            db: self.db.clone(),
            key: self.key.clone(),
            linker: self.linker.clone(),
            root: self.root.clone(),
            variables: Mutex::new(Variables::default()),
        })
    }
}

struct AuditExtension {
    db: sea_orm::DatabaseConnection,
    key: AuditKey,
    linker: Arc<Notify>,
    root: String,
    /// The request's variables, to digest arguments as the resolver received them.
    variables: Mutex<Variables>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AuditExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        if let Ok(mut variables) = self.variables.lock() {
            *variables = request.variables.clone();
        }
        next.run(ctx, request).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Called for every field of every response: the cheap test first.
        if info.parent_type != self.root {
            return next.run(ctx, info).await;
        }
        let Some(principal) = ctx.data_opt::<Principal>() else {
            return next.run(ctx, info).await;
        };
        let arguments = self.arguments(&info);
        // A mutation of an existing record names it by `input.id`; creations name theirs with
        // `touch` once the id exists.
        let record = arguments
            .get("input")
            .and_then(|input| input.get("id"))
            .or_else(|| arguments.get("id"))
            .and_then(serde_json::Value::as_str)
            .and_then(|id| id.parse::<crate::records::GlobalId>().ok())
            .map(|global| (global.kind, global.id));
        let arguments = serde_json::to_vec(&arguments).unwrap_or_default();
        let (actor_kind, actor) = match principal.actor {
            Actor::Member(id) => (ActorKind::Member, id),
            Actor::Device(id) => (ActorKind::Device, id),
        };
        let scope = Scope {
            key: self.key.clone(),
            linker: self.linker.clone(),
            organization: principal.organization_id,
            actor_kind,
            actor,
            operation: info.name.to_owned(),
            change_digest: self.key.change_digest(info.name, &arguments),
            record,
            appended: false,
            replayed: false,
        };
        let scope = Arc::new(Mutex::new(scope));
        let db = self.db.clone();
        SCOPE
            .scope(scope.clone(), async move {
                let resolved = next.run(ctx, info).await;
                let settled = scope
                    .lock()
                    .map(|s| s.appended || s.replayed)
                    .unwrap_or(true);
                if resolved.is_ok() && !settled {
                    // A mutation that succeeded without a write transaction (minting a token writes
                    // no row) is audited all the same, in a transaction of its own.
                    let audited = crate::db::write_transaction(&db, |_| Box::pin(async { Ok(()) }));
                    if let Err(err) = audited.await {
                        tracing::error!(error = %err, "a mutation succeeded but its audit entry could not be written");
                    }
                }
                resolved
            })
            .await
    }
}

impl AuditExtension {
    /// The field's arguments with variables substituted, as a JSON object.
    fn arguments(&self, info: &ResolveInfo<'_>) -> serde_json::Map<String, serde_json::Value> {
        let variables = self.variables.lock().map(|v| v.clone()).unwrap_or_default();
        let mut object = serde_json::Map::new();
        for (name, value) in &info.field.arguments {
            let resolved = value
                .node
                .clone()
                .into_const_with(|var| {
                    Ok::<_, std::convert::Infallible>(
                        variables.get(&var).cloned().unwrap_or(Value::Null),
                    )
                })
                .unwrap_or(Value::Null);
            object.insert(
                name.node.to_string(),
                resolved.into_json().unwrap_or(serde_json::Value::Null),
            );
        }
        object
    }
}
