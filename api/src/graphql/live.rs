//! What every subscription shares: the per-connection limit on open subscriptions, and the caches of
//! a long-lived connection.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use async_graphql::Context;

use crate::error::{ApiError, ApiResult};

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
