//! `events(after:)`: the caller's visible events in commit order.

use async_graphql::{
    Context, ID, InputObject, Object, Subscription,
    connection::{Connection, Edge, EmptyFields},
};
use chrono::{DateTime, Utc};
use entities::event;
use futures_util::{Stream, StreamExt, future::ready};

use super::{EventFeed, EventService};
use crate::{
    error::ApiError,
    graphql::{
        ContextExt,
        live::{self, Following},
        scalars::Int64,
    },
    policy::{Action, authorize},
    records::global_id_by_name,
};

/// A committed change of a transaction record. Carries ids, type, status and time, never sensitive values.
pub struct Event(pub event::Model);

#[Object]
impl Event {
    /// The event's place in commit order; also its cursor.
    async fn position(&self) -> Int64 {
        Int64(self.0.position.unwrap_or_default())
    }
    /// e.g. `order.placed`, `invoice.paid`.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// FINANCIAL, WORK or LOGISTIC.
    async fn family(&self) -> &str {
        &self.0.family
    }
    async fn record_type(&self) -> &str {
        &self.0.record_type
    }
    /// Global ID of the record (fetch it with `node(id:)`).
    async fn record_id(&self) -> ID {
        // A row written by a newer hub may name a kind this one does not know; its ID still names it.
        ID(global_id_by_name(&self.0.record_type, self.0.record_id))
    }
    /// The record's status after the change.
    async fn status(&self) -> &str {
        &self.0.status
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// Events about records the caller's organization may see, in commit order. Pass the last cursor
    /// (position) you processed as `after` to continue without gaps or repeats.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        #[graphql(default = 100, desc = "Page size, 1 to 500.")] first: i32,
    ) -> async_graphql::Result<Connection<String, Event, EmptyFields, EmptyFields>> {
        let principal = ctx.principal()?;
        let after = parse_cursor(after.as_deref())?;
        let first = u64::try_from(first)
            .map_err(|_| ApiError::validation("first", "must be between 1 and 500"))?;
        let (events, more) = ctx
            .data_unchecked::<EventService>()
            .events(principal, after, first)
            .await?;
        let mut connection = Connection::new(after.is_some(), more);
        connection.edges.extend(
            events.into_iter().map(|event| {
                Edge::new(event.position.unwrap_or_default().to_string(), Event(event))
            }),
        );
        Ok(connection)
    }
}

/// An event cursor: the decimal position of the last event a client processed.
fn parse_cursor(after: Option<&str>) -> Result<Option<i64>, ApiError> {
    after
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .ok()
                .filter(|position| *position >= 0)
                .ok_or_else(|| ApiError::validation("after", "not an event cursor"))
        })
        .transpose()
}

/// Which events a subscriber wants; every given field must match.
#[derive(InputObject, Default, Clone)]
pub struct EventFilterInput {
    /// FINANCIAL, WORK or LOGISTIC.
    family: Option<String>,
    /// The record kind, e.g. `Order`, `PaymentRequest`.
    record_type: Option<String>,
    /// e.g. `order.placed`.
    event_type: Option<String>,
}

impl EventFilterInput {
    fn matches(&self, event: &event::Model) -> bool {
        let wanted =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        wanted(&self.family, &event.family)
            && wanted(&self.record_type, &event.record_type)
            && wanted(&self.event_type, &event.event_type)
    }
}

#[derive(Default)]
pub struct EventSubscription;

#[Subscription]
impl EventSubscription {
    /// Events about records the caller's organization may see, live. With `after` (the `position`
    /// of the last event processed), first every later event from the log, then live ones, without a
    /// gap or a repeat. A subscriber that falls too far behind is ended with SLOW_CONSUMER and the
    /// cursor to resume from (`extensions.cursor`).
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Event>> + use<>> {
        authorize(ctx.principal()?, Action::ReadOwnOrganization)?;
        let after = parse_cursor(after.as_deref())?;
        let filter = filter.unwrap_or_default();
        let Following { slot, events, .. } = live::follow(ctx, after)?;
        let wanted = events.filter_map(move |item| {
            ready(match item {
                Ok(event) if filter.matches(&event) => {
                    EventFeed::record_delivery(&event);
                    Some(Ok(event.as_ref().clone()))
                }
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            })
        });
        Ok(live::deliver(slot, wanted, Event))
    }
}
