//! `/templates`: create (multipart), read, list, edit, replace images, and the
//! pool status of one template.

use actix_web::{web, HttpRequest, HttpResponse};
use futures::stream::{self, StreamExt, TryStreamExt};
use prewarm_store::db::{pool_items, templates};
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::object_keys;
use shared_domain::pool::PoolStatus;
use shared_domain::template::{
    NewTemplate, Template, TemplateImage, TemplateList, TemplatePatch, MAX_CATEGORY_LEN,
    MAX_NAME_LEN,
};
use shared_domain::warmup::Reason;

use super::Page;
use crate::auth::AuthCompany;
use crate::error::ApiError;
use crate::state::AppState;
use crate::upload::{read_upload, UploadedImage};

/// Parallel PutObject calls while storing one upload.
const UPLOAD_PARALLELISM: usize = 8;

fn not_found(id: TemplateId) -> ApiError {
    ApiError::new(
        ErrorCode::TemplateNotFound,
        format!("template {id} not found"),
    )
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

fn check_text(field: &str, value: &str, max: usize, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(invalid(format!("`{field}` must not be empty")));
    }
    if value.chars().count() > max {
        return Err(invalid(format!(
            "`{field}` must be at most {max} characters"
        )));
    }
    Ok(())
}

fn check_layout(layout: &serde_json::Value) -> Result<(), ApiError> {
    if layout.is_object() {
        Ok(())
    } else {
        Err(invalid("`layout` must be a JSON object"))
    }
}

/// Stores uploaded images under fresh keys; on any failure deletes those
/// already stored, so a failed upload leaves nothing behind.
async fn store_images(
    state: &AppState,
    template: TemplateId,
    images: Vec<UploadedImage>,
) -> Result<Vec<TemplateImage>, ApiError> {
    let planned: Vec<(i32, String, UploadedImage)> = images
        .into_iter()
        .enumerate()
        .map(|(i, img)| (i as i32, object_keys::template_image(template), img))
        .collect();
    let keys: Vec<String> = planned.iter().map(|(_, k, _)| k.clone()).collect();
    let result: Result<Vec<TemplateImage>, ApiError> = stream::iter(planned)
        .map(|(position, key, img)| async move {
            let size = img.data.len() as i64;
            state.objects.put(&key, img.data, &img.content_type).await?;
            Ok::<_, ApiError>(TemplateImage {
                position,
                object_key: key,
                content_type: img.content_type,
                size_bytes: size,
            })
        })
        .buffered(UPLOAD_PARALLELISM)
        .try_collect()
        .await;
    if result.is_err() {
        if let Err(e) = state.objects.delete_many(&keys).await {
            tracing::warn!(error = %e, "could not delete images of a failed upload");
        }
    }
    result
}

/// After a failed save: deletes the uploaded images no template version
/// holds. An error may come after the commit (a lost reply, a read after
/// it), so the ledger is asked first; if it cannot be asked, the images
/// stay (a leak is better than a template whose images are gone).
async fn discard_unsaved(state: &AppState, images: Vec<TemplateImage>) {
    let keys: Vec<String> = images.into_iter().map(|i| i.object_key).collect();
    let in_use = match state.db.conn().await {
        Ok(mut conn) => templates::image_keys_in_use(&mut conn, &keys).await,
        Err(e) => Err(e),
    };
    let unsaved: Vec<String> = match in_use {
        Ok(in_use) => keys.into_iter().filter(|k| !in_use.contains(k)).collect(),
        Err(e) => {
            tracing::warn!(count = keys.len(), error = %e, "could not tell whether a failed save committed; its images are kept");
            return;
        }
    };
    if let Err(e) = state.objects.delete_many(&unsaved).await {
        tracing::warn!(error = %e, "could not delete the images of a failed save");
    }
}

