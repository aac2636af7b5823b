//! `prewarm-bench [--quick] [--out docs/benchmarks.md] [--plot docs/bench-latency.png] [--delay-ms 150]`
//!
//! Runs Prewarm's scenarios against the real stack (`make up`) and the release
//! binaries, and writes the report. Scenarios, in order:
//! 1. prefill: a 30-image template's pool filled to cover every warm request
//!    below (worker straight to S3, no injected latency), then the worker stops
//!    so the two cores measure the request path alone;
//! 2. the physical floor (Redis pop + design transaction, no HTTP) at 1, 8, 64 clients;
//! 3. the warm path over HTTP at 1, 8, 64 clients, and open-loop at 200 requests/s;
//! 4. the seed's case: the same template, pool off (every design copied through
//!    the latency-injecting proxy), 64 clients; warm/cold p95 ratio;
//! 5. sustained open-loop load below and above the worker's copy capacity
//!    (worker copying through the proxy): warm hit rate and pool depth over time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prewarm_bench::client;
use prewarm_bench::fault_proxy::{FaultProxy, Faults};
use prewarm_bench::floor::Floor;
use prewarm_bench::load::{closed_loop, open_loop, Outcome, RunResult};
use prewarm_bench::report;
use prewarm_bench::services::{cpu_by_command, cpu_per_request, release_binary, Service};
use prewarm_store::db::{self, Db};
use prewarm_store::objects::ObjectStore;
use prewarm_store::pool_index::PoolIndex;
use serde_json::{json, Value};
use shared_domain::ids::{CompanyId, TemplateId};

const IMAGES: usize = 30;
/// Small objects: a CopyObject costs the same round trip whatever the size,
/// and the prefill writes hundreds of thousands of them to local disk.
const IMAGE_BYTES: usize = 8 * 1024;
const WORKER_COPY_CONCURRENCY: usize = 64;
/// Companies the load is spread over.
const TENANTS: usize = 64;

/// How to read the sizing scenario's burst and copy figures.
const SIZING_NOTE: &str = "The burst's 30 requests arrive at once on a template whose demand was near zero, so no sizing can react within it: it gets what the pool held when it began -- 4 items with fixed sizing, `pool.min` = 1 with adaptive sizing. Adaptive sizing gives those 3 hits up for the head templates' larger pools and far fewer pooled objects; raise `pool.min` where bursts on cold templates matter more. Copies per design are above 4 (the images per design) for adaptive sizing because pools grown during the run still hold their items at its end, and items retired when demand decays were copied for nothing.";

struct Sizes {
    floor: [(usize, usize); 3],
    warm: [(usize, usize); 3],
    open_rate: f64,
    open_secs: f64,
    cold: usize,
    steady_secs: f64,
    low_rate: f64,
    high_rate: f64,
    similar_sources: usize,
    similar_secs: f64,
    sizing_rate: f64,
    sizing_secs: f64,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                floor: [(1, 300), (8, 1500), (64, 3000)],
                warm: [(1, 150), (8, 400), (64, 800)],
                open_rate: 200.0,
                open_secs: 2.0,
                cold: 128,
                steady_secs: 10.0,
                low_rate: 5.0,
                high_rate: 30.0,
                similar_sources: 16,
                similar_secs: 3.0,
                sizing_rate: 30.0,
                sizing_secs: 20.0,
            }
        } else {
            Sizes {
                floor: [(1, 1000), (8, 5000), (64, 10000)],
                warm: [(1, 400), (8, 1500), (64, 2500)],
                open_rate: 200.0,
                open_secs: 8.0,
                cold: 320,
                steady_secs: 30.0,
                low_rate: 5.0,
                high_rate: 30.0,
                similar_sources: 40,
                similar_secs: 10.0,
                sizing_rate: 40.0,
                sizing_secs: 60.0,
            }
        }
    }

    fn warm_items(&self) -> usize {
        // The closed-loop runs, the one-company run (as long as the 8-client
        // run), the open loop, and a margin.
        self.warm.iter().map(|(_, n)| n).sum::<usize>()
            + self.warm[1].1
            + (self.open_rate * self.open_secs) as usize
            + 20
    }
}

