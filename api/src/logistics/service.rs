//! Delivery and travel record rules, independent of GraphQL.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use entities::{
    delivery::{self, DeliveryStatus},
    location,
    order::{self, OrderStatus},
    organization::{self, OrganizationKind},
    travel_record,
};
use sea_orm::{
    ActiveEnum,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use uuid::Uuid;

use super::sensitive::{
    Position, Recipient, open_position, open_recipient, seal_position, seal_recipient,
};
use crate::{
    auth::Principal,
    crypto::Vault,
    db::pagination::{Ordering, Page, PageArgs, SortKey, paginate},
    db::write_transaction,
    error::{ApiError, ApiResult},
    events::{LOGISTIC, NewEvent, Outbox, record},
    idempotency::{IdempotencyKey, run_once},
    master_data::validate,
    policy::{
        Action, Need, Party, authorize, delivery_party, delivery_visible,
        may_read_delivery_details, order_visible, party_of, visible,
    },
    records::RecordKind,
    transitions::Step,
};

/// Travel records one delivery may collect (they are listed with the delivery, so they stay bounded).
pub const MAX_TRAVEL_RECORDS: i32 = 500;
/// The longest promised window.
const MAX_WINDOW: TimeDelta = TimeDelta::days(90);
/// How far in the future a travel record may be dated (clock skew of the carrier's scanner).
const FUTURE_LEEWAY: TimeDelta = TimeDelta::minutes(5);
/// The statuses in which a delivery takes travel records: it has been picked up and is not settled.
const TRACKABLE: [DeliveryStatus; 3] = [
    DeliveryStatus::PickedUp,
    DeliveryStatus::InTransit,
    DeliveryStatus::Failed,
];

/// A new delivery, as the shipper states it.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery {
    pub order_id: Uuid,
    pub carrier_id: Uuid,
    pub origin_location_id: Uuid,
    pub recipient: Recipient,
    pub promised_from: DateTime<Utc>,
    pub promised_until: DateTime<Utc>,
}

/// A travel record, as the carrier states it.
#[derive(Debug, Clone, Serialize)]
pub struct NewTravelRecord {
    pub delivery_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub position: Position,
    pub note: Option<String>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    /// Only deliveries the caller ships (`Owner`) or carries (`Performer`).
    pub party: Option<Party>,
}

/// The steps of a delivery; the carrier takes every one.
pub fn delivery_step(to: DeliveryStatus) -> ApiResult<Step<DeliveryStatus>> {
    use DeliveryStatus::*;
    let (from, verb, event_type): (&'static [DeliveryStatus], _, _) = match to {
        PickedUp => (&[Planned], "pick up the delivery", "delivery.picked_up"),
        InTransit => (&[PickedUp], "dispatch the delivery", "delivery.in_transit"),
        Delivered => (&[InTransit], "deliver", "delivery.delivered"),
        Failed => (
            &[PickedUp, InTransit],
            "fail the delivery",
            "delivery.failed",
        ),
        Returned => (&[Failed], "return the delivery", "delivery.returned"),
        Planned => {
            return Err(ApiError::InvalidTransition {
                action: "move the delivery",
                reason: "no step leads back to PLANNED".into(),
            });
        }
    };
    Ok(Step {
        from,
        to,
        by: Party::Performer,
        verb,
        only: "only the carrier moves a delivery",
        event_type,
    })
}

#[derive(Clone)]
pub struct LogisticsService {
    db: DatabaseConnection,
    outbox: Outbox,
    vault: Vault,
}

impl LogisticsService {
    pub fn new(db: DatabaseConnection, outbox: Outbox, vault: Vault) -> Self {
        Self { db, outbox, vault }
    }

    /// A delivery's recipient in clear, for its shipper and its carrier.
    pub async fn recipient(
        &self,
        principal: &Principal,
        delivery: &delivery::Model,
    ) -> ApiResult<Recipient> {
        if !may_read_delivery_details(principal, delivery) {
            return Err(ApiError::not_found("delivery"));
        }
        open_recipient(&self.vault, delivery.id, &delivery.recipient_sealed).await
    }

    /// A travel record's position in clear. Records reach a caller only through
    /// [`Self::travel_records`], which returns those of deliveries it ships or carries, the two
    /// parties [`may_read_delivery_details`] allows (checked there in SQL, not once per record).
    pub async fn position(&self, record: &travel_record::Model) -> ApiResult<Position> {
        open_position(&self.vault, record.id, &record.position_sealed).await
    }

