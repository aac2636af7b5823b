//! The benchmark harness behind `make bench`.
//!
//! Layout:
//! - [`client`]: the API calls the scenarios make (upload a template, post a design).
//! - [`load`]: closed-loop (N clients) and open-loop (constant rate, latency
//!   measured from the intended send time, so no coordinated omission)
//!   generators recording into HdrHistograms.
//! - One run's own resources and the fault-injecting S3 proxy are the
//!   tests' too: they are in `prewarm-testkit`.
//! - [`services`]: starts the release binaries and reads their peak memory.
//! - [`report`]: markdown tables and the latency plot; [`markdown`]: the report itself.
//! - [`oracle`]: the offline optimum of a warm pool on a known trace (two
//!   bounds), for the catalogue scenario.
//! - [`setup`]: the command line, a run's environment and services ([`setup::Bench`]).
//! - [`scenarios`]: the scenarios, one module each (the physical floor,
//!   the warm path, the seed's headline, similar templates, sizing, scale, ...),
//!   in the order they run.
//! - `src/bin/prewarm-bench.rs`: runs them and writes the report.

pub mod client;
pub mod load;
pub mod markdown;
pub mod oracle;
pub mod report;
pub mod scenarios;
pub mod services;
pub mod setup;
