//! The scenarios of `prewarm-bench`, one module each, in the order they
//! run; each returns what the report shows of it (`crate::markdown`).
//!
//! - [`prefill`]: the warm template's pool filled before the latency runs.
//! - [`floor`]: the physical floor (Redis pop + the warm model's
//!   transaction, no HTTP) and the old model's beside it.
//! - [`warm`]: the warm path over HTTP, closed and open loops.
//! - [`images`]: the warm path with 1, 30 and 200 images per template, made and measured alike.
//! - [`headline`]: the seed's case at its own load, warm and cold side by side.
//! - [`cold`]: the seed's case cold, 64 clients.
//! - [`steady`]: sustained load below and above the worker's copy capacity.
//! - [`similar`]: similar templates (uncached, cached, a stampede).
//! - [`sizing`]: fixed vs adaptive pool sizing on a Zipf workload with a burst.
//! - [`scale`]: the background passes' cost by catalogue size.
//! - [`catalogue`]: sizing strategies on a large catalogue (a daily peak, a
//!   scheduled launch, a burst) against the offline optimum.

pub mod catalogue;
pub mod cold;
pub mod floor;
pub mod headline;
pub mod images;
pub mod prefill;
pub mod scale;
pub mod similar;
pub mod sizing;
pub mod steady;
pub mod warm;

use crate::load::RunResult;

pub use catalogue::catalogue;
pub use cold::cold;
pub use floor::floor;
pub use headline::headline;
pub use images::{images, ImagesRun};
pub use prefill::{prefill, Prefill};
pub use scale::scale;
pub use similar::similar;
pub use sizing::sizing;
pub use steady::{steady, Steady};
pub use warm::{warm, Warm};

/// One sustained-load run: its rate, its result, and the pool depth over
/// time (seconds, items).
pub type SteadyRun = (f64, RunResult, Vec<(f64, i64)>);

/// CPU per request, by run label and process.
pub type CpuRows = Vec<(String, Vec<(String, f64)>)>;
