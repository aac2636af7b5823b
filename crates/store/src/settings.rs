//! Settings sections shared by both services (each service's own settings
//! struct embeds them). Defaults live here, next to the field they default.

use shared_domain::pool::Sizing;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use crate::objects::S3Settings;
pub use crate::warmup_topic::KafkaSettings;
pub use prewarm_service_kit::invalid_setting::invalid;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:pass@host:port/db`; a secret because it may hold a password.
    #[serde(skip_serializing)]
    pub url: SecretString,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a request waits for a free connection before a clear 503.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// A pooled connection unused for longer than this is checked
    /// (`SELECT 1`) before it is handed out; one used more recently is not
    /// (0 = check every time). See `db::CheckedManager`.
    #[serde(default = "default_check_idle_ms")]
    pub check_idle_ms: u64,
    /// Apply pending migrations at start.
    #[serde(default = "default_true")]
    pub migrate: bool,
    /// `disable`, `require`, `verify-ca` or `verify-full` (see `db::tls`).
    #[serde(default)]
    pub ssl_mode: crate::db::tls::SslMode,
    /// PEM file of the CA(s) the server certificate must chain to (empty:
    /// the system's roots).
    #[serde(default)]
    pub ssl_root_cert: String,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn check_idle(&self) -> Duration {
        Duration::from_millis(self.check_idle_ms)
    }

    /// The TLS configuration these settings ask for (an unreadable CA file
    /// is an error naming the setting).
    pub fn tls(&self) -> Result<crate::db::tls::PgTls, String> {
        let root =
            (!self.ssl_root_cert.is_empty()).then(|| std::path::PathBuf::from(&self.ssl_root_cert));
        crate::db::tls::PgTls::new(self.ssl_mode, root.as_ref())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    #[serde(skip_serializing)]
    pub url: SecretString,
    /// Prefix of every key this deployment writes (several deployments or
    /// tests can share one Redis).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_redis_pool")]
    pub pool_size: usize,
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// How long a popped pool id is remembered and kept out of its list (a
    /// late push or a rebuild never lists it again meanwhile). An id popped
    /// by a request that died before claiming it is listed again after this.
    #[serde(default = "default_pop_memory_ms")]
    pub pop_memory_ms: u64,
    /// With `rediss://`: PEM file of the CA(s) the server must chain to
    /// (empty: the system's roots).
    #[serde(default)]
    pub ca_file: String,
}

impl RedisSettings {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// `ca_file` as a path, if set.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        (!self.ca_file.is_empty()).then(|| std::path::Path::new(self.ca_file.as_str()))
    }

    pub fn pop_memory(&self) -> Duration {
        Duration::from_millis(self.pop_memory_ms.max(1))
    }
}

/// The warm pool's knobs. One section for both services: the worker sizes
/// and fills the pools, the API reports their targets. How the API serves
/// designs from them is its own section (`serving.*`, template-api).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// `fixed`: every template keeps `target` items. `adaptive`: each
    /// template's size follows its demand (see `warmup_worker::sizing`).
    pub sizing: Sizing,
    /// Ready items kept per template (current version) with `fixed` sizing.
    pub target: i32,
    /// Fewest items a live template keeps (adaptive sizing, and idle
    /// templates with `idle_secs`).
    pub min: i32,
    /// Adaptive: most items one template keeps.
    pub max: i32,
    /// Adaptive: most pooled objects (items x their images) across all
    /// templates (0 = no limit).
    pub budget_objects: u64,
    /// Adaptive: accepted chance that one refill period's demand exceeds the pool.
    pub miss_target: f64,
    /// Adaptive: time constant of the fast demand estimate (reacts to bursts).
    pub demand_fast_secs: u64,
    /// Adaptive: time constant of the slow demand estimate (steady popularity).
    pub demand_slow_secs: u64,
    /// Adaptive: how often the plan is recomputed.
    pub sizing_interval_ms: u64,
    /// Adaptive: a pool above its size holds as many surplus items as its
    /// demand would take within this many seconds (its hold level),
    /// instead of letting them go an item a pass (0; a day by default: about
    /// what holding an object costs against copying it again). Pops above
    /// the size are not refilled, so the surplus is used up at the
    /// template's own rate (docs/design.md, "Fill and hold").
    pub keep_secs: u64,
    /// Adaptive: forecast each template's recurring demand from its own
    /// history (a profile by 15-minute slot of the week) and grow its pool
    /// one refill time before a recurring peak.
    pub forecast: bool,
    /// Adaptive: weeks of designs the forecast's profile is first built
    /// from (once, when forecasting starts).
    pub forecast_weeks: u32,
    /// Adaptive: weight of the latest finished week in the profile's
    /// weighted mean (0 < alpha <= 1; higher forgets faster).
    pub forecast_alpha: f64,
    /// Adaptive: the IANA time zone whose wall clock the forecast's slots
    /// and weeks follow (the users' own, so a 09:00 peak keeps its slot
    /// when the clocks change).
    pub forecast_time_zone: String,
    /// Most templates operator policies govern in the sizer's plan (a
    /// template's own policy, or its company's default); over it, the
    /// most recently set policies win.
    pub max_policy_templates: u32,
    /// A template without a design for this long keeps only `pool.min` items,
    /// whatever the sizing (0 = off: fixed sizing keeps `target` forever).
    /// Templates younger than this count as in demand.
    pub idle_secs: u64,
    /// How long a reserved (`copying`) item may take before it is presumed lost.
    pub lease_secs: u64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            sizing: Sizing::Fixed,
            target: 4,
            min: 1,
            max: 32,
            budget_objects: 0,
            miss_target: 0.002,
            demand_fast_secs: 15,
            demand_slow_secs: 1800,
            keep_secs: 86_400,
            sizing_interval_ms: 2000,
            forecast: true,
            forecast_weeks: 4,
            forecast_alpha: 0.5,
            forecast_time_zone: "UTC".into(),
            max_policy_templates: 10_000,
            idle_secs: 0,
            lease_secs: 300,
        }
    }
}

