//! A local cache for slow, idempotent lookups, on moka: per-entry TTL and a
//! size bound, one load per key however many readers miss at once,
//! stale-while-revalidate before expiry and stale-if-error after it.
//!
//! An entry of age `a` (from when its value was fetched upstream, which may be
//! before it reached this process through the shared tier) is:
//! - `a < ttl - refresh_ahead`: served (hit);
//! - `a < ttl`: served (hit), and one background refresh is started;
//! - `a < ttl + stale_if_error`: expired -- readers wait for one shared reload;
//!   if it fails, the old value is served (stale) and, for `error_backoff`,
//!   further readers get it without asking the upstream again;
//! - older: gone (moka's per-entry expiry; the sweeper removes it even if it
//!   is never read again).
//!
//! An invalidation also revokes the loads in flight for the keys it drops:
//! such a load fetched what was true before the change, so it answers the
//! readers already waiting for it but never stores its value, and the next
//! reader starts a load of its own.

use shared_domain::error::Chain;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::sync::Cache;
use moka::Expiry;

use crate::metrics::CacheMetrics;

/// A value and when it was fetched from its source (Unix ms, so the age
/// survives a trip through Redis to another replica).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stamped<V> {
    pub value: V,
    pub fetched_at_ms: i64,
}

impl<V> Stamped<V> {
    pub fn now(value: V) -> Self {
        Self {
            value,
            fetched_at_ms: now_ms(),
        }
    }

    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.fetched_at_ms).max(0) as u64)
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl: Duration,
    pub refresh_ahead: Duration,
    pub stale_if_error: Duration,
    pub error_backoff: Duration,
    pub max_entries: u64,
}

impl Policy {
    pub fn keep_for(&self) -> Duration {
        self.ttl + self.stale_if_error
    }
}

/// How a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    Stale,
}

impl Lookup {
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Stale => "stale",
        }
    }

    /// The worst of two (a page answered from several lookups).
    pub fn worst(self, other: Lookup) -> Lookup {
        use Lookup::*;
        match (self, other) {
            (Stale, _) | (_, Stale) => Stale,
            (Miss, _) | (_, Miss) => Miss,
            _ => Hit,
        }
    }
}

struct StampExpiry {
    keep_for: Duration,
}

impl<K, V> Expiry<K, Arc<Stamped<V>>> for StampExpiry {
    fn expire_after_create(&self, _: &K, v: &Arc<Stamped<V>>, _: Instant) -> Option<Duration> {
        Some(self.keep_for.saturating_sub(v.age()))
    }

    fn expire_after_update(
        &self,
        _: &K,
        v: &Arc<Stamped<V>>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.keep_for.saturating_sub(v.age()))
    }
}

type Load<V, E> = Shared<BoxFuture<'static, Result<Arc<Stamped<V>>, E>>>;

/// A load in flight, and whether an invalidation revoked it.
struct InFlight<V, E> {
    load: Load<V, E>,
    revoked: Arc<std::sync::atomic::AtomicBool>,
}

pub struct SwrCache<K, V, E> {
    entries: Cache<K, Arc<Stamped<V>>>,
    /// Keys whose last reload failed recently (readers get stale without asking).
    backoff: Cache<K, ()>,
    inflight: Arc<Mutex<HashMap<K, InFlight<V, E>>>>,
    policy: Policy,
    metrics: CacheMetrics,
}

impl<K, V, E> Clone for SwrCache<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            backoff: self.backoff.clone(),
            inflight: self.inflight.clone(),
            policy: self.policy,
            metrics: self.metrics.clone(),
        }
    }
}

