//! Adapters shared by Prewarm's services. Each hides its client library behind
//! a small typed API with its own error type, so handlers never see diesel,
//! fred, aws-sdk or rdkafka types.
//!
//! Layout:
//! - [`connect`]: connects all of the above at a service's start.
//! - [`db`]: Postgres (diesel-async). `db/schema.rs` tables, `migrations/` at the
//!   crate root, one module per table; `db/pool_items.rs` is the pool ledger
//!   (`db/pool_live.rs` the live items the budget is checked against),
//!   `db/pool_checks.rs` what the reconciler reads to find work (changes since a
//!   watermark, a sweep page, pool states), `db/cursors.rs` where paged
//!   background passes stopped.
//! - [`redis`]: the one Redis handle (fred connections, key prefix, typed
//!   error) the three Redis adapters share: [`pool_index`], the lists of
//!   ready pool item ids; [`rate_buckets`], token buckets (the API's rate
//!   limits); [`shared_cache`], the Redis tier of the API's caches and its
//!   invalidation channel.
//! - [`objects`]: S3 (aws-sdk-s3), including the bounded-parallel copy;
//!   [`object_upload`]: streaming (multipart) uploads and presigned GET URLs.
//! - [`warmup_topic`]: the Kafka warm-up topic (publisher, dead letters, topic admin);
//!   [`kafka_producer`]: the rdkafka producer under it, polled by a thread that
//!   sleeps while idle.
//! - [`pause`]: test-only pause points that force interleavings (a no-op in release builds).
//! - [`readiness`]: `/readyz` of both services (only Postgres gates; the rest is reported).
//! - [`settings`]: the settings sections both services embed, and the layered loader.
//! - [`tls`]: rustls client configuration (CA bundles, system roots) for Redis and Postgres.
//!
//! Logs, traces, metrics helpers, the shutdown signal and the healthcheck
//! probe are not storage: they are in `prewarm-service-kit`.
//!
//! One crate, a module per concern, rather than a crate per adapter: both
//! services use every adapter, and the adapters share the settings loader,
//! the TLS roots and the readiness report; a crate each would add five
//! manifests and their feature sets to keep in step (and, on 2 cores, five
//! more link steps to a test build) without making any concern easier to
//! find than its module is.

pub mod connect;
pub mod db;
pub mod kafka_producer;
pub mod object_upload;
pub mod objects;
pub mod pause;
pub mod pool_index;
pub mod rate_buckets;
pub mod readiness;
pub mod redis;
pub mod settings;
pub mod shared_cache;
pub mod tls;
pub mod warmup_topic;
