//! Pool ids popped ahead of the design that will use them
//! (`pool.prefetch_hold_ms`).
//!
//! A warm design is two round trips in a row: `LPOP` the id, then the
//! Postgres claim. When a request pops an id, this process also pops the
//! template version's *next* id in the background (while the request's
//! claim is in flight) and holds it; the next design of that version takes
//! it from memory and makes only the Postgres round trip.
//!
//! Safety rests where it always did, on the ledger: a held id is still
//! `ready` and may be retired, re-versioned or claimed by anyone meanwhile,
//! and the claim is conditional on `state = 'ready'` and the version, so a
//! stale held id costs one failed claim and a fresh pop, never a second
//! design. Availability is kept by three rules:
//! - a prefetch never takes a list's last id (`PoolIndex::pop_leaving`),
//!   so a held id never turns another replica's request into a copy;
//! - an id held longer than the hold is listed again at the head by the
//!   sweeper (`Prefetch::sweep`), and all of them at shutdown
//!   (`Prefetch::put_back_all`) -- if the ledger still serves it (not
//!   retired, current version, template not deleted), so a put-back never
//!   recreates a dead list;
//! - one id at most per template version per process.
//!
//! An id held by a process that dies is remembered as popped; the
//! reconciler lists it again after `redis.pop_memory_ms`, like an id popped
//! by a request that died before its claim (I4).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prewarm_store::db::{pool_items, Db, StoreError};
use prewarm_store::pool_index::PoolIndex;
use shared_domain::error::Chain;
use shared_domain::ids::{PoolItemId, TemplateId};

type Key = (TemplateId, i32);

enum Slot {
    /// A background pop is in flight.
    Fetching,
    /// Popped at the instant, not yet used.
    Held(PoolItemId, Instant),
}

/// The ids this process holds, one per template version at most.
pub struct Prefetch {
    hold: Duration,
    slots: Mutex<HashMap<Key, Slot>>,
    /// Set at shutdown: nothing more is held.
    closed: std::sync::atomic::AtomicBool,
    metrics: Arc<crate::metrics::ApiMetrics>,
}

impl Prefetch {
    /// `None` when `hold` is zero (prefetching off).
    pub fn new(hold: Duration, metrics: Arc<crate::metrics::ApiMetrics>) -> Option<Arc<Self>> {
        (!hold.is_zero()).then(|| {
            Arc::new(Self {
                hold,
                slots: Mutex::new(HashMap::new()),
                closed: Default::default(),
                metrics,
            })
        })
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<Key, Slot>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id held for this template version, if any (it is no longer held).
    pub fn take(&self, template: TemplateId, version: i32) -> Option<PoolItemId> {
        let mut slots = self.slots();
        match slots.get(&(template, version)) {
            Some(Slot::Held(id, _)) => {
                let id = *id;
                slots.remove(&(template, version));
                self.metrics.prefetch("used");
                Some(id)
            }
            _ => None,
        }
    }

    /// Pops the template version's next id in the background (on the
    /// caller's runtime, through `index`) unless one is held or on its way.
    pub fn fetch_next(self: &Arc<Self>, index: &PoolIndex, template: TemplateId, version: i32) {
        if self.is_closed() {
            return;
        }
        {
            let mut slots = self.slots();
            if slots.contains_key(&(template, version)) {
                return;
            }
            slots.insert((template, version), Slot::Fetching);
        }
        let (this, index) = (self.clone(), index.clone());
        tokio::spawn(async move {
            // Called just before the request sends its claim: let the claim's
            // write go first (the Postgres connection's task, woken after
            // this one was spawned), so the pop runs while Postgres works
            // instead of in front of the request's only round trip.
            tokio::task::yield_now().await;
            let popped = index.pop_leaving(template, version, 1).await;
            let id = match popped {
                Ok(Some(id)) => id,
                Ok(None) => {
                    this.slots().remove(&(template, version));
                    return;
                }
                Err(e) => {
                    this.slots().remove(&(template, version));
                    tracing::debug!(%template, error = %Chain(&e), "prefetch pop failed");
                    return;
                }
            };
            if this.is_closed() {
                this.slots().remove(&(template, version));
                put_back(&index, template, version, id).await;
                return;
            }
            this.slots()
                .insert((template, version), Slot::Held(id, Instant::now()));
        });
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
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let held = self.remove_where(|_| true);
        self.list_again(index, db, held).await
    }

    /// Lists `held` again at the head of their lists, except the ids the
    /// ledger no longer serves (retired, of an old version, of a deleted
    /// template: listing those would only recreate a dead list). If the
    /// ledger cannot be asked, all are listed: the claim still decides.
    /// Returns how many were listed.
    async fn list_again(&self, index: &PoolIndex, db: &Db, held: Vec<(Key, PoolItemId)>) -> usize {
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
        for ((template, version), id) in held {
            if servable.contains(&id) {
                put_back(index, template, version, id).await;
                self.metrics.prefetch("returned");
                listed += 1;
            } else {
                self.metrics.prefetch("dropped");
            }
        }
        listed
    }

    fn remove_where(&self, pick: impl Fn(Instant) -> bool) -> Vec<(Key, PoolItemId)> {
        let mut slots = self.slots();
        let picked: Vec<(Key, PoolItemId)> = slots
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Held(id, since) if pick(*since) => Some((*key, *id)),
                _ => None,
            })
            .collect();
        for (key, _) in &picked {
            slots.remove(key);
        }
        picked
    }

    /// Runs [`Prefetch::sweep`] every half hold until the process ends.
    pub fn spawn_sweeper(self: &Arc<Self>, index: PoolIndex, db: Db) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((this.hold / 2).max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.sweep(&index, &db).await;
            }
        });
    }
}

async fn servable(db: &Db, ids: &[PoolItemId]) -> Result<Vec<PoolItemId>, StoreError> {
    let mut conn = db.conn().await?;
    pool_items::still_ready(&mut conn, ids).await
}

/// Lists a held id again at the head (it was popped, never claimed).
async fn put_back(index: &PoolIndex, template: TemplateId, version: i32, id: PoolItemId) {
    if let Err(e) = index.push_front(template, version, id).await {
        tracing::warn!(%template, item = %id, error = %Chain(&e),
            "could not list a prefetched pool item again; the reconciler will");
    }
}
