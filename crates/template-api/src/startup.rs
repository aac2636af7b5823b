//! Builds the application: connects dependencies, binds the public listener
//! (its route table is `routes::routes`) and the operations listener
//! (`/metrics`, detailed `/readyz`; port 0 picks a free one, for tests).

use shared_domain::error::Chain;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use prewarm_store::connect::connect;
use prewarm_store::pause::PausePoints;
use prewarm_store::shared_cache::{Invalidation, SharedCache};
use prewarm_store::warmup_topic::WarmupPublisher;
use tokio::sync::Semaphore;

use crate::auth::{AuthCache, Authenticator};
use crate::background::Background;
use crate::company_slots::CompanySlots;
use crate::error::{json_error, path_error, query_error};
use crate::metrics::ApiMetrics;
use crate::prefetch::Prefetch;
use crate::rate_limit::RateLimiter;
use crate::routes::{self, health, not_found};
use crate::settings::Settings;
use crate::similar::SimilarTemplates;
use crate::state::AppState;
use crate::template_versions::TemplateVersions;
use crate::upload::UploadBudget;
use crate::warmup_requests::WarmupRequests;
use prewarm_store::rate_buckets::RateBuckets;

pub struct Application {
    port: u16,
    metrics_port: u16,
    server: Server,
    ops: Server,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_pause_points(settings, PausePoints::default()).await
    }

    /// [`Application::build`] with a test's pause points wired in.
    pub async fn build_with_pause_points(
        settings: Settings,
        pause: PausePoints,
    ) -> anyhow::Result<Self> {
        let state = build_state(settings, pause).await?;
        let s = &state.settings.server;
        let listener = TcpListener::bind((s.host.as_str(), s.port))?;
        let port = listener.local_addr()?.port();
        let ops_listener = TcpListener::bind((s.host.as_str(), s.metrics_port))?;
        let metrics_port = ops_listener.local_addr()?.port();
        let server = run(listener, state.clone())?;
        let ops = run_ops(ops_listener, state.clone())?;
        crate::idempotency::spawn_purge(
            &state.background,
            state.db.clone(),
            Duration::from_secs(state.settings.idempotency.retention_secs),
        );
        Ok(Self {
            port,
            metrics_port,
            server,
            ops,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operations listener's port (`/metrics`, detailed `/readyz`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes (the binary passes SIGTERM/SIGINT:
    /// [`prewarm_service_kit::shutdown::signal`]), then stops accepting, lets
    /// in-flight requests finish within `server.shutdown_timeout_secs`,
    /// stops the background loops (each after the step it is in), lists
    /// prefetched pool ids again and flushes pending warm-up requests.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        /// How long shutdown waits for prefetch pops in flight (each is
        /// one Redis round trip, bounded by the command timeout).
        const PREFETCH_POP_WAIT: Duration = Duration::from_secs(3);
        /// How long shutdown waits for a background loop's step (a purge
        /// step of at most a few pages, a sweep's put-backs): short, as the
        /// pod's grace period also covers the requests in flight.
        const BACKGROUND_WAIT: Duration = Duration::from_secs(2);
        /// How long shutdown spends listing prefetched ids again (the
        /// reconciler lists what is left after `pool.pop_memory_ms`).
        const PUT_BACK_WAIT: Duration = Duration::from_secs(5);
        let ops = self.ops.handle();
        let handle = self.server.handle();
        tokio::spawn(self.ops);
        let mut server = std::pin::pin!(self.server);
        let result = tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                // Requests still in flight hold no more ids ahead, and a
                // pop in flight lists its ids again -- on the runtime of the
                // request that started it, so before the server stops.
                if let Some(prefetch) = &self.state.prefetch {
                    prefetch.close();
                    prefetch.wait_for_pops(PREFETCH_POP_WAIT).await;
                }
                // The server future must keep being polled while it stops.
                tokio::join!(handle.stop(true), server).1
            }
        };
        ops.stop(true).await;
        // The prefetch sweeper must not hold ids again once they are put
        // back, and the warm-up sender's window is flushed below.
        if !self.state.background.stop(BACKGROUND_WAIT).await {
            tracing::warn!("a background loop was still in a step after {BACKGROUND_WAIT:?}");
        }
        // Enqueued first (no wait): a pod killed while ids are put back
        // still has its warm-ups in the producer's queue.
        self.state.warmup.send_pending();
        if let Some(prefetch) = &self.state.prefetch {
            let put_back = prefetch.put_back_all(&self.state.index, &self.state.db);
            match tokio::time::timeout(PUT_BACK_WAIT, put_back).await {
                Ok(returned) => tracing::info!(returned, "prefetched pool items listed again"),
                Err(_) => tracing::warn!(
                    "prefetched pool items not all listed again within {PUT_BACK_WAIT:?}; the reconciler lists the rest"
                ),
            }
        }
        self.state
            .warmup
            .publisher()
            .flush(std::time::Duration::from_secs(5));
        result
    }
}

