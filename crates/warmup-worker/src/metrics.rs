//! The worker's Prometheus metrics, served with `/healthz` and `/readyz` on
//! its small HTTP port ([`crate::http`]). Labels have small fixed value sets;
//! per-template pool depth is reported only for the `worker.metrics_templates`
//! most depleted templates, so cardinality stays bounded however many
//! templates exist.

use prewarm_service_kit::metrics::{counter_vec, gauge_vec, histogram_vec};
use prometheus::{
    GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    /// Refills by outcome: ok, failed (will retry), dead_lettered, gone, deferred, stopped.
    pub refills: IntCounterVec,
    /// Pool items by outcome: ready, failed (a copy failed), superseded.
    pub items: IntCounterVec,
    /// Time to copy all objects of one pool item, by outcome (ok, error).
    pub item_copy: HistogramVec,
    /// From the warm-up request's send time to the end of its refill.
    pub refill_lag: HistogramVec,
    /// Messages behind the partition's end, per assigned partition (from
    /// librdkafka's statistics).
    pub consumer_lag: IntGaugeVec,
    /// Ready items of the current version, per template (most depleted only).
    pub pool_ready: IntGaugeVec,
    pub pool_target: IntGauge,
    pub pools_below_target: IntGauge,
    pub pool_ready_total: IntGauge,
    /// Adaptive sizing: sum of planned targets, and the budget (0: none).
    pub pool_planned_total: IntGauge,
    pub pool_budget: IntGauge,
    /// Templates an operator policy governs, and those with a schedule
    /// window on or due; templates with a forecast of recurring demand.
    pub pool_policies: IntGauge,
    pub pool_windows: IntGauge,
    pub pool_forecasts: IntGauge,
    /// Adaptive sizing, for the most demanded templates only: planned target
    /// and demand (designs per minute).
    pub planned_target: IntGaugeVec,
    pub demand: GaugeVec,
    /// 1/0 per dependency at the last readiness probe.
    pub dependency_up: IntGaugeVec,
    /// Objects the garbage collector deleted.
    pub gc_deleted: IntCounter,
    /// Unreferenced objects the store refused to delete.
    pub gc_undeletable: IntCounter,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl WorkerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        Ok(Self {
            refills: counter_vec(
                &registry,
                "prewarm_refills_total",
                "Refills by outcome: ok, failed (retried), dead_lettered, gone (template deleted), deferred (batch budget spent; left to the reconciler), stopped (the worker was stopping).",
                &["outcome"],
            )?,
            items: counter_vec(
                &registry,
                "prewarm_pool_items_total",
                "Pool items finished, by outcome: ready, failed (a copy failed), superseded (template edited meanwhile).",
                &["outcome"],
            )?,
            item_copy: histogram_vec(
                &registry,
                "prewarm_item_copy_duration_seconds",
                "Time to copy every object of one pool item (S3 CopyObject calls), by outcome.",
                &["outcome"],
            )?,
            refill_lag: histogram_vec(
                &registry,
                "prewarm_refill_lag_seconds",
                "From a warm-up request's send time to the end of the refill it asked for.",
                &["reason"],
            )?,
            dependency_up: gauge_vec(
                &registry,
                "prewarm_dependency_up",
                prewarm_store::readiness::DEPENDENCY_UP_HELP,
                &["dependency"],
            )?,
            consumer_lag: gauge_vec(
                &registry,
                "prewarm_consumer_lag_messages",
                "Warm-up messages not yet consumed, per assigned partition.",
                &["partition"],
            )?,
            pool_ready: gauge_vec(
                &registry,
                "prewarm_pool_ready_items",
                "Ready items of the current version, for the most depleted templates only (bounded cardinality).",
                &["template"],
            )?,
            pool_target: gauge(&registry, "prewarm_pool_target_items", "Ready items kept per template.")?,
            pools_below_target: gauge(
                &registry,
                "prewarm_pools_below_target",
                "Templates whose pool holds fewer ready items than the target.",
            )?,
            pool_ready_total: gauge(
                &registry,
                "prewarm_pool_ready_items_total",
                "Ready items across all templates.",
            )?,
            pool_planned_total: gauge(
                &registry,
                "prewarm_pool_planned_items_total",
                "Adaptive sizing: sum of every template's planned target (budget use).",
            )?,
            pool_policies: gauge(
                &registry,
                "prewarm_pool_policy_templates",
                "Templates an operator pool policy governs (their own or their company's).",
            )?,
            pool_windows: gauge(
                &registry,
                "prewarm_pool_windows_on",
                "Templates with a policy schedule window on, or due within its lead time.",
            )?,
            pool_forecasts: gauge(
                &registry,
                "prewarm_pool_forecast_templates",
                "Templates the sizer planned with a forecast of recurring demand this pass.",
            )?,
            pool_budget: gauge(
                &registry,
                "prewarm_pool_budget_objects",
                "Adaptive sizing: most pooled objects (items x their images) across all templates (0 = no limit).",
            )?,
            gc_deleted: counter(
                &registry,
                "prewarm_gc_deleted_objects_total",
                "Unreferenced objects the garbage collector deleted from S3.",
            )?,
            gc_undeletable: counter(
                &registry,
                "prewarm_gc_undeletable_objects_total",
                "Unreferenced objects the store refused to delete (each retried a cycle later).",
            )?,
            planned_target: gauge_vec(
                &registry,
                "prewarm_pool_planned_target",
                "Adaptive sizing: planned target, for the most demanded templates only.",
                &["template"],
            )?,
            demand: {
                let g = GaugeVec::new(
                    Opts::new(
                        "prewarm_template_demand_per_minute",
                        "Adaptive sizing: decayed design rate, for the most demanded templates only.",
                    ),
                    &["template"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            registry,
        })
    }

    /// Publishes a snapshot of pool depths: the ready items of all
    /// templates (`total`) and `(template, ready, target)` of the templates
    /// the depth pass knows (every depleted one and a few recently seen, see
    /// [`crate::depths`]), of which only the `keep` most depleted (furthest
    /// below target) get their own series. `target` is the fixed target (or,
    /// with adaptive sizing, the minimum).
    pub fn set_pools(
        &self,
        target: i32,
        total: i64,
        mut depths: Vec<(String, i64, i64)>,
        keep: usize,
    ) {
        self.pool_target.set(i64::from(target));
        self.pool_ready_total.set(total);
        self.pools_below_target
            .set(depths.iter().filter(|(_, n, t)| n < t).count() as i64);
        depths.sort_by(|a, b| (a.1 - a.2).cmp(&(b.1 - b.2)).then_with(|| a.0.cmp(&b.0)));
        self.pool_ready.reset();
        for (template, ready, _) in depths.into_iter().take(keep) {
            self.pool_ready.with_label_values(&[&template]).set(ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_series_are_bounded_to_the_most_depleted() {
        let m = WorkerMetrics::new().unwrap();
        let depths = (0..100).map(|i| (format!("t{i:03}"), i % 7, 4)).collect();
        m.set_pools(4, 295, depths, 10);
        let text = prewarm_service_kit::metrics::encode(&m.registry);
        let series = text
            .lines()
            .filter(|l| l.starts_with("prewarm_pool_ready_items{"))
            .count();
        assert_eq!(series, 10);
        assert!(
            text.contains("prewarm_pool_ready_items_total 295"),
            "{text}"
        );
        let below = (0..100).filter(|i| i % 7 < 4).count();
        assert!(text.contains(&format!("prewarm_pools_below_target {below}")));
    }
}
