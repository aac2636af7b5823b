//! `/templates`: create (multipart), read, list, edit, replace images, and the
//! pool status of one template.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use prewarm_store::db::templates::{InsertOutcome, UpdateOutcome, Uploaded};
use prewarm_store::db::{pool_items, templates};
use shared_domain::error::Chain;
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::pool::{PoolKey, PoolStatus};
use shared_domain::template::{
    NewTemplate, Template, TemplateList, TemplatePatch, ValidPatch, ValidTemplate,
};
use shared_domain::warmup::Reason;

use super::Page;
use crate::auth::AuthCompany;
use crate::error::ApiError;
use crate::idempotency::{self, Start};
use crate::state::AppState;
use crate::upload::{discard, read_upload, Upload};

/// The route an `Idempotency-Key` of a template creation belongs to.
const CREATE_ROUTE: &str = "POST /templates";

fn not_found(id: TemplateId) -> ApiError {
    ApiError::new(
        ErrorCode::TemplateNotFound,
        format!("template {id} not found"),
    )
}

/// After a failed save whose outcome is unknown (the database failed: the
/// commit may have happened, its reply lost): the images are neither
/// deleted nor released. Their announcement keeps them for
/// `UPLOAD_ANNOUNCE_TTL`; then the garbage collector keeps them if a
/// template holds them, and deletes them if not.
fn leave_to_collector(upload: &Upload) {
    tracing::warn!(
        count = upload.images.len(),
        "a template save failed with an unknown outcome; its images are left to the garbage collector"
    );
}

/// An upload whose images' announcements expired before its save (the
/// garbage collector may have taken them): nothing was saved.
fn upload_expired() -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        "the upload's images expired before it was saved; send it again",
    )
}

fn parse_metadata(bytes: &[u8]) -> Result<ValidTemplate, ApiError> {
    let new: NewTemplate = serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::InvalidRequest
        } else {
            ErrorCode::MalformedJson
        };
        ApiError::new(code, format!("metadata: {e}"))
    })?;
    Ok(new.parse()?)
}

/// A template answer with its entity tag.
fn with_etag(mut response: actix_web::HttpResponseBuilder, template: &Template) -> HttpResponse {
    response
        .insert_header((header::ETAG, template.etag()))
        .json(template)
}

