//! What every scenario shares: the command line, the sizes of a run, the
//! services started for it (API, recommender, the fault-injecting S3
//! proxy) and its tenants ([`Bench`]), and small helpers.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prewarm_store::db::{self, Db};
use prewarm_store::objects::ObjectStore;
use prewarm_store::pool_index::PoolIndex;
use serde_json::{json, Value};
use shared_domain::ids::{CompanyId, TemplateId};

use crate::client;
use crate::load::Outcome;
use crate::services::{release_binary, Service};
use prewarm_testkit::fault_proxy::{FaultProxy, Faults};
use prewarm_testkit::isolated::Isolated;

pub const IMAGES: usize = 30;
/// Small objects: a CopyObject costs the same round trip whatever the size,
/// and the prefill writes hundreds of thousands of them to local disk.
pub const IMAGE_BYTES: usize = 8 * 1024;
pub const WORKER_COPY_CONCURRENCY: usize = 64;
/// Companies the load is spread over.
pub const TENANTS: usize = 64;

pub struct Sizes {
    pub floor: [(usize, usize); 3],
    pub warm: [(usize, usize); 3],
    pub open_rate: f64,
    pub open_secs: f64,
    pub cold: usize,
    pub steady_secs: f64,
    pub low_rate: f64,
    pub high_rate: f64,
    pub similar_sources: usize,
    pub similar_secs: f64,
    pub sizing_rate: f64,
    pub sizing_secs: f64,
    /// The sizing scenario's unmeasured lead-in at the same load, so its
    /// figures are of pools past their ramp-up (adaptive sizing starts every
    /// template at `pool.min` with no demand known).
    pub sizing_ramp_secs: f64,
    /// Catalogue sizes of the scale scenario, and its load.
    pub scale: &'static [usize],
    pub scale_rate: f64,
    pub scale_secs: f64,
    /// Warm requests at 1 and 64 clients for the 1- and 200-image templates.
    pub images_requests: (usize, usize),
    /// The seed's headline: open-loop rate and length.
    pub headline_rate: f64,
    pub headline_secs: f64,
    /// The catalogue scenario: templates, the trace's length, and hours of
    /// background history seeded before each strategy.
    pub catalogue_templates: usize,
    pub catalogue_secs: f64,
    pub catalogue_history_hours: f64,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                floor: [(1, 300), (8, 1500), (64, 1600)],
                warm: [(1, 150), (8, 400), (64, 1600)],
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
                sizing_ramp_secs: 15.0,
                scale: &[1_000, 10_000],
                scale_rate: 20.0,
                scale_secs: 10.0,
                images_requests: (100, 500),
                headline_rate: 20.0,
                headline_secs: 5.0,
                catalogue_templates: 2_000,
                catalogue_secs: 75.0,
                catalogue_history_hours: 6.0,
            }
        } else {
            Sizes {
                floor: [(1, 1000), (8, 5000), (64, 5000)],
                warm: [(1, 400), (8, 1500), (64, 5000)],
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
                sizing_ramp_secs: 30.0,
                scale: &[10_000, 100_000],
                scale_rate: 20.0,
                scale_secs: 30.0,
                images_requests: (200, 1000),
                headline_rate: 20.0,
                headline_secs: 20.0,
                catalogue_templates: 10_000,
                catalogue_secs: 240.0,
                catalogue_history_hours: 24.0,
            }
        }
    }

    pub fn warm_items(&self) -> usize {
        // The closed-loop runs, the 1-client runs without prefetching and
        // with one id at a time, the one-company run (as long as the
        // 8-client run), the open loop, the unmeasured lead-ins of the runs
        // made in rounds, and a margin.
        self.warm.iter().map(|(_, n)| n).sum::<usize>()
            + LEAD_IN * (2 + self.warm[2].0)
            + 2 * self.warm[0].1
            + self.warm[1].1
            + (self.open_rate * self.open_secs) as usize
            + (self.headline_rate * self.headline_secs) as usize
            + 20
    }
}

/// Requests per client of the unmeasured lead-in each arm of a comparison
/// in rounds runs first, so no arm's first chunk opens its connections.
pub const LEAD_IN: usize = 2;

pub struct Args {
    pub quick: bool,
    pub out: PathBuf,
    /// `--out` was given (`--only catalogue` writes its section there only then).
    pub out_given: bool,
    pub plot: PathBuf,
    pub delay: Duration,
    pub s3: String,
    /// `--only scale`: run that scenario alone and write its section;
    /// `--only headline`: the floor, the warm closed and open loops (and
    /// with 1 and 200 images), then the headline, printed only (for iterating on the warm path); `--only
    /// sizing`: adaptive vs fixed sizing, its section printed only; `--only
    /// catalogue`: the sizing strategies against the offline optimum, its
    /// section printed (and written to `--out` when given).
    pub only: Option<String>,
}

