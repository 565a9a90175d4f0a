//! GraphQL types and resolvers for work plans and work records: thin over [`WorkService`].

use std::{collections::HashMap, sync::Arc};

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, dataloader::Loader};
use chrono::{DateTime, Utc};
use entities::{work_plan, work_record};
use uuid::Uuid;

use super::{
    WorkService,
    service::{NewWorkPlan, NewWorkRecord, WorkPlanFilter},
};
use crate::{
    auth::Principal,
    error::ApiError,
    financial::graphql::Order,
    graphql::{
        ContextExt,
        relay::{HubConnection, IntoConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    identity::graphql::Organization,
    master_data::graphql::{Device, Location},
    policy::Party,
    records::RecordKind,
};

fn service<'a>(ctx: &Context<'a>) -> &'a WorkService {
    ctx.data_unchecked::<WorkService>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::work_plan::WorkStatus")]
pub enum WorkStatus {
    /// Planned; nothing done yet.
    Planned,
    /// Started by the assignee; work records can be appended.
    InProgress,
    /// Completed by the assignee.
    Done,
    /// Called off by the planner.
    Cancelled,
}

/// The caller's side of a work plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum WorkRole {
    /// Plans the caller's organization made.
    Planner,
    /// Plans assigned to the caller's organization.
    Assignee,
}

impl From<WorkRole> for Party {
    fn from(role: WorkRole) -> Self {
        match role {
            WorkRole::Planner => Party::Owner,
            WorkRole::Assignee => Party::Performer,
        }
    }
}

/// Work one organization (the planner) asks of another (the assignee). Both see all of it.
pub struct WorkPlan(pub work_plan::Model);

