//! The slow lane: where a plugin call that overran its first millisecond of
//! CPU finishes, on low-priority threads, so a CPU-hungry plugin competes
//! with the gateway's own work only for what the kernel leaves over.
//!
//! Every call starts in the request's task on a tokio worker (cheap: most
//! plugins finish in tens of µs). A call still running after `HOLD` of CPU
//! flags itself and yields; [`drive`] then hands the half-done call (its
//! Store, its slot permits, its deadline) to this lane and waits for it.
//! Yielding at every epoch tick alone was not enough: with 2 cores and a
//! tenant keeping 8 spinning calls in flight, the good tenant's p99 rose
//! 40-60x (BENCHMARKS.md, `hostile`). One lane thread at nice 10 leaves a
//! core free of plugin work and gives the workers ~90 % of the other.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use super::PluginError;
use crate::priority::BackgroundRuntime;

/// Threads of the slow lane. One, not one per core: with two lane threads
/// spinning, every wake-up of a request on this 2-core machine had to preempt
/// one of them and the good tenant's p99 under a spinning attack was 20-100x
/// its baseline; with one, a core is always free of plugin work (2.4-3.1x).
const THREADS: usize = 1;
/// A tokio runtime on low-priority threads (`crate::priority`); shut down
/// (without waiting) on drop.
pub struct SlowLane {
    runtime: BackgroundRuntime,
}

impl SlowLane {
    pub fn start() -> Result<SlowLane, PluginError> {
        let runtime = BackgroundRuntime::start("weir-plugin-slow", THREADS)
            .map_err(|e| PluginError::Engine(format!("cannot start the plugin slow lane: {e}")))?;
        Ok(SlowLane { runtime })
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.handle()
    }
}

/// Runs `call` in the caller's task until it completes or flags `overran`,
/// then moves it to the slow lane and waits for it there. Dropping the
/// returned future drops the call wherever it is (the lane's task is aborted).
pub async fn drive<T: Send + 'static>(
    lane: &SlowLane,
    overran: &AtomicBool,
    call: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let mut call: Pin<Box<dyn Future<Output = T> + Send>> = Box::pin(call);
    let first = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if overran.load(Ordering::Relaxed) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    })
    .await;
    if let Some(out) = first {
        return Ok(out);
    }
    let Some(handle) = lane.handle() else {
        return Ok(call.await);
    };
    AbortOnDrop(handle.spawn(call)).wait().await
}

/// A task that is aborted when whoever waits for it goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_call_that_overruns_finishes_on_the_lane_and_one_that_does_not_stays() {
        let lane = SlowLane::start().expect("lane");
        let quick = AtomicBool::new(false);
        let name = drive(&lane, &quick, async { std::thread::current().name().map(str::to_string) }).await.expect("quick");
        assert_ne!(name.as_deref(), Some("weir-plugin-slow"));
        let overran = Arc::new(AtomicBool::new(false));
        let flag = overran.clone();
        let call = async move {
            flag.store(true, Ordering::Relaxed);
            tokio::task::yield_now().await;
            std::thread::current().name().map(str::to_string)
        };
        let name = drive(&lane, &overran, call).await.expect("moved");
        assert_eq!(name.as_deref(), Some("weir-plugin-slow"));
    }

    #[tokio::test]
    async fn dropping_the_waiter_drops_the_call_on_the_lane() {
        let lane = SlowLane::start().expect("lane");
        let overran = Arc::new(AtomicBool::new(false));
        let (flag, guard) = (overran.clone(), Arc::new(()));
        let held = guard.clone();
        let call = async move {
            let _held = held;
            flag.store(true, Ordering::Relaxed);
            tokio::task::yield_now().await;
            std::future::pending::<()>().await
        };
        let (moved_tx, moved_rx) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(async move {
            let _ = moved_tx.send(());
            drive(&lane, &overran, call).await.is_ok()
        });
        moved_rx.await.expect("the waiter started");
        // Let the call reach the lane, then hang up.
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        // The call holds a second reference to `guard` until it is dropped.
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while Arc::strong_count(&guard) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(dropped.is_ok(), "the call was never dropped");
    }
}
