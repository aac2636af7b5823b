//! Connects the worker's dependencies and subscribes to the warm-up topic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use prewarm_store::connect::connect;
use prewarm_store::warmup_topic::{self, WarmupPublisher};
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::Semaphore;

use std::net::TcpListener;

use actix_web::dev::Server;
use prewarm_store::db::pool_items;

use crate::consumer::{DeadLetters, WorkerContext};
use crate::http::Probes;
use crate::metrics::WorkerMetrics;
use crate::reconciler::Reconciler;
use crate::refill::Refiller;
use crate::settings::Settings;

pub struct Worker {
    pub refiller: Refiller,
    consumer: StreamConsumer<WorkerContext>,
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
        let consumer: StreamConsumer<WorkerContext> = warmup_topic::base_config(&settings.kafka)
            .set("group.id", &settings.worker.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the refill is durable.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // Feeds the consumer-lag gauge.
            .set("statistics.interval.ms", "5000")
            .create_with_context(WorkerContext {
                metrics: metrics.clone(),
            })?;
        consumer.subscribe(&[settings.kafka.topic.as_str()])?;
        let refiller = Refiller {
            db: clients.db,
            index: clients.index,
            objects: clients.objects,
            copy_limiter: Arc::new(Semaphore::new(settings.worker.copy_concurrency)),
            target: settings.pool.target,
            lease: settings.pool.lease(),
            item_parallelism: settings.worker.item_parallelism,
            items_in_flight: settings.worker.items_in_flight,
            metrics: metrics.clone(),
        };
        let publisher = WarmupPublisher::new(&settings.kafka)?;
        publisher.register_metrics(&metrics.registry)?;
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
            refiller,
            consumer,
            settings,
            publisher,
            http,
            http_port,
        })
    }

    /// The port of `/healthz`, `/readyz` and `/metrics`.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn reconciler(&self) -> Reconciler {
        let w = &self.settings.worker;
        Reconciler {
            refiller: self.refiller.clone(),
            interval: Duration::from_millis(w.reconcile_interval_ms.max(1)),
            gc_interval: Duration::from_secs(w.gc_interval_secs.max(1)),
            gc_grace: Duration::from_secs(w.gc_grace_secs),
            parallelism: w.refill_parallelism,
        }
    }

    /// Consumes and reconciles until `shutdown` resolves, then commits and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let reconciler = self.reconciler();
        let reconcile = self.settings.worker.reconcile_interval_ms > 0;
        let dead_letters = DeadLetters {
            publisher: self.publisher.clone(),
            topic: self.settings.kafka.dead_letter_topic(),
        };
        let http = self.http.handle();
        let http_server = self.http;
        let depths = pool_depths(
            self.refiller.clone(),
            self.settings.pool.target,
            Duration::from_millis(self.settings.worker.metrics_interval_ms),
            self.settings.worker.metrics_templates,
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
                tracing::warn!(error = %e, "health/metrics server stopped");
            }
        };
        let stopping_http = async {
            stop.cancelled().await;
            http.stop(true).await;
        };
        let (_, consumed, _, _, _, _) = tokio::join!(
            watcher,
            consumer,
            reconciling,
            depths,
            serving,
            stopping_http
        );
        consumed
    }
}

/// Reads every live template's ready count from the ledger for the metrics.
async fn pool_depths(
    refiller: Refiller,
    target: i32,
    every: Duration,
    keep: usize,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let depths = match refiller.db.conn().await {
            Ok(mut conn) => pool_items::ready_by_template(&mut conn).await,
            Err(e) => Err(e),
        };
        match depths {
            Ok(depths) => refiller.metrics.set_pools(
                target,
                depths
                    .into_iter()
                    .map(|(t, n)| (t.to_string(), n))
                    .collect(),
                keep,
            ),
            Err(e) => tracing::warn!(error = %e, "could not read pool depths for the metrics"),
        }
    }
}
