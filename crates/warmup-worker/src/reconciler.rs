//! The reconciler and the garbage collector: Kafka messages are hints, these
//! make the pool correct without them. Each pass costs what changed since
//! the previous one, in bounded batches that resume where the last stopped.
//!
//! Every `worker.reconcile_interval_ms` the reconciler (one replica at a time,
//! under a lease in `singleton_leases`):
//! 1. discards `copying` items whose lease expired (a worker died mid-refill)
//!    and deletes their objects (an index of copying items' leases);
//! 2. picks the templates to check: those whose pool changed since its
//!    watermark -- an item used, discarded or rescued, the template created,
//!    edited or deleted (two index range scans, at most
//!    `worker.reconcile_batch` templates, the rest next pass) -- plus the
//!    next `worker.reconcile_sweep` templates of a rolling sweep in id order
//!    (which catches what no change recorded, such as an id popped by a
//!    process that died before claiming it), or every template in pages
//!    when Redis lost its data (its `built` marker is gone);
//! 3. reads their pool state in one statement and their Redis list lengths
//!    in one pipeline, and only then refills a template whose live count is
//!    below its fill level or above its hold level (or that holds items of
//!    old versions), and rebuilds a
//!    list whose length differs from the ledger's ready count.
//!
//! Watermark and sweep position are stored in `background_cursors`, so a
//! restart or another replica resumes them.
//!
//! Every `worker.gc_interval_secs` the garbage collector deletes objects under
//! `pool/`, `designs/` and `templates/` that no design, no live pool item,
//! no live template and no pending copy or upload references and that are
//! older than `worker.gc_grace_secs`
//! (which may be 0: correctness does not rest on it, see
//! `prewarm_store::db::object_refs`). It lists one page (1,000 keys) at a
//! time, checks the page against the ledger and deletes its garbage before
//! the next, so its memory is one page whatever the bucket holds; after
//! `worker.gc_pages_per_pass` pages it stops and the next pass resumes from
//! the stored key.

use shared_domain::error::Chain;
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use prewarm_store::db::pool_checks::{self, PoolState, Watermark};
use prewarm_store::db::{cursors, object_refs, pool_items, StoreError};
use prewarm_store::pause;
use shared_domain::ids::TemplateId;
use shared_domain::object_keys::{DESIGNS_PREFIX, POOL_PREFIX, TEMPLATES_PREFIX};
use shared_domain::pool::{PoolKey, PoolLevels};
use uuid::Uuid;

use crate::refill::Refiller;
use crate::singleton::Singleton;

/// Keys per S3 listing page (the most S3 returns), checked against the
/// ledger in one query.
pub const GC_PAGE: i32 = 1_000;
/// The prefixes the GC walks, in order.
const GC_PREFIXES: [&str; 3] = [POOL_PREFIX, DESIGNS_PREFIX, TEMPLATES_PREFIX];
/// Cursor names in `background_cursors`.
const CHANGES_CURSOR: &str = "reconciler:changes";
const SWEEP_CURSOR: &str = "reconciler:sweep";
const GC_CURSOR: &str = "gc";
/// Changes are read up to the clock less this, so a transaction committing
/// this much after its timestamp is still seen.
pub const COMMIT_LAG: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Reconciler {
    pub refiller: Refiller,
    /// One replica at a time runs a pass (`singleton_leases`).
    pub singleton: Singleton,
    pub interval: Duration,
    /// `None`: the garbage collector is off (`worker.gc_interval_secs` = 0).
    pub gc_interval: Option<Duration>,
    pub gc_grace: Duration,
    /// Incomplete multipart uploads older than this are aborted.
    pub gc_multipart_age: Duration,
    pub parallelism: usize,
    /// Most changed templates checked per pass.
    pub batch: usize,
    /// Templates the rolling sweep checks per pass.
    pub sweep: usize,
    /// Most listing pages per GC pass.
    pub gc_pages: usize,
    /// Keys per listing page ([`GC_PAGE`], the most S3 returns; tests page
    /// smaller).
    pub gc_page: i32,
    /// How far behind the clock changes are read: a transaction committing
    /// up to this long after its timestamp is still seen ([`COMMIT_LAG`]).
    pub commit_lag: Duration,
    /// `pool.idle_secs`: templates crossing it are checked (their target
    /// drops to the minimum).
    pub idle: Option<Duration>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Another replica held the lease; nothing done.
    pub skipped: bool,
    /// Templates checked (changed + swept).
    pub templates: usize,
    /// Of which found through the change watermark.
    pub changed: usize,
    pub rescued: usize,
    /// Templates refilled (their live count was off target).
    pub refilled: usize,
    pub reindexed: usize,
    pub refill_errors: usize,
    /// Redis had lost its data: every list was checked.
    pub rebuilt: bool,
    /// Database statements and Redis round trips spent finding and checking
    /// the templates (refills and rebuilds not included).
    pub queries: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub skipped: bool,
    pub scanned: usize,
    pub deleted: usize,
    /// Unreferenced objects the store refused to delete (left for the next cycle).
    pub undeletable: usize,
    pub pages: usize,
    /// The pass reached the end of the last prefix (the next starts over).
    pub finished: bool,
    /// Incomplete multipart uploads aborted.
    pub aborted_uploads: usize,
    /// Time spent listing S3, and checking pages against the ledger and
    /// deleting their garbage (the collector's own work).
    pub list_time: Duration,
    pub check_time: Duration,
}

