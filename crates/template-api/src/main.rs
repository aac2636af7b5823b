//! Entry point: load settings, start logging, build and run the server.

use prewarm_store::telemetry;
use template_api::{settings, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = settings::load()?;
    telemetry::init(&settings.log);
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "template-api listening");
    app.run_until_stopped().await?;
    Ok(())
}
