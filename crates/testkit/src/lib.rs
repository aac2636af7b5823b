//! What Prewarm's end-to-end tests (`tests/`) and its benchmark
//! (`crates/bench`) share, so that the tests do not depend on the benchmark:
//!
//! - [`isolated`]: one run's own database, Redis prefix, Kafka topic and
//!   group, S3 bucket and admin token on the shared servers.
//! - [`fault_proxy`]: an HTTP proxy that injects latency, errors and stalls
//!   between the services and S3 (also the `fault-proxy` binary,
//!   `src/bin/fault-proxy.rs`).

pub mod fault_proxy;
pub mod isolated;
