//! The seed's headline: warm and cold side by side in open loops at the
//! seed's own load.

use std::time::Duration;

use shared_domain::ids::TemplateId;

use crate::load::{open_loop, RunResult};
use crate::setup::{set, start_api, Api, Bench};
use prewarm_testkit::fault_proxy::Faults;

/// The seed's headline at the seed's own load: an open loop of
/// `headline_rate` designs/s (below the worker's copy capacity), warm (pool
/// on, the prefilled template) and cold (pool off, every copy through the
/// latency proxy) side by side.
pub async fn headline(b: &Bench, template_a: TemplateId) -> anyhow::Result<(RunResult, RunResult)> {
    let (rate, secs) = (b.sizes.headline_rate, b.sizes.headline_secs);
    b.warm_keys(&b.base).await?;
    let pick = b.many();
    let warm = open_loop(rate, Duration::from_secs_f64(secs), move || {
        let c = pick();
        async move { c.post_design(template_a).await }
    })
    .await;
    b.proxy.set(Faults {
        delay: b.args.delay,
        ..Faults::default()
    });
    let mut env = b.env.clone();
    set(&mut env, "PREWARM_SERVING__FROM_POOL", false);
    let (api, base) = start_api(
        &b.root,
        &env,
        "template-api (pool off, headline)",
        &b.run_dir.join("bench-api-headline.log"),
    )
    .await?;
    b.warm_keys(&base).await?;
    let pick = b.many();
    let cold = open_loop(rate, Duration::from_secs_f64(secs), move || {
        let c = Api {
            base: base.clone(),
            ..pick()
        };
        async move { c.post_design(template_a).await }
    })
    .await;
    api.stop().await;
    b.proxy.set(Faults::default());
    eprintln!(
        "headline {rate}/s: warm p50 {:.2} / p95 {:.2} / p99 {:.2} ms, cold p95 {:.0} ms",
        warm.ms(0.5),
        warm.ms(0.95),
        warm.ms(0.99),
        cold.ms(0.95)
    );
    Ok((warm, cold))
}
