//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json` and
//! committed as `docs/openapi.json`.
//!
//! Paths come from [`OPERATIONS`], which a test holds equal to the route
//! table actix serves (`routes::ROUTES`); schemas are derived from the DTO
//! types (`schemars`), so a changed field changes the document. The committed
//! copy is checked against the generated one; regenerate it with
//! `PREWARM_UPDATE_OPENAPI=1 cargo test -p template-api openapi`.

use actix_web::HttpResponse;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};
use shared_domain::company::{
    ApiKeyCreated, ApiKeyList, ApiKeyRotated, Company, NewCompany, RotateApiKey,
};
use shared_domain::design::{CreateDesign, Design, DesignList};
use shared_domain::error::{ErrorBody, ErrorCode};
use shared_domain::pool::{PoolSizing, PoolStatus};
use shared_domain::pool_policy::PoolPolicy;
use shared_domain::template::{
    NewTemplate, SimilarTemplates, Template, TemplateList, TemplatePatch,
};

#[derive(Clone, Copy)]
enum Auth {
    None,
    Company,
    Admin,
}

/// Adds a type's schema to the generator and returns a reference to it.
type SchemaOf = fn(&mut SchemaGenerator) -> Value;

#[derive(Clone, Copy)]
enum Body {
    None,
    Json(SchemaOf),
    /// A JSON body that may be left out.
    OptionalJson(SchemaOf),
    /// multipart/form-data: an optional `metadata` JSON part, then `image` parts.
    Multipart {
        metadata: bool,
    },
}

/// A query parameter: name, description, schema.
type Query = (&'static str, &'static str, fn() -> Value);

struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    auth: Auth,
    query: &'static [Query],
    /// Request headers, by their name under `components/parameters`.
    headers: &'static [&'static str],
    body: Body,
    /// Success status, its schema (None: no body, or free-form JSON), description.
    ok: (u16, Option<SchemaOf>, &'static str),
    /// Headers of the success answer, by their name under `components/headers`.
    ok_headers: &'static [&'static str],
    /// OpenAPI links of the success answer: (name, operationId, parameter or
    /// body field, runtime expression).
    links: &'static [(&'static str, &'static str, Link)],
    /// Error codes this operation answers, besides auth, rate limits and server faults.
    errors: &'static [ErrorCode],
}

/// Where a link puts the value it takes from the answer.
#[derive(Clone, Copy)]
enum Link {
    /// The `id` path parameter, from this field of the answer.
    Id(&'static str),
    /// The `template_id` of a JSON body, from this field of the answer.
    TemplateBody(&'static str),
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn limit() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 50})
}
fn offset() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": shared_domain::cursor::MAX_OFFSET, "deprecated": true})
}
fn cursor() -> Value {
    json!({"type": "string", "pattern": shared_domain::cursor::CURSOR_PATTERN})
}
fn include() -> Value {
    json!({"type": "string", "enum": ["urls"]})
}
/// `similar`'s `page`: its maximum is `similar.max_page` (the committed
/// document states the default; [`serve`] states the configured one).
fn similar_page() -> Value {
    let max = crate::similar::settings::SimilarSettings::default().max_page;
    json!({"type": "integer", "minimum": 1, "maximum": max, "default": 1})
}

const PAGE: &[Query] = &[
    ("limit", "page size, 1-100 (default 50)", limit),
    (
        "cursor",
        "the `next_cursor` of the previous page (keyset: stable while rows are inserted)",
        cursor,
    ),
    (
        "offset",
        "deprecated: items to skip, at most 10000 (after `cursor`'s row when both are given; rows inserted meanwhile shift the pages); use `cursor`",
        offset,
    ),
];
const INCLUDE: &[Query] = &[(
    "include",
    "`urls`: a presigned GET URL per image (valid server.presign_ttl_secs)",
    include,
)];

use ErrorCode as E;
use Link::{Id, TemplateBody};

/// Errors of every JSON body.
const JSON_BODY: [ErrorCode; 4] = [
    E::MalformedJson,
    E::InvalidRequest,
    E::PayloadTooLarge,
    E::UnsupportedMediaType,
];

