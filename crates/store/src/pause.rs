//! Pause points: named places in the code where a test can stop one task,
//! do something else (claim a design, delete a template, push an id), and
//! then let it go on -- so a dangerous interleaving happens every run, not
//! by luck.
//!
//! Release builds compile [`PausePoints::reach`] to nothing: the registry
//! exists only with the `pause-points` feature, which only the test crate
//! enables. The handle is carried by each service's state (not a global),
//! so tests running side by side in one process never pause each other;
//! the store's functions find it task-local ([`reach`], inside
//! [`PausePoints::scope`]), so it is not part of their signatures.
//!
//! ```ignore
//! let points = PausePoints::enabled();
//! let gate = points.arm("gc.before_check");
//! // ... start the mechanism with `points` in its state ...
//! gate.reached().await;   // the task is now parked at the point
//! // ... make the concurrent change ...
//! gate.release();         // the task goes on
//! ```

/// Where each pause point is, by name (the code and the tests use these).
pub mod at {
    /// Refill: the surplus items to retire have been chosen, not yet discarded.
    pub const RETIRE_CHOSEN: &str = "refill.retire_chosen";
    /// Refill under a budget: the budget's room was read (its total locked)
    /// and the items inserted, the template's live items not yet recorded.
    pub const BUDGET_CHECKED: &str = "refill.budget_checked";
    /// Refill: an item's copies are being made (its lease must stay alive).
    pub const ITEM_COPYING: &str = "refill.item_copying";
    /// Reconciler: the expired leases were read, the items not yet discarded.
    pub const RESCUE_READ: &str = "reconcile.rescue_read";
    /// GC: the bucket has been listed; which objects are referenced is being decided.
    pub const GC_DECIDING: &str = "gc.deciding";
    /// Reconciler: the ledger's ready ids were read, the Redis list not yet rebuilt.
    pub const REINDEX_READ: &str = "reconcile.reindex_read";
    /// Cold design: the copies landed, the design's transaction not begun.
    pub const COLD_COPIED: &str = "design.cold_copied";
    /// Cold design: the template version is locked, the design not yet committed.
    pub const COLD_LOCKED: &str = "design.cold_locked";
    /// Prefetch: a batch was popped ahead, not yet held.
    pub const PREFETCH_POPPED: &str = "prefetch.popped";
    /// Warm design: an id was popped from Redis, not yet claimed.
    pub const WARM_POPPED: &str = "design.warm_popped";
    /// Upload: an image is stored in S3, its template not saved yet.
    pub const UPLOAD_STORED: &str = "upload.image_stored";
    /// Authentication: a key was found valid in Postgres, not yet cached.
    pub const AUTH_LOOKED_UP: &str = "auth.looked_up";
    /// Depth pass: a batch's ready items were read, the running total not yet moved.
    pub const DEPTHS_READ: &str = "depths.read";
}

#[cfg(feature = "pause-points")]
mod registry {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::sync::{watch, Semaphore};

    /// One armed point: the first task to reach it parks until released.
    pub(super) struct Gate {
        pub(super) reached: watch::Sender<bool>,
        pub(super) release: Semaphore,
    }

    #[derive(Default)]
    pub(super) struct Registry {
        pub(super) armed: Mutex<HashMap<&'static str, Arc<Gate>>>,
    }
}

/// A service's pause points: a no-op unless a test armed one.
#[derive(Clone, Default)]
pub struct PausePoints {
    #[cfg(feature = "pause-points")]
    registry: Option<std::sync::Arc<registry::Registry>>,
}

impl std::fmt::Debug for PausePoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PausePoints")
    }
}

#[cfg(feature = "pause-points")]
tokio::task_local! {
    static CURRENT: PausePoints;
}

/// Parks the calling task here if its current pause points (see
/// [`PausePoints::scope`]) armed `name`; a no-op outside a scope.
#[inline]
pub async fn reach(name: &'static str) {
    #[cfg(feature = "pause-points")]
    if let Ok(points) = CURRENT.try_with(PausePoints::clone) {
        points.reach(name).await;
    }
    #[cfg(not(feature = "pause-points"))]
    let _ = name;
}

impl PausePoints {
    /// Runs `work` with these as the task's current pause points, which the
    /// store's functions reach ([`reach`]).
    pub async fn scope<F: std::future::Future>(&self, work: F) -> F::Output {
        #[cfg(feature = "pause-points")]
        return CURRENT.scope(self.clone(), work).await;
        #[cfg(not(feature = "pause-points"))]
        work.await
    }

    /// Parks the calling task here if a test armed `name` (first arrival only).
    #[inline]
    pub async fn reach(&self, name: &'static str) {
        #[cfg(feature = "pause-points")]
        if let Some(registry) = &self.registry {
            let gate = registry.armed.lock().expect("pause registry").remove(name);
            if let Some(gate) = gate {
                tracing::info!(point = name, "paused");
                let _ = gate.reached.send(true);
                if let Ok(permit) = gate.release.acquire().await {
                    permit.forget();
                }
                tracing::info!(point = name, "resumed");
            }
        }
        #[cfg(not(feature = "pause-points"))]
        let _ = name;
    }
}

#[cfg(feature = "pause-points")]
pub use armed::Armed;

#[cfg(feature = "pause-points")]
mod armed {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{watch, Semaphore};

    use super::registry::{Gate, Registry};
    use super::PausePoints;

    /// A test's hold on one armed point.
    pub struct Armed {
        name: &'static str,
        gate: Arc<Gate>,
        reached: watch::Receiver<bool>,
    }

    impl PausePoints {
        /// A registry tests can arm points in.
        pub fn enabled() -> Self {
            Self {
                registry: Some(Arc::new(Registry::default())),
            }
        }

        /// Arms `name`: the next task to reach it parks until [`Armed::release`].
        pub fn arm(&self, name: &'static str) -> Armed {
            let registry = self.registry.as_ref().expect("PausePoints::enabled()");
            let (tx, rx) = watch::channel(false);
            let gate = Arc::new(Gate {
                reached: tx,
                release: Semaphore::new(0),
            });
            registry
                .armed
                .lock()
                .expect("pause registry")
                .insert(name, gate.clone());
            Armed {
                name,
                gate,
                reached: rx,
            }
        }
    }

    impl Armed {
        /// Waits (at most `within`) until a task is parked at the point.
        pub async fn reached_within(&mut self, within: Duration) -> bool {
            tokio::time::timeout(within, self.reached.wait_for(|r| *r))
                .await
                .is_ok_and(|r| r.is_ok())
        }

        /// Waits until a task is parked at the point (panics after 30 s).
        pub async fn reached(&mut self) {
            assert!(
                self.reached_within(Duration::from_secs(30)).await,
                "nothing reached pause point {}",
                self.name
            );
        }

        /// Lets the parked task (or the next arrival) go on.
        pub fn release(&self) {
            self.gate.release.add_permits(1);
        }
    }

    impl Drop for Armed {
        fn drop(&mut self) {
            // Never leave a task parked when a test ends or panics.
            self.gate.release.add_permits(1_000);
        }
    }
}
