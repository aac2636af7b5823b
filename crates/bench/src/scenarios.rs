//! The scenarios of `prewarm-bench`, in the order they run; each returns
//! what the report shows of it (`markdown.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prewarm_store::db::Db;
use shared_domain::ids::TemplateId;

use crate::fault_proxy::Faults;
use crate::floor::Floor;
use crate::load::{closed_loop, open_loop, RunResult};
use crate::services::{cpu_by_command, cpu_per_request, release_binary, Service};
use crate::setup::{
    free_port, set, wait_pool, wait_ready, Api, Bench, IMAGES, WORKER_COPY_CONCURRENCY,
};

/// One sustained-load run: its rate, its result, and the pool depth over
/// time (seconds, items).
pub type SteadyRun = (f64, RunResult, Vec<(f64, i64)>);

/// CPU per request, by run label and process.
pub type CpuRows = Vec<(String, Vec<(String, f64)>)>;

pub struct Prefill {
    pub template: TemplateId,
    pub warm_items: usize,
    pub fill_time: Duration,
    pub copies_per_sec: f64,
    pub worker_peak: Option<f64>,
}

/// Scenario 1: A 30-image template's pool filled to cover every warm request below
/// (worker straight to S3), then the worker stops.
pub async fn prefill(b: &Bench) -> anyhow::Result<Prefill> {
    let (sizes, direct_s3, suffix, root, run_dir, index, client) = (
        &b.sizes,
        &b.direct_s3,
        &b.suffix,
        &b.root,
        &b.run_dir,
        &b.index,
        &b.client,
    );
    let warm_items = sizes.warm_items();
    eprintln!("prefill: {warm_items} items x {IMAGES} images");
    let mut prefill_env = direct_s3.clone();
    set(&mut prefill_env, "PREWARM_POOL__TARGET", warm_items);
    set(
        &mut prefill_env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-prefill-{suffix}"),
    );
    set(&mut prefill_env, "PREWARM_WORKER__COPY_CONCURRENCY", 128);
    set(&mut prefill_env, "PREWARM_WORKER__ITEMS_IN_FLIGHT", 16);
    let prefill_worker = Service::spawn(
        "warmup-worker (prefill)",
        &release_binary(root, "warmup-worker"),
        &prefill_env,
        &run_dir.join("bench-worker-prefill.log"),
    )?;
    let template_a = client.upload_template("seed case").await?;
    let fill_time = wait_pool(
        index,
        template_a,
        warm_items as i64,
        Duration::from_secs(1800),
    )
    .await?;
    let prefill_peak = prefill_worker.stop().await;
    let copies_per_sec = (warm_items * IMAGES) as f64 / fill_time.as_secs_f64();
    eprintln!("prefill done in {fill_time:.1?} ({copies_per_sec:.0} copies/s)");

    Ok(Prefill {
        template: template_a,
        warm_items,
        fill_time,
        copies_per_sec,
        worker_peak: prefill_peak,
    })
}

