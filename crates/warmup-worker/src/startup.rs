//! Connects the worker's dependencies and subscribes to the warm-up topic.

use std::future::Future;
use std::sync::Arc;

use prewarm_store::connect::connect;
use prewarm_store::warmup_topic;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::Semaphore;

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

    /// Consumes until `shutdown` resolves, then commits and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        crate::consumer::run(self.consumer, self.refiller, self.settings.worker, shutdown).await
    }
}
