//! Scenario: fixed N=4 pools vs adaptive sizing, on 200 templates whose
//! popularity follows a Zipf law, with a burst on a cold template halfway.
//! For each mode a fresh set of templates and a worker process in that mode;
//! the same open-loop load, first for `ramp_secs` unmeasured (the pools
//! leave their starting sizes behind), then measured: warm hit rate (overall
//! and in the burst), pooled objects held (sampled), and S3 copies made per
//! design.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use prewarm_store::db::Db;
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use crate::load::{closed_loop, open_loop, Outcome, RunResult};
use crate::services::{release_binary, Service};
use crate::setup::Bench;

/// How to read the sizing scenario's burst and copy figures.
pub const SIZING_NOTE: &str = "The burst's 30 requests arrive at once on a template whose demand was near zero, so no sizing can react within it: it gets what the pool held when it began -- 4 items with fixed sizing, `pool.min` = 1 with adaptive sizing. Adaptive sizing gives those 3 hits up for the head templates' larger pools and far fewer pooled objects; raise `pool.min` where bursts on cold templates matter more. Copies per design are above 4 (the images per design) for adaptive sizing because pools grown during the run still hold their items at its end, and items retired when demand decays were copied for nothing.";

pub struct Params {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
    pub templates: usize,
    pub images: usize,
    pub zipf_s: f64,
    pub rate: f64,
    pub secs: f64,
    /// The same load before the measured `secs`, not measured.
    pub ramp_secs: f64,
    pub burst: usize,
    /// Worker environment (stack endpoints, S3 behind the latency proxy).
    pub worker_env: Vec<(String, String)>,
    pub db: Db,
}

pub struct ModeResult {
    pub mode: &'static str,
    pub load: RunResult,
    pub burst: RunResult,
    /// Mean and peak of ready items x images across the run.
    pub mean_objects: f64,
    pub peak_objects: i64,
    /// Objects held when the load started (after the prefill), and when the
    /// measured part of it started (after the ramp-up).
    pub prefill_objects: i64,
    pub start_objects: i64,
    /// S3 copies made during the run (pool items created x images, plus
    /// cold copies) per design served.
    pub copies_per_design: f64,
}

const FIXED: &[(&str, &str)] = &[
    ("PREWARM_POOL__SIZING", "fixed"),
    ("PREWARM_POOL__TARGET", "4"),
];
const ADAPTIVE: &[(&str, &str)] = &[
    ("PREWARM_POOL__SIZING", "adaptive"),
    ("PREWARM_POOL__MIN", "1"),
    ("PREWARM_POOL__MAX", "32"),
    ("PREWARM_POOL__DEMAND_FAST_SECS", "3"),
    ("PREWARM_POOL__DEMAND_SLOW_SECS", "120"),
    ("PREWARM_POOL__SIZING_INTERVAL_MS", "1000"),
];

pub async fn run(p: &Params, root: &Path, log_dir: &Path) -> anyhow::Result<Vec<ModeResult>> {
    let mut results = Vec::new();
    for (mode, settings) in [("fixed N=4", FIXED), ("adaptive", ADAPTIVE)] {
        results.push(run_mode(p, root, log_dir, mode, settings).await?);
    }
    Ok(results)
}

