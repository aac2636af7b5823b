//! The stand-in's HTTP server. Every answer waits `latency` (like the real
//! service, ~900 ms) and fails with probability `failure_rate` (503); `stall`
//! makes it never answer (for timeout tests). Faults change at run time
//! through `POST /control`; `GET /stats` tells how many calls were made, per
//! template, so tests can count upstream calls at the source.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use prewarm_store::db::{templates, Db};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::rank::{self, Item};

/// Injected behaviour; every field is optional in `POST /control`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub latency_ms: u64,
    /// 0.0..=1.0: share of calls answered 503.
    pub failure_rate: f64,
    /// Never answer (the client's timeout decides).
    pub stall: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 900,
            failure_rate: 0.0,
            stall: false,
        }
    }
}

#[derive(Default, Serialize)]
struct Stats {
    calls: u64,
    failures: u64,
    calls_by_template: HashMap<Uuid, u64>,
}

struct Shared {
    db: Db,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
}

/// A running stand-in service.
pub struct Recommender {
    pub port: u16,
    handle: ServerHandle,
}

impl Recommender {
    /// Serves on `listener` until [`Recommender::stop`] (or the runtime ends).
    pub fn start(listener: TcpListener, db: Db, faults: Faults) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let server = serve(listener, db, faults)?;
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { port, handle })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

pub fn serve(listener: TcpListener, db: Db, faults: Faults) -> std::io::Result<Server> {
    let shared = web::Data::new(Shared {
        db,
        faults: Mutex::new(faults),
        stats: Mutex::new(Stats::default()),
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/v1/templates/{id}/similar", web::get().to(similar))
            .route("/control", web::post().to(control))
            .route("/stats", web::get().to(stats))
            .route("/stats/reset", web::post().to(reset))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().finish() }),
            )
    })
    .workers(2)
    .listen(listener)?
    .run())
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default = "one")]
    page: usize,
    #[serde(default = "ten")]
    per_page: usize,
}

fn one() -> usize {
    1
}

fn ten() -> usize {
    10
}

async fn similar(
    shared: web::Data<Shared>,
    path: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let id = path.into_inner();
    let faults = shared.faults.lock().map(|f| f.clone()).unwrap_or_default();
    let fail = rand::rng().random_bool(faults.failure_rate.clamp(0.0, 1.0));
    if let Ok(mut stats) = shared.stats.lock() {
        stats.calls += 1;
        stats.failures += u64::from(fail);
        *stats.calls_by_template.entry(id).or_default() += 1;
    }
    if faults.stall {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    if fail {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "injected failure"}));
    }
    if query.page == 0 || query.per_page == 0 || query.per_page > 1000 {
        return HttpResponse::BadRequest().json(json!({"error": "page >= 1, per_page 1..=1000"}));
    }
    let rows = match shared.db.conn().await {
        Ok(mut conn) => templates::catalogue(&mut conn).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return HttpResponse::ServiceUnavailable().json(json!({"error": e.to_string()})),
    };
    let items: Vec<Item> = rows
        .iter()
        .map(|(id, category, name, layout)| Item::new(*id, category, name, layout))
        .collect();
    let Some(source) = items.iter().find(|i| i.id == id) else {
        return HttpResponse::NotFound().json(json!({"error": "unknown template"}));
    };
    let ranked = rank::rank(source, &items);
    let (page, next_page) = rank::page(&ranked, query.page, query.per_page);
    let items: Vec<_> = page
        .into_iter()
        .map(|(id, score)| json!({"id": id, "score": score}))
        .collect();
    HttpResponse::Ok().json(json!({
        "template_id": id,
        "page": query.page,
        "items": items,
        "next_page": next_page,
    }))
}

async fn control(shared: web::Data<Shared>, body: web::Json<Faults>) -> HttpResponse {
    let faults = body.into_inner();
    if let Ok(mut f) = shared.faults.lock() {
        *f = faults.clone();
    }
    HttpResponse::Ok().json(faults)
}

async fn stats(shared: web::Data<Shared>) -> HttpResponse {
    match shared.stats.lock() {
        Ok(stats) => HttpResponse::Ok().json(&*stats),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

async fn reset(shared: web::Data<Shared>) -> HttpResponse {
    if let Ok(mut stats) = shared.stats.lock() {
        *stats = Stats::default();
    }
    HttpResponse::NoContent().finish()
}
