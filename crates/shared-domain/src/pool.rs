//! The warm pool's vocabulary.

use serde::{Deserialize, Serialize};

use crate::ids::{TemplateId, TemplateVersion};

/// One warm pool: the ready items of one template at one version (a
/// Redis list, a set of ledger rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub template: TemplateId,
    pub version: TemplateVersion,
}

impl PoolKey {
    pub fn new(template: TemplateId, version: TemplateVersion) -> Self {
        Self { template, version }
    }
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:v{}", self.template, self.version)
    }
}

/// Lifecycle of a pool item in the Postgres ledger (the source of truth;
/// Redis only indexes the `Ready` ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolItemState {
    /// Slot reserved, objects being copied; counts toward the target so two
    /// workers never fill the same gap.
    Copying,
    /// All objects copied; listed in Redis, waiting for a design.
    Ready,
    /// Became a design.
    Used,
    /// Given up (failed copy, stale version); its objects are deleted.
    Discarded,
}

impl PoolItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolItemState::Copying => "copying",
            PoolItemState::Ready => "ready",
            PoolItemState::Used => "used",
            PoolItemState::Discarded => "discarded",
        }
    }
}

/// The two levels a template's pool is kept between: refills make it up to
/// `fill` items, and items above `hold` are retired. Between them a pool is
/// left alone -- a pop is not refilled, and nothing is retired -- so
/// surplus from a burst that ended is used up by the designs that follow
/// instead of being retired and copied again (docs/design.md, "Fill and
/// hold").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolLevels {
    pub fill: i32,
    pub hold: i32,
}

impl PoolLevels {
    /// One level: refilled to `n`, nothing held above it.
    pub fn at(n: i32) -> PoolLevels {
        PoolLevels { fill: n, hold: n }
    }

    /// From a plan row: `hold` absent means no surplus is held (the sizer
    /// writes NULL when both levels are equal); it is never below `fill`.
    pub fn new(fill: i32, hold: Option<i32>) -> PoolLevels {
        PoolLevels {
            fill,
            hold: hold.unwrap_or(fill).max(fill),
        }
    }

    /// Both levels at most `cap`.
    pub fn min(self, cap: i32) -> PoolLevels {
        PoolLevels {
            fill: self.fill.min(cap),
            hold: self.hold.min(cap),
        }
    }
}

/// `GET /templates/{id}/pool` answer: how warm a template is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoolStatus {
    pub template_id: TemplateId,
    pub template_version: TemplateVersion,
    pub target: i32,
    /// Items ready in the ledger.
    pub ready: i64,
    /// Items being copied.
    pub copying: i64,
    /// Items listed in the Redis index (what a `POST /designs` can pop).
    pub indexed: i64,
}

/// How the worker sizes each template's pool (`pool.sizing`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sizing {
    /// Every template keeps `pool.target` items.
    #[default]
    Fixed,
    /// Each template's size follows its demand.
    Adaptive,
}

pub use crate::pool_policy::MAX_POLICY_TARGET;

/// Whose pool policy governs a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The template's own.
    Template,
    /// Its owner's default (`PUT /admin/companies/{id}/pool-policy`).
    Company,
}

/// `GET /admin/templates/{id}/sizing`: how big a template's pool is meant to
/// be and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoolSizing {
    pub template_id: TemplateId,
    /// `pool.sizing`.
    pub sizing: Sizing,
    /// Ready items the worker keeps for this template now: a pop below it
    /// is refilled.
    pub target: i32,
    /// Items above it are retired; between `target` and `hold` a pop is not
    /// refilled (surplus of a burst that ended, used up by the designs that
    /// follow). Equal to `target` unless `pool.keep_secs` holds surplus or a
    /// lowered target is shrinking an item a pass.
    pub hold: i32,
    /// Ready items of the current version.
    pub ready: i64,
    /// Adaptive: designs per minute, decayed over `pool.demand_fast_secs`
    /// and `pool.demand_slow_secs`.
    pub demand_fast_per_minute: Option<f64>,
    pub demand_slow_per_minute: Option<f64>,
    /// Adaptive: estimated seconds to make one item ready after a pop.
    pub refill_secs: Option<f64>,
    /// Adaptive: when the plan was computed (none yet: the template keeps `pool.min`).
    pub planned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Adaptive: sum of all planned hold levels (items, held surplus
    /// included), and the budget in objects (0: none).
    pub planned_items_total: Option<i64>,
    pub budget_objects: Option<u64>,
    /// The operator policy that governs the template, and whose it is.
    pub policy: Option<crate::pool_policy::PoolPolicy>,
    pub policy_source: Option<PolicySource>,
    /// The policy's schedule window on now, or due within the lead time
    /// (the pool is grown ahead of it).
    pub window: Option<crate::pool_policy::ActiveWindow>,
    /// Adaptive: the forecast of recurring demand the plan used, designs
    /// per minute (none: no forecast for the coming slots).
    pub forecast_per_minute: Option<f64>,
}
