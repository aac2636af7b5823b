//! Pool ids popped ahead of the designs that will use them
//! (`serving.prefetch_hold_ms`, `serving.prefetch_batch`).
//!
//! A warm design is two round trips in a row: `LPOP` the id, then the
//! Postgres claim. When a request pops an id, this process also pops the
//! template version's *next* ids in the background (while the request's
//! claim is in flight) and holds them; the next designs of that version
//! take them from memory and make only the Postgres round trip. A
//! version's batch starts at one id and doubles each time a batch is used
//! up (up to `serving.prefetch_batch`), and falls back to one when an id
//! outlives the hold or the list runs short: a busy version pays one Redis
//! pop per batch, a quiet one holds one id.
//!
//! Safety rests where it always did, on the ledger: a held id is still
//! `ready` and may be retired, re-versioned or claimed by anyone meanwhile,
//! and the claim is conditional on `state = 'ready'` and the version, so a
//! stale held id costs one failed claim and a fresh pop, never a second
//! design. Availability is kept by three rules:
//! - a prefetch never takes a list's last id, and takes at most half of
//!   the ids beyond it (`PoolIndex::pop_ahead`), so what one process holds
//!   leaves most of a short list to the requests of others, and the last
//!   id always;
//! - an id held longer than the hold is listed again at the head by the
//!   sweeper (`Prefetch::sweep`), and all of them at shutdown
//!   (`Prefetch::put_back_all`) -- if the ledger still serves it (not
//!   retired, current version, template not deleted), so a put-back never
//!   recreates a dead list;
//! - at most `serving.prefetch_batch` ids per template version per process.
//!
//! An id held by a process that dies is remembered as popped; the
//! reconciler lists it again after `redis.pop_memory_ms`, like an id popped
//! by a request that died before its claim (I4).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prewarm_store::db::{pool_items, Db, StoreError};
use prewarm_store::pause::{self, PausePoints};
use prewarm_store::pool_index::PoolIndex;
use shared_domain::error::Chain;
use shared_domain::ids::PoolItemId;
use shared_domain::pool::PoolKey;
use tokio::sync::Notify;

/// One template version's ids held ahead.
struct Slot {
    /// Popped ids not yet used, head first, each with when it was popped.
    held: VecDeque<(PoolItemId, Instant)>,
    /// A background pop is in flight.
    fetching: bool,
    /// How many ids the next background pop asks for: 1, doubled each time
    /// a batch is used up (up to `serving.prefetch_batch`), 1 again when an id
    /// outlives the hold.
    batch: u32,
}

impl Slot {
    fn new() -> Self {
        Self {
            held: VecDeque::new(),
            fetching: false,
            batch: 1,
        }
    }

    /// Nothing in it worth keeping: no ids, no pop, no grown batch.
    fn idle(&self) -> bool {
        self.held.is_empty() && !self.fetching && self.batch == 1
    }
}

/// The ids this process holds, at most `serving.prefetch_batch` per template
/// version.
pub struct Prefetch {
    hold: Duration,
    most: u32,
    slots: Mutex<HashMap<PoolKey, Slot>>,
    /// Set at shutdown: nothing more is held.
    closed: std::sync::atomic::AtomicBool,
    /// Background pops not yet ended, and their end told to
    /// [`Prefetch::wait_for_pops`].
    pops: AtomicUsize,
    pops_ended: Notify,
    metrics: Arc<crate::metrics::ApiMetrics>,
    pause: PausePoints,
}

