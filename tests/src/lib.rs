//! Test support: boots the real services in-process against the real local
//! stack (`make up`), each test with its own database, Redis key prefix, Kafka
//! topic and consumer group, and S3 bucket, so tests run in parallel.
//!
//! Layout:
//! - [`TestStack`]: `TestStack::spawn(options)` creates the per-test resources,
//!   builds template-api (port 0) and, optionally, warmup-worker, and offers
//!   request helpers.
//! - [`images`]: small generated image payloads (the demo's, `prewarm-demo`).
//! - [`invariants`]: the "no design lost an object" checks concurrency tests end with.
//! - [`relay`]: a TCP relay a test can cut, to take a dependency "down".
//! - [`tls_relay`]: a TLS terminator, the HTTPS stand-in for a managed endpoint.

pub use prewarm_demo::images;
pub mod invariants;
pub mod otlp;
pub mod pubsub_relay;
pub mod relay;
pub mod tls_relay;

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use prewarm_recommender::{Faults, Recommender};
use prewarm_store::db::Db;
use prewarm_store::objects::ObjectStore;
use prewarm_store::pause::PausePoints;
use prewarm_store::pool_index::PoolIndex;
use prewarm_store::warmup_topic::WarmupPublisher;
use prewarm_testkit::isolated::Isolated;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use shared_domain::company::{ApiKeyCreated, Company};
use shared_domain::design::Design;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::pool::PoolStatus;
use shared_domain::template::Template;
use tokio_util::sync::CancellationToken;
use warmup_worker::refill::Refiller;

/// Where the local stack listens; overridable for other setups.
pub fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// A service process a test started: killed when dropped, so a test that
/// fails (panics) leaves no process behind holding database connections.
/// Derefs to the [`std::process::Child`] for `kill`, `wait`, `id`.
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What a test stack leaves behind, removed when the stack is dropped: its
/// Redis keys always, its database unless `finish()` dropped it -- so a
/// test that fails (panics) cleans up too. Blocking (`psql`, `redis-cli`):
/// it runs while the test unwinds.
struct Cleanup {
    admin_url: String,
    db_name: String,
    redis_prefix: String,
    db_dropped: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let script = format!(
            "redis-cli -p 6379 --scan --pattern '{}*' | xargs -r redis-cli -p 6379 DEL >/dev/null",
            self.redis_prefix
        );
        let _ = std::process::Command::new("sh")
            .args(["-c", &script])
            .status();
        if self.db_dropped {
            return;
        }
        // The stack's own server first; then the machine's, directly: a test
        // that reached Postgres through a relay may have cut it.
        let direct = format!("{}/postgres", pg_server());
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name);
        let dropped = [&self.admin_url, &direct].into_iter().any(|url| {
            std::process::Command::new("psql")
                .arg(url)
                .args(["-qc", &statement])
                .output()
                .is_ok_and(|out| out.status.success())
        });
        if !dropped {
            eprintln!("could not drop {}", self.db_name);
        }
    }
}

/// The Postgres server tests use (`PREWARM_TEST_PG`), without a database.
pub fn pg_server() -> String {
    env_or("PREWARM_TEST_PG", "postgres://postgres@127.0.0.1:5432")
}

/// The TLS the test's own admin connection uses (that of the services).
fn admin_tls(options: &Options) -> prewarm_store::db::tls::PgTls {
    let Some((mode, ca)) = &options.pg_tls else {
        return Default::default();
    };
    let mode = serde_json::from_value(Value::String(mode.clone())).expect("ssl mode");
    let ca = (!ca.is_empty()).then(|| std::path::PathBuf::from(ca));
    prewarm_store::db::tls::PgTls::new(mode, ca.as_ref()).expect("test TLS setup")
}

