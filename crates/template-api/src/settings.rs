//! template-api settings: built-in defaults < optional TOML file (path in
//! `PREWARM_CONFIG_FILE`) < environment variables `PREWARM_<SECTION>__<KEY>`,
//! e.g. `PREWARM_DATABASE__URL`, `PREWARM_POOL__TARGET`. Invalid or missing
//! values fail at start with the key named.

use prewarm_service_kit::telemetry::{LogSettings, TraceSettings};
use prewarm_store::settings::{
    invalid, DatabaseSettings, KafkaSettings, PoolSettings, RedisSettings, S3Settings,
};
use secrecy::{ExposeSecret, SecretString};
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
    pub serving: ServingSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub trace: TraceSettings,
    #[serde(default)]
    pub similar: SimilarSettings,
    #[serde(default)]
    pub idempotency: IdempotencySettings,
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
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
    /// Port of the operations listener (`/metrics`, `/readyz` in detail),
    /// kept off the public port. 0 picks a free port (tests).
    pub metrics_port: u16,
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
    /// Upload bytes this process holds in flight at once, over every
    /// request; above it uploads get 503 `busy` with `Retry-After`.
    pub max_upload_bytes_in_flight: usize,
    /// How long an upload waits for its share of that budget before the
    /// 503 (0: refused at once).
    pub upload_budget_wait_ms: u64,
    /// How long a presigned image URL (`?include=urls`) stays valid.
    pub presign_ttl_secs: u64,
    /// The longest a whole upload body may take (408 after it), however
    /// steadily it trickles: bounds how long one request holds its share of
    /// the byte budget and keeps every upload well inside its images'
    /// announcement (`UPLOAD_ANNOUNCE_TTL`).
    pub max_upload_secs: u64,
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
            metrics_port: 9090,
            max_upload_bytes_in_flight: 256 * 1024 * 1024,
            upload_budget_wait_ms: 2_000,
            presign_ttl_secs: 900,
            max_upload_secs: 600,
        }
    }
}

/// `serving.*`: how `POST /designs` serves designs from the warm pools
/// (the pools themselves, shared with the worker, are `pool.*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingSettings {
    /// Serve from the pool at all (off = every design is copied; for comparison).
    pub from_pool: bool,
    /// Pops tried before falling back to a copy, when popped ids turn out stale.
    pub pop_attempts: u32,
    /// The first warm-up request for a template version after a quiet
    /// window is sent at once; the ones after it travel as one Kafka message
    /// at most this window later (0 = one message per design).
    pub warmup_coalesce_ms: u64,
    /// After a warm pop, each API process pops the template version's next
    /// id in the background and holds it this long for the next design of
    /// that version, which then makes one round trip (Postgres) instead of
    /// two; an id not used in time is listed again (0 = off).
    pub prefetch_hold_ms: u64,
    /// The most ids held ahead per template version. A version's batch
    /// starts at one id and doubles each time a batch is used up within the
    /// hold, so a busy version pays one Redis pop per this many designs and
    /// a quiet one holds a single id.
    pub prefetch_batch: u32,
    /// Parallel CopyObject calls for one cold design.
    pub cold_copy_parallelism: usize,
    /// Parallel CopyObject calls across all cold designs of one API process.
    pub cold_copy_global_limit: usize,
    /// Cold designs one company may have in flight in one API process; one
    /// more is answered 503 `busy` (see `company_slots`).
    pub cold_designs_per_company: usize,
}

impl Default for ServingSettings {
    fn default() -> Self {
        Self {
            from_pool: true,
            pop_attempts: 3,
            warmup_coalesce_ms: 50,
            prefetch_hold_ms: 500,
            prefetch_batch: 8,
            cold_copy_parallelism: 16,
            cold_copy_global_limit: 256,
            cold_designs_per_company: 64,
        }
    }
}

impl ServingSettings {
    fn validate(&self, pop_memory_ms: u64) -> Result<(), config::ConfigError> {
        // A held id stays out of the reconciler's rebuilds only while it is
        // remembered as popped.
        if self.prefetch_hold_ms >= pop_memory_ms {
            return Err(invalid(
                "serving.prefetch_hold_ms",
                "must be less than redis.pop_memory_ms",
            ));
        }
        if !(1..=MAX_PREFETCH_BATCH).contains(&self.prefetch_batch) {
            return Err(invalid(
                "serving.prefetch_batch",
                "must be between 1 and 64 ids",
            ));
        }
        if self.cold_copy_parallelism == 0 {
            return Err(invalid("serving.cold_copy_parallelism", "must be >= 1"));
        }
        if self.cold_copy_global_limit == 0 {
            return Err(invalid("serving.cold_copy_global_limit", "must be >= 1"));
        }
        if self.cold_designs_per_company == 0 {
            return Err(invalid("serving.cold_designs_per_company", "must be >= 1"));
        }
        Ok(())
    }
}

/// `idempotency.*`: the `Idempotency-Key` header of `POST /designs` and
/// `POST /templates`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySettings {
    /// How long a key's first answer is replayed.
    pub retention_secs: u64,
    /// How long a request owns its key before a retry may take it over (a
    /// crashed request's key frees up after this); longer than any create.
    pub lock_secs: u64,
    /// How long a request waits for another request with the same key
    /// before answering 409 `request_in_progress`.
    pub wait_ms: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            retention_secs: 24 * 3600,
            lock_secs: 600,
            wait_ms: 5_000,
        }
    }
}

