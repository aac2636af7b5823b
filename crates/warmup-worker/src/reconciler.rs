//! The reconciler and the garbage collector: Kafka messages are hints, these
//! make the pool correct without them.
//!
//! Every `worker.reconcile_interval_ms` the reconciler (one replica at a time,
//! under a lease in `singleton_leases`):
//! 1. discards `copying` items whose lease expired (a worker died mid-refill)
//!    and deletes their objects;
//! 2. tops every template's pool up to target (the same idempotent refill the
//!    consumer runs), which also retires items of old versions;
//! 3. rebuilds each template's Redis list from the ledger when they differ
//!    (after a Redis flush or restart, or an id popped by a process that died
//!    before claiming it).
//!
//! Every `worker.gc_interval_secs` the garbage collector deletes objects under
//! `pool/`, `designs/` and `templates/` that no design, no live pool item,
//! no live template and no pending copy or upload references and that are
//! older than `worker.gc_grace_secs`
//! (which may be 0: correctness does not rest on it, see
//! `prewarm_store::db::object_refs`).

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use prewarm_store::db::{object_refs, pool_items, templates, StoreError};
use prewarm_store::pause;
use shared_domain::ids::TemplateId;
use shared_domain::object_keys::{DESIGNS_PREFIX, POOL_PREFIX, TEMPLATES_PREFIX};

use crate::refill::Refiller;
use crate::singleton::Singleton;

/// Keys checked against the ledger per query.
const GC_PAGE: usize = 1_000;

#[derive(Clone)]
pub struct Reconciler {
    pub refiller: Refiller,
    /// One replica at a time runs a pass (`singleton_leases`).
    pub singleton: Singleton,
    pub interval: Duration,
    pub gc_interval: Duration,
    pub gc_grace: Duration,
    pub parallelism: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Another replica held the lease; nothing done.
    pub skipped: bool,
    pub templates: usize,
    pub rescued: usize,
    pub reindexed: usize,
    pub refill_errors: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub skipped: bool,
    pub scanned: usize,
    pub deleted: usize,
}