/// Whether an incomplete upload begun at `initiated` is old enough to abort
/// at `now` (both epoch seconds): begun at least `age` ago. A younger one
/// may be an upload still streaming.
fn abortable(initiated: i64, now: i64, age: Duration) -> bool {
    initiated <= now.saturating_sub(age.as_secs() as i64)
}

/// What to do about one checked template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Work {
    refill: bool,
    reindex: bool,
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
        let mut report = TickReport::default();
        let index = &self.refiller.index;
        // A Redis error here is a Redis that cannot be rebuilt now: the
        // checks below fail on it too and the next pass retries.
        let built = index.is_built().await.unwrap_or(true);
        report.queries += 1;
        let mut conn = self.refiller.db.conn().await?;
        let rescued = self
            .refiller
            .pause
            .scope(pool_items::rescue_expired(&mut conn))
            .await?;
        report.rescued = rescued.len();
        report.queries += 1;

        let until = Utc::now()
            - chrono::TimeDelta::from_std(self.commit_lag).unwrap_or(chrono::TimeDelta::zero());
        // No watermark yet (a first deployment, or an operator deleted it):
        // start from now. What changed before is covered by the rebuild
        // (this version's first pass finds no `built` marker) and the sweep.
        let from = parse_watermark(cursors::get(&mut conn, CHANGES_CURSOR).await?)
            .unwrap_or((until, Uuid::from_u128(u128::MAX)));
        let idle = self.idle.and_then(|d| chrono::TimeDelta::from_std(d).ok());
        let changed =
            pool_checks::changed_templates(&mut conn, from, until, idle, self.batch as i64).await?;
        report.queries += 2;
        let watermark = match changed.last() {
            Some((_, last)) if changed.len() >= self.batch => *last,
            // Caught up: everything up to the horizon was seen.
            _ => (until, Uuid::from_u128(u128::MAX)),
        };
        report.changed = changed.len();
        let mut candidates: Vec<TemplateId> = changed.iter().map(|(t, _)| *t).collect();
        let edited: HashSet<TemplateId> = candidates.iter().copied().collect();

        let sweep_from = cursors::get(&mut conn, SWEEP_CURSOR)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(Uuid::nil());
        report.queries += 1;
        drop(conn);
        if built {
            let swept = self.sweep_page(sweep_from, &mut report).await?;
            let next = match swept.last() {
                Some(last) if swept.len() >= self.sweep => last.0,
                _ => Uuid::nil(),
            };
            candidates.extend(swept);
            self.check(&candidates, &edited, &mut report).await?;
            let mut conn = self.refiller.db.conn().await?;
            cursors::set(&mut conn, SWEEP_CURSOR, &next.to_string()).await?;
            report.queries += 1;
        } else {
            // Redis lost its data: every list is rebuilt, page by page.
            report.rebuilt = true;
            self.check(&candidates, &edited, &mut report).await?;
            let mut after = Uuid::nil();
            loop {
                let page = self.sweep_page(after, &mut report).await?;
                let Some(last) = page.last() else { break };
                after = last.0;
                let full = page.len() >= self.sweep;
                self.check(&page, &HashSet::new(), &mut report).await?;
                if !full {
                    break;
                }
            }
            if let Err(e) = index.mark_built().await {
                tracing::warn!(error = %Chain(&e), "could not mark the pool lists rebuilt");
            }
        }
        self.refiller.delete_items(&rescued).await;
        let mut conn = self.refiller.db.conn().await?;
        cursors::set(&mut conn, CHANGES_CURSOR, &format_watermark(watermark)).await?;
        report.queries += 1;
        Ok(report)
    }

    async fn sweep_page(
        &self,
        after: Uuid,
        report: &mut TickReport,
    ) -> Result<Vec<TemplateId>, StoreError> {
        let mut conn = self.refiller.db.conn().await?;
        report.queries += 1;
        pool_checks::templates_after(&mut conn, after, self.sweep as i64).await
    }

    /// Reads the pool state of `templates` (one statement per 1,000) and
    /// their list lengths (one pipeline), then refills and rebuilds only
    /// what is off. Templates in `edited` also lose their previous
    /// version's list.
    async fn check(
        &self,
        templates: &[TemplateId],
        edited: &HashSet<TemplateId>,
        report: &mut TickReport,
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let unique: Vec<TemplateId> = templates
            .iter()
            .copied()
            .filter(|t| seen.insert(*t))
            .collect();
        for chunk in unique.chunks(1_000) {
            let states = {
                let mut conn = self.refiller.db.conn().await?;
                pool_checks::pool_states(&mut conn, chunk).await?
            };
            report.queries += 1;
            let lists: Vec<PoolKey> = states.iter().map(PoolState::pool).collect();
            // Without the lengths every list is compared in full.
            let lens = match self.refiller.index.lens(&lists).await {
                Ok(lens) => lens,
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "could not read the pool list lengths");
                    vec![-1; lists.len()]
                }
            };
            report.queries += 1;
            report.templates += states.len();
            let passes: Vec<_> = states
                .iter()
                .zip(lens)
                .filter_map(|(state, len)| {
                    let work = self.work(state, len);
                    let pool = state.pool();
                    (work.refill || work.reindex || edited.contains(&pool.template))
                        .then(|| self.reconcile_template(pool, work))
                })
                .collect();
            let results: Vec<(Work, bool, bool)> = stream::iter(passes)
                .buffer_unordered(self.parallelism.max(1))
                .collect()
                .await;
            for (work, reindexed, failed) in results {
                report.refilled += usize::from(work.refill);
                report.reindexed += usize::from(reindexed);
                report.refill_errors += usize::from(failed);
            }
        }
        Ok(())
    }

    /// Whether a template's pool needs a refill (live count below its fill
    /// level or above its hold level, old versions' items to discard, a
    /// deleted template's items) or its list a rebuild (length off the
    /// ready count).
    fn work(&self, state: &PoolState, listed: i64) -> Work {
        let levels = if state.deleted {
            PoolLevels::at(0)
        } else {
            self.refiller.rule.target(state.planned_levels(), state.age)
        };
        let off = state.live < i64::from(levels.fill) || state.live > i64::from(levels.hold);
        Work {
            refill: off || state.stale > 0,
            reindex: !state.deleted && listed != state.ready,
        }
    }

    /// Refills and re-indexes one template as `work` says; returns (work,
    /// reindexed, refill failed).
    async fn reconcile_template(&self, pool: PoolKey, work: Work) -> (Work, bool, bool) {
        let template = pool.template;
        let mut refill_failed = false;
        if work.refill {
            if let Err(e) = self.refiller.refill(template).await {
                tracing::warn!(%template, error = %Chain(&e), "reconciler refill failed");
                refill_failed = true;
            }
        }
        // A refill changes the ready count only through items it indexes
        // itself; the list is rebuilt when it was off before.
        match self.reindex(pool, work.reindex).await {
            Ok(changed) => (work, changed, refill_failed),
            Err(e) => {
                tracing::warn!(%template, error = format!("{e:#}"), "reconciler could not re-index");
                (work, false, refill_failed)
            }
        }
    }

    /// Makes the Redis list hold exactly the ledger's ready items, without
    /// undoing a concurrent push or pop: the list is read *before* the
    /// ledger, so an id listed then and not ready now was used or discarded
    /// (items never become ready again) and may go; ready ids not listed are
    /// appended by a script that skips ids listed or popped meanwhile.
    /// Without `compare`, only the previous version's list is dropped.
    async fn reindex(&self, pool: PoolKey, compare: bool) -> anyhow::Result<bool> {
        let index = &self.refiller.index;
        if let Some(previous) = pool.version.previous() {
            // A push or put-back racing an edit can recreate the previous
            // version's list after the edit's refill dropped it; no one
            // pops from it any more.
            index.remove(PoolKey::new(pool.template, previous)).await?;
        }
        if !compare {
            return Ok(false);
        }
        let listed = index.list(pool).await?;
        let ledger = {
            let mut conn = self.refiller.db.conn().await?;
            pool_items::ready_ids(&mut conn, pool).await?
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
        let (removed, added, duplicates) = index.reconcile(pool, &unready, &missing).await?;
        if removed + added + duplicates > 0 {
            tracing::info!(template = %pool.template, removed, added, duplicates, "pool index reconciled with the ledger");
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
        let stored = {
            // Cold designs that died or gave up: their copies become garbage.
            let mut conn = self.refiller.db.conn().await?;
            object_refs::purge_expired(&mut conn).await?;
            cursors::get(&mut conn, GC_CURSOR).await?
        };
        // Where the last pass stopped: a prefix and the last key checked.
        let (mut prefix_at, mut after) = parse_gc_cursor(stored.as_deref());
        while report.pages < self.gc_pages.max(1) {
            let prefix = GC_PREFIXES[prefix_at];
            // List first, then ask the ledger: every object is recorded
            // (reserved item, announced copy) before it is created, so an
            // object in the listing that no design, live item or pending copy
            // holds in one consistent read is garbage for good
            // (`object_refs::referenced`).
            let listing = std::time::Instant::now();
            let page = self
                .refiller
                .objects
                .list_page(prefix, after.as_deref(), self.gc_page)
                .await?;
            report.list_time += listing.elapsed();
            report.pages += 1;
            report.scanned += page.objects.len();
            let last = page.objects.last().map(|(k, _)| k.clone());
            let more = page.truncated && last.is_some();
            let candidates: Vec<String> = page
                .objects
                .into_iter()
                .filter(|(_, modified)| *modified <= cutoff)
                .map(|(key, _)| key)
                .collect();
            self.refiller.pause.reach(pause::at::GC_DECIDING).await;
            let checking = std::time::Instant::now();
            self.collect_page(prefix, &candidates, &mut report).await?;
            report.check_time += checking.elapsed();
            if more {
                after = last;
            } else if prefix_at + 1 < GC_PREFIXES.len() {
                (prefix_at, after) = (prefix_at + 1, None);
            } else {
                report.finished = true;
                (prefix_at, after) = (0, None);
                break;
            }
        }
        let mut conn = self.refiller.db.conn().await?;
        let position = format!("{prefix_at}\t{}", after.unwrap_or_default());
        cursors::set(&mut conn, GC_CURSOR, &position).await?;
        drop(conn);
        // The page's objects are collected and its position stored: a store
        // that cannot list multipart uploads (some S3-compatible servers
        // answer 501) must not fail the pass, nor stop the next ones.
        report.aborted_uploads = match self.abort_incomplete_uploads().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "could not list incomplete multipart uploads; none aborted this pass"
                );
                0
            }
        };
        Ok(report)
    }

    /// Aborts the incomplete multipart uploads older than
    /// `worker.gc_multipart_age_secs` among one listing page of them (a
    /// process killed mid-upload leaves its parts, billed and invisible to
    /// object listings, until they are aborted). Younger ones may be
    /// uploads in flight and are left; a later pass sees the rest.
    async fn abort_incomplete_uploads(&self) -> anyhow::Result<usize> {
        let now = chrono::Utc::now().timestamp();
        let objects = &self.refiller.objects;
        let mut aborted = 0;
        for upload in objects.incomplete_uploads(GC_PAGE).await? {
            if !abortable(upload.initiated, now, self.gc_multipart_age) {
                continue;
            }
            match objects.abort_incomplete(&upload).await {
                Ok(()) => aborted += 1,
                Err(e) => {
                    tracing::warn!(key = %upload.key, error = %Chain(&e), "could not abort an incomplete upload")
                }
            }
        }
        if aborted > 0 {
            tracing::info!(aborted, "aborted incomplete multipart uploads");
        }
        Ok(aborted)
    }

    /// Deletes the keys of one page that the ledger does not reference.
    async fn collect_page(
        &self,
        prefix: &str,
        candidates: &[String],
        report: &mut GcReport,
    ) -> anyhow::Result<()> {
        if candidates.is_empty() {
            return Ok(());
        }
        let referenced = {
            let mut conn = self.refiller.db.conn().await?;
            object_refs::referenced(&mut conn, candidates).await?
        };
        let garbage: Vec<String> = candidates
            .iter()
            .filter(|key| !referenced.contains(*key))
            .cloned()
            .collect();
        if garbage.is_empty() {
            return Ok(());
        }
        tracing::info!(
            prefix,
            count = garbage.len(),
            "deleting unreferenced objects"
        );
        // A key that cannot be deleted (a bucket policy protecting it, a
        // name its server cannot take) is left for the next cycle and
        // counted: it must not stop the pass at its page, pass after pass,
        // leaving everything listed after it uncollected.
        let failed = self.refiller.objects.delete_each(&garbage).await?;
        if let Some((key, why)) = failed.first() {
            tracing::warn!(
                prefix,
                failed = failed.len(),
                first = %key,
                error = %why,
                "could not delete some unreferenced objects; left for the next cycle"
            );
        }
        let deleted = garbage.len() - failed.len();
        report.deleted += deleted;
        report.undeletable += failed.len();
        let metrics = &self.refiller.metrics;
        metrics.gc_deleted.inc_by(deleted as u64);
        metrics.gc_undeletable.inc_by(failed.len() as u64);
        Ok(())
    }

    /// Ticks every `interval` and collects every `gc_interval` until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gc = self.gc_interval.map(|every| {
            let mut gc = tokio::time::interval(every);
            gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            gc
        });
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => match self.tick().await {
                    Ok(report) if report.rescued + report.reindexed + report.refill_errors > 0 => {
                        tracing::info!(?report, "reconciled");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %Chain(&e), "reconciler tick failed"),
                },
                _ = async {
                    match gc.as_mut() {
                        Some(gc) => {
                            gc.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                } => match self.gc().await {
                    Ok(report) if report.deleted > 0 => tracing::info!(?report, "garbage collected"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "garbage collection failed"),
                },
            }
        }
    }
}