const OPERATIONS: &[Operation] = &[
    Operation { method: "get", path: "/healthz", id: "healthz", summary: "Liveness: the process answers.", auth: Auth::None, query: &[], headers: &[], body: Body::None, ok: (200, None, "alive"), ok_headers: &[], links: &[], errors: &[] },
    Operation { method: "get", path: "/readyz", id: "readyz", summary: "Readiness: Postgres answers (status only here; the operations port names every dependency).", auth: Auth::None, query: &[], headers: &[], body: Body::None, ok: (200, None, "ready; 503 `{\"status\": \"not_ready\"}` otherwise"), ok_headers: &[], links: &[], errors: &[] },
    Operation { method: "get", path: "/openapi.json", id: "openapi", summary: "This document.", auth: Auth::None, query: &[], headers: &[], body: Body::None, ok: (200, None, "the OpenAPI document"), ok_headers: &[], links: &[], errors: &[] },
    Operation { method: "post", path: "/admin/companies", id: "createCompany", summary: "Create a company with a plan limit.", auth: Auth::Admin, query: &[], headers: &[], body: Body::Json(schema::<NewCompany>), ok: (201, Some(schema::<Company>), "created"), ok_headers: &[], links: &[("CreateApiKey", "createApiKey", Id("id")), ("ListApiKeys", "listApiKeys", Id("id"))], errors: &JSON_BODY },
    Operation { method: "post", path: "/admin/companies/{id}/api-keys", id: "createApiKey", summary: "Issue an API key for a company (shown once).", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (201, Some(schema::<ApiKeyCreated>), "the key"), ok_headers: &[], links: &[("RotateApiKey", "rotateApiKey", Id("id")), ("RevokeApiKey", "revokeApiKey", Id("id"))], errors: &[E::InvalidId, E::CompanyNotFound] },
    Operation { method: "get", path: "/admin/companies/{id}/api-keys", id: "listApiKeys", summary: "A company's API keys, oldest first, with their state (never a secret: a hint of the first characters).", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (200, Some(schema::<ApiKeyList>), "the keys"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::CompanyNotFound] },
    Operation { method: "delete", path: "/admin/api-keys/{id}", id: "revokeApiKey", summary: "Revoke a key: refused at once by every replica (the revocation is published, caches drop the key).", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (204, None, "revoked"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::ApiKeyNotFound] },
    Operation { method: "post", path: "/admin/api-keys/{id}/rotate", id: "rotateApiKey", summary: "Rotate a live key: a new key (shown once); the old one keeps working for `grace_secs` (default 24 h).", auth: Auth::Admin, query: &[], headers: &[], body: Body::OptionalJson(schema::<RotateApiKey>), ok: (201, Some(schema::<ApiKeyRotated>), "the new key and the old one's end"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::ApiKeyNotFound, E::MalformedJson, E::InvalidRequest, E::PayloadTooLarge, E::UnsupportedMediaType] },
    Operation { method: "get", path: "/admin/templates/{id}/sizing", id: "poolSizing", summary: "How big a template's pool is meant to be and why: target, demand, refill time, budget use.", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (200, Some(schema::<PoolSizing>), "the template's sizing"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::TemplateNotFound] },
    Operation { method: "put", path: "/admin/templates/{id}/pool-policy", id: "putTemplatePoolPolicy", summary: "Set a template's pool policy: `min`, `max`, a fixed `target`, schedule `windows` (one-off `start`/`end`, or recurring `cron` + `duration_secs` in `time_zone`; the pool is full at a window's start). Within the global budget: the budget wins, policies' floors come before demand.", auth: Auth::Admin, query: &[], headers: &[], body: Body::Json(schema::<PoolPolicy>), ok: (200, Some(schema::<PoolPolicy>), "the policy as stored"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::TemplateNotFound, E::MalformedJson, E::InvalidRequest, E::PayloadTooLarge, E::UnsupportedMediaType] },
    Operation { method: "get", path: "/admin/templates/{id}/pool-policy", id: "getTemplatePoolPolicy", summary: "A template's own pool policy.", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (200, Some(schema::<PoolPolicy>), "the policy"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::TemplateNotFound, E::PolicyNotFound] },
    Operation { method: "delete", path: "/admin/templates/{id}/pool-policy", id: "deleteTemplatePoolPolicy", summary: "Remove a template's own pool policy (its company's default, if any, applies).", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (204, None, "removed"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::TemplateNotFound, E::PolicyNotFound] },
    Operation { method: "put", path: "/admin/companies/{id}/pool-policy", id: "putCompanyPoolPolicy", summary: "Set a company's default pool policy, for its templates without their own.", auth: Auth::Admin, query: &[], headers: &[], body: Body::Json(schema::<PoolPolicy>), ok: (200, Some(schema::<PoolPolicy>), "the policy as stored"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::CompanyNotFound, E::MalformedJson, E::InvalidRequest, E::PayloadTooLarge, E::UnsupportedMediaType] },
    Operation { method: "get", path: "/admin/companies/{id}/pool-policy", id: "getCompanyPoolPolicy", summary: "A company's default pool policy.", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (200, Some(schema::<PoolPolicy>), "the policy"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::CompanyNotFound, E::PolicyNotFound] },
    Operation { method: "delete", path: "/admin/companies/{id}/pool-policy", id: "deleteCompanyPoolPolicy", summary: "Remove a company's default pool policy.", auth: Auth::Admin, query: &[], headers: &[], body: Body::None, ok: (204, None, "removed"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::CompanyNotFound, E::PolicyNotFound] },
    Operation { method: "post", path: "/templates", id: "createTemplate", summary: "Upload a template: a `metadata` JSON part (NewTemplate), then `image` parts in order; streamed to S3. With `Idempotency-Key`, a retry replays the first answer.", auth: Auth::Company, query: &[], headers: &["IdempotencyKey"], body: Body::Multipart { metadata: true }, ok: (201, Some(schema::<Template>), "created (or replayed: `Idempotent-Replayed: true`)"), ok_headers: &["ETag", "IdempotentReplayed"], links: &[("GetTemplate", "getTemplate", Id("id")), ("UpdateTemplate", "updateTemplate", Id("id")), ("ReplaceImages", "replaceImages", Id("id")), ("PoolStatus", "poolStatus", Id("id")), ("SimilarTemplates", "similarTemplates", Id("id")), ("CreateDesign", "createDesign", TemplateBody("id")), ("DeleteTemplate", "deleteTemplate", Id("id"))], errors: &[E::MalformedJson, E::InvalidRequest, E::InvalidMultipart, E::PayloadTooLarge, E::UnsupportedMediaType, E::TemplateHasNoImages, E::IdempotencyKeyReused, E::RequestInProgress, E::RequestTimeout, E::Busy, E::ObjectStoreUnavailable] },
    Operation { method: "get", path: "/templates", id: "listTemplates", summary: "Templates the company may see: public ones and its own, newest first; a page ends at `limit` templates or once their layouts (JSON) and images (160 bytes each) reach 1 MiB (its first always listed), so page on while `next_cursor` is present; `next_cursor` and `Link: rel=\"next\"` lead to the next page.", auth: Auth::Company, query: PAGE, headers: &[], body: Body::None, ok: (200, Some(schema::<TemplateList>), "a page of templates"), ok_headers: &["Link"], links: &[], errors: &[E::InvalidRequest] },
    Operation { method: "get", path: "/templates/{id}", id: "getTemplate", summary: "One visible template at its current version; `ETag` for conditional edits.", auth: Auth::Company, query: &[], headers: &[], body: Body::None, ok: (200, Some(schema::<Template>), "the template"), ok_headers: &["ETag"], links: &[], errors: &[E::InvalidId, E::TemplateNotFound] },
    Operation { method: "patch", path: "/templates/{id}", id: "updateTemplate", summary: "Edit name, category, layout or visibility (owner only); a layout change bumps the version. With `If-Match`, only if the template is still at that ETag (else 412).", auth: Auth::Company, query: &[], headers: &["IfMatch"], body: Body::Json(schema::<TemplatePatch>), ok: (200, Some(schema::<Template>), "the edited template"), ok_headers: &["ETag"], links: &[], errors: &[E::InvalidId, E::MalformedJson, E::InvalidRequest, E::PayloadTooLarge, E::UnsupportedMediaType, E::Forbidden, E::TemplateNotFound, E::PreconditionFailed] },
    Operation { method: "delete", path: "/templates/{id}", id: "deleteTemplate", summary: "Delete a template (owner only): hidden at once, its pool retired, its images deleted.", auth: Auth::Company, query: &[], headers: &[], body: Body::None, ok: (204, None, "deleted"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::Forbidden, E::TemplateNotFound] },
    Operation { method: "get", path: "/templates/{id}/similar", id: "similarTemplates", summary: "Similar templates (same category, visible to the caller), from the recommendation service behind a two-tier cache; header X-Cache: hit|miss|stale.", auth: Auth::Company, query: &[("page", "answer page, 1 to similar.max_page (default 1)", similar_page)], headers: &[], body: Body::None, ok: (200, Some(schema::<SimilarTemplates>), "a page of similar templates"), ok_headers: &["XCache"], links: &[], errors: &[E::InvalidId, E::InvalidRequest, E::TemplateNotFound, E::RecommendationsUnavailable, E::RecommendationsTimeout] },
    Operation { method: "put", path: "/templates/{id}/images", id: "replaceImages", summary: "Replace the images (owner only; `image` parts in order, streamed to S3); bumps the version. With `If-Match`, only at that ETag (else 412, before any byte is stored).", auth: Auth::Company, query: &[], headers: &["IfMatch"], body: Body::Multipart { metadata: false }, ok: (200, Some(schema::<Template>), "the edited template"), ok_headers: &["ETag"], links: &[], errors: &[E::InvalidId, E::InvalidRequest, E::InvalidMultipart, E::PayloadTooLarge, E::UnsupportedMediaType, E::TemplateHasNoImages, E::Forbidden, E::TemplateNotFound, E::PreconditionFailed, E::RequestTimeout, E::Busy, E::ObjectStoreUnavailable] },
    Operation { method: "get", path: "/templates/{id}/pool", id: "poolStatus", summary: "How warm a template is: target, ready, copying and indexed items.", auth: Auth::Company, query: &[], headers: &[], body: Body::None, ok: (200, Some(schema::<PoolStatus>), "the pool's state"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::TemplateNotFound] },
    Operation { method: "post", path: "/designs", id: "createDesign", summary: "Turn a template into a design: from the warm pool in milliseconds, else by copying; header X-Served-From: pool|copy. With `Idempotency-Key`, one key makes one design and a retry replays the first answer.", auth: Auth::Company, query: INCLUDE, headers: &["IdempotencyKey"], body: Body::Json(schema::<CreateDesign>), ok: (201, Some(schema::<Design>), "created (or replayed: `Idempotent-Replayed: true`)"), ok_headers: &["XServedFrom", "IdempotentReplayed"], links: &[("GetDesign", "getDesign", Id("id")), ("DeleteDesign", "deleteDesign", Id("id")), ("GetTemplate", "getTemplate", Id("template_id"))], errors: &[E::MalformedJson, E::InvalidRequest, E::PayloadTooLarge, E::UnsupportedMediaType, E::TemplateNotFound, E::DesignLimitReached, E::TemplateChanged, E::IdempotencyKeyReused, E::RequestInProgress, E::ObjectStoreUnavailable] },
    Operation { method: "get", path: "/designs", id: "listDesigns", summary: "The company's designs, newest first; `next_cursor` and `Link: rel=\"next\"` lead to the next page.", auth: Auth::Company, query: PAGE, headers: &[], body: Body::None, ok: (200, Some(schema::<DesignList>), "a page of designs"), ok_headers: &["Link"], links: &[], errors: &[E::InvalidRequest] },
    Operation { method: "get", path: "/designs/{id}", id: "getDesign", summary: "One of the company's designs; `?include=urls` adds a presigned GET URL per image.", auth: Auth::Company, query: INCLUDE, headers: &[], body: Body::None, ok: (200, Some(schema::<Design>), "the design"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::InvalidRequest, E::DesignNotFound, E::ObjectStoreUnavailable] },
    Operation { method: "delete", path: "/designs/{id}", id: "deleteDesign", summary: "Delete a design and its S3 objects.", auth: Auth::Company, query: &[], headers: &[], body: Body::None, ok: (204, None, "deleted"), ok_headers: &[], links: &[], errors: &[E::InvalidId, E::DesignNotFound] },
];

