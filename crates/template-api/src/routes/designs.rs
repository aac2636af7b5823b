//! `/designs`: a company's designs. `POST` is the hot path (see `create_design`).

use actix_web::{web, HttpResponse};
use prewarm_store::db::designs;
use shared_domain::design::{CreateDesign, DesignList};
use shared_domain::error::ErrorCode;
use shared_domain::ids::DesignId;

use super::Page;
use crate::auth::AuthCompany;
use crate::create_design::create_design;
use crate::error::ApiError;
use crate::state::AppState;

fn not_found(id: DesignId) -> ApiError {
    ApiError::new(ErrorCode::DesignNotFound, format!("design {id} not found"))
}

pub async fn create(
    company: AuthCompany,
    state: web::Data<AppState>,
    body: web::Json<CreateDesign>,
) -> Result<HttpResponse, ApiError> {
    let design = create_design(&state, company.0, body.template_id).await?;
    Ok(HttpResponse::Created()
        .insert_header(("X-Served-From", design.served_from.as_str()))
        .json(design))
}

pub async fn list(
    company: AuthCompany,
    state: web::Data<AppState>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.conn().await?;
    let designs = designs::list(&mut conn, company.0, page.limit(), page.offset()).await?;
    Ok(HttpResponse::Ok().json(DesignList { designs }))
}

pub async fn get(
    company: AuthCompany,
    state: web::Data<AppState>,
    path: web::Path<DesignId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let design = designs::find(&mut conn, company.0, id)
        .await?
        .ok_or_else(|| not_found(id))?;
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
        tracing::warn!(design = %id, error = %e, "design deleted but its objects were not; the GC will collect them");
    }
    Ok(HttpResponse::NoContent().finish())
}
