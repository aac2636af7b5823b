//! The worker's small HTTP port (`worker.http_port`): `/healthz` (the
//! process answers), `/readyz` (Postgres, Redis, S3 and Kafka answer) and
//! `/metrics` (Prometheus text).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use prewarm_store::connect::check;
use prewarm_store::metrics::{encode, CONTENT_TYPE};
use prewarm_store::warmup_topic::WarmupPublisher;
use serde_json::json;

use crate::metrics::WorkerMetrics;
use crate::refill::Refiller;

#[derive(Clone)]
pub struct Probes {
    pub refiller: Refiller,
    pub publisher: WarmupPublisher,
    pub metrics: Arc<WorkerMetrics>,
}

pub fn serve(listener: TcpListener, probes: Probes) -> std::io::Result<Server> {
    let data = web::Data::new(probes);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(p: web::Data<Probes>) -> HttpResponse {
    let r = &p.refiller;
    let (db, redis, s3, kafka) = tokio::join!(
        r.db.ping(),
        r.index.ping(),
        r.objects.exists("readyz-probe"),
        p.publisher.ping(Duration::from_secs(2)),
    );
    let checks = json!({
        "postgres": check(&db),
        "redis": check(&redis),
        "s3": check(&s3),
        "kafka": check(&kafka),
    });
    // The worker needs all four to refill (the reconciler alone needs no Kafka,
    // but a worker that cannot consume should be seen).
    if db.is_ok() && redis.is_ok() && s3.is_ok() && kafka.is_ok() {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready", "checks": checks}))
    }
}

async fn metrics(p: web::Data<Probes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(encode(&p.metrics.registry))
}