impl<K, V, E> SwrCache<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    E: Clone + Send + Sync + From<tokio::task::JoinError> + 'static,
{
    pub fn new(policy: Policy, metrics: CacheMetrics) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(policy.max_entries)
                .expire_after(StampExpiry {
                    keep_for: policy.keep_for(),
                })
                .support_invalidation_closures()
                .build(),
            backoff: Cache::builder()
                .max_capacity(policy.max_entries)
                .time_to_live(policy.error_backoff.max(Duration::from_millis(1)))
                .build(),
            inflight: Arc::default(),
            policy,
            metrics,
        }
    }

    /// The value for `key`, loading it with `load` when missing or expired.
    pub async fn get<F, Fut>(&self, key: K, load: F) -> Result<(Arc<Stamped<V>>, Lookup), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Stamped<V>, E>> + Send + 'static,
    {
        let p = self.policy;
        let result = match self.entries.get(&key) {
            Some(entry) if entry.age() < p.ttl.saturating_sub(p.refresh_ahead) => {
                Ok((entry, Lookup::Hit))
            }
            Some(entry) if entry.age() < p.ttl => {
                // Refresh ahead of expiry; this reader does not wait.
                // The load runs in its own task; its handle is not needed.
                drop(self.load(key, load, Self::refresh_due));
                Ok((entry, Lookup::Hit))
            }
            Some(stale) => {
                if self.backoff.contains_key(&key) {
                    Ok((stale, Lookup::Stale))
                } else {
                    match self.load(key, load, Self::expired).await {
                        Ok(loaded) => {
                            let how = Self::loaded(&p, &loaded);
                            Ok((loaded, how))
                        }
                        Err(_) => Ok((stale, Lookup::Stale)),
                    }
                }
            }
            None => self.load(key, load, |_, _| true).await.map(|v| {
                let how = Self::loaded(&p, &v);
                (v, how)
            }),
        };
        if let Ok((_, lookup)) = &result {
            self.metrics.request(lookup.as_str());
        }
        result
    }

    /// A load may itself fall back to an expired value (another tier's
    /// stale-if-error); that is reported as stale.
    fn loaded(p: &Policy, entry: &Stamped<V>) -> Lookup {
        if entry.age() >= p.ttl {
            Lookup::Stale
        } else {
            Lookup::Miss
        }
    }

    fn refresh_due(p: &Policy, entry: &Stamped<V>) -> bool {
        entry.age() >= p.ttl.saturating_sub(p.refresh_ahead)
    }

    fn expired(p: &Policy, entry: &Stamped<V>) -> bool {
        entry.age() >= p.ttl
    }

    /// Joins the load in flight for `key`, or starts one -- unless the cached
    /// entry no longer `needs` it (another load finished meanwhile). Checked
    /// under the in-flight lock, which a load leaves only after storing its
    /// value: so concurrent readers of one key make exactly one load.
    fn load<F, Fut>(
        &self,
        key: K,
        load: F,
        needs: impl Fn(&Policy, &Stamped<V>) -> bool,
    ) -> BoxFuture<'static, Result<Arc<Stamped<V>>, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Stamped<V>, E>> + Send + 'static,
    {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = self.entries.get(&key) {
            if !needs(&self.policy, &entry) {
                return futures::future::ready(Ok(entry)).boxed();
            }
        }
        if let Some(running) = inflight.get(&key) {
            return running.load.clone().boxed();
        }
        let fut = load();
        let this = self.clone();
        let k = key.clone();
        let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mine = revoked.clone();
        // Spawned: a reader that gives up does not cancel the load others wait for.
        let task = tokio::spawn(async move {
            let result = fut.await.map(Arc::new);
            // Stored under the in-flight lock, which an invalidation holds
            // while it revokes: either it revoked this load first (nothing
            // is stored), or it comes after the store and drops the entry.
            let mut inflight = this.inflight.lock().unwrap_or_else(|e| e.into_inner());
            let current = !mine.load(std::sync::atomic::Ordering::SeqCst);
            match &result {
                Ok(v) if current => {
                    this.entries.insert(k.clone(), v.clone());
                    this.backoff.invalidate(&k);
                    this.metrics.refresh(true);
                }
                Ok(_) => this.metrics.refresh(true),
                Err(_) => {
                    if current {
                        this.backoff.insert(k.clone(), ());
                    }
                    this.metrics.refresh(false);
                }
            }
            if current {
                inflight.remove(&k);
            }
            result
        });
        let shared = async move { task.await.unwrap_or_else(|e| Err(E::from(e))) }
            .boxed()
            .shared();
        inflight.insert(
            key,
            InFlight {
                load: shared.clone(),
                revoked,
            },
        );
        shared.boxed()
    }

    /// Revokes the loads in flight for the keys `matches` selects (see the
    /// module docs); the caller holds nothing.
    fn revoke(&self, matches: &impl Fn(&K) -> bool) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        inflight.retain(|k, running| {
            let stale = matches(k);
            if stale {
                running
                    .revoked
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            !stale
        });
    }

    /// Drops the entries `matches` selects (all replicas do this on an
    /// invalidation message).
    pub fn invalidate_if(&self, matches: impl Fn(&K) -> bool + Send + Sync + 'static) {
        self.revoke(&matches);
        if let Err(e) = self.entries.invalidate_entries_if(move |k, _| matches(k)) {
            tracing::warn!(error = %Chain(&e), "cache invalidation predicate rejected; clearing all");
            self.entries.invalidate_all();
        }
    }

    pub fn invalidate_all(&self) {
        self.revoke(&|_| true);
        self.entries.invalidate_all();
        self.backoff.invalidate_all();
    }

    /// Removes expired and evicted entries now, and reports the entry count.
    pub fn sweep(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.backoff.run_pending_tasks();
        let n = self.entries.entry_count();
        self.metrics
            .entries
            .with_label_values(&[self.metrics.name])
            .set(n as i64);
        n
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::metrics::ApiMetrics;

    #[derive(Debug, Clone, PartialEq)]
    struct Failed;

    impl From<tokio::task::JoinError> for Failed {
        fn from(_: tokio::task::JoinError) -> Self {
            Failed
        }
    }

    fn cache(ttl_ms: u64, ahead_ms: u64, stale_ms: u64, max: u64) -> SwrCache<u32, u32, Failed> {
        let policy = Policy {
            ttl: Duration::from_millis(ttl_ms),
            refresh_ahead: Duration::from_millis(ahead_ms),
            stale_if_error: Duration::from_millis(stale_ms),
            error_backoff: Duration::from_millis(500),
            max_entries: max,
        };
        SwrCache::new(policy, ApiMetrics::new().unwrap().cache("test"))
    }

    /// A loader that counts its calls and answers `value` (or fails) after `delay`.
    fn loader(
        calls: &Arc<AtomicU32>,
        value: Result<u32, Failed>,
        delay_ms: u64,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Stamped<u32>, Failed>> {
        let calls = calls.clone();
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                value.map(Stamped::now)
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_miss_loads_once_then_hits() {
        let c = cache(10_000, 0, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        let (v, how) = c.get(1, loader(&calls, Ok(7), 0)).await.unwrap();
        assert_eq!((v.value, how), (7, Lookup::Miss));
        let (v, how) = c.get(1, loader(&calls, Ok(8), 0)).await.unwrap();
        assert_eq!((v.value, how), (7, Lookup::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_on_one_key_make_one_load() {
        let c = cache(10_000, 0, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        let readers: Vec<_> = (0..200)
            .map(|_| {
                let c = c.clone();
                let load = loader(&calls, Ok(3), 50);
                tokio::spawn(async move { c.get(9, load).await })
            })
            .collect();
        for r in readers {
            assert_eq!(r.await.unwrap().unwrap().0.value, 3);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_miss_is_an_error_and_is_not_cached() {
        let c = cache(10_000, 0, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        assert_eq!(
            c.get(1, loader(&calls, Err(Failed), 0)).await.unwrap_err(),
            Failed
        );
        assert_eq!(c.entry_count(), 0);
    }

    #[tokio::test]
    async fn entries_expire_and_the_sweep_removes_them_unread() {
        let c = cache(100, 0, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        for k in 0..5 {
            c.get(k, loader(&calls, Ok(k), 0)).await.unwrap();
        }
        assert_eq!(c.sweep(), 5);
        // moka's timer wheel evicts with about 1 s granularity.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert_eq!(c.sweep(), 0, "expired entries never read again are gone");
        // Read after expiry: a miss, loaded again.
        let (_, how) = c.get(1, loader(&calls, Ok(1), 0)).await.unwrap();
        assert_eq!(how, Lookup::Miss);
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn the_size_bound_evicts() {
        let c = cache(10_000, 0, 0, 10);
        let calls = Arc::new(AtomicU32::new(0));
        for k in 0..100 {
            c.get(k, loader(&calls, Ok(k), 0)).await.unwrap();
        }
        let held = c.sweep();
        assert!(held <= 10, "held {held} entries over a bound of 10");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_near_expiry_refresh_in_the_background_without_waiting() {
        let c = cache(1_000, 700, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        c.get(1, loader(&calls, Ok(1), 0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        // Inside the refresh-ahead window: the old value at once, a refresh behind it.
        let started = Instant::now();
        let (v, how) = c.get(1, loader(&calls, Ok(2), 100)).await.unwrap();
        assert_eq!((v.value, how), (1, Lookup::Hit));
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "the reader waited"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (v, how) = c.get(1, loader(&calls, Ok(3), 0)).await.unwrap();
        assert_eq!((v.value, how), (2, Lookup::Hit));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn after_expiry_a_failing_upstream_gets_the_stale_value_within_the_window() {
        let c = cache(50, 0, 300, 100);
        let calls = Arc::new(AtomicU32::new(0));
        c.get(1, loader(&calls, Ok(1), 0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (v, how) = c.get(1, loader(&calls, Err(Failed), 0)).await.unwrap();
        assert_eq!((v.value, how), (1, Lookup::Stale));
        // Within the error backoff, readers get it without asking again.
        let (_, how) = c.get(1, loader(&calls, Err(Failed), 0)).await.unwrap();
        assert_eq!(how, Lookup::Stale);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Past TTL + window: gone, and the error shows.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c.get(1, loader(&calls, Err(Failed), 0)).await.is_err());
    }

    #[tokio::test]
    async fn invalidation_drops_matching_keys_only() {
        let c = cache(10_000, 0, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        for k in 0..4 {
            c.get(k, loader(&calls, Ok(k), 0)).await.unwrap();
        }
        c.invalidate_if(|k| k % 2 == 0);
        c.sweep();
        let (_, how) = c.get(0, loader(&calls, Ok(0), 0)).await.unwrap();
        assert_eq!(how, Lookup::Miss);
        let (_, how) = c.get(1, loader(&calls, Ok(1), 0)).await.unwrap();
        assert_eq!(how, Lookup::Hit);
    }

    /// A load that began before an invalidation answers its waiting reader
    /// but stores nothing: the next reader loads again and gets the new value.
    #[tokio::test]
    async fn a_load_that_began_before_an_invalidation_never_stores_its_value() {
        let c = cache(10_000, 0, 0, 100);
        let calls = Arc::new(AtomicU32::new(0));
        let slow = {
            let c = c.clone();
            let calls = calls.clone();
            tokio::spawn(async move { c.get(1, loader(&calls, Ok(10), 100)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The source changes and says so while the old answer is in flight.
        c.invalidate_if(|k| *k == 1);
        let (old, _) = slow.await.unwrap().unwrap();
        assert_eq!(old.value, 10, "the waiting reader gets what it asked for");
        let (fresh, how) = c.get(1, loader(&calls, Ok(11), 0)).await.unwrap();
        assert_eq!(
            (fresh.value, how),
            (11, Lookup::Miss),
            "the stale load was stored"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let (again, how) = c.get(1, loader(&calls, Ok(12), 0)).await.unwrap();
        assert_eq!((again.value, how), (11, Lookup::Hit));
    }
}
