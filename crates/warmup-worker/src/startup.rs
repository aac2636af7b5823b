//! Connects the worker's dependencies and subscribes to the warm-up topic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use prewarm_store::connect::connect;
use prewarm_store::warmup_topic::{self, WarmupPublisher};
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::Semaphore;

use crate::consumer::DeadLetters;
use crate::reconciler::Reconciler;
use crate::refill::Refiller;
use crate::settings::Settings;

pub struct Worker {
    pub refiller: Refiller,
    consumer: StreamConsumer,
    settings: Settings,
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
        let consumer: StreamConsumer = warmup_topic::base_config(&settings.kafka)
            .set("group.id", &settings.worker.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the refill is durable.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
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
        };
        Ok(Self {
            refiller,
            consumer,
            settings,
        })
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
            publisher: WarmupPublisher::new(&self.settings.kafka)?,
            topic: self.settings.kafka.dead_letter_topic(),
        };
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
        let (_, consumed, _) = tokio::join!(watcher, consumer, reconciling);
        consumed
    }
}