/// Headers every rate-limited answer carries.
const RATE_LIMIT_HEADERS: [&str; 3] = ["RateLimitLimit", "RateLimitRemaining", "RateLimitReset"];

fn headers_of(names: &[&str]) -> Value {
    let mut map = Map::new();
    map.insert(
        "X-Request-Id".into(),
        json!({"$ref": "#/components/headers/RequestId"}),
    );
    for name in names {
        let header = match *name {
            "ETag" => "ETag",
            "Link" => "Link",
            "IdempotentReplayed" => "Idempotent-Replayed",
            "XServedFrom" => "X-Served-From",
            "XCache" => "X-Cache",
            "RetryAfter" => "Retry-After",
            "RateLimitLimit" => "RateLimit-Limit",
            "RateLimitRemaining" => "RateLimit-Remaining",
            "RateLimitReset" => "RateLimit-Reset",
            other => other,
        };
        map.insert(
            header.into(),
            json!({"$ref": format!("#/components/headers/{name}")}),
        );
    }
    Value::Object(map)
}

fn multipart(generator: &mut SchemaGenerator, metadata: bool) -> Value {
    let mut props = Map::new();
    let mut required = vec!["image"];
    let accepted = shared_domain::image_type::ACCEPTED.join(", ");
    let mut encoding = json!({"image": {"contentType": accepted}});
    if metadata {
        props.insert("metadata".into(), schema::<NewTemplate>(generator));
        required.insert(0, "metadata");
        encoding["metadata"] = json!({"contentType": "application/json"});
    }
    props.insert(
        "image".into(),
        json!({"type": "array", "minItems": 1,
        "items": {"type": "string", "contentMediaType": "image/*",
            "description": "a PNG, JPEG, GIF or WebP image, declared as such and recognised by its first bytes (else 415)"}}),
    );
    json!({"required": true, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": props, "required": required, "additionalProperties": false},
        "encoding": encoding,
    }}})
}