pub async fn create(
    company: AuthCompany,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let upload = read_upload(&req, payload, &state.settings.server).await?;
    let metadata = upload.metadata.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidMultipart,
            "missing `metadata` part (JSON)",
        )
    })?;
    let new: NewTemplate = serde_json::from_slice(&metadata).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::InvalidRequest
        } else {
            ErrorCode::MalformedJson
        };
        ApiError::new(code, format!("metadata: {e}"))
    })?;
    check_text("name", &new.name, MAX_NAME_LEN, true)?;
    check_text("category", &new.category, MAX_CATEGORY_LEN, false)?;
    check_layout(&new.layout)?;
    if upload.images.is_empty() {
        return Err(ApiError::new(
            ErrorCode::TemplateHasNoImages,
            "a template needs at least one `image` part",
        ));
    }

    let id = TemplateId::new();
    let images = store_images(&state, id, upload.images).await?;
    let inserted = match state.db.conn().await {
        Ok(mut conn) => templates::insert(&mut conn, id, company.0, &new, &images).await,
        Err(e) => Err(e),
    };
    let template = match inserted {
        Ok(t) => t,
        Err(e) => {
            discard_unsaved(&state, images).await;
            return Err(e.into());
        }
    };
    // Fill the new template's pool before anyone asks for a design.
    state.request_warmup(id, template.version, Reason::TemplateCreated);
    Ok(HttpResponse::Created().json(template))
}

pub async fn list(
    company: AuthCompany,
    state: web::Data<AppState>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.conn().await?;
    let templates =
        templates::list_visible(&mut conn, company.0, page.limit(), page.offset()).await?;
    Ok(HttpResponse::Ok().json(TemplateList { templates }))
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
    Ok(HttpResponse::Ok().json(template))
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
    patch: &TemplatePatch,
    images: Option<&[TemplateImage]>,
) -> Result<Template, ApiError> {
    let mut conn = state.db.conn().await?;
    let before = owned_row(&mut conn, company, id, "edit").await?;
    let updated = templates::update(&mut conn, id, company, patch, images)
        .await?
        .ok_or_else(|| not_found(id))?;
    if updated.version != before.version {
        state.request_warmup(id, updated.version, Reason::TemplateEdited);
    }
    // Any edit may change what similar-template answers hold about it.
    state.similar.invalidate(id).await;
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
    state.request_warmup(id, before.version + 1, Reason::TemplateEdited);
    state.similar.invalidate(id).await;
    if let Err(e) = state.objects.delete_many(&keys).await {
        tracing::warn!(%id, count = keys.len(), error = %e, "could not delete a deleted template's images");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    #[serde(default = "first_page")]
    page: u32,
}

fn first_page() -> u32 {
    1
}

/// `GET /templates/{id}/similar?page=N`: header `X-Cache: hit|miss|stale`.
pub async fn similar(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
    query: web::Query<SimilarQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page;
    let max = state.settings.similar.max_page;
    if page == 0 || page > max {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("page must be between 1 and {max}"),
        ));
    }
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
    body: web::Json<TemplatePatch>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.into_inner();
    if let Some(name) = &patch.name {
        check_text("name", name, MAX_NAME_LEN, true)?;
    }
    if let Some(category) = &patch.category {
        check_text("category", category, MAX_CATEGORY_LEN, false)?;
    }
    if let Some(layout) = &patch.layout {
        check_layout(layout)?;
    }
    let template = apply_edit(&state, company.0, path.into_inner(), &patch, None).await?;
    Ok(HttpResponse::Ok().json(template))
}

pub async fn replace_images(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    {
        // Check ownership before accepting bytes into S3.
        let mut conn = state.db.conn().await?;
        owned_row(&mut conn, company.0, id, "edit").await?;
    }
    let upload = read_upload(&req, payload, &state.settings.server).await?;
    if upload.metadata.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidMultipart,
            "send only `image` parts here",
        ));
    }
    if upload.images.is_empty() {
        return Err(ApiError::new(
            ErrorCode::TemplateHasNoImages,
            "send at least one `image` part",
        ));
    }
    let images = store_images(&state, id, upload.images).await?;
    match apply_edit(
        &state,
        company.0,
        id,
        &TemplatePatch::default(),
        Some(&images),
    )
    .await
    {
        Ok(template) => Ok(HttpResponse::Ok().json(template)),
        Err(e) => {
            discard_unsaved(&state, images).await;
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
    let (ready, copying) = pool_items::counts(&mut conn, id, row.version).await?;
    let target = if state.settings.pool.adaptive() {
        prewarm_store::db::pool_targets::find(&mut conn, id)
            .await?
            .map_or(state.settings.pool.min, |p| p.target)
    } else {
        state.settings.pool.target
    };
    let indexed = match state.index.len(id, row.version).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "pool index unavailable");
            0
        }
    };
    Ok(HttpResponse::Ok().json(PoolStatus {
        template_id: id,
        template_version: row.version,
        target,
        ready,
        copying,
        indexed,
    }))
}
