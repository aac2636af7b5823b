//! Logging: readable text in development, JSON lines in production.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    #[serde(default = "default_format")]
    pub format: String,
    /// An `EnvFilter` directive, e.g. `info,template_api=debug`; `RUST_LOG` wins when set.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: default_format(),
            level: default_level(),
        }
    }
}

fn default_format() -> String {
    "text".into()
}
fn default_level() -> String {
    "info".into()
}

impl LogSettings {
    pub fn validate(&self) -> Result<(), config::ConfigError> {
        if self.format != "text" && self.format != "json" {
            return Err(crate::settings::invalid(
                "log.format",
                "must be `text` or `json`",
            ));
        }
        Ok(())
    }
}

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if settings.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if result.is_err() {
        tracing::debug!("logging was already initialised");
    }
}