#[Object]
impl WorkPlan {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::WorkPlan, self.0.id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn details(&self) -> Option<&str> {
        self.0.details.as_deref()
    }
    async fn status(&self) -> WorkStatus {
        self.0.status.into()
    }
    async fn planner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.owner_organization_id)
            .await?
            .map(Organization))
    }
    async fn assignee(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.assignee_organization_id)
            .await?
            .map(Organization))
    }
    /// The order the work is for; null when there is none or the caller may not see it.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        match self.0.order_id {
            Some(id) => Ok(ctx.scope().order(id).await?.map(Order)),
            None => Ok(None),
        }
    }
    /// Where the work is done; null when there is none or the caller may not see it.
    async fn location(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Location>> {
        match self.0.location_id {
            Some(id) => Ok(ctx.scope().location(id).await?.map(Location)),
            None => Ok(None),
        }
    }
    /// The device the work is about; null when there is none or the caller may not see it.
    async fn device(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Device>> {
        match self.0.device_id {
            Some(id) => Ok(ctx.scope().device(id).await?.map(Device)),
            None => Ok(None),
        }
    }
    async fn scheduled_start(&self) -> DateTime<Utc> {
        self.0.scheduled_start
    }
    async fn scheduled_end(&self) -> DateTime<Utc> {
        self.0.scheduled_end
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.0.completed_at
    }
    /// What the assignee recorded, oldest first.
    async fn records(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkRecord>> {
        let records = ctx
            .scope()
            .work_records()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?;
        Ok(records
            .unwrap_or_default()
            .into_iter()
            .map(WorkRecord)
            .collect())
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// What was done against a work plan: appended by the assignee, never changed.
pub struct WorkRecord(pub work_record::Model);

#[Object]
impl WorkRecord {
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    async fn ended_at(&self) -> DateTime<Utc> {
        self.0.ended_at
    }
    /// Whole minutes from start to end.
    async fn minutes(&self) -> i32 {
        self.0.minutes
    }
    /// The member who recorded it.
    async fn recorded_by(&self) -> Option<ID> {
        self.0
            .recorded_by
            .map(|id| encode_id(RecordKind::Member, id))
    }
    async fn organization(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.organization_id)
            .await?
            .map(Organization))
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Work records by plan id, for the plans the caller may see.
pub struct WorkRecordsLoader {
    pub service: WorkService,
    pub principal: Principal,
}

impl Loader<Uuid> for WorkRecordsLoader {
    type Value = Vec<work_record::Model>;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.service
            .records(&self.principal, keys)
            .await
            .map_err(Arc::new)
    }
}

fn loader_error(err: Arc<ApiError>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("loading work records failed: {err}"))
}

#[derive(InputObject, Default)]
pub struct WorkPlanFilterInput {
    status: Option<WorkStatus>,
    /// Only the plans the caller made (PLANNER) or is assigned (ASSIGNEE).
    role: Option<WorkRole>,
}

#[derive(Default)]
pub struct WorkQuery;

#[Object]
impl WorkQuery {
    /// Work plans the caller planned or is assigned, oldest first.
    async fn work_plans(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<WorkPlanFilterInput>,
    ) -> async_graphql::Result<HubConnection<WorkPlan>> {
        let filter = filter.unwrap_or_default();
        let page = service(ctx)
            .work_plans(
                ctx.principal()?,
                WorkPlanFilter {
                    status: filter.status.map(Into::into),
                    party: filter.role.map(Into::into),
                },
                PageArgs {
                    first,
                    after,
                    last,
                    before,
                },
                wants_total(ctx),
            )
            .await?;
        Ok(page.into_connection(WorkPlan))
    }
}

#[derive(InputObject)]
pub struct CreateWorkPlanInput {
    /// The organization that is to do the work (any organization of the directory).
    assignee_id: ID,
    /// 1 to 200 characters.
    title: String,
    /// Up to 2,000 characters.
    details: Option<String>,
    /// An order the caller may see.
    order_id: Option<ID>,
    /// A location the caller may see.
    location_id: Option<ID>,
    /// A device the caller may see.
    device_id: Option<ID>,
    scheduled_start: DateTime<Utc>,
    /// After the start, at most 366 days later.
    scheduled_end: DateTime<Utc>,
    /// Retrying with the same key and input returns the same plan; another input fails with
    /// IDEMPOTENCY_MISMATCH.
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct MoveWorkPlanInput {
    id: ID,
    /// IN_PROGRESS and DONE are the assignee's steps (from PLANNED, from IN_PROGRESS); CANCELLED is
    /// the planner's (from PLANNED or IN_PROGRESS).
    to: WorkStatus,
    /// When given, the step is refused with CONFLICT unless the plan is still at this version.
    version: Option<i32>,
}

#[derive(InputObject)]
pub struct RecordWorkInput {
    work_plan_id: ID,
    /// 1 to 2,000 characters.
    description: String,
    started_at: DateTime<Utc>,
    /// After the start, at most 24 hours later, not in the future.
    ended_at: DateTime<Utc>,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct WorkPlanPayload {
    work_plan: WorkPlan,
}

#[derive(SimpleObject)]
pub struct RecordWorkPayload {
    work_record: WorkRecord,
}

fn optional_id(
    field: &'static str,
    kind: RecordKind,
    id: Option<&ID>,
) -> Result<Option<Uuid>, ApiError> {
    id.map(|id| decode_id(field, kind, id)).transpose()
}

#[derive(Default)]
pub struct WorkMutation;

#[Object]
impl WorkMutation {
    /// Plans work for an assignee (MEMBER or ADMIN). The plan starts PLANNED.
    async fn create_work_plan(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkPlanInput,
    ) -> async_graphql::Result<WorkPlanPayload> {
        let plan = NewWorkPlan {
            assignee_id: decode_id("assigneeId", RecordKind::Organization, &input.assignee_id)?,
            title: input.title,
            details: input.details,
            order_id: optional_id("orderId", RecordKind::Order, input.order_id.as_ref())?,
            location_id: optional_id(
                "locationId",
                RecordKind::Location,
                input.location_id.as_ref(),
            )?,
            device_id: optional_id("deviceId", RecordKind::Device, input.device_id.as_ref())?,
            scheduled_start: input.scheduled_start,
            scheduled_end: input.scheduled_end,
        };
        let plan = service(ctx)
            .create_work_plan(ctx.principal()?, plan, input.idempotency_key.as_deref())
            .await?;
        Ok(WorkPlanPayload {
            work_plan: WorkPlan(plan),
        })
    }

    /// Moves a work plan one step (see `MoveWorkPlanInput.to` for who takes which).
    async fn move_work_plan(
        &self,
        ctx: &Context<'_>,
        input: MoveWorkPlanInput,
    ) -> async_graphql::Result<WorkPlanPayload> {
        let id = decode_id("id", RecordKind::WorkPlan, &input.id)?;
        let plan = service(ctx)
            .move_plan(ctx.principal()?, id, input.to.into(), input.version)
            .await?;
        Ok(WorkPlanPayload {
            work_plan: WorkPlan(plan),
        })
    }

    /// Appends what was done to an IN_PROGRESS plan (its assignee only).
    async fn record_work(
        &self,
        ctx: &Context<'_>,
        input: RecordWorkInput,
    ) -> async_graphql::Result<RecordWorkPayload> {
        let record = NewWorkRecord {
            work_plan_id: decode_id("workPlanId", RecordKind::WorkPlan, &input.work_plan_id)?,
            description: input.description,
            started_at: input.started_at,
            ended_at: input.ended_at,
        };
        let record = service(ctx)
            .record_work(ctx.principal()?, record, input.idempotency_key.as_deref())
            .await?;
        Ok(RecordWorkPayload {
            work_record: WorkRecord(record),
        })
    }
}
