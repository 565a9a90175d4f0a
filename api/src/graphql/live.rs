//! What every subscription shares: the per-connection limit on open subscriptions, and the caches of
//! a long-lived connection.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_graphql::Context;
use entities::event;
use futures_util::{Stream, StreamExt, stream::BoxStream};

use super::ContextExt;
use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    events::{EventFeed, EventService},
};

/// The open subscriptions of one WebSocket connection.
#[derive(Clone)]
pub struct SubscriptionSlots {
    open: Arc<AtomicUsize>,
    limit: usize,
}

impl SubscriptionSlots {
    pub fn new(limit: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Takes a slot for a new subscription, or says that the connection has as many as allowed.
    pub fn take(&self) -> ApiResult<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .is_ok();
        if !taken {
            return Err(ApiError::TooManySubscriptions { limit: self.limit });
        }
        metrics::gauge!("hub_subscriptions_open").increment(1.0);
        Ok(Slot(self.open.clone()))
    }
}

/// A subscription's slot, given back when its stream is dropped (completed, stopped or disconnected).
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("hub_subscriptions_open").decrement(1.0);
    }
}

/// A slot for a subscription resolved on `ctx`: subscriptions only exist on WebSocket connections,
/// which always carry their slots.
pub fn take_slot(ctx: &Context<'_>) -> ApiResult<Slot> {
    ctx.data_opt::<SubscriptionSlots>()
        .ok_or_else(|| ApiError::BadRequest("subscriptions need a WebSocket connection".into()))?
        .take()
}

/// What a live resolver starts from: its slot, the caller, and the caller's organization's events,
/// joined now (before the resolver's first read, so nothing between that read and the first event is
/// missed) and replayed after `after` when given.
pub struct Following {
    pub slot: Slot,
    pub principal: Principal,
    pub events: BoxStream<'static, ApiResult<Arc<event::Model>>>,
}

/// Takes a slot and joins the feed for the caller of `ctx`.
pub fn follow(ctx: &Context<'_>, after: Option<i64>) -> ApiResult<Following> {
    let slot = take_slot(ctx)?;
    let principal = ctx.principal()?.clone();
    let events = ctx
        .data_unchecked::<EventFeed>()
        .follow(
            ctx.data_unchecked::<EventService>().clone(),
            principal.clone(),
            after,
        )
        .boxed();
    Ok(Following {
        slot,
        principal,
        events,
    })
}

/// A subscription's items as GraphQL results, holding `slot` for as long as the stream lives.
pub fn deliver<M: 'static, T: 'static>(
    slot: Slot,
    items: impl Stream<Item = ApiResult<M>> + Send + 'static,
    node: fn(M) -> T,
) -> impl Stream<Item = async_graphql::Result<T>> + Send + 'static {
    items.map(move |item| {
        let _held = &slot;
        item.map(node).map_err(Into::into)
    })
}
