//! GraphQL types and resolvers for deliveries and travel records: thin over [`LogisticsService`].

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Context, Enum, ID, InputObject, Object, SimpleObject, Subscription, dataloader::Loader,
};
use chrono::{DateTime, Utc};
use entities::{delivery, travel_record};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::{
    LogisticsService,
    sensitive::{Position as PositionValue, Recipient as RecipientValue},
    service::{DeliveryFilter, NewDelivery, NewTravelRecord},
};
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    financial::graphql::Order,
    graphql::{
        ContextExt,
        live::{self, Following},
        relay::{HubConnection, IntoConnection, PageArgs, decode_id, encode_id, wants_total},
    },
    identity::graphql::Organization,
    master_data::graphql::Location,
    policy::Party,
    records::RecordKind,
};

fn service<'a>(ctx: &Context<'a>) -> &'a LogisticsService {
    ctx.data_unchecked::<LogisticsService>()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::delivery::DeliveryStatus")]
pub enum DeliveryStatus {
    /// Arranged; the carrier has not collected the goods yet.
    Planned,
    /// Collected at the origin.
    PickedUp,
    /// On its way to the recipient.
    InTransit,
    /// Handed to the recipient.
    Delivered,
    /// Could not be delivered (the goods are still with the carrier).
    Failed,
    /// Brought back after a failure.
    Returned,
}

/// The caller's side of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum DeliveryRole {
    /// Deliveries of the caller's orders.
    Shipper,
    /// Deliveries the caller carries.
    Carrier,
}

impl From<DeliveryRole> for Party {
    fn from(role: DeliveryRole) -> Self {
        match role {
            DeliveryRole::Shipper => Party::Owner,
            DeliveryRole::Carrier => Party::Performer,
        }
    }
}

/// Who receives a delivery, and where (sensitive: stored encrypted, shown to shipper and carrier).
#[derive(SimpleObject)]
pub struct Recipient {
    name: String,
    phone: Option<String>,
    address: String,
}

impl From<RecipientValue> for Recipient {
    fn from(value: RecipientValue) -> Self {
        Self {
            name: value.name,
            phone: value.phone,
            address: value.address,
        }
    }
}

/// WGS 84 degrees (sensitive: stored encrypted).
#[derive(SimpleObject)]
pub struct Position {
    latitude: f64,
    longitude: f64,
}

/// An order's goods on their way. The shipper (the order's owner) and the carrier see all of it.
pub struct Delivery(pub delivery::Model);