pub async fn build_state(settings: Settings, pause: PausePoints) -> anyhow::Result<AppState> {
    let clients = connect(
        &settings.database,
        &settings.redis,
        &settings.s3,
        &settings.kafka,
    )
    .await?;
    let publisher = WarmupPublisher::new(&settings.kafka)?;
    let metrics = ApiMetrics::new()?;
    publisher.register_metrics(&metrics.registry)?;
    clients.db.query_metrics().register(&metrics.registry)?;
    let shared = SharedCache::new(clients.index.redis());
    let similar = SimilarTemplates::new(&settings.similar, Some(shared.clone()), &metrics)?;
    // At most half the pool looks keys up at once: a spray of unknown keys
    // leaves connections for the requests that carry valid ones.
    let auth = Arc::new(Authenticator::new(
        AuthCache::new(
            Duration::from_secs(settings.server.auth_cache_ttl_secs),
            settings.database.max_connections / 2,
        ),
        clients.db.clone(),
        &settings.admin_token,
        pause.clone(),
    ));
    let versions = Arc::new(TemplateVersions::default());
    let background = Background::new();
    spawn_cache_upkeep(&background, &similar, &auth, &versions, &shared).await;
    let metrics = Arc::new(metrics);
    let prefetch = Prefetch::new(
        Duration::from_millis(settings.serving.prefetch_hold_ms),
        settings.serving.prefetch_batch,
        metrics.clone(),
        pause.clone(),
    );
    if let Some(prefetch) = &prefetch {
        prefetch.spawn_sweeper(&background, clients.index.clone(), clients.db.clone());
    }
    let copy_limiter = Arc::new(Semaphore::new(settings.serving.cold_copy_global_limit));
    let rate_limiter = settings.rate_limit.enabled.then(|| {
        Arc::new(RateLimiter::new(
            settings.rate_limit.clone(),
            RateBuckets::new(clients.index.redis()),
            auth.clone(),
            metrics.clone(),
        ))
    });
    Ok(AppState {
        db: clients.db,
        index: clients.index,
        objects: clients.objects,
        warmup: WarmupRequests::start(
            publisher,
            Duration::from_millis(settings.serving.warmup_coalesce_ms),
            &background,
        ),
        copy_limiter,
        cold_slots: Arc::new(CompanySlots::new(settings.serving.cold_designs_per_company)),
        auth,
        shared_cache: shared,
        metrics,
        similar,
        upload_budget: Arc::new(UploadBudget::new(
            settings.server.max_upload_bytes_in_flight,
            Duration::from_millis(settings.server.upload_budget_wait_ms),
        )),
        rate_limiter,
        settings: Arc::new(settings),
        versions,
        prefetch,
        background,
        pause,
    })
}

