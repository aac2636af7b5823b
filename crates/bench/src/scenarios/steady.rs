//! Scenario 5: sustained open-loop load below and above the worker's copy
//! capacity: warm hit rate and pool depth over time.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SteadyRun;
use crate::load::open_loop;
use crate::services::{release_binary, Service};
use crate::setup::{set, wait_pool, Bench, IMAGES, WORKER_COPY_CONCURRENCY};

pub struct Steady {
    /// (rate, run, pool depth samples (s, items)) per rate.
    pub runs: Vec<SteadyRun>,
    pub worker_peak: Option<f64>,
    /// The worker's copy capacity, designs/s.
    pub capacity: f64,
}

/// Scenario 5: Sustained load below and above the worker's copy capacity.
pub async fn steady(b: &Bench) -> anyhow::Result<Steady> {
    let (args, sizes, env, suffix, root, run_dir, index, client) = (
        &b.args,
        &b.sizes,
        &b.env,
        &b.run.suffix,
        &b.root,
        &b.run_dir,
        &b.index,
        &b.client,
    );
    let mut steady_env = env.clone();
    set(&mut steady_env, "PREWARM_POOL__TARGET", 4);
    set(
        &mut steady_env,
        "PREWARM_WORKER__GROUP_ID",
        format!("bench-steady-{suffix}"),
    );
    let worker = Service::spawn(
        "warmup-worker",
        &release_binary(root, "warmup-worker"),
        &steady_env,
        &run_dir.join("bench-worker.log"),
    )?;
    let template_b = client.upload_template("steady").await?;
    wait_pool(index, template_b, 4, Duration::from_secs(120)).await?;
    let capacity = WORKER_COPY_CONCURRENCY as f64 / args.delay.as_secs_f64() / IMAGES as f64;
    let mut steady = Vec::new();
    for rate in [sizes.low_rate, sizes.high_rate] {
        wait_pool(index, template_b, 4, Duration::from_secs(120)).await?;
        let depth = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sampler = {
            let depth = depth.clone();
            let index = index.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                loop {
                    if let Ok(n) = index
                        .len(PoolKey::new(template_b, TemplateVersion::FIRST))
                        .await
                    {
                        if let Ok(mut d) = depth.lock() {
                            d.push((t0.elapsed().as_secs_f64(), n));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let c = client.clone();
        let r = open_loop(
            rate,
            Duration::from_secs_f64(sizes.steady_secs),
            move || {
                let c = c.clone();
                async move { c.post_design(template_b).await }
            },
        )
        .await;
        sampler.abort();
        let samples = depth.lock().map(|d| d.clone()).unwrap_or_default();
        eprintln!("steady {rate}/s: warm {:.1}%", r.warm_share() * 100.0);
        steady.push((rate, r, samples));
    }
    let worker_peak = worker.stop().await;

    Ok(Steady {
        runs: steady,
        worker_peak,
        capacity,
    })
}
