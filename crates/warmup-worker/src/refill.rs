//! One refill: bring a template's pool (current version) to its target.
//!
//! Reserve the gap in the ledger (under a per-template advisory lock, so
//! duplicate requests and replicas never overfill), copy the objects with no
//! transaction open, then mark the items ready and index them in Redis.
//! Failed items are discarded and their copies deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use prewarm_store::db::pool_items::{self, DiscardedItem, ReservedItem};
use prewarm_store::db::{Db, StoreError};
use prewarm_store::objects::ObjectStore;
use prewarm_store::pool_index::PoolIndex;
use shared_domain::ids::TemplateId;
use tokio::sync::Semaphore;

/// What a refill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The template no longer exists.
    TemplateGone,
    Refilled {
        version: i32,
        /// Live items before the refill.
        live_before: i64,
        /// Items made ready and indexed.
        ready: usize,
        /// Items given up (a copy failed, or the template moved on meanwhile).
        failed: usize,
        /// Ready items of older versions discarded.
        stale: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{failed} of {reserved} items failed to copy: {first}")]
    Copies {
        failed: usize,
        reserved: usize,
        first: String,
    },
}

#[derive(Clone)]
pub struct Refiller {
    pub db: Db,
    pub index: PoolIndex,
    pub objects: ObjectStore,
    /// Process-wide cap on CopyObject calls in flight.
    pub copy_limiter: Arc<Semaphore>,
    pub target: i32,
    pub lease: Duration,
    pub item_parallelism: usize,
    /// Items copied at once within one refill.
    pub items_in_flight: usize,
    pub metrics: Arc<crate::metrics::WorkerMetrics>,
}

impl Refiller {
    pub async fn refill(&self, template: TemplateId) -> Result<Outcome, RefillError> {
        let reservation = {
            let mut conn = self.db.conn().await?;
            pool_items::reserve(&mut conn, template, self.target, self.lease).await?
        };
        let Some(reservation) = reservation else {
            return Ok(Outcome::TemplateGone);
        };
        let version = reservation.version;
        if !reservation.stale.is_empty() {
            self.delete_items(&reservation.stale).await;
            // Old versions' lists can only hold ids the ledger now refuses.
            for old in (version - 10).max(1)..version {
                if let Err(e) = self.index.remove(template, old).await {
                    tracing::warn!(%template, old, error = %e, "could not drop an old pool list");
                }
            }
        }

        // Items copy side by side (the process-wide limiter bounds the total);
        // each becomes ready and servable as soon as its own copies landed.
        // At most `items_in_flight` items at a time, so a large gap does not
        // hold hundreds of half-done items (and their database connections).
        let finishing: Vec<_> = reservation
            .reserved
            .iter()
            .map(|item| self.finish_item(template, version, item))
            .collect();
        let results: Vec<Result<bool, String>> = stream::iter(finishing)
            .buffer_unordered(self.items_in_flight.max(1))
            .collect()
            .await;
        let mut ready = 0;
        let mut failed = 0;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(true) => ready += 1,
                Ok(false) => failed += 1,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(first) = first_error {
            return Err(RefillError::Copies {
                failed,
                reserved: reservation.reserved.len(),
                first,
            });
        }
        Ok(Outcome::Refilled {
            version,
            live_before: reservation.live_before,
            ready,
            failed,
            stale: reservation.stale.len(),
        })
    }

    /// Copies one reserved item, then marks it ready and indexes it.
    /// `Ok(true)`: ready; `Ok(false)`: superseded by a newer version (discarded);
    /// `Err`: a copy failed (discarded, its copies deleted).
    async fn finish_item(
        &self,
        template: TemplateId,
        version: i32,
        item: &ReservedItem,
    ) -> Result<bool, String> {
        let started = std::time::Instant::now();
        let copied = self.copy_item(item).await;
        self.metrics
            .item_copy
            .with_label_values(&[if copied.is_ok() { "ok" } else { "error" }])
            .observe(started.elapsed().as_secs_f64());
        let mut conn = self.conn_with_retry().await?;
        if let Err(e) = copied {
            self.metrics.items.with_label_values(&["failed"]).inc();
            let given_up = pool_items::discard(&mut conn, &[item.id])
                .await
                .map_err(|e| e.to_string())?;
            drop(conn);
            self.delete_items(&given_up).await;
            return Err(e);
        }
        let (ready, superseded) = pool_items::mark_ready(&mut conn, template, version, &[item.id])
            .await
            .map_err(|e| e.to_string())?;
        drop(conn);
        self.delete_items(&superseded).await;
        if ready.is_empty() {
            self.metrics.items.with_label_values(&["superseded"]).inc();
            return Ok(false);
        }
        self.metrics.items.with_label_values(&["ready"]).inc();
        if let Err(e) = self.index.push(template, version, &ready).await {
            // The item is ready in the ledger; the reconciler re-indexes it.
            tracing::warn!(%template, error = %e, "could not index a ready item");
        }
        Ok(true)
    }

    /// A database connection, retried with backoff: the copies are already
    /// paid for, so a brief database hiccup must not waste them.
    async fn conn_with_retry(&self) -> Result<prewarm_store::db::DbConn, String> {
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..5 {
            match self.db.conn().await {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::warn!(error = %e, "no database connection; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        self.db.conn().await.map_err(|e| e.to_string())
    }

    /// Copies one item's objects; on a partial failure deletes what landed.
    async fn copy_item(&self, item: &ReservedItem) -> Result<(), String> {
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
        match results.iter().find_map(|r| r.as_ref().err()) {
            None => Ok(()),
            Some(e) => Err(e.to_string()),
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
            tracing::warn!(count = keys.len(), error = %e, "could not delete discarded pool objects");
        }
    }
}
