//! Scenario 1: the warm template's pool filled before the latency runs
//! (a worker straight to S3, stopped once the items are ready), and the
//! same for any template (`prefill_template`).

use std::time::Duration;

use shared_domain::ids::TemplateId;

use crate::services::{release_binary, Service};
use crate::setup::{set, wait_pool, Bench, IMAGES};

pub struct Prefill {
    pub template: TemplateId,
    pub warm_items: usize,
    pub fill_time: Duration,
    pub copies_per_sec: f64,
    pub worker_peak: Option<f64>,
}

/// Scenario 1: A 30-image template's pool filled to cover every warm request below
/// (worker straight to S3), then the worker stops.
pub async fn prefill(b: &Bench) -> anyhow::Result<Prefill> {
    let (sizes, direct_s3, suffix, root, run_dir, index, client) = (
        &b.sizes,
        &b.direct_s3,
        &b.run.suffix,
        &b.root,
        &b.run_dir,
        &b.index,
        &b.client,
    );
    let warm_items = sizes.warm_items();
    eprintln!("prefill: {warm_items} items x {IMAGES} images");
    let mut prefill_env = direct_s3.clone();
    set(&mut prefill_env, "PREWARM_POOL__TARGET", warm_items);
    set(
        &mut prefill_env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-prefill-{suffix}"),
    );
    set(&mut prefill_env, "PREWARM_WORKER__COPY_CONCURRENCY", 128);
    set(&mut prefill_env, "PREWARM_WORKER__ITEMS_IN_FLIGHT", 16);
    let prefill_worker = Service::spawn(
        "warmup-worker (prefill)",
        &release_binary(root, "warmup-worker"),
        &prefill_env,
        &run_dir.join("bench-worker-prefill.log"),
    )?;
    let template_a = client.upload_template("seed case").await?;
    let fill_time = wait_pool(
        index,
        template_a,
        warm_items as i64,
        Duration::from_secs(1800),
    )
    .await?;
    let prefill_peak = prefill_worker.stop().await;
    let copies_per_sec = (warm_items * IMAGES) as f64 / fill_time.as_secs_f64();
    eprintln!("prefill done in {fill_time:.1?} ({copies_per_sec:.0} copies/s)");

    Ok(Prefill {
        template: template_a,
        warm_items,
        fill_time,
        copies_per_sec,
        worker_peak: prefill_peak,
    })
}

/// A template of `images` images with `items` ready items (a worker straight
/// to S3, stopped once they are ready).
pub async fn prefill_template(
    b: &Bench,
    images: usize,
    items: usize,
) -> anyhow::Result<TemplateId> {
    let mut env = b.direct_s3.clone();
    set(&mut env, "PREWARM_POOL__TARGET", items);
    set(
        &mut env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-images-{images}-{}", b.run.suffix),
    );
    set(&mut env, "PREWARM_WORKER__COPY_CONCURRENCY", 128);
    set(&mut env, "PREWARM_WORKER__ITEMS_IN_FLIGHT", 16);
    set(&mut env, "PREWARM_WORKER__RECONCILE_INTERVAL_MS", 0);
    let worker = Service::spawn(
        &format!("warmup-worker (prefill {images} images)"),
        &release_binary(&b.root, "warmup-worker"),
        &env,
        &b.run_dir.join(format!("bench-worker-images-{images}.log")),
    )?;
    let template = b
        .client
        .upload_template_of(&format!("{images} images"), images)
        .await?;
    wait_pool(&b.index, template, items as i64, Duration::from_secs(1800)).await?;
    worker.stop().await;
    Ok(template)
}
