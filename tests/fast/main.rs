//! Checks across crates that need no server (`make test-fast` runs them
//! with every crate's unit and property tests): the settings each service
//! reads, `docs/configuration.md` and the Helm chart's values agree; the
//! committed code of the warm-up message matches `proto/warmup.proto`; the
//! SQL tables and functions the docs name exist.

mod config_consistency;
mod docs_sql;
mod proto;
