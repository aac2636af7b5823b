//! What every Prewarm service process needs besides its dependency
//! adapters (those are in `prewarm-store`): observability, lifecycle and
//! settings errors. Depends on no client of Postgres, Redis, Kafka or S3.
//!
//! Layout:
//! - [`telemetry`]: logs (text or JSON) and traces (OTLP export; W3C trace
//!   context carried in HTTP and Kafka headers).
//! - [`metrics`]: Prometheus registry helpers (constructors, text encoding).
//! - [`shutdown`]: the SIGTERM/SIGINT future both services run until.
//! - [`probe`]: the `healthcheck` subcommand of both binaries (the image's
//!   HEALTHCHECK).
//! - [`invalid_setting`]: the error every settings check returns, naming
//!   the bad key.
//! - [`cli`]: `--help` and `--version` (with the commit), answered by every
//!   binary before it reads a setting.

pub mod cli;
pub mod invalid_setting;
pub mod metrics;
pub mod probe;
pub mod shutdown;
pub mod telemetry;
