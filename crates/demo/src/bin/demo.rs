//! The demo client: against a running template-api, creates a company, a
//! 30-image template, waits for its warm pool, then creates designs -- paced,
//! then in a burst -- and prints which were served warm and how fast; then
//! reads similar templates three times (uncached, then cached).
//!
//! Usage: `demo [BASE_URL]` (default `http://127.0.0.1:8080`); the admin token
//! comes from `PREWARM_ADMIN_TOKEN`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prewarm_demo::images;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

const IMAGES: usize = 30;
const IMAGE_BYTES: usize = 48 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let admin = std::env::var("PREWARM_ADMIN_TOKEN").context("PREWARM_ADMIN_TOKEN is not set")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let key = new_company(&http, &base, &admin).await?;
    let tid = upload_template(&http, &base, &key).await?;
    wait_for_pool(&http, &base, &key, &tid).await?;
    designs(&http, &base, &key, &tid).await?;
    similar_templates(&http, &base, &key, &tid).await
}

/// A company and its API key.
async fn new_company(http: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<String> {
    let company: Value = expect(
        http.post(format!("{base}/admin/companies"))
            .bearer_auth(admin)
            .json(&json!({"name": "Demo Co", "design_limit": 1000})),
        201,
    )
    .await?;
    let key: Value = expect(
        http.post(format!(
            "{base}/admin/companies/{}/api-keys",
            company["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(admin),
        201,
    )
    .await?;
    let key = key["api_key"].as_str().context("api_key")?.to_string();
    println!("company {} with an API key", company["id"]);
    Ok(key)
}

/// A template of `IMAGES` generated images; its id.
async fn upload_template(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let mut form = Form::new().part(
        "metadata",
        Part::text(json!({"name": "Spring poster", "category": "posters", "layout": {"w": 1080, "h": 1350}}).to_string())
            .mime_str("application/json")?,
    );
    for i in 0..IMAGES {
        form = form.part(
            "image",
            Part::bytes(images::png(i, IMAGE_BYTES))
                .file_name(format!("{i}.png"))
                .mime_str("image/png")?,
        );
    }
    let started = Instant::now();
    let template: Value = expect(
        http.post(format!("{base}/templates"))
            .bearer_auth(key)
            .multipart(form),
        201,
    )
    .await?;
    let tid = template["id"].as_str().context("template id")?.to_string();
    println!(
        "template {tid}: {IMAGES} images uploaded in {:?}",
        started.elapsed()
    );
    Ok(tid)
}

/// Waits until the worker has filled the template's pool (at most 60 s).
async fn wait_for_pool(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    tid: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let pool: Value = expect(
            http.get(format!("{base}/templates/{tid}/pool"))
                .bearer_auth(key),
            200,
        )
        .await?;
        if pool["indexed"] == pool["target"] {
            println!(
                "warm pool filled to {} in {:?} (no design requested yet)",
                pool["target"],
                started.elapsed()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the pool did not fill within 60 s: {pool}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Eight paced designs, then a burst of eight at once; prints each and the
/// medians of warm and copied-on-the-spot designs.
async fn designs(http: &reqwest::Client, base: &str, key: &str, tid: &str) -> anyhow::Result<()> {
    println!("\n{:<8} {:<6} {:>10}", "design", "from", "latency");
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    let mut record = |from: String, took: Duration| {
        if from == "pool" {
            warm.push(took)
        } else {
            cold.push(took)
        }
    };
    for i in 1..=8 {
        let (from, took) = create_design(http, base, key, tid).await?;
        println!(
            "{:<8} {:<6} {:>8.1}ms   (paced: one every 500 ms)",
            i,
            from,
            took.as_secs_f64() * 1e3
        );
        record(from, took);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let burst =
        futures::future::join_all((0..8).map(|_| create_design(http, base, key, tid))).await;
    for (i, r) in burst.into_iter().enumerate() {
        let (from, took) = r?;
        println!(
            "{:<8} {:<6} {:>8.1}ms   (burst of 8 at once)",
            9 + i,
            from,
            took.as_secs_f64() * 1e3
        );
        record(from, took);
    }
    println!(
        "\nwarm: {} designs, median {:.1} ms; copied on the spot: {} designs, median {:.1} ms",
        warm.len(),
        median_ms(&mut warm),
        cold.len(),
        median_ms(&mut cold)
    );
    println!("(S3 here is a local moto server; in production each CopyObject costs ~100-200 ms, see docs/benchmarks.md)");
    Ok(())
}

/// Similar templates: the first read waits for the recommendation service
/// (the stand-in takes ~900 ms a call), the next ones come from the cache.
async fn similar_templates(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    tid: &str,
) -> anyhow::Result<()> {
    for (name, tags) in [
        ("Spring poster bold", ["spring", "flowers"]),
        ("Summer poster", ["summer", "beach"]),
        ("Spring sale poster", ["spring", "sale"]),
        ("Autumn poster", ["autumn", "leaves"]),
    ] {
        let metadata = json!({"name": name, "category": "posters", "layout": {"tags": tags}});
        let form = Form::new()
            .part(
                "metadata",
                Part::text(metadata.to_string()).mime_str("application/json")?,
            )
            .part(
                "image",
                Part::bytes(images::png(0, 1024))
                    .file_name("0.png")
                    .mime_str("image/png")?,
            );
        expect(
            http.post(format!("{base}/templates"))
                .bearer_auth(key)
                .multipart(form),
            201,
        )
        .await?;
    }
    println!("\nsimilar templates of {tid}:");
    for read in 1..=3 {
        let started = Instant::now();
        let resp = http
            .get(format!("{base}/templates/{tid}/similar"))
            .bearer_auth(key)
            .send()
            .await?;
        let cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 200 {
            bail!("similar templates: {status}: {body}");
        }
        let names: Vec<&str> = body["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        println!(
            "read {read}: {:>8.1} ms  (cache {cache})  {}",
            started.elapsed().as_secs_f64() * 1e3,
            names.join(", ")
        );
    }
    Ok(())
}

async fn create_design(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    tid: &str,
) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    let design: Value = expect(
        http.post(format!("{base}/designs"))
            .bearer_auth(key)
            .json(&json!({"template_id": tid})),
        201,
    )
    .await?;
    Ok((
        design["served_from"].as_str().unwrap_or("?").to_string(),
        started.elapsed(),
    ))
}

async fn expect(req: reqwest::RequestBuilder, status: u16) -> anyhow::Result<Value> {
    let resp = req.send().await?;
    let got = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if got != status {
        bail!("expected {status}, got {got}: {body}");
    }
    Ok(body)
}

fn median_ms(v: &mut [Duration]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}
