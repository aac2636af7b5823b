//! warmup-worker settings: built-in defaults < optional TOML file (path in
//! `PREWARM_CONFIG_FILE`) < `PREWARM_<SECTION>__<KEY>` variables. The
//! `database`, `redis`, `kafka` and `s3` sections are the API's, so one Helm
//! value feeds both services.

use std::time::Duration;

use prewarm_service_kit::telemetry::{LogSettings, TraceSettings};
use prewarm_store::settings::{
    invalid, DatabaseSettings, KafkaSettings, PoolSettings, RedisSettings, S3Settings,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub config_file: Option<String>,
    /// The API's sections, accepted (and ignored) so both services can share
    /// one environment or file.
    #[serde(default, skip_serializing)]
    pub admin_token: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub server: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub similar: Option<serde::de::IgnoredAny>,
    /// The API's `idempotency`, `rate_limit` and `serving` sections, accepted and ignored.
    #[serde(default, skip_serializing)]
    pub idempotency: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub rate_limit: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub serving: Option<serde::de::IgnoredAny>,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    pub s3: S3Settings,
    #[serde(default)]
    pub pool: PoolSettings,
    #[serde(default)]
    pub worker: WorkerSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub trace: TraceSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Kafka consumer group; replicas sharing it split the partitions.
    pub group_id: String,
    /// CopyObject calls in flight across the whole process: the one knob that
    /// keeps a burst of requests from exhausting S3 or the worker.
    pub copy_concurrency: usize,
    /// Parallel copies within one pool item.
    pub item_parallelism: usize,
    /// Items copied at once within one refill.
    pub items_in_flight: usize,
    /// Templates refilled at once.
    pub refill_parallelism: usize,
    /// Most messages taken into one batch (requests for one template in a
    /// batch are coalesced into one refill).
    pub batch_max: usize,
    /// How long to keep filling a batch after its first message.
    pub batch_window_ms: u64,
    /// librdkafka's `fetch.wait.max.ms`: the longest a fetch waits at the
    /// broker for new messages. Kafka answers as soon as a message arrives,
    /// so this only bounds idle polling there; a broker that holds a fetch
    /// for its whole wait (tansu polls and sleeps half the remaining wait)
    /// adds up to this much to every warm-up request's latency.
    pub fetch_wait_ms: u64,
    /// Attempts per refill before it is left to the next request.
    pub refill_attempts: u32,
    /// librdkafka's `max.poll.interval.ms`: the most time between two polls
    /// before the broker deems this consumer dead and rebalances. A batch
    /// starts no new refill after half of it (the rest is left to the
    /// reconciler and later requests), so a long batch never trips it.
    pub max_poll_interval_ms: u64,
    /// How often the reconciler tops pools up and rebuilds the Redis index
    /// from the ledger (0 disables it).
    pub reconcile_interval_ms: u64,
    /// Most templates whose pool changed (items used or discarded, template
    /// edited) one reconciler pass checks; the next pass resumes after them.
    pub reconcile_batch: usize,
    /// Templates the reconciler's rolling sweep re-checks per pass whatever
    /// changed (it catches what no change recorded, e.g. an id popped by a
    /// process that died); a full cycle takes templates / this many passes.
    pub reconcile_sweep: usize,
    /// How often the garbage collector scans S3 (0 disables it).
    pub gc_interval_secs: u64,
    /// Most listing pages (1,000 keys each) one GC pass checks; the next
    /// pass resumes after the last key (memory stays one page).
    pub gc_pages_per_pass: usize,
    /// Unreferenced objects younger than this are left alone (covers copies
    /// whose design or item is still being committed).
    pub gc_grace_secs: u64,
    /// Incomplete multipart uploads begun longer ago than this are aborted
    /// by the GC (what a killed API process left mid-upload). Must exceed
    /// the API's `server.max_upload_secs`, or uploads in flight are cut.
    pub gc_multipart_age_secs: u64,
    /// How long a replica's lease on a background pass (reconciler, GC,
    /// sizer) lasts unrenewed: after a crash, another replica takes the pass
    /// over within this time. Renewed every third of it while a pass runs.
    pub singleton_lease_secs: u64,
    /// Address of the health and metrics port.
    pub http_host: String,
    /// Port of `/healthz`, `/readyz`, `/metrics` (0 = any free port).
    pub http_port: u16,
    /// How often pool depths are read from the ledger for the metrics.
    pub metrics_interval_ms: u64,
    /// Templates that get their own pool-depth series (the most depleted).
    pub metrics_templates: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            group_id: "prewarm-warmup-worker".into(),
            copy_concurrency: 64,
            item_parallelism: 16,
            items_in_flight: 8,
            refill_parallelism: 8,
            batch_max: 500,
            batch_window_ms: 20,
            fetch_wait_ms: 100,
            refill_attempts: 3,
            max_poll_interval_ms: 300_000,
            reconcile_interval_ms: 30_000,
            reconcile_batch: 2_000,
            reconcile_sweep: 1_000,
            gc_interval_secs: 600,
            gc_pages_per_pass: 100,
            gc_grace_secs: 3_600,
            gc_multipart_age_secs: 3_600,
            singleton_lease_secs: 30,
            http_host: "0.0.0.0".into(),
            http_port: 9091,
            metrics_interval_ms: 15_000,
            metrics_templates: 20,
        }
    }
}