pub fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        quick: false,
        out: "docs/benchmarks.md".into(),
        out_given: false,
        plot: "docs/bench-latency.png".into(),
        delay: Duration::from_millis(150),
        s3: std::env::var("PREWARM_BENCH_S3").unwrap_or_else(|_| "http://127.0.0.1:9010".into()),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--out" => {
                a.out = it.next().context("--out PATH")?.into();
                a.out_given = true;
            }
            "--plot" => a.plot = it.next().context("--plot PATH")?.into(),
            "--delay-ms" => {
                a.delay = Duration::from_millis(it.next().context("--delay-ms N")?.parse()?)
            }
            "--s3" => a.s3 = it.next().context("--s3 URL")?,
            "--only" => match it.next().as_deref() {
                Some(s @ ("scale" | "headline" | "sizing" | "catalogue")) => {
                    a.only = Some(s.into())
                }
                _ => bail!("--only takes `scale`, `headline`, `sizing` or `catalogue`"),
            },
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn set(env: &mut Vec<(String, String)>, key: &str, value: impl ToString) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
}

/// One client of the API: posts designs and reports whether each was warm.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Api {
    pub async fn post_design(&self, template: TemplateId) -> Outcome {
        client::post_design(&self.http, &self.base, &self.key, &template.to_string()).await
    }

    pub async fn upload_template(&self, name: &str) -> anyhow::Result<TemplateId> {
        self.upload_template_of(name, IMAGES).await
    }

    pub async fn upload_template_of(
        &self,
        name: &str,
        images: usize,
    ) -> anyhow::Result<TemplateId> {
        let metadata = json!({"name": name, "category": "bench", "layout": {"w": 1080}, "visibility": "public"});
        let id = client::upload_template(
            &self.http,
            &self.base,
            &self.key,
            &metadata,
            images,
            IMAGE_BYTES,
        )
        .await?;
        Ok(id.parse()?)
    }
}