#[Object]
impl Delivery {
    pub async fn id(&self) -> ID {
        encode_id(RecordKind::Delivery, self.0.id)
    }
    async fn status(&self) -> DeliveryStatus {
        self.0.status.into()
    }
    /// Null for a carrier, which does not see the order itself.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        Ok(ctx.scope().order(self.0.order_id).await?.map(Order))
    }
    async fn shipper(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.owner_organization_id)
            .await?
            .map(Organization))
    }
    async fn carrier(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Organization>> {
        Ok(ctx
            .scope()
            .organization(self.0.carrier_organization_id)
            .await?
            .map(Organization))
    }
    /// Where the goods are collected; null when the caller may not see the location.
    async fn origin(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Location>> {
        Ok(ctx
            .scope()
            .location(self.0.origin_location_id)
            .await?
            .map(Location))
    }
    async fn recipient(&self, ctx: &Context<'_>) -> async_graphql::Result<Recipient> {
        let recipient = service(ctx).recipient(ctx.principal()?, &self.0).await?;
        Ok(recipient.into())
    }
    async fn promised_from(&self) -> DateTime<Utc> {
        self.0.promised_from
    }
    async fn promised_until(&self) -> DateTime<Utc> {
        self.0.promised_until
    }
    async fn picked_up_at(&self) -> Option<DateTime<Utc>> {
        self.0.picked_up_at
    }
    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.delivered_at
    }
    /// Whether it was delivered by the end of the promised window; null until delivered.
    async fn on_time(&self) -> Option<bool> {
        self.0
            .delivered_at
            .map(|delivered| delivered <= self.0.promised_until)
    }
    /// The carrier's tracking events, in the order the hub accepted them.
    async fn travel_records(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TravelRecord>> {
        let records = ctx
            .scope()
            .travel_records()
            .load_one(self.0.id)
            .await
            .map_err(loader_error)?;
        Ok(records
            .unwrap_or_default()
            .into_iter()
            .map(TravelRecord)
            .collect())
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One tracking event of a delivery: appended by the carrier, never changed.
#[derive(Clone, PartialEq)]
pub struct TravelRecord(pub travel_record::Model);

#[Object]
impl TravelRecord {
    /// 1, 2, ... per delivery; pass the last one seen as `after` to `deliveryTracking`.
    async fn sequence(&self) -> i32 {
        self.0.sequence
    }
    /// When the carrier says it happened.
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    async fn position(&self, ctx: &Context<'_>) -> async_graphql::Result<Position> {
        let position: PositionValue = service(ctx).position(&self.0).await?;
        Ok(Position {
            latitude: position.latitude,
            longitude: position.longitude,
        })
    }
    /// The delivery's status when the record was appended.
    async fn status(&self) -> DeliveryStatus {
        self.0.status.into()
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
}

/// Travel records by delivery id, for the deliveries the caller may see.
pub struct TravelRecordsLoader {
    pub service: LogisticsService,
    pub principal: Principal,
}

impl Loader<Uuid> for TravelRecordsLoader {
    type Value = Vec<travel_record::Model>;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.service
            .travel_records(&self.principal, keys, None)
            .await
            .map_err(Arc::new)
    }
}

fn loader_error(err: Arc<ApiError>) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("loading travel records failed: {err}"))
}

#[derive(InputObject, Default)]
pub struct DeliveryFilterInput {
    status: Option<DeliveryStatus>,
    /// Only the deliveries the caller ships (SHIPPER) or carries (CARRIER).
    role: Option<DeliveryRole>,
}

#[derive(Default)]
pub struct LogisticsQuery;

#[Object]
impl LogisticsQuery {
    /// Deliveries the caller ships or carries, oldest first.
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<DeliveryFilterInput>,
    ) -> async_graphql::Result<HubConnection<Delivery>> {
        let filter = filter.unwrap_or_default();
        let page = service(ctx)
            .deliveries(
                ctx.principal()?,
                DeliveryFilter {
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
        Ok(page.into_connection(Delivery))
    }
}

#[derive(InputObject)]
pub struct RecipientInput {
    /// 1 to 200 characters.
    name: String,
    /// Up to 40 characters.
    phone: Option<String>,
    /// 1 to 500 characters.
    address: String,
}

#[derive(InputObject)]
pub struct PositionInput {
    /// -90 to 90.
    latitude: f64,
    /// -180 to 180.
    longitude: f64,
}

#[derive(InputObject)]
pub struct CreateDeliveryInput {
    /// One of the caller's own orders, PLACED or FULFILLED.
    order_id: ID,
    /// A LOGISTICS organization.
    carrier_id: ID,
    /// A location the caller may see.
    origin_location_id: ID,
    recipient: RecipientInput,
    promised_from: DateTime<Utc>,
    /// After `promisedFrom`, at most 90 days later.
    promised_until: DateTime<Utc>,
    /// Retrying with the same key and input returns the same delivery; another input fails with
    /// IDEMPOTENCY_MISMATCH.
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct MoveDeliveryInput {
    id: ID,
    /// The carrier's steps: PICKED_UP (from PLANNED), IN_TRANSIT (from PICKED_UP), DELIVERED (from
    /// IN_TRANSIT), FAILED (from PICKED_UP or IN_TRANSIT), RETURNED (from FAILED).
    to: DeliveryStatus,
    /// When given, the step is refused with CONFLICT unless the delivery is still at this version.
    version: Option<i32>,
}

#[derive(InputObject)]
pub struct RecordTravelInput {
    delivery_id: ID,
    /// When it happened: not in the future, not before the delivery was arranged.
    recorded_at: DateTime<Utc>,
    position: PositionInput,
    /// Up to 500 characters.
    note: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct DeliveryPayload {
    delivery: Delivery,
}

#[derive(SimpleObject)]
pub struct RecordTravelPayload {
    travel_record: TravelRecord,
}

#[derive(Default)]
pub struct LogisticsMutation;

#[Object]
impl LogisticsMutation {
    /// Arranges the delivery of one of the caller's orders with a carrier (MEMBER or ADMIN).
    async fn create_delivery(
        &self,
        ctx: &Context<'_>,
        input: CreateDeliveryInput,
    ) -> async_graphql::Result<DeliveryPayload> {
        let delivery = NewDelivery {
            order_id: decode_id("orderId", RecordKind::Order, &input.order_id)?,
            carrier_id: decode_id("carrierId", RecordKind::Organization, &input.carrier_id)?,
            origin_location_id: decode_id(
                "originLocationId",
                RecordKind::Location,
                &input.origin_location_id,
            )?,
            recipient: RecipientValue {
                name: input.recipient.name,
                phone: input.recipient.phone,
                address: input.recipient.address,
            },
            promised_from: input.promised_from,
            promised_until: input.promised_until,
        };
        let delivery = service(ctx)
            .create_delivery(ctx.principal()?, delivery, input.idempotency_key.as_deref())
            .await?;
        Ok(DeliveryPayload {
            delivery: Delivery(delivery),
        })
    }

    /// Moves a delivery one step (its carrier only).
    async fn move_delivery(
        &self,
        ctx: &Context<'_>,
        input: MoveDeliveryInput,
    ) -> async_graphql::Result<DeliveryPayload> {
        let id = decode_id("id", RecordKind::Delivery, &input.id)?;
        let delivery = service(ctx)
            .move_delivery(ctx.principal()?, id, input.to.into(), input.version)
            .await?;
        Ok(DeliveryPayload {
            delivery: Delivery(delivery),
        })
    }

    /// Appends a tracking event to a delivery the caller carries (PICKED_UP, IN_TRANSIT or FAILED).
    async fn record_travel(
        &self,
        ctx: &Context<'_>,
        input: RecordTravelInput,
    ) -> async_graphql::Result<RecordTravelPayload> {
        let record = NewTravelRecord {
            delivery_id: decode_id("deliveryId", RecordKind::Delivery, &input.delivery_id)?,
            recorded_at: input.recorded_at,
            position: PositionValue {
                latitude: input.position.latitude,
                longitude: input.position.longitude,
            },
            note: input.note,
        };
        let record = service(ctx)
            .record_travel(ctx.principal()?, record, input.idempotency_key.as_deref())
            .await?;
        Ok(RecordTravelPayload {
            travel_record: TravelRecord(record),
        })
    }
}

#[derive(Default)]
pub struct LogisticsSubscription;

#[Subscription]
impl LogisticsSubscription {
    /// A delivery's travel records: those after sequence `after` (all of them without it), then each
    /// new one as the carrier appends it, until the delivery is DELIVERED or RETURNED, for as long as
    /// the caller may see it.
    async fn delivery_tracking(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<TravelRecord>> + use<>>
    {
        let id = decode_id("id", RecordKind::Delivery, &id)?;
        let service = service(ctx).clone();
        let Following {
            slot,
            principal,
            events,
        } = live::follow(ctx, None)?;
        // Joined before this first read: a record appended in between arrives as an event.
        service.delivery(&principal, id).await?;
        let records = async_stream::stream! {
            let mut seen = after.unwrap_or(0);
            let mut events = events;
            loop {
                // The status is read before the records: no record follows a settling step, so
                // a delivery seen settled here has all its records in the read below.
                let settled = match service.delivery(&principal, id).await {
                    Ok(delivery) => is_settled(&delivery),
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                };
                let batch: ApiResult<Vec<travel_record::Model>> = service
                    .travel_records(&principal, &[id], Some(seen))
                    .await
                    .map(|mut by_delivery| by_delivery.remove(&id).unwrap_or_default());
                match batch {
                    Ok(batch) => {
                        for record in batch {
                            seen = record.sequence;
                            yield Ok(record);
                        }
                    }
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                }
                if settled {
                    return;
                }
                // Wait for the next event about this delivery.
                loop {
                    match events.next().await {
                        Some(Ok(event))
                            if event.record_type == RecordKind::Delivery.name()
                                && event.record_id == id =>
                        {
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(err)) => {
                            yield Err(err);
                            return;
                        }
                        None => return,
                    }
                }
            }
        };
        Ok(live::deliver(slot, records, TravelRecord))
    }
}

/// A delivery that takes no more travel records.
fn is_settled(delivery: &delivery::Model) -> bool {
    matches!(
        delivery.status,
        entities::delivery::DeliveryStatus::Delivered
            | entities::delivery::DeliveryStatus::Returned
    )
}
