//! template-api settings: built-in defaults < optional TOML file (path in
//! `PREWARM_CONFIG_FILE`) < environment variables `PREWARM_<SECTION>__<KEY>`,
//! e.g. `PREWARM_DATABASE__URL`, `PREWARM_POOL__TARGET`. Invalid or missing
//! values fail at start with the key named.

use prewarm_store::settings::{DatabaseSettings, KafkaSettings, RedisSettings, S3Settings};
use secrecy::SecretString;
use serde::Deserialize;

use crate::telemetry::LogSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Path of the TOML file these settings were layered from (read from the environment).
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(default)]
    pub server: ServerSettings,
    /// Bearer token for `/admin/*` (creating companies and API keys).
    pub admin_token: SecretString,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub s3: S3Settings,
    #[serde(default)]
    pub pool: PoolSettings,
    #[serde(default)]
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// Largest JSON body accepted (413 above).
    pub json_limit_bytes: usize,
    /// Largest single template image (413 above).
    pub max_image_bytes: usize,
    /// Largest multipart upload in total (413 above).
    pub max_upload_bytes: usize,
    /// actix worker threads; 0 = one per core.
    pub workers: usize,
    /// Seconds in-flight requests get to finish on SIGTERM.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            json_limit_bytes: 64 * 1024,
            max_image_bytes: 10 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            workers: 0,
            shutdown_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Ready items wanted per template (reported by `GET /templates/{id}/pool`;
    /// the worker's `pool.target` is the one that fills).
    pub target: i32,
    /// Serve from the pool at all (off = every design is copied; for comparison).
    pub enabled: bool,
    /// Pops tried before falling back to a copy, when popped ids turn out stale.
    pub pop_attempts: u32,
    /// Parallel CopyObject calls for one cold design.
    pub cold_copy_parallelism: usize,
    /// Parallel CopyObject calls across all cold designs of this process.
    pub cold_copy_global_limit: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            target: 4,
            enabled: true,
            pop_attempts: 3,
            cold_copy_parallelism: 16,
            cold_copy_global_limit: 256,
        }
    }
}

/// Loads the settings from the process environment.
pub fn load() -> Result<Settings, config::ConfigError> {
    load_from(std::env::vars())
}

/// Loads the settings from the given variables (tests pass their own).
pub fn load_from(vars: impl Iterator<Item = (String, String)>) -> Result<Settings, config::ConfigError> {
    let vars: std::collections::HashMap<String, String> = vars.collect();
    let mut builder = config::Config::builder();
    if let Some(path) = vars.get("PREWARM_CONFIG_FILE") {
        builder = builder.add_source(config::File::with_name(path));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("PREWARM")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(vars.into_iter().collect())),
    );
    let settings: Settings = builder.build()?.try_deserialize()?;
    validate(&settings)?;
    Ok(settings)
}

fn validate(s: &Settings) -> Result<(), config::ConfigError> {
    let fail = |key: &str, why: &str| Err(config::ConfigError::Message(format!("invalid setting `{key}`: {why}")));
    if s.pool.target < 0 {
        return fail("pool.target", "must be >= 0");
    }
    if s.pool.cold_copy_parallelism == 0 {
        return fail("pool.cold_copy_parallelism", "must be >= 1");
    }
    if s.pool.cold_copy_global_limit == 0 {
        return fail("pool.cold_copy_global_limit", "must be >= 1");
    }
    if s.database.max_connections == 0 {
        return fail("database.max_connections", "must be >= 1");
    }
    if s.s3.bucket.is_empty() {
        return fail("s3.bucket", "must not be empty");
    }
    if s.log.format != "text" && s.log.format != "json" {
        return fail("log.format", "must be `text` or `json`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(String, String)> {
        [
            ("PREWARM_ADMIN_TOKEN", "t"),
            ("PREWARM_DATABASE__URL", "postgres://localhost/x"),
            ("PREWARM_REDIS__URL", "redis://localhost"),
            ("PREWARM_KAFKA__BROKERS", "localhost:9092"),
            ("PREWARM_S3__BUCKET", "b"),
            ("PREWARM_S3__ACCESS_KEY_ID", "k"),
            ("PREWARM_S3__SECRET_ACCESS_KEY", "s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn environment_overrides_defaults() {
        let mut vars = base();
        vars.push(("PREWARM_POOL__TARGET".into(), "9".into()));
        let s = load_from(vars.into_iter()).unwrap();
        assert_eq!(s.pool.target, 9);
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.kafka.topic, "prewarm.warmup");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let mut vars = base();
        vars.push(("PREWARM_POOL__TARGET".into(), "-1".into()));
        let e = load_from(vars.into_iter()).unwrap_err().to_string();
        assert!(e.contains("pool.target"), "{e}");

        let vars = base().into_iter().filter(|(k, _)| k != "PREWARM_S3__BUCKET");
        let e = load_from(vars).unwrap_err().to_string();
        assert!(e.contains("bucket"), "{e}");
    }
}
