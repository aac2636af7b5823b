//! Adaptive pool sizing: how many ready items each template should keep.
//!
//! For template `t` with demand `λ` (designs per second) and refill time `T`
//! (seconds to make one item ready), every pop starts one refill: the pool is
//! a base-stock inventory with lead time `T`. The refills under way at any
//! moment are Poisson with mean `m = λ·T` (Little's law gives the mean, the
//! M/G/∞ queue the law), and an arriving request finds the pool empty exactly
//! when `k` or more are under way. So the wanted size is the smallest `k`
//! with `P(N >= k) <= miss_target`, clamped to `[min, max]`.
//!
//! Pools grow on the larger of a fast and a slow demand estimate but shrink
//! only as far as the slow one allows: a template's new size stays where it
//! is when it lies between the two sizes, so a short lull between bursts does
//! not retire items that would be copied again seconds later.
//!
//! Under a global budget (most pooled items in all), every template first
//! gets its `min`, then the remaining items go where they are most likely to
//! be used: the `k`-th item of template `t` is used during one refill with
//! probability `P(N_t >= k)`, so items are handed out in decreasing order of
//! that probability (ties: higher demand, then template id).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use shared_domain::ids::TemplateId;

/// The policy's knobs (`pool.*` settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub min: i32,
    pub max: i32,
    /// Most pooled items across all templates; `None`: no limit.
    pub budget: Option<u64>,
    /// Accepted chance that a refill period's demand exceeds the pool.
    pub miss_target: f64,
}

/// The target a template's pool is refilled to (by the refiller and the
/// reconciler alike), from its planned row in `pool_targets`, if any, and
/// its age.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetRule {
    /// `pool.target` (fixed sizing).
    pub fixed: i32,
    /// `pool.sizing = adaptive`.
    pub adaptive: bool,
    /// `pool.min`.
    pub min: i32,
    /// `pool.idle_secs`, when on.
    pub idle: Option<Duration>,
}

impl TargetRule {
    /// Whether the sizer plans targets (adaptive sizing, or idle tracking):
    /// only then are `pool_targets` rows read.
    pub fn planned(&self) -> bool {
        self.adaptive || self.idle.is_some()
    }

    /// The template's target: its planned row when the sizer plans, else
    /// the default -- `min` with adaptive sizing or for an idle template
    /// (older than `idle` and without recent demand, which would have given
    /// it a row), `fixed` otherwise.
    pub fn target(&self, planned: Option<i32>, age_secs: f64) -> i32 {
        match planned {
            Some(target) if self.planned() => target,
            _ if self.adaptive => self.min,
            _ => match self.idle {
                Some(idle) if age_secs > idle.as_secs_f64() => self.min,
                _ => self.fixed,
            },
        }
    }
}

/// What the sizer knows of one template.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub template: TemplateId,
    /// Designs per second: the larger of the fast and slow decayed rates.
    pub rate: f64,
    /// Designs per second over the slow time constant alone (<= `rate`).
    pub slow_rate: f64,
    /// Seconds to make one item ready.
    pub refill_secs: f64,
    /// The target planned last time, if any.
    pub current: Option<i32>,
}

impl Demand {
    fn mean(&self) -> f64 {
        (self.rate.max(0.0) * self.refill_secs.max(0.0)).min(700.0)
    }

    fn slow(&self) -> Demand {
        Demand {
            rate: self.slow_rate.min(self.rate),
            ..*self
        }
    }
}

/// `P(N >= k)` for `N ~ Poisson(mean)`.
pub fn tail(mean: f64, k: i32) -> f64 {
    if k <= 0 {
        return 1.0;
    }
    if mean <= 0.0 {
        return 0.0;
    }
    // 1 - P(N <= k-1), summing the pmf iteratively.
    let mut term = (-mean).exp();
    let mut cdf = term;
    for i in 1..k {
        term *= mean / f64::from(i);
        cdf += term;
    }
    (1.0 - cdf).max(0.0)
}

/// The unconstrained size for one template, with hysteresis: the size for
/// `rate` when growing, the size for `slow_rate` when shrinking, the current
/// size in between.
pub fn wanted(policy: &Policy, demand: &Demand) -> i32 {
    let up = size_for(policy, demand);
    let down = size_for(policy, &demand.slow());
    demand.current.map_or(up, |c| c.clamp(down, up))
}

