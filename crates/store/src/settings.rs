//! Settings sections shared by both services (each service's own settings
//! struct embeds them). Defaults live here, next to the field they default.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

pub use crate::objects::S3Settings;
pub use crate::warmup_topic::KafkaSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:pass@host:port/db`; a secret because it may hold a password.
    pub url: SecretString,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a request waits for a free connection before a clear 503.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Apply pending migrations at start.
    #[serde(default = "default_true")]
    pub migrate: bool,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Prefix of every key this deployment writes (several deployments or
    /// tests can share one Redis).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_redis_pool")]
    pub pool_size: usize,
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
}

impl RedisSettings {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

fn default_max_connections() -> usize {
    16
}
fn default_acquire_timeout_ms() -> u64 {
    2_000
}
fn default_true() -> bool {
    true
}
fn default_key_prefix() -> String {
    "prewarm:".into()
}
fn default_redis_pool() -> usize {
    4
}
fn default_command_timeout_ms() -> u64 {
    500
}
