//! The Redis index of ready pool items: one list per (template, version),
//! holding item ids. `POST /designs` pops one id (two callers never get the
//! same id); the worker appends the ids it made ready; the reconciler
//! rebuilds a list from the ledger.
//!
//! The index is only a fast path. The Postgres ledger decides whether an id
//! may still be used (its claim is conditional on `state = 'ready'`), so a
//! stale or duplicated id in Redis can never produce a second design.
//!
//! Still, the list is kept exact under concurrency, so no pop is wasted and
//! no ready item is left out: every write is one Lua script (atomic in
//! Redis) over the list and a sorted set of recently popped ids
//! (`pool_index_scripts.rs`). A pop records its id; a push or a rebuild never lists an
//! id that is listed already or was popped within the pop memory
//! (`redis.pop_memory_ms`).

use std::time::Duration;

use fred::prelude::*;

use crate::redis::{Redis, RedisError};
use shared_domain::ids::PoolItemId;
use shared_domain::pool::PoolKey;

#[path = "pool_index_scripts.rs"]
mod scripts;

/// How long a popped id is remembered (and so kept out of the list) unless
/// set otherwise (`redis.pop_memory_ms`). A request claims its id within
/// milliseconds; an id popped by a request that died before claiming is
/// listed again by the reconciler after this.
pub const POPPED_MEMORY: Duration = Duration::from_secs(60);

/// Typed access to the pool lists; handlers never see fred types.
#[derive(Clone)]
pub struct PoolIndex {
    redis: Redis,
    pop_memory: Duration,
}

