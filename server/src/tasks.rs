//! The process's long-running tasks, supervised: one stop signal, one set of named critical tasks.
//!
//! ```text
//! serve ─► Tasks::spawn("issuance-worker", …), ("issuance-indexer", …), ("activity-consumer", …),
//!          ("bundle-builders", …)          each runs until Tasks::stopping() resolves
//!       ─► Tasks::ended(): a critical task that returns or panics before the stop is logged, the API
//!          drains, and `custody serve` exits non-zero (its supervisor, systemd or Kubernetes, restarts it)
//!       ─► Tasks::join(drain): on SIGINT/SIGTERM every task is told to stop and joined within the drain
//! ```
//! `/readyz` reads each task's state from the [`TaskBoard`].

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, task::JoinSet};

/// What a task is doing, as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TaskState {
    Running,
    /// Ended after the stop signal.
    Stopped,
    /// Ended before it: returned or panicked.
    Failed,
}

/// Each task's state, by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskBoard(Arc<Mutex<BTreeMap<&'static str, TaskState>>>);

impl TaskBoard {
    fn set(&self, name: &'static str, state: TaskState) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name, state);
    }

    /// Every task and its state.
    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, TaskState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The supervised tasks of one process.
#[derive(Debug)]
pub(crate) struct Tasks {
    stop: watch::Sender<bool>,
    set: JoinSet<&'static str>,
    names: BTreeMap<tokio::task::Id, &'static str>,
    board: TaskBoard,
}

impl Default for Tasks {
    fn default() -> Self {
        Self { stop: watch::channel(false).0, set: JoinSet::new(), names: BTreeMap::new(), board: TaskBoard::default() }
    }
}

impl Tasks {
    /// A future that resolves once the tasks are told to stop; hand one to each task.
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            // An error means the sender is gone: stopping too.
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }

    /// Starts the critical task `name`: it must run until [`Self::stopping`] resolves.
    pub(crate) fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let task = failpoint(name, task);
        let handle = self.set.spawn(async move {
            task.await;
            name
        });
        self.names.insert(handle.id(), name);
        self.board.set(name, TaskState::Running);
        tracing::info!(task = name, "task started");
    }

    /// The board `/readyz` reads.
    pub(crate) fn board(&self) -> TaskBoard {
        self.board.clone()
    }

    /// Resolves with the name of the first task that ends before the stop (returned or panicked), and
    /// never if none does.
    pub(crate) async fn ended(&mut self) -> &'static str {
        loop {
            let Some(joined) = self.set.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (name, how) = match joined {
                Ok((id, name)) => (self.names.remove(&id).unwrap_or(name), "returned".to_owned()),
                Err(e) => (self.names.remove(&e.id()).unwrap_or("?"), describe(&e)),
            };
            if *self.stop.borrow() {
                self.board.set(name, TaskState::Stopped);
                continue;
            }
            self.board.set(name, TaskState::Failed);
            metrics::counter!("custody_task_failures_total", "task" => name).increment(1);
            tracing::error!(task = name, how, "a critical task ended; stopping the process");
            return name;
        }
    }

    /// Tells every task to stop and waits up to `drain` for them; those still running are aborted.
    pub(crate) async fn join(mut self, drain: Duration) {
        let _ = self.stop.send(true);
        let all = async {
            while let Some(joined) = self.set.join_next_with_id().await {
                let id = match &joined {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                if let Some(name) = self.names.remove(&id) {
                    self.board.set(name, TaskState::Stopped);
                    tracing::info!(task = name, "task stopped");
                }
            }
        };
        if tokio::time::timeout(drain, all).await.is_err() {
            tracing::warn!(tasks = ?self.names.values().collect::<Vec<_>>(), "tasks still running after the drain; aborted");
            self.set.abort_all();
        }
    }
}

fn describe(e: &tokio::task::JoinError) -> String {
    if e.is_panic() { "panicked".to_owned() } else { "was cancelled".to_owned() }
}

/// With the `failpoints` feature, `CUSTODY_FAILPOINT=task-panic:<name>` makes task `name` panic a moment
/// after it starts (tests/it/tasks.rs); otherwise the task itself.
#[cfg(feature = "failpoints")]
fn failpoint(
    name: &'static str,
    task: impl Future<Output = ()> + Send + 'static,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    if std::env::var("CUSTODY_FAILPOINT").is_ok_and(|point| point == format!("task-panic:{name}")) {
        return Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            panic!("failpoint task-panic:{name}");
        });
    }
    Box::pin(task)
}

#[cfg(not(feature = "failpoints"))]
fn failpoint(_name: &'static str, task: impl Future<Output = ()> + Send + 'static) -> impl Future<Output = ()> + Send {
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_early_is_reported_and_the_rest_stop_on_join() {
        let mut tasks = Tasks::default();
        let stopping = tasks.stopping();
        tasks.spawn("steady", stopping);
        tasks.spawn("quitter", async {});
        assert_eq!(tasks.ended().await, "quitter");
        let board = tasks.board();
        assert_eq!(board.snapshot()["quitter"], TaskState::Failed);
        assert_eq!(board.snapshot()["steady"], TaskState::Running);
        tasks.join(Duration::from_secs(1)).await;
        assert_eq!(board.snapshot()["steady"], TaskState::Stopped);
    }

    #[tokio::test]
    async fn a_panic_is_an_early_end() {
        let mut tasks = Tasks::default();
        tasks.spawn("panicker", async { panic!("boom") });
        assert_eq!(tasks.ended().await, "panicker");
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_stop_is_aborted_after_the_drain() {
        let mut tasks = Tasks::default();
        tasks.spawn("stubborn", std::future::pending());
        let board = tasks.board();
        let started = std::time::Instant::now();
        tasks.join(Duration::from_millis(200)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(board.snapshot()["stubborn"], TaskState::Running, "aborted, not stopped");
    }
}
