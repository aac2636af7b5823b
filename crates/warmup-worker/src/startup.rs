//! Connects the worker's dependencies; `Worker::run` subscribes to the warm-up topic.

use shared_domain::error::Chain;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use prewarm_store::connect::connect;
use prewarm_store::warmup_topic::{self, WarmupPublisher};
use rdkafka::consumer::Consumer;
use tokio::sync::Semaphore;

use std::net::TcpListener;

use actix_web::dev::Server;

use crate::consumer::{DeadLetters, WorkerContext};
use crate::http::Probes;
use crate::metrics::WorkerMetrics;
use crate::reconciler::Reconciler;
use crate::refill::Refiller;
use crate::settings::Settings;
use crate::singleton::Singleton;
use crate::sizer::Sizer;
use crate::sizing::{Policy, TargetRule};

pub struct Worker {
    pub refiller: Refiller,
    /// This replica's holder of the background passes' leases.
    pub singleton: Singleton,
    consumer: crate::consumer::ClosingConsumer,
    settings: Settings,
    publisher: WarmupPublisher,
    http: Server,
    http_port: u16,
}

impl Worker {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let clients = connect(
            &settings.database,
            &settings.redis,
            &settings.s3,
            &settings.kafka,
        )
        .await?;
        let metrics = Arc::new(WorkerMetrics::new()?);
        // Subscribed in `run`, not here: a worker built for its passes alone
        // (the benchmark, `gc-pass`) must not join the group.
        let consumer = warmup_topic::consumer(
            &settings.kafka,
            warmup_topic::ConsumerTuning {
                group_id: &settings.worker.group_id,
                max_poll_interval_ms: settings.worker.max_poll_interval_ms,
                fetch_wait_ms: settings.worker.fetch_wait_ms,
            },
            WorkerContext {
                metrics: metrics.clone(),
            },
        )?;
        let refiller = Refiller {
            db: clients.db,
            index: clients.index,
            objects: clients.objects,
            copy_limiter: Arc::new(Semaphore::new(settings.worker.copy_concurrency)),
            rule: TargetRule {
                fixed: settings.pool.target,
                adaptive: settings.pool.adaptive(),
                min: settings.pool.min,
                idle: settings.pool.idle(),
            },
            budget: (settings.pool.adaptive() && settings.pool.budget_objects > 0)
                .then(|| i64::try_from(settings.pool.budget_objects).unwrap_or(i64::MAX)),
            estimates: Arc::default(),
            lease: settings.pool.lease(),
            item_parallelism: settings.worker.item_parallelism,
            items_in_flight: settings.worker.items_in_flight,
            metrics: metrics.clone(),
            pause: Default::default(),
            stopping: CancellationToken::new(),
        };
        if refiller.budget.is_some() {
            recount_live_items(&refiller.db).await;
        }
        let publisher = WarmupPublisher::acked(&settings.kafka)?;
        publisher.register_metrics(&metrics.registry)?;
        refiller.db.query_metrics().register(&metrics.registry)?;
        let listener = TcpListener::bind((
            settings.worker.http_host.as_str(),
            settings.worker.http_port,
        ))?;
        let http_port = listener.local_addr()?.port();
        let http = crate::http::serve(
            listener,
            Probes {
                refiller: refiller.clone(),
                publisher: publisher.clone(),
                metrics,
            },
        )?;
        Ok(Self {
            singleton: Singleton::new(
                refiller.db.clone(),
                Duration::from_secs(settings.worker.singleton_lease_secs),
            ),
            refiller,
            consumer: crate::consumer::ClosingConsumer::new(consumer),
            settings,
            publisher,
            http,
            http_port,
        })
    }

    /// The sizer: adaptive sizing, the idle rule and operator policies all
    /// plan through it.
    pub fn sizer(&self) -> Sizer {
        let p = &self.settings.pool;
        let w = &self.settings.worker;
        Sizer {
            refiller: self.refiller.clone(),
            singleton: self.singleton.clone(),
            rule: self.refiller.rule,
            book: Default::default(),
            policy: Policy {
                min: p.min,
                max: p.max,
                budget: (p.budget_objects > 0).then_some(p.budget_objects),
                miss_target: p.miss_target,
                keep_secs: p.keep_secs as f64,
            },
            demand_fast_secs: p.demand_fast_secs as f64,
            demand_slow_secs: p.demand_slow_secs as f64,
            interval: Duration::from_millis(p.sizing_interval_ms),
            item_parallelism: w.item_parallelism,
            refill_parallelism: w.refill_parallelism,
            metrics_templates: w.metrics_templates,
            max_policy_templates: p.max_policy_templates as usize,
            forecast_retry: Default::default(),
            refilling: Default::default(),
            copy_concurrency: w.copy_concurrency,
            forecast: (p.adaptive() && p.forecast).then_some(crate::forecast::Forecaster {
                profile: prewarm_store::db::demand_profile::Profile {
                    alpha: p.forecast_alpha,
                    zone: p.forecast_zone(),
                },
                weeks: p.forecast_weeks,
            }),
        }
    }

    /// The port of `/healthz`, `/readyz` and `/metrics`.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn reconciler(&self) -> Reconciler {
        let w = &self.settings.worker;
        Reconciler {
            refiller: self.refiller.clone(),
            singleton: self.singleton.clone(),
            interval: Duration::from_millis(w.reconcile_interval_ms.max(1)),
            gc_interval: (w.gc_interval_secs > 0).then(|| Duration::from_secs(w.gc_interval_secs)),
            gc_grace: Duration::from_secs(w.gc_grace_secs),
            gc_multipart_age: Duration::from_secs(w.gc_multipart_age_secs),
            parallelism: w.refill_parallelism,
            batch: w.reconcile_batch,
            sweep: w.reconcile_sweep,
            gc_pages: w.gc_pages_per_pass,
            gc_page: crate::reconciler::GC_PAGE,
            commit_lag: crate::reconciler::COMMIT_LAG,
            idle: self.settings.pool.idle(),
        }
    }

    /// The pool-depth pass behind the metrics.
    pub fn depths(&self) -> crate::depths::Depths {
        let mut depths = crate::depths::Depths::new(
            self.refiller.db.clone(),
            self.refiller.rule,
            self.settings.worker.metrics_templates,
            self.settings.worker.reconcile_sweep,
        );
        depths.pause = self.refiller.pause.clone();
        depths
    }

    /// Consumes and reconciles until `shutdown` resolves, then commits and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        // The refiller's own token: a refill under way stops starting items.
        let stop = self.refiller.stopping.clone();
        self.consumer
            .subscribe(&[self.settings.kafka.topic.as_str()])?;
        let reconciler = self.reconciler();
        let reconcile = self.settings.worker.reconcile_interval_ms > 0;
        let dead_letters = DeadLetters {
            publisher: self.publisher.clone(),
            topic: self.settings.kafka.dead_letter_topic(),
        };
        let sizer = self.sizer();
        let depth_pass = self.depths();
        let http = self.http.handle();
        let http_server = self.http;
        let sizing = sizer.run(stop.clone());
        let rule = self.refiller.rule;
        let fixed_or_min = if rule.adaptive { rule.min } else { rule.fixed };
        let depths = crate::depths::run(
            depth_pass,
            self.refiller.metrics.clone(),
            fixed_or_min,
            Duration::from_millis(self.settings.worker.metrics_interval_ms),
            stop.clone(),
        );
        let consumer = crate::consumer::run(
            self.consumer,
            self.refiller,
            dead_letters,
            self.settings.worker,
            stop.clone().cancelled_owned(),
        );
        let reconciling = async {
            if reconcile {
                reconciler.run(stop.clone().cancelled_owned()).await;
            }
        };
        let watcher = async {
            shutdown.await;
            stop.cancel();
        };
        let serving = async {
            if let Err(e) = http_server.await {
                tracing::warn!(error = %Chain(&e), "health/metrics server stopped");
            }
        };
        let stopping_http = async {
            stop.cancelled().await;
            http.stop(true).await;
        };
        let (_, consumed, _, _, _, _, _) = tokio::join!(
            watcher,
            consumer,
            reconciling,
            sizing,
            depths,
            serving,
            stopping_http
        );
        consumed
    }
}

/// Under a budget, reserves check it against each template's recorded live
/// items (`prewarm_store::db::pool_live`), which workers without a budget do
/// not keep: a worker started with one recounts them from the ledger. A
/// failure is logged; the records are still an upper bound unless a worker
/// without a budget pooled items meanwhile, and the next start recounts.
async fn recount_live_items(db: &prewarm_store::db::Db) {
    let counted = match db.conn().await {
        Ok(mut conn) => prewarm_store::db::pool_live::recount(&mut conn)
            .await
            .map_err(prewarm_store::db::StoreError::from),
        Err(e) => Err(e),
    };
    match counted {
        Ok(live) => tracing::info!(live, "pool budget: live items recounted"),
        Err(e) => tracing::warn!(error = %Chain(&e), "pool budget: could not recount live items"),
    }
}
