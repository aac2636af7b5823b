//! `dev-broker`: the demo's Kafka-protocol broker.
//!
//! librdkafka's mock cluster (`rdkafka::mocking::MockCluster`, already in
//! the dependency tree through rdkafka) listening on a local port: the
//! demo's services talk real Kafka protocol to it -- producing, a consumer
//! group with offset commits, metadata -- and it starts in milliseconds,
//! where building tansu takes ten minutes. It keeps everything in memory
//! and is for the demo only: `make test` and `make bench` run against
//! tansu, an independent implementation closer to what users run.
//!
//! It creates the warm-up topic itself (the mock cluster does not serve
//! the admin API's CreateTopics), prints its bootstrap address on stdout
//! and, when `DEV_BROKER_BOOTSTRAP_FILE` is set, writes it there (written
//! whole, then renamed, so a reader never sees half an address). It runs
//! until it is stopped (SIGTERM, SIGINT).

use std::process::ExitCode;

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn main() -> ExitCode {
    prewarm_service_kit::cli::About {
        name: "dev-broker",
        what: "the demo's Kafka-protocol broker (librdkafka's mock cluster; not for tests or production)",
        subcommands: &[],
        flags: &[],
        settings: "DEV_BROKER_TOPIC (prewarm.warmup), DEV_BROKER_PARTITIONS (4), DEV_BROKER_BOOTSTRAP_FILE (unset: stdout only); see scripts/demo.sh",
    }
    .intercept();
    match serve() {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("dev-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Never {}

fn serve() -> Result<Never, String> {
    let topic = env("DEV_BROKER_TOPIC", "prewarm.warmup");
    let partitions: i32 = env("DEV_BROKER_PARTITIONS", "4")
        .parse()
        .ok()
        .filter(|p| (1..=64).contains(p))
        .ok_or("DEV_BROKER_PARTITIONS must be 1 to 64")?;
    let cluster = rdkafka::mocking::MockCluster::new(1)
        .map_err(|e| format!("could not start the mock cluster: {e}"))?;
    cluster
        .create_topic(&topic, partitions, 1)
        .map_err(|e| format!("could not create topic {topic}: {e}"))?;
    let bootstrap = cluster.bootstrap_servers();
    if let Ok(path) = std::env::var("DEV_BROKER_BOOTSTRAP_FILE") {
        let partial = format!("{path}.partial");
        std::fs::write(&partial, &bootstrap)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| format!("could not write {path}: {e}"))?;
    }
    println!("{bootstrap}");
    eprintln!("dev-broker: topic {topic} ({partitions} partitions) at {bootstrap}");
    // The mock cluster serves from librdkafka's own threads; this one only
    // keeps it alive until the process is stopped.
    loop {
        std::thread::park();
    }
}
