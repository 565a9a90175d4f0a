//! Work plan and work record rules, independent of GraphQL.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use entities::{
    device, location, order, organization,
    work_plan::{self, WorkStatus},
    work_record,
};
use sea_orm::{
    ActiveEnum,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    auth::Principal,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::write_transaction,
    error::{ApiError, ApiResult},
    events::{NewEvent, Outbox, WORK, record},
    idempotency::{IdempotencyKey, run_once},
    master_data::validate,
    policy::{
        Action, Need, Party, authorize, order_visible, party_of, visible, work_plan_party,
        work_plan_visible,
    },
    records::RecordKind,
    transitions::Step,
};

/// Work records one plan may collect (they are listed with the plan, so they stay bounded).
pub const MAX_RECORDS_PER_PLAN: i32 = 200;
/// The longest a plan may be scheduled for.
const MAX_PLAN_SPAN: TimeDelta = TimeDelta::days(366);
/// The longest one work record may cover.
const MAX_RECORD_SPAN: TimeDelta = TimeDelta::hours(24);
/// How far in the future a work record may end (clock skew of the recorder).
const FUTURE_LEEWAY: TimeDelta = TimeDelta::minutes(5);

/// A new work plan, as a client states it.
#[derive(Debug, Clone, Serialize)]
pub struct NewWorkPlan {
    pub assignee_id: Uuid,
    pub title: String,
    pub details: Option<String>,
    pub order_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub scheduled_start: DateTime<Utc>,
    pub scheduled_end: DateTime<Utc>,
}

/// A work record, as the assignee states it.
#[derive(Debug, Clone, Serialize)]
pub struct NewWorkRecord {
    pub work_plan_id: Uuid,
    pub description: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// Which plans to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkPlanFilter {
    pub status: Option<WorkStatus>,
    /// Only plans the caller planned (`Owner`) or is assigned (`Performer`).
    pub party: Option<Party>,
}

/// The steps of a work plan: the assignee starts and completes it, the planner calls it off.
pub fn work_step(to: WorkStatus) -> ApiResult<Step<WorkStatus>> {
    use WorkStatus::*;
    Ok(match to {
        InProgress => Step {
            from: &[Planned],
            to,
            by: Party::Performer,
            verb: "start the work",
            only: "only the assignee starts the work",
            event_type: "work_plan.started",
        },
        Done => Step {
            from: &[InProgress],
            to,
            by: Party::Performer,
            verb: "complete the work",
            only: "only the assignee completes the work",
            event_type: "work_plan.completed",
        },
        Cancelled => Step {
            from: &[Planned, InProgress],
            to,
            by: Party::Owner,
            verb: "cancel the work plan",
            only: "only the planner cancels a work plan",
            event_type: "work_plan.cancelled",
        },
        Planned => {
            return Err(ApiError::InvalidTransition {
                action: "move the work plan",
                reason: "no step leads back to PLANNED".into(),
            });
        }
    })
}

#[derive(Clone)]
pub struct WorkService {
    db: DatabaseConnection,
    outbox: Outbox,
}

