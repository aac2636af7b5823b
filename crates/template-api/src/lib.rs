//! template-api: Prewarm's HTTP service (actix-web).
//!
//! Layout:
//! - [`settings`]: the typed settings (defaults < file < `PREWARM_*` environment).
//! - [`startup`]: builds the state, binds the listener, holds the one route table.
//! - [`routes`]: one module per resource (`admin`, `templates`, `designs`, `health`).
//! - [`create_design`]: the hot path -- pop a pool item (warm) or copy on the spot (cold);
//!   [`template_versions`]: the templates' versions it remembers (no template read when warm);
//!   [`prefetch`]: the next pool id popped ahead while a claim is in flight;
//!   [`company_slots`]: how many cold designs one company may have in flight.
//! - [`similar`]: similar templates behind a two-tier cache (moka in-process, Redis shared).
//! - [`upload`]: multipart template uploads streamed to S3, with size limits and a
//!   process-wide budget of bytes in flight.
//! - [`idempotency`]: the `Idempotency-Key` header (replayed answers, one resource per key).
//! - [`rate_limit`]: token buckets per key and address (Redis, in-process fallback).
//! - [`auth`]: bearer-token extractors for companies and the admin.
//! - [`error`]: `ApiError`, the one mapping from failures to JSON error responses.
//! - [`metrics`]: Prometheus metrics at `/metrics` and the latency middleware.
//! - [`openapi`]: the OpenAPI 3.1 document served at `/openapi.json` (paths from the
//!   route table, schemas derived from the DTO types; committed as docs/openapi.json).
//! - [`request_span`]: one tracing span per request (continues the caller's trace; access log);
//!   [`request_id`]: the request's id as a task-local (error bodies, detached work).
//! - [`state`]: what every handler shares (database, Redis index, S3, Kafka producer);
//!   [`warmup_requests`]: warm-up requests to Kafka, coalesced per template version;
//!   [`background`]: the background loops, stopped together on shutdown.

pub mod auth;
pub mod background;
pub mod company_slots;
pub mod create_design;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod prefetch;
pub mod rate_limit;
pub mod request_id;
pub mod request_span;
pub mod routes;
pub mod settings;
pub mod similar;
pub mod startup;
pub mod state;
pub mod template_versions;
pub mod upload;
pub mod warmup_requests;