/// Knobs a test may turn.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run warmup-worker beside the API.
    pub worker: bool,
    pub pool_target: i32,
    /// Extra `PREWARM_*` variables (e.g. small upload limits).
    pub env: Vec<(String, String)>,
    /// Extra variables for the worker only (applied after `env`).
    pub worker_env: Vec<(String, String)>,
    /// Start the stand-in recommendation service (in-process, real HTTP, over
    /// this test's database) with these faults, and point the API at it.
    pub recommender: Option<Faults>,
    /// Where the services reach Postgres (`postgres://user@host:port`), if
    /// not the local server (e.g. through a relay a test can cut, or the
    /// TLS-only cluster); the test database is created there too.
    pub pg_server: Option<String>,
    /// TLS to that server (`database.ssl_mode`, `database.ssl_root_cert`),
    /// for the services and the test's own admin connection alike.
    pub pg_tls: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            worker: true,
            pool_target: 4,
            env: Vec::new(),
            worker_env: Vec::new(),
            recommender: None,
            pg_server: None,
            pg_tls: None,
        }
    }
}

impl Options {
    /// The API alone: the test drives refills, passes and plans itself.
    pub fn without_worker() -> Self {
        Self {
            worker: false,
            ..Self::default()
        }
    }
}

/// A company and its API key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: CompanyId,
    pub key: String,
}

pub struct TestStack {
    pub base: String,
    /// The API's operations listener (`/metrics`, detailed `/readyz`).
    pub ops_base: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub db: Db,
    pub index: PoolIndex,
    pub objects: ObjectStore,
    pub publisher: WarmupPublisher,
    /// The worker's refill logic, for tests that call it directly.
    pub refiller: Option<Refiller>,
    pub options: Options,
    pub env: Vec<(String, String)>,
    pub recommender: Option<Recommender>,
    /// The in-process worker's health and metrics port, when it runs.
    pub worker_base: Option<String>,
    /// Pause points shared by this stack's API, worker and the reconcilers
    /// the test builds: arm one to force an interleaving.
    pub pause: PausePoints,
    db_name: String,
    /// Drops the database and the Redis keys if the test ends without
    /// `finish()` (a failed assertion unwinds through it).
    cleanup: Cleanup,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The services' settings of a test stack over `run`'s resources (the
/// servers from `PREWARM_TEST_*`, or the machine's), before the test's own.
fn stack_env(run: &Isolated, options: &Options) -> Vec<(String, String)> {
    let mut env = run.env();
    env.extend(
        [
            ("PREWARM_DATABASE__MAX_CONNECTIONS", "8".into()),
            (
                "PREWARM_DATABASE__SSL_MODE",
                options
                    .pg_tls
                    .clone()
                    .map_or("disable".into(), |(mode, _)| mode),
            ),
            (
                "PREWARM_DATABASE__SSL_ROOT_CERT",
                options.pg_tls.clone().map_or(String::new(), |(_, ca)| ca),
            ),
            (
                "PREWARM_REDIS__URL",
                env_or("PREWARM_TEST_REDIS", "redis://127.0.0.1:6379"),
            ),
            (
                "PREWARM_KAFKA__BROKERS",
                env_or("PREWARM_TEST_KAFKA", "127.0.0.1:9092"),
            ),
            ("PREWARM_KAFKA__PARTITIONS", "2".into()),
            (
                "PREWARM_S3__ENDPOINT",
                env_or("PREWARM_TEST_S3", "http://127.0.0.1:9000"),
            ),
            ("PREWARM_S3__ACCESS_KEY_ID", "test".into()),
            ("PREWARM_S3__SECRET_ACCESS_KEY", "test".into()),
            ("PREWARM_SERVER__PORT", "0".into()),
            ("PREWARM_SERVER__WORKERS", "2".into()),
            ("PREWARM_POOL__TARGET", options.pool_target.to_string()),
            ("PREWARM_WORKER__BATCH_WINDOW_MS", "10".into()),
        ]
        .into_iter()
        .map(|(k, v): (&str, String)| (k.to_string(), v)),
    );
    env
}

/// An in-process warmup-worker over `env` (plus the test's worker
/// settings), running until `stop`: its refiller, its operations base URL
/// and its task.
async fn start_worker(
    env: &[(String, String)],
    options: &Options,
    pause: &PausePoints,
    stop: &CancellationToken,
) -> (Refiller, String, tokio::task::JoinHandle<()>) {
    let mut worker_env = env.to_vec();
    worker_env.extend(options.worker_env.iter().cloned());
    let worker_settings =
        warmup_worker::settings::load_from(worker_env.into_iter()).expect("worker settings");
    let mut worker = warmup_worker::startup::Worker::build(worker_settings)
        .await
        .expect("build warmup-worker");
    worker.refiller.pause = pause.clone();
    let refiller = worker.refiller.clone();
    let base = format!("http://127.0.0.1:{}", worker.http_port());
    let token = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = worker.run(token.cancelled_owned()).await {
            eprintln!("warmup-worker stopped: {e}");
        }
    });
    (refiller, base, task)
}

