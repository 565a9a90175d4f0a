//! The loop of a background worker that finishes after commit what writers leave to it (stamping event
//! positions, linking audit entries, folding sales): it wakes when a writer of this replica notifies it,
//! or after its poll period for what other replicas committed, waits a moment so that one round takes
//! many commits, then runs rounds until one says there is nothing more to do now.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::Notify, task::JoinHandle};

use crate::error::ApiResult;

/// When a worker looks for work.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The longest wait without a wake-up.
    pub poll: Duration,
    /// The wait after a wake-up, to gather commits.
    pub gather: Duration,
}

/// What one round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// It did a full batch, or more is waiting: run another round now.
    More,
    /// Nothing more to do until the next wake-up.
    Done,
}

/// Runs `round` on `wake` and on `pace` until the process ends. A failed round is logged and retried
/// at the next wake-up.
pub fn spawn_worker<F, Fut>(
    name: &'static str,
    wake: Arc<Notify>,
    pace: Pace,
    mut round: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<Round>> + Send,
{
    tokio::spawn(async move {
        loop {
            if tokio::time::timeout(pace.poll, wake.notified())
                .await
                .is_ok()
            {
                tokio::time::sleep(pace.gather).await;
            }
            loop {
                match round().await {
                    Ok(Round::More) => tokio::task::yield_now().await,
                    Ok(Round::Done) => break,
                    Err(err) => {
                        tracing::warn!(worker = name, error = %err, "a background round failed; retrying");
                        break;
                    }
                }
            }
        }
    })
}
