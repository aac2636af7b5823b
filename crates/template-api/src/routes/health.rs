//! `/healthz` (the process answers) and `/readyz` (its dependencies answer).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (db, redis, s3) = tokio::join!(
        state.db.ping(),
        state.index.ping(),
        state.objects.exists("readyz-probe")
    );
    let checks = json!({
        "postgres": db.as_ref().map(|_| "ok").map_err(ToString::to_string),
        "redis": redis.as_ref().map(|_| "ok").map_err(ToString::to_string),
        "s3": s3.as_ref().map(|_| "ok").map_err(ToString::to_string),
    });
    if db.is_ok() && redis.is_ok() && s3.is_ok() {
        HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready", "checks": checks}))
    }
}
