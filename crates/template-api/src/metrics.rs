//! The API's Prometheus metrics, served at `/metrics`. Every label has a small,
//! fixed set of values (routes are patterns, never raw paths), so cardinality
//! is bounded whatever the traffic.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prewarm_service_kit::metrics::{counter_vec, encode, gauge_vec, histogram_vec, CONTENT_TYPE};
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

/// Why a design was not served from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Pool,
    /// The pool's list was empty and nothing was being copied for the
    /// template's version: the pool was too small for the demand (sized
    /// late, or the template woke from idle), or a concurrent design took
    /// its last item.
    CopyPoolEmpty,
    /// The list was empty while items were being copied: refill lag.
    CopyPoolRefilling,
    /// Every id popped was no longer ready (taken back by the ledger).
    CopyPoolStale,
    /// `serving.from_pool = false`.
    CopyPoolDisabled,
    /// Redis failed: the API degraded to the cold path.
    CopyRedisDown,
}

impl Served {
    fn labels(self) -> [&'static str; 2] {
        match self {
            Served::Pool => ["pool", "hit"],
            Served::CopyPoolEmpty => ["copy", "pool_empty"],
            Served::CopyPoolRefilling => ["copy", "pool_refilling"],
            Served::CopyPoolStale => ["copy", "pool_stale"],
            Served::CopyPoolDisabled => ["copy", "pool_disabled"],
            Served::CopyRedisDown => ["copy", "redis_down"],
        }
    }
}

#[derive(Clone)]
pub struct ApiMetrics {
    pub registry: Registry,
    http: HistogramVec,
    designs: IntCounterVec,
    degraded: IntCounterVec,
    rate_limited: IntCounterVec,
    idempotent_replays: IntCounterVec,
    prefetched: IntCounterVec,
    /// 1/0 per dependency at the last readiness probe.
    pub dependency_up: IntGaugeVec,
    cache_requests: IntCounterVec,
    cache_refreshes: IntCounterVec,
    cache_entries: IntGaugeVec,
    pub upstream_latency: HistogramVec,
}

impl ApiMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        Ok(Self {
            http: histogram_vec(
                &registry,
                "prewarm_http_request_duration_seconds",
                "HTTP request latency by method, route pattern and status.",
                &["method", "route", "status"],
            )?,
            designs: counter_vec(
                &registry,
                "prewarm_designs_created_total",
                "Designs created, by where they came from (pool or copy) and why.",
                &["served_from", "cause"],
            )?,
            degraded: counter_vec(
                &registry,
                "prewarm_degraded_total",
                "Times a dependency failed and the API fell back (redis: served by copy).",
                &["dependency"],
            )?,
            rate_limited: counter_vec(
                &registry,
                "prewarm_rate_limited_total",
                "Requests refused with 429 by route class (create_design, upload, read).",
                &["class"],
            )?,
            idempotent_replays: counter_vec(
                &registry,
                "prewarm_idempotent_replays_total",
                "Requests answered from a stored Idempotency-Key answer, by route.",
                &["route"],
            )?,
            prefetched: counter_vec(
                &registry,
                "prewarm_pool_prefetched_total",
                "Pool ids popped ahead of a design (serving.prefetch_hold_ms), by fate: used (taken by the next request for its template version), returned (listed again unused), dropped (no longer served by the ledger when the hold ended).",
                &["outcome"],
            )?,
            dependency_up: gauge_vec(
                &registry,
                "prewarm_dependency_up",
                prewarm_store::readiness::DEPENDENCY_UP_HELP,
                &["dependency"],
            )?,
            cache_requests: counter_vec(
                &registry,
                "prewarm_cache_requests_total",
                "Cache reads by cache and result: hit, miss (loaded), stale (served past TTL because the upstream failed).",
                &["cache", "result"],
            )?,
            cache_refreshes: counter_vec(
                &registry,
                "prewarm_cache_refreshes_total",
                "Cache loads from the upstream (misses, refresh-ahead, reloads after expiry) by outcome.",
                &["cache", "outcome"],
            )?,
            cache_entries: gauge_vec(
                &registry,
                "prewarm_cache_entries",
                "Entries held by each in-process cache (updated by the sweeper).",
                &["cache"],
            )?,
            upstream_latency: histogram_vec(
                &registry,
                "prewarm_upstream_request_duration_seconds",
                "Calls to external services (the recommendation service) by outcome: ok, error, timeout.",
                &["upstream", "outcome"],
            )?,
            registry,
        })
    }

    /// The counters of one named cache.
    pub fn cache(&self, name: &'static str) -> CacheMetrics {
        CacheMetrics {
            name,
            requests: self.cache_requests.clone(),
            refreshes: self.cache_refreshes.clone(),
            entries: self.cache_entries.clone(),
        }
    }

    pub fn design_created(&self, served: Served) {
        self.designs.with_label_values(&served.labels()).inc();
    }

    pub fn rate_limited(&self, class: &str) {
        self.rate_limited.with_label_values(&[class]).inc();
    }

    pub fn idempotent_replay(&self, route: &str) {
        self.idempotent_replays.with_label_values(&[route]).inc();
    }

    /// A prefetched pool id was `used` or `returned`.
    pub fn prefetch(&self, outcome: &str) {
        self.prefetched.with_label_values(&[outcome]).inc();
    }

    pub fn degraded(&self, dependency: &str) {
        self.degraded.with_label_values(&[dependency]).inc();
    }
}

/// The cache's counters, already labelled with its name.
#[derive(Clone)]
pub struct CacheMetrics {
    pub name: &'static str,
    pub requests: IntCounterVec,
    pub refreshes: IntCounterVec,
    pub entries: IntGaugeVec,
}

impl CacheMetrics {
    /// One read, by its result (`hit`, `miss`, `stale`).
    pub fn request(&self, result: &str) {
        self.requests.with_label_values(&[self.name, result]).inc();
    }

    pub fn refresh(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.refreshes
            .with_label_values(&[self.name, outcome])
            .inc();
    }
}

/// A request method as a label: the standard ones by name, any other as
/// `other`. HTTP lets a client send any token as a method, and actix routes
/// it (to a 405), so labelling the raw method would let anyone, without a
/// key, add a series per request until the process runs out of memory.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: observes every request's latency under its route pattern.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<ApiMetrics>>().cloned();
    let method = method_label(req.method());
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = res.request().match_pattern();
        let route = route.as_deref().unwrap_or("unmatched");
        metrics
            .http
            .with_label_values(&[method, route, res.status().as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

pub async fn metrics(metrics: web::Data<ApiMetrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(encode(&metrics.registry))
}
