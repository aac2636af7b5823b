//! Entry point: load settings, start logging, build and run the server.
//!
//! `template-api healthcheck` probes a running server's `/healthz` (the
//! image's HEALTHCHECK). `template-api migrate` only applies the database migrations (reading
//! `PREWARM_DATABASE__URL`, `__SSL_MODE` and `__SSL_ROOT_CERT`) and exits: the Helm chart's
//! migration Job.

use prewarm_service_kit::telemetry;
use template_api::{settings, startup::Application};

/// A warm design allocates and frees a few hundred small blocks (the HTTP
/// exchange, the claim's rows, the design's JSON, a log line) on the two
/// worker threads. With mimalloc the API spent 8-14 % less CPU per design
/// than with glibc's malloc, relative to Postgres' CPU for the same designs
/// (docs/benchmarks.md, "The hot path on a second day").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `template-api --help`.
const ABOUT: prewarm_service_kit::cli::About = prewarm_service_kit::cli::About {
    name: "template-api",
    what: "Prewarm's HTTP API: templates, designs served from warm pools, similar templates, admin.",
    subcommands: &[
        ("migrate", "apply the database migrations (PREWARM_DATABASE__URL, __SSL_MODE, __SSL_ROOT_CERT) and exit"),
        ("healthcheck", "probe a running server's /healthz on PREWARM_SERVER__PORT (exit 0 when up)"),
    ],
    flags: &[],
    settings: "defaults, then the TOML file named by PREWARM_CONFIG_FILE, then PREWARM_<SECTION>__<KEY> environment variables (e.g. PREWARM_DATABASE__URL); required: admin_token (24+ characters), database.url, redis.url, kafka.brokers, s3.bucket. Every key: docs/configuration.md",
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ABOUT.intercept();
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        std::process::exit(prewarm_service_kit::probe::run(
            "PREWARM_SERVER__PORT",
            8080,
        ));
    }
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        let url = std::env::var("PREWARM_DATABASE__URL")
            .map_err(|_| anyhow::anyhow!("PREWARM_DATABASE__URL is required"))?;
        let mode: prewarm_store::db::tls::SslMode =
            match std::env::var("PREWARM_DATABASE__SSL_MODE") {
                Ok(mode) => serde_json::from_value(serde_json::Value::String(mode))
                    .map_err(|e| anyhow::anyhow!("PREWARM_DATABASE__SSL_MODE: {e}"))?,
                Err(_) => Default::default(),
            };
        let root = std::env::var_os("PREWARM_DATABASE__SSL_ROOT_CERT")
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from);
        let tls =
            prewarm_store::db::tls::PgTls::new(mode, root.as_ref()).map_err(anyhow::Error::msg)?;
        prewarm_store::db::run_migrations_with(&url, &tls).await?;
        println!("migrations applied");
        return Ok(());
    }
    let settings = settings::load()?;
    let _telemetry = telemetry::init(&settings.log, &settings.trace, "template-api");
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "template-api listening");
    app.run(prewarm_service_kit::shutdown::signal()).await?;
    Ok(())
}