    pub async fn deliveries(
        &self,
        principal: &Principal,
        filter: DeliveryFilter,
        args: PageArgs,
        with_total: bool,
    ) -> ApiResult<Page<delivery::Model>> {
        authorize(principal, Action::ReadOwnOrganization)?;
        let mut select = delivery::Entity::find().filter(delivery_visible(principal));
        if let Some(status) = filter.status {
            select = select.filter(delivery::Column::Status.eq(status));
        }
        if let Some(party) = filter.party {
            select = select.filter(delivery_party(principal, party));
        }
        let ordering = Ordering {
            name: "createdAt",
            column: delivery::Column::CreatedAt,
            descending: false,
            key: |delivery: &delivery::Model| SortKey::Time(delivery.created_at),
        };
        paginate(
            &self.db,
            select,
            delivery::Column::Id,
            |delivery| delivery.id,
            ordering,
            args,
            with_total,
        )
        .await
    }

    pub async fn delivery(&self, principal: &Principal, id: Uuid) -> ApiResult<delivery::Model> {
        find_delivery(&self.db, principal, id).await
    }

    /// Arranges the delivery of one of the caller's PLACED or FULFILLED orders with a logistics
    /// organization. Idempotent per key (the fingerprint is keyed: the input holds the recipient).
    pub async fn create_delivery(
        &self,
        principal: &Principal,
        input: NewDelivery,
        idempotency_key: Option<&str>,
    ) -> ApiResult<delivery::Model> {
        authorize(principal, Action::WriteRecords)?;
        let input = NewDelivery {
            recipient: Recipient {
                name: validate::text("recipient.name", &input.recipient.name, 200)?,
                phone: validate::optional_text(
                    "recipient.phone",
                    input.recipient.phone.as_deref(),
                    40,
                )?,
                address: validate::text("recipient.address", &input.recipient.address, 500)?,
            },
            ..input
        };
        validate::window(
            "promisedUntil",
            input.promised_from,
            input.promised_until,
            MAX_WINDOW,
        )?;
        let key = idempotency_key
            .map(|key| {
                IdempotencyKey::new_sensitive(
                    principal.organization_id,
                    "createDelivery",
                    key,
                    &input,
                    &self.vault,
                )
            })
            .transpose()?;
        let caller = principal.clone();
        let vault = self.vault.clone();
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                check_delivery_subjects(txn, &caller, &input).await?;
                let id = Uuid::now_v7();
                let sealed = seal_recipient(&vault, id, &input.recipient)?;
                let now = Utc::now();
                delivery::Entity::insert(delivery::ActiveModel {
                    id: Set(id),
                    owner_organization_id: Set(caller.organization_id),
                    order_id: Set(input.order_id),
                    carrier_organization_id: Set(input.carrier_id),
                    origin_location_id: Set(input.origin_location_id),
                    recipient_sealed: Set(sealed.value),
                    key_id: Set(sealed.key_id),
                    promised_from: Set(input.promised_from),
                    promised_until: Set(input.promised_until),
                    status: Set(DeliveryStatus::Planned),
                    travel_count: Set(0),
                    version: Set(1),
                    created_at: Set(now),
                    updated_at: Set(now),
                    picked_up_at: Set(None),
                    delivered_at: Set(None),
                })
                .exec_without_returning(txn)
                .await?;
                record(
                    txn,
                    delivery_event(
                        id,
                        caller.organization_id,
                        input.carrier_id,
                        "delivery.created",
                        DeliveryStatus::Planned,
                    ),
                )
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.outbox.committed();
        find_delivery(&self.db, principal, id).await
    }

