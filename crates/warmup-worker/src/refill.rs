//! One refill: bring a template's pool (current version) to its target.
//!
//! Reserve the gap in the ledger (under a per-template advisory lock, so
//! duplicate requests and replicas never overfill), copy the objects with no
//! transaction open, then mark the items ready and index them in Redis.
//! Failed items are discarded and their copies deleted. An item whose
//! template moved to a newer version before its turn is not started
//! (handed back, as below): a template edited over and over costs the copy
//! capacity of the items in flight, not of whole pools.
//!
//! A stopping worker ([`Refiller::stopping`]) starts no refill and no new
//! item: the items already copying finish (at most `worker.items_in_flight`
//! per refill), the reserved ones not started yet are handed back to the
//! ledger (discarded while `copying`, before any copy of theirs was sent),
//! so a SIGTERM during a refill of thousands of items ends in seconds; the
//! next reconciler pass tops the pool up.

use shared_domain::error::Chain;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use prewarm_store::db::pool_items::{self, DiscardedItem, ReservedItem};
use prewarm_store::db::pool_targets;
use prewarm_store::db::{Db, StoreError};
use prewarm_store::objects::{ObjectError, ObjectStore};
use prewarm_store::pause::{self, PausePoints};
use prewarm_store::pool_index::PoolIndex;
use shared_domain::ids::{PoolItemId, TemplateId, TemplateVersion};
use shared_domain::pool::{PoolKey, PoolLevels};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::sizing::TargetRule;

/// What a refill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The template no longer exists.
    TemplateGone,
    /// The worker is stopping: nothing was reserved.
    Stopped,
    Refilled {
        version: TemplateVersion,
        /// Live items before the refill.
        live_before: i64,
        /// Items made ready and indexed.
        ready: usize,
        /// Items given up (a copy failed, or the template moved on meanwhile).
        failed: usize,
        /// Ready items of older versions discarded.
        stale: usize,
        /// Reserved items never started because the worker began to stop or
        /// the template moved to a newer version, handed back to the ledger.
        handed_back: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{failed} of {reserved} items failed")]
    Copies {
        failed: usize,
        reserved: usize,
        /// The first item's failure.
        #[source]
        first: ItemError,
    },
}

