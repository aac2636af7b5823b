//! `/admin`: companies and API keys, behind the admin token.

use actix_web::{web, HttpResponse};
use prewarm_store::db::{api_keys, companies, pool_items, pool_targets, templates};
use shared_domain::company::{ApiKeyCreated, NewCompany, MAX_DESIGN_LIMIT};
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::pool::PoolSizing;

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

/// `GET /admin/templates/{id}/sizing`: the template's target, demand and
/// refill-time estimates, and the budget's use (any template, any company).
pub async fn pool_sizing(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let pool = &state.settings.pool;
    let mut conn = state.db.conn().await?;
    let row = templates::find_row(&mut conn, id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::TemplateNotFound,
            format!("template {id} not found"),
        )
    })?;
    let (ready, _) = pool_items::counts(&mut conn, id, row.version).await?;
    let sizing = if pool.adaptive() {
        let planned = pool_targets::find(&mut conn, id).await?;
        let total = pool_targets::planned_total(&mut conn).await?;
        PoolSizing {
            template_id: id,
            sizing: pool.sizing.clone(),
            target: planned.as_ref().map_or(pool.min, |p| p.target),
            ready,
            demand_fast_per_minute: planned.as_ref().map(|p| p.demand_fast * 60.0),
            demand_slow_per_minute: planned.as_ref().map(|p| p.demand_slow * 60.0),
            refill_secs: planned.as_ref().map(|p| p.refill_secs),
            planned_at: planned.as_ref().map(|p| p.computed_at),
            planned_items_total: Some(total),
            budget_items: Some(pool.budget_items),
        }
    } else {
        PoolSizing {
            template_id: id,
            sizing: pool.sizing.clone(),
            target: pool.target,
            ready,
            demand_fast_per_minute: None,
            demand_slow_per_minute: None,
            refill_secs: None,
            planned_at: None,
            planned_items_total: None,
            budget_items: None,
        }
    };
    Ok(HttpResponse::Ok().json(sizing))
}
