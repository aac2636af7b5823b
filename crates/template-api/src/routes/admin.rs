//! `/admin`: companies and API keys, behind the admin token.

use actix_web::{web, HttpResponse};
use prewarm_store::db::{api_keys, companies};
use shared_domain::company::{ApiKeyCreated, NewCompany, MAX_DESIGN_LIMIT};
use shared_domain::error::ErrorCode;
use shared_domain::ids::CompanyId;

use crate::auth::{hash_token, new_api_key, Admin};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn create_company(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewCompany>,
) -> Result<HttpResponse, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`name` must be 1 to 200 characters",
        ));
    }
    if !(0..=MAX_DESIGN_LIMIT).contains(&body.design_limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`design_limit` must be between 0 and {MAX_DESIGN_LIMIT}"),
        ));
    }
    let new = NewCompany {
        name: name.to_string(),
        design_limit: body.design_limit,
    };
    let mut conn = state.db.conn().await?;
    let company = companies::insert(&mut conn, &new).await?;
    Ok(HttpResponse::Created().json(company))
}

pub async fn create_api_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<CompanyId>,
) -> Result<HttpResponse, ApiError> {
    let company = path.into_inner();
    let mut conn = state.db.conn().await?;
    if companies::find(&mut conn, company).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::CompanyNotFound,
            format!("company {company} not found"),
        ));
    }
    let key = new_api_key();
    let id = api_keys::insert(&mut conn, company, &hash_token(&key)).await?;
    Ok(HttpResponse::Created().json(ApiKeyCreated {
        id,
        company_id: company,
        api_key: key,
    }))
}