/// Starts the cache sweeper and the invalidation listener of this replica.
async fn spawn_cache_upkeep(
    background: &Background,
    similar: &SimilarTemplates,
    auth: &Arc<Authenticator>,
    versions: &Arc<TemplateVersions>,
    shared: &SharedCache,
) {
    let sweeper = similar.clone();
    background.every(sweeper.sweep_interval(), move || {
        sweeper.sweep();
        std::future::ready(())
    });
    match shared.subscribe().await {
        Ok(mut rx) => {
            let listener = similar.clone();
            let auth = auth.clone();
            let versions = versions.clone();
            background.until_stopped(async move {
                while let Some(message) = rx.recv().await {
                    match message {
                        Invalidation::Template(template) => {
                            listener.drop_local(template);
                            versions.forget(template);
                        }
                        Invalidation::ApiKey(hash) => auth.cache.forget(&hash),
                        Invalidation::All => {
                            listener.drop_all_local();
                            auth.cache.forget_all();
                            versions.forget_all();
                        }
                    }
                }
            });
        }
        // Without the channel, entries of other replicas' edits expire with
        // `similar.metadata_ttl_secs`; this replica's own edits still apply.
        Err(e) => tracing::warn!(error = %Chain(&e), "cache invalidation channel unavailable"),
    }
}

fn run(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let server_settings = state.settings.server.clone();
    // What a middleware or extractor needs alone is registered alone: those
    // modules then depend on nothing above them (not on `AppState`).
    let metrics = web::Data::from(state.metrics.clone());
    let auth = web::Data::from(state.auth.clone());
    let limiter = state.rate_limiter.clone().map(web::Data::from);
    let workers = match server_settings.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let max_connections = state.settings.database.max_connections;
    let per_worker = worker_connections(max_connections, workers);
    // The process-wide pool keeps the half key lookups may use (and probes).
    state.db.resize(max_connections / 2);
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        let json_limit = data.settings.server.json_limit_bytes;
        let mut app = App::new()
            .app_data(worker_local(&data, per_worker))
            .app_data(metrics.clone())
            .app_data(auth.clone());
        if let Some(limiter) = &limiter {
            app = app.app_data(limiter.clone());
        }
        app.app_data(
            web::JsonConfig::default()
                .limit(json_limit)
                .error_handler(|e, _| json_error(e).into()),
        )
        .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e).into()))
        .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
        .wrap(actix_web::middleware::from_fn(
            crate::rate_limit::rate_limit,
        ))
        .wrap(actix_web::middleware::from_fn(crate::metrics::observe))
        .wrap(actix_web::middleware::from_fn(
            crate::request_span::request_span,
        ))
        .configure(routes::routes)
        .default_service(web::to(not_found))
    })
    .shutdown_timeout(server_settings.shutdown_timeout_secs)
    // Stopped by `Application::run`'s shutdown future, not by actix's own
    // signal handlers.
    .disable_signals()
    .listen(listener)?;
    server = server.workers(workers);
    Ok(server.run())
}

/// Postgres connections of each actix worker's own pool: the half of
/// `database.max_connections` that key lookups may not take (they use the
/// process-wide pool, capped at the other half), split between the workers.
fn worker_connections(max_connections: usize, workers: usize) -> usize {
    ((max_connections - max_connections / 2) / workers.max(1)).max(1)
}

/// This worker's state: the process's, with a Postgres pool and Redis
/// connections of its own. Called on the worker's thread, so their I/O tasks
/// run on its runtime: a warm design's two round trips are written and
/// answered on the thread that serves the request, instead of handing each
/// to a thread of the main runtime and back (measured in
/// `docs/benchmarks.md`). If a pool cannot be built, the shared one serves.
fn worker_local(shared: &web::Data<AppState>, connections: usize) -> web::Data<AppState> {
    let mut state = AppState::clone(shared);
    match state.db.local_copy(connections) {
        Ok(db) => state.db = db,
        Err(e) => tracing::warn!(error = %Chain(&e), "worker Postgres pool: using the shared one"),
    }
    match state.index.local_copy() {
        Ok(index) => state.index = index,
        Err(e) => tracing::warn!(error = %Chain(&e), "worker Redis pool: using the shared one"),
    }
    web::Data::new(state)
}

/// The operations listener: `/metrics`, `/readyz` with every dependency's
/// state, `/healthz`. Kept off the public port (the chart's ServiceMonitor
/// and probes use it).
fn run_ops(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let metrics = web::Data::from(state.metrics.clone());
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(metrics.clone())
            .route("/metrics", web::get().to(crate::metrics::metrics))
            .route("/readyz", web::get().to(health::readyz))
            .route("/healthz", web::get().to(health::healthz))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?;
    Ok(server.run())
}