/// Builds the document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error = schema::<ErrorBody>(&mut generator);
    let mut paths = Map::new();
    for op in OPERATIONS {
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = operation(op, &mut generator, &error);
    }
    let schemas = generator.take_definitions(true);
    let text =
        |description: &str| json!({"description": description, "schema": {"type": "string"}});
    let integer = |description: &str| json!({"description": description, "schema": {"type": "integer", "minimum": 0}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Prewarm template API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Designs from templates in milliseconds, served from a warm pool of ready-made S3 copies. \
                            Errors are {\"error\": {\"code\", \"message\", \"request_id\"}} with a stable code (docs/api.md); \
                            a 5xx message is generic, its details are logged under the request id. \
                            Company and admin routes are rate limited per key and per address (429 `rate_limited`, `RateLimit-*` headers).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {
                "RequestId": {"name": "X-Request-Id", "in": "header", "required": false,
                    "description": "the caller's request id: any value is accepted; one of 1-128 of A-Z a-z 0-9 . _ - is echoed and used, any other is replaced by one the API makes (the answer's X-Request-Id says which)",
                    "schema": {}},
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "makes the request safe to retry: the same key (per company) with the same request replays the first answer for idempotency.retention_secs (24 h); with another request it is 422 `idempotency_key_reused`; while the first is running, 409 `request_in_progress`",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"}},
                "IfMatch": {"name": "If-Match", "in": "header", "required": false,
                    "description": "an ETag from a read of this template (or `*`), or a comma-separated list of up to 16: the edit happens only if the template is still at one of them, else 412 `precondition_failed`; an empty or longer list is 400",
                    "schema": {"type": "string", "pattern": "^[\\t\\x20-\\x7e]*[\\x21-\\x2b\\x2d-\\x7e][\\t\\x20-\\x7e]*$"}},
            },
            "headers": {
                "RequestId": text("this request's id, also in the log lines it wrote and in error bodies"),
                "ETag": text("the template's entity tag: send it back in `If-Match`"),
                "Link": text("`<...>; rel=\"next\"`: the next page, when there is one"),
                "IdempotentReplayed": text("`true` when the answer is the stored first answer of the Idempotency-Key"),
                "XServedFrom": text("`pool` (warm) or `copy` (copied on the spot)"),
                "XCache": text("`hit`, `miss` or `stale`"),
                "RetryAfter": integer("seconds to wait before retrying"),
                "RateLimitLimit": integer("the bucket's size (requests) of this key, or address, for this route class"),
                "RateLimitRemaining": integer("requests left in the bucket"),
                "RateLimitReset": integer("seconds until the bucket is full again"),
            },
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a company's API key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin token (admin_token)"},
            },
        },
    })
}

