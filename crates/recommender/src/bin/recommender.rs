//! `recommender`: the stand-in recommendation service (not for production).
//!
//! Environment: `PREWARM_DATABASE__URL` (the catalogue), `RECOMMENDER_ADDR`
//! (default 127.0.0.1:9100), `RECOMMENDER_LATENCY_MS` (900),
//! `RECOMMENDER_FAILURE_RATE` (0.0).

use std::net::TcpListener;
use std::time::Duration;

use prewarm_recommender::{server, Faults};
use prewarm_store::db::Db;

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    prewarm_service_kit::cli::About {
        name: "recommender",
        what: "the stand-in recommendation service for tests and benchmarks (not for production)",
        subcommands: &[],
        flags: &[],
        settings: "PREWARM_DATABASE__URL (the catalogue), RECOMMENDER_ADDR (127.0.0.1:9100), RECOMMENDER_LATENCY_MS (900), RECOMMENDER_FAILURE_RATE (0.0)",
    }
    .intercept();
    let database = std::env::var("PREWARM_DATABASE__URL")
        .map_err(|_| anyhow::anyhow!("PREWARM_DATABASE__URL is required"))?;
    let addr = env("RECOMMENDER_ADDR", "127.0.0.1:9100");
    let faults = Faults {
        latency_ms: env("RECOMMENDER_LATENCY_MS", "900")
            .parse()
            .map_err(|e| anyhow::anyhow!("RECOMMENDER_LATENCY_MS: {e}"))?,
        failure_rate: env("RECOMMENDER_FAILURE_RATE", "0")
            .parse()
            .map_err(|e| anyhow::anyhow!("RECOMMENDER_FAILURE_RATE: {e}"))?,
        stall: false,
    };
    let db = Db::connect(&database, 8, Duration::from_secs(5))?;
    let listener = TcpListener::bind(&addr)?;
    eprintln!("recommender listening on {addr} ({faults:?})");
    server::serve(listener, db, faults)?.await?;
    Ok(())
}