impl Reconciler {
    /// One reconciliation pass (skipped if another replica is running one).
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        match self.singleton.run("reconciler", self.tick_locked()).await? {
            Some(result) => result,
            None => Ok(TickReport {
                skipped: true,
                ..TickReport::default()
            }),
        }
    }

    async fn tick_locked(&self) -> Result<TickReport, StoreError> {
        let (rescued, all) = {
            let mut conn = self.refiller.db.conn().await?;
            let rescued = pool_items::rescue_expired(&mut conn).await?;
            let all = templates::all_current(&mut conn).await?;
            (rescued, all)
        };
        self.refiller.delete_items(&rescued).await;
        let passes: Vec<_> = all
            .iter()
            .map(|(t, v)| self.reconcile_template(*t, *v))
            .collect();
        let results: Vec<(bool, bool)> = stream::iter(passes)
            .buffer_unordered(self.parallelism.max(1))
            .collect()
            .await;
        Ok(TickReport {
            skipped: false,
            templates: all.len(),
            rescued: rescued.len(),
            reindexed: results.iter().filter(|(re, _)| *re).count(),
            refill_errors: results.iter().filter(|(_, err)| *err).count(),
        })
    }

    /// Tops one template up and re-indexes it; returns (reindexed, refill failed).
    async fn reconcile_template(&self, template: TemplateId, version: i32) -> (bool, bool) {
        let refill_failed = match self.refiller.refill(template).await {
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(%template, error = %e, "reconciler refill failed");
                true
            }
        };
        match self.reindex(template, version).await {
            Ok(changed) => (changed, refill_failed),
            Err(e) => {
                tracing::warn!(%template, error = %e, "reconciler could not re-index");
                (false, refill_failed)
            }
        }
    }

    /// Makes the Redis list hold exactly the ledger's ready items, without
    /// undoing a concurrent push or pop: the list is read *before* the
    /// ledger, so an id listed then and not ready now was used or discarded
    /// (items never become ready again) and may go; ready ids not listed are
    /// appended by a script that skips ids listed or popped meanwhile.
    async fn reindex(&self, template: TemplateId, version: i32) -> anyhow::Result<bool> {
        let index = &self.refiller.index;
        if version > 1 {
            // A push or put-back racing an edit can recreate the previous
            // version's list after the edit's refill dropped it; no one
            // pops from it any more.
            index.remove(template, version - 1).await?;
        }
        let listed = index.list(template, version).await?;
        let ledger = {
            let mut conn = self.refiller.db.conn().await?;
            pool_items::ready_ids(&mut conn, template, version).await?
        };
        self.refiller.pause.reach(pause::at::REINDEX_READ).await;
        let listed_set: HashSet<_> = listed.iter().copied().collect();
        let ledger_set: HashSet<_> = ledger.iter().copied().collect();
        if listed_set == ledger_set && listed.len() == ledger.len() {
            return Ok(false);
        }
        let unready: Vec<_> = listed_set.difference(&ledger_set).copied().collect();
        let missing: Vec<_> = ledger
            .iter()
            .filter(|id| !listed_set.contains(id))
            .copied()
            .collect();
        let (removed, added, duplicates) = index
            .reconcile(template, version, &unready, &missing)
            .await?;
        if removed + added + duplicates > 0 {
            tracing::info!(%template, removed, added, duplicates, "pool index reconciled with the ledger");
        }
        Ok(removed + added + duplicates > 0)
    }

    /// Deletes unreferenced objects older than the grace period.
    pub async fn gc(&self) -> anyhow::Result<GcReport> {
        match self.singleton.run("gc", self.gc_locked()).await? {
            Some(result) => result,
            None => Ok(GcReport {
                skipped: true,
                ..GcReport::default()
            }),
        }
    }

    async fn gc_locked(&self) -> anyhow::Result<GcReport> {
        let cutoff = chrono::Utc::now().timestamp() - self.gc_grace.as_secs() as i64;
        let mut report = GcReport::default();
        {
            // Cold designs that died or gave up: their copies become garbage.
            let mut conn = self.refiller.db.conn().await?;
            object_refs::purge_expired(&mut conn).await?;
        }
        for prefix in [POOL_PREFIX, DESIGNS_PREFIX, TEMPLATES_PREFIX] {
            // List first, then ask the ledger: every object is recorded
            // (reserved item, announced copy) before it is created, so an
            // object in the listing that no design, live item or pending copy
            // holds in one consistent read is garbage for good
            // (`object_refs::referenced`).
            let objects = self.refiller.objects.list_modified(prefix).await?;
            report.scanned += objects.len();
            let candidates: Vec<String> = objects
                .into_iter()
                .filter(|(_, modified)| *modified <= cutoff)
                .map(|(key, _)| key)
                .collect();
            self.refiller.pause.reach(pause::at::GC_DECIDING).await;
            for page in candidates.chunks(GC_PAGE) {
                let referenced = {
                    let mut conn = self.refiller.db.conn().await?;
                    object_refs::referenced(&mut conn, page).await?
                };
                let garbage: Vec<String> = page
                    .iter()
                    .filter(|key| !referenced.contains(*key))
                    .cloned()
                    .collect();
                if garbage.is_empty() {
                    continue;
                }
                tracing::info!(
                    prefix,
                    count = garbage.len(),
                    "deleting unreferenced objects"
                );
                self.refiller.objects.delete_many(&garbage).await?;
                report.deleted += garbage.len();
                self.refiller
                    .metrics
                    .gc_deleted
                    .inc_by(garbage.len() as u64);
            }
        }
        Ok(report)
    }

    /// Ticks every `interval` and collects every `gc_interval` until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gc = tokio::time::interval(self.gc_interval);
        gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => match self.tick().await {
                    Ok(report) if report.rescued + report.reindexed + report.refill_errors > 0 => {
                        tracing::info!(?report, "reconciled");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reconciler tick failed"),
                },
                _ = gc.tick() => match self.gc().await {
                    Ok(report) if report.deleted > 0 => tracing::info!(?report, "garbage collected"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                },
            }
        }
    }
}
