//! Scenario 4: the seed's case cold: pool off, 64 clients, every design
//! copied through the latency-injecting proxy.

use shared_domain::ids::TemplateId;

use crate::load::{closed_loop, RunResult};
use crate::setup::{set, start_api, Api, Bench};
use prewarm_testkit::fault_proxy::Faults;

/// Scenario 4: The seed's case, cold: pool off, every design copied through the proxy.
pub async fn cold(b: &Bench, template_a: TemplateId) -> anyhow::Result<(RunResult, Option<f64>)> {
    let (args, sizes, env, root, run_dir, proxy) =
        (&b.args, &b.sizes, &b.env, &b.root, &b.run_dir, &b.proxy);
    proxy.set(Faults {
        delay: args.delay,
        ..Faults::default()
    });
    let mut cold_env = env.clone();
    set(&mut cold_env, "PREWARM_SERVING__FROM_POOL", false);
    let (cold_api, cold_base) = start_api(
        root,
        &cold_env,
        "template-api (pool off)",
        &run_dir.join("bench-api-cold.log"),
    )
    .await?;
    let pick = b.many();
    let cold = closed_loop(64, sizes.cold, move || {
        let c = Api {
            base: cold_base.clone(),
            ..pick()
        };
        async move { c.post_design(template_a).await }
    })
    .await;
    let cold_peak = cold_api.stop().await;
    eprintln!("cold 64: p95 {:.0} ms", cold.ms(0.95));

    Ok((cold, cold_peak))
}
