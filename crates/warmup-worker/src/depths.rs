//! The pool-depth metrics (`prewarm_pool_ready_items{template}`,
//! `prewarm_pools_below_target`, `prewarm_pool_ready_items_total`), kept
//! without reading the whole catalogue: each pass checks only
//!
//! - the templates whose pool changed since the last pass (the reconciler's
//!   change stream, `pool_checks::changed_templates`),
//! - the templates it last saw below target (until they are back at it),
//! - the next page of a rolling sweep in id order (`worker.reconcile_sweep`
//!   templates), so that a template below target that never changes is
//!   found within one sweep cycle,
//!
//! and records the ready items of the templates it checked in the running
//! total of all templates (`pool_depths::observe`), instead of counting the
//! pooled items. Cost per pass: the changes since the last pass + the
//! depleted templates + one page; memory: the depleted templates + `keep`
//! others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use shared_domain::error::Chain;
use shared_domain::ids::TemplateId;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use prewarm_store::db::pool_checks::{self, PoolState, Watermark};
use prewarm_store::db::{pool_depths, Db, StoreError};
use prewarm_store::pause::PausePoints;

use crate::metrics::WorkerMetrics;
use crate::sizing::TargetRule;

/// Templates per statement (changes read, states checked).
const PAGE: usize = 1_000;

/// One template's last observed depth.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    ready: i64,
    goal: i64,
    at: Instant,
}

impl Seen {
    fn depleted(&self) -> bool {
        self.ready < self.goal
    }
}

/// The pool-depth pass: what it knows between passes.
pub struct Depths {
    db: Db,
    rule: TargetRule,
    /// How many templates get their own series (`worker.metrics_templates`).
    keep: usize,
    /// Templates per sweep page (`worker.reconcile_sweep`).
    sweep: usize,
    known: tokio::sync::Mutex<Known>,
    /// How far behind the clock changes are read (the reconciler's
    /// [`COMMIT_LAG`](crate::reconciler::COMMIT_LAG)).
    pub commit_lag: Duration,
    /// Test-only pause points (a no-op unless a test armed one).
    pub pause: PausePoints,
}

struct Known {
    seen: HashMap<TemplateId, Seen>,
    watermark: Watermark,
    sweep_after: Uuid,
}

/// What one pass found.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthReport {
    /// Ready items of all templates.
    pub total: i64,
    /// Templates checked (changed, depleted, swept).
    pub checked: usize,
    /// `(template, ready, goal)` of every template known after the pass.
    pub rows: Vec<(String, i64, i64)>,
}

impl Depths {
    pub fn new(db: Db, rule: TargetRule, keep: usize, sweep: usize) -> Self {
        Depths {
            db,
            rule,
            keep,
            sweep: sweep.max(1),
            known: tokio::sync::Mutex::new(Known {
                seen: HashMap::new(),
                // What changed before the first pass is found by the sweep.
                watermark: (Utc::now(), Uuid::from_u128(u128::MAX)),
                sweep_after: Uuid::nil(),
            }),
            commit_lag: crate::reconciler::COMMIT_LAG,
            pause: PausePoints::default(),
        }
    }

