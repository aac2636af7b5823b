//! Scenario: sizing strategies on a large catalogue against the offline
//! optimum. Zipf(1.1) demand over 10^4 templates of 1 to 8 images, a daily
//! peak on a subset (weeks of it seeded as backdated designs, the peak
//! itself played live), a scheduled launch of a new template, and a burst
//! nobody announced -- one trace ([`trace`]), played to fixed N=1 and N=4,
//! adaptive, and adaptive with forecast and schedules, and given whole to
//! the oracle ([`crate::oracle`]), which has the same object budget and
//! copy capacity and bounds what any strategy could have served warm.
//!
//! Each strategy runs on a fresh database, bucket and Redis prefix
//! ([`Isolated`]) seeded with its idle steady state and the history
//! ([`seed`]), with its own API and worker (S3 through the latency proxy);
//! the ledger is sampled every second and read after the run ([`ledger`]).
//! [`report`] writes the section.
//!
//! `PREWARM_BENCH_CATALOGUE_STRATEGIES=fixed1,fixed4,adaptive,forecast`
//! (any of them, comma-separated) runs only those, for iterating;
//! `PREWARM_BENCH_CATALOGUE_KEEP_SECS` sets the adaptive ones' `pool.keep_secs`,
//! `PREWARM_BENCH_CATALOGUE_MISS_TARGET` their `pool.miss_target`.

pub mod ledger;
pub mod report;
pub mod seed;
pub mod trace;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use hdrhistogram::Histogram;
use prewarm_store::db::{self, Db};
use prewarm_store::objects::ObjectStore;
use prewarm_store::pool_index::PoolIndex;
use serde_json::json;
use shared_domain::ids::TemplateId;

pub use report::report;
use trace::{Kind, Params, Trace};

use crate::load::Outcome;
use crate::oracle::{self, Problem, Schedule};
use crate::services::{release_binary, Service};
use crate::setup::{
    drop_run, free_port, new_tenant, s3_settings, set, start_api, Bench, REDIS_URL,
    WORKER_COPY_CONCURRENCY,
};
use prewarm_testkit::fault_proxy::Faults;
use prewarm_testkit::isolated::Isolated;

/// From the history's anchor to the run's start: the worker starts (ready
/// within about a second of the seeding's end), joins its consumer group
/// and makes its first plans meanwhile.
const LEAD: Duration = Duration::from_secs(8);
/// After the last design: refills under way (well under a second each)
/// land before the ledger is read.
const SETTLE: Duration = Duration::from_secs(3);

