//! What `make demo` (`scripts/demo.sh`) runs besides the two services:
//!
//! - `src/bin/demo.rs`: the demo client -- a company, a 30-image template,
//!   its warm pool, designs paced and in a burst, similar templates.
//! - `src/bin/dev-broker.rs`: the demo's Kafka-protocol broker, librdkafka's
//!   mock cluster on a local port (tansu stays the broker of `make test` and
//!   `make bench`).
//! - [`images`]: the generated PNG payloads the demo (and the tests) upload.
//!
//! Kept apart from the test crate so that the demo builds only what it runs.

pub mod images;
