//! Entry point: load settings, start logging, build the worker, run it until SIGTERM/SIGINT.
//! `warmup-worker healthcheck` probes a running worker's `/healthz` (the image's HEALTHCHECK).

use prewarm_service_kit::telemetry;
use warmup_worker::{settings, startup::Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
