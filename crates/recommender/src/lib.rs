//! A stand-in for the external recommendation service that "similar
//! templates" asks. Production points `similar.upstream_url` at the real
//! service; the demo, the tests and the benchmarks run this one.
//!
//! Layout:
//! - [`rank`]: the similarity score (category and name/tag words) and paging.
//! - [`server`]: the HTTP server: `GET /v1/templates/{id}/similar?page&per_page`,
//!   `POST /control` (latency, failure rate, stall) and `GET /stats` (calls made).
//!
//! It reads the catalogue straight from Prewarm's Postgres on every call, like
//! a service with its own up-to-date index would.

pub mod rank;
pub mod server;

pub use server::{Faults, Recommender};
