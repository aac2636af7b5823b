//! The benchmark harness behind `make bench`.
//!
//! Layout:
//! - [`client`]: the API calls the scenarios make (upload a template, post a design).
//! - [`fault_proxy`]: an HTTP proxy that injects latency, errors and stalls
//!   between the services and S3 (also usable as the `fault-proxy` binary).
//! - [`load`]: closed-loop (N clients) and open-loop (constant rate, latency
//!   measured from the intended send time, so no coordinated omission)
//!   generators recording into HdrHistograms.
//! - [`floor`]: the physical floor -- the same Redis pop and Postgres
//!   transaction as the warm path, issued with no HTTP and no framework.
//! - [`similar`]: the similar-templates scenario (uncached, cached, stampede).
//! - [`sizing`]: fixed N=4 vs adaptive pool sizing on a Zipf workload with a burst.
//! - [`scale`]: a catalogue of 10^3-10^5 templates with a long tail: the
//!   background passes' cost by catalogue size (with `src/bin/gc-pass.rs`,
//!   the GC in its own process for its memory).
//! - [`services`]: starts the release binaries and reads their peak memory.
//! - [`report`]: markdown tables and the latency plot; [`markdown`]: the report itself.
//! - [`setup`]: the command line, a run's environment and services ([`setup::Bench`]).
//! - [`scenarios`]: the scenarios, one function each, in the order they run.
//! - `src/bin/prewarm-bench.rs`: runs them and writes the report.

pub mod client;
pub mod fault_proxy;
pub mod floor;
pub mod load;
pub mod markdown;
pub mod report;
pub mod scale;
pub mod scenarios;
pub mod services;
pub mod setup;
pub mod similar;
pub mod sizing;
