//! End-to-end tests against the real stack (`make up`): real Postgres, Redis,
//! Kafka (tansu) and S3 (moto). One binary, so everything links once; each
//! test gets its own database, key prefix, topic and bucket.

mod api_contract;
mod api_features;
mod background;
mod bad_input;
mod concurrent;
mod connection_budget;
mod degraded;
mod depth_total;
mod design_limit;
mod fairness;
mod idempotency;
mod interleavings;
mod isolation;
mod kafka_producer;
mod ledger_model;
mod managed;
mod operations;
mod policies;
mod pool;
mod prefetch;
mod rate_limits;
mod readiness;
mod reliability;
mod request_ids;
mod similar;
mod sizing;
mod templates;
mod uploads;
mod waking;
