//! template-api settings: built-in defaults < optional TOML file (path in
//! `PREWARM_CONFIG_FILE`) < environment variables `PREWARM_<SECTION>__<KEY>`,
//! e.g. `PREWARM_DATABASE__URL`, `PREWARM_POOL__TARGET`. Invalid or missing
//! values fail at start with the key named.

use prewarm_store::settings::{
    invalid, DatabaseSettings, KafkaSettings, PoolSettings, RedisSettings, S3Settings,
};
use prewarm_store::telemetry::{LogSettings, TraceSettings};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::similar::settings::SimilarSettings;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Path of the TOML file these settings were layered from (read from the environment).
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(default)]
    pub server: ServerSettings,
    /// Bearer token for `/admin/*` (creating companies and API keys).
    #[serde(skip_serializing)]
    pub admin_token: SecretString,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub s3: S3Settings,
    #[serde(default)]
    pub pool: PoolSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub trace: TraceSettings,
    #[serde(default)]
    pub similar: SimilarSettings,
    /// The worker's section, accepted (and ignored) so both services can share
    /// one environment or file.
    #[serde(default, skip_serializing)]
    pub worker: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// How long a valid API key is remembered in-process (0 = ask Postgres
    /// every time). A revoked key keeps working at most this long.
    pub auth_cache_ttl_secs: u64,
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
            auth_cache_ttl_secs: 30,
        }
    }
}

/// Loads the settings from the process environment.
pub fn load() -> Result<Settings, config::ConfigError> {
    load_from(std::env::vars())
}

/// Loads the settings from the given variables (tests pass their own).
pub fn load_from(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Settings, config::ConfigError> {
    let settings: Settings = prewarm_store::settings::load(vars)?;
    validate(&settings)?;
    Ok(settings)
}

fn validate(s: &Settings) -> Result<(), config::ConfigError> {
    let fail = |key: &str, why: &str| Err(invalid(key, why));
    s.pool.validate()?;
    if s.database.max_connections == 0 {
        return fail("database.max_connections", "must be >= 1");
    }
    if s.s3.bucket.is_empty() {
        return fail("s3.bucket", "must not be empty");
    }
    s.similar.validate()?;
    prewarm_store::settings::validate_s3(&s.s3)?;
    s.trace.validate()?;
    s.log.validate()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(String, String)> {
        prewarm_store::settings::example_env()
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

        let vars = base()
            .into_iter()
            .filter(|(k, _)| k != "PREWARM_S3__BUCKET");
        let e = load_from(vars).unwrap_err().to_string();
        assert!(e.contains("bucket"), "{e}");
    }
}
