//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json` and
//! committed as `docs/openapi.json`.
//!
//! Paths come from [`OPERATIONS`], which the tests hold equal to the route
//! table actix serves (`startup::ROUTES`); schemas are derived from the DTO
//! types (`schemars`), so a changed field changes the document. The committed
//! copy is checked against the generated one; regenerate it with
//! `PREWARM_UPDATE_OPENAPI=1 cargo test -p template-api openapi`.

use actix_web::HttpResponse;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};
use shared_domain::company::{ApiKeyCreated, Company, NewCompany};
use shared_domain::design::{CreateDesign, Design, DesignList};
use shared_domain::error::{ErrorBody, ErrorCode};
use shared_domain::pool::{PoolSizing, PoolStatus};
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
    /// multipart/form-data: an optional `metadata` JSON part, then `image` parts.
    Multipart {
        metadata: bool,
    },
}

struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    auth: Auth,
    /// Integer query parameters: (name, description).
    query: &'static [(&'static str, &'static str)],
    body: Body,
    /// Success status, its schema (None: no body, or free-form JSON), description.
    ok: (u16, Option<SchemaOf>, &'static str),
    /// Error codes this operation answers, besides auth and server faults.
    errors: &'static [ErrorCode],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

const PAGE: &[(&str, &str)] = &[
    ("limit", "page size, 1-100 (default 50)"),
    ("offset", "items to skip (default 0)"),
];

use ErrorCode as E;

const OPERATIONS: &[Operation] = &[
    Operation { method: "get", path: "/healthz", id: "healthz", summary: "Liveness: the process answers.", auth: Auth::None, query: &[], body: Body::None, ok: (200, None, "alive"), errors: &[] },
    Operation { method: "get", path: "/readyz", id: "readyz", summary: "Readiness: Postgres, Redis and S3 answer (Kafka is reported, not required).", auth: Auth::None, query: &[], body: Body::None, ok: (200, None, "ready; 503 with the failing checks otherwise"), errors: &[] },
    Operation { method: "get", path: "/metrics", id: "metrics", summary: "Prometheus metrics (text exposition format).", auth: Auth::None, query: &[], body: Body::None, ok: (200, None, "metrics"), errors: &[] },
    Operation { method: "get", path: "/openapi.json", id: "openapi", summary: "This document.", auth: Auth::None, query: &[], body: Body::None, ok: (200, None, "the OpenAPI document"), errors: &[] },
    Operation { method: "post", path: "/admin/companies", id: "createCompany", summary: "Create a company with a plan limit.", auth: Auth::Admin, query: &[], body: Body::Json(schema::<NewCompany>), ok: (201, Some(schema::<Company>), "created"), errors: &[E::MalformedJson, E::InvalidRequest, E::PayloadTooLarge, E::UnsupportedMediaType] },
    Operation { method: "post", path: "/admin/companies/{id}/api-keys", id: "createApiKey", summary: "Issue an API key for a company (shown once).", auth: Auth::Admin, query: &[], body: Body::None, ok: (201, Some(schema::<ApiKeyCreated>), "the key"), errors: &[E::InvalidId, E::CompanyNotFound] },
    Operation { method: "get", path: "/admin/templates/{id}/sizing", id: "poolSizing", summary: "How big a template's pool is meant to be and why: target, demand, refill time, budget use.", auth: Auth::Admin, query: &[], body: Body::None, ok: (200, Some(schema::<PoolSizing>), "the template's sizing"), errors: &[E::InvalidId, E::TemplateNotFound] },
    Operation { method: "post", path: "/templates", id: "createTemplate", summary: "Upload a template: a `metadata` JSON part (NewTemplate), then `image` parts in order.", auth: Auth::Company, query: &[], body: Body::Multipart { metadata: true }, ok: (201, Some(schema::<Template>), "created"), errors: &[E::MalformedJson, E::InvalidRequest, E::InvalidMultipart, E::PayloadTooLarge, E::UnsupportedMediaType, E::TemplateHasNoImages, E::ObjectStoreUnavailable] },
    Operation { method: "get", path: "/templates", id: "listTemplates", summary: "Templates the company may see: public ones and its own, newest first.", auth: Auth::Company, query: PAGE, body: Body::None, ok: (200, Some(schema::<TemplateList>), "a page of templates"), errors: &[E::InvalidRequest] },
    Operation { method: "get", path: "/templates/{id}", id: "getTemplate", summary: "One visible template at its current version.", auth: Auth::Company, query: &[], body: Body::None, ok: (200, Some(schema::<Template>), "the template"), errors: &[E::InvalidId, E::TemplateNotFound] },
    Operation { method: "patch", path: "/templates/{id}", id: "updateTemplate", summary: "Edit name, category, layout or visibility (owner only); a layout change bumps the version.", auth: Auth::Company, query: &[], body: Body::Json(schema::<TemplatePatch>), ok: (200, Some(schema::<Template>), "the edited template"), errors: &[E::InvalidId, E::MalformedJson, E::InvalidRequest, E::Forbidden, E::TemplateNotFound] },
    Operation { method: "delete", path: "/templates/{id}", id: "deleteTemplate", summary: "Delete a template (owner only): hidden at once, its pool retired, its images deleted.", auth: Auth::Company, query: &[], body: Body::None, ok: (204, None, "deleted"), errors: &[E::InvalidId, E::Forbidden, E::TemplateNotFound] },
    Operation { method: "get", path: "/templates/{id}/similar", id: "similarTemplates", summary: "Similar templates (same category, visible to the caller), from the recommendation service behind a two-tier cache; header X-Cache: hit|miss|stale.", auth: Auth::Company, query: &[("page", "answer page, 1 to similar.max_page (default 1)")], body: Body::None, ok: (200, Some(schema::<SimilarTemplates>), "a page of similar templates"), errors: &[E::InvalidId, E::InvalidRequest, E::TemplateNotFound, E::RecommendationsUnavailable, E::RecommendationsTimeout] },
    Operation { method: "put", path: "/templates/{id}/images", id: "replaceImages", summary: "Replace the images (owner only; `image` parts in order); bumps the version.", auth: Auth::Company, query: &[], body: Body::Multipart { metadata: false }, ok: (200, Some(schema::<Template>), "the edited template"), errors: &[E::InvalidId, E::InvalidMultipart, E::PayloadTooLarge, E::UnsupportedMediaType, E::TemplateHasNoImages, E::Forbidden, E::TemplateNotFound, E::ObjectStoreUnavailable] },
    Operation { method: "get", path: "/templates/{id}/pool", id: "poolStatus", summary: "How warm a template is: target, ready, copying and indexed items.", auth: Auth::Company, query: &[], body: Body::None, ok: (200, Some(schema::<PoolStatus>), "the pool's state"), errors: &[E::InvalidId, E::TemplateNotFound] },
    Operation { method: "post", path: "/designs", id: "createDesign", summary: "Turn a template into a design: from the warm pool in milliseconds, else by copying; header X-Served-From: pool|copy.", auth: Auth::Company, query: &[], body: Body::Json(schema::<CreateDesign>), ok: (201, Some(schema::<Design>), "created"), errors: &[E::MalformedJson, E::InvalidRequest, E::TemplateNotFound, E::DesignLimitReached, E::TemplateChanged, E::ObjectStoreUnavailable] },
    Operation { method: "get", path: "/designs", id: "listDesigns", summary: "The company's designs, newest first.", auth: Auth::Company, query: PAGE, body: Body::None, ok: (200, Some(schema::<DesignList>), "a page of designs"), errors: &[E::InvalidRequest] },
    Operation { method: "get", path: "/designs/{id}", id: "getDesign", summary: "One of the company's designs.", auth: Auth::Company, query: &[], body: Body::None, ok: (200, Some(schema::<Design>), "the design"), errors: &[E::InvalidId, E::DesignNotFound] },
    Operation { method: "delete", path: "/designs/{id}", id: "deleteDesign", summary: "Delete a design and its S3 objects.", auth: Auth::Company, query: &[], body: Body::None, ok: (204, None, "deleted"), errors: &[E::InvalidId, E::DesignNotFound] },
];

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
        let mut params: Vec<Value> = vec![json!({"$ref": "#/components/parameters/RequestId"})];
        if op.path.contains("{id}") {
            params.push(json!({"name": "id", "in": "path", "required": true,
                "schema": {"type": "string", "format": "uuid"}}));
        }
        for (name, description) in op.query {
            params.push(json!({"name": name, "in": "query", "required": false,
                "description": description, "schema": {"type": "integer", "minimum": 0}}));
        }
        operation.insert("parameters".into(), Value::Array(params));
        match op.body {
            Body::None => {}
            Body::Json(schema_of) => {
                operation.insert(
                    "requestBody".into(),
                    json!({"required": true,
                    "content": {"application/json": {"schema": schema_of(&mut generator)}}}),
                );
            }
            Body::Multipart { metadata } => {
                let mut props = Map::new();
                if metadata {
                    props.insert("metadata".into(), schema::<NewTemplate>(&mut generator));
                }
                props.insert(
                    "image".into(),
                    json!({"type": "array",
                    "items": {"type": "string", "contentMediaType": "image/*"}}),
                );
                operation.insert("requestBody".into(), json!({"required": true,
                    "content": {"multipart/form-data": {"schema": {"type": "object", "properties": props}}}}));
            }
        }
        let mut responses = Map::new();
        let (status, body, description) = op.ok;
        let request_id = json!({"X-Request-Id": {"$ref": "#/components/headers/RequestId"}});
        let mut ok = json!({"description": description, "headers": request_id});
        if let Some(schema_of) = body {
            ok["content"] = json!({"application/json": {"schema": schema_of(&mut generator)}});
        }
        responses.insert(status.to_string(), ok);
        let mut errors: Vec<ErrorCode> = op.errors.to_vec();
        match op.auth {
            Auth::None => {}
            Auth::Company => {
                errors.extend([E::MissingAuth, E::InvalidAuth]);
                operation.insert("security".into(), json!([{"apiKey": []}]));
            }
            Auth::Admin => {
                errors.extend([E::MissingAuth, E::InvalidAuth]);
                operation.insert("security".into(), json!([{"adminToken": []}]));
            }
        }
        if !matches!(op.auth, Auth::None) {
            errors.extend([E::StorageUnavailable, E::Internal]);
        }
        let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
        for code in errors {
            by_status
                .entry(code.status())
                .or_default()
                .push(code.as_str());
        }
        for (status, codes) in by_status {
            responses.insert(
                status.to_string(),
                json!({
                    "description": format!("error codes: {}", codes.join(", ")),
                    "headers": request_id,
                    "content": {"application/json": {"schema": error}},
                }),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = Value::Object(operation);
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Prewarm template API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Designs from templates in milliseconds, served from a warm pool of ready-made S3 copies. \
                            Errors are {\"error\": {\"code\", \"message\", \"request_id\"}} with a stable code (docs/api.md); \
                            a 5xx message is generic, its details are logged under the request id.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {
                "RequestId": {"name": "X-Request-Id", "in": "header", "required": false,
                    "description": "the caller's request id (1-128 of A-Z a-z 0-9 . _ -); echoed, else one is made",
                    "schema": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._-]+$"}},
            },
            "headers": {
                "RequestId": {"description": "this request's id, also in the log lines it wrote and in error bodies",
                    "schema": {"type": "string"}},
            },
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a company's API key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin token (admin_token)"},
            },
        },
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> = crate::startup::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(documented, served, "OPERATIONS and the route table differ");
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