impl PoolSettings {
    pub fn validate(&self) -> Result<(), config::ConfigError> {
        if self.target < 0 {
            return Err(invalid("pool.target", "must be >= 0"));
        }
        if self.min < 0 || self.max < self.min {
            return Err(invalid("pool.max", "need 0 <= pool.min <= pool.max"));
        }
        if !(self.miss_target > 0.0 && self.miss_target < 1.0) {
            return Err(invalid(
                "pool.miss_target",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        if self.demand_fast_secs == 0 || self.demand_slow_secs < self.demand_fast_secs {
            return Err(invalid(
                "pool.demand_slow_secs",
                "need 1 <= pool.demand_fast_secs <= pool.demand_slow_secs",
            ));
        }
        if self.sizing_interval_ms == 0 {
            return Err(invalid("pool.sizing_interval_ms", "must be >= 1"));
        }
        if !(1..=52).contains(&self.forecast_weeks) {
            return Err(invalid("pool.forecast_weeks", "must be between 1 and 52"));
        }
        if !(self.forecast_alpha > 0.0 && self.forecast_alpha <= 1.0) {
            return Err(invalid("pool.forecast_alpha", "need 0 < alpha <= 1"));
        }
        // A bare name other than UTC (CET, EST, ...) is also an abbreviation
        // to Postgres, which reads it first as a fixed offset: CET would be
        // +01:00 all year in SQL and follow summer time in the sizer.
        let zone = &self.forecast_time_zone;
        if zone.parse::<chrono_tz::Tz>().is_err() || !(zone.contains('/') || zone == "UTC") {
            return Err(invalid(
                "pool.forecast_time_zone",
                "must be UTC or an IANA Area/Location name such as Europe/Berlin (case-sensitive; \
                 not an abbreviation like CET, which Postgres reads as a fixed offset)",
            ));
        }
        if self.lease_secs == 0 {
            return Err(invalid("pool.lease_secs", "must be >= 1"));
        }
        Ok(())
    }

    /// The forecast's zone (validated: UTC if it does not parse).
    pub fn forecast_zone(&self) -> chrono_tz::Tz {
        self.forecast_time_zone
            .parse()
            .unwrap_or(chrono_tz::Tz::UTC)
    }

    pub fn adaptive(&self) -> bool {
        self.sizing == Sizing::Adaptive
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// A template's target when the sizer has no row for it: `min` with
    /// adaptive sizing or for an idle template (older than `idle_secs`
    /// without recent demand, which would have given it a row), `target`
    /// otherwise.
    pub fn default_target(&self, age_secs: f64) -> i32 {
        if self.adaptive() {
            return self.min;
        }
        match self.idle() {
            Some(idle) if age_secs > idle.as_secs_f64() => self.min,
            _ => self.target,
        }
    }

    /// `pool.idle_secs` as a duration, `None` when off.
    pub fn idle(&self) -> Option<Duration> {
        (self.idle_secs > 0).then(|| Duration::from_secs(self.idle_secs))
    }
}

fn default_max_connections() -> usize {
    16
}
fn default_acquire_timeout_ms() -> u64 {
    2_000
}
fn default_check_idle_ms() -> u64 {
    crate::db::DEFAULT_CHECK_IDLE.as_millis() as u64
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
fn default_pop_memory_ms() -> u64 {
    60_000
}
fn default_command_timeout_ms() -> u64 {
    500
}

/// Loads a service's settings: built-in defaults (serde defaults) < the TOML
/// file named by `PREWARM_CONFIG_FILE` < `PREWARM_<SECTION>__<KEY>` variables.
/// Errors name the offending key.
pub fn load<T: serde::de::DeserializeOwned>(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<T, config::ConfigError> {
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
    builder.build()?.try_deserialize()
}

/// Checks the `s3` section: both static keys or neither; a known
/// server-side encryption.
pub fn validate_s3(s3: &S3Settings) -> Result<(), config::ConfigError> {
    use secrecy::ExposeSecret;
    if s3.access_key_id.expose_secret().is_empty()
        != s3.secret_access_key.expose_secret().is_empty()
    {
        return Err(invalid(
            "s3.access_key_id",
            "set both static keys (s3.access_key_id, s3.secret_access_key) or neither (the default AWS credential chain)",
        ));
    }
    if !matches!(
        s3.server_side_encryption.as_str(),
        "" | "AES256" | "aws:kms" | "aws:kms:dsse"
    ) {
        return Err(invalid(
            "s3.server_side_encryption",
            "must be empty, AES256, aws:kms or aws:kms:dsse",
        ));
    }
    if !s3.sse_kms_key_id.is_empty() && !s3.server_side_encryption.starts_with("aws:kms") {
        return Err(invalid(
            "s3.sse_kms_key_id",
            "needs s3.server_side_encryption = aws:kms",
        ));
    }
    Ok(())
}

/// The smallest valid environment for either service (tests and docs start here).
pub fn example_env() -> Vec<(String, String)> {
    [
        (
            "PREWARM_ADMIN_TOKEN",
            "example-admin-token-0123456789abcdef",
        ),
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
