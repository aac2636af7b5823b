//! The worker's small HTTP port (`worker.http_port`): `/healthz` (the
//! process answers), `/readyz` (Postgres answers; Redis, S3 and Kafka are
//! reported, see `prewarm_store::readiness`) and
//! `/metrics` (Prometheus text).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use prewarm_service_kit::metrics::{encode, CONTENT_TYPE};
use prewarm_store::readiness::{self, Dependencies};
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
    let found = readiness::probe(
        Dependencies {
            db: &r.db,
            index: &r.index,
            objects: &r.objects,
            publisher: &p.publisher,
        },
        &p.metrics.dependency_up,
    )
    .await;
    if found.ready {
        HttpResponse::Ok().json(found.body)
    } else {
        HttpResponse::ServiceUnavailable().json(found.body)
    }
}

async fn metrics(p: web::Data<Probes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(encode(&p.metrics.registry))
}