struct Args {
    quick: bool,
    out: PathBuf,
    plot: PathBuf,
    delay: Duration,
    s3: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        quick: false,
        out: "docs/benchmarks.md".into(),
        plot: "docs/bench-latency.png".into(),
        delay: Duration::from_millis(150),
        s3: std::env::var("PREWARM_BENCH_S3").unwrap_or_else(|_| "http://127.0.0.1:9010".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--out" => a.out = it.next().context("--out PATH")?.into(),
            "--plot" => a.plot = it.next().context("--plot PATH")?.into(),
            "--delay-ms" => {
                a.delay = Duration::from_millis(it.next().context("--delay-ms N")?.parse()?)
            }
            "--s3" => a.s3 = it.next().context("--s3 URL")?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: impl ToString) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

/// One client of the API: posts designs and reports whether each was warm.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn post_design(&self, template: TemplateId) -> Outcome {
        client::post_design(&self.http, &self.base, &self.key, &template.to_string()).await
    }

    async fn upload_template(&self, name: &str) -> anyhow::Result<TemplateId> {
        let metadata = json!({"name": name, "category": "bench", "layout": {"w": 1080}, "visibility": "public"});
        let id = client::upload_template(
            &self.http,
            &self.base,
            &self.key,
            &metadata,
            IMAGES,
            IMAGE_BYTES,
        )
        .await?;
        Ok(id.parse()?)
    }
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{base} not ready within 60 s")
}