    /// One pass: checks what changed, what was depleted and a sweep page.
    pub async fn pass(&self) -> Result<DepthReport, StoreError> {
        let mut known = self.known.lock().await;
        let known = &mut *known;
        let mut conn = self.db.conn().await?;
        let idle = self
            .rule
            .idle
            .and_then(|d| chrono::TimeDelta::from_std(d).ok());
        let until = Utc::now()
            - chrono::TimeDelta::from_std(self.commit_lag).unwrap_or(chrono::TimeDelta::zero());
        let mut check: Vec<TemplateId> = known
            .seen
            .iter()
            .filter(|(_, s)| s.depleted())
            .map(|(t, _)| *t)
            .collect();
        loop {
            let changed = pool_checks::changed_templates(
                &mut conn,
                known.watermark,
                until,
                idle,
                PAGE as i64,
            )
            .await?;
            let full = changed.len() >= PAGE;
            known.watermark = match changed.last() {
                Some((_, last)) if full => *last,
                _ => (until, Uuid::from_u128(u128::MAX)),
            };
            check.extend(changed.into_iter().map(|(t, _)| t));
            if !full {
                break;
            }
        }
        let swept =
            pool_checks::templates_after(&mut conn, known.sweep_after, self.sweep as i64).await?;
        known.sweep_after = match swept.last() {
            Some(last) if swept.len() >= self.sweep => last.0,
            _ => Uuid::nil(),
        };
        check.extend(swept);
        check.sort_unstable_by_key(|t| t.0);
        check.dedup();
        let now = Instant::now();
        let mut total = None;
        for chunk in check.chunks(PAGE) {
            let (states, after) = self
                .pause
                .scope(pool_depths::observe(&mut conn, chunk))
                .await?;
            total = Some(after);
            // A checked template that is gone from the result was purged.
            for t in chunk {
                known.seen.remove(t);
            }
            for state in states {
                known.observe(&self.rule, state, now);
            }
        }
        known.forget_settled(self.keep);
        Ok(DepthReport {
            total: match total {
                Some(total) => total,
                None => pool_depths::total(&mut conn).await?,
            },
            checked: check.len(),
            rows: known.rows(),
        })
    }
}

impl Known {
    fn observe(&mut self, rule: &TargetRule, state: PoolState, at: Instant) {
        if state.deleted {
            return;
        }
        let goal = rule.target(state.planned_levels(), state.age).fill;
        self.seen.insert(
            TemplateId(state.template_id),
            Seen {
                ready: state.ready,
                goal: i64::from(goal),
                at,
            },
        );
    }

    /// Keeps every depleted template and the `keep` most recently seen
    /// others.
    fn forget_settled(&mut self, keep: usize) {
        let mut settled: Vec<(Instant, TemplateId)> = self
            .seen
            .iter()
            .filter(|(_, s)| !s.depleted())
            .map(|(t, s)| (s.at, *t))
            .collect();
        if settled.len() <= keep {
            return;
        }
        settled.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1 .0.cmp(&b.1 .0)));
        for (_, t) in settled.into_iter().skip(keep) {
            self.seen.remove(&t);
        }
    }

    /// `(template, ready, goal)` of every template the metrics know.
    fn rows(&self) -> Vec<(String, i64, i64)> {
        self.seen
            .iter()
            .map(|(t, s)| (t.to_string(), s.ready, s.goal))
            .collect()
    }
}

/// Publishes the pool depths every `every` until `stop`.
pub async fn run(
    depths: Depths,
    metrics: std::sync::Arc<WorkerMetrics>,
    target: i32,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match depths.pass().await {
            Ok(report) => metrics.set_pools(target, report.total, report.rows, depths.keep),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not read pool depths for the metrics")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(ready: i64, goal: i64, at: Instant) -> Seen {
        Seen { ready, goal, at }
    }

    #[test]
    fn every_depleted_template_is_kept_and_only_the_latest_settled_ones() {
        let start = Instant::now();
        let mut known = Known {
            seen: HashMap::new(),
            watermark: (Utc::now(), Uuid::nil()),
            sweep_after: Uuid::nil(),
        };
        for i in 0..10u128 {
            let at = start + Duration::from_secs(i as u64);
            // Even ids depleted, odd ones at their goal.
            let ready = if i % 2 == 0 { 1 } else { 4 };
            known
                .seen
                .insert(TemplateId(Uuid::from_u128(i)), seen(ready, 4, at));
        }
        known.forget_settled(2);
        let mut left: Vec<u128> = known.seen.keys().map(|t| t.0.as_u128()).collect();
        left.sort_unstable();
        assert_eq!(left, vec![0, 2, 4, 6, 7, 8, 9]);
    }
}