impl WorkerSettings {
    pub fn batch_window(&self) -> Duration {
        Duration::from_millis(self.batch_window_ms)
    }

    /// How long a batch may keep starting refills (half the poll interval).
    pub fn batch_budget(&self) -> Duration {
        Duration::from_millis(self.max_poll_interval_ms / 2)
    }
}

pub fn load() -> Result<Settings, config::ConfigError> {
    load_from(std::env::vars())
}

pub fn load_from(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Settings, config::ConfigError> {
    let settings: Settings = prewarm_store::settings::load(vars)?;
    let w = &settings.worker;
    settings.pool.validate()?;
    for (key, value) in [
        ("worker.copy_concurrency", w.copy_concurrency),
        ("worker.item_parallelism", w.item_parallelism),
        ("worker.refill_parallelism", w.refill_parallelism),
        ("worker.items_in_flight", w.items_in_flight),
        ("worker.batch_max", w.batch_max),
        ("worker.reconcile_batch", w.reconcile_batch),
        ("worker.reconcile_sweep", w.reconcile_sweep),
        ("worker.gc_pages_per_pass", w.gc_pages_per_pass),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be >= 1"));
        }
    }
    if w.refill_attempts == 0 {
        return Err(invalid("worker.refill_attempts", "must be >= 1"));
    }
    if w.max_poll_interval_ms < 10_000 {
        // librdkafka wants it at least `session.timeout.ms` (10 s here).
        return Err(invalid("worker.max_poll_interval_ms", "must be >= 10000"));
    }
    if !(1..=300_000).contains(&w.fetch_wait_ms) {
        // librdkafka's own range for `fetch.wait.max.ms`.
        return Err(invalid("worker.fetch_wait_ms", "must be 1..=300000"));
    }
    if w.singleton_lease_secs == 0 {
        return Err(invalid("worker.singleton_lease_secs", "must be >= 1"));
    }
    if w.metrics_interval_ms == 0 {
        return Err(invalid("worker.metrics_interval_ms", "must be >= 1"));
    }
    if w.group_id.is_empty() {
        return Err(invalid("worker.group_id", "must not be empty"));
    }
    prewarm_store::settings::validate_s3(&settings.s3)?;
    settings.trace.validate()?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(String, String)> {
        prewarm_store::settings::example_env()
    }

    #[test]
    fn defaults_and_overrides() {
        let mut vars = base();
        vars.push(("PREWARM_WORKER__COPY_CONCURRENCY".into(), "7".into()));
        let s = load_from(vars.into_iter()).unwrap();
        assert_eq!(s.worker.copy_concurrency, 7);
        assert_eq!(s.pool.target, 4);
    }

    #[test]
    fn the_forecasts_time_zone_is_an_iana_name() {
        let mut vars = base();
        vars.push((
            "PREWARM_POOL__FORECAST_TIME_ZONE".into(),
            "Europe/Berlin".into(),
        ));
        let s = load_from(vars.into_iter()).unwrap();
        assert_eq!(s.pool.forecast_zone().name(), "Europe/Berlin");
        assert_eq!(
            load_from(base().into_iter())
                .unwrap()
                .pool
                .forecast_zone()
                .name(),
            "UTC",
            "UTC by default"
        );
        for bad in [
            "CET+1",
            "europe/berlin",
            "",
            "Mars/Olympus_Mons",
            "CET",
            "EST",
        ] {
            let mut vars = base();
            vars.push(("PREWARM_POOL__FORECAST_TIME_ZONE".into(), bad.into()));
            let e = load_from(vars.into_iter()).unwrap_err().to_string();
            assert!(e.contains("pool.forecast_time_zone"), "{bad}: {e}");
        }
    }

    #[test]
    fn zero_concurrency_is_rejected_with_its_key() {
        let mut vars = base();
        vars.push(("PREWARM_WORKER__COPY_CONCURRENCY".into(), "0".into()));
        let e = load_from(vars.into_iter()).unwrap_err().to_string();
        assert!(e.contains("worker.copy_concurrency"), "{e}");
    }

    #[test]
    fn a_fetch_wait_outside_librdkafkas_range_is_rejected_with_its_key() {
        for bad in ["0", "300001"] {
            let mut vars = base();
            vars.push(("PREWARM_WORKER__FETCH_WAIT_MS".into(), bad.into()));
            let e = load_from(vars.into_iter()).unwrap_err().to_string();
            assert!(e.contains("worker.fetch_wait_ms"), "{bad}: {e}");
        }
        let mut vars = base();
        vars.push(("PREWARM_WORKER__FETCH_WAIT_MS".into(), "50".into()));
        assert_eq!(
            load_from(vars.into_iter()).unwrap().worker.fetch_wait_ms,
            50
        );
    }
}
