//! Shutdown signalling: one trigger, many listeners, no globals.
//!
//! `main` (or a test) holds the [`ShutdownTrigger`]; every long-running task
//! holds a cloned [`Shutdown`] and selects on [`Shutdown::wait`].

use tokio::sync::watch;

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

#[cfg(test)]
mod tests {
    use super::*;

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