    /// Moves a delivery to `to` (its carrier only; at `expected_version`, when given).
    pub async fn move_delivery(
        &self,
        principal: &Principal,
        id: Uuid,
        to: DeliveryStatus,
        expected_version: Option<i32>,
    ) -> ApiResult<delivery::Model> {
        authorize(principal, Action::WriteRecords)?;
        let step = delivery_step(to)?;
        let caller = principal.clone();
        write_transaction(&self.db, move |txn| {
            Box::pin(async move {
                let now = Utc::now();
                let mut update = delivery::Entity::update_many()
                    .col_expr(delivery::Column::Status, Expr::value(step.to))
                    .col_expr(
                        delivery::Column::Version,
                        Expr::col(delivery::Column::Version).add(1),
                    )
                    .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
                    .filter(delivery::Column::Id.eq(id))
                    .filter(delivery_party(&caller, step.by))
                    .filter(delivery::Column::Status.is_in(step.from.iter().copied()));
                if let Some(version) = expected_version {
                    update = update.filter(delivery::Column::Version.eq(version));
                }
                update = match to {
                    DeliveryStatus::PickedUp => {
                        update.col_expr(delivery::Column::PickedUpAt, Expr::value(now))
                    }
                    DeliveryStatus::Delivered => {
                        update.col_expr(delivery::Column::DeliveredAt, Expr::value(now))
                    }
                    _ => update,
                };
                if update.exec(txn).await?.rows_affected != 1 {
                    let delivery = find_delivery(txn, &caller, id).await?;
                    let party = party_of(
                        &caller,
                        delivery.owner_organization_id,
                        delivery.carrier_organization_id,
                        step.by,
                    )
                    .ok_or(ApiError::not_found("delivery"))?;
                    return Err(step.refusal(
                        party,
                        delivery.status,
                        delivery.version,
                        expected_version,
                    ));
                }
                let delivery = find_delivery(txn, &caller, id).await?;
                record(
                    txn,
                    delivery_event(
                        id,
                        delivery.owner_organization_id,
                        delivery.carrier_organization_id,
                        step.event_type,
                        step.to,
                    ),
                )
                .await?;
                Ok(delivery)
            })
        })
        .await
        .inspect(|_| self.outbox.committed())
    }

    /// Appends a tracking event to a delivery the caller carries, while it is picked up and not
    /// settled. Idempotent per key (keyed fingerprint: the input holds a position).
    pub async fn record_travel(
        &self,
        principal: &Principal,
        input: NewTravelRecord,
        idempotency_key: Option<&str>,
    ) -> ApiResult<travel_record::Model> {
        authorize(principal, Action::WriteRecords)?;
        let input = NewTravelRecord {
            note: validate::optional_text("note", input.note.as_deref(), 500)?,
            ..input
        };
        check_position(&input.position)?;
        if input.recorded_at > Utc::now() + FUTURE_LEEWAY {
            return Err(ApiError::validation(
                "recordedAt",
                "must not be in the future",
            ));
        }
        let key = idempotency_key
            .map(|key| {
                IdempotencyKey::new_sensitive(
                    principal.organization_id,
                    "recordTravel",
                    key,
                    &input,
                    &self.vault,
                )
            })
            .transpose()?;
        let caller = principal.clone();
        let vault = self.vault.clone();
        let id = run_once(&self.db, key.as_ref(), move |txn| {
            Box::pin(async move {
                let delivery_id = input.delivery_id;
                // Counting the record on the delivery row also locks it, so a delivery settled
                // meanwhile takes no record after its last step, and sequences never collide.
                let counted = delivery::Entity::update_many()
                    .col_expr(
                        delivery::Column::TravelCount,
                        Expr::col(delivery::Column::TravelCount).add(1),
                    )
                    .filter(delivery::Column::Id.eq(delivery_id))
                    .filter(delivery_party(&caller, Party::Performer))
                    .filter(delivery::Column::Status.is_in(TRACKABLE))
                    .filter(delivery::Column::TravelCount.lt(MAX_TRAVEL_RECORDS))
                    .exec(txn)
                    .await?;
                let delivery = find_delivery(txn, &caller, delivery_id).await?;
                if counted.rows_affected != 1 {
                    return Err(travel_refusal(&caller, &delivery));
                }
                if input.recorded_at < delivery.created_at {
                    return Err(ApiError::validation(
                        "recordedAt",
                        "must not be before the delivery was arranged",
                    ));
                }
                let id = Uuid::now_v7();
                let sealed = seal_position(&vault, id, &input.position)?;
                travel_record::Entity::insert(travel_record::ActiveModel {
                    id: Set(id),
                    delivery_id: Set(delivery_id),
                    sequence: Set(delivery.travel_count),
                    recorded_at: Set(input.recorded_at),
                    position_sealed: Set(sealed.value),
                    key_id: Set(sealed.key_id),
                    status: Set(delivery.status),
                    note: Set(input.note),
                    created_at: Set(Utc::now()),
                })
                .exec_without_returning(txn)
                .await?;
                record(
                    txn,
                    delivery_event(
                        delivery_id,
                        delivery.owner_organization_id,
                        delivery.carrier_organization_id,
                        "delivery.tracked",
                        delivery.status,
                    ),
                )
                .await?;
                Ok(id)
            })
        })
        .await?;
        self.outbox.committed();
        let record = travel_record::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ApiError::not_found("travel record"))?;
        // A replayed key returns the record only while the caller still sees its delivery.
        find_delivery(&self.db, principal, record.delivery_id).await?;
        Ok(record)
    }

    /// Travel records of the given deliveries the caller may see, by delivery, in sequence; with
    /// `after`, only those after that sequence number.
    pub async fn travel_records(
        &self,
        principal: &Principal,
        delivery_ids: &[Uuid],
        after: Option<i32>,
    ) -> ApiResult<HashMap<Uuid, Vec<travel_record::Model>>> {
        let visible_deliveries = delivery::Entity::find()
            .filter(delivery::Column::Id.is_in(delivery_ids.iter().copied()))
            .filter(delivery_visible(principal))
            .all(&self.db)
            .await?;
        let mut select = travel_record::Entity::find().filter(
            travel_record::Column::DeliveryId.is_in(visible_deliveries.iter().map(|d| d.id)),
        );
        if let Some(after) = after {
            select = select.filter(travel_record::Column::Sequence.gt(after));
        }
        let rows = select
            .order_by_asc(travel_record::Column::Sequence)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<Uuid, Vec<travel_record::Model>> = HashMap::new();
        for row in rows {
            grouped.entry(row.delivery_id).or_default().push(row);
        }
        Ok(grouped)
    }
}

