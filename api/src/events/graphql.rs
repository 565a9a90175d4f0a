//! `events(after:)`: the caller's visible events in commit order.

use async_graphql::{
    Context, ID, Object,
    connection::{Connection, Edge, EmptyFields},
};
use chrono::{DateTime, Utc};
use entities::event;

use super::EventService;
use crate::{
    error::ApiError,
    graphql::{ContextExt, scalars::Int64},
    records::global_id_by_name,
};

/// A committed change of a transaction record. Carries ids, type, status and time, never sensitive values.
pub struct Event(event::Model);

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
        let after = after
            .map(|cursor| {
                cursor
                    .parse::<i64>()
                    .map_err(|_| ApiError::validation("after", "not an event cursor"))
            })
            .transpose()?;
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