/// `POST /templates` (multipart). With an `Idempotency-Key`, a retry of the
/// same upload replays the first answer (its images are not stored twice).
pub async fn create(
    company: AuthCompany,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key_of(&req)?;
    let id = TemplateId::new();
    let upload = read_upload(
        &req,
        payload,
        state.uploads(),
        company.0,
        id,
        CREATE_ROUTE,
        |m| parse_metadata(m).map(drop),
    )
    .await?;
    let checked = match &upload.metadata {
        None => Err(ApiError::new(
            ErrorCode::InvalidMultipart,
            "missing `metadata` part (JSON)",
        )),
        Some(_) if upload.images.is_empty() => Err(ApiError::new(
            ErrorCode::TemplateHasNoImages,
            "a template needs at least one `image` part",
        )),
        Some(metadata) => parse_metadata(metadata),
    };
    let new = match checked {
        Ok(new) => new,
        Err(e) => {
            discard(state.uploads(), &upload).await;
            return Err(e);
        }
    };
    let claim = match idempotency::start(
        &state.db,
        &state.settings.idempotency,
        company.0,
        CREATE_ROUTE,
        key,
        upload.request_hash.clone(),
    )
    .await
    {
        Ok(Start::Proceed(claim)) => claim,
        Ok(Start::Replay(answer)) => {
            discard(state.uploads(), &upload).await;
            let mut response =
                idempotency::replay(&state.metrics, CREATE_ROUTE, &answer, &answer.body);
            if let Ok(template) = serde_json::from_value::<Template>(answer.body.clone()) {
                if let Ok(etag) = header::HeaderValue::from_str(&template.etag()) {
                    response.headers_mut().insert(header::ETAG, etag);
                }
            }
            return Ok(response);
        }
        Err(e) => {
            discard(state.uploads(), &upload).await;
            return Err(e);
        }
    };
    let inserted = match state.db.conn().await {
        Ok(mut conn) => {
            templates::insert(
                &mut conn,
                id,
                company.0,
                &new,
                upload.saved(),
                claim.as_ref(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    let template = match inserted {
        Ok(InsertOutcome::Created(t)) => t,
        // A retry took the key over: nothing was written; it answers.
        Ok(InsertOutcome::KeyLost) => {
            discard(state.uploads(), &upload).await;
            return Err(idempotency::in_progress());
        }
        Ok(InsertOutcome::UploadExpired) => {
            discard(state.uploads(), &upload).await;
            idempotency::release(&state.db, claim.as_ref()).await;
            return Err(upload_expired());
        }
        Err(e) => {
            leave_to_collector(&upload);
            idempotency::release(&state.db, claim.as_ref()).await;
            return Err(e.into());
        }
    };
    // Fill the new template's pool before anyone asks for a design.
    state.request_warmup(template.pool(), Reason::TemplateCreated);
    Ok(with_etag(HttpResponse::Created(), &template))
}

pub async fn list(
    company: AuthCompany,
    state: web::Data<AppState>,
    page: web::Query<Page>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let at = page.position()?;
    let mut conn = state.db.conn().await?;
    let listed = templates::list_visible(&mut conn, company.0, page.limit(), &at).await?;
    Ok(page.answer_page(
        &req,
        listed.templates,
        listed.more,
        |t| (t.created_at, t.id.0),
        |templates, next_cursor| TemplateList {
            templates,
            next_cursor,
        },
    ))
}

pub async fn get(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let template = templates::find_visible(&mut conn, id, company.0)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(with_etag(HttpResponse::Ok(), &template))
}

/// The request's `If-Match`, if any: `*` or 1 to 16 entity tags (an empty
/// or over-long list is a 400, not a precondition that fails).
fn if_match(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "`If-Match` must be ASCII"))?;
    if shared_domain::headers::if_match(text).is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "`If-Match` must be `*` or 1 to {} entity tags",
                shared_domain::headers::MAX_IF_MATCH_TAGS
            ),
        ));
    }
    Ok(Some(text.to_string()))
}

fn precondition_failed(id: TemplateId) -> ApiError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        format!("template {id} changed since that ETag was read; read it again"),
    )
}

/// The template's row if `company` owns it: a visible template of another
/// company is 403, an invisible one 404 (its existence is not disclosed).
async fn owned_row(
    conn: &mut prewarm_store::db::DbConn,
    company: CompanyId,
    id: TemplateId,
    action: &str,
) -> Result<templates::TemplateRow, ApiError> {
    let row = templates::find_visible_row(conn, id, company)
        .await?
        .ok_or_else(|| not_found(id))?;
    if row.owner_company_id != company.0 {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only the owning company may {action} a template"),
        ));
    }
    Ok(row)
}

/// Applies an edit as the owner.
async fn apply_edit(
    state: &AppState,
    company: CompanyId,
    id: TemplateId,
    patch: &ValidPatch,
    images: Option<Uploaded<'_>>,
    expected: Option<&str>,
) -> Result<Template, ApiError> {
    let mut conn = state.db.conn().await?;
    let before = owned_row(&mut conn, company, id, "edit").await?;
    let updated = match templates::update(&mut conn, id, company, patch, images, expected).await? {
        UpdateOutcome::Updated(t) => t,
        UpdateOutcome::NotFound => return Err(not_found(id)),
        UpdateOutcome::PreconditionFailed => return Err(precondition_failed(id)),
        UpdateOutcome::UploadExpired => return Err(upload_expired()),
    };
    if updated.version != before.template_version() {
        state.request_warmup(PoolKey::new(id, updated.version), Reason::TemplateEdited);
    }
    // Any edit may change what similar-template answers hold about it (an
    // edit that changed nothing changes none).
    if updated.updated_at != before.updated_at {
        state.versions.forget(id);
        state.similar.invalidate(id).await;
    }
    Ok(updated)
}