async fn find_delivery<C: ConnectionTrait>(
    db: &C,
    principal: &Principal,
    id: Uuid,
) -> ApiResult<delivery::Model> {
    authorize(principal, Action::ReadOwnOrganization)?;
    delivery::Entity::find_by_id(id)
        .filter(delivery_visible(principal))
        .one(db)
        .await?
        .ok_or(ApiError::not_found("delivery"))
}

fn check_position(position: &Position) -> ApiResult<()> {
    if !(position.latitude.is_finite() && (-90.0..=90.0).contains(&position.latitude)) {
        return Err(ApiError::validation(
            "position.latitude",
            "must be between -90 and 90 degrees",
        ));
    }
    if !(position.longitude.is_finite() && (-180.0..=180.0).contains(&position.longitude)) {
        return Err(ApiError::validation(
            "position.longitude",
            "must be between -180 and 180 degrees",
        ));
    }
    Ok(())
}

/// Why a travel record was not appended to a delivery the caller sees.
fn travel_refusal(principal: &Principal, delivery: &delivery::Model) -> ApiError {
    if delivery.carrier_organization_id != principal.organization_id {
        ApiError::Forbidden("only the carrier records a delivery's travel")
    } else if !TRACKABLE.contains(&delivery.status) {
        ApiError::InvalidTransition {
            action: "record travel",
            reason: format!("the delivery is {}", delivery.status.to_value()),
        }
    } else {
        ApiError::validation(
            "deliveryId",
            format!("a delivery holds at most {MAX_TRAVEL_RECORDS} travel records"),
        )
    }
}

/// The order is the caller's own and under way, the carrier a logistics organization, the origin one
/// of the caller's own locations.
async fn check_delivery_subjects<C: ConnectionTrait>(
    txn: &C,
    principal: &Principal,
    input: &NewDelivery,
) -> ApiResult<()> {
    let order = order::Entity::find_by_id(input.order_id)
        .filter(order_visible(principal))
        .one(txn)
        .await?
        .ok_or(ApiError::not_found("order"))?;
    if order.owner_organization_id != principal.organization_id {
        return Err(ApiError::Forbidden(
            "only the order's owner arranges its delivery",
        ));
    }
    if !matches!(order.status, OrderStatus::Placed | OrderStatus::Fulfilled) {
        return Err(ApiError::InvalidTransition {
            action: "arrange a delivery",
            reason: format!("the order is {}", order.status.to_value()),
        });
    }
    let carrier = organization::Entity::find_by_id(input.carrier_id)
        .one(txn)
        .await?
        .ok_or(ApiError::not_found("organization"))?;
    if carrier.kind != OrganizationKind::Logistics {
        return Err(ApiError::validation(
            "carrierId",
            "must be a LOGISTICS organization",
        ));
    }
    // The shipper's own location: one only shared with it would tie the owner's location to a
    // delivery it cannot see (and block its deletion).
    location::Entity::find_by_id(input.origin_location_id)
        .filter(visible::<location::Entity>(principal, Need::Own))
        .one(txn)
        .await?
        .ok_or(ApiError::not_found("location"))?;
    Ok(())
}

fn delivery_event(
    id: Uuid,
    owner: Uuid,
    carrier: Uuid,
    event_type: &'static str,
    status: DeliveryStatus,
) -> NewEvent {
    NewEvent {
        event_type,
        family: LOGISTIC,
        record_type: RecordKind::Delivery,
        record_id: id,
        status: status.to_value(),
        owner,
        parties: vec![carrier],
    }
}
