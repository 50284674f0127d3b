//! Leadership: which replica runs the reconcilers.
//!
//! Every replica serves the webhooks and keeps its caches warm; only the
//! holder of the Lease ([`lease`]) writes. [`LeaderOnly`] runs the
//! reconcilers while this replica leads, stops them promptly when it stops
//! leading, and starts them again when it leads again.

pub mod lease;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// Whether this replica leads, as its elector last said.
#[derive(Clone, Debug)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// An elector that is gone (its task ended or was aborted) leads no
    /// more, whatever it said last.
    pub fn is_leading(&self) -> bool {
        *self.0.borrow() && self.0.has_changed().is_ok()
    }

    /// Completes once this replica leads; never once the elector is gone.
    pub async fn acquired(&mut self) {
        let led = self.0.wait_for(|leading| *leading).await.is_ok();
        if !led || self.0.has_changed().is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Completes once this replica does not lead, or its elector is gone.
    pub async fn lost(&mut self) {
        let _ = self.0.wait_for(|leading| !*leading).await;
    }
}

/// Completes when a leader-only task must stop: leadership was lost or the
/// operator is shutting down.
pub type Stop = Shared<BoxFuture<'static, ()>>;

type Start = Box<dyn Fn(Stop) -> BoxFuture<'static, ()> + Send + Sync>;

/// Why the leader-only tasks stopped on their own.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader-only task {0} stopped while leading")]
    TaskStopped(&'static str),
    #[error("leader-only task {0} panicked")]
    TaskPanicked(&'static str),
}

/// Tasks that run only while this replica leads.
pub struct LeaderOnly {
    tasks: Vec<(&'static str, Start)>,
    /// How long in-flight work may take to finish on shutdown.
    drain: Duration,
}

impl LeaderOnly {
    pub fn new(drain: Duration) -> Self {
        Self {
            tasks: Vec::new(),
            drain,
        }
    }

    /// Adds a task: `start` is called each time this replica becomes the
    /// leader, and the task must return soon after its [`Stop`] completes.
    pub fn task<F, Fut>(mut self, name: &'static str, start: F) -> Self
    where
        F: Fn(Stop) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push((name, Box::new(move |stop| start(stop).boxed())));
        self
    }

    /// Runs the tasks while `leadership` says so, until `shutdown`. On
    /// shutdown the tasks get `drain` to finish what they are doing; on a
    /// loss of leadership they are aborted at once, as another replica may
    /// take over soon. A task that ends by itself while leading is an error:
    /// the others are stopped and the replica should exit.
    pub async fn run(
        self,
        mut leadership: Leadership,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), LeaderError> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = leadership.acquired() => {}
            }
            tracing::info!("leading: starting the reconcilers");
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let stop: Stop = stop_rx.map(|_| ()).boxed().shared();
            let mut running = JoinSet::new();
            let mut names = HashMap::new();
            for (name, start) in &self.tasks {
                names.insert(running.spawn(start(stop.clone())).id(), *name);
            }
            let ended = tokio::select! {
                biased;
                () = &mut shutdown => None,
                () = leadership.lost() => {
                    running.shutdown().await;
                    tracing::warn!("not leading any more: stopped the reconcilers");
                    continue;
                }
                Some(ended) = running.join_next_with_id() => Some(ended),
            };
            // Shutdown, or a task ended: let the others finish their work.
            let _ = stop_tx.send(());
            tokio::select! {
                () = drain(&mut running) => {}
                () = tokio::time::sleep(self.drain) => {
                    tracing::warn!(drain = ?self.drain, "reconcilers did not finish in time; aborting them");
                }
                () = leadership.lost() => {}
            }
            running.shutdown().await;
            return match ended {
                None => Ok(()),
                Some(Ok((id, ()))) => Err(LeaderError::TaskStopped(names[&id])),
                Some(Err(e)) => Err(LeaderError::TaskPanicked(names[&e.id()])),
            };
        }
    }
}

async fn drain(running: &mut JoinSet<()>) {
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;
