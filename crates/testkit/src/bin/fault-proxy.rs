//! `fault-proxy UPSTREAM [--port P] [--delay-ms D] [--jitter-ms J] [--error-rate R] [--stall-rate S] [--stall-ms T]`
//!
//! Runs the fault-injecting proxy until Ctrl-C, e.g. in front of the local S3:
//! `fault-proxy http://127.0.0.1:9000 --port 9100 --delay-ms 150`.

use std::time::Duration;

use prewarm_testkit::fault_proxy::{FaultProxy, Faults};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    prewarm_service_kit::cli::About {
        name: "fault-proxy",
        what: "an HTTP proxy that injects latency, errors and stalls (in front of S3 in the benchmark)",
        subcommands: &[],
        flags: &[
            ("UPSTREAM", "the server proxied to (first argument)"),
            ("--port P", "the port to listen on"),
            ("--delay-ms D", "latency added to every request"),
            ("--jitter-ms J", "random extra latency"),
            ("--error-rate R", "share of requests answered 503"),
            ("--stall-rate S", "share of requests held"),
            ("--stall-ms T", "how long a held request waits"),
        ],
        settings: "none: flags only",
    }
    .intercept();
    let mut args = std::env::args().skip(1);
    let upstream = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: fault-proxy UPSTREAM [--port P] [--delay-ms D] ...")
    })?;
    let mut port = 9100u16;
    let mut faults = Faults::default();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse()?,
            "--delay-ms" => faults.delay = Duration::from_millis(value.parse()?),
            "--jitter-ms" => faults.jitter = Duration::from_millis(value.parse()?),
            "--error-rate" => faults.error_rate = value.parse()?,
            "--stall-rate" => faults.stall_rate = value.parse()?,
            "--stall-ms" => faults.stall = Duration::from_millis(value.parse()?),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let proxy = FaultProxy::start(port, &upstream, faults.clone())?;
    println!(
        "fault-proxy on {} -> {upstream} with {faults:?}",
        proxy.url()
    );
    tokio::signal::ctrl_c().await?;
    proxy.stop().await;
    Ok(())
}
