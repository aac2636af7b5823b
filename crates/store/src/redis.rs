//! The one Redis handle every Redis adapter shares ([`crate::pool_index`],
//! [`crate::rate_buckets`], [`crate::shared_cache`]): a small pool of
//! multiplexed fred connections with a command timeout, the key prefix
//! every key of this deployment starts with, and the typed error they all
//! answer. Handlers never see fred types.

use std::path::Path;
use std::time::Duration;

use fred::prelude::*;
use shared_domain::error::Chain;

/// A Redis command or connection that failed, with fred's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Command(#[from] fred::error::Error),
    /// The configuration (URL, TLS roots) cannot be used.
    #[error("redis: {0}")]
    Config(String),
}

/// The fred configuration for `url`: `redis://` or `rediss://` (TLS, with
/// `ca_file` or the system's roots; `user:password@` for an ACL user),
/// `redis-cluster://` / `rediss-cluster://` for Redis Cluster (every
/// multi-key command here stays in one hash slot), `redis-sentinel://`.
pub fn client_config(url: &str, ca_file: Option<&Path>) -> Result<Config, RedisError> {
    let mut config = Config::from_url(url)?;
    if config.tls.is_some() {
        let roots = crate::tls::roots(ca_file, "redis.ca_file").map_err(RedisError::Config)?;
        let client = crate::tls::verifying_client(roots).map_err(RedisError::Config)?;
        config.tls = Some(client.into());
    }
    Ok(config)
}

/// Connections to one Redis (or Cluster, or Sentinel set) and the key
/// prefix. Cloning shares the connections.
#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    prefix: String,
    /// How the pool was built, for [`local_copy`](Self::local_copy) and
    /// [`subscriber_config`](Self::subscriber_config).
    spec: std::sync::Arc<Spec>,
}

struct Spec {
    config: Config,
    size: usize,
    command_timeout: Duration,
}

impl Spec {
    fn build(&self) -> Result<Pool, RedisError> {
        let timeout = self.command_timeout;
        let pool = Builder::from_config(self.config.clone())
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .with_connection_config(|c| {
                c.connection_timeout = timeout.max(Duration::from_secs(1));
                c.max_command_attempts = 2;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(self.size.max(1))?;
        let _connections = pool.connect_pool();
        Ok(pool)
    }
}

impl Redis {
    /// Connects a small pool of multiplexed connections. Every command gets
    /// `command_timeout`, so a stalled Redis degrades requests instead of
    /// hanging them. A Redis down at start does not stop the service: the
    /// connections keep retrying in the background.
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        size: usize,
        command_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let mut config = client_config(url, ca_file)?;
        // A Redis that is down at start is retried in the background like a
        // lost connection; meanwhile commands fail after `command_timeout`
        // and the API serves by copy.
        config.fail_fast = false;
        let spec = Spec {
            config,
            size,
            command_timeout,
        };
        let pool = spec.build()?;
        let wait = command_timeout.max(Duration::from_secs(1));
        match tokio::time::timeout(wait, pool.wait_for_connect()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %Chain(&e), "redis unavailable at start; reconnecting in the background")
            }
            Err(_) => {
                tracing::warn!("redis not reachable at start; reconnecting in the background")
            }
        }
        Ok(Self {
            pool,
            prefix: prefix.to_string(),
            spec: std::sync::Arc::new(spec),
        })
    }

    /// The same handle over connections of its own, whose tasks run on the
    /// calling thread's runtime (an actix worker's): a command sent from
    /// that thread is written and its answer read there, without waking a
    /// thread of another runtime twice per command. Connects in the
    /// background, as [`connect`](Self::connect) does after its wait.
    pub fn local_copy(&self) -> Result<Self, RedisError> {
        Ok(Self {
            pool: self.spec.build()?,
            ..self.clone()
        })
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// What every key of this deployment starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configuration a dedicated (subscriber) connection is built from.
    pub(crate) fn subscriber_config(&self) -> Config {
        self.spec.config.clone()
    }

    /// Deletes every key under the prefix (tests simulate a Redis
    /// flush with it without touching other tests' keys; the benchmark drops
    /// a finished run's keys).
    pub async fn clear_prefix(&self) -> Result<u64, RedisError> {
        use futures::TryStreamExt;
        let client = self.pool.next();
        let pattern = format!("{}*", self.prefix);
        // Redis Cluster: every primary is scanned; keys are deleted one by
        // one (they may live in different slots).
        let keys: Vec<fred::types::Key> = if client.is_clustered() {
            client
                .scan_cluster_buffered(pattern, Some(500), None)
                .try_collect()
                .await?
        } else {
            client
                .scan_buffered(pattern, Some(500), None)
                .try_collect()
                .await?
        };
        let mut deleted = 0;
        if client.is_clustered() {
            for key in keys {
                let n: u64 = self.pool.del(key).await?;
                deleted += n;
            }
        } else {
            for batch in keys.chunks(500) {
                let n: u64 = self.pool.del(batch.to_vec()).await?;
                deleted += n;
            }
        }
        Ok(deleted)
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }
}
