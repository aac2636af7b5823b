//! Scenario: similar templates, uncached (the recommendation service's
//! ~900 ms on every call) vs cached, and a stampede of concurrent requests on
//! one cold key, with the upstream calls counted at the stand-in service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::load::{closed_loop, open_loop, Outcome, RunResult};
use crate::setup::Bench;

/// Where to find the API and the stand-in, and how much load to send.
#[derive(Clone)]
pub struct Params {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
    pub recommender: String,
    /// Distinct source templates (cold keys first, then cached).
    pub sources: usize,
    pub rate: f64,
    pub secs: f64,
    pub stampede: usize,
}

pub struct Results {
    /// `GET /healthz` at the same rate: what HTTP alone costs here.
    pub http_floor: RunResult,
    pub uncached: RunResult,
    pub cached: RunResult,
    pub stampede: RunResult,
    pub stampede_calls: u64,
    pub sources: usize,
}

const CATEGORIES: [&str; 4] = ["cards", "posters", "flyers", "menus"];
const WORDS: [&str; 8] = [
    "spring", "summer", "sale", "party", "wedding", "bold", "minimal", "retro",
];

pub async fn run(p: &Params) -> anyhow::Result<Results> {
    // Sources plus company: 12 more templates per category to recommend.
    let mut ids = Vec::new();
    for i in 0..(p.sources + 1 + 48) {
        let category = CATEGORIES[i % CATEGORIES.len()];
        let tags = [WORDS[i % WORDS.len()], WORDS[(i / 3) % WORDS.len()]];
        ids.push(upload(p, &format!("{category} {} {i}", tags[0]), category, &tags).await?);
    }
    let sources: Arc<Vec<String>> = Arc::new(ids[..p.sources].to_vec());
    let stampede_key = ids[p.sources].clone();

    // Uncached: every source once, 4 clients (each read waits for the upstream).
    let next = Arc::new(AtomicUsize::new(0));
    let uncached = {
        let (p, sources, next) = (p.clone(), sources.clone(), next.clone());
        closed_loop(4, sources.len(), move || {
            let i = next.fetch_add(1, Ordering::Relaxed) % sources.len();
            let (p, id) = (p.clone(), sources[i].clone());
            async move { get(&p, &id).await }
        })
        .await
    };

    // Cached: open loop over the same (now cached) sources.
    let cached = {
        let (p, sources, next) = (p.clone(), sources.clone(), next.clone());
        open_loop(p.rate, Duration::from_secs_f64(p.secs), move || {
            let i = next.fetch_add(1, Ordering::Relaxed) % sources.len();
            let (p, id) = (p.clone(), sources[i].clone());
            async move { get(&p, &id).await }
        })
        .await
    };

    // The HTTP floor: a handler that does nothing, at the same rate.
    let http_floor = {
        let p = p.clone();
        open_loop(p.rate, Duration::from_secs_f64(p.secs), move || {
            let p = p.clone();
            async move { crate::client::get_healthz(&p.http, &p.base).await }
        })
        .await
    };

    // Stampede: every client asks for the same cold key at once.
    let before = upstream_calls(p).await?;
    let stampede = {
        let p2 = p.clone();
        closed_loop(p.stampede, p.stampede, move || {
            let (p, id) = (p2.clone(), stampede_key.clone());
            async move { get(&p, &id).await }
        })
        .await
    };
    let stampede_calls = upstream_calls(p).await? - before;
    Ok(Results {
        http_floor,
        uncached,
        cached,
        stampede,
        stampede_calls,
        sources: p.sources,
    })
}

/// One `GET /templates/{id}/similar`; "warm" means a cache hit.
async fn get(p: &Params, id: &str) -> Outcome {
    let resp = p
        .http
        .get(format!("{}/templates/{id}/similar", p.base))
        .bearer_auth(&p.key)
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => {
            let hit = r.headers().get("x-cache").is_some_and(|v| v == "hit");
            let _ = r.bytes().await;
            Outcome {
                ok: true,
                warm: hit,
            }
        }
        Ok(r) => {
            eprintln!("similar request failed: {}", r.status());
            Outcome {
                ok: false,
                warm: false,
            }
        }
        Err(e) => {
            eprintln!("similar request failed: {e}");
            Outcome {
                ok: false,
                warm: false,
            }
        }
    }
}

async fn upload(p: &Params, name: &str, category: &str, tags: &[&str]) -> anyhow::Result<String> {
    let metadata = json!({"name": name, "category": category, "visibility": "public",
                          "layout": {"tags": tags}});
    crate::client::upload_template(&p.http, &p.base, &p.key, &metadata, 1, 512).await
}

async fn upstream_calls(p: &Params) -> anyhow::Result<u64> {
    let stats: Value = p
        .http
        .get(format!("{}/stats", p.recommender))
        .send()
        .await?
        .json()
        .await?;
    stats["calls"].as_u64().context("stats.calls")
}

/// Scenario 6: Similar templates: uncached vs cached, and a stampede on one cold key.
pub async fn similar(b: &Bench) -> anyhow::Result<Results> {
    let (sizes, http, base, client, recommender_url) =
        (&b.sizes, &b.http, &b.base, &b.client, &b.recommender_url);
    let similar = run(&Params {
        http: http.clone(),
        base: base.clone(),
        key: client.key.clone(),
        recommender: recommender_url.clone(),
        sources: sizes.similar_sources,
        rate: sizes.open_rate,
        secs: sizes.similar_secs,
        stampede: 1000,
    })
    .await?;
    eprintln!(
        "similar: uncached p50 {:.0} ms, cached p99 {:.2} ms, stampede upstream calls {}",
        similar.uncached.ms(0.5),
        similar.cached.ms(0.99),
        similar.stampede_calls
    );
    Ok(similar)
}
