//! The API's background loops -- the similar-templates cache's sweeper, the
//! cache invalidation listener, the idempotency purge, the prefetch sweeper
//! and the warm-up sender -- run on one [`Background`]: one token stops
//! them all and shutdown waits for them, as the worker's loops do
//! (`warmup_worker::startup`). A loop stopped between two steps never
//! stops half way through one (a purge's delete, a sweep's put-backs).

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The process's background loops.
#[derive(Debug, Clone, Default)]
pub struct Background {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Background {
    pub fn new() -> Background {
        Background::default()
    }

    /// Runs `step` every `period` (the first at once; a late tick is
    /// delayed, not bunched) until the loops are stopped; a step under way
    /// when they are stopped runs to its end.
    pub fn every<F, Fut>(&self, period: Duration, mut step: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                step().await;
            }
        });
    }

    /// Runs `work` until it ends or the loops are stopped; stopped, it is
    /// dropped at the next point it waits (for loops whose waits hold no
    /// work half done: a channel's next message, a coalescing window).
    pub fn until_stopped<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// Stops every loop and waits for them, at most `timeout`; `false` if
    /// one was still in a step then (it is left to end with the runtime).
    pub async fn stop(&self, timeout: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    #[tokio::test]
    async fn stopping_ends_every_loop_after_the_step_under_way() {
        let background = Background::new();
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        // Each step waits for the test to let it end.
        let gate = Arc::new(Semaphore::new(0));
        let (s, f, g) = (started.clone(), finished.clone(), gate.clone());
        background.every(Duration::from_millis(1), move || {
            let (s, f, g) = (s.clone(), f.clone(), g.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                g.acquire().await.expect("open").forget();
                f.fetch_add(1, Ordering::SeqCst);
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        background.until_stopped(async move { while rx.recv().await.is_some() {} });
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stopping = tokio::spawn({
            let background = background.clone();
            async move { background.stop(Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !stopping.is_finished(),
            "the stop waits for the step under way"
        );
        assert!(
            tx.is_closed(),
            "the listener's loop ended at once, dropping its channel"
        );
        gate.add_permits(100);
        assert!(stopping.await.unwrap(), "every loop ended");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the step ran to its end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "no step after the stop");
    }
}
