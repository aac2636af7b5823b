//! The sizer: every `pool.sizing_interval_ms` it turns demand into targets
//! with the [`sizing`](crate::sizing) policy (adaptive sizing) or the idle
//! rule (`pool.idle_secs`), stores the plan in `pool_targets` (so every
//! replica refills to the same targets and the API can show them), and
//! refills the templates whose target changed -- growing pools at once for a
//! burst, retiring surplus items of templates whose demand decayed. One
//! replica plans at a time (a lease in `singleton_leases`).
//!
//! Demand is kept incrementally, so a pass costs what changed, not the
//! catalogue: the sizer remembers, per template *with recent demand*, two
//! exponentially decayed design counts (fast and slow time constants) as of
//! the last pass; each pass decays them and adds the designs made since
//! (one range scan of the `(created_at, template_id)` index). A template
//! whose demand decayed to nothing is dropped from the plan (its row
//! deleted): it keeps the default target. The memory is the table itself --
//! rows hold the counts as of their `computed_at`, and the read position is
//! stored with them -- so another replica (or this one after a restart)
//! takes over where the last pass stopped.

use shared_domain::error::Chain;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use prewarm_store::db::pool_targets::{self, PoolTargetRow};
use prewarm_store::db::{cursors, pool_items, DbConn, StoreError};
use shared_domain::ids::TemplateId;
use shared_domain::pool::PoolLevels;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::forecast::Forecaster;
use crate::policies::{self, Bounds, Policies};
use crate::refill::Refiller;
use crate::singleton::Singleton;
use crate::sizing::{self, Demand, Policy, TargetRule};

/// The cursor holding how far the designs have been read.
const CURSOR: &str = "sizer";
/// Designs committing later than this after their `created_at` are counted
/// late, never missed: a pass reads up to the database's clock less this.
const COMMIT_LAG_SECS: f64 = 1.0;
/// Below this rate (designs/s, about one a day) a template's demand is nil.
const NEGLIGIBLE_RATE: f64 = 1e-5;
/// How often live templates (the default share of the plan) are counted in
/// full; in between the count follows creations and deletions.
const LIVE_COUNT_EVERY: Duration = Duration::from_secs(600);
/// The longest a pass waits for the refills its new targets started.
const REFILL_WAIT: Duration = Duration::from_secs(10);
/// The longest lead a window or a forecast is grown ahead by.
const MAX_LEAD: Duration = Duration::from_secs(3600);
/// Designs a woken template needs before its first seconds read as a
/// rate (two close designs -- a double submit -- are not a burst).
const WAKE_EVIDENCE: i64 = 3;
/// Images per item the lead time assumes (a large template's; the lead
/// only has to be long enough).
const LEAD_IMAGES: i64 = 32;

#[derive(Clone)]
pub struct Sizer {
    pub refiller: Refiller,
    /// One replica at a time plans (`singleton_leases`).
    pub singleton: Singleton,
    pub policy: Policy,
    pub rule: TargetRule,
    pub demand_fast_secs: f64,
    pub demand_slow_secs: f64,
    pub interval: Duration,
    pub item_parallelism: usize,
    pub refill_parallelism: usize,
    /// Templates that get their own target/demand series in the metrics.
    pub metrics_templates: usize,
    /// The forecast of recurring demand (adaptive sizing with
    /// `pool.forecast`).
    pub forecast: Option<Forecaster>,
    /// Most templates operator policies govern (`pool.max_policy_templates`).
    pub max_policy_templates: usize,
    /// When a failed forecast build may be tried again.
    pub forecast_retry: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Templates whose refill after a new target is under way.
    pub refilling: Arc<std::sync::Mutex<HashSet<TemplateId>>>,
    /// The worker's CopyObject calls in flight (`worker.copy_concurrency`).
    pub copy_concurrency: usize,
    /// What the last pass of this replica left (reloaded from the table when
    /// another replica planned since).
    pub book: Arc<tokio::sync::Mutex<Option<Book>>>,
}

/// What one planning pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SizerReport {
    pub skipped: bool,
    /// Templates with recent demand (rows in the plan).
    pub templates: usize,
    /// Designs read (made since the previous pass).
    pub designs: i64,
    /// Items planned in all (templates without a row at the default).
    pub planned_items: i64,
    pub changed: usize,
    /// Rows written or dropped.
    pub written: usize,
    /// Templates with a forecast of recurring demand this pass.
    pub forecast: usize,
    /// Templates an operator policy governs, and those with a window on or due.
    pub governed: usize,
    pub windows: usize,
}

