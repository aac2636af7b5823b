//! Connecting the dependencies both services share, in one place.

use secrecy::ExposeSecret;

use crate::db::{self, Db};
use crate::objects::ObjectStore;
use crate::pool_index::PoolIndex;
use crate::settings::{DatabaseSettings, KafkaSettings, RedisSettings, S3Settings};
use crate::warmup_topic;

/// Handles to Postgres, the Redis pool index and S3.
#[derive(Clone)]
pub struct Clients {
    pub db: Db,
    pub index: PoolIndex,
    pub objects: ObjectStore,
}

/// Migrates (when enabled), connects Postgres, Redis and S3, and creates the
/// Kafka topic when `kafka.create_topic` is set.
pub async fn connect(
    database: &DatabaseSettings,
    redis: &RedisSettings,
    s3: &S3Settings,
    kafka: &KafkaSettings,
) -> anyhow::Result<Clients> {
    let db_url = database.url.expose_secret();
    let tls = database.tls().map_err(anyhow::Error::msg)?;
    if database.migrate {
        db::run_migrations_with(db_url, &tls).await?;
    }
    let db = Db::connect_with(
        db_url,
        database.max_connections,
        database.acquire_timeout(),
        database.check_idle(),
        &tls,
    )?;
    // One connection now, so a wrong CA or host name stops the service at
    // start with the reason, instead of every request failing later.
    db.ping().await.map_err(|e| {
        anyhow::anyhow!(
            "Postgres at start (database.ssl_mode = {:?}): {}",
            database.ssl_mode,
            shared_domain::error::Chain(&e)
        )
    })?;
    let index = PoolIndex::new(
        crate::redis::Redis::connect(
            redis.url.expose_secret(),
            redis.ca_path(),
            &redis.key_prefix,
            redis.pool_size,
            redis.command_timeout(),
        )
        .await?,
    )
    .with_pop_memory(redis.pop_memory());
    let objects = ObjectStore::new(s3).await;
    if kafka.create_topic {
        warmup_topic::ensure_topic(kafka).await?;
    }
    Ok(Clients { db, index, objects })
}