impl WorkService {
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub async fn work_plans(
        &self,
        principal: &Principal,
        filter: WorkPlanFilter,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<work_plan::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let mut select = work_plan::Entity::find().filter(work_plan_visible(principal));
        if let Some(status) = filter.status {
            select = select.filter(work_plan::Column::Status.eq(status));
        }
        if let Some(party) = filter.party {
            select = select.filter(work_plan_party(principal, party));
        }
        let ordering = Ordering {
            name: "createdAt",
            column: work_plan::Column::CreatedAt,
            descending: false,
            key: |plan: &work_plan::Model| SortKey::Time(plan.created_at),
        };
        paginate(
            &self.db,
            select,
            work_plan::Column::Id,
            |plan| plan.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    pub async fn work_plan(&self, principal: &Principal, id: Uuid) -> ApiResult<work_plan::Model> {
        find_plan(&self.db, principal, id).await
    }

    /// Plans work for an assignee (any organization of the directory, the caller included), about
    /// records the caller may see. Idempotent per key.
    pub async fn create_work_plan(
        &self,
        principal: &Principal,
        input: NewWorkPlan,
        idempotency_key: Option<&str>,
    ) -> ApiResult<work_plan::Model> {
        authorize(principal, Action::WriteRecords)?;
        let input = NewWorkPlan {
            title: validate::text("title", &input.title, 200)?,
            details: validate::optional_text("details", input.details.as_deref(), 2000)?,
            ..input
        };
        validate::window(
            "scheduledEnd",
            input.scheduled_start,
            input.scheduled_end,
            MAX_PLAN_SPAN,
        )?;
        let key = idempotency_key
            .map(|key| {
                IdempotencyKey::new(principal.organization_id, "createWorkPlan", key, &input)
            })
            .transpose()?;
        let caller = principal.clone();
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                check_subjects(txn, &caller, &input).await?;
                let now = Utc::now();
                let id = Uuid::now_v7();
                work_plan::Entity::insert(work_plan::ActiveModel {
                    id: Set(id),
                    owner_organization_id: Set(caller.organization_id),
                    assignee_organization_id: Set(input.assignee_id),
                    title: Set(input.title),
                    details: Set(input.details),
                    order_id: Set(input.order_id),
                    location_id: Set(input.location_id),
                    device_id: Set(input.device_id),
                    scheduled_start: Set(input.scheduled_start),
                    scheduled_end: Set(input.scheduled_end),
                    status: Set(WorkStatus::Planned),
                    record_count: Set(0),
                    version: Set(1),
                    created_at: Set(now),
                    updated_at: Set(now),
                    started_at: Set(None),
                    completed_at: Set(None),
                })
                .exec_without_returning(txn)
                .await?;
                record(
                    txn,
                    plan_event(
                        id,
                        caller.organization_id,
                        input.assignee_id,
                        "work_plan.created",
                        WorkStatus::Planned,
                    ),
                )
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.outbox.committed();
        find_plan(&self.db, principal, id).await
    }

    /// Moves a plan to `to`, if the caller is the party that takes that step (and the plan is still at
    /// `expected_version`, when given).
    pub async fn move_plan(
        &self,
        principal: &Principal,
        id: Uuid,
        to: WorkStatus,
        expected_version: Option<i32>,
    ) -> ApiResult<work_plan::Model> {
        authorize(principal, Action::WriteRecords)?;
        let step = work_step(to)?;
        let caller = principal.clone();
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let now = Utc::now();
                let mut update = work_plan::Entity::update_many()
                    .col_expr(work_plan::Column::Status, Expr::value(step.to))
                    .col_expr(
                        work_plan::Column::Version,
                        Expr::col(work_plan::Column::Version).add(1),
                    )
                    .col_expr(work_plan::Column::UpdatedAt, Expr::value(now))
                    .filter(work_plan::Column::Id.eq(id))
                    .filter(work_plan_party(&caller, step.by))
                    .filter(work_plan::Column::Status.is_in(step.from.iter().copied()));
                if let Some(version) = expected_version {
                    update = update.filter(work_plan::Column::Version.eq(version));
                }
                update = match to {
                    WorkStatus::InProgress => {
                        update.col_expr(work_plan::Column::StartedAt, Expr::value(now))
                    }
                    WorkStatus::Done => {
                        update.col_expr(work_plan::Column::CompletedAt, Expr::value(now))
                    }
                    _ => update,
                };
                if update.exec(txn).await?.rows_affected != 1 {
                    let plan = find_plan(txn, &caller, id).await?;
                    let party = party_of(
                        &caller,
                        plan.owner_organization_id,
                        plan.assignee_organization_id,
                        step.by,
                    )
                    .ok_or(ApiError::not_found("work plan"))?;
                    return Err(step.refusal(party, plan.status, plan.version, expected_version));
                }
                let plan = find_plan(txn, &caller, id).await?;
                record(
                    txn,
                    plan_event(
                        id,
                        plan.owner_organization_id,
                        plan.assignee_organization_id,
                        step.event_type,
                        step.to,
                    ),
                )
                .await?;
                Ok(plan)
            })
        })
        .await
        .inspect(|_| self.outbox.committed())
    }

    /// Appends what was done to an IN_PROGRESS plan (its assignee only). Idempotent per key.
    pub async fn record_work(
        &self,
        principal: &Principal,
        input: NewWorkRecord,
        idempotency_key: Option<&str>,
    ) -> ApiResult<work_record::Model> {
        authorize(principal, Action::WriteRecords)?;
        let input = NewWorkRecord {
            description: validate::text("description", &input.description, 2000)?,
            ..input
        };
        validate::window("endedAt", input.started_at, input.ended_at, MAX_RECORD_SPAN)?;
        if input.ended_at > Utc::now() + FUTURE_LEEWAY {
            return Err(ApiError::validation("endedAt", "must not be in the future"));
        }
        let key = idempotency_key
            .map(|key| IdempotencyKey::new(principal.organization_id, "recordWork", key, &input))
            .transpose()?;
        let caller = principal.clone();
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                let plan_id = input.work_plan_id;
                // Counting the record on the plan row also locks it, so a plan completed or cancelled
                // meanwhile gets no record after its last step.
                let counted = work_plan::Entity::update_many()
                    .col_expr(
                        work_plan::Column::RecordCount,
                        Expr::col(work_plan::Column::RecordCount).add(1),
                    )
                    .filter(work_plan::Column::Id.eq(plan_id))
                    .filter(work_plan_party(&caller, Party::Performer))
                    .filter(work_plan::Column::Status.eq(WorkStatus::InProgress))
                    .filter(work_plan::Column::RecordCount.lt(MAX_RECORDS_PER_PLAN))
                    .exec(txn)
                    .await?;
                let plan = find_plan(txn, &caller, plan_id).await?;
                if counted.rows_affected != 1 {
                    return Err(record_refusal(&caller, &plan));
                }
                let minutes = i32::try_from((input.ended_at - input.started_at).num_minutes())
                    .map_err(|_| ApiError::validation("endedAt", "the record is too long"))?;
                let id = Uuid::now_v7();
                work_record::Entity::insert(work_record::ActiveModel {
                    id: Set(id),
                    work_plan_id: Set(plan_id),
                    organization_id: Set(caller.organization_id),
                    recorded_by: Set(caller.member_id()),
                    description: Set(input.description),
                    started_at: Set(input.started_at),
                    ended_at: Set(input.ended_at),
                    minutes: Set(minutes),
                    created_at: Set(Utc::now()),
                })
                .exec_without_returning(txn)
                .await?;
                record(
                    txn,
                    plan_event(
                        plan_id,
                        plan.owner_organization_id,
                        plan.assignee_organization_id,
                        "work_plan.recorded",
                        plan.status,
                    ),
                )
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.outbox.committed();
        let record = work_record::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("work record"))?;
        // A replayed key returns the record only while the caller still sees its plan.
        find_plan(&self.db, principal, record.work_plan_id).await?;
        Ok(record)
    }

    /// The records of the given plans the caller may see, by plan, oldest first.
    pub async fn records(
        &self,
        principal: &Principal,
        plan_ids: &[Uuid],
    ) -> ApiResult<HashMap<Uuid, Vec<work_record::Model>>> {
        let visible_plans = work_plan::Entity::find()
            .filter(work_plan::Column::Id.is_in(plan_ids.iter().copied()))
            .filter(work_plan_visible(principal))
            .all(&self.db)
            .await?;
        let rows = work_record::Entity::find()
            .filter(work_record::Column::WorkPlanId.is_in(visible_plans.iter().map(|p| p.id)))
            .order_by_asc(work_record::Column::StartedAt)
            .order_by_asc(work_record::Column::Id)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<Uuid, Vec<work_record::Model>> = HashMap::new();
        for row in rows {
            grouped.entry(row.work_plan_id).or_default().push(row);
        }
        Ok(grouped)
    }
}