impl PoolIndex {
    /// The pool lists over `redis`, with the default pop memory.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            pop_memory: POPPED_MEMORY,
        }
    }

    /// The Redis handle under it, which the other Redis adapters share.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The same index over connections of its own (see [`Redis::local_copy`]).
    pub fn local_copy(&self) -> Result<Self, RedisError> {
        Ok(Self {
            redis: self.redis.local_copy()?,
            pop_memory: self.pop_memory,
        })
    }

    /// How long popped ids are kept out of their list.
    pub fn with_pop_memory(mut self, pop_memory: Duration) -> Self {
        self.pop_memory = pop_memory;
        self
    }

    /// The list of one template version. The braces are a Redis Cluster hash
    /// tag: the list and its [`popped_key`](Self::popped_key) share a slot,
    /// so the scripts below may touch both.
    pub fn key(&self, pool: PoolKey) -> String {
        format!("{}pool:{{{pool}}}", self.redis.prefix())
    }

    /// The ids recently popped from that list (a sorted set scored by pop
    /// time in ms), so neither a late push nor a rebuild lists them again.
    pub fn popped_key(&self, pool: PoolKey) -> String {
        format!("{}:popped", self.key(pool))
    }

    /// Runs one script over the list and its popped set; ARGV[1] is always
    /// the pop memory in ms, `args` follow.
    async fn script<R: fred::types::FromValue>(
        &self,
        lua: &'static str,
        pool: PoolKey,
        args: Vec<String>,
    ) -> Result<R, RedisError> {
        let keys = vec![self.key(pool), self.popped_key(pool)];
        let mut argv = vec![self.pop_memory.as_millis().to_string()];
        argv.extend(args);
        Ok(self.redis.pool().next().eval(lua, keys, argv).await?)
    }

    /// Pops one ready item id, or `None` when the pool is empty. The id is
    /// remembered as popped for the pop memory.
    pub async fn pop(&self, pool: PoolKey) -> Result<Option<PoolItemId>, RedisError> {
        let args = vec!["0".to_string()];
        let id: Option<String> = self.script(scripts::POP, pool, args).await?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    /// A prefetch's pop: up to `most` ids from the head, but never the last
    /// `leave` ids and at most half of those beyond them (at least one), so
    /// what one process holds ahead leaves most of a short list to the
    /// requests of others. Each is remembered as popped. Head first; empty
    /// when no more than `leave` are listed.
    pub async fn pop_ahead(
        &self,
        pool: PoolKey,
        leave: u32,
        most: u32,
    ) -> Result<Vec<PoolItemId>, RedisError> {
        let args = vec![leave.to_string(), most.to_string()];
        let ids: Vec<String> = self.script(scripts::POP_AHEAD, pool, args).await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Appends newly ready ids at the tail -- each only if it is neither
    /// listed already nor recently popped (so a push racing a rebuild or a
    /// pop never lists an id twice or again). Returns how many were added.
    pub async fn push(&self, pool: PoolKey, ids: &[PoolItemId]) -> Result<i64, RedisError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args = vec!["0".to_string()];
        args.extend(ids.iter().map(ToString::to_string));
        let counts: Vec<i64> = self.script(scripts::RECONCILE, pool, args).await?;
        Ok(counts.get(1).copied().unwrap_or(0))
    }

    /// Removes these ids from the list (retired items), leaving every other
    /// id -- including ones pushed meanwhile -- in place.
    pub async fn remove_ids(&self, pool: PoolKey, ids: &[PoolItemId]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec![ids.len().to_string()];
        args.extend(ids.iter().map(ToString::to_string));
        let _: Vec<i64> = self.script(scripts::RECONCILE, pool, args).await?;
        Ok(())
    }

    /// Puts an item popped but not used back at the head, so it is served
    /// next (its claim rolled back: it is still ready and nobody holds it).
    pub async fn push_front(&self, pool: PoolKey, id: PoolItemId) -> Result<(), RedisError> {
        let _: i64 = self
            .script(scripts::REQUEUE, pool, vec![id.to_string()])
            .await?;
        Ok(())
    }

    /// Brings the list in line with the ledger without losing a concurrent
    /// push or relisting a concurrent pop, in one atomic script:
    /// `unready` -- ids seen listed *before* the ledger was read and not
    /// ready in it -- are removed (an item never becomes ready again);
    /// `missing` -- ready in the ledger -- are appended unless listed or
    /// recently popped; an id listed twice keeps one place.
    /// Returns (removed, added, duplicates dropped).
    pub async fn reconcile(
        &self,
        pool: PoolKey,
        unready: &[PoolItemId],
        missing: &[PoolItemId],
    ) -> Result<(i64, i64, i64), RedisError> {
        let mut args = vec![unready.len().to_string()];
        args.extend(unready.iter().map(ToString::to_string));
        args.extend(missing.iter().map(ToString::to_string));
        let counts: Vec<i64> = self.script(scripts::RECONCILE, pool, args).await?;
        let at = |i: usize| counts.get(i).copied().unwrap_or(0);
        Ok((at(0), at(1), at(2)))
    }

    pub async fn len(&self, pool: PoolKey) -> Result<i64, RedisError> {
        Ok(self.redis.pool().llen(self.key(pool)).await?)
    }

    /// The lengths of many lists in one pipelined round trip (the
    /// reconciler compares them with the ledger's ready counts first and
    /// reads a list only when they differ).
    pub async fn lens(&self, lists: &[PoolKey]) -> Result<Vec<i64>, RedisError> {
        if lists.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.redis.pool().next().pipeline();
        for pool in lists {
            let _: () = pipeline.llen(self.key(*pool)).await?;
        }
        let lens: Vec<i64> = pipeline.all().await?;
        Ok(lens)
    }

    /// The key marking that every list was built from the ledger since
    /// Redis last lost its data (a flush, a restart without persistence, a
    /// failover to an empty replica all drop it).
    fn built_key(&self) -> String {
        format!("{}pool:built", self.redis.prefix())
    }

    /// Whether the lists were all built since Redis last lost its data.
    pub async fn is_built(&self) -> Result<bool, RedisError> {
        let n: i64 = self.redis.pool().exists(self.built_key()).await?;
        Ok(n > 0)
    }

    /// Records that every list was built from the ledger.
    pub async fn mark_built(&self) -> Result<(), RedisError> {
        let _: () = self
            .redis
            .pool()
            .set(self.built_key(), "1", None, None, false)
            .await?;
        Ok(())
    }

    /// The ids currently listed, head first.
    pub async fn list(&self, pool: PoolKey) -> Result<Vec<PoolItemId>, RedisError> {
        let ids: Vec<String> = self.redis.pool().lrange(self.key(pool), 0, -1).await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// The ids popped within the pop memory (claimed, being claimed, or
    /// held by a prefetch), oldest pop first.
    pub async fn popped(&self, pool: PoolKey) -> Result<Vec<PoolItemId>, RedisError> {
        let ids: Vec<String> = self.script(scripts::POPPED, pool, Vec::new()).await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Drops the list of an old version (and its popped ids).
    pub async fn remove(&self, pool: PoolKey) -> Result<(), RedisError> {
        let keys = vec![self.key(pool), self.popped_key(pool)];
        let _: i64 = self.redis.pool().next().del(keys).await?;
        Ok(())
    }

    /// Deletes every key under the prefix (see [`Redis::clear_prefix`]).
    pub async fn clear_prefix(&self) -> Result<u64, RedisError> {
        self.redis.clear_prefix().await
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.redis.ping().await
    }
}
