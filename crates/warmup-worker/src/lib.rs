//! warmup-worker: keeps every template's warm pool at its target.
//!
//! Layout:
//! - [`settings`]: the typed settings (defaults < file < `PREWARM_*` environment).
//! - [`refill`]: `Refiller::refill(template)` -- reserve the gap in the Postgres
//!   ledger, copy the objects at a bounded global concurrency, mark the items
//!   ready and index them in Redis. Idempotent: a duplicate request finds no gap.
//! - [`consumer`]: the Kafka consumer-group loop: batch, coalesce per template,
//!   refill, then store offsets (at-least-once); batches overlap; shutdown
//!   is a future passed in.
//! - [`refill_queue`]: the refill slots the batches in flight share, one
//!   waiting refill per template, and the bound on waiting refills past
//!   which the backlog stays in Kafka.
//! - [`fair_share`]: the order a batch's refills start in, round-robin over
//!   the companies owning them (no tenant's volume delays another's refill).
//! - [`reconciler`]: the periodic pass that heals without messages (expired
//!   leases, top-ups, Redis rebuilt from the ledger) on the templates that
//!   changed plus a rolling sweep page, and the S3 garbage collector (one
//!   listing page at a time, resumable).
//! - [`sizing`]: the adaptive sizing policy (Poisson demand over the refill time,
//!   clamped, a global budget handed out by likelihood of use) -- pure functions.
//! - [`sizer`]: the periodic planning pass that applies it, and the idle rule
//!   (`pool.idle_secs`); demand kept incrementally, the plan in `pool_targets`.
//! - [`policies`]: operator pool policies (per template, per company
//!   default) and the bounds they put on a target at an instant.
//! - [`forecast`]: recurring demand from each template's own history (a
//!   profile by 15-minute slot of the week), which the sizer plans with.
//! - [`singleton`]: one replica at a time per background pass (leases in
//!   `singleton_leases`, renewed while the pass runs).
//! - [`depths`]: the pool-depth metrics, from the changed, depleted and swept
//!   templates (not the whole catalogue).
//! - [`metrics`]: the worker's Prometheus metrics; [`http`]: `/healthz`,
//!   `/readyz` and `/metrics` on `worker.http_port`.
//! - [`startup`]: connects dependencies and builds the `Worker`.

pub mod consumer;
pub mod depths;
pub mod fair_share;
pub mod forecast;
pub mod http;
pub mod metrics;
pub mod policies;
pub mod reconciler;
pub mod refill;
pub mod refill_queue;
pub mod settings;
pub mod singleton;
pub mod sizer;
pub mod sizing;
pub mod startup;