impl Prefetch {
    /// `None` when `hold` is zero (prefetching off). At most `most` ids
    /// (at least 1) are held per template version.
    pub fn new(
        hold: Duration,
        most: u32,
        metrics: Arc<crate::metrics::ApiMetrics>,
        pause: PausePoints,
    ) -> Option<Arc<Self>> {
        (!hold.is_zero()).then(|| {
            Arc::new(Self {
                hold,
                most: most.max(1),
                slots: Mutex::new(HashMap::new()),
                closed: Default::default(),
                pops: AtomicUsize::new(0),
                pops_ended: Notify::new(),
                metrics,
                pause,
            })
        })
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<PoolKey, Slot>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest id held for this template version, if any (it is no
    /// longer held). Taking the last of a batch doubles the next batch.
    pub fn take(&self, pool: PoolKey) -> Option<PoolItemId> {
        let mut slots = self.slots();
        let slot = slots.get_mut(&pool)?;
        let (id, _) = slot.held.pop_front()?;
        if slot.held.is_empty() {
            slot.batch = (slot.batch * 2).min(self.most);
        }
        self.metrics.prefetch("used");
        Some(id)
    }

    /// Pops the template version's next batch in the background (on the
    /// caller's runtime, through `index`) unless ids are held or on their
    /// way.
    pub fn fetch_next(self: &Arc<Self>, index: &PoolIndex, pool: PoolKey) {
        if self.is_closed() {
            return;
        }
        let most = {
            let mut slots = self.slots();
            let slot = slots.entry(pool).or_insert_with(Slot::new);
            if slot.fetching || !slot.held.is_empty() {
                return;
            }
            slot.fetching = true;
            slot.batch
        };
        let (this, index) = (self.clone(), index.clone());
        self.pops.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let mut guard = FetchGuard {
                prefetch: this.clone(),
                key: pool,
                done: false,
            };
            // Called just before the request sends its claim: let the claim's
            // write go first (the Postgres connection's task, woken after
            // this one was spawned), so the pop runs while Postgres works
            // instead of in front of the request's only round trip.
            tokio::task::yield_now().await;
            let ids = match index.pop_ahead(pool, 1, most).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::debug!(template = %pool.template, error = %Chain(&e), "prefetch pop failed");
                    Vec::new()
                }
            };
            this.pause.reach(pause::at::PREFETCH_POPPED).await;
            let refused = this.hold_popped(pool, ids);
            guard.done = true;
            // Closed meanwhile (shutdown): listed again, in their order.
            for id in refused.into_iter().rev() {
                put_back(&index, pool, id).await;
            }
        });
    }

    /// Holds the ids a background pop brought for `key`; returns them
    /// instead if the process is closing. Checked under the lock that
    /// [`Prefetch::put_back_all`] drains under after closing, so no id is
    /// held after the drain.
    fn hold_popped(&self, key: PoolKey, ids: Vec<PoolItemId>) -> Vec<PoolItemId> {
        let mut slots = self.slots();
        let closed = self.is_closed();
        let Some(slot) = slots.get_mut(&key) else {
            return ids;
        };
        slot.fetching = false;
        if ids.is_empty() {
            // The list is short (or Redis failed): no bigger batch next.
            slot.batch = 1;
        }
        let refused = if closed {
            ids
        } else {
            let now = Instant::now();
            slot.held.extend(ids.into_iter().map(|id| (id, now)));
            Vec::new()
        };
        if slot.idle() {
            slots.remove(&key);
        }
        refused
    }

    /// Holds nothing more from now on (shutdown begins): a pop still in
    /// flight lists its ids again instead; [`Prefetch::put_back_all`] lists
    /// the ids held.
    pub fn close(&self) {
        let _slots = self.slots();
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Waits until no background pop is in flight, at most `within`
    /// (shutdown: after [`Prefetch::close`], so that each lists its ids
    /// again before the runtimes they run on stop).
    pub async fn wait_for_pops(&self, within: Duration) {
        let wait = async {
            loop {
                let ended = self.pops_ended.notified();
                if self.pops.load(Ordering::Acquire) == 0 {
                    return;
                }
                ended.await;
            }
        };
        if tokio::time::timeout(within, wait).await.is_err() {
            tracing::warn!(
                pops = self.pops.load(Ordering::Acquire),
                "prefetch pops still in flight at shutdown; the reconciler lists their ids again"
            );
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Lists again every id held longer than the hold. Returns how many.
    pub async fn sweep(&self, index: &PoolIndex, db: &Db) -> usize {
        let expired = self.remove_where(|since| since.elapsed() >= self.hold);
        self.list_again(index, db, expired).await
    }

    /// Stops holding (shutdown) and lists every held id again.
    pub async fn put_back_all(&self, index: &PoolIndex, db: &Db) -> usize {
        self.close();
        let held = self.remove_where(|_| true);
        self.list_again(index, db, held).await
    }

    /// Lists `held` again at the head of their lists, except the ids the
    /// ledger no longer serves (retired, of an old version, of a deleted
    /// template: listing those would only recreate a dead list). If the
    /// ledger cannot be asked, all are listed: the claim still decides.
    /// Returns how many were listed.
    async fn list_again(
        &self,
        index: &PoolIndex,
        db: &Db,
        held: Vec<(PoolKey, PoolItemId)>,
    ) -> usize {
        if held.is_empty() {
            return 0;
        }
        let ids: Vec<PoolItemId> = held.iter().map(|(_, id)| *id).collect();
        let servable: HashSet<PoolItemId> = match servable(db, &ids).await {
            Ok(servable) => servable.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not check held pool items; listing them all");
                ids.iter().copied().collect()
            }
        };
        let mut listed = 0;
        // Each version's ids were removed head first: put back in reverse,
        // so they are listed in the order they were popped.
        for (pool, id) in held.into_iter().rev() {
            if servable.contains(&id) {
                put_back(index, pool, id).await;
                self.metrics.prefetch("returned");
                listed += 1;
            } else {
                self.metrics.prefetch("dropped");
            }
        }
        listed
    }

    /// Removes the held ids `pick` chooses, in their order per version. A
    /// version that loses an id to the hold starts again at a batch of one.
    fn remove_where(&self, pick: impl Fn(Instant) -> bool) -> Vec<(PoolKey, PoolItemId)> {
        let mut slots = self.slots();
        let mut picked = Vec::new();
        for (key, slot) in slots.iter_mut() {
            let before = slot.held.len();
            slot.held.retain(|(id, since)| {
                let take = pick(*since);
                if take {
                    picked.push((*key, *id));
                }
                !take
            });
            if slot.held.len() < before {
                slot.batch = 1;
            }
        }
        slots.retain(|_, slot| !slot.idle());
        picked
    }

    /// Runs [`Prefetch::sweep`] every half hold until `background` stops.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        background: &crate::background::Background,
        index: PoolIndex,
        db: Db,
    ) {
        let this = self.clone();
        background.every(this.hold / 2, move || {
            let (this, index, db) = (this.clone(), index.clone(), db.clone());
            async move {
                this.sweep(&index, &db).await;
            }
        });
    }
}

/// Ends a background pop: counts it ended (for [`Prefetch::wait_for_pops`]),
/// and if it ended without holding what it popped (its task panicked, or
/// was dropped with its runtime) marks the slot no longer fetching, so the
/// next design pops again. What it popped is remembered as popped, and the
/// reconciler lists it again (I4).
struct FetchGuard {
    prefetch: Arc<Prefetch>,
    key: PoolKey,
    done: bool,
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        if !self.done {
            self.prefetch.hold_popped(self.key, Vec::new());
        }
        if self.prefetch.pops.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.prefetch.pops_ended.notify_waiters();
        }
    }
}

async fn servable(db: &Db, ids: &[PoolItemId]) -> Result<Vec<PoolItemId>, StoreError> {
    let mut conn = db.conn().await?;
    pool_items::still_ready(&mut conn, ids).await
}

/// Lists a held id again at the head (it was popped, never claimed).
async fn put_back(index: &PoolIndex, pool: PoolKey, id: PoolItemId) {
    if let Err(e) = index.push_front(pool, id).await {
        tracing::warn!(template = %pool.template, item = %id, error = %Chain(&e),
            "could not list a prefetched pool item again; the reconciler will");
    }
}
