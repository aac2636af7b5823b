//! Prewarm's shared vocabulary: the types both services and the tests speak.
//!
//! Layout:
//! - [`ids`]: typed identifiers (`CompanyId`, `TemplateId`, `DesignId`, `PoolItemId`) and
//!   `TemplateVersion`.
//! - [`company`], [`template`], [`design`]: domain types and the JSON DTOs of the HTTP API.
//! - [`pool`]: a pool (`PoolKey`: one template at one version), its items (ready-made designs
//!   waiting in it), their states and the pool's status.
//! - [`image_type`]: the accepted image types, checked by their magic bytes.
//! - [`object_keys`]: the S3 key scheme; who owns an object is readable from its key prefix.
//! - [`valid`]: client input validated once, in types (`TemplateName`,
//!   `Layout`, `DesignLimit`, `PageLimit`, ...); the request DTOs'
//!   `parse` into `ValidTemplate`, `ValidPatch`, `ValidCompany` (what the store takes).
//! - [`cursor`]: the opaque keyset cursor of list pages.
//! - [`headers`]: `Idempotency-Key`, `If-Match` and `X-Forwarded-For`, read as plain text.
//! - [`json_number`]: integer fields that take integral JSON numbers, and the layout's schema.
//! - [`pool_policy`]: an operator's pool policy (floor, ceiling, fixed target, schedule
//!   windows: one-off, or cron in an IANA time zone), its JSON, rules and target at an instant.
//! - [`error`]: the stable error codes every HTTP error carries, with their status.
//! - [`warmup`]: the Kafka warm-up message, generated from `proto/warmup.proto`
//!   (the generated code is committed in `src/generated/`).
//!
//! This crate depends on serde, schemars (JSON Schemas of the DTOs, for the OpenAPI document), uuid,
//! chrono, chrono-tz (pool policy time zones), hex and prost only: no web, database or broker
//! client. Everything that parses what a client or a message sends lives here, so the fuzz
//! targets (`fuzz/`) build it alone.

pub mod company;
pub mod cursor;
pub mod design;
pub mod error;
pub mod headers;
pub mod ids;
pub mod image_type;
pub mod json_number;
pub mod object_keys;
pub mod pool;
pub mod pool_policy;
pub mod template;
pub mod valid;
pub mod warmup;