/// Smallest `k` with `P(N >= k) <= miss_target` (the chance a request finds
/// the pool empty), within `[min, max]`.
pub fn size_for(policy: &Policy, demand: &Demand) -> i32 {
    let m = demand.mean();
    let mut k = 0;
    while k < policy.max && tail(m, k) > policy.miss_target {
        k += 1;
    }
    k.clamp(policy.min, policy.max.max(policy.min))
}

/// Targets for every template in `demands`.
pub fn plan(policy: &Policy, demands: &[Demand]) -> HashMap<TemplateId, i32> {
    let wanted: Vec<i32> = demands.iter().map(|d| wanted(policy, d)).collect();
    let total: u64 = wanted.iter().map(|&w| w.max(0) as u64).sum();
    let Some(budget) = policy.budget.filter(|&b| total > b) else {
        return demands.iter().map(|d| d.template).zip(wanted).collect();
    };

    // Over budget. Everyone's minimum first (highest demand first, should
    // the minimums alone exceed the budget).
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|&a, &b| by_demand(&demands[a], &demands[b]));
    let mut targets = vec![0i32; demands.len()];
    let mut left = budget;
    let floor = policy.min.max(0) as u64;
    for &i in &order {
        let give = floor.min(left);
        targets[i] = give as i32;
        left -= give;
    }
    // Then each further item where it is most likely to be used.
    let mut candidates: Vec<(f64, usize)> = Vec::new();
    for (i, d) in demands.iter().enumerate() {
        for k in (targets[i] + 1)..=wanted[i] {
            candidates.push((tail(d.mean(), k), i));
        }
    }
    candidates.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then_with(|| by_demand(&demands[a.1], &demands[b.1]))
    });
    for (_, i) in candidates.into_iter().take(left as usize) {
        targets[i] += 1;
    }
    demands.iter().map(|d| d.template).zip(targets).collect()
}