/// `DELETE /templates/{id}` (owner only): the template disappears at once;
/// its pool is retired (the version bump makes every item stale), its images
/// are deleted from S3, and every replica's cached answers about it dropped.
/// Designs made from it keep their own copies.
pub async fn delete(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let before = owned_row(&mut conn, company.0, id, "delete").await?;
    let keys = templates::delete(&mut conn, id, company.0)
        .await?
        .ok_or_else(|| not_found(id))?;
    drop(conn);
    state.request_warmup(
        PoolKey::new(id, before.template_version().next()),
        Reason::TemplateEdited,
    );
    state.versions.forget(id);
    state.similar.invalidate(id).await;
    if let Err(e) = state.objects.delete_many(&keys).await {
        tracing::warn!(%id, count = keys.len(), error = %Chain(&e), "could not delete a deleted template's images");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    /// Read as text and checked here, so every bad value (0, too high,
    /// not a number, past u32) gets the same stable message.
    page: Option<String>,
}

/// `GET /templates/{id}/similar?page=N`: header `X-Cache: hit|miss|stale`.
pub async fn similar(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
    query: web::Query<SimilarQuery>,
) -> Result<HttpResponse, ApiError> {
    let max = state.settings.similar.max_page;
    let page = match query.page.as_deref() {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(page) if (1..=max).contains(&page) => page,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("page must be an integer between 1 and {max}"),
                ))
            }
        },
    };
    let (answer, lookup) = state
        .similar
        .page(&state.db, company.0, path.into_inner(), page)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("x-cache", lookup.as_str()))
        .json(answer))
}

pub async fn update(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
    req: HttpRequest,
    body: web::Json<TemplatePatch>,
) -> Result<HttpResponse, ApiError> {
    let expected = if_match(&req)?;
    let patch = body.into_inner().parse()?;
    let template = apply_edit(
        &state,
        company.0,
        path.into_inner(),
        &patch,
        None,
        expected.as_deref(),
    )
    .await?;
    Ok(with_etag(HttpResponse::Ok(), &template))
}

/// `PUT /templates/{id}/images` (owner only, multipart `image` parts):
/// a new version with these images.
pub async fn replace_images(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let expected = if_match(&req)?;
    // A request that sends no multipart body is refused for that first:
    // its precondition is moot.
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"));
    if !multipart {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: multipart/form-data",
        ));
    }
    {
        // Check ownership (and the precondition) before accepting bytes into S3.
        let mut conn = state.db.conn().await?;
        let row = owned_row(&mut conn, company.0, id, "edit").await?;
        if let Some(expected) = &expected {
            let current = shared_domain::template::etag(id, row.template_version(), row.updated_at);
            if !shared_domain::headers::etag_matches(expected, &current) {
                return Err(precondition_failed(id));
            }
        }
    }
    let upload = read_upload(
        &req,
        payload,
        state.uploads(),
        company.0,
        id,
        "PUT /templates/{id}/images",
        |_| {
            Err(ApiError::new(
                ErrorCode::InvalidMultipart,
                "send only `image` parts here",
            ))
        },
    )
    .await?;
    if upload.images.is_empty() {
        return Err(ApiError::new(
            ErrorCode::TemplateHasNoImages,
            "send at least one `image` part",
        ));
    }
    match apply_edit(
        &state,
        company.0,
        id,
        &ValidPatch::default(),
        Some(upload.saved()),
        expected.as_deref(),
    )
    .await
    {
        Ok(template) => Ok(with_etag(HttpResponse::Ok(), &template)),
        // Refused (412, 403, 404...): nothing was written.
        Err(e) if e.code.status() < 500 => {
            discard(state.uploads(), &upload).await;
            Err(e)
        }
        Err(e) => {
            leave_to_collector(&upload);
            Err(e)
        }
    }
}

pub async fn pool_status(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let row = templates::find_visible_row(&mut conn, id, company.0)
        .await?
        .ok_or_else(|| not_found(id))?;
    let (ready, copying) = pool_items::counts(&mut conn, row.pool()).await?;
    // The sizer's row if it has one (adaptive sizing, the idle rule or an
    // operator policy), else the default.
    let age = (chrono::Utc::now() - row.created_at).as_seconds_f64();
    let target = prewarm_store::db::pool_targets::find(&mut conn, id)
        .await?
        .map_or(state.settings.pool.default_target(age), |p| p.target);
    let indexed = match state.index.len(row.pool()).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %Chain(&e), "pool index unavailable");
            0
        }
    };
    Ok(HttpResponse::Ok().json(PoolStatus {
        template_id: id,
        template_version: row.template_version(),
        target,
        ready,
        copying,
        indexed,
    }))
}