/// One operation: its parameters, body, answers and security.
fn operation(op: &Operation, generator: &mut SchemaGenerator, error: &Value) -> Value {
    let mut operation = Map::new();
    operation.insert("operationId".into(), json!(op.id));
    operation.insert("summary".into(), json!(op.summary));
    let tag = op
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    operation.insert("tags".into(), json!([tag]));
    operation.insert("parameters".into(), parameters(op));
    match op.body {
        Body::None => {}
        Body::Json(schema_of) | Body::OptionalJson(schema_of) => {
            let required = matches!(op.body, Body::Json(_));
            operation.insert(
                "requestBody".into(),
                json!({"required": required,
                "content": {"application/json": {"schema": schema_of(generator)}}}),
            );
        }
        Body::Multipart { metadata } => {
            operation.insert("requestBody".into(), multipart(generator, metadata));
        }
    }
    match op.auth {
        Auth::None => {}
        Auth::Company => {
            operation.insert("security".into(), json!([{"apiKey": []}]));
        }
        Auth::Admin => {
            operation.insert("security".into(), json!([{"adminToken": []}]));
        }
    }
    operation.insert("responses".into(), responses(op, generator, error));
    Value::Object(operation)
}

fn parameters(op: &Operation) -> Value {
    let mut params: Vec<Value> = vec![json!({"$ref": "#/components/parameters/RequestId"})];
    for name in op.headers {
        params.push(json!({"$ref": format!("#/components/parameters/{name}")}));
    }
    if op.path.contains("{id}") {
        params.push(json!({"name": "id", "in": "path", "required": true,
            "schema": {"type": "string", "format": "uuid"}}));
    }
    for (name, description, schema_of) in op.query {
        params.push(json!({"name": name, "in": "query", "required": false,
            "description": description, "schema": schema_of()}));
    }
    Value::Array(params)
}

