//! The Redis index of ready pool items: one list per (template, version),
//! holding item ids. `POST /designs` pops with one `LPOP` (atomic: two callers
//! never get the same id); the worker appends with `RPUSH`.
//!
//! The index is only a fast path. The Postgres ledger decides whether an id
//! may still be used (its claim is conditional on `state = 'ready'`), so a
//! stale or duplicated id in Redis can never produce a second design.

use std::time::Duration;

use fred::prelude::*;
use shared_domain::ids::{PoolItemId, TemplateId};

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct IndexError(String);

impl From<fred::error::Error> for IndexError {
    fn from(e: fred::error::Error) -> Self {
        IndexError(e.to_string())
    }
}

/// Typed access to the pool lists; handlers never see fred types.
#[derive(Clone)]
pub struct PoolIndex {
    pool: Pool,
    prefix: String,
}

impl PoolIndex {
    /// Connects a small pool of multiplexed connections. Every command gets
    /// `command_timeout`, so a stalled Redis degrades requests instead of hanging them.
    pub async fn connect(
        url: &str,
        prefix: &str,
        size: usize,
        command_timeout: Duration,
    ) -> Result<Self, IndexError> {
        let config = Config::from_url(url)?;
        let pool = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            .with_connection_config(|c| {
                c.connection_timeout = command_timeout.max(Duration::from_secs(1));
                c.max_command_attempts = 2;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(size.max(1))?;
        pool.init().await?;
        Ok(Self {
            pool,
            prefix: prefix.to_string(),
        })
    }

    /// The connection pool and key prefix, for the other Redis adapters.
    pub(crate) fn pool(&self) -> (&Pool, &str) {
        (&self.pool, &self.prefix)
    }

    pub fn key(&self, template: TemplateId, version: i32) -> String {
        format!("{}pool:{template}:v{version}", self.prefix)
    }

    /// Pops one ready item id, or `None` when the pool is empty.
    pub async fn pop(
        &self,
        template: TemplateId,
        version: i32,
    ) -> Result<Option<PoolItemId>, IndexError> {
        let id: Option<String> = self.pool.lpop(self.key(template, version), None).await?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    /// Appends ready item ids at the tail.
    pub async fn push(
        &self,
        template: TemplateId,
        version: i32,
        ids: &[PoolItemId],
    ) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let _: i64 = self.pool.rpush(self.key(template, version), values).await?;
        Ok(())
    }

    /// Puts an item popped but not used back at the head, so it is served next.
    /// Removes these ids from the list (retired items), leaving every other
    /// id -- including ones pushed meanwhile -- in place.
    pub async fn remove_ids(
        &self,
        template: TemplateId,
        version: i32,
        ids: &[PoolItemId],
    ) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.key(template, version);
        let tx = self.pool.next().multi();
        for id in ids {
            let _: () = tx.lrem(&key, 0, id.to_string()).await?;
        }
        let _: () = tx.exec(true).await?;
        Ok(())
    }

    pub async fn push_front(
        &self,
        template: TemplateId,
        version: i32,
        id: PoolItemId,
    ) -> Result<(), IndexError> {
        let _: i64 = self
            .pool
            .lpush(self.key(template, version), id.to_string())
            .await?;
        Ok(())
    }

    pub async fn len(&self, template: TemplateId, version: i32) -> Result<i64, IndexError> {
        Ok(self.pool.llen(self.key(template, version)).await?)
    }

    /// The ids currently listed, head first.
    pub async fn list(
        &self,
        template: TemplateId,
        version: i32,
    ) -> Result<Vec<PoolItemId>, IndexError> {
        let ids: Vec<String> = self.pool.lrange(self.key(template, version), 0, -1).await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Drops the list of an old version.
    pub async fn remove(&self, template: TemplateId, version: i32) -> Result<(), IndexError> {
        let _: i64 = self.pool.del(self.key(template, version)).await?;
        Ok(())
    }

    /// Makes the list hold exactly `ids`, atomically (`MULTI`/`DEL`/`RPUSH`/`EXEC`):
    /// how the reconciler rebuilds the index from the ledger.
    pub async fn replace(
        &self,
        template: TemplateId,
        version: i32,
        ids: &[PoolItemId],
    ) -> Result<(), IndexError> {
        let key = self.key(template, version);
        let trx = self.pool.next().multi();
        let _: () = trx.del(&key).await?;
        if !ids.is_empty() {
            let values: Vec<String> = ids.iter().map(ToString::to_string).collect();
            let _: () = trx.rpush(&key, values).await?;
        }
        let _: fred::types::Value = trx.exec(true).await?;
        Ok(())
    }

    /// Deletes every key under this index's prefix (tests simulate a Redis
    /// flush with it without touching other tests' keys).
    pub async fn clear_prefix(&self) -> Result<u64, IndexError> {
        use futures::TryStreamExt;
        let keys: Vec<fred::types::Key> = self
            .pool
            .next()
            .scan_buffered(format!("{}*", self.prefix), Some(500), None)
            .try_collect()
            .await?;
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            let n: u64 = self.pool.del(chunk.to_vec()).await?;
            deleted += n;
        }
        Ok(deleted)
    }

    pub async fn ping(&self) -> Result<(), IndexError> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }
}