/// Higher demand first, then template id (deterministic).
fn by_demand(a: &Demand, b: &Demand) -> Ordering {
    b.rate
        .partial_cmp(&a.rate)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.template.cmp(&b.template))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn policy(min: i32, max: i32, budget: Option<u64>) -> Policy {
        Policy {
            min,
            max,
            budget,
            miss_target: 0.01,
        }
    }

    fn demand(n: u128, rate: f64, refill_secs: f64) -> Demand {
        Demand {
            template: TemplateId(Uuid::from_u128(n)),
            rate,
            slow_rate: rate,
            refill_secs,
            current: None,
        }
    }

    #[test]
    fn pools_grow_on_the_fast_estimate_and_shrink_only_on_the_slow_one() {
        let p = policy(1, 64, None);
        let d = |fast: f64, slow: f64, current: Option<i32>| Demand {
            rate: fast.max(slow),
            slow_rate: slow,
            current,
            ..demand(1, 0.0, 2.0)
        };
        assert_eq!(wanted(&p, &d(1.0, 0.0, None)), 7, "a burst grows at once");
        assert_eq!(
            wanted(&p, &d(0.3, 0.0, Some(7))),
            4,
            "no more than the fast size"
        );
        assert_eq!(
            wanted(&p, &d(1.0, 0.2, Some(4))),
            4,
            "between the two: unchanged"
        );
        assert_eq!(
            wanted(&p, &d(0.0, 0.0, Some(7))),
            1,
            "no demand at all: the minimum"
        );
    }

    #[test]
    fn the_target_rule_falls_back_to_min_for_idle_templates_only_when_asked() {
        let fixed = TargetRule {
            fixed: 4,
            adaptive: false,
            min: 1,
            idle: None,
        };
        assert_eq!(
            fixed.target(Some(9), 1e6),
            4,
            "rows are ignored when nothing plans"
        );
        assert_eq!(fixed.target(None, 1e6), 4, "today's behaviour when off");
        let idle = TargetRule {
            idle: Some(Duration::from_secs(600)),
            ..fixed
        };
        assert_eq!(idle.target(None, 60.0), 4, "a young template is in demand");
        assert_eq!(
            idle.target(None, 601.0),
            1,
            "an old one without a row is idle"
        );
        assert_eq!(idle.target(Some(4), 1e6), 4, "recent demand keeps a row");
        let adaptive = TargetRule {
            adaptive: true,
            ..fixed
        };
        assert_eq!(adaptive.target(None, 1.0), 1);
        assert_eq!(adaptive.target(Some(7), 1.0), 7);
    }

    #[test]
    fn poisson_tail_matches_known_values() {
        assert!((tail(1.0, 1) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!((tail(2.0, 3) - 0.323_323_583_8).abs() < 1e-9);
        assert_eq!(tail(0.0, 1), 0.0);
        assert_eq!(tail(5.0, 0), 1.0);
    }

    #[test]
    fn no_demand_keeps_the_minimum_and_demand_grows_the_pool() {
        let p = policy(1, 64, None);
        assert_eq!(wanted(&p, &demand(1, 0.0, 2.0)), 1);
        // 1 design/s, 2 s to refill: mean 2; P(N >= 7) < 1% <= P(N >= 6).
        assert_eq!(wanted(&p, &demand(1, 1.0, 2.0)), 7);
        // A rarely used template: mean 0.05; P(N >= 1) = 4.9%, P(N >= 2) = 0.12%.
        assert_eq!(wanted(&p, &demand(1, 0.05, 1.0)), 2);
        assert_eq!(wanted(&p, &demand(1, 1000.0, 2.0)), 64, "clamped to max");
    }

    #[test]
    fn the_budget_goes_to_the_likeliest_uses() {
        let p = policy(0, 64, Some(10));
        let demands = [
            demand(1, 5.0, 1.0),
            demand(2, 0.1, 1.0),
            demand(3, 0.0, 1.0),
        ];
        let plan = plan(&p, &demands);
        let t = |n: u128| plan[&TemplateId(Uuid::from_u128(n))];
        assert_eq!(t(1) + t(2) + t(3), 10);
        assert!(t(1) > t(2) && t(3) == 0, "{plan:?}");
        assert!(
            t(2) >= 1,
            "the first item of a 0.1/s template beats the 11th of a 5/s one"
        );
    }

    fn demands() -> impl Strategy<Value = Vec<(f64, f64, f64, Option<i32>)>> {
        prop::collection::vec(
            (
                0.0f64..20.0,
                0.0f64..1.0,
                0.05f64..5.0,
                prop::option::of(0i32..50),
            ),
            1..30,
        )
    }

    fn build(ds: &[(f64, f64, f64, Option<i32>)]) -> Vec<Demand> {
        ds.iter()
            .enumerate()
            .map(|(i, (rate, slow_share, refill, current))| Demand {
                slow_rate: rate * slow_share,
                current: *current,
                ..demand(i as u128, *rate, *refill)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn targets_respect_min_max_and_budget(
            ds in demands(),
            min in 0i32..3,
            span in 0i32..40,
            budget in prop::option::of(0u64..200),
        ) {
            let p = policy(min, min + span, budget);
            let demands = build(&ds);
            let plan = plan(&p, &demands);
            prop_assert_eq!(plan.len(), demands.len());
            let total: u64 = plan.values().map(|&t| t as u64).sum();
            for d in &demands {
                let t = plan[&d.template];
                prop_assert!(t <= p.max && t >= 0);
                prop_assert!(t <= wanted(&p, d), "never above the unconstrained size");
            }
            match budget {
                Some(b) => {
                    prop_assert!(total <= b);
                    // Minimums are honoured whenever the budget can hold them.
                    if b >= demands.len() as u64 * min as u64 {
                        for d in &demands { prop_assert!(plan[&d.template] >= min); }
                    }
                }
                None => for d in &demands { prop_assert!(plan[&d.template] >= min); },
            }
        }

        #[test]
        fn more_demand_never_means_a_smaller_pool(
            ds in demands(),
            pick in any::<prop::sample::Index>(),
            extra in 0.0f64..20.0,
            budget in prop::option::of(0u64..200),
        ) {
            let p = policy(1, 48, budget);
            let mut demands = build(&ds);
            let i = pick.index(demands.len());
            let before = plan(&p, &demands)[&demands[i].template];
            demands[i].rate += extra;
            demands[i].slow_rate += extra;
            let after = plan(&p, &demands)[&demands[i].template];
            prop_assert!(after >= before, "{} -> {}", before, after);
        }
    }
}
