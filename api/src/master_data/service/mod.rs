//! Master-data rules, independent of GraphQL. Every read filters with `policy::visible` inside the SQL
//! query; every write asks `policy::authorize` first and re-checks visibility in its WHERE clause.
//!
//! This module holds [`MasterDataService`] and the generic helpers every entity uses; each entity's
//! input types and methods live in their own module.

mod customers;
mod devices;
mod locations;
mod products;
mod shares;

use crate::db::write_transaction;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, IntoActiveModel, QueryFilter, Select, SqlErr,
    sea_query::{Expr, ExprTrait, Func, LikeExpr, SimpleExpr},
};
use serde::Serialize;
use uuid::Uuid;

pub use customers::{CustomerFilter, CustomerPatch, NewCustomer};
pub use devices::{DeviceFilter, DevicePatch, DeviceSort, NewDevice};
pub use locations::{LocationFilter, LocationPatch, LocationSort, NewLocation};
pub use products::{NewProduct, ProductFilter, ProductPatch, ProductSort};
pub use shares::NewShare;

use super::VersionedEntity;
use crate::{
    auth::Principal,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    error::{ApiError, ApiResult},
    idempotency::{IdempotencyKey, run_once},
    policy::{Action, Need, SharedEntity, authorize, resource_name, visible},
};

/// Sort direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

const NAME_MAX: usize = 200;

#[derive(Clone)]
pub struct MasterDataService {
    db: DatabaseConnection,
    /// Seals and opens customers' contact fields.
    vault: crate::crypto::Vault,
    /// Announces device changes to every replica's access cache.
    bus: crate::events::Bus,
}

impl MasterDataService {
    pub fn new(
        db: DatabaseConnection,
        vault: crate::crypto::Vault,
        bus: crate::events::Bus,
    ) -> Self {
        Self { db, vault, bus }
    }

    /// Inserts a new row of `E` once per idempotency key and returns it as the caller sees it.
    async fn create_once<E>(
        &self,
        principal: &Principal,
        operation: &'static str,
        idempotency_key: Option<&str>,
        input: &impl Serialize,
        model: E::ActiveModel,
    ) -> ApiResult<E::Model>
    where
        E: SharedEntity,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: ActiveModelTrait<Entity = E> + Send + 'static,
    {
        let key = idempotency_key
            .map(|key| IdempotencyKey::new(principal.organization_id, operation, key, input))
            .transpose()?;
        self.insert_once::<E>(principal, operation, key, model)
            .await
    }

    /// [`Self::create_once`] for an input with sensitive values: its idempotency fingerprint is keyed.
    async fn create_once_sensitive<E>(
        &self,
        principal: &Principal,
        operation: &'static str,
        idempotency_key: Option<&str>,
        input: &impl Serialize,
        model: E::ActiveModel,
    ) -> ApiResult<E::Model>
    where
        E: SharedEntity,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: ActiveModelTrait<Entity = E> + Send + 'static,
    {
        let key = idempotency_key
            .map(|key| {
                IdempotencyKey::new_sensitive(
                    principal.organization_id,
                    operation,
                    key,
                    input,
                    &self.vault,
                )
            })
            .transpose()?;
        self.insert_once::<E>(principal, operation, key, model)
            .await
    }

    async fn insert_once<E>(
        &self,
        principal: &Principal,
        operation: &'static str,
        key: Option<IdempotencyKey>,
        model: E::ActiveModel,
    ) -> ApiResult<E::Model>
    where
        E: SharedEntity,
        E::Model: FromQueryResult + Send + Sync,
        E::ActiveModel: ActiveModelTrait<Entity = E> + Send + 'static,
    {
        let id = match model.get(E::id_column()) {
            sea_orm::ActiveValue::Set(sea_orm::Value::Uuid(Some(id))) => id,
            _ => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "a new {operation} row has no id"
                )));
            }
        };
        crate::audit::touch(crate::policy::record_kind(E::RESOURCE), id);
        let created = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                E::insert(model).exec_without_returning(txn).await?;
                Ok(id)
            })
        })
        .await?;
        find_visible::<E, _>(&self.db, principal, created, Need::Read).await
    }
}

/// All rows of `E` the caller may read.
/// How a listing sorts: the column, the ordering's name in cursors, and the key of a row.
type SortBy<E> = (
    <E as EntityTrait>::Column,
    &'static str,
    fn(&<E as EntityTrait>::Model) -> SortKey,
);

