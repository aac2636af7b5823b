//! `/admin/templates/{id}/pool-policy` and `/admin/companies/{id}/pool-policy`:
//! the pool policies an operator sets (min, max, a fixed target, schedule
//! windows; `shared_domain::pool_policy`), behind the admin token. The
//! worker's sizer applies them within the global budget.

use actix_web::{web, HttpResponse};
use prewarm_store::db::pool_policies::{self, Scope};
use prewarm_store::db::{companies, templates, DbConn};
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, TemplateId};
use shared_domain::pool::MAX_POLICY_TARGET;
use shared_domain::pool_policy::{PolicyLimits, PoolPolicy};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::state::AppState;

/// Validates a policy's JSON: its shape, then every rule; the error names
/// the field (`windows[1].cron`).
pub fn parse(body: &serde_json::Value) -> Result<PoolPolicy, ApiError> {
    let limits = PolicyLimits {
        max_target: MAX_POLICY_TARGET,
    };
    PoolPolicy::from_json(body)
        .and_then(|p| p.validate(&limits))
        .map(|valid| valid.into_policy())
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))
}

fn no_policy(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::PolicyNotFound,
        format!("no pool policy is set for {what}"),
    )
}

async fn template_scope(conn: &mut DbConn, id: TemplateId) -> Result<Scope, ApiError> {
    match templates::find_row(conn, id).await? {
        Some(_) => Ok(Scope::Template(id.0)),
        None => Err(ApiError::new(
            ErrorCode::TemplateNotFound,
            format!("template {id} not found"),
        )),
    }
}

async fn company_scope(conn: &mut DbConn, id: CompanyId) -> Result<Scope, ApiError> {
    match companies::find(conn, id).await? {
        Some(_) => Ok(Scope::Company(id.0)),
        None => Err(ApiError::new(
            ErrorCode::CompanyNotFound,
            format!("company {id} not found"),
        )),
    }
}

async fn put(state: &AppState, scope: Scope, policy: PoolPolicy) -> Result<HttpResponse, ApiError> {
    let json = serde_json::to_value(&policy)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut conn = state.db.conn().await?;
    pool_policies::put(&mut conn, scope, &json).await?;
    Ok(HttpResponse::Ok().json(policy))
}

async fn get(state: &AppState, scope: Scope, what: String) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.conn().await?;
    let stored = pool_policies::get(&mut conn, scope)
        .await?
        .ok_or_else(|| no_policy(what))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(stored))
}

async fn delete(state: &AppState, scope: Scope, what: String) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.conn().await?;
    if pool_policies::delete(&mut conn, scope).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_policy(what))
    }
}

/// `PUT /admin/templates/{id}/pool-policy`: sets (replaces) the template's policy.
pub async fn put_template(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let policy = parse(&body)?;
    let scope = template_scope(&mut state.db.conn().await?, path.into_inner()).await?;
    put(&state, scope, policy).await
}

pub async fn get_template(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = template_scope(&mut state.db.conn().await?, id).await?;
    get(&state, scope, format!("template {id}")).await
}

pub async fn delete_template(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<TemplateId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = template_scope(&mut state.db.conn().await?, id).await?;
    delete(&state, scope, format!("template {id}")).await
}

/// `PUT /admin/companies/{id}/pool-policy`: the default of the company's
/// templates that have no policy of their own.
pub async fn put_company(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<CompanyId>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let policy = parse(&body)?;
    let scope = company_scope(&mut state.db.conn().await?, path.into_inner()).await?;
    put(&state, scope, policy).await
}

pub async fn get_company(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<CompanyId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = company_scope(&mut state.db.conn().await?, id).await?;
    get(&state, scope, format!("company {id}")).await
}

pub async fn delete_company(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<CompanyId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = company_scope(&mut state.db.conn().await?, id).await?;
    delete(&state, scope, format!("company {id}")).await
}