async fn run_mode(
    p: &Params,
    root: &Path,
    log_dir: &Path,
    mode: &'static str,
    settings: &[(&str, &str)],
) -> anyhow::Result<ModeResult> {
    let worker = spawn_worker(p, root, log_dir, mode, settings)?;
    let mut ids = Vec::with_capacity(p.templates);
    for i in 0..p.templates {
        ids.push(upload(p, &format!("zipf {mode} {i}")).await?);
    }
    prefill(p, mode, &ids).await?;
    let prefill_objects = ready_items(&p.db, &ids).await? * p.images as i64;
    let ids = Arc::new(ids);
    let weights = Arc::new(zipf_cdf(p.templates, p.zipf_s));
    let ramp = zipf_load(p, p.ramp_secs, ids.clone(), weights.clone()).await;
    eprintln!(
        "sizing {mode}: ramp-up {:.0} s, warm {:.1}% (not measured)",
        p.ramp_secs,
        ramp.warm_share() * 100.0
    );

    let start_objects = ready_items(&p.db, &ids).await? * p.images as i64;
    let started_at: chrono::DateTime<chrono::Utc> = chrono::Utc::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = spawn_sampler(p, ids.clone(), samples.clone());
    // The burst lands halfway, on the least popular template.
    let burst = spawn_burst(p, &ids);
    let load = zipf_load(p, p.secs, ids.clone(), weights).await;
    let burst = burst.await.context("burst task")?;
    sampler.abort();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let items_made = items_created(&p.db, &ids, started_at).await?;
    worker.stop().await;

    let designs = (load.ok + burst.ok) as f64;
    let cold = (load.ok - load.warm + burst.ok - burst.warm) as f64;
    let copies = (items_made as f64 + cold) * p.images as f64;
    Ok(ModeResult {
        mode,
        mean_objects: samples.iter().sum::<i64>() as f64 / samples.len().max(1) as f64,
        peak_objects: samples.iter().copied().max().unwrap_or(0),
        start_objects,
        copies_per_design: copies / designs.max(1.0),
        prefill_objects,
        load,
        burst,
    })
}

/// Starts a worker process in `mode` (its `settings` over the worker
/// environment), in a consumer group of its own.
fn spawn_worker(
    p: &Params,
    root: &Path,
    log_dir: &Path,
    mode: &'static str,
    settings: &[(&str, &str)],
) -> anyhow::Result<Service> {
    let mut env = p.worker_env.clone();
    let group = format!("bench-sizing-{}", Uuid::new_v4().simple());
    env.push(("PREWARM_WORKER__GROUP_ID".into(), group));
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Service::spawn(
        &format!("warmup-worker ({mode})"),
        &release_binary(root, "warmup-worker"),
        &env,
        &log_dir.join(format!(
            "bench-worker-sizing-{}.log",
            mode.split(' ').next().unwrap_or(mode)
        )),
    )
}

