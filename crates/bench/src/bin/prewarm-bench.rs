//! `prewarm-bench [--quick] [--out docs/benchmarks.md] [--plot docs/bench-latency.png] [--delay-ms 150]`
//!
//! Runs Prewarm's scenarios against the real stack (`make up`) and the release
//! binaries, and writes the report. The scenarios (`prewarm_bench::scenarios`), in order:
//! 1. prefill: a 30-image template's pool filled to cover every warm request
//!    below (worker straight to S3, no injected latency), then the worker stops
//!    so the two cores measure the request path alone;
//! 2. the physical floor (Redis pop + design transaction, no HTTP) at 1, 8, 64 clients;
//! 3. the warm path over HTTP at 1, 8, 64 clients, and open-loop at 200 requests/s;
//! 4. the seed's case: the same template, pool off (every design copied through
//!    the latency-injecting proxy), 64 clients; warm/cold p95 ratio;
//! 5. sustained open-loop load below and above the worker's copy capacity
//!    (worker copying through the proxy): warm hit rate and pool depth over time;
//! 6. similar templates (uncached, cached, a stampede);
//! 7. adaptive vs fixed pool sizing on a Zipf workload with a burst.

use prewarm_bench::markdown::{self, Results};
use prewarm_bench::scenarios;
use prewarm_bench::setup::{args, Bench};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut b = Bench::start(args()?).await?;
    let prefill = scenarios::prefill(&b).await?;
    let template = prefill.template;
    let mut cpu_rows = Vec::new();
    let floor_runs = scenarios::floor(&mut b, template, &mut cpu_rows).await?;
    let warm = scenarios::warm(&b, template, &mut cpu_rows).await?;
    let (cold, cold_peak) = scenarios::cold(&b, template).await?;
    let steady = scenarios::steady(&b).await?;
    let similar = scenarios::similar(&b).await?;
    let (sizing, sizing_params) = scenarios::sizing(&b).await?;
    let (api_peak, recommender_peak) = b.stop_services().await;
    let results = Results {
        prefill,
        floor_runs,
        cpu_rows,
        warm,
        cold,
        cold_peak,
        steady,
        similar,
        sizing,
        sizing_params,
        api_peak,
        recommender_peak,
    };
    markdown::write(&b, &results)?;
    b.drop_database().await
}