async fn wait_pool(
    index: &PoolIndex,
    template: TemplateId,
    n: i64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let len = index.len(template, 1).await?;
        if len >= n {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("pool of {template} at {len}/{n} after {limit:?}");
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!("  pool {len}/{n} after {:.0?}", started.elapsed());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} RAM, Linux")
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let sizes = Sizes::new(args.quick);
    let root = std::env::current_dir()?;
    let run_dir = root.join(".run");
    std::fs::create_dir_all(&run_dir)?;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let db_name = format!("prewarm_bench_{suffix}");
    let pg = std::env::var("PREWARM_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    {
        let mut admin = AsyncPgConnection::establish(&format!("{pg}/postgres")).await?;
        diesel::sql_query(format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .await?;
    }
    let db_url = format!("{pg}/{db_name}");
    let started_at = chrono::Utc::now();
    let bench_started = Instant::now();

    // S3 behind the fault-injecting proxy; no latency until the pools are filled.
    let proxy = FaultProxy::start(0, &args.s3, Faults::default())?;
    let admin_token = format!("bench-{suffix}");
    let mut env: Vec<(String, String)> = [
        ("PREWARM_ADMIN_TOKEN", admin_token.as_str()),
        ("PREWARM_DATABASE__URL", db_url.as_str()),
        ("PREWARM_DATABASE__MAX_CONNECTIONS", "32"),
        ("PREWARM_REDIS__URL", "redis://127.0.0.1:6379"),
        ("PREWARM_KAFKA__BROKERS", "127.0.0.1:9092"),
        ("PREWARM_KAFKA__CREATE_TOPIC", "true"),
        ("PREWARM_S3__ACCESS_KEY_ID", "prewarm"),
        ("PREWARM_S3__SECRET_ACCESS_KEY", "prewarm-secret"),
        ("PREWARM_SERVER__HOST", "127.0.0.1"),
        ("PREWARM_SERVER__METRICS_PORT", "0"),
        // One tenant drives thousands of requests a second here: far past
        // its default rate limit, which is not what is being measured
        // (PREWARM_BENCH_RATE_LIMITS=1 turns the buckets on, sized never
        // to refuse, to measure what checking them costs).
        ("PREWARM_RATE_LIMIT__ENABLED", "false"),
        ("PREWARM_LOG__LEVEL", "warn"),
        ("PREWARM_WORKER__HTTP_HOST", "127.0.0.1"),
        ("PREWARM_WORKER__HTTP_PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if std::env::var_os("PREWARM_BENCH_RATE_LIMITS").is_some() {
        set(&mut env, "PREWARM_RATE_LIMIT__ENABLED", true);
        for class in ["CREATE_DESIGN", "READ", "UPLOAD"] {
            set(
                &mut env,
                &format!("PREWARM_RATE_LIMIT__{class}_PER_SEC"),
                1e9,
            );
            set(&mut env, &format!("PREWARM_RATE_LIMIT__{class}_BURST"), 1e9);
        }
    }
    set(
        &mut env,
        "PREWARM_REDIS__KEY_PREFIX",
        format!("bench:{suffix}:"),
    );
    set(
        &mut env,
        "PREWARM_KAFKA__TOPIC",
        format!("prewarm.bench.{suffix}"),
    );
    set(
        &mut env,
        "PREWARM_S3__BUCKET",
        format!("prewarm-bench-{suffix}"),
    );
    set(&mut env, "PREWARM_S3__ENDPOINT", proxy.url());
    set(
        &mut env,
        "PREWARM_WORKER__COPY_CONCURRENCY",
        WORKER_COPY_CONCURRENCY,
    );

    let direct_s3 = {
        let mut e = env.clone();
        set(&mut e, "PREWARM_S3__ENDPOINT", &args.s3);
        e
    };
    ObjectStore::new(&s3_settings(&direct_s3)?)
        .await
        .ensure_bucket()
        .await?;
    db::run_migrations(&db_url).await?;
    let dbh = Db::connect(&db_url, 66, Duration::from_secs(5))?;
    let index = PoolIndex::connect(
        "redis://127.0.0.1:6379",
        None,
        &format!("bench:{suffix}:"),
        4,
        Duration::from_secs(2),
    )
    .await?
    .with_pop_memory(prewarm_store::pool_index::POPPED_MEMORY);

    // The stand-in recommendation service (900 ms a call), over this run's catalogue.
    let rec_port = free_port()?;
    let recommender_url = format!("http://127.0.0.1:{rec_port}");
    set(&mut env, "PREWARM_SIMILAR__UPSTREAM_URL", &recommender_url);
    let recommender = Service::spawn(
        "recommender",
        &release_binary(&root, "recommender"),
        &[
            ("PREWARM_DATABASE__URL".to_string(), db_url.clone()),
            (
                "RECOMMENDER_ADDR".to_string(),
                format!("127.0.0.1:{rec_port}"),
            ),
            ("RECOMMENDER_LATENCY_MS".to_string(), "900".to_string()),
        ],
        &run_dir.join("bench-recommender.log"),
    )?;

    let api_port = free_port()?;
    let mut api_env = env.clone();
    set(&mut api_env, "PREWARM_SERVER__PORT", api_port);
    set(&mut api_env, "PREWARM_SERVER__WORKERS", 2);
    let api = Service::spawn(
        "template-api",
        &release_binary(&root, "template-api"),
        &api_env,
        &run_dir.join("bench-api.log"),
    )?;
    let base = format!("http://127.0.0.1:{api_port}");
    wait_ready(&base).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()?;
    let company: Value = http
        .post(format!("{base}/admin/companies"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "bench", "design_limit": 1_000_000}))
        .send()
        .await?
        .json()
        .await?;
    let company_id: CompanyId = company["id"].as_str().context("company id")?.parse()?;
    let key: Value = http
        .post(format!("{base}/admin/companies/{company_id}/api-keys"))
        .bearer_auth(&admin_token)
        .send()
        .await?
        .json()
        .await?;
    let client = Api {
        http: http.clone(),
        base: base.clone(),
        key: key["api_key"].as_str().context("api key")?.to_string(),
    };
    // Load comes from many companies, as in production: a company's designs
    // are serialized by its plan-limit row (see "Where the time goes").
    let mut tenants = Vec::new();
    for i in 0..TENANTS {
        let company: Value = http
            .post(format!("{base}/admin/companies"))
            .bearer_auth(&admin_token)
            .json(&json!({"name": format!("tenant {i}"), "design_limit": 1_000_000}))
            .send()
            .await?
            .json()
            .await?;
        let key: Value = http
            .post(format!(
                "{base}/admin/companies/{}/api-keys",
                company["id"].as_str().unwrap_or_default()
            ))
            .bearer_auth(&admin_token)
            .send()
            .await?
            .json()
            .await?;
        tenants.push(key["api_key"].as_str().context("api key")?.to_string());
    }
    let tenants = Arc::new(tenants);
    let next_tenant = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let many = {
        let client = client.clone();
        let tenants = tenants.clone();
        let next_tenant = next_tenant.clone();
        move || {
            let i = next_tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % tenants.len();
            Api {
                key: tenants[i].clone(),
                ..client.clone()
            }
        }
    };

    // 1. Prefill.
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
        &release_binary(&root, "warmup-worker"),
        &prefill_env,
        &run_dir.join("bench-worker-prefill.log"),
    )?;
    let template_a = client.upload_template("seed case").await?;
    let fill_time = wait_pool(
        &index,
        template_a,
        warm_items as i64,
        Duration::from_secs(1800),
    )
    .await?;
    let prefill_peak = prefill_worker.stop().await;
    let copies_per_sec = (warm_items * IMAGES) as f64 / fill_time.as_secs_f64();
    eprintln!("prefill done in {fill_time:.1?} ({copies_per_sec:.0} copies/s)");

    // 2. The floor.
    let floor = Floor {
        db: dbh.clone(),
        index: index.clone(),
        company: company_id,
        template: template_a,
        images: IMAGES,
        list: TemplateId::new(),
    };
    floor
        .prepare(sizes.floor.iter().map(|(_, n)| n).sum())
        .await?;
    let mut floor_runs = Vec::new();
    let mut cpu_rows: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for (clients, n) in sizes.floor {
        let f = floor.clone();
        let before = cpu_by_command();
        let r = closed_loop(clients, n, move || {
            let f = f.clone();
            async move { f.one().await }
        })
        .await;
        cpu_rows.push((
            format!("floor, {clients} clients"),
            cpu_per_request(&before, &cpu_by_command(), r.count()),
        ));
        eprintln!(
            "floor {clients}: p50 {:.2} ms, {:.0}/s",
            r.ms(0.5),
            r.throughput()
        );
        floor_runs.push((clients, r));
    }

    // The floor's 66 connections go back, so the API processes below fit in
    // Postgres' default 100.
    drop(floor);
    drop(dbh);

    // 3. Warm path.
    let mut warm_runs = Vec::new();
    for (clients, n) in sizes.warm {
        let pick = many.clone();
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
    let pick = many.clone();
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

    // 4. The seed's case, cold: pool off, every design copied through the proxy.
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
        &release_binary(&root, "template-api"),
        &cold_env,
        &run_dir.join("bench-api-cold.log"),
    )?;
    let cold_base = format!("http://127.0.0.1:{cold_port}");
    wait_ready(&cold_base).await?;
    let pick = many.clone();
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

    // 5. Sustained load, worker copying through the proxy.
    let mut steady_env = env.clone();
    set(&mut steady_env, "PREWARM_POOL__TARGET", 4);
    set(
        &mut steady_env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-steady-{suffix}"),
    );
    let worker = Service::spawn(
        "warmup-worker",
        &release_binary(&root, "warmup-worker"),
        &steady_env,
        &run_dir.join("bench-worker.log"),
    )?;
    let template_b = client.upload_template("steady").await?;
    wait_pool(&index, template_b, 4, Duration::from_secs(120)).await?;
    let capacity = WORKER_COPY_CONCURRENCY as f64 / args.delay.as_secs_f64() / IMAGES as f64;
    let mut steady = Vec::new();
    for rate in [sizes.low_rate, sizes.high_rate] {
        wait_pool(&index, template_b, 4, Duration::from_secs(120)).await?;
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

    // 6. Similar templates: uncached vs cached, and a stampede on one cold key.
    let similar = prewarm_bench::similar::run(&prewarm_bench::similar::Params {
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
    // 7. Adaptive sizing vs fixed N=4: Zipf popularity and a burst.
    let sizing_params = prewarm_bench::sizing::Params {
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
        db: Db::connect(&db_url, 4, Duration::from_secs(5))?,
    };
    let sizing = prewarm_bench::sizing::run(&sizing_params, &root, &run_dir).await?;
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
    let api_peak = api.stop().await;
    let recommender_peak = recommender.stop().await;
    proxy.stop().await;

    // Report.
    let (f8, w8) = (&floor_runs[1].1, &warm_runs[1].1);
    let (f64_, w64) = (&floor_runs[2].1, &warm_runs[2].1);
    let ratio = cold.ms(0.95) / w64.ms(0.95).max(0.001);
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `prewarm-bench{}` (`make bench{}`) on {} at commit `{}`, in {:.0} s.\n\n",
        if args.quick { " --quick" } else { "" },
        if args.quick { "-quick" } else { "" },
        started_at.format("%Y-%m-%d %H:%M UTC"),
        git_commit(),
        bench_started.elapsed().as_secs_f64()
    ));
    md.push_str(&format!(
        "Machine: {}. Everything runs on it at once: PostgreSQL 15, Redis 7, tansu (Kafka), s3s-fs (S3) behind \
         the fault-injecting proxy (`crates/bench/src/fault_proxy.rs`), the release binaries, and the load generator. \
         Template: {IMAGES} images of {} KiB. Injected S3 latency: {} ms per request.\n\n",
        machine(),
        IMAGE_BYTES / 1024,
        args.delay.as_millis()
    ));
    md.push_str("## Targets\n\n");
    md.push_str(&report::simple_table(
        &["target", "measured", "verdict"],
        &[
            vec![
                "warm/cold p95 ratio >= 100 (seed's case, 64 clients)".into(),
                format!(
                    "{ratio:.0}x ({:.0} ms / {:.2} ms)",
                    cold.ms(0.95),
                    w64.ms(0.95)
                ),
                verdict(ratio >= 100.0).into(),
            ],
            vec![
                format!("warm p99 <= 5 ms, open loop {} req/s", sizes.open_rate),
                format!("{:.2} ms", open.ms(0.99)),
                verdict(open.ms(0.99) <= 5.0).into(),
            ],
            vec![
                "warm p50 <= floor p50 + 1 ms, 8 clients".into(),
                format!("{:.2} ms vs {:.2} + 1 ms", w8.ms(0.5), f8.ms(0.5)),
                verdict(w8.ms(0.5) <= f8.ms(0.5) + 1.0).into(),
            ],
            vec![
                "warm throughput >= 50% of the floor's, 64 clients".into(),
                format!(
                    "{:.0}/s vs {:.0}/s ({:.0}%)",
                    w64.throughput(),
                    f64_.throughput(),
                    100.0 * w64.throughput() / f64_.throughput().max(1e-9)
                ),
                verdict(w64.throughput() >= 0.5 * f64_.throughput()).into(),
            ],
            vec![
                format!(
                    "warm hit rate >= 99% below worker capacity ({} req/s)",
                    sizes.low_rate
                ),
                format!("{:.1}%", steady[0].1.warm_share() * 100.0),
                verdict(steady[0].1.warm_share() >= 0.99).into(),
            ],
            vec![
                format!(
                    "similar templates: cached p99 <= 1 ms, open loop {} req/s",
                    sizes.open_rate
                ),
                format!(
                    "{:.2} ms (uncached p50 {:.0} ms; GET /healthz alone: p99 {:.2} ms)",
                    similar.cached.ms(0.99),
                    similar.uncached.ms(0.5),
                    similar.http_floor.ms(0.99)
                ),
                verdict(similar.cached.ms(0.99) <= 1.0).into(),
            ],
            vec![
                "similar templates: 1,000 concurrent requests on a cold key -> 1 upstream call"
                    .into(),
                format!("{} call(s)", similar.stampede_calls),
                verdict(similar.stampede_calls == 1).into(),
            ],
        ],
    ));
    md.push_str("\n## 1. The seed's case: warm vs cold, 64 clients\n\n");
    md.push_str(&report::table(&[
        ("warm (pool)", w64),
        ("cold (pool off: 30 copies per request)", &cold),
    ]));
    md.push_str(&format!(
        "\nCold copies go through the proxy with {} ms per CopyObject, at most 16 in parallel per request and 256 \
         per API process. The warm path touches no S3 at all.\n",
        args.delay.as_millis()
    ));
    md.push_str("\n## 2. The physical floor vs the warm path\n\n");
    md.push_str("The floor is one Redis `LPOP` plus one transaction inserting a design and its 30 image rows, sent by a \
                 minimal client (diesel-async, no HTTP). The warm path is `POST /designs` end to end: HTTP, API-key \
                 lookup (cached), template lookup, `LPOP`, and the claim transaction; its load comes from 64 companies.\n\n");
    let mut rows: Vec<(String, &RunResult)> = Vec::new();
    for ((c, f), (_, w)) in floor_runs.iter().zip(&warm_runs) {
        rows.push((format!("floor, {c} clients"), f));
        rows.push((format!("warm, {c} clients"), w));
    }
    rows.push((
        "warm, 64 clients, all from one company".to_string(),
        &single,
    ));
    rows.push((format!("warm, open loop {} req/s", sizes.open_rate), &open));
    let rows_ref: Vec<(&str, &RunResult)> = rows.iter().map(|(l, r)| (l.as_str(), *r)).collect();
    md.push_str(&report::table(&rows_ref));
    md.push_str("\n### Where the time goes\n\nCPU milliseconds per request, by process, over each run (from `/proc/*/stat`; \
                 all processes share the same 2 cores, so CPU per request bounds throughput):\n\n");
    for (label, rows) in &cpu_rows {
        let parts: Vec<String> = rows.iter().map(|(k, ms)| format!("{k} {ms:.2}")).collect();
        let total: f64 = rows.iter().map(|(_, ms)| ms).sum();
        md.push_str(&format!(
            "- {label}: **{total:.2} ms** = {}\n",
            parts.join(", ")
        ));
    }
    let pg_of = |label: &str| {
        cpu_rows
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, rows)| {
                rows.iter()
                    .find(|(k, _)| k == "postgres")
                    .map(|(_, ms)| *ms)
            })
            .unwrap_or(0.0)
    };
    let api_of = |label: &str| {
        cpu_rows
            .iter()
            .find(|(l, _)| l == label)
            .and_then(|(_, rows)| {
                rows.iter()
                    .find(|(k, _)| k == "template-api")
                    .map(|(_, ms)| *ms)
            })
            .unwrap_or(0.0)
    };
    md.push_str(&format!(
        "\n### Why the missed targets are missed\n\n\
         - **The 2 cores are the bottleneck, and Postgres takes most of them.** At 8 and 64 clients every \
         process is CPU-bound on the same 2 cores, so latency is CPU per request x clients / 2. The warm \
         path costs Postgres {:.2} ms of CPU per request at 64 clients against the floor's {:.2} ms: besides \
         the floor's inserts it reads the template, flips the pool item's state (a non-HOT update of an \
         indexed row), increments the company's plan counter and copies 30 image rows from the item. \
         template-api adds {:.2} ms (HTTP, JSON of a 30-image design, the Kafka produce). That is why warm \
         p50 at 8 clients is {:.2} ms against the floor's {:.2} ms.\n\
         - **The warm/cold ratio is bounded by the floor here.** With 64 closed-loop clients, p95 is \
         queueing: even the floor's own p95 at 64 clients is {:.1} ms, which caps the ratio at {:.0}x \
         against this cold p95 ({:.0} ms). Reaching 100x would need a warm p95 of {:.1} ms at 64 clients, \
         i.e. about {:.0} requests/s -- {:.1}x what the floor itself does on this machine.\n\
         - **One company's designs are serialized** by its plan-limit row (held from the increment to the \
         commit's WAL flush): 64 clients of one company reach {:.0} req/s against {:.0} req/s for 64 \
         clients spread over {TENANTS} companies (table above). An exact per-company limit needs that \
         serialization; production load comes from many companies.\n\
         - **Open loop at {} req/s**: p99 {:.2} ms, p50 {:.2} ms; the tail comes from the same shared \
         cores (Postgres checkpoints and autovacuum of the pool tables, tansu) rather than from queueing.\n",
        pg_of("warm, 64 clients"),
        pg_of("floor, 64 clients"),
        api_of("warm, 64 clients"),
        w8.ms(0.5),
        f8.ms(0.5),
        f64_.ms(0.95),
        cold.ms(0.95) / f64_.ms(0.95).max(0.001),
        cold.ms(0.95),
        cold.ms(0.95) / 100.0,
        64.0 / (cold.ms(0.95) / 100.0 / 1000.0),
        64.0 / (cold.ms(0.95) / 100.0 / 1000.0) / f64_.throughput().max(1e-9),
        single.throughput(),
        w64.throughput(),
        sizes.open_rate,
        open.ms(0.99),
        open.ms(0.5),
    ));
    md.push_str("\n## 3. Sustained load below and above the worker's copy capacity\n\n");
    md.push_str(&format!(
        "Pool target 4; the worker copies through the proxy ({} ms per copy) with {WORKER_COPY_CONCURRENCY} copies in \
         flight, so its capacity is about {capacity:.1} designs/s for a {IMAGES}-image template.\n\n",
        args.delay.as_millis()
    ));
    let steady_rows: Vec<(String, &RunResult)> = steady
        .iter()
        .map(|(rate, r, _)| {
            (
                format!("open loop {rate} req/s for {} s", sizes.steady_secs),
                r,
            )
        })
        .collect();
    let steady_ref: Vec<(&str, &RunResult)> =
        steady_rows.iter().map(|(l, r)| (l.as_str(), *r)).collect();
    md.push_str(&report::table(&steady_ref));
    md.push_str("\nPool depth (Redis list length) sampled every 250 ms:\n\n");
    for (rate, _, samples) in &steady {
        let series: Vec<String> = samples
            .iter()
            .step_by(2)
            .map(|(_, n)| n.to_string())
            .collect();
        md.push_str(&format!("- {rate} req/s: {}\n", series.join(" ")));
    }
    md.push_str("\n## 4. Similar templates: uncached vs cached\n\n");
    md.push_str(&format!(
        "The stand-in recommendation service (`crates/recommender`) answers every call after 900 ms. Uncached: each of \
         {} source templates read once (4 clients), so every request waits for the upstream. Cached: an open loop at \
         {} req/s over the same sources for {} s. Stampede: 1,000 requests at once on one cold key. Here the `warm` \
         column is the share of cache hits.\n\n",
        similar.sources, sizes.open_rate, sizes.similar_secs
    ));
    md.push_str(&report::table(&[
        ("uncached (900 ms upstream)", &similar.uncached),
        ("cached, open loop", &similar.cached),
        (
            "HTTP floor: GET /healthz, same open loop",
            &similar.http_floor,
        ),
        (
            "stampede: 1,000 concurrent on one cold key",
            &similar.stampede,
        ),
    ]));
    md.push_str(&format!(
        "\nUpstream calls made by the stampede, counted at the stand-in service: **{}**.\n\n\
         Where a cached answer's time goes: `GET /healthz` -- a handler that does nothing -- sent by the same client \
         at the same rate takes p50 {:.2} ms / p99 {:.2} ms here, so HTTP through actix and reqwest on this \
         2-core VM (client and server sharing the cores) is most of it; the cache lookups, the per-caller filter \
         and the JSON of 10 templates add {:.2} ms at p50. Where the HTTP floor's own p99 is above 1 ms, the \
         target cannot be met end to end on this machine.\n",
        similar.stampede_calls,
        similar.http_floor.ms(0.5),
        similar.http_floor.ms(0.99),
        (similar.cached.ms(0.5) - similar.http_floor.ms(0.5)).max(0.0),
    ));
    md.push_str("\n## 5. Adaptive pool sizing vs fixed N=4\n\n");
    md.push_str(&prewarm_bench::sizing::report(&sizing_params, &sizing));
    if let [fixed, adaptive] = sizing.as_slice() {
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
        md.push_str(&format!("\n{}\n", SIZING_NOTE));
    }
    md.push_str("\n## Peak memory (VmHWM)\n\n");
    let mib = |m: Option<f64>| {
        m.map(|v| format!("{v:.0} MiB"))
            .unwrap_or_else(|| "n/a".into())
    };
    md.push_str(&report::simple_table(
        &["process", "peak"],
        &[
            vec!["template-api".into(), mib(api_peak)],
            vec!["template-api (pool off, cold run)".into(), mib(cold_peak)],
            vec!["recommender (stand-in)".into(), mib(recommender_peak)],
            vec!["warmup-worker (steady load)".into(), mib(worker_peak)],
            vec![
                format!("warmup-worker (prefill of {warm_items} items)"),
                mib(prefill_peak),
            ],
        ],
    ));
    md.push_str(&format!(
        "\nPrefill: {warm_items} items x {IMAGES} images copied in {:.1} s ({copies_per_sec:.0} copies/s, worker \
         straight to s3s-fs, 128 copies in flight).\n",
        fill_time.as_secs_f64()
    ));
    let plot_name = args
        .plot
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match report::plot(
        &args.plot,
        "POST /designs latency by percentile",
        &[
            ("floor, 8 clients", f8),
            ("warm, 8 clients", w8),
            ("warm, 64 clients", w64),
            ("warm, open loop 200/s", &open),
            ("cold, 64 clients", &cold),
        ],
    ) {
        Ok(()) => md.push_str(&format!("\n![latency by percentile]({plot_name})\n")),
        Err(e) => md.push_str(&format!("\n(plot not drawn: {e})\n")),
    }
    md.push_str(&format!(
        "\nReproduce: `make up && make bench{}` (the command builds the release binaries, starts s3s-fs, and runs \
         `target/release/prewarm-bench{}`).\n",
        if args.quick { "-quick" } else { "" },
        if args.quick { " --quick" } else { "" }
    ));
    std::fs::write(&args.out, &md)?;
    println!("{md}");

    let mut admin = AsyncPgConnection::establish(&format!("{pg}/postgres")).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// The `s3` section of a settings environment.
fn s3_settings(env: &[(String, String)]) -> anyhow::Result<prewarm_store::settings::S3Settings> {
    #[derive(serde::Deserialize)]
    struct S3Only {
        s3: prewarm_store::settings::S3Settings,
    }
    Ok(prewarm_store::settings::load::<S3Only>(env.iter().cloned())?.s3)
}