pub async fn wait_ready(base: &str) -> anyhow::Result<()> {
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

pub async fn wait_pool(
    index: &PoolIndex,
    template: TemplateId,
    n: i64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let len = index
            .len(PoolKey::new(template, TemplateVersion::FIRST))
            .await?;
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

pub fn machine() -> String {
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

pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The `s3` section of a settings environment.
pub fn s3_settings(
    env: &[(String, String)],
) -> anyhow::Result<prewarm_store::settings::S3Settings> {
    #[derive(serde::Deserialize)]
    struct S3Only {
        s3: prewarm_store::settings::S3Settings,
    }
    Ok(prewarm_store::settings::load::<S3Only>(env.iter().cloned())?.s3)
}

/// One run's environment: its database, Redis prefix, topic and bucket
/// (all named after `suffix`), the services, and the tenants.
pub struct Bench {
    pub args: Args,
    /// The run's database, Redis prefix, topic, group, bucket and admin
    /// token on the shared servers.
    pub run: Isolated,
    pub sizes: Sizes,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub db_url: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub bench_started: Instant,
    pub proxy: FaultProxy,
    /// The services' environment (S3 through the proxy).
    pub env: Vec<(String, String)>,
    /// The same with S3 direct (no proxy).
    pub direct_s3: Vec<(String, String)>,
    /// A direct pool (66 connections), given back after the floor.
    pub dbh: Option<Db>,
    pub index: PoolIndex,
    pub recommender_url: String,
    pub recommender: Option<Service>,
    pub api: Option<Service>,
    pub base: String,
    pub http: reqwest::Client,
    pub company_id: CompanyId,
    /// The one-company client.
    pub client: Api,
    tenants: Arc<Vec<String>>,
    /// The companies of those tenants (the floor spreads its load the same way).
    pub tenant_companies: Vec<CompanyId>,
    next_tenant: Arc<std::sync::atomic::AtomicUsize>,
}

impl Bench {
    /// Creates the run's database, bucket and services, and its tenants.
    pub async fn start(args: Args) -> anyhow::Result<Bench> {
        let sizes = Sizes::new(args.quick);
        let root = std::env::current_dir()?;
        let run_dir = root.join(".run");
        std::fs::create_dir_all(&run_dir)?;
        let pg = std::env::var("PREWARM_BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let run = Isolated::new("bench", &pg);
        run.create_database(&mut AsyncPgConnection::establish(&format!("{pg}/postgres")).await?)
            .await?;
        let db_url = run.db_url();
        let started_at = chrono::Utc::now();
        let bench_started = Instant::now();

        // S3 behind the fault-injecting proxy; no latency until the pools are filled.
        let proxy = FaultProxy::start(0, &args.s3, Faults::default())?;
        let mut env = service_env(&run, &proxy.url());
        let direct_s3 = {
            let mut e = env.clone();
            set(&mut e, "PREWARM_S3__ENDPOINT", &args.s3);
            e
        };
        let (dbh, index) = prepare_storage(&run, &db_url, &direct_s3).await?;

        // The stand-in recommendation service (900 ms a call), over this run's catalogue.
        let (recommender_url, recommender) = start_recommender(&root, &run_dir, &db_url)?;
        set(&mut env, "PREWARM_SIMILAR__UPSTREAM_URL", &recommender_url);

        let (api, base) =
            start_api(&root, &env, "template-api", &run_dir.join("bench-api.log")).await?;

        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(120))
            .build()?;
        let admin_token = &run.admin_token;
        let (company_id, key) = new_tenant(&http, &base, admin_token, "bench").await?;
        let client = Api {
            http: http.clone(),
            base: base.clone(),
            key,
        };
        // Load comes from many companies, as in production: a company's designs
        // are serialized by its plan-limit row (see "Where the time goes").
        let (tenants, tenant_companies) = create_tenants(&http, &base, admin_token).await?;
        Ok(Bench {
            run,
            args,
            sizes,
            root,
            run_dir,
            db_url,
            started_at,
            bench_started,
            proxy,
            env,
            direct_s3,
            dbh: Some(dbh),
            index,
            recommender_url,
            recommender: Some(recommender),
            api: Some(api),
            base,
            http,
            company_id,
            client,
            tenants: Arc::new(tenants),
            tenant_companies,
            next_tenant: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// A client of the next tenant, round robin: load comes from many
    /// companies, as in production (a company's designs are serialized by
    /// its plan-limit row, see "Where the time goes").
    pub fn many(&self) -> impl Fn() -> Api + Clone + Send + Sync + 'static {
        let client = self.client.clone();
        let tenants = self.tenants.clone();
        let next_tenant = self.next_tenant.clone();
        move || {
            let i = next_tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % tenants.len();
            Api {
                key: tenants[i].clone(),
                ..client.clone()
            }
        }
    }

    /// Makes every tenant's key known to the API at `base` (one
    /// authenticated read each, `GET /designs?limit=1`), as it is in a steady
    /// state: at 20 designs/s over 64 tenants a key comes back every 3.2 s
    /// and the API remembers it for `server.auth_cache_ttl_secs` (30 s). A
    /// run started after a longer pause would otherwise charge the first
    /// request of each of the 64 keys a key lookup: 16% of a 400-request
    /// run, so its p95.
    pub async fn warm_keys(&self, base: &str) -> anyhow::Result<()> {
        for key in self.tenants.iter() {
            let resp = self
                .http
                .get(format!("{base}/designs?limit=1"))
                .bearer_auth(key)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "warming the key cache: {}",
                resp.status()
            );
        }
        Ok(())
    }

    /// Stops the API and the recommender; their peak memory (MiB).
    pub async fn stop_services(&mut self) -> (Option<f64>, Option<f64>) {
        let api = match self.api.take() {
            Some(api) => api.stop().await,
            None => None,
        };
        let recommender = match self.recommender.take() {
            Some(r) => r.stop().await,
            None => None,
        };
        self.proxy.stop().await;
        (api, recommender)
    }

    /// Lets the database settle before a latency run: `VACUUM ANALYZE`
    /// (fresh statistics, no dead rows from the runs before) and a
    /// `CHECKPOINT` (the writes of the prefill and earlier runs flushed now,
    /// not by a timed checkpoint in the middle of the run). What a
    /// production database is between bursts; the same for every run it
    /// precedes.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let mut conn = AsyncPgConnection::establish(&self.db_url).await?;
        diesel::sql_query("VACUUM ANALYZE")
            .execute(&mut conn)
            .await?;
        diesel::sql_query("CHECKPOINT").execute(&mut conn).await?;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Ok(())
    }

    /// Drops the run's database, Redis keys and objects ([`drop_run`]).
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        drop_run(&self.run, &self.run_dir).await
    }
}

/// Drops a run's database, its Redis keys and its objects. The benchmark's
/// S3 (s3s-fs, on a tmpfs where it can) keeps each object as three files:
/// the scale and catalogue scenarios of one full run left 3 million, every
/// inode of a 24-GiB machine's `/dev/shm`, and the catalogue's copies then
/// failed with "No space left on device". Found through the data directory
/// `scripts/stack.sh bench` records in `run_dir/s3s.data`, they are deleted
/// before the next scenario starts (a deletion left running would be
/// measured with it). Without that record (another S3), they stay.
pub async fn drop_run(run: &Isolated, run_dir: &Path) -> anyhow::Result<()> {
    run.drop_redis_keys(REDIS_URL).await?;
    let admin = format!("{}/postgres", run.pg_server);
    run.drop_database(&mut AsyncPgConnection::establish(&admin).await?)
        .await?;
    let Ok(data) = std::fs::read_to_string(run_dir.join("s3s.data")) else {
        return Ok(());
    };
    let (data, bucket) = (PathBuf::from(data.trim()), run.bucket.clone());
    tokio::task::spawn_blocking(move || delete_s3s_bucket(&data, &bucket))
        .await?
        .context("deleting the run's S3 objects")
}

/// Deletes `bucket` from an s3s-fs data directory: its directory (the
/// objects' bytes) and its objects' metadata, which s3s-fs keeps beside it
/// as `.bucket-{bucket}.object-{key}.*.json` (names in unpadded URL-safe
/// base64).
fn delete_s3s_bucket(data: &Path, bucket: &str) -> std::io::Result<()> {
    let dir = data.join(bucket);
    if dir.is_dir() {
        std::fs::remove_dir_all(&dir)?;
    }
    let prefix = format!(".bucket-{}.", base64_url(bucket.as_bytes()));
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Unpadded URL-safe base64 (RFC 4648 section 5), as s3s-fs names files.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The services' environment for a run (its names from `suffix`; S3
/// through the proxy at `proxy_url`).
/// Creates the run's bucket (S3 direct) and schema; a direct pool on the
/// database (66 connections) and the run's pool index in Redis.
async fn prepare_storage(
    run: &Isolated,
    db_url: &str,
    direct_s3: &[(String, String)],
) -> anyhow::Result<(Db, PoolIndex)> {
    ObjectStore::new(&s3_settings(direct_s3)?)
        .await
        .ensure_bucket()
        .await?;
    db::run_migrations(db_url).await?;
    let dbh = Db::connect(db_url, 66, Duration::from_secs(5))?;
    let index = PoolIndex::new(
        prewarm_store::redis::Redis::connect(
            REDIS_URL,
            None,
            &run.redis_prefix,
            4,
            Duration::from_secs(2),
        )
        .await?,
    )
    .with_pop_memory(prewarm_store::pool_index::POPPED_MEMORY);
    Ok((dbh, index))
}

/// Starts the stand-in recommendation service (900 ms a call) on the run's
/// database: its URL and the service.
fn start_recommender(
    root: &Path,
    run_dir: &Path,
    db_url: &str,
) -> anyhow::Result<(String, Service)> {
    let rec_port = free_port()?;
    let recommender_url = format!("http://127.0.0.1:{rec_port}");
    let recommender = Service::spawn(
        "recommender",
        &release_binary(root, "recommender"),
        &[
            ("PREWARM_DATABASE__URL".to_string(), db_url.to_string()),
            (
                "RECOMMENDER_ADDR".to_string(),
                format!("127.0.0.1:{rec_port}"),
            ),
            ("RECOMMENDER_LATENCY_MS".to_string(), "900".to_string()),
        ],
        &run_dir.join("bench-recommender.log"),
    )?;
    Ok((recommender_url, recommender))
}

/// Starts the release API named `name` with the services' environment
/// `env` on a free port (2 workers), logging to `log`, and waits until it
/// is ready: the service and its base URL.
pub async fn start_api(
    root: &Path,
    env: &[(String, String)],
    name: &str,
    log: &Path,
) -> anyhow::Result<(Service, String)> {
    let api_port = free_port()?;
    let mut api_env = env.to_vec();
    set(&mut api_env, "PREWARM_SERVER__PORT", api_port);
    set(&mut api_env, "PREWARM_SERVER__WORKERS", 2);
    let api = Service::spawn(name, &release_binary(root, "template-api"), &api_env, log)?;
    let base = format!("http://127.0.0.1:{api_port}");
    wait_ready(&base).await?;
    Ok((api, base))
}

/// Creates the [`TENANTS`] companies the load is spread over: their API
/// keys and their companies, in the same order.
async fn create_tenants(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
) -> anyhow::Result<(Vec<String>, Vec<CompanyId>)> {
    let mut tenants = Vec::new();
    let mut tenant_companies = Vec::new();
    for i in 0..TENANTS {
        let (company, key) = new_tenant(http, base, admin_token, &format!("tenant {i}")).await?;
        tenants.push(key);
        tenant_companies.push(company);
    }
    Ok((tenants, tenant_companies))
}

/// The Redis every run uses (its keys under the run's prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The size of each service's Postgres pool in the bench, and of the
/// floor's at 64 clients (the same kind of pool, the same size).
pub const SERVICE_DB_CONNECTIONS: usize = 32;

pub fn service_env(run: &Isolated, proxy_url: &str) -> Vec<(String, String)> {
    let mut env = run.env();
    set(
        &mut env,
        "PREWARM_DATABASE__MAX_CONNECTIONS",
        SERVICE_DB_CONNECTIONS,
    );
    for (k, v) in [
        ("PREWARM_REDIS__URL", REDIS_URL),
        ("PREWARM_KAFKA__BROKERS", "127.0.0.1:9092"),
        ("PREWARM_S3__ACCESS_KEY_ID", "prewarm"),
        ("PREWARM_S3__SECRET_ACCESS_KEY", "prewarm-secret"),
    ] {
        set(&mut env, k, v);
    }
    // The services log at `warn`: the chart's default, `info` as JSON,
    // writes one access-log line per request, which
    // PREWARM_BENCH_LOG=info,json measures (a level, then `json` or `text`).
    let log = std::env::var("PREWARM_BENCH_LOG").unwrap_or_default();
    let mut log = log.split(',');
    let level = log.next().filter(|l| !l.is_empty()).unwrap_or("warn");
    set(&mut env, "PREWARM_LOG__LEVEL", level);
    set(
        &mut env,
        "PREWARM_LOG__FORMAT",
        log.next().unwrap_or("text"),
    );
    // Rate limits are off (`Isolated::env`): one tenant drives thousands of
    // requests a second here, which is not what is being measured.
    // PREWARM_BENCH_RATE_LIMITS=1 turns the buckets on, sized never to
    // refuse, to measure what checking them costs.
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
    set(&mut env, "PREWARM_S3__ENDPOINT", proxy_url);
    set(
        &mut env,
        "PREWARM_WORKER__COPY_CONCURRENCY",
        WORKER_COPY_CONCURRENCY,
    );

    env
}

/// A company with a plan of a million designs, and its API key.
pub async fn new_tenant(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
    name: &str,
) -> anyhow::Result<(CompanyId, String)> {
    let company: Value = http
        .post(format!("{base}/admin/companies"))
        .bearer_auth(admin_token)
        .json(&json!({"name": name, "design_limit": 1_000_000}))
        .send()
        .await?
        .json()
        .await?;
    let company_id: CompanyId = company["id"].as_str().context("company id")?.parse()?;
    let key: Value = http
        .post(format!("{base}/admin/companies/{company_id}/api-keys"))
        .bearer_auth(admin_token)
        .send()
        .await?
        .json()
        .await?;
    Ok((
        company_id,
        key["api_key"].as_str().context("api key")?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_encode_as_s3s_fs_names_its_files() {
        // A name from a real data directory, and RFC 4648's vectors.
        assert_eq!(
            base64_url(b"prewarm-bench-860b2a0ee3af"),
            "cHJld2FybS1iZW5jaC04NjBiMmEwZWUzYWY"
        );
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_url(plain.as_bytes()), encoded);
        }
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8", "the URL-safe alphabet");
    }

    #[test]
    fn a_dropped_bucket_leaves_no_file_and_the_others_stay() {
        let data = std::env::temp_dir().join(format!("prewarm-s3s-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        for bucket in ["prewarm-a-1", "prewarm-b-2"] {
            std::fs::create_dir_all(data.join(bucket).join("pool")).unwrap();
            std::fs::write(data.join(bucket).join("pool/0000"), b"x").unwrap();
            let meta = format!(
                ".bucket-{}.object-{}.internal.json",
                base64_url(bucket.as_bytes()),
                base64_url(b"pool/0000")
            );
            std::fs::write(data.join(meta), b"{}").unwrap();
        }
        delete_s3s_bucket(&data, "prewarm-a-1").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            left.iter()
                .all(|n| n.contains("prewarm-b-2") || n.contains(&base64_url(b"prewarm-b-2"))),
            "{left:?}"
        );
        std::fs::remove_dir_all(&data).unwrap();
    }
}
