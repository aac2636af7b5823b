//! `prewarm-bench [--quick] [--out docs/benchmarks.md] [--plot docs/bench-latency.png] [--delay-ms 150]`
//!
//! Runs Prewarm's scenarios against the real stack (`make up`) and the release
//! binaries, and writes the report. The scenarios (`prewarm_bench::scenarios`), in order:
//! 1. prefill: a 30-image template's pool filled to cover every warm request
//!    below (worker straight to S3, no injected latency), then the worker stops
//!    so the two cores measure the request path alone;
//! 2. the physical floor (Redis pop + the warm model's transaction, no HTTP) at
//!    8 clients, and the old model's (30 image rows) beside it;
//! 3. the warm path over HTTP at 1 and 64 clients (each in rounds with the
//!    floor's run at as many clients), 8 clients, and open-loop at 200 requests/s;
//!    then with templates of 1, 30 and 200 images made and measured alike (CPU
//!    per design by image count); then the seed's headline: an open
//!    loop of 20 designs/s, warm and cold (pool off) side by side;
//! 4. the seed's case: the same template, pool off (every design copied through
//!    the latency-injecting proxy), 64 clients; warm/cold p95 ratio;
//! 5. sustained open-loop load below and above the worker's copy capacity
//!    (worker copying through the proxy): warm hit rate and pool depth over time;
//! 6. similar templates (uncached, cached, a stampede);
//! 7. adaptive vs fixed pool sizing on a Zipf workload with a burst;
//! 8. scale: 10^3-10^5 templates with a long tail, the background passes'
//!    cost by catalogue size (`--only scale` runs it alone; `--only headline`
//!    runs the floor, the warm loops (30, then 1, 30 and 200 images) and the
//!    headline and prints them;
//!    `--only sizing` runs scenario 7 and prints it);
//! 9. catalogue: fixed N=1 and N=4, adaptive, and adaptive with forecast and
//!    schedules on 10^4 templates with a daily peak, a scheduled launch and a
//!    burst, against the offline optimum (`--only catalogue` runs it alone,
//!    prints its section and writes it to `--out` when given).

use prewarm_bench::markdown::{self, Results};
use prewarm_bench::scenarios;
use prewarm_bench::setup::{args, Bench};