/// One sizing strategy: its worker's (and API's) pool settings.
#[derive(Debug, Clone)]
pub struct Strategy {
    /// Its name in `PREWARM_BENCH_CATALOGUE_STRATEGIES` and in log files.
    pub key: &'static str,
    pub name: &'static str,
    /// Items per template in its idle steady state.
    pub start_items: usize,
    /// Sets the launch's window through the admin API before the run.
    pub schedules: bool,
    pub settings: Vec<(&'static str, String)>,
}

/// The adaptive strategies' slow demand time constant: the scenario plays
/// a day's events within minutes, so its time constants are the defaults
/// scaled down (the slow one 1800 s -> 120 s).
const DEMAND_SLOW_SECS: u64 = 120;

/// `pool.keep_secs` of the adaptive strategies: scaled with the slow time
/// constant it acts on (the defaults' keep/slow ratio), or
/// `PREWARM_BENCH_CATALOGUE_KEEP_SECS` (for comparing holding policies).
pub fn keep_secs() -> u64 {
    let d = prewarm_store::settings::PoolSettings::default();
    std::env::var("PREWARM_BENCH_CATALOGUE_KEEP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d.keep_secs * DEMAND_SLOW_SECS / d.demand_slow_secs.max(1))
}

/// `pool.miss_target` of the adaptive strategies: the default, or
/// `PREWARM_BENCH_CATALOGUE_MISS_TARGET` (for trading storage for warm share).
pub fn miss_target() -> f64 {
    std::env::var("PREWARM_BENCH_CATALOGUE_MISS_TARGET")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|t: &f64| *t > 0.0 && *t < 1.0)
        .unwrap_or(prewarm_store::settings::PoolSettings::default().miss_target)
}

/// The four strategies; the adaptive ones under `budget` objects.
pub fn strategies(budget: u64) -> Vec<Strategy> {
    let fixed = |n: usize| {
        vec![
            ("PREWARM_POOL__SIZING", "fixed".to_string()),
            ("PREWARM_POOL__TARGET", n.to_string()),
        ]
    };
    // The sizing scenario's demand time constants and plan interval.
    let adaptive = |forecast: bool| {
        vec![
            ("PREWARM_POOL__SIZING", "adaptive".to_string()),
            ("PREWARM_POOL__MIN", "1".to_string()),
            ("PREWARM_POOL__MAX", "32".to_string()),
            ("PREWARM_POOL__BUDGET_OBJECTS", budget.to_string()),
            ("PREWARM_POOL__FORECAST", forecast.to_string()),
            ("PREWARM_POOL__DEMAND_FAST_SECS", "3".to_string()),
            (
                "PREWARM_POOL__DEMAND_SLOW_SECS",
                DEMAND_SLOW_SECS.to_string(),
            ),
            ("PREWARM_POOL__SIZING_INTERVAL_MS", "1000".to_string()),
            ("PREWARM_POOL__KEEP_SECS", keep_secs().to_string()),
            ("PREWARM_POOL__MISS_TARGET", miss_target().to_string()),
        ]
    };
    vec![
        Strategy {
            key: "fixed1",
            name: "fixed N=1",
            start_items: 1,
            schedules: false,
            settings: fixed(1),
        },
        Strategy {
            key: "fixed4",
            name: "fixed N=4",
            start_items: 4,
            schedules: false,
            settings: fixed(4),
        },
        Strategy {
            key: "adaptive",
            name: "adaptive",
            start_items: 1,
            schedules: false,
            settings: adaptive(false),
        },
        Strategy {
            key: "forecast",
            name: "adaptive + forecast + schedules",
            start_items: 1,
            schedules: true,
            settings: adaptive(true),
        },
    ]
}

/// What one strategy's run measured.
#[derive(Debug, Clone)]
pub struct StrategyRun {
    pub strategy: Strategy,
    /// Each design of the trace, in its order.
    pub outcomes: Vec<Outcome>,
    /// Each design of the trace's tail (the background going on).
    pub tail: Vec<Outcome>,
    /// (seconds from the start, the pools) about every second.
    pub samples: Vec<(f64, ledger::Sample)>,
    pub copies: ledger::Copies,
    /// The CopyObject calls through the proxy during the run, microseconds.
    pub copy_times: Histogram<u64>,
    /// The trace's designs served by copy, by the API's cause
    /// (`prewarm_designs_created_total{served_from="copy"}`, read after the
    /// trace and before its tail).
    pub misses: Vec<(String, f64)>,
    /// The refills designs asked for during the trace: how many, and their
    /// mean lag in milliseconds (read with the misses).
    pub refill_lag: Option<(f64, f64)>,
    /// How late the run started after the time the history was anchored to.
    pub start_skew_secs: f64,
    pub seed_secs: f64,
    pub history_rows: usize,
    pub wall_secs: f64,
}

/// The oracle's two bounds (see [`crate::oracle`]).
#[derive(Debug, Clone)]
pub struct OracleRun {
    pub lower: Schedule,
    /// Upper bounds on the warm designs of each of [`windows`].
    pub upper: [usize; WINDOWS],
}

/// Everything the section shows.
#[derive(Debug, Clone)]
pub struct CatalogueRun {
    pub params: Params,
    pub trace: Trace,
    pub budget: u64,
    pub slots: usize,
    pub delay: Duration,
    /// The copy time the oracle was given: the median CopyObject measured.
    pub copy_us: i64,
    pub strategies: Vec<StrategyRun>,
    pub oracle: OracleRun,
    pub wall_secs: f64,
}

/// How many figures [`windows`] selects designs for.
pub const WINDOWS: usize = 5;

/// Which designs of the trace each figure counts: all of them, the peak
/// subset's in the peak's first 30 s, the launch template's in the
/// launch's first 30 s, the burst, and all but the burst (what foresight
/// of announced and recurring demand can serve: nothing but knowing the
/// trace serves an unannounced burst on a template without demand).
pub fn windows(p: &Params, t: &Trace) -> [Vec<bool>; WINDOWS] {
    let of = |f: &dyn Fn(&trace::Event) -> bool| t.events.iter().map(f).collect::<Vec<bool>>();
    [
        of(&|_| true),
        of(&|e| t.in_peak_start(p, e)),
        of(&|e| t.in_launch_start(p, e)),
        of(&|e| e.kind == Kind::Burst),
        of(&|e| e.kind != Kind::Burst),
    ]
}

/// Runs the scenario at the bench's sizes.
pub async fn catalogue(b: &Bench) -> anyhow::Result<CatalogueRun> {
    let started = Instant::now();
    let s = &b.sizes;
    let params = Params::new(
        s.catalogue_templates,
        s.catalogue_secs,
        s.catalogue_history_hours,
    );
    let trace = Trace::generate(&params);
    let budget = 2 * trace.objects_at_one_item();
    let chosen = selected(strategies(budget))?;
    // A setting the worker does not know fails here, before any seeding.
    for strategy in &chosen {
        let (env, _) = envs(b, &Isolated::new("catalogue", &b.run.pg_server), strategy);
        warmup_worker::settings::load_from(env.into_iter()).with_context(|| {
            format!(
                "strategy {}: the worker refuses its settings",
                strategy.name
            )
        })?;
    }
    eprintln!(
        "catalogue: {} templates, {} designs over {} s, budget {budget} objects",
        params.templates,
        trace.events.len(),
        params.secs
    );
    let before = b.proxy.faults.read().map(|f| f.clone()).unwrap_or_default();
    b.proxy.set(Faults {
        delay: b.args.delay,
        ..Faults::default()
    });
    let mut runs = Vec::new();
    for strategy in chosen {
        let run = Isolated::new("catalogue", &b.run.pg_server);
        let result = run_strategy(b, &params, &trace, &strategy, &run).await;
        let dropped = drop_run(&run, &b.run_dir).await;
        if result.is_err() || dropped.is_err() {
            b.proxy.set(before.clone());
        }
        let result = result.with_context(|| format!("catalogue: {}", strategy.name))?;
        dropped?;
        eprintln!(
            "catalogue {}: warm {:.1}% in {:.0} s",
            strategy.name,
            share(&result.outcomes, &vec![true; trace.events.len()]).0 * 100.0,
            result.wall_secs
        );
        runs.push(result);
    }
    b.proxy.set(before);

    let mut times = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for r in &runs {
        times.add(&r.copy_times)?;
    }
    let copy_us = if times.is_empty() {
        b.args.delay.as_micros() as i64
    } else {
        times.value_at_quantile(0.5) as i64
    };
    let oracle = run_oracle(&params, &trace, budget, copy_us)?;
    Ok(CatalogueRun {
        params,
        trace,
        budget,
        slots: WORKER_COPY_CONCURRENCY,
        delay: b.args.delay,
        copy_us,
        strategies: runs,
        oracle,
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

/// The strategies `PREWARM_BENCH_CATALOGUE_STRATEGIES` names (all without it).
fn selected(all: Vec<Strategy>) -> anyhow::Result<Vec<Strategy>> {
    let Ok(keys) = std::env::var("PREWARM_BENCH_CATALOGUE_STRATEGIES") else {
        return Ok(all);
    };
    let keys: Vec<&str> = keys.split(',').map(str::trim).collect();
    if let Some(unknown) = keys.iter().find(|k| !all.iter().any(|s| s.key == **k)) {
        bail!("PREWARM_BENCH_CATALOGUE_STRATEGIES: no strategy `{unknown}` (fixed1, fixed4, adaptive, forecast)");
    }
    Ok(all.into_iter().filter(|s| keys.contains(&s.key)).collect())
}

/// The oracle on the trace: the feasible schedule and the upper bounds.
pub fn run_oracle(p: &Params, t: &Trace, budget: u64, copy_us: i64) -> anyhow::Result<OracleRun> {
    let requests: Vec<(i64, usize)> = t
        .events
        .iter()
        .map(|e| ((e.at * 1e6).round() as i64, e.template))
        .collect();
    let problem = Problem {
        requests: &requests,
        images: &t.images,
        slots: WORKER_COPY_CONCURRENCY,
        copy_us: copy_us.max(1),
        budget,
        horizon_us: (p.secs * 1e6) as i64,
    };
    let lower = oracle::feasible(&problem)?;
    let w = windows(p, t);
    let upper = std::array::from_fn(|k| oracle::upper_bound(&problem, &|j| w[k][j]));
    Ok(OracleRun { lower, upper })
}

/// Warm share of the designs `window` selects (errors left out), and
/// (warm, served, errors).
pub fn share(outcomes: &[Outcome], window: &[bool]) -> (f64, (usize, usize, usize)) {
    let (mut warm, mut ok, mut errors) = (0, 0, 0);
    for (o, _) in outcomes.iter().zip(window).filter(|(_, &w)| w) {
        if o.ok {
            ok += 1;
            warm += usize::from(o.warm);
        } else {
            errors += 1;
        }
    }
    (warm as f64 / ok.max(1) as f64, (warm, ok, errors))
}

/// `PREWARM_*` settings of a service.
type Env = Vec<(String, String)>;

/// The services' environment of `strategy` on `run` (S3 through the
/// proxy), and the same with S3 direct (the seed's copies).
fn envs(b: &Bench, run: &Isolated, strategy: &Strategy) -> (Env, Env) {
    let mut env = b.env.clone();
    for (k, v) in run.env() {
        // The bench's admin token stays (it made the tenants' API calls).
        if k != "PREWARM_ADMIN_TOKEN" {
            set(&mut env, &k, v);
        }
    }
    for (k, v) in &strategy.settings {
        set(&mut env, k, v);
    }
    // Garbage collection as good as off: nothing is garbage within its
    // grace here, and a pass lists the bucket on s3s-fs (seconds of CPU per
    // page of a large bucket) during the run. One pass of one page, at
    // start: an interval of 0 does not turn it off (the worker clamps it to
    // 1 s, so it collects back to back).
    set(&mut env, "PREWARM_WORKER__GC_INTERVAL_SECS", 86_400);
    set(&mut env, "PREWARM_WORKER__GC_PAGES_PER_PASS", 1);
    let mut direct = env.clone();
    set(&mut direct, "PREWARM_S3__ENDPOINT", &b.args.s3);
    (env, direct)
}

/// One strategy, start to end, on `run`'s fresh resources.
async fn run_strategy(
    b: &Bench,
    p: &Params,
    trace: &Trace,
    strategy: &Strategy,
    run: &Isolated,
) -> anyhow::Result<StrategyRun> {
    let wall = Instant::now();
    let (env, direct) = envs(b, run, strategy);
    let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", run.pg_server)).await?;
    run.create_database(&mut admin).await?;
    drop(admin);
    db::run_migrations(&run.db_url()).await?;
    let dbh = Db::connect(&run.db_url(), 8, Duration::from_secs(10))?;
    let objects = ObjectStore::new(&s3_settings(&direct)?).await;
    objects.ensure_bucket().await?;
    let index = PoolIndex::new(
        prewarm_store::redis::Redis::connect(
            REDIS_URL,
            None,
            &run.redis_prefix,
            4,
            Duration::from_secs(5),
        )
        .await?,
    );
    let log = |what: &str| {
        b.run_dir
            .join(format!("bench-{what}-catalogue-{}.log", strategy.key))
    };
    // The API's metrics, for the misses by cause (the worker keeps its own port).
    let ops_port = crate::setup::free_port()?;
    let mut api_env = env.clone();
    set(&mut api_env, "PREWARM_SERVER__METRICS_PORT", ops_port);
    let (api, base) = start_api(
        &b.root,
        &api_env,
        &format!("template-api (catalogue, {})", strategy.name),
        &log("api"),
    )
    .await?;
    let (company, key) = new_tenant(&b.http, &base, &b.run.admin_token, "catalogue").await?;

    let seeding = Instant::now();
    let ids = seed::catalogue(
        &dbh,
        &objects,
        &index,
        company.0,
        trace,
        strategy.start_items,
    )
    .await?;
    // The history is anchored to the run's planned start, so that the
    // peak's time of day is the live peak's; the worker reads it at start.
    let start_at = Utc::now() + TimeDelta::from_std(LEAD)?;
    let history_rows = seed::history(&dbh, company.0, &ids, &trace.history(p), start_at).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    eprintln!(
        "catalogue {}: seeded in {seed_secs:.1} s ({history_rows} designs of history)",
        strategy.name
    );
    let (worker, worker_port) = start_worker(b, &env, strategy, &log("worker")).await?;
    if strategy.schedules {
        set_launch_window(b, &base, ids[trace.launch], p, start_at).await?;
    }
    tokio::time::sleep((start_at - Utc::now()).to_std().unwrap_or_default()).await;

    let pooled_at_start = ledger::pools(&dbh).await?;
    let (t0, started) = (tokio::time::Instant::now(), Utc::now());
    let start_skew_secs = (started - start_at).as_seconds_f64();
    let _ = b.proxy.take_copy_times();
    let watched = ledger::Watched {
        peak: trace.peak.iter().map(|&t| ids[t].0).collect(),
        launch: ids[trace.launch].0,
        burst: ids[trace.burst_template].0,
    };
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = spawn_sampler(dbh.clone(), watched, t0, samples.clone());
    let outcomes = play(b, &base, &key, &ids, &trace.events, t0).await;
    sampler.abort();
    let misses = crate::services::miss_causes(&b.http, ops_port).await;
    let refill_lag = crate::services::refill_lag(&b.http, worker_port).await;
    // Copies are counted after the tail: what the pools held at the
    // trace's end has been used by the designs that came, or retired.
    let tail = play(b, &base, &key, &ids, &trace.tail, t0).await;
    tokio::time::sleep(SETTLE).await;
    worker.stop().await;
    let copy_times = b.proxy.take_copy_times();
    let copies =
        ledger::copies_since(&dbh, started, &pooled_at_start, strategy.start_items as i64).await?;
    api.stop().await;
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(StrategyRun {
        strategy: strategy.clone(),
        outcomes,
        tail,
        samples,
        copies,
        copy_times,
        misses,
        refill_lag,
        start_skew_secs,
        seed_secs,
        history_rows,
        wall_secs: wall.elapsed().as_secs_f64(),
    })
}

/// Starts the strategy's worker in its own consumer group and waits until
/// it is ready (the worker and its metrics port); a worker that exits
/// (settings it refuses) fails the run with its log.
async fn start_worker(
    b: &Bench,
    env: &[(String, String)],
    strategy: &Strategy,
    log: &std::path::Path,
) -> anyhow::Result<(Service, u16)> {
    let port = free_port()?;
    let mut env = env.to_vec();
    set(&mut env, "PREWARM_WORKER__HTTP_PORT", port);
    let worker = Service::spawn(
        &format!("warmup-worker (catalogue, {})", strategy.name),
        &release_binary(&b.root, "warmup-worker"),
        &env,
        log,
    )?;
    let spawned = Instant::now();
    let deadline = spawned + Duration::from_secs(60);
    loop {
        let ready = b
            .http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            eprintln!(
                "catalogue {}: worker ready in {:.1?}",
                strategy.name,
                spawned.elapsed()
            );
            return Ok((worker, port));
        }
        let exited = worker.pid().is_none_or(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'))
            })
        });
        if exited || Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the worker ({}) is not ready ({}); its log ends:\n{}",
                strategy.name,
                if exited { "it exited" } else { "60 s" },
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The launch announced in advance: a one-off window on the launch
/// template, from the launch for `launch_window_secs`, asking
/// `launch_target` items. Anything but 200 fails the scenario (a missing
/// endpoint included: this strategy is not what it says without it).
async fn set_launch_window(
    b: &Bench,
    base: &str,
    template: TemplateId,
    p: &Params,
    start_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let from = start_at + TimeDelta::milliseconds((p.launch_at * 1e3) as i64);
    let to = from + TimeDelta::milliseconds((p.launch_window_secs * 1e3) as i64);
    let body = json!({"windows": [{
        "start": from.to_rfc3339_opts(SecondsFormat::Millis, true),
        "end": to.to_rfc3339_opts(SecondsFormat::Millis, true),
        "target": p.launch_target,
    }]});
    let resp = b
        .http
        .put(format!("{base}/admin/templates/{template}/pool-policy"))
        .bearer_auth(&b.run.admin_token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.as_u16() != 200 {
        bail!("PUT /admin/templates/{template}/pool-policy with {body} answered {status}: {text}");
    }
    Ok(())
}

/// Samples the pools about every second from `t0`, until aborted.
fn spawn_sampler(
    dbh: Db,
    watched: ledger::Watched,
    t0: tokio::time::Instant,
    samples: Arc<Mutex<Vec<(f64, ledger::Sample)>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(t0, Duration::from_secs(1));
        loop {
            tick.tick().await;
            let at = t0.elapsed().as_secs_f64();
            if let Ok(s) = ledger::sample(&dbh, &watched).await {
                if let Ok(mut all) = samples.lock() {
                    all.push((at, s));
                }
            }
        }
    })
}

/// Plays `events` from `t0`: each design sent at its offset (the burst's
/// all at once), whatever the answers before it; their outcomes in order.
async fn play(
    b: &Bench,
    base: &str,
    key: &str,
    ids: &[TemplateId],
    events: &[trace::Event],
    t0: tokio::time::Instant,
) -> Vec<Outcome> {
    let mut tasks = Vec::with_capacity(events.len());
    for e in events {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(e.at)).await;
        let (http, base, key) = (b.http.clone(), base.to_string(), key.to_string());
        let template = ids[e.template].to_string();
        tasks.push(tokio::spawn(async move {
            crate::client::post_design(&http, &base, &key, &template).await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await.unwrap_or(Outcome {
            ok: false,
            warm: false,
        }));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_bounds_every_window_of_the_full_trace() {
        let p = Params::new(10_000, 240.0, 24.0);
        let t = Trace::generate(&p);
        let o = run_oracle(&p, &t, 2 * t.objects_at_one_item(), 155_000).unwrap();
        for (k, window) in windows(&p, &t).iter().enumerate() {
            let of = window.iter().filter(|&&w| w).count();
            let lower = (0..window.len())
                .filter(|&j| window[j] && o.lower.warm[j])
                .count();
            assert!(of > 0, "window {k} is empty");
            assert!(
                lower <= o.upper[k] && o.upper[k] <= of,
                "window {k}: {lower} {} {of}",
                o.upper[k]
            );
        }
        assert!(o.lower.peak_objects <= 2 * t.objects_at_one_item());
    }

    #[test]
    fn a_share_leaves_errors_out() {
        let o = |ok, warm| Outcome { ok, warm };
        let outcomes = [
            o(true, true),
            o(true, false),
            o(false, false),
            o(true, true),
        ];
        let (s, counts) = share(&outcomes, &[true, true, true, false]);
        assert_eq!(counts, (1, 2, 1));
        assert!((s - 0.5).abs() < 1e-9);
    }

    #[test]
    fn every_strategy_is_named_once() {
        let all = strategies(100);
        let keys: std::collections::HashSet<&str> = all.iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), all.len());
        assert!(all.iter().filter(|s| s.schedules).all(|s| s
            .settings
            .contains(&("PREWARM_POOL__FORECAST", "true".into()))));
    }
}
