//! Shutdown signalling: one trigger, many listeners, no globals.
//!
//! `main` (or a test) holds the [`ShutdownTrigger`]; every long-running task
//! holds a cloned [`Shutdown`] and selects on [`Shutdown::wait`]. Background
//! tasks are spawned through [`Tasks`], so shutdown can wait until the last
//! one has finished (mini-redis: each task holds a completion guard).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

/// Fires shutdown for every [`Shutdown`] cloned from the same channel.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// A handle that resolves once shutdown has been requested.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is requested (or the trigger was dropped).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone: treat that as shutdown too.
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

/// The background tasks shutdown waits for: replay jobs, the OTLP metrics
/// push, certificate watchers. Cheap to clone; every clone counts the same tasks.
#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<TasksInner>,
}

#[derive(Default)]
struct TasksInner {
    /// How many tasks of each name are running.
    live: Mutex<BTreeMap<&'static str, usize>>,
    idle: Notify,
}

/// Held by a running task; dropping it (the task ended, or was dropped with
/// the runtime) is what [`Tasks::wait`] waits for.
struct Guard {
    inner: Arc<TasksInner>,
    name: &'static str,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = live.get_mut(self.name) {
            *n -= 1;
            if *n == 0 {
                live.remove(self.name);
            }
        }
        if live.is_empty() {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Tasks {
    /// Spawns `task` on the runtime and counts it until it ends.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        *self.inner.live.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default() += 1;
        let guard = Guard { inner: self.inner.clone(), name };
        tokio::spawn(async move {
            let _guard = guard;
            task.await
        })
    }

    /// The running tasks by name (for the log when the grace period runs out).
    pub fn live(&self) -> BTreeMap<&'static str, usize> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once no task is running.
    pub async fn wait(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so a task ending in between still wakes us.
            idle.as_mut().enable();
            if self.inner.live.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                return;
            }
            idle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_once_every_task_has_ended() {
        let tasks = Tasks::default();
        tasks.wait().await;
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("held", async move {
            let _ = held.await;
        });
        tasks.spawn("quick", async {});
        let waiting = tokio::spawn({
            let tasks = tasks.clone();
            async move { tasks.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a task is still running");
        assert_eq!(tasks.live().get("held"), Some(&1));
        let _ = release.send(());
        waiting.await.expect("wait ends");
        assert!(tasks.live().is_empty());
    }

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (trigger, s) = channel();
        let mut a = s.clone();
        let mut b = s;
        assert!(!a.is_triggered());
        trigger.trigger();
        a.wait().await;
        b.wait().await;
        assert!(a.is_triggered() && b.is_triggered());
    }
}