/// The success answer (with its links) and one answer per error status,
/// naming its codes.
fn responses(op: &Operation, generator: &mut SchemaGenerator, error: &Value) -> Value {
    let mut base_headers: Vec<&str> = Vec::new();
    if matches!(op.auth, Auth::Company) {
        base_headers.extend(RATE_LIMIT_HEADERS);
    }
    let mut responses = Map::new();
    let (status, body, description) = op.ok;
    let mut ok_headers = base_headers.clone();
    ok_headers.extend(op.ok_headers);
    let mut ok = json!({"description": description, "headers": headers_of(&ok_headers)});
    if let Some(schema_of) = body {
        ok["content"] = json!({"application/json": {"schema": schema_of(generator)}});
    }
    if !op.links.is_empty() {
        let mut links = Map::new();
        for (name, target, link) in op.links {
            let value = match link {
                Id(field) => json!({"operationId": target,
                    "parameters": {"id": format!("$response.body#/{field}")}}),
                TemplateBody(field) => json!({"operationId": target,
                    "requestBody": {"template_id": format!("$response.body#/{field}")}}),
            };
            links.insert(name.to_string(), value);
        }
        ok["links"] = Value::Object(links);
    }
    responses.insert(status.to_string(), ok);
    let mut errors: Vec<ErrorCode> = op.errors.to_vec();
    if !matches!(op.auth, Auth::None) {
        // Admin routes are limited too: wrong admin tokens spend the
        // address's failed-authentication bucket.
        errors.extend([E::MissingAuth, E::InvalidAuth, E::RateLimited]);
        errors.extend([E::StorageUnavailable, E::Internal]);
    }
    let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
    for code in errors {
        let codes = by_status.entry(code.status()).or_default();
        if !codes.contains(&code.as_str()) {
            codes.push(code.as_str());
        }
    }
    for (status, codes) in by_status {
        let mut headers = base_headers.clone();
        if matches!(status, 409 | 429 | 503) {
            headers.push("RetryAfter");
        }
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("error codes: {}", codes.join(", ")),
                "headers": headers_of(&headers),
                "content": {"application/json": {"schema": error}},
            }),
        );
    }
    Value::Object(responses)
}

/// The document as this process serves it: `similar`'s page maximum is
/// the configured `similar.max_page`.
pub fn document_for(max_page: u32) -> Value {
    let mut doc = document();
    if let Some(params) =
        doc["paths"]["/templates/{id}/similar"]["get"]["parameters"].as_array_mut()
    {
        for param in params.iter_mut().filter(|p| p["name"] == "page") {
            param["schema"]["maximum"] = json!(max_page);
        }
    }
    doc
}

/// `GET /openapi.json`.
pub async fn serve(state: actix_web::web::Data<crate::state::AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document_for(state.settings.similar.max_page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        // Every $ref points at a schema the document defines.
        let text = doc.to_string();
        for name in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &name[..name.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }

    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("PREWARM_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is stale: run `PREWARM_UPDATE_OPENAPI=1 cargo test -p template-api openapi` and commit it"
        );
    }
}