/// Scenario 2: The physical floor (Redis pop + the warm model's transaction,
/// no HTTP) at 1, 8, 64 clients, and the old model's floor (a design and its
/// 30 image rows) at 1 and 64 clients beside it.
pub async fn floor(
    b: &mut Bench,
    template_a: TemplateId,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<(Vec<(usize, RunResult)>, Vec<(usize, RunResult)>)> {
    let index = b.index.clone();
    let sizes_floor = b.sizes.floor;
    let old_sizes = [(1, sizes_floor[0].1), (64, sizes_floor[2].1 / 2)];
    let floor = Floor {
        db: b.dbh.clone().context("the floor runs once")?,
        index: index.clone(),
        companies: Arc::new(b.tenant_companies.clone()),
        next: Arc::default(),
        template: template_a,
        images: 0,
        list: TemplateId::new(),
    };
    floor
        .prepare(
            sizes_floor
                .iter()
                .chain(old_sizes.iter())
                .map(|(_, n)| n)
                .sum(),
        )
        .await?;
    let mut runs = (Vec::new(), Vec::new());
    for (images, sizes) in [(0, &sizes_floor[..]), (IMAGES, &old_sizes[..])] {
        let model = Floor {
            images,
            ..floor.clone()
        };
        for &(clients, n) in sizes {
            let f = model.clone();
            let before = cpu_by_command();
            let r = closed_loop(clients, n, move || {
                let f = f.clone();
                async move { f.one().await }
            })
            .await;
            let label = if images == 0 {
                format!("floor, {clients} clients")
            } else {
                format!("old floor ({images} image rows), {clients} clients")
            };
            cpu_rows.push((
                label.clone(),
                cpu_per_request(&before, &cpu_by_command(), r.count()),
            ));
            eprintln!("{label}: p50 {:.2} ms, {:.0}/s", r.ms(0.5), r.throughput());
            if images == 0 {
                runs.0.push((clients, r));
            } else {
                runs.1.push((clients, r));
            }
        }
    }

    // The floor's 66 connections go back, so the API processes below fit in
    // Postgres' default 100.
    drop(floor);
    drop(b.dbh.take());

    Ok(runs)
}

pub struct Warm {
    pub runs: Vec<(usize, RunResult)>,
    /// 64 clients of one company.
    pub single: RunResult,
    pub open: RunResult,
}

/// Scenario 3: The warm path over HTTP: closed loops, one company, open loop.
pub async fn warm(
    b: &Bench,
    template_a: TemplateId,
    cpu_rows: &mut CpuRows,
) -> anyhow::Result<Warm> {
    let (sizes, client) = (&b.sizes, &b.client);
    let mut warm_runs = Vec::new();
    for (clients, n) in sizes.warm {
        let pick = b.many();
        let before = cpu_by_command();
        let r = closed_loop(clients, n, move || {
            let c = pick();
            async move { c.post_design(template_a).await }
        })
        .await;
        cpu_rows.push((
            format!("warm, {clients} clients"),
            cpu_per_request(&before, &cpu_by_command(), r.count()),
        ));
        eprintln!(
            "warm {clients}: p50 {:.2} ms, {:.0}/s, warm {:.1}%",
            r.ms(0.5),
            r.throughput(),
            r.warm_share() * 100.0
        );
        warm_runs.push((clients, r));
    }
    // The same at 64 clients from one company: its plan-limit row serializes them.
    let c = client.clone();
    let single = closed_loop(64, sizes.warm[1].1, move || {
        let c = c.clone();
        async move { c.post_design(template_a).await }
    })
    .await;
    eprintln!(
        "warm 64, one company: p50 {:.2} ms, {:.0}/s",
        single.ms(0.5),
        single.throughput()
    );
    let pick = b.many();
    let open = open_loop(
        sizes.open_rate,
        Duration::from_secs_f64(sizes.open_secs),
        move || {
            let c = pick();
            async move { c.post_design(template_a).await }
        },
    )
    .await;
    eprintln!(
        "warm open-loop {}/s: p99 {:.2} ms",
        sizes.open_rate,
        open.ms(0.99)
    );

    Ok(Warm {
        runs: warm_runs,
        single,
        open,
    })
}

/// Scenario 4: The seed's case, cold: pool off, every design copied through the proxy.
pub async fn cold(b: &Bench, template_a: TemplateId) -> anyhow::Result<(RunResult, Option<f64>)> {
    let (args, sizes, env, root, run_dir, proxy) =
        (&b.args, &b.sizes, &b.env, &b.root, &b.run_dir, &b.proxy);
    proxy.set(Faults {
        delay: args.delay,
        ..Faults::default()
    });
    let cold_port = free_port()?;
    let mut cold_env = env.clone();
    set(&mut cold_env, "PREWARM_SERVER__PORT", cold_port);
    set(&mut cold_env, "PREWARM_SERVER__WORKERS", 2);
    set(&mut cold_env, "PREWARM_POOL__ENABLED", false);
    let cold_api = Service::spawn(
        "template-api (pool off)",
        &release_binary(root, "template-api"),
        &cold_env,
        &run_dir.join("bench-api-cold.log"),
    )?;
    let cold_base = format!("http://127.0.0.1:{cold_port}");
    wait_ready(&cold_base).await?;
    let pick = b.many();
    let cold = closed_loop(64, sizes.cold, move || {
        let c = Api {
            base: cold_base.clone(),
            ..pick()
        };
        async move { c.post_design(template_a).await }
    })
    .await;
    let cold_peak = cold_api.stop().await;
    eprintln!("cold 64: p95 {:.0} ms", cold.ms(0.95));

    Ok((cold, cold_peak))
}

pub struct Steady {
    /// (rate, run, pool depth samples (s, items)) per rate.
    pub runs: Vec<SteadyRun>,
    pub worker_peak: Option<f64>,
    /// The worker's copy capacity, designs/s.
    pub capacity: f64,
}

/// Scenario 5: Sustained load below and above the worker's copy capacity.
pub async fn steady(b: &Bench) -> anyhow::Result<Steady> {
    let (args, sizes, env, suffix, root, run_dir, index, client) = (
        &b.args, &b.sizes, &b.env, &b.suffix, &b.root, &b.run_dir, &b.index, &b.client,
    );
    let mut steady_env = env.clone();
    set(&mut steady_env, "PREWARM_POOL__TARGET", 4);
    set(
        &mut steady_env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-steady-{suffix}"),
    );
    let worker = Service::spawn(
        "warmup-worker",
        &release_binary(root, "warmup-worker"),
        &steady_env,
        &run_dir.join("bench-worker.log"),
    )?;
    let template_b = client.upload_template("steady").await?;
    wait_pool(index, template_b, 4, Duration::from_secs(120)).await?;
    let capacity = WORKER_COPY_CONCURRENCY as f64 / args.delay.as_secs_f64() / IMAGES as f64;
    let mut steady = Vec::new();
    for rate in [sizes.low_rate, sizes.high_rate] {
        wait_pool(index, template_b, 4, Duration::from_secs(120)).await?;
        let depth = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sampler = {
            let depth = depth.clone();
            let index = index.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                loop {
                    if let Ok(n) = index.len(template_b, 1).await {
                        if let Ok(mut d) = depth.lock() {
                            d.push((t0.elapsed().as_secs_f64(), n));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let c = client.clone();
        let r = open_loop(
            rate,
            Duration::from_secs_f64(sizes.steady_secs),
            move || {
                let c = c.clone();
                async move { c.post_design(template_b).await }
            },
        )
        .await;
        sampler.abort();
        let samples = depth.lock().map(|d| d.clone()).unwrap_or_default();
        eprintln!("steady {rate}/s: warm {:.1}%", r.warm_share() * 100.0);
        steady.push((rate, r, samples));
    }
    let worker_peak = worker.stop().await;

    Ok(Steady {
        runs: steady,
        worker_peak,
        capacity,
    })
}

/// Scenario 6: Similar templates: uncached vs cached, and a stampede on one cold key.
pub async fn similar(b: &Bench) -> anyhow::Result<crate::similar::Results> {
    let (sizes, http, base, client, recommender_url) =
        (&b.sizes, &b.http, &b.base, &b.client, &b.recommender_url);
    let similar = crate::similar::run(&crate::similar::Params {
        http: http.clone(),
        base: base.clone(),
        key: client.key.clone(),
        recommender: recommender_url.clone(),
        sources: sizes.similar_sources,
        rate: sizes.open_rate,
        secs: sizes.similar_secs,
        stampede: 1000,
    })
    .await?;
    eprintln!(
        "similar: uncached p50 {:.0} ms, cached p99 {:.2} ms, stampede upstream calls {}",
        similar.uncached.ms(0.5),
        similar.cached.ms(0.99),
        similar.stampede_calls
    );
    Ok(similar)
}

/// Scenario 7: Adaptive sizing vs fixed N=4: Zipf popularity and a burst.
pub async fn sizing(
    b: &Bench,
) -> anyhow::Result<(Vec<crate::sizing::ModeResult>, crate::sizing::Params)> {
    let (sizes, http, base, client, env, db_url, root, run_dir) = (
        &b.sizes, &b.http, &b.base, &b.client, &b.env, &b.db_url, &b.root, &b.run_dir,
    );
    let sizing_params = crate::sizing::Params {
        http: http.clone(),
        base: base.clone(),
        key: client.key.clone(),
        templates: 200,
        images: 4,
        zipf_s: 1.1,
        rate: sizes.sizing_rate,
        secs: sizes.sizing_secs,
        burst: 30,
        worker_env: env.clone(),
        db: Db::connect(db_url, 4, Duration::from_secs(5))?,
    };
    let sizing = crate::sizing::run(&sizing_params, root, run_dir).await?;
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

/// Scenario 8: a large catalogue with a long tail: the background passes'
/// cost by catalogue size (`scale`).
pub async fn scale(
    b: &Bench,
) -> anyhow::Result<(Vec<crate::scale::SizeResult>, crate::scale::Params)> {
    let params = crate::scale::Params {
        sizes: b.sizes.scale.to_vec(),
        rate: b.sizes.scale_rate,
        secs: b.sizes.scale_secs,
        zipf_s: 1.1,
        env: b.direct_s3.clone(),
        pg: b.pg.clone(),
        suffix: b.suffix.clone(),
        admin_token: b.admin_token.clone(),
        http: b.http.clone(),
    };
    let results = crate::scale::run(&params, &b.root, &b.run_dir).await?;
    Ok((results, params))
}

/// One image count's warm runs: 1 client, 64 clients, and CPU per design
/// (all processes) at 64 clients.
pub struct ImagesRun {
    pub images: usize,
    pub one: RunResult,
    pub many: RunResult,
    pub cpu_ms: f64,
}

/// Scenario 3b: the warm path with templates of 1 and 200 images (30 is the
/// main template): is its cost flat in the image count?
pub async fn images(b: &Bench, cpu_rows: &mut CpuRows) -> anyhow::Result<Vec<ImagesRun>> {
    let (n1, n64) = b.sizes.images_requests;
    let mut out = Vec::new();
    for images in [1usize, 200] {
        let items = n1 + n64 + 20;
        let template = prefill_template(b, images, items).await?;
        let pick = b.many();
        let one = closed_loop(1, n1, move || {
            let c = pick();
            async move { c.post_design(template).await }
        })
        .await;
        let pick = b.many();
        let before = cpu_by_command();
        let many = closed_loop(64, n64, move || {
            let c = pick();
            async move { c.post_design(template).await }
        })
        .await;
        let cpu = cpu_per_request(&before, &cpu_by_command(), many.count());
        let cpu_ms = cpu.iter().map(|(_, ms)| ms).sum();
        cpu_rows.push((format!("warm, {images} images, 64 clients"), cpu));
        eprintln!(
            "warm {images} images: p50@1 {:.2} ms, {:.0}/s @64, {cpu_ms:.2} ms CPU",
            one.ms(0.5),
            many.throughput()
        );
        out.push(ImagesRun {
            images,
            one,
            many,
            cpu_ms,
        });
    }
    Ok(out)
}

/// A template of `images` images with `items` ready items (a worker straight
/// to S3, stopped once they are ready).
async fn prefill_template(b: &Bench, images: usize, items: usize) -> anyhow::Result<TemplateId> {
    let mut env = b.direct_s3.clone();
    set(&mut env, "PREWARM_POOL__TARGET", items);
    set(
        &mut env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-images-{images}-{}", b.suffix),
    );
    set(&mut env, "PREWARM_WORKER__COPY_CONCURRENCY", 128);
    set(&mut env, "PREWARM_WORKER__ITEMS_IN_FLIGHT", 16);
    set(&mut env, "PREWARM_WORKER__RECONCILE_INTERVAL_MS", 0);
    let worker = Service::spawn(
        &format!("warmup-worker (prefill {images} images)"),
        &release_binary(&b.root, "warmup-worker"),
        &env,
        &b.run_dir.join(format!("bench-worker-images-{images}.log")),
    )?;
    let template = b
        .client
        .upload_template_of(&format!("{images} images"), images)
        .await?;
    wait_pool(&b.index, template, items as i64, Duration::from_secs(1800)).await?;
    worker.stop().await;
    Ok(template)
}

/// The seed's headline at the seed's own load: an open loop of
/// `headline_rate` designs/s (below the worker's copy capacity), warm (pool
/// on, the prefilled template) and cold (pool off, every copy through the
/// latency proxy) side by side.
pub async fn headline(b: &Bench, template_a: TemplateId) -> anyhow::Result<(RunResult, RunResult)> {
    let (rate, secs) = (b.sizes.headline_rate, b.sizes.headline_secs);
    let pick = b.many();
    let warm = open_loop(rate, Duration::from_secs_f64(secs), move || {
        let c = pick();
        async move { c.post_design(template_a).await }
    })
    .await;
    b.proxy.set(Faults {
        delay: b.args.delay,
        ..Faults::default()
    });
    let port = free_port()?;
    let mut env = b.env.clone();
    set(&mut env, "PREWARM_SERVER__PORT", port);
    set(&mut env, "PREWARM_SERVER__WORKERS", 2);
    set(&mut env, "PREWARM_POOL__ENABLED", false);
    let api = Service::spawn(
        "template-api (pool off, headline)",
        &release_binary(&b.root, "template-api"),
        &env,
        &b.run_dir.join("bench-api-headline.log"),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await?;
    let pick = b.many();
    let cold = open_loop(rate, Duration::from_secs_f64(secs), move || {
        let c = Api {
            base: base.clone(),
            ..pick()
        };
        async move { c.post_design(template_a).await }
    })
    .await;
    api.stop().await;
    b.proxy.set(Faults::default());
    eprintln!(
        "headline {rate}/s: warm p95 {:.2} ms, cold p95 {:.0} ms",
        warm.ms(0.95),
        cold.ms(0.95)
    );
    Ok((warm, cold))
}
