//! `/healthz` (the process answers) and `/readyz` (Postgres answers; Redis,
//! S3 and Kafka are reported, see `prewarm_store::readiness`).

use actix_web::{web, HttpResponse};
use prewarm_store::readiness::{self, Dependencies};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let found = readiness::probe(
        Dependencies {
            db: &state.db,
            index: &state.index,
            objects: &state.objects,
            publisher: &state.publisher,
        },
        &state.metrics.dependency_up,
    )
    .await;
    if found.ready {
        HttpResponse::Ok().json(found.body)
    } else {
        HttpResponse::ServiceUnavailable().json(found.body)
    }
}
