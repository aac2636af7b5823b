//! `/readyz` of both services: every dependency is checked and reported,
//! but only Postgres decides readiness. Without Redis the API serves by copy
//! and the worker still refills (the reconciler re-indexes later); without
//! Kafka warm-up requests are hints the reconciler stands in for; without S3
//! warm designs are still served. Taking a pod out of rotation for any of
//! those would turn a degraded service into an outage. Without Postgres
//! nothing can be served, so the pod is not ready.

use std::time::Duration;

use prometheus::IntGaugeVec;
use serde_json::{json, Value};

use crate::db::Db;
use crate::objects::ObjectStore;
use crate::pool_index::PoolIndex;
use crate::warmup_topic::WarmupPublisher;

/// What a readiness probe found.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Postgres answers: the pod can serve.
    pub ready: bool,
    /// `{"status": "ready" | "degraded" | "not_ready", "checks": {...}}`.
    pub body: Value,
}

/// The dependencies a service checks.
pub struct Dependencies<'a> {
    pub db: &'a Db,
    pub index: &'a PoolIndex,
    pub objects: &'a ObjectStore,
    pub publisher: &'a WarmupPublisher,
}

/// `"ok"`, or the error with its causes.
fn check<T, E: std::error::Error + 'static>(result: &Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => shared_domain::error::Chain(e).to_string(),
    }
}

/// Checks every dependency at once, sets `up{dependency}` to 1 or 0 for
/// each, and decides readiness from Postgres alone.
pub async fn probe(deps: Dependencies<'_>, up: &IntGaugeVec) -> Readiness {
    let (db, redis, s3, kafka) = tokio::join!(
        deps.db.ping(),
        deps.index.ping(),
        deps.objects.reachable(),
        deps.publisher.ping(Duration::from_secs(2)),
    );
    let results = [
        ("postgres", check(&db)),
        ("redis", check(&redis)),
        ("s3", check(&s3)),
        ("kafka", check(&kafka)),
    ];
    for (name, result) in &results {
        up.with_label_values(&[name]).set(i64::from(result == "ok"));
    }
    let all_ok = results.iter().all(|(_, r)| r == "ok");
    let status = match (db.is_ok(), all_ok) {
        (false, _) => "not_ready",
        (true, true) => "ready",
        (true, false) => "degraded",
    };
    let checks: serde_json::Map<String, Value> = results
        .into_iter()
        .map(|(name, result)| (name.to_string(), Value::String(result)))
        .collect();
    Readiness {
        ready: db.is_ok(),
        body: json!({ "status": status, "checks": checks }),
    }
}

/// The help text of the `prewarm_dependency_up` gauge both services export.
pub const DEPENDENCY_UP_HELP: &str =
    "1 if the dependency answered the last readiness probe, else 0 (postgres, redis, s3, kafka).";