/// The sizer's memory of the templates with recent demand.
#[derive(Debug, Default)]
pub struct Book {
    /// The stored read position this memory corresponds to.
    cursor: String,
    /// Designs up to this time (seconds since the epoch) are counted.
    upper: f64,
    templates: HashMap<TemplateId, Tracked>,
    /// Live templates, their mean images per item at the last full count,
    /// and when that was.
    live: Option<(i64, f64, std::time::Instant)>,
    /// The forecast profile's first week, once this memory found it built
    /// up to its read position.
    profile_from: Option<i32>,
    /// Operator policies and the templates they govern.
    policies: Policies,
}

#[derive(Debug, Clone)]
struct Tracked {
    created_at: f64,
    images: i64,
    /// Decayed design counts `sum(exp(-age/tau))` as of `Book::upper`.
    fast: f64,
    slow: f64,
    last_design: Option<f64>,
    levels: PoolLevels,
    /// The forecast rate for the coming slots (designs/s; 0: none).
    forecast: f64,
    /// Woken from no recent demand: its first design since, and the designs
    /// counted from it (see [`Sizer::rates`]); cleared after one fast time
    /// constant.
    woke: Option<(f64, i64)>,
}

impl Tracked {
    /// A template planned for a forecast or a policy, not for designs seen.
    fn without_demand(created_at: f64, images: i64, levels: PoolLevels) -> Tracked {
        Tracked {
            created_at,
            images,
            fast: 0.0,
            slow: 0.0,
            last_design: None,
            levels,
            forecast: 0.0,
            woke: None,
        }
    }
}

/// What one sizer pass read and planned, before it writes.
struct Pass {
    /// The horizon the pass read designs up to, and the one before it.
    upper: f64,
    after: f64,
    /// The cursor the pass started from (empty: none stored).
    from: String,
    demand: Absorbed,
    live: i64,
    forecast: usize,
    bounds: HashMap<TemplateId, (Bounds, bool)>,
    plan: HashMap<TemplateId, PoolLevels>,
    /// Held templates whose pool is between its levels (`cap_holds`).
    settled: HashSet<TemplateId>,
}

