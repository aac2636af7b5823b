//! `/designs`: a company's designs. `POST` is the hot path (see
//! `create_design`), idempotent with an `Idempotency-Key`; `?include=urls`
//! adds a presigned GET URL per image.

use shared_domain::error::Chain;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures::future::try_join_all;
use prewarm_store::db::designs;
use shared_domain::design::{CreateDesign, Design, DesignList};
use shared_domain::error::ErrorCode;
use shared_domain::ids::DesignId;

use super::Page;
use crate::auth::AuthCompany;
use crate::create_design::create_design;
use crate::error::ApiError;
use crate::idempotency::{self, RequestHasher, Start};
use crate::request_id::detached;
use crate::state::AppState;

/// The route an `Idempotency-Key` of a design creation belongs to.
const CREATE_ROUTE: &str = "POST /designs";

fn not_found(id: DesignId) -> ApiError {
    ApiError::new(ErrorCode::DesignNotFound, format!("design {id} not found"))
}

/// `?include=urls` on design reads and creation.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Include {
    include: Option<String>,
}

impl Include {
    fn urls(&self) -> Result<bool, ApiError> {
        match self.include.as_deref() {
            None => Ok(false),
            Some("urls") => Ok(true),
            Some(other) => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown `include` value `{other}`; the only one is `urls`"),
            )),
        }
    }
}

/// Adds a presigned GET URL (valid `server.presign_ttl_secs`) to each image.
async fn with_urls(state: &AppState, mut design: Design) -> Result<Design, ApiError> {
    let ttl = Duration::from_secs(state.settings.server.presign_ttl_secs);
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(ttl.as_secs() as i64);
    let urls = try_join_all(
        design
            .images
            .iter()
            .map(|img| state.objects.presign_get(&img.object_key, ttl)),
    )
    .await?;
    for (img, url) in design.images.iter_mut().zip(urls) {
        img.url = Some(url);
    }
    design.urls_expire_at = Some(expires_at);
    Ok(design)
}

pub async fn create(
    company: AuthCompany,
    state: web::Data<AppState>,
    req: HttpRequest,
    include: web::Query<Include>,
    body: web::Json<CreateDesign>,
) -> Result<HttpResponse, ApiError> {
    let urls = include.urls()?;
    let key = idempotency::key_of(&req)?;
    let mut hash = RequestHasher::new(CREATE_ROUTE);
    hash.part(body.template_id.to_string().as_bytes());
    let claim = match idempotency::start(
        &state.db,
        &state.settings.idempotency,
        company.0,
        CREATE_ROUTE,
        key,
        hash.finish(),
    )
    .await?
    {
        Start::Proceed(claim) => claim,
        Start::Replay(answer) => return replay(&state, &answer, urls).await,
    };
    // Made on a task of its own: a client that goes away mid-request does
    // not cancel it halfway (a popped item unclaimed, copies unrecorded, a
    // key held until its lock runs out); its answer waits for the retry.
    let (task_state, template) = (state.clone(), body.template_id);
    let made = detached(async move {
        let made = create_design(&task_state, company.0, template, claim.as_ref()).await;
        if made.is_err() {
            idempotency::release(&task_state.db, claim.as_ref()).await;
        }
        made
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("design task failed: {e}")))?;
    let design = made?;
    let served_from = design.served_from;
    let design = if urls {
        signed_or_plain(&state, design).await
    } else {
        design
    };
    Ok(HttpResponse::Created()
        .insert_header(("X-Served-From", served_from.as_str()))
        .json(design))
}

/// The stored first answer of an `Idempotency-Key`.
async fn replay(
    state: &AppState,
    answer: &prewarm_store::db::idempotency::StoredAnswer,
    urls: bool,
) -> Result<HttpResponse, ApiError> {
    let design: Design = serde_json::from_value(answer.body.clone()).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("stored answer unreadable: {e}"),
        )
    })?;
    let design = if urls {
        signed_or_plain(state, design).await
    } else {
        design
    };
    let mut response = idempotency::replay(&state.metrics, CREATE_ROUTE, answer, &design);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(design.served_from.as_str()) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-served-from"),
            v,
        );
    }
    Ok(response)
}

/// A design with signed URLs, or without them if signing fails: the design
/// exists, a failure to sign must not hide it (the client can `GET` it with
/// `?include=urls` later).
async fn signed_or_plain(state: &AppState, design: Design) -> Design {
    match with_urls(state, design.clone()).await {
        Ok(signed) => signed,
        Err(e) => {
            tracing::warn!(error = %e, "could not presign a design's image URLs");
            design
        }
    }
}

pub async fn list(
    company: AuthCompany,
    state: web::Data<AppState>,
    page: web::Query<Page>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let at = page.position()?;
    let mut conn = state.db.conn().await?;
    let rows = designs::list(&mut conn, company.0, page.limit() + 1, &at).await?;
    Ok(page.answer(
        &req,
        rows,
        |d| (d.created_at, d.id.0),
        |designs, next_cursor| DesignList {
            designs,
            next_cursor,
        },
    ))
}

pub async fn get(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<DesignId>,
    include: web::Query<Include>,
) -> Result<HttpResponse, ApiError> {
    let urls = include.urls()?;
    let id = path.into_inner();
    let design = {
        let mut conn = state.db.conn().await?;
        designs::find(&mut conn, company.0, id)
            .await?
            .ok_or_else(|| not_found(id))?
    };
    let design = if urls {
        with_urls(&state, design).await?
    } else {
        design
    };
    Ok(HttpResponse::Ok().json(design))
}

/// Deletes the design, then its S3 objects. The row goes first: an object
/// left behind by a failed delete is garbage (collected), whereas a design
/// pointing at deleted objects would be broken.
pub async fn delete(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<DesignId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let keys = designs::delete(&mut conn, company.0, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    drop(conn);
    if let Err(e) = state.objects.delete_many(&keys).await {
        tracing::warn!(design = %id, error = %Chain(&e), "design deleted but its objects were not; the GC will collect them");
    }
    Ok(HttpResponse::NoContent().finish())
}