/// Why one reserved item did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("copying its objects")]
    Copy(#[source] ObjectError),
    #[error("recording it")]
    Store(#[from] StoreError),
}

/// What became of a refill's items.
#[derive(Default)]
struct Tally {
    ready: usize,
    failed: usize,
    first_error: Option<ItemError>,
    unstarted: Vec<PoolItemId>,
}

/// What became of one reserved item.
#[derive(Debug)]
enum ItemOutcome {
    /// Its copies landed; it is ready and listed.
    Ready,
    /// Its copies landed, but it was discarded as it landed (the template
    /// moved on, or the pool was at its hold level).
    Superseded,
    /// Its copies or its bookkeeping failed; it was given up.
    Failed(ItemError),
    /// Never started (the worker began to stop, or the template moved on
    /// first): to be handed back to the ledger.
    Unstarted(PoolItemId),
}

/// Aborts a background task when dropped (the lease heartbeat of a refill).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
pub struct Refiller {
    pub db: Db,
    pub index: PoolIndex,
    pub objects: ObjectStore,
    /// Process-wide cap on CopyObject calls in flight.
    pub copy_limiter: Arc<Semaphore>,
    /// Each template's target, from the sizer's plan (`pool_targets`) when
    /// it plans, else `pool.target` or `pool.min`.
    pub rule: TargetRule,
    /// With adaptive sizing and `pool.budget_objects`, the most objects of live items
    /// all templates together may hold (enforced when reserving).
    pub budget: Option<i64>,
    pub lease: Duration,
    pub item_parallelism: usize,
    /// Items copied at once within one refill.
    pub items_in_flight: usize,
    pub metrics: Arc<crate::metrics::WorkerMetrics>,
    /// Observed copy and refill times, for the sizer.
    pub estimates: Arc<Estimates>,
    /// Test-only pause points (a no-op unless a test armed one).
    pub pause: PausePoints,
    /// Cancelled when the worker begins to stop (see the module docs).
    pub stopping: CancellationToken,
}

/// Exponentially weighted averages of what refills take, shared by the
/// refills (writers) and the sizer (reader). f64s stored as bits.
#[derive(Debug)]
pub struct Estimates {
    copy_secs: std::sync::atomic::AtomicU64,
    lag_secs: std::sync::atomic::AtomicU64,
}

impl Default for Estimates {
    fn default() -> Self {
        // Until measured: 150 ms per CopyObject, 1 s from request to refill.
        Self {
            copy_secs: std::sync::atomic::AtomicU64::new(0.15f64.to_bits()),
            lag_secs: std::sync::atomic::AtomicU64::new(1.0f64.to_bits()),
        }
    }
}

/// The most request-to-refill lag one sample counts for.
pub const MAX_LAG_SECS: f64 = 300.0;

impl Estimates {
    const WEIGHT: f64 = 0.1;

    fn update(cell: &std::sync::atomic::AtomicU64, sample: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = cell.fetch_update(Relaxed, Relaxed, |bits| {
            let old = f64::from_bits(bits);
            Some((old + Self::WEIGHT * (sample - old)).to_bits())
        });
    }

    /// One item's copies took `secs` in `rounds` sequential rounds.
    pub fn observe_copy(&self, secs: f64, rounds: usize) {
        Self::update(&self.copy_secs, secs / rounds.max(1) as f64);
    }

    /// A request was refilled `secs` after it was sent. Clamped to
    /// [`MAX_LAG_SECS`]: a replayed or mis-stamped message (or a backlog
    /// after an outage) must not make every pool plan for days of lag.
    pub fn observe_lag(&self, secs: f64) {
        if secs.is_finite() {
            Self::update(&self.lag_secs, secs.clamp(0.0, MAX_LAG_SECS));
        }
    }

    /// Seconds one round of an item's copies takes.
    pub fn copy_secs(&self) -> f64 {
        f64::from_bits(self.copy_secs.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Seconds to make one item of `images` images ready again after a pop.
    pub fn refill_secs(&self, images: i64, item_parallelism: usize) -> f64 {
        use std::sync::atomic::Ordering::Relaxed;
        let rounds = (images.max(1) as f64 / item_parallelism.max(1) as f64).ceil();
        let copying = f64::from_bits(self.copy_secs.load(Relaxed)) * rounds;
        copying.max(f64::from_bits(self.lag_secs.load(Relaxed)))
    }
}

impl Refiller {
    pub async fn refill(&self, template: TemplateId) -> Result<Outcome, RefillError> {
        self.refill_for(template, false).await
    }

    /// A refill; `in_demand` when a design just asked for it (a pop or a
    /// miss): the idle rule does not hold the template at `min` meanwhile
    /// ([`TargetRule::target_for`]).
    pub async fn refill_for(
        &self,
        template: TemplateId,
        in_demand: bool,
    ) -> Result<Outcome, RefillError> {
        if self.stopping.is_cancelled() {
            return Ok(Outcome::Stopped);
        }
        let Some(reservation) = self.reserve(template, in_demand).await? else {
            return Ok(Outcome::TemplateGone);
        };
        let pool = reservation.pool;
        self.clear_out(&reservation).await;
        // While the copies run, a heartbeat keeps the items' leases alive, so
        // a refill slower than `pool.lease_secs` is never rescued under it.
        let _heartbeat = self.keep_leases(reservation.reserved.iter().map(|i| i.id).collect());
        let tally = self
            .finish_all(pool, &reservation.reserved, in_demand)
            .await;
        let handed_back = self.hand_back(template, &tally.unstarted).await;
        if let Some(first) = tally.first_error {
            return Err(RefillError::Copies {
                failed: tally.failed,
                reserved: reservation.reserved.len(),
                first,
            });
        }
        Ok(Outcome::Refilled {
            version: pool.version,
            live_before: reservation.live_before,
            ready: tally.ready,
            failed: tally.failed,
            stale: reservation.stale.len(),
            handed_back,
        })
    }

    /// Step 1: reserves the gap to the template's levels as planned now
    /// (`None`: the template is gone).
    async fn reserve(
        &self,
        template: TemplateId,
        in_demand: bool,
    ) -> Result<Option<pool_items::Reservation>, RefillError> {
        let mut conn = self.db.conn().await?;
        let Some(levels) = self.levels(&mut conn, template, in_demand).await? else {
            return Ok(None);
        };
        Ok(self
            .pause
            .scope(pool_items::reserve(
                &mut conn,
                template,
                levels,
                self.lease,
                self.budget,
            ))
            .await?)
    }

    /// Deletes what the reservation took out of service: retired surplus
    /// (unlisted first: the index must stop offering it at once; LREM
    /// leaves ids pushed by concurrent refills listed) and stale items of
    /// older versions (whose lists can only hold ids the ledger refuses).
    async fn clear_out(&self, reservation: &pool_items::Reservation) {
        let pool = reservation.pool;
        let template = pool.template;
        if !reservation.surplus.is_empty() {
            let ids: Vec<_> = reservation.surplus.iter().map(|i| i.id).collect();
            if let Err(e) = self.index.remove_ids(pool, &ids).await {
                tracing::warn!(%template, error = %Chain(&e), "could not unlist retired items; the reconciler will");
            }
            self.delete_items(&reservation.surplus).await;
        }
        if !reservation.stale.is_empty() {
            self.delete_items(&reservation.stale).await;
            let version = pool.version.0;
            for old in (version - 10).max(1)..version {
                let old = PoolKey::new(template, TemplateVersion(old));
                if let Err(e) = self.index.remove(old).await {
                    tracing::warn!(template = %old.template, old = %old.version, error = %Chain(&e), "could not drop an old pool list");
                }
            }
        }
    }

    /// Steps 2 and 3 for every reserved item. Items copy side by side (the
    /// process-wide limiter bounds the total); each becomes ready and
    /// servable as soon as its own copies landed. At most `items_in_flight`
    /// items at a time, so a large gap does not hold hundreds of half-done
    /// items (and their database connections). Once the worker is
    /// stopping, no further item starts: each checks when its turn comes (a
    /// future made eagerly, as a lazy stream of borrowing closures trips
    /// rust-lang/rust#102211 here).
    async fn finish_all(
        &self,
        pool: PoolKey,
        reserved: &[pool_items::ReservedItem],
        in_demand: bool,
    ) -> Tally {
        let finishing: Vec<_> = reserved
            .iter()
            .map(|item| self.finish_unless_stopping(pool, item, in_demand))
            .collect();
        let outcomes: Vec<ItemOutcome> = stream::iter(finishing)
            .buffer_unordered(self.items_in_flight.max(1))
            .collect()
            .await;
        let mut tally = Tally::default();
        for outcome in outcomes {
            match outcome {
                ItemOutcome::Ready => tally.ready += 1,
                ItemOutcome::Superseded => tally.failed += 1,
                ItemOutcome::Failed(e) => {
                    tally.failed += 1;
                    tally.first_error.get_or_insert(e);
                }
                ItemOutcome::Unstarted(id) => tally.unstarted.push(id),
            }
        }
        tally
    }

    /// The template's levels as planned now (`None`: the template is gone).
    /// Read again when each item lands, so a hold level lowered while it
    /// copied is respected.
    async fn levels(
        &self,
        conn: &mut prewarm_store::db::DbConn,
        template: TemplateId,
        in_demand: bool,
    ) -> Result<Option<PoolLevels>, StoreError> {
        Ok(pool_targets::target_inputs(conn, template)
            .await?
            .map(|(planned, age)| self.rule.target_for(planned, age, in_demand)))
    }

    /// Gives reserved items no copy was sent for back to the ledger (the
    /// same conditional discard as a failed item's, so an item the rescue
    /// took meanwhile is left to it). Nothing of theirs is in S3, so nothing
    /// is deleted. On a failure their leases run out and the reconciler's
    /// rescue discards them. Returns how many were handed back.
    async fn hand_back(&self, template: TemplateId, ids: &[PoolItemId]) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let discarded = match self.conn_with_retry().await {
            Ok(mut conn) => pool_items::discard(&mut conn, ids).await,
            Err(e) => Err(e),
        };
        match discarded {
            Ok(items) => {
                tracing::info!(%template, handed_back = items.len(), "reserved items not started handed back (stopping, or a newer version)");
                items.len()
            }
            Err(e) => {
                tracing::warn!(%template, count = ids.len(), error = %Chain(&e), "could not hand back unstarted items; their leases will run out");
                0
            }
        }
    }

    /// Renews the leases of `ids` (those still copying) every third of a
    /// lease until the returned guard is dropped.
    fn keep_leases(&self, ids: Vec<PoolItemId>) -> Option<AbortOnDrop> {
        if ids.is_empty() {
            return None;
        }
        let (db, lease) = (self.db.clone(), self.lease);
        let every = (lease / 3).max(Duration::from_millis(100));
        Some(AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let renewed = match db.conn().await {
                    Ok(mut conn) => pool_items::renew_leases(&mut conn, &ids, lease).await,
                    Err(e) => Err(e),
                };
                match renewed {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "could not renew copy leases; retrying")
                    }
                }
            }
        })))
    }

    /// [`finish_item`](Self::finish_item), or `Unstarted` (nothing done)
    /// when the worker began to stop, or the template moved on, before
    /// this item's turn came.
    async fn finish_unless_stopping(
        &self,
        pool: PoolKey,
        item: &ReservedItem,
        in_demand: bool,
    ) -> ItemOutcome {
        if self.stopping.is_cancelled() || self.superseded(pool).await {
            return ItemOutcome::Unstarted(item.id);
        }
        match self.finish_item(pool, item, in_demand).await {
            Ok(true) => ItemOutcome::Ready,
            Ok(false) => ItemOutcome::Superseded,
            Err(e) => ItemOutcome::Failed(e),
        }
    }

    /// Whether the template moved past `version` (edited, deleted): an item
    /// of it not started yet would be copied only to be discarded, so it is
    /// handed back instead -- a tenant editing a template over and over
    /// costs the shared copy capacity the items in flight, not whole pools.
    /// A failed read is not a reason to stop (the item's own checks remain).
    async fn superseded(&self, pool: PoolKey) -> bool {
        let current = match self.db.conn().await {
            Ok(mut conn) => prewarm_store::db::templates::find_row(&mut conn, pool.template).await,
            Err(e) => Err(e),
        };
        match current {
            Ok(Some(row)) => row.template_version() != pool.version,
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Copies one reserved item, then marks it ready and indexes it.
    /// `Ok(true)`: ready; `Ok(false)`: superseded by a newer version or
    /// above a target lowered while it copied (discarded);
    /// `Err`: a copy failed (discarded, its copies deleted).
    async fn finish_item(
        &self,
        pool: PoolKey,
        item: &ReservedItem,
        in_demand: bool,
    ) -> Result<bool, ItemError> {
        let template = pool.template;
        let started = std::time::Instant::now();
        self.pause.reach(pause::at::ITEM_COPYING).await;
        let copied = self.copy_item(item).await;
        let took = started.elapsed().as_secs_f64();
        self.metrics
            .item_copy
            .with_label_values(&[if copied.is_ok() { "ok" } else { "error" }])
            .observe(took);
        if copied.is_ok() {
            let rounds = item.copies.len().div_ceil(self.item_parallelism.max(1));
            self.estimates.observe_copy(took, rounds);
        }
        let mut conn = self.conn_with_retry().await?;
        if let Err(e) = copied {
            self.metrics.items.with_label_values(&["failed"]).inc();
            let given_up = pool_items::discard(&mut conn, &[item.id]).await?;
            drop(conn);
            self.delete_items(&given_up).await;
            return Err(e);
        }
        // A template gone meanwhile: mark_ready sees its bumped version.
        let hold = self
            .levels(&mut conn, template, in_demand)
            .await?
            .map_or(0, |l| l.hold);
        let (ready, superseded) = pool_items::mark_ready(&mut conn, pool, &[item.id], hold).await?;
        drop(conn);
        self.delete_items(&superseded).await;
        if ready.is_empty() {
            self.metrics.items.with_label_values(&["superseded"]).inc();
            return Ok(false);
        }
        self.metrics.items.with_label_values(&["ready"]).inc();
        if let Err(e) = self.index.push(pool, &ready).await {
            // The item is ready in the ledger; the reconciler re-indexes it.
            tracing::warn!(%template, error = %Chain(&e), "could not index a ready item");
        }
        Ok(true)
    }

    /// A database connection, retried with backoff: the copies are already
    /// paid for, so a brief database hiccup must not waste them.
    async fn conn_with_retry(&self) -> Result<prewarm_store::db::DbConn, StoreError> {
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..5 {
            match self.db.conn().await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "no database connection; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        self.db.conn().await
    }

    /// Copies one item's objects (on a failure the caller discards the item
    /// and deletes every planned key, landed or not).
    async fn copy_item(&self, item: &ReservedItem) -> Result<(), ItemError> {
        let pairs: Vec<(String, String)> = item
            .copies
            .iter()
            .map(|c| (c.source_key.clone(), c.object_key.clone()))
            .collect();
        let results = self
            .objects
            .copy_all(
                &pairs,
                self.item_parallelism,
                Some(self.copy_limiter.clone()),
            )
            .await;
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(e) => Err(ItemError::Copy(e)),
        }
    }

    pub async fn delete_items(&self, items: &[DiscardedItem]) {
        let keys: Vec<String> = items
            .iter()
            .flat_map(|i| i.object_keys.iter().cloned())
            .collect();
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.objects.delete_many(&keys).await {
            tracing::warn!(count = keys.len(), error = %Chain(&e), "could not delete discarded pool objects");
        }
    }
}