/// `rate_limit.*`: token buckets per API key and per client address, per
/// route class, shared by replicas through Redis (each replica limits on its
/// own while Redis is down).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// `POST /designs`: sustained requests per second per key, and burst.
    pub create_design_per_sec: f64,
    pub create_design_burst: f64,
    /// `POST /templates`, `PUT /templates/{id}/images`.
    pub upload_per_sec: f64,
    pub upload_burst: f64,
    /// Edits and deletes (`PATCH`, `DELETE`, other `POST`s): each may bump
    /// a template's version and retire its pool.
    pub write_per_sec: f64,
    pub write_burst: f64,
    /// Every other authenticated route (reads) and `/admin/*`.
    pub read_per_sec: f64,
    pub read_burst: f64,
    /// A client address gets this many times a key's budget (several keys
    /// or users may share one address).
    pub address_factor: f64,
    /// Failed authentications per client address: per minute, and burst.
    pub failed_auth_per_min: f64,
    pub failed_auth_burst: f64,
    /// How many proxies in front of the API append to `X-Forwarded-For`
    /// (an Ingress controller: 1). The client address is the entry the
    /// outermost of them appended; 0 = the peer address.
    pub forwarded_hops: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            create_design_per_sec: 50.0,
            create_design_burst: 100.0,
            upload_per_sec: 2.0,
            upload_burst: 10.0,
            write_per_sec: 5.0,
            write_burst: 20.0,
            read_per_sec: 100.0,
            read_burst: 200.0,
            address_factor: 4.0,
            failed_auth_per_min: 20.0,
            failed_auth_burst: 10.0,
            forwarded_hops: 0,
        }
    }
}

impl RateLimitSettings {
    fn validate(&self) -> Result<(), config::ConfigError> {
        for (key, v) in [
            (
                "rate_limit.create_design_per_sec",
                self.create_design_per_sec,
            ),
            ("rate_limit.create_design_burst", self.create_design_burst),
            ("rate_limit.upload_per_sec", self.upload_per_sec),
            ("rate_limit.upload_burst", self.upload_burst),
            ("rate_limit.write_per_sec", self.write_per_sec),
            ("rate_limit.write_burst", self.write_burst),
            ("rate_limit.read_per_sec", self.read_per_sec),
            ("rate_limit.read_burst", self.read_burst),
            ("rate_limit.failed_auth_per_min", self.failed_auth_per_min),
            ("rate_limit.failed_auth_burst", self.failed_auth_burst),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(key, "must be a number > 0"));
            }
        }
        if !(self.address_factor.is_finite() && self.address_factor >= 1.0) {
            return Err(invalid("rate_limit.address_factor", "must be >= 1"));
        }
        Ok(())
    }
}

/// The most ids `serving.prefetch_batch` may hold ahead per template version.
pub const MAX_PREFETCH_BATCH: u32 = 64;

/// What one image being uploaded holds of `server.max_upload_bytes_in_flight`:
/// one multipart part, plus one chunk of slack.
pub const UPLOAD_SHARE_BYTES: usize = prewarm_store::object_upload::PART_BYTES + 256 * 1024;

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

/// How long an upload's images stay announced to the garbage collector
/// (renewed as each image starts): after this, images of an upload whose
/// process died before saving them are collected.
pub const UPLOAD_ANNOUNCE_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The shortest admin token accepted at start: the token guards every
/// company's keys, and a short one is guessed (failed authentications are
/// limited per address, not across a botnet).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;

fn validate(s: &Settings) -> Result<(), config::ConfigError> {
    let fail = |key: &str, why: &str| Err(invalid(key, why));
    if s.admin_token.expose_secret().trim().chars().count() < MIN_ADMIN_TOKEN_CHARS {
        return fail(
            "admin_token",
            "must be at least 24 characters (a random secret: `openssl rand -hex 32`)",
        );
    }
    s.pool.validate()?;
    if s.database.max_connections == 0 {
        return fail("database.max_connections", "must be >= 1");
    }
    if s.s3.bucket.is_empty() {
        return fail("s3.bucket", "must not be empty");
    }
    s.similar.validate()?;
    s.rate_limit.validate()?;
    if s.idempotency.retention_secs == 0 {
        return fail("idempotency.retention_secs", "must be >= 1 second");
    }
    // A cold create may copy for up to `pool.lease_secs`: its key must not
    // be taken over meanwhile.
    if s.idempotency.lock_secs <= s.pool.lease_secs {
        return fail(
            "idempotency.lock_secs",
            "must be greater than pool.lease_secs (the slowest create)",
        );
    }
    s.serving.validate(s.redis.pop_memory_ms)?;
    if s.server.max_upload_bytes_in_flight < UPLOAD_SHARE_BYTES {
        return fail(
            "server.max_upload_bytes_in_flight",
            "must hold one image's share (5 MiB part + 256 KiB)",
        );
    }
    // Half the announcement's life at most: an upload always saves (or
    // fails) long before its images could be collected.
    let max_body = UPLOAD_ANNOUNCE_TTL.as_secs() / 2;
    if !(1..=max_body).contains(&s.server.max_upload_secs) {
        return fail("server.max_upload_secs", "must be 1 to 1800 seconds");
    }
    if !(1..=7 * 24 * 3600).contains(&s.server.presign_ttl_secs) {
        return fail(
            "server.presign_ttl_secs",
            "must be 1 to 604800 (S3's limit)",
        );
    }
    prewarm_store::settings::validate_s3(&s.s3)?;
    s.trace.validate()
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

        let mut vars = base();
        vars.push(("PREWARM_ADMIN_TOKEN".into(), "short-admin-token".into()));
        let e = load_from(vars.into_iter()).unwrap_err().to_string();
        assert!(e.contains("admin_token"), "{e}");

        for batch in ["0", "65"] {
            let mut vars = base();
            vars.push(("PREWARM_SERVING__PREFETCH_BATCH".into(), batch.into()));
            let e = load_from(vars.into_iter()).unwrap_err().to_string();
            assert!(e.contains("serving.prefetch_batch"), "{e}");
        }
    }
}