/// `(prefix index, last key)` from the GC's stored position.
fn parse_gc_cursor(stored: Option<&str>) -> (usize, Option<String>) {
    let Some((at, key)) = stored.and_then(|s| s.split_once('\t')) else {
        return (0, None);
    };
    match at.parse::<usize>() {
        Ok(at) if at < GC_PREFIXES.len() => (at, (!key.is_empty()).then(|| key.to_string())),
        _ => (0, None),
    }
}

fn format_watermark((at, id): Watermark) -> String {
    format!(
        "{}|{id}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// The stored change watermark, if there is a readable one.
fn parse_watermark(stored: Option<String>) -> Option<Watermark> {
    stored
        .as_deref()
        .and_then(|s| s.split_once('|'))
        .and_then(|(at, id)| {
            Some((
                DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
                id.parse().ok()?,
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uploads_older_than_the_age_are_aborted() {
        let hour = Duration::from_secs(3600);
        let now = 1_800_000_000;
        assert!(
            !abortable(now - 10, now, hour),
            "ten seconds old: may be streaming"
        );
        assert!(!abortable(now - 3599, now, hour));
        assert!(abortable(now - 3600, now, hour));
        assert!(abortable(now - 86_400, now, hour));
        assert!(
            abortable(now, now, Duration::ZERO),
            "age 0 aborts every one"
        );
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_start_over() {
        let w = (Utc::now(), Uuid::now_v7());
        let parsed = parse_watermark(Some(format_watermark(w))).unwrap();
        assert_eq!(parsed.1, w.1);
        assert_eq!(parsed.0.timestamp_micros(), w.0.timestamp_micros());
        assert_eq!(parse_watermark(Some("junk".into())), None);
        assert_eq!(
            parse_gc_cursor(Some("1\tdesigns/ab/x")),
            (1, Some("designs/ab/x".into()))
        );
        assert_eq!(parse_gc_cursor(Some("2\t")), (2, None));
        assert_eq!(parse_gc_cursor(Some("9\tx")), (0, None));
        assert_eq!(parse_gc_cursor(None), (0, None));
    }
}
