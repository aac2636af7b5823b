//! The route table ([`routes`], [`ROUTES`]: one list, checked against the
//! OpenAPI document), one module per resource, and what list endpoints
//! share ([`Page`]: its position, size and answer).

pub mod admin;
pub mod designs;
pub mod health;
pub mod pool_policies;
pub mod templates;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use prewarm_store::db::page::PageAt;
use serde::Deserialize;
use shared_domain::cursor::{Cursor, MAX_OFFSET};
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::valid::PageLimit;

use crate::error::ApiError;

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

/// A served path with a method it does not have: 405 in the error envelope.
async fn method_not_allowed(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let pattern = req.match_pattern().unwrap_or_default();
    let allowed: Vec<String> = ROUTES
        .iter()
        .filter(|(_, path)| *path == pattern)
        .map(|(method, _)| method.to_uppercase())
        .collect();
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not served at {}", req.method(), req.path()),
    )
    .with_header("allow", allowed.join(", ")))
}

/// Declares the route table once: `routes()` registers it with actix, and
/// `ROUTES` lists every (method, path) so the OpenAPI document is checked
/// against what is actually served (`openapi::tests`).
macro_rules! route_table {
    ($( $path:literal => { $( $method:ident $handler:path ),+ $(,)? } ),+ $(,)?) => {
        /// The route table.
        pub fn routes(cfg: &mut web::ServiceConfig) {
            $( cfg.service(
                web::resource($path)
                    $(.route(web::$method().to($handler)))+
                    .default_service(web::to(method_not_allowed)),
            ); )+
        }

        /// Every (method, path) served, in the table's order.
        pub const ROUTES: &[(&str, &str)] = &[ $( $( (stringify!($method), $path) ),+ ),+ ];
    };
}

// actix tries the resources in this order, each `{id}` pattern with a
// regex: the hot path (`/designs`) comes first.
route_table! {
    "/designs" => { post designs::create, get designs::list },
    "/designs/{id}" => { get designs::get, delete designs::delete },
    "/healthz" => { get health::healthz },
    "/readyz" => { get health::ready },
    "/openapi.json" => { get crate::openapi::serve },
    "/admin/companies" => { post admin::create_company },
    "/admin/companies/{id}/api-keys" => {
        post admin::create_api_key,
        get admin::list_api_keys,
    },
    "/admin/api-keys/{id}" => { delete admin::revoke_api_key },
    "/admin/api-keys/{id}/rotate" => { post admin::rotate_api_key },
    "/admin/templates/{id}/sizing" => { get admin::pool_sizing },
    "/admin/templates/{id}/pool-policy" => {
        put pool_policies::put::<TemplateId>,
        get pool_policies::get::<TemplateId>,
        delete pool_policies::delete::<TemplateId>,
    },
    "/admin/companies/{id}/pool-policy" => {
        put pool_policies::put::<CompanyId>,
        get pool_policies::get::<CompanyId>,
        delete pool_policies::delete::<CompanyId>,
    },
    "/templates" => { post templates::create, get templates::list },
    "/templates/{id}" => {
        get templates::get,
        patch templates::update,
        delete templates::delete,
    },
    "/templates/{id}/similar" => { get templates::similar },
    "/templates/{id}/images" => { put templates::replace_images },
    "/templates/{id}/pool" => { get templates::pool_status },
}

/// `?limit=&cursor=` on list endpoints (`offset` still works but is deprecated).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Deprecated: offsets skip or repeat rows while rows are inserted.
    /// With a cursor, rows are skipped after it.
    pub offset: Option<i64>,
}

impl Page {
    /// The page's size (the default when it is not given; clamped when it
    /// is out of range, which [`Page::position`] refuses first).
    pub fn limit(&self) -> i64 {
        self.limit
            .map_or(PageLimit::DEFAULT, |l| l.clamp(1, PageLimit::MAX))
    }

    /// Where the page starts (and the page's size checked: 1 to 100).
    pub fn position(&self) -> Result<PageAt, ApiError> {
        PageLimit::parse(self.limit)?;
        // Bounded: Postgres reads every skipped row, so an unbounded
        // offset would let one request scan a whole table.
        let skip = self.offset.unwrap_or(0);
        if !(0..=MAX_OFFSET).contains(&skip) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "`offset` must be between 0 and {MAX_OFFSET} (use `cursor` to page further)"
                ),
            ));
        }
        let after = match &self.cursor {
            None => None,
            Some(cursor) => Some(Cursor::decode(cursor).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "`cursor` is not one this API returned",
                )
            })?),
        };
        Ok(PageAt { after, skip })
    }

    /// A 200 with the page, and a `Link: <...>; rel="next"` header when
    /// there is a next page.
    fn respond(
        &self,
        req: &HttpRequest,
        next_cursor: Option<&str>,
        body: &impl serde::Serialize,
    ) -> HttpResponse {
        let mut response = HttpResponse::Ok();
        if let Some(cursor) = next_cursor {
            let link = format!(
                "<{}?limit={}&cursor={cursor}>; rel=\"next\"",
                req.path(),
                self.limit()
            );
            response.insert_header((actix_web::http::header::LINK, link));
        }
        response.json(body)
    }
}

impl Page {
    /// The answer for `rows` (read with `limit() + 1`): the page, its
    /// `next_cursor` (the last row's `key`) and `Link` header; `body`
    /// wraps the items and the cursor into the list type.
    pub fn answer<T, B: serde::Serialize>(
        &self,
        req: &HttpRequest,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> (DateTime<Utc>, uuid::Uuid),
        body: impl FnOnce(Vec<T>, Option<String>) -> B,
    ) -> HttpResponse {
        let limit = usize::try_from(self.limit()).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        self.answer_page(req, rows, more, key, body)
    }

    /// The answer for a page already cut, `more` saying whether rows
    /// follow it.
    pub fn answer_page<T, B: serde::Serialize>(
        &self,
        req: &HttpRequest,
        items: Vec<T>,
        more: bool,
        key: impl Fn(&T) -> (DateTime<Utc>, uuid::Uuid),
        body: impl FnOnce(Vec<T>, Option<String>) -> B,
    ) -> HttpResponse {
        let next_cursor = if more {
            items.last().map(|last| {
                let (at, id) = key(last);
                PageAt::cursor_after(at, id)
            })
        } else {
            None
        };
        self.respond(
            req,
            next_cursor.as_deref(),
            &body(items, next_cursor.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> = super::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        let doc = crate::openapi::document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(documented, served, "OPERATIONS and the route table differ");
    }
}