/// Waits (up to 600 s) until the worker has filled every template in `ids`
/// to its starting size.
async fn prefill(p: &Params, mode: &str, ids: &[String]) -> anyhow::Result<()> {
    // Prefill: every template at its starting size (4, or the minimum 1).
    let start_size = if mode == "adaptive" { 1 } else { 4 };
    let deadline = Instant::now() + Duration::from_secs(600);
    while ready_items(&p.db, ids).await? < (p.templates * start_size) as i64 {
        if Instant::now() > deadline {
            bail!("{mode}: prefill did not finish");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Samples the objects held by the ready items of `ids` into `samples`
/// every 500 ms, until aborted.
fn spawn_sampler(
    p: &Params,
    ids: Arc<Vec<String>>,
    samples: Arc<Mutex<Vec<i64>>>,
) -> tokio::task::JoinHandle<()> {
    let (db, images) = (p.db.clone(), p.images);
    tokio::spawn(async move {
        loop {
            if let Ok(n) = ready_items(&db, &ids).await {
                if let Ok(mut s) = samples.lock() {
                    s.push(n * images as i64);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Halfway through the load, `p.burst` concurrent designs on the least
/// popular template (the last of `ids`).
fn spawn_burst(p: &Params, ids: &[String]) -> tokio::task::JoinHandle<RunResult> {
    let (http, base, key, cold) = (
        p.http.clone(),
        p.base.clone(),
        p.key.clone(),
        ids[p.templates - 1].clone(),
    );
    let n = p.burst;
    let delay = Duration::from_secs_f64(p.secs / 2.0);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let next = Arc::new(AtomicUsize::new(0));
        closed_loop(n, n, move || {
            let _ = next.fetch_add(1, Ordering::Relaxed);
            let (http, base, key, cold) = (http.clone(), base.clone(), key.clone(), cold.clone());
            async move { design(&http, &base, &key, &cold).await }
        })
        .await
    })
}

/// `secs` of the open loop of designs whose templates are drawn from `ids`
/// by the cumulative Zipf `weights`.
async fn zipf_load(
    p: &Params,
    secs: f64,
    ids: Arc<Vec<String>>,
    weights: Arc<Vec<f64>>,
) -> RunResult {
    let (http, base, key) = (p.http.clone(), p.base.clone(), p.key.clone());
    open_loop(p.rate, Duration::from_secs_f64(secs), move || {
        let u: f64 = rand::rng().random();
        let i = weights.partition_point(|&c| c < u).min(ids.len() - 1);
        let (http, base, key, id) = (http.clone(), base.clone(), key.clone(), ids[i].clone());
        async move { design(&http, &base, &key, &id).await }
    })
    .await
}

/// Cumulative Zipf weights of ranks 1..=n.
pub fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

async fn design(http: &reqwest::Client, base: &str, key: &str, template: &str) -> Outcome {
    crate::client::post_design(http, base, key, template).await
}

async fn upload(p: &Params, name: &str) -> anyhow::Result<String> {
    let metadata = json!({"name": name, "category": "zipf", "visibility": "private"});
    crate::client::upload_template(&p.http, &p.base, &p.key, &metadata, p.images, 2048).await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn uuids(ids: &[String]) -> Vec<Uuid> {
    ids.iter().filter_map(|s| s.parse().ok()).collect()
}

async fn ready_items(db: &Db, ids: &[String]) -> anyhow::Result<i64> {
    let mut conn = db.conn().await?;
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pool_items WHERE template_id = ANY($1) AND state = 'ready'",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(uuids(ids))
    .get_result(&mut conn)
    .await?;
    Ok(c.n)
}

async fn items_created(
    db: &Db,
    ids: &[String],
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<i64> {
    let mut conn = db.conn().await?;
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pool_items WHERE template_id = ANY($1) AND created_at >= $2",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(uuids(ids))
    .bind::<Timestamptz, _>(since)
    .get_result(&mut conn)
    .await?;
    Ok(c.n)
}

/// The markdown section of the report.
pub fn report(p: &Params, results: &[ModeResult]) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "{} templates of {} images, popularity Zipf (s = {}); an open loop of {} designs/s, first for {} s \
         unmeasured (ramp-up: every pool starts at its mode's starting size, adaptive sizing with no demand \
         known), then for {} s measured, with halfway a burst of {} concurrent designs on the least popular \
         template. Each mode gets fresh templates and its own worker (S3 copies through the proxy). Adaptive: \
         min 1, max 32, demand time constants 3 s and 120 s, plan every 1 s, no budget. Pooled objects: after \
         the prefill / when the measured part starts / its mean / its peak.\n\n",
        p.templates, p.images, p.zipf_s, p.rate, p.ramp_secs, p.secs, p.burst
    ));
    md.push_str("| mode | designs | warm hit rate | burst hit rate | pooled objects: prefill / start / mean / peak | copies per design | p50 ms | p99 ms |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        md.push_str(&format!(
            "| {} | {} | {:.1}% | {:.1}% | {} / {} / {:.0} / {} | {:.2} | {:.2} | {:.2} |\n",
            r.mode,
            r.load.count() + r.burst.count(),
            r.load.warm_share() * 100.0,
            r.burst.warm_share() * 100.0,
            r.prefill_objects,
            r.start_objects,
            r.mean_objects,
            r.peak_objects,
            r.copies_per_design,
            r.load.ms(0.5),
            r.load.ms(0.99),
        ));
    }
    if let [fixed, adaptive] = results {
        let better_hits = adaptive.load.warm_share() > fixed.load.warm_share();
        let fewer_objects = adaptive.mean_objects < fixed.mean_objects;
        md.push_str(&format!(
            "\nGoal (a higher warm hit rate than fixed N=4 with fewer pooled objects): hit rate {:.1}% vs {:.1}% \
             ({}), mean pooled objects {:.0} vs {:.0} ({}).\n",
            adaptive.load.warm_share() * 100.0,
            fixed.load.warm_share() * 100.0,
            if better_hits { "higher" } else { "**not higher**" },
            adaptive.mean_objects,
            fixed.mean_objects,
            if fewer_objects { "fewer" } else { "**not fewer**" },
        ));
        let (se, resolved) = separation(&fixed.load, &adaptive.load);
        md.push_str(&format!(
            "\nThe difference in hit rate is {:+.1} points with a standard error of {:.1} ({} misses of {} vs {} of {}): {}.\n",
            (adaptive.load.warm_share() - fixed.load.warm_share()) * 100.0,
            se * 100.0,
            adaptive.load.ok - adaptive.load.warm,
            adaptive.load.ok,
            fixed.load.ok - fixed.load.warm,
            fixed.load.ok,
            if resolved {
                "more than twice that, so this run ranks the two modes"
            } else {
                "within twice that, so a run of this length cannot rank the two modes"
            },
        ));
        md.push_str(&format!("\n{SIZING_NOTE}\n"));
    }
    md
}

/// The standard error of the difference between two runs' warm hit rates
/// (two independent proportions), and whether the difference is more than
/// twice it.
pub fn separation(a: &RunResult, b: &RunResult) -> (f64, bool) {
    let var = |r: &RunResult| {
        let p = r.warm_share();
        p * (1.0 - p) / (r.ok.max(1) as f64)
    };
    let se = (var(a) + var(b)).sqrt();
    let diff = (a.warm_share() - b.warm_share()).abs();
    (se, diff > 2.0 * se)
}

/// Scenario 7: Adaptive sizing vs fixed N=4: Zipf popularity and a burst.
pub async fn sizing(b: &Bench) -> anyhow::Result<(Vec<ModeResult>, Params)> {
    let (sizes, http, base, client, env, db_url, root, run_dir) = (
        &b.sizes, &b.http, &b.base, &b.client, &b.env, &b.db_url, &b.root, &b.run_dir,
    );
    let sizing_params = Params {
        http: http.clone(),
        base: base.clone(),
        key: client.key.clone(),
        templates: 200,
        images: 4,
        zipf_s: 1.1,
        rate: sizes.sizing_rate,
        secs: sizes.sizing_secs,
        ramp_secs: sizes.sizing_ramp_secs,
        burst: 30,
        worker_env: env.clone(),
        db: Db::connect(db_url, 4, Duration::from_secs(5))?,
    };
    let sizing = run(&sizing_params, root, run_dir).await?;
    for r in &sizing {
        eprintln!(
            "sizing {}: warm {:.1}%, burst {:.1}%, objects mean {:.0}, copies/design {:.2}",
            r.mode,
            r.load.warm_share() * 100.0,
            r.burst.warm_share() * 100.0,
            r.mean_objects,
            r.copies_per_design
        );
    }

    Ok((sizing, sizing_params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ok: u64, warm: u64) -> RunResult {
        RunResult {
            ok,
            warm,
            ..RunResult::empty()
        }
    }

    #[test]
    fn one_miss_in_600_does_not_rank_two_modes_but_20_in_2400_do() {
        // The quick run's figures: 3 and 2 misses of 630.
        let (se, resolved) = separation(&run(630, 627), &run(630, 628));
        assert!(!resolved, "se {se}");
        // The full run's: 5 and 24 misses of 2430.
        let (se, resolved) = separation(&run(2430, 2425), &run(2430, 2406));
        assert!(resolved, "se {se}");
        assert!((se - 0.0022).abs() < 0.0003, "se {se}");
    }
}