async fn find_plan<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<work_plan::Model> {
    authorize(principal, Action::ReadOwnOrganization)?;
    work_plan::Entity::find_by_id(id)
        .filter(work_plan_visible(principal))
        .one(db)
        .await?
        .ok_or(ApiError::not_found("work plan"))
}

/// Why a record was not appended to a plan the caller sees.
fn record_refusal(principal: &Principal, plan: &work_plan::Model) -> ApiError {
    if plan.assignee_organization_id != principal.organization_id {
        ApiError::Forbidden("only the assignee records work")
    } else if plan.status != WorkStatus::InProgress {
        ApiError::InvalidTransition {
            action: "record work",
            reason: format!("the plan is {}", plan.status.to_value()),
        }
    } else {
        ApiError::validation(
            "workPlanId",
            format!("a plan holds at most {MAX_RECORDS_PER_PLAN} work records"),
        )
    }
}

/// The assignee exists, and the order, location and device are ones the caller may see.
async fn check_subjects<C: ConnectionTrait>(
    txn: &C,
    principal: &Principal,
    input: &NewWorkPlan,
) -> ApiResult<()> {
    organization::Entity::find_by_id(input.assignee_id)
        .one(txn)
        .await?
        .ok_or(ApiError::not_found("organization"))?;
    if let Some(order) = input.order_id {
        order::Entity::find_by_id(order)
            .filter(order_visible(principal))
            .one(txn)
            .await?
            .ok_or(ApiError::not_found("order"))?;
    }
    if let Some(location) = input.location_id {
        location::Entity::find_by_id(location)
            .filter(visible::<location::Entity>(principal, Need::Read))
            .one(txn)
            .await?
            .ok_or(ApiError::not_found("location"))?;
    }
    if let Some(device) = input.device_id {
        device::Entity::find_by_id(device)
            .filter(visible::<device::Entity>(principal, Need::Read))
            .one(txn)
            .await?
            .ok_or(ApiError::not_found("device"))?;
    }
    Ok(())
}

fn plan_event(
    id: Uuid,
    owner: Uuid,
    assignee: Uuid,
    event_type: &'static str,
    status: WorkStatus,
) -> NewEvent {
    NewEvent {
        event_type,
        family: WORK,
        record_type: RecordKind::WorkPlan,
        record_id: id,
        status: status.to_value(),
        owner,
        parties: vec![assignee],
    }
}
