//! `/healthz` (the process answers) and `/readyz` (Postgres answers; Redis,
//! S3 and Kafka are reported, see `prewarm_store::readiness`). The public
//! port's `/readyz` says only ready or not; the operations port's names
//! every dependency.

use actix_web::{web, HttpResponse};
use prewarm_store::readiness::{self, Dependencies};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The public port's readiness: status only, no dependency details.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let found = probe(&state).await;
    if found.ready {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready"}))
    }
}

async fn probe(state: &AppState) -> readiness::Readiness {
    readiness::probe(
        Dependencies {
            db: &state.db,
            index: &state.index,
            objects: &state.objects,
            publisher: state.warmup.publisher(),
        },
        &state.metrics.dependency_up,
    )
    .await
}

/// The operations port's readiness, with each dependency's state.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let found = probe(&state).await;
    if found.ready {
        HttpResponse::Ok().json(found.body)
    } else {
        HttpResponse::ServiceUnavailable().json(found.body)
    }
}