/// `prewarm-bench --help`.
const ABOUT: prewarm_service_kit::cli::About = prewarm_service_kit::cli::About {
    name: "prewarm-bench",
    what: "runs Prewarm's benchmark scenarios against the real stack (`make up`) and the release binaries, and writes the report",
    subcommands: &[],
    flags: &[
        ("--quick", "shorter runs of every scenario (make bench-quick)"),
        ("--only SCENARIO", "scale, headline, sizing or catalogue alone"),
        ("--out PATH", "the report (docs/benchmarks.md)"),
        ("--plot PATH", "the latency plot (docs/bench-latency.png)"),
        ("--delay-ms N", "injected S3 latency per request (150)"),
        ("--s3 URL", "the S3 server behind the proxy (PREWARM_BENCH_S3, http://127.0.0.1:9010)"),
    ],
    settings: "the stack's endpoints as `make up` starts them; PREWARM_BENCH_CATALOGUE_STRATEGIES picks the catalogue's strategies (PREWARM_BENCH_CATALOGUE_MISS_TARGET, _KEEP_SECS their settings); PREWARM_BENCH_RATE_LIMITS=1 turns rate limits on; PREWARM_BENCH_LOG=info,json logs as the chart does (default warn,text). docs/benchmarks.md says what each scenario measures",
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ABOUT.intercept();
    let mut b = Bench::start(args()?).await?;
    if b.args.only.as_deref() == Some("headline") {
        // As long as the full run's, even with --quick: its p95 is the point.
        b.sizes.headline_secs = b.sizes.headline_secs.max(20.0);
        let prefill = scenarios::prefill(&b).await?;
        b.settle().await?;
        let floor = scenarios::floor(&mut b, prefill.template, &mut Vec::new()).await?;
        b.settle().await?;
        let (one, many) = (&floor.one_client, &floor.many_clients);
        let warm = scenarios::warm(&b, prefill.template, one, many, &mut Vec::new()).await?;
        // Their connections go back before the APIs of the scenarios below start.
        drop((floor.one_client, floor.many_clients));
        let (f1, w1) = (&warm.floor_one, &warm.runs[0].1);
        let (f64_, w64) = (&warm.floor_many, &warm.runs[2].1);
        eprintln!(
            "warm p50 at 1 client {:.2}x the floor's; warm at 64 clients {:.0}% of the floor's throughput; \
             floor p50 + HTTP alone p50 at 1 client: {:.2} ms",
            w1.ms(0.5) / f1.ms(0.5),
            100.0 * w64.throughput() / f64_.throughput(),
            f1.ms(0.5) + warm.http[0].1.ms(0.5)
        );
        // The 1-, 30- and 200-image templates (each prints its CPU per design).
        scenarios::images(&b, &mut Vec::new()).await?;
        b.settle().await?;
        scenarios::headline(&b, prefill.template).await?;
        b.stop_services().await;
        return b.drop_database().await;
    }
    if b.args.only.as_deref() == Some("sizing") {
        let (sizing, params) = scenarios::sizing(&b).await?;
        println!("{}", scenarios::sizing::report(&params, &sizing));
        b.stop_services().await;
        return b.drop_database().await;
    }
    if b.args.only.as_deref() == Some("catalogue") {
        let run = scenarios::catalogue(&b).await?;
        let md = scenarios::catalogue::report(&run);
        if b.args.out_given {
            std::fs::write(&b.args.out, &md)?;
        }
        println!("{md}");
        b.stop_services().await;
        return b.drop_database().await;
    }
    if b.args.only.is_some() {
        let (scale, params) = scenarios::scale(&b).await?;
        let md = prewarm_bench::scenarios::scale::report(&params, &scale);
        std::fs::write(&b.args.out, &md)?;
        println!("{md}");
        b.stop_services().await;
        return b.drop_database().await;
    }
    let prefill = scenarios::prefill(&b).await?;
    let template = prefill.template;
    let mut cpu_rows = Vec::new();
    // Each latency scenario starts on a settled database (`Bench::settle`).
    b.settle().await?;
    let idle = prewarm_bench::services::idle_cpu().await;
    eprintln!("idle CPU, ms/s: {idle:.2?}");
    let floor = scenarios::floor(&mut b, template, &mut cpu_rows).await?;
    b.settle().await?;
    let (one, many) = (&floor.one_client, &floor.many_clients);
    let mut warm = scenarios::warm(&b, template, one, many, &mut cpu_rows).await?;
    drop((floor.one_client, floor.many_clients));
    let mut floor_runs = floor.runs;
    let empty = prewarm_bench::load::RunResult::empty;
    floor_runs.insert(0, (1, std::mem::replace(&mut warm.floor_one, empty())));
    floor_runs.push((64, std::mem::replace(&mut warm.floor_many, empty())));
    let old_floor_runs = floor.old;
    let floor_alone = floor.alone;
    let images = scenarios::images(&b, &mut cpu_rows).await?;
    b.settle().await?;
    let headline = scenarios::headline(&b, template).await?;
    let (cold, cold_peak) = scenarios::cold(&b, template).await?;
    let steady = scenarios::steady(&b).await?;
    let similar = scenarios::similar(&b).await?;
    let (sizing, sizing_params) = scenarios::sizing(&b).await?;
    let (scale, scale_params) = scenarios::scale(&b).await?;
    let catalogue = scenarios::catalogue(&b).await?;
    let (api_peak, recommender_peak) = b.stop_services().await;
    let results = Results {
        prefill,
        floor_runs,
        old_floor_runs,
        floor_alone,
        idle,
        images,
        headline,
        cpu_rows,
        warm,
        cold,
        cold_peak,
        steady,
        similar,
        sizing,
        sizing_params,
        scale,
        scale_params,
        catalogue,
        api_peak,
        recommender_peak,
    };
    markdown::write(&b, &results)?;
    b.drop_database().await
}