impl MasterDataService {
    /// One page of `select` (already filtered), sorted by `sort` (column, cursor name, key of a row) in
    /// `direction`, with the entity's id as tie-breaker.
    async fn page<E>(
        &self,
        select: Select<E>,
        sort: SortBy<E>,
        direction: Direction,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<E::Model>>
    where
        E: SharedEntity,
        E::Model: FromQueryResult + Sync,
    {
        let (column, name, key) = sort;
        let ordering = Ordering {
            name,
            column,
            descending: direction == Direction::Desc,
            key,
        };
        paginate(
            &self.db,
            select,
            E::id_column(),
            E::id_of,
            ordering,
            args,
            with_total,
        )
        .await
    }
}

fn visible_rows<E: SharedEntity>(principal: &Principal) -> ApiResult<Select<E>> {
    authorize(principal, Action::ReadOwnOrganization)?;
    Ok(E::find().filter(visible::<E>(principal, Need::Read)))
}

async fn find_visible<E, C>(
    db: &C,
    principal: &Principal,
    id: Uuid,
    need: Need,
) -> ApiResult<E::Model>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Send + Sync,
    C: ConnectionTrait,
{
    authorize(principal, Action::ReadOwnOrganization)?;
    E::find()
        .filter(E::id_column().eq(id))
        .filter(visible::<E>(principal, need))
        .one(db)
        .await?
        .ok_or(ApiError::not_found(resource_name(E::RESOURCE)))
}

/// Applies `changes` to row `id` only if its version is still `version` and the caller may write it;
/// bumps the version. Stale versions answer CONFLICT, invisible rows NOT_FOUND, read-only ones FORBIDDEN.
async fn versioned_update<E>(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
    version: i32,
    changes: <E as EntityTrait>::ActiveModel,
    need: Need,
) -> ApiResult<E::Model>
where
    E: VersionedEntity,
    E::Model: FromQueryResult + IntoActiveModel<E::ActiveModel> + Send + Sync,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
{
    // In a write transaction, so the mutation's audit entry commits with the change; a refusal
    // rolls it back (and with it the entry).
    let writable = visible::<E>(principal, need);
    let caller = principal.clone();
    write_transaction(db, move |txn| {
        Box::pin(async move {
            let result = E::update_many()
                .set(changes)
                .col_expr(E::version_column(), Expr::col(E::version_column()).add(1))
                .col_expr(E::updated_at_column(), Expr::value(Utc::now()))
                .filter(E::id_column().eq(id))
                .filter(E::version_column().eq(version))
                .filter(writable)
                .exec(txn)
                .await?;
            if result.rows_affected == 1 {
                return Ok(());
            }
            // Nothing changed: say why, without revealing rows the caller cannot see.
            require::<E, _>(txn, &caller, id, need).await?;
            Err(ApiError::Conflict(format!(
                "stale version {version}: the {} changed since you read it; read it again and retry",
                resource_name(E::RESOURCE)
            )))
        })
    })
    .await?;
    find_visible::<E, _>(db, principal, id, Need::Read).await
}

/// Succeeds when the caller may do what `need` says to the row; otherwise NOT_FOUND when it may not
/// even see it, or FORBIDDEN naming the rule (a database error stays one).
async fn require<E, C>(db: &C, principal: &Principal, id: Uuid, need: Need) -> ApiResult<()>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Send + Sync,
    C: ConnectionTrait,
{
    find_visible::<E, _>(db, principal, id, Need::Read).await?;
    match find_visible::<E, _>(db, principal, id, need).await {
        Ok(_) => Ok(()),
        Err(ApiError::NotFound { .. }) => Err(ApiError::Forbidden(match need {
            Need::Own => "only the record's owner may make this change",
            Need::WriteSensitive => {
                "the record is shared with your organization without its sensitive fields"
            }
            Need::Read | Need::Write => "the record is shared with your organization read-only",
        })),
        Err(other) => Err(other),
    }
}

/// Deletes one of the caller's own rows (owners delete; WRITE shares do not extend to deletion).
async fn delete_owned<E>(
    db: &DatabaseConnection,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<Uuid>
where
    E: SharedEntity,
    E::Model: FromQueryResult + Send + Sync,
{
    authorize(principal, Action::WriteRecords)?;
    let caller = principal.clone();
    write_transaction(db, move |txn| {
        Box::pin(async move {
            let result = E::delete_many()
                .filter(E::id_column().eq(id))
                .filter(E::owner_column().eq(caller.organization_id))
                .exec(txn)
                .await
                .map_err(|err| match err.sql_err() {
                    Some(SqlErr::ForeignKeyConstraintViolation(_)) => ApiError::Conflict(format!(
                        "the {} is still referenced by other records and cannot be deleted",
                        resource_name(E::RESOURCE)
                    )),
                    _ => err.into(),
                })?;
            if result.rows_affected == 1 {
                return Ok(id);
            }
            find_visible::<E, _>(txn, &caller, id, Need::Read).await?;
            Err(ApiError::Forbidden("only the owner deletes a record"))
        })
    })
    .await
}

/// Case-insensitive substring match with LIKE wildcards in the needle escaped.
fn contains_ignoring_case<C: ColumnTrait>(column: C, needle: &str) -> SimpleExpr {
    let escaped = needle
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Expr::expr(Func::lower(Expr::col(column)))
        .like(LikeExpr::new(format!("%{escaped}%")).escape('\\'))
}
