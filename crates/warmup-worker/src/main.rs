//! Entry point: load settings, start logging, build the worker, run it until SIGTERM/SIGINT.
//! `warmup-worker healthcheck` probes a running worker's `/healthz` (the image's HEALTHCHECK).

use prewarm_service_kit::telemetry;
use warmup_worker::{settings, startup::Worker};

/// `warmup-worker --help`.
const ABOUT: prewarm_service_kit::cli::About = prewarm_service_kit::cli::About {
    name: "warmup-worker",
    what: "Prewarm's worker: consumes warm-up requests, keeps every template's warm pool at its target (S3 copies), plans pool sizes, reconciles and collects garbage.",
    subcommands: &[(
        "healthcheck",
        "probe a running worker's /healthz on PREWARM_WORKER__HTTP_PORT (exit 0 when up)",
    )],
    flags: &[],
    settings: "defaults, then the TOML file named by PREWARM_CONFIG_FILE, then PREWARM_<SECTION>__<KEY> environment variables; required: database.url, redis.url, kafka.brokers, s3.bucket. Every key: docs/configuration.md",
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ABOUT.intercept();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        std::process::exit(prewarm_service_kit::probe::run(
            "PREWARM_WORKER__HTTP_PORT",
            9091,
        ));
    }
    let settings = settings::load()?;
    let _telemetry = telemetry::init(&settings.log, &settings.trace, "warmup-worker");
    let worker = Worker::build(settings).await?;
    tracing::info!("warmup-worker started");
    worker.run(prewarm_service_kit::shutdown::signal()).await?;
    tracing::info!("warmup-worker stopped");
    Ok(())
}
