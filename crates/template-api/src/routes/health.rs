//! `/healthz` (the process answers) and `/readyz` (its dependencies answer:
//! Postgres, Redis and S3 gate readiness; Kafka is reported).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use prewarm_store::connect::check;
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (db, redis, s3, kafka) = tokio::join!(
        state.db.ping(),
        state.index.ping(),
        state.objects.exists("readyz-probe"),
        state.publisher.ping(Duration::from_secs(2)),
    );
    let checks = json!({
        "postgres": check(&db),
        "redis": check(&redis),
        "s3": check(&s3),
        "kafka": check(&kafka),
    });
    // Kafka is reported but does not gate readiness: without it the API
    // still serves every design (warm-up requests are hints; the
    // reconciler heals), so taking the pod out of rotation would only hurt.
    if db.is_ok() && redis.is_ok() && s3.is_ok() {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready", "checks": checks}))
    }
}