/// What one pass learned of demand.
struct Absorbed {
    /// Designs made since the last pass.
    designs: i64,
    /// Templates with new designs.
    touched: HashSet<TemplateId>,
    /// Templates deleted meanwhile (their rows go).
    dropped: Vec<Uuid>,
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
        // The memory goes back only once the pass committed: a pass that
        // fails half way leaves none, and the next reloads from the table.
        let mut guard = self.book.lock().await;
        let mut conn = self.refiller.db.conn().await?;
        let stored = cursors::get(&mut conn, CURSOR).await?;
        let mut memory = match guard.take() {
            Some(book) if Some(&book.cursor) == stored.as_ref() => book,
            _ => self.load(&mut conn, stored).await?,
        };
        let pass = self.read_and_plan(&mut conn, &mut memory).await?;
        drop(conn);
        let Some((changed, written)) = self.write_plan(&mut memory, &pass).await? else {
            // Another replica's pass committed from the same position (this
            // one's lease ran out under it): its plan stands, this one's
            // memory is stale and goes.
            tracing::warn!("another sizer pass moved the cursor meanwhile; this pass is dropped");
            return Ok(SizerReport {
                skipped: true,
                ..SizerReport::default()
            });
        };
        let report = self.report(&memory, &pass, changed.len(), written);
        *guard = Some(memory);
        drop(guard);
        self.refill_changed(&changed).await;
        Ok(report)
    }

    /// A pass's reading half: the designs since the last pass, the live
    /// templates, the forecast and the policies, and the plan they make.
    async fn read_and_plan(&self, conn: &mut DbConn, book: &mut Book) -> Result<Pass, StoreError> {
        let upper = pool_targets::read_horizon(conn, COMMIT_LAG_SECS)
            .await?
            .max(book.upper);
        let after = book.upper;
        let from = book.cursor.clone();
        let through = if from.is_empty() {
            format!("{after:.6}")
        } else {
            from.clone()
        };
        let demand = self.absorb(conn, book, upper).await?;
        let (live, mean_images) = self.live_templates(conn, book, after).await?;
        // A forecast that cannot be read or built is not a reason to stop
        // planning: the pass plans on demand and policies alone.
        let forecast = match self.forecast_pass(conn, book, &through, upper).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "forecast unavailable; planning without it");
                for t in book.templates.values_mut() {
                    t.forecast = 0.0;
                }
                0
            }
        };
        self.policy_pass(conn, book, upper).await?;
        let bounds = self.policy_bounds(book);
        let mut plan = self.plan(book, live, mean_images, &bounds);
        let settled = cap_holds(conn, &mut plan).await?;
        Ok(Pass {
            upper,
            after,
            from,
            demand,
            live,
            forecast,
            bounds,
            plan,
            settled,
        })
    }

    /// A pass's writing half: the rows that changed, the forecast's step
    /// and the cursor, in one transaction that commits only if the cursor
    /// is still where the pass read it. Returns the templates to refill
    /// and the rows written, or `None` when another pass moved the cursor.
    async fn write_plan(
        &self,
        book: &mut Book,
        pass: &Pass,
    ) -> Result<Option<(Vec<(TemplateId, bool)>, usize)>, StoreError> {
        // A pool between its new levels needs no refill -- unless its fill
        // level rose: pops since the count refilled to the old one.
        let grown: HashSet<TemplateId> = pass
            .plan
            .iter()
            .filter(|(id, l)| {
                book.templates
                    .get(id)
                    .is_some_and(|t| l.fill > t.levels.fill)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut dropped = pass.demand.dropped.clone();
        let (mut changed, rows) = self.settle(
            book,
            &pass.plan,
            &pass.demand.touched,
            pass.upper,
            &mut dropped,
        );
        changed.retain(|(t, _)| !pass.settled.contains(t) || grown.contains(t));
        // Rows written at other times hold counts as of their `computed_at`:
        // only what changed is written, and a reload decays from there.
        let cursor = format!("{:.6}", pass.upper);
        let marker = self.forecast.zip(book.profile_from).map(|(f, first)| {
            let marker = crate::forecast::marker_of(first, &cursor, f.profile.zone);
            (f.profile, marker)
        });
        let profile = marker
            .as_ref()
            .map(|(profile, marker)| pool_targets::ProfileStep {
                after: pass.after,
                upper: pass.upper,
                profile: *profile,
                marker: (crate::forecast::CURSOR, marker),
            });
        let mut conn = self.refiller.db.conn().await?;
        let moved = pool_targets::apply(
            &mut conn,
            &rows,
            &dropped,
            profile,
            (CURSOR, &pass.from, &cursor),
        )
        .await?;
        if !moved {
            return Ok(None);
        }
        book.cursor = cursor;
        Ok(Some((changed, rows.len() + dropped.len())))
    }

    /// What a committed pass planned, published as metrics too.
    fn report(&self, book: &Book, pass: &Pass, changed: usize, written: usize) -> SizerReport {
        let tracked_total: i64 = book
            .templates
            .values()
            .map(|t| i64::from(t.levels.hold))
            .sum();
        let untracked = (pass.live - book.templates.len() as i64).max(0);
        let planned_items = tracked_total + untracked * i64::from(self.default_target());
        self.publish_metrics(book, planned_items, pass.upper);
        let report = SizerReport {
            skipped: false,
            templates: book.templates.len(),
            designs: pass.demand.designs,
            planned_items,
            changed,
            written,
            forecast: pass.forecast,
            governed: book.policies.len(),
            windows: pass.bounds.values().filter(|b| b.1).count(),
        };
        let m = &self.refiller.metrics;
        m.pool_policies.set(report.governed as i64);
        m.pool_windows.set(report.windows as i64);
        m.pool_forecasts.set(report.forecast as i64);
        report
    }

    /// Decays every tracked rate to `upper` and adds the designs made since
    /// the last pass (one range scan, and the facts of their templates).
    async fn absorb(
        &self,
        conn: &mut DbConn,
        book: &mut Book,
        upper: f64,
    ) -> Result<Absorbed, StoreError> {
        let (fast_tau, slow_tau) = (self.demand_fast_secs, self.demand_slow_secs);
        let new = pool_targets::designs_since(conn, book.upper, upper, fast_tau, slow_tau).await?;
        let gap = upper - book.upper;
        let deleted = pool_targets::deleted_since(conn, book.upper, upper).await?;
        for t in book.templates.values_mut() {
            t.fast *= (-gap / fast_tau).exp();
            t.slow *= (-gap / slow_tau).exp();
        }
        book.upper = upper;
        let ids: Vec<Uuid> = new.iter().map(|n| n.template_id).collect();
        let facts: HashMap<Uuid, pool_targets::TemplateFacts> =
            pool_targets::template_facts(conn, &ids)
                .await?
                .into_iter()
                .map(|f| (f.template_id, f))
                .collect();
        let mut out = Absorbed {
            designs: new.iter().map(|n| n.designs).sum(),
            touched: HashSet::new(),
            dropped: Vec::new(),
        };
        for id in deleted {
            if book.templates.remove(&TemplateId(id)).is_some() {
                out.dropped.push(id);
            }
        }
        for n in &new {
            let id = TemplateId(n.template_id);
            let Some(f) = facts.get(&n.template_id) else {
                // Deleted meanwhile: its pool goes with it.
                if book.templates.remove(&id).is_some() {
                    out.dropped.push(n.template_id);
                }
                continue;
            };
            let default = self.rule.target(None, upper - f.created_at);
            let t = book.templates.entry(id).or_insert(Tracked {
                created_at: f.created_at,
                images: f.images,
                fast: 0.0,
                slow: 0.0,
                last_design: None,
                levels: default,
                forecast: 0.0,
                woke: Some((n.first, 0)),
            });
            t.images = f.images;
            if let Some((_, designs)) = t.woke.as_mut() {
                *designs += n.designs;
            }
            t.fast += n.fast_sum;
            t.slow += n.slow_sum;
            t.last_design = Some(t.last_design.unwrap_or(0.0).max(n.last));
            out.touched.insert(id);
        }
        Ok(out)
    }

    /// Applies `plan` to the memory: the templates whose pool a refill
    /// changes now (a fill level raised, or a hold level lowered: whether
    /// it shrinks), the rows to write (changed or with new
    /// demand), and the templates back at their default that are no
    /// longer tracked (added to `dropped`).
    fn settle(
        &self,
        book: &mut Book,
        plan: &HashMap<TemplateId, PoolLevels>,
        touched: &HashSet<TemplateId>,
        upper: f64,
        dropped: &mut Vec<Uuid>,
    ) -> (Vec<(TemplateId, bool)>, Vec<PoolTargetRow>) {
        let mut changed: Vec<(TemplateId, bool)> = Vec::new();
        let mut rows = Vec::new();
        let now = chrono::Utc::now();
        for (id, levels) in plan {
            let t = book
                .templates
                .get_mut(id)
                .expect("planned templates are tracked");
            let (fast, slow) = self.rates(t, upper);
            // A refill grows a pool whose fill level rose and retires what
            // is above a lowered hold level; a lowered fill level alone
            // needs none (the next pops are not refilled).
            let (grown, shrunk) = (levels.fill > t.levels.fill, levels.hold < t.levels.hold);
            if grown || shrunk {
                changed.push((*id, shrunk));
            }
            let default = self.rule.target(None, upper - t.created_at);
            let idle = self.idle(t, upper);
            // Back to the default: dropped when idle, or (adaptive) when
            // its demand is nil. Fixed sizing keeps a row until idle, as
            // the default of an old template without one is the minimum.
            let nil = self.rule.adaptive && fast.max(slow).max(t.forecast) < NEGLIGIBLE_RATE;
            let idle = idle && t.forecast == 0.0;
            // Fixed sizing without the idle rule keeps rows only for what
            // policies set; governed templates stay (their windows move).
            let plain = !self.rule.adaptive && self.rule.idle.is_none();
            let governed = book.policies.get(id).is_some();
            if *levels == default && (idle || nil || plain) && !governed {
                book.templates.remove(id);
                dropped.push(id.0);
                continue;
            }
            if *levels != t.levels || touched.contains(id) {
                rows.push(PoolTargetRow {
                    template_id: id.0,
                    target: levels.fill,
                    hold: (levels.hold > levels.fill).then_some(levels.hold),
                    demand_fast: fast,
                    demand_slow: slow,
                    refill_secs: self.refill_secs(t),
                    computed_at: now,
                    last_design_at: t.last_design.and_then(to_time),
                    forecast: t.forecast,
                });
            }
            t.levels = *levels;
            if t.woke
                .is_some_and(|(first, _)| upper - first >= self.demand_fast_secs)
            {
                t.woke = None;
            }
        }
        (changed, rows)
    }

    /// Rebuilds the memory from the table (first pass, or another replica
    /// planned since this one's last pass).
    async fn load(&self, conn: &mut DbConn, stored: Option<String>) -> Result<Book, StoreError> {
        let rows = pool_targets::load_tracked(conn).await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.template_id).collect();
        let facts: HashMap<Uuid, pool_targets::TemplateFacts> =
            pool_targets::template_facts(conn, &ids)
                .await?
                .into_iter()
                .map(|f| (f.template_id, f))
                .collect();
        let now = pool_targets::read_horizon(conn, COMMIT_LAG_SECS).await?;
        let upper = match stored.as_deref().and_then(|s| s.parse::<f64>().ok()) {
            Some(upper) => upper,
            // Never planned incrementally: count the designs that can still
            // weigh (six slow time constants), once.
            None => now - 6.0 * self.demand_slow_secs,
        };
        let counted = stored.is_some();
        let (fast_tau, slow_tau) = (self.demand_fast_secs, self.demand_slow_secs);
        let templates = rows
            .into_iter()
            .filter_map(|r| {
                let f = facts.get(&r.template_id)?;
                // Stored rates -> decayed counts as of `upper`.
                let raw = |rate: f64, tau: f64| {
                    let age = (r.computed_at - f.created_at).max(1.0);
                    let count = rate * tau * (1.0 - (-age / tau).exp());
                    count * (-(upper - r.computed_at).max(0.0) / tau).exp()
                };
                let tracked = Tracked {
                    created_at: f.created_at,
                    images: f.images,
                    fast: if counted {
                        raw(r.demand_fast, fast_tau)
                    } else {
                        0.0
                    },
                    slow: if counted {
                        raw(r.demand_slow, slow_tau)
                    } else {
                        0.0
                    },
                    last_design: r.last_design_at,
                    levels: PoolLevels::new(r.target, r.hold),
                    forecast: r.forecast,
                    woke: None,
                };
                Some((TemplateId(r.template_id), tracked))
            })
            .collect();
        Ok(Book {
            cursor: stored.unwrap_or_default(),
            upper,
            templates,
            live: None,
            profile_from: None,
            policies: Policies::default(),
        })
    }

    /// Live templates: counted in full (with their images) at most every
    /// [`LIVE_COUNT_EVERY`], kept in step in between from the templates
    /// created and deleted since the last pass (index range scans). Returns
    /// the count and the mean images per template at the last full count.
    async fn live_templates(
        &self,
        conn: &mut DbConn,
        book: &mut Book,
        after: f64,
    ) -> Result<(i64, f64), StoreError> {
        // Fixed sizing without the idle rule plans only for policies: no
        // budget, no default share to count.
        if !self.rule.adaptive && self.rule.idle.is_none() {
            return Ok((0, 1.0));
        }
        match book.live {
            Some((n, images, at)) if at.elapsed() < LIVE_COUNT_EVERY => {
                let n = n + pool_targets::live_templates_delta(conn, after, book.upper).await?;
                book.live = Some((n, images, at));
                Ok((n, images))
            }
            _ => {
                let (n, images) = pool_targets::live_templates(conn).await?;
                let mean = images as f64 / n.max(1) as f64;
                book.live = Some((n, mean.max(1.0), std::time::Instant::now()));
                Ok((n, mean.max(1.0)))
            }
        }
    }

    /// The forecast for the coming slots: finds the profile built up to
    /// `through` (this pass's read position) or builds it, reads the rows
    /// that may matter, adds their templates to the memory and sets every
    /// tracked template's forecast. Returns the templates with a forecast.
    async fn forecast_pass(
        &self,
        conn: &mut DbConn,
        book: &mut Book,
        through: &str,
        upper: f64,
    ) -> Result<usize, StoreError> {
        for t in book.templates.values_mut() {
            t.forecast = 0.0;
        }
        let Some(forecaster) = self.forecast else {
            return Ok(0);
        };
        let first_week = match book.profile_from {
            Some(week) => week,
            None => {
                let retry = *self.forecast_retry.lock().expect("not poisoned");
                if retry.is_some_and(|at| std::time::Instant::now() < at) {
                    return Ok(0);
                }
                let built = forecaster
                    .ensure_built(conn, through, (CURSOR, &book.cursor))
                    .await;
                let built = built.inspect_err(|_| {
                    *self.forecast_retry.lock().expect("not poisoned") =
                        Some(std::time::Instant::now() + crate::forecast::RETRY_BUILD);
                })?;
                // Another replica's pass moved the cursor: this pass will
                // not commit; it plans without the forecast.
                let Some(week) = built else {
                    return Ok(0);
                };
                book.profile_from = Some(week);
                week
            }
        };
        // The clock, not the read horizon (which lags it by the commit lag).
        let now = upper + COMMIT_LAG_SECS;
        let lead = self.lead_secs(self.policy.max);
        let rows = forecaster
            .due(conn, now, lead, self.min_useful_rate())
            .await?;
        let new: Vec<Uuid> = rows
            .iter()
            .map(|r| r.template_id)
            .filter(|id| !book.templates.contains_key(&TemplateId(*id)))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for f in pool_targets::template_facts(conn, &new).await? {
            let id = TemplateId(f.template_id);
            let default = self.rule.target(None, upper - f.created_at);
            book.templates
                .insert(id, Tracked::without_demand(f.created_at, f.images, default));
        }
        let created: HashMap<TemplateId, f64> = rows
            .iter()
            .filter_map(|r| {
                let id = TemplateId(r.template_id);
                book.templates.get(&id).map(|t| (id, t.created_at))
            })
            .collect();
        let rates = forecaster.rates(&rows, now, first_week, &created);
        for (id, t) in book.templates.iter_mut() {
            t.forecast = rates.get(id).copied().unwrap_or(0.0);
        }
        Ok(rates.len())
    }

    /// Refreshes the operator policies and adds the templates they govern
    /// to the memory (a template without demand is planned all the same:
    /// a window must grow its pool before its first design).
    async fn policy_pass(
        &self,
        conn: &mut DbConn,
        book: &mut Book,
        upper: f64,
    ) -> Result<(), StoreError> {
        book.policies
            .refresh(conn, upper, self.max_policy_templates)
            .await?;
        let new: Vec<Uuid> = book
            .policies
            .governed()
            .map(|(id, _)| *id)
            .filter(|id| !book.templates.contains_key(id))
            .map(|id| id.0)
            .collect();
        for chunk in new.chunks(10_000) {
            for f in pool_targets::template_facts(conn, chunk).await? {
                let id = TemplateId(f.template_id);
                let default = self.rule.target(None, upper - f.created_at);
                book.templates
                    .insert(id, Tracked::without_demand(f.created_at, f.images, default));
            }
        }
        Ok(())
    }

    /// Each governed template's bounds now, windows due within the time
    /// its pool takes to grow to the window's size counted as on; and
    /// whether a window is on or due.
    fn policy_bounds(&self, book: &Book) -> HashMap<TemplateId, (Bounds, bool)> {
        // The clock, not the read horizon (which lags it by the commit lag).
        let Some(now) = to_time(book.upper + COMMIT_LAG_SECS) else {
            return HashMap::new();
        };
        // Windows of many templates fill at once, at the worker's copy
        // capacity: a lead is at least the time to copy every window's
        // items of every governed template (an upper bound: they may not
        // all start together).
        let copies: f64 = book
            .policies
            .governed()
            .filter_map(|(id, g)| {
                let t = book.templates.get(id)?;
                Some(
                    f64::from(policies::largest_window(g.policy.policy())) * t.images.max(1) as f64,
                )
            })
            .sum();
        let all_at_once = self.interval.as_secs_f64()
            + copies * self.refiller.estimates.copy_secs() / self.copy_concurrency.max(1) as f64;
        book.policies
            .governed()
            .filter_map(|(id, g)| {
                let t = book.templates.get(id)?;
                let items = policies::largest_window(g.policy.policy());
                let lead = self
                    .lead_secs_for(items, t.images)
                    .max(all_at_once)
                    .min(MAX_LEAD.as_secs_f64());
                let lead = Duration::from_secs_f64(lead.max(0.0));
                let b = policies::bounds(&g.policy, self.rule.min, self.policy.max, now, lead);
                let window = g.policy.window_at(now, lead).is_some();
                Some((*id, (b, window)))
            })
            .collect()
    }

    /// Seconds ahead a pool must start growing to hold `items` more at a
    /// time: one pass, plus the refills of that many items (copied
    /// `items_in_flight` at a time) at the measured refill time of the
    /// catalogue's largest items (a conservative lead).
    pub fn lead_secs(&self, items: i32) -> f64 {
        self.lead_secs_for(items, LEAD_IMAGES)
    }

    /// The same for a template of `images` images.
    /// At most [`MAX_LEAD`]: a lead past it would count every window and
    /// slot as due.
    pub fn lead_secs_for(&self, items: i32, images: i64) -> f64 {
        let rounds = (f64::from(items.max(1)) / self.refiller.items_in_flight.max(1) as f64).ceil();
        let lead = self.interval.as_secs_f64()
            + rounds
                * self
                    .refiller
                    .estimates
                    .refill_secs(images, self.item_parallelism);
        lead.min(MAX_LEAD.as_secs_f64())
    }

    /// The smallest demand (designs/s) whose pool is larger than the
    /// default, at the slowest refill a lead assumes (the larger the refill
    /// time, the smaller that rate): below it a forecast changes nothing.
    fn min_useful_rate(&self) -> f64 {
        let refill_secs = self
            .refiller
            .estimates
            .refill_secs(LEAD_IMAGES, self.item_parallelism)
            .max(1e-3);
        let size = |rate: f64| {
            sizing::size_for(
                &self.policy,
                &Demand {
                    template: TemplateId(Uuid::nil()),
                    rate,
                    refill_secs,
                    current: None,
                    objects: 1,
                    bounds: None,
                },
            )
        };
        let floor = self.policy.min;
        let (mut lo, mut hi) = (0.0f64, 1e4f64);
        if size(hi) <= floor {
            return hi;
        }
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if size(mid) > floor {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    fn default_target(&self) -> i32 {
        if self.rule.adaptive || self.rule.idle.is_some() {
            self.rule.min
        } else {
            self.rule.fixed
        }
    }

    /// Designs per second (fast, slow) of a tracked template as of `upper`;
    /// a template younger than a few time constants has not had the time to
    /// build its counts up, so they are divided by `1 - exp(-age/tau)`.
    ///
    /// A template woken from no recent demand is likewise only seconds into
    /// its fast estimate, which would read a burst at a fraction of its rate
    /// for a time constant, and a single design as a rate: for that first
    /// time constant the fast rate is `(n - 1) / elapsed` (elapsed at least
    /// a second) over the `n` designs since its first instead, once there
    /// are [`WAKE_EVIDENCE`] -- a busy template's rate from its first
    /// seconds, and nothing from one or two designs (a long-tail
    /// template's design, or a double submit, copies no extra item).
    fn rates(&self, t: &Tracked, upper: f64) -> (f64, f64) {
        let age = (upper - t.created_at).max(1.0);
        let rate = |count: f64, tau: f64| count / (tau * (1.0 - (-age / tau).exp()));
        let fast = match t.woke {
            Some((first, n)) if upper - first < self.demand_fast_secs => {
                if n >= WAKE_EVIDENCE {
                    (n - 1) as f64 / (upper - first).max(1.0)
                } else {
                    0.0
                }
            }
            _ => rate(t.fast, self.demand_fast_secs),
        };
        (fast, rate(t.slow, self.demand_slow_secs))
    }

    fn idle(&self, t: &Tracked, upper: f64) -> bool {
        self.rule.idle.is_some_and(|idle| {
            let since = t.last_design.unwrap_or(t.created_at);
            upper - since > idle.as_secs_f64()
        })
    }

    fn refill_secs(&self, t: &Tracked) -> f64 {
        self.refiller
            .estimates
            .refill_secs(t.images, self.item_parallelism)
    }

    /// Levels of the tracked templates: the policy's (adaptive) or the
    /// fixed target, and the minimum for idle ones. Under a budget, the
    /// templates without a row hold their minimum first.
    fn plan(
        &self,
        book: &Book,
        live: i64,
        mean_images: f64,
        bounds: &HashMap<TemplateId, (Bounds, bool)>,
    ) -> HashMap<TemplateId, PoolLevels> {
        let upper = book.upper;
        let mut plan = if self.rule.adaptive {
            let demands: Vec<Demand> = book
                .templates
                .iter()
                .map(|(id, t)| {
                    let (fast, slow) = self.rates(t, upper);
                    // A recurring peak coming: its forecast is demand now,
                    // for growing and against shrinking alike.
                    Demand {
                        template: *id,
                        rate: fast.max(slow).max(t.forecast),
                        refill_secs: self.refill_secs(t),
                        current: Some(t.levels.hold),
                        objects: t.images.max(1) as u64,
                        bounds: bounds.get(id).map(|(b, _)| (b.floor, b.ceiling)),
                    }
                })
                .collect();
            // The templates without a row hold their minimum first: their
            // objects, at the catalogue's mean images per template.
            let untracked = (live - book.templates.len() as i64).max(0) as f64;
            let floors =
                (untracked * f64::from(self.policy.min.max(0)) * mean_images).ceil() as u64;
            let policy = Policy {
                budget: self.policy.budget.map(|b| b.saturating_sub(floors)),
                ..self.policy
            };
            sizing::plan(&policy, &demands)
        } else {
            book.templates
                .keys()
                .map(|id| (*id, PoolLevels::at(self.rule.fixed)))
                .collect()
        };
        for (id, levels) in plan.iter_mut() {
            let t = &book.templates[id];
            let policy = bounds.get(id).map(|(b, _)| *b);
            if self.idle(t, upper) && t.forecast == 0.0 {
                let cap = policy.map_or(self.rule.min, |b| b.floor.max(self.rule.min));
                *levels = levels.min(cap);
            }
            // Adaptive plans bound policies themselves (under the budget).
            if let (false, Some(b)) = (self.rule.adaptive, policy) {
                *levels = PoolLevels::at(b.clamp(levels.fill));
            }
        }
        plan
    }

    /// Pools change now, not at the next reconciler pass: shrinking ones
    /// first, so the slots they give back are free (under a budget) when the
    /// growing ones reserve. The pass waits for them at most
    /// [`REFILL_WAIT`]: a large fill (a window over thousands of templates)
    /// goes on in the background while the next passes plan, and a
    /// template whose refill is still under way is not started again.
    async fn refill_changed(&self, changed: &[(TemplateId, bool)]) {
        let mut order: Vec<(TemplateId, bool)> = {
            let mut running = self.refilling.lock().expect("not poisoned");
            changed
                .iter()
                .filter(|(t, _)| running.insert(*t))
                .copied()
                .collect()
        };
        if order.is_empty() {
            return;
        }
        order.sort_by_key(|(_, shrinking)| !*shrinking);
        let (refiller, running) = (self.refiller.clone(), self.refilling.clone());
        let parallelism = self.refill_parallelism.max(1);
        let work = tokio::spawn(async move {
            for shrinking in [true, false] {
                let refills: Vec<_> = order
                    .iter()
                    .filter(|(_, s)| *s == shrinking)
                    .map(|(t, _)| {
                        let (refiller, running, t) = (refiller.clone(), running.clone(), *t);
                        async move {
                            if let Err(e) = refiller.refill(t).await {
                                tracing::warn!(template = %t, error = %Chain(&e), "refill after a new target failed");
                            }
                            running.lock().expect("not poisoned").remove(&t);
                        }
                    })
                    .collect();
                stream::iter(refills)
                    .buffer_unordered(parallelism)
                    .collect::<Vec<()>>()
                    .await;
            }
        });
        if tokio::time::timeout(REFILL_WAIT, work).await.is_err() {
            tracing::info!("refills after new targets go on in the background");
        }
    }

    fn publish_metrics(&self, book: &Book, planned_items: i64, upper: f64) {
        let m = &self.refiller.metrics;
        m.pool_planned_total.set(planned_items);
        m.pool_budget
            .set(self.policy.budget.map_or(0, |b| b as i64));
        let mut by_demand: Vec<(TemplateId, i32, f64)> = book
            .templates
            .iter()
            .map(|(id, t)| {
                let (fast, slow) = self.rates(t, upper);
                (*id, t.levels.fill, fast.max(slow))
            })
            .collect();
        by_demand.sort_by(|a, b| b.2.total_cmp(&a.2));
        m.planned_target.reset();
        m.demand.reset();
        for (id, target, rate) in by_demand.into_iter().take(self.metrics_templates) {
            let t = id.to_string();
            m.planned_target
                .with_label_values(&[&t])
                .set(i64::from(target));
            m.demand.with_label_values(&[&t]).set(rate * 60.0);
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
                Err(e) => tracing::warn!(error = %Chain(&e), "sizing pass failed"),
            }
        }
    }
}

fn to_time(secs: f64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64)
}

/// Caps each planned hold level at what the pool still holds (never below
/// its fill level): pops between the levels are not refilled, so a hold
/// level the designs have used up would otherwise keep claiming budget,
/// show items that are gone, and -- as the next pass's starting point --
/// keep a lowered fill level from being refilled at once. Returns the held
/// templates whose pool is between its levels (no refill would change it).
async fn cap_holds(
    conn: &mut DbConn,
    plan: &mut HashMap<TemplateId, PoolLevels>,
) -> Result<HashSet<TemplateId>, StoreError> {
    let mut settled = HashSet::new();
    let held: Vec<TemplateId> = plan
        .iter()
        .filter(|(_, l)| l.hold > l.fill)
        .map(|(id, _)| *id)
        .collect();
    for chunk in held.chunks(10_000) {
        let live = pool_items::live_counts(conn, chunk).await?;
        for id in chunk {
            let have = live.get(id).copied().unwrap_or(0);
            let levels = plan.get_mut(id).expect("held templates are planned");
            let have = i32::try_from(have).unwrap_or(i32::MAX);
            levels.hold = levels.hold.min(have.max(levels.fill));
            if (levels.fill..=levels.hold).contains(&have) {
                settled.insert(*id);
            }
        }
    }
    Ok(settled)
}
