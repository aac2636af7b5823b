//! The adaptive sizer: every `pool.sizing_interval_ms` it reads each live
//! template's demand from the ledger, turns it into targets with the
//! [`sizing`](crate::sizing) policy, stores the plan in `pool_targets` (so
//! every replica refills to the same targets and the API can show them),
//! and refills the templates whose target changed -- growing pools at once
//! for a burst, retiring surplus items of templates whose demand decayed.
//! One replica plans at a time (a lease in `singleton_leases`).

use std::time::Duration;

use futures::stream::{self, StreamExt};
use prewarm_store::db::pool_targets::{self, PoolTargetRow};
use prewarm_store::db::StoreError;
use shared_domain::ids::TemplateId;
use tokio_util::sync::CancellationToken;

use crate::refill::Refiller;
use crate::singleton::Singleton;
use crate::sizing::{self, Demand, Policy};

#[derive(Clone)]
pub struct Sizer {
    pub refiller: Refiller,
    /// One replica at a time plans (`singleton_leases`).
    pub singleton: Singleton,
    pub policy: Policy,
    pub demand_fast_secs: f64,
    pub demand_slow_secs: f64,
    pub interval: Duration,
    pub item_parallelism: usize,
    pub refill_parallelism: usize,
    /// Templates that get their own target/demand series in the metrics.
    pub metrics_templates: usize,
}

/// What one planning pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SizerReport {
    pub skipped: bool,
    pub templates: usize,
    pub planned_items: i64,
    pub changed: usize,
}

impl Sizer {
    pub async fn tick(&self) -> Result<SizerReport, StoreError> {
        match self.singleton.run("sizer", self.tick_locked()).await? {
            Some(result) => result,
            None => Ok(SizerReport {
                skipped: true,
                ..SizerReport::default()
            }),
        }
    }

    async fn tick_locked(&self) -> Result<SizerReport, StoreError> {
        let (rows, before) = {
            let mut conn = self.refiller.db.conn().await?;
            let rows =
                pool_targets::demand(&mut conn, self.demand_fast_secs, self.demand_slow_secs)
                    .await?;
            (rows, pool_targets::all(&mut conn).await?)
        };
        let estimates = &self.refiller.estimates;
        let demands: Vec<Demand> = rows
            .iter()
            .map(|r| Demand {
                template: TemplateId(r.template_id),
                rate: r.fast.max(r.slow),
                slow_rate: r.slow,
                refill_secs: estimates.refill_secs(r.images, self.item_parallelism),
                current: before.get(&TemplateId(r.template_id)).copied(),
            })
            .collect();
        let plan = sizing::plan(&self.policy, &demands);
        let now = chrono::Utc::now();
        let saved: Vec<PoolTargetRow> = rows
            .iter()
            .zip(&demands)
            .map(|(r, d)| PoolTargetRow {
                template_id: r.template_id,
                target: plan[&d.template],
                demand_fast: r.fast,
                demand_slow: r.slow,
                refill_secs: d.refill_secs,
                computed_at: now,
            })
            .collect();
        {
            let mut conn = self.refiller.db.conn().await?;
            pool_targets::save(&mut conn, &saved).await?;
        }
        self.publish_metrics(&saved);
        let changed: Vec<(TemplateId, bool)> = plan
            .iter()
            .filter(|(t, n)| before.get(t) != Some(n))
            .map(|(t, n)| (*t, before.get(t).is_some_and(|old| n < old)))
            .collect();
        // Pools change now, not at the next reconciler pass: shrinking ones
        // first, so the slots they give back are free (under a budget) when
        // the growing ones reserve.
        for shrinking in [true, false] {
            let refills: Vec<_> = changed
                .iter()
                .filter(|(_, s)| *s == shrinking)
                .map(|(t, _)| {
                    let refiller = self.refiller.clone();
                    let t = *t;
                    async move {
                        if let Err(e) = refiller.refill(t).await {
                            tracing::warn!(template = %t, error = %e, "refill after a new target failed");
                        }
                    }
                })
                .collect();
            stream::iter(refills)
                .buffer_unordered(self.refill_parallelism.max(1))
                .collect::<Vec<()>>()
                .await;
        }
        Ok(SizerReport {
            skipped: false,
            templates: saved.len(),
            planned_items: saved.iter().map(|r| i64::from(r.target)).sum(),
            changed: changed.len(),
        })
    }

    fn publish_metrics(&self, rows: &[PoolTargetRow]) {
        let m = &self.refiller.metrics;
        m.pool_planned_total
            .set(rows.iter().map(|r| i64::from(r.target)).sum());
        m.pool_budget
            .set(self.policy.budget.map_or(0, |b| b as i64));
        let mut by_demand: Vec<&PoolTargetRow> = rows.iter().collect();
        by_demand.sort_by(|a, b| {
            b.demand_fast
                .max(b.demand_slow)
                .total_cmp(&a.demand_fast.max(a.demand_slow))
        });
        m.planned_target.reset();
        m.demand.reset();
        for r in by_demand.into_iter().take(self.metrics_templates) {
            let t = r.template_id.to_string();
            m.planned_target
                .with_label_values(&[&t])
                .set(i64::from(r.target));
            m.demand
                .with_label_values(&[&t])
                .set(r.demand_fast.max(r.demand_slow) * 60.0);
        }
    }

    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.tick().await {
                Ok(report) => tracing::debug!(?report, "pool sizes planned"),
                Err(e) => tracing::warn!(error = %e, "sizing pass failed"),
            }
        }
    }
}