impl TestStack {
    pub async fn spawn(options: Options) -> TestStack {
        let admin_server = options.pg_server.clone().unwrap_or_else(pg_server);
        let run = Isolated::new("test", &admin_server);
        let admin_tls = admin_tls(&options);
        let mut admin = admin_tls
            .establish(&format!("{admin_server}/postgres"))
            .await
            .expect("connect to Postgres (is `make up` done?)");
        run.create_database(&mut admin)
            .await
            .expect("create test database");

        let mut env = stack_env(&run, &options);
        let recommender_listener = options.recommender.as_ref().map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind recommender");
            let port = listener.local_addr().expect("recommender port").port();
            env.push((
                "PREWARM_SIMILAR__UPSTREAM_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ));
            listener
        });
        env.extend(options.env.iter().cloned());

        let api_settings =
            template_api::settings::load_from(env.clone().into_iter()).expect("api settings");
        let objects = ObjectStore::new(&api_settings.s3).await;
        objects
            .ensure_bucket()
            .await
            .expect("create test bucket (is `make up` done?)");
        let publisher = WarmupPublisher::new(&api_settings.kafka).expect("kafka producer");

        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let pause = PausePoints::enabled();
        let app = template_api::startup::Application::build_with_pause_points(
            api_settings.clone(),
            pause.clone(),
        )
        .await
        .expect("build template-api");
        let base = format!("http://127.0.0.1:{}", app.port());
        let ops_base = format!("http://127.0.0.1:{}", app.metrics_port());
        let db = app.state().db.clone();
        let index = app.state().index.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = app.run(std::future::pending()).await {
                eprintln!("template-api stopped: {e}");
            }
        }));

        let recommender = recommender_listener.map(|listener| {
            let faults = options.recommender.clone().unwrap_or_default();
            let catalogue = Db::connect_with(
                &run.db_url(),
                4,
                Duration::from_secs(5),
                prewarm_store::db::DEFAULT_CHECK_IDLE,
                &admin_tls,
            )
            .expect("recommender database");
            Recommender::start(listener, catalogue, faults).expect("start recommender")
        });

        let (refiller, worker_base) = if options.worker {
            let (refiller, base, task) = start_worker(&env, &options, &pause, &stop).await;
            tasks.push(task);
            (Some(refiller), Some(base))
        } else {
            (None, None)
        };

        TestStack {
            base,
            ops_base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            admin_token: run.admin_token.clone(),
            db,
            index,
            objects,
            publisher,
            refiller,
            options,
            env,
            recommender,
            worker_base,
            pause,
            cleanup: Cleanup {
                admin_url: format!("{admin_server}/postgres"),
                db_name: run.db_name.clone(),
                redis_prefix: run.redis_prefix.clone(),
                db_dropped: false,
            },
            db_name: run.db_name,
            stop,
            tasks,
        }
    }

    /// The worker's settings for this test's resources, with `extra` applied.
    pub fn worker_settings(&self, extra: &[(&str, &str)]) -> warmup_worker::settings::Settings {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        warmup_worker::settings::load_from(env.into_iter()).expect("worker settings")
    }

    /// An in-process reconciler over this test's resources.
    pub async fn reconciler(
        &self,
        extra: &[(&str, &str)],
    ) -> warmup_worker::reconciler::Reconciler {
        let mut worker = warmup_worker::startup::Worker::build(self.worker_settings(extra))
            .await
            .expect("build warmup-worker");
        worker.refiller.pause = self.pause.clone();
        worker.reconciler()
    }

    /// An in-process sizer over this test's resources, for passes a test
    /// drives itself (with the stack's worker off, nothing else plans).
    pub async fn sizer(&self, extra: &[(&str, &str)]) -> warmup_worker::sizer::Sizer {
        let mut worker = warmup_worker::startup::Worker::build(self.worker_settings(extra))
            .await
            .expect("build warmup-worker");
        worker.refiller.pause = self.pause.clone();
        worker.sizer()
    }

    /// A pool-depth pass of its own (one worker replica's), with this
    /// test's pause points, reading changes up to the clock (no commit lag),
    /// so each pass sees what the test just did.
    pub async fn depths(&self, extra: &[(&str, &str)]) -> warmup_worker::depths::Depths {
        let mut worker = warmup_worker::startup::Worker::build(self.worker_settings(extra))
            .await
            .expect("build warmup-worker");
        worker.refiller.pause = self.pause.clone();
        let mut depths = worker.depths();
        depths.commit_lag = Duration::ZERO;
        depths
    }

    /// Starts the real warmup-worker binary (built by `make test`) as a child
    /// process over this test's resources, for crash tests.
    pub fn spawn_worker_process(&self, extra: &[(&str, &str)]) -> Process {
        self.spawn_binary("warmup-worker", extra)
    }

    /// Starts the real template-api binary on a free port; returns it and its base URL.
    pub fn spawn_api_process(&self, extra: &[(&str, &str)]) -> (Process, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let port_text = port.to_string();
        let mut vars: Vec<(&str, &str)> = vec![
            ("PREWARM_SERVER__PORT", port_text.as_str()),
            ("PREWARM_SERVER__METRICS_PORT", "0"),
        ];
        vars.extend_from_slice(extra);
        (
            self.spawn_binary("template-api", &vars),
            format!("http://127.0.0.1:{port}"),
        )
    }

    fn spawn_binary(&self, name: &str, extra: &[(&str, &str)]) -> Process {
        self.spawn_logged(name, extra, None)
    }

    /// Starts `template-api` or `warmup-worker` as a child process; with
    /// `log`, its stdout (JSON logs at info) goes to that file.
    pub fn spawn_logged(
        &self,
        name: &str,
        extra: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Process {
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let binary = target.join("debug").join(name);
        assert!(
            binary.exists(),
            "{} is missing: run `cargo build --bins` (make test does)",
            binary.display()
        );
        let mut cmd = std::process::Command::new(binary);
        cmd.env_clear()
            .envs(self.env.iter().cloned())
            .stderr(std::process::Stdio::null());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("create the log file");
                cmd.env("PREWARM_LOG__LEVEL", "info")
                    .env("PREWARM_LOG__FORMAT", "json")
                    .stdout(file);
            }
            None => {
                cmd.env("PREWARM_LOG__LEVEL", "error")
                    .stdout(std::process::Stdio::null());
            }
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Process(cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}")))
    }

    /// Another template-api instance over this test's resources (same
    /// database, Redis prefix, topic, bucket), in-process; returns its base URL.
    pub async fn spawn_second_api(&mut self, extra: &[(&str, &str)]) -> String {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = template_api::settings::load_from(env.into_iter()).expect("api settings");
        let app = template_api::startup::Application::build(settings)
            .await
            .expect("build second template-api");
        let base = format!("http://127.0.0.1:{}", app.port());
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = app.run(std::future::pending()).await {
                eprintln!("second template-api stopped: {e}");
            }
        }));
        base
    }

    /// `GET {base}/templates/{id}/similar?page=N` as `tenant`.
    pub async fn similar_at(
        &self,
        base: &str,
        tenant: &Tenant,
        template: TemplateId,
        page: u32,
    ) -> Response {
        self.http
            .get(format!("{base}/templates/{template}/similar?page={page}"))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .expect("GET similar")
    }

    /// Calls the stand-in recommendation service has answered (or is answering).
    pub async fn upstream_calls(&self) -> u64 {
        let r = self
            .recommender
            .as_ref()
            .expect("stack without recommender");
        let stats: Value = self
            .http
            .get(format!("{}/stats", r.url()))
            .send()
            .await
            .expect("recommender stats")
            .json()
            .await
            .expect("stats json");
        stats["calls"].as_u64().expect("calls")
    }

    /// Changes the stand-in's latency/failures at run time.
    pub async fn set_upstream_faults(&self, faults: &Faults) {
        let r = self
            .recommender
            .as_ref()
            .expect("stack without recommender");
        let resp = self
            .http
            .post(format!("{}/control", r.url()))
            .json(faults)
            .send()
            .await
            .expect("recommender control");
        assert_eq!(resp.status(), StatusCode::OK);
    }

    /// The API's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.expect("metrics text")
    }

    /// One metric of the API (0 when the series does not exist yet).
    /// The in-process worker's `/metrics` text.
    pub async fn worker_metrics(&self) -> String {
        let worker = self.worker_base.as_deref().expect("an in-process worker");
        let resp = self
            .http
            .get(format!("{worker}/metrics"))
            .send()
            .await
            .expect("GET the worker's /metrics");
        resp.text().await.expect("the worker's metrics text")
    }

    /// The API's `prewarm_warmup_requests_total` for each of `outcomes`
    /// (`queued`, `coalesced`, `dropped`, `undelivered`), 0 when not yet counted.
    pub async fn warmup_requests<const N: usize>(&self, outcomes: [&str; N]) -> [f64; N] {
        let text = self.metrics().await;
        outcomes.map(|outcome| {
            metric_value(
                &text,
                "prewarm_warmup_requests_total",
                &[("outcome", outcome)],
            )
            .unwrap_or(0.0)
        })
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, name, labels).unwrap_or(0.0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits until `n` API replicas listen on the cache invalidation channel
    /// (each drops its caches once when it starts listening: a test that
    /// relies on a cached entry fills it after that).
    pub async fn wait_subscribed(&self, n: usize) {
        let prefix = self
            .env
            .iter()
            .find(|(k, _)| k == "PREWARM_REDIS__KEY_PREFIX")
            .map(|(_, v)| v.clone())
            .expect("a key prefix");
        for _ in 0..400 {
            let out = std::process::Command::new("redis-cli")
                .args([
                    "-p",
                    "6379",
                    "PUBSUB",
                    "NUMSUB",
                    &format!("{prefix}invalidate"),
                ])
                .output()
                .expect("redis-cli");
            let text = String::from_utf8_lossy(&out.stdout);
            let count = text
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse::<usize>().ok());
            if count == Some(n) {
                // The listener drops its caches right after subscribing.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} replicas never listened on the invalidation channel");
    }

    /// A URL on the API's operations listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("{}{}", self.ops_base, path)
    }

    /// Stops the services and drops the test database.
    pub async fn finish(mut self) {
        self.stop.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for t in &self.tasks {
            t.abort();
        }
        drop(self.db);
        let admin_server = self.options.pg_server.clone().unwrap_or_else(pg_server);
        if let Ok(mut admin) = admin_tls(&self.options)
            .establish(&format!("{admin_server}/postgres"))
            .await
        {
            let drop_db = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name);
            match diesel::sql_query(drop_db).execute(&mut admin).await {
                Ok(_) => self.cleanup.db_dropped = true,
                Err(e) => eprintln!("could not drop {}: {e}", self.db_name),
            }
        }
    }

    // ---- requests -------------------------------------------------------

    pub async fn create_tenant(&self, name: &str, design_limit: i32) -> Tenant {
        let resp = self
            .http
            .post(self.url("/admin/companies"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"name": name, "design_limit": design_limit}))
            .send()
            .await
            .expect("create company");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let company: Company = resp.json().await.expect("company json");
        let resp = self
            .http
            .post(self.url(&format!("/admin/companies/{}/api-keys", company.id)))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("create key");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let key: ApiKeyCreated = resp.json().await.expect("key json");
        Tenant {
            id: company.id,
            key: key.api_key,
        }
    }

    /// Uploads a template with `n` generated images.
    pub async fn upload_template(&self, tenant: &Tenant, n: usize, metadata: Value) -> Response {
        self.http
            .post(self.url("/templates"))
            .bearer_auth(&tenant.key)
            .multipart(template_form(n, &metadata))
            .send()
            .await
            .expect("upload template")
    }

    /// Sends `form` as `tenant` with `method` to `path` of the API.
    pub async fn send_form(
        &self,
        tenant: &Tenant,
        method: reqwest::Method,
        path: &str,
        form: Form,
    ) -> Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&tenant.key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// A tenant (design limit 1,000) with `n` private templates of `images`
    /// images each.
    pub async fn tenant_with_templates(
        &self,
        name: &str,
        n: usize,
        images: usize,
    ) -> (Tenant, Vec<TemplateId>) {
        let tenant = self.create_tenant(name, 1_000).await;
        let mut templates = Vec::with_capacity(n);
        for _ in 0..n {
            templates.push(self.create_template(&tenant, images, "private").await.id);
        }
        (tenant, templates)
    }

    pub async fn create_template(&self, tenant: &Tenant, n: usize, visibility: &str) -> Template {
        let resp = self
            .upload_template(
                tenant,
                n,
                json!({"name": "Poster", "category": "posters", "layout": {"w": 800, "h": 600}, "visibility": visibility}),
            )
            .await;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_str(&body).expect("template json")
    }

    pub async fn post_design(&self, tenant: &Tenant, template: TemplateId) -> Response {
        self.http
            .post(self.url("/designs"))
            .bearer_auth(&tenant.key)
            .json(&json!({"template_id": template}))
            .send()
            .await
            .expect("post design")
    }

    /// `POST /designs` on a task of its own, for a test that pauses the
    /// request midway and acts meanwhile.
    pub fn post_design_in_background(
        &self,
        tenant: &Tenant,
        template: TemplateId,
    ) -> tokio::task::JoinHandle<reqwest::Result<Response>> {
        let (http, url, key) = (self.http.clone(), self.url("/designs"), tenant.key.clone());
        let body = json!({ "template_id": template });
        tokio::spawn(async move { http.post(url).bearer_auth(key).json(&body).send().await })
    }

    /// Waits until a service process at `base` answers `/healthz` (30 s at most).
    pub async fn wait_healthy(&self, base: &str) {
        let started = Instant::now();
        while self
            .http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{base} did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn create_design(&self, tenant: &Tenant, template: TemplateId) -> Design {
        let resp = self.post_design(tenant, template).await;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_str(&body).expect("design json")
    }

    pub async fn get(&self, tenant: &Tenant, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&tenant.key)
            .send()
            .await
            .expect("get")
    }

    pub async fn pool_status(&self, tenant: &Tenant, template: TemplateId) -> PoolStatus {
        let resp = self
            .get(tenant, &format!("/templates/{template}/pool"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("pool status json")
    }

    /// Waits until the template's Redis list holds `n` ids (and the ledger
    /// agrees); panics after `timeout`.
    pub async fn wait_pool(
        &self,
        tenant: &Tenant,
        template: TemplateId,
        n: i64,
        timeout: Duration,
    ) -> PoolStatus {
        let start = Instant::now();
        loop {
            let status = self.pool_status(tenant, template).await;
            if status.indexed == n && status.ready == n && status.copying == 0 {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "pool of {template} did not reach {n} within {timeout:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One generated PNG `image` part of `bytes` bytes (`seed` varies the pixels).
pub fn png_part(seed: usize, bytes: usize) -> Part {
    Part::bytes(images::png(seed, bytes))
        .file_name(format!("img{seed}.png"))
        .mime_str("image/png")
        .unwrap()
}

/// The multipart body of `POST /templates`: the `metadata` part, then `n`
/// generated PNG `image` parts.
pub fn template_form(n: usize, metadata: &Value) -> Form {
    let mut form = Form::new().part(
        "metadata",
        Part::text(metadata.to_string())
            .mime_str("application/json")
            .unwrap(),
    );
    for i in 0..n {
        form = form.part("image", png_part(i, 256));
    }
    form
}

/// One sample of a Prometheus text exposition: the first line of metric
/// `name` whose labels include every `key="value"` of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Reads an error body's stable code.
pub async fn error_code(resp: Response) -> (StatusCode, String) {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or("<no code>")
        .to_string();
    (status, code)
}
