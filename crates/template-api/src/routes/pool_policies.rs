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

/// Whose policy a path names: a template (live) or a company.
pub trait PolicyOwner: Copy + std::fmt::Display {
    const WHAT: &'static str;
    /// The scope, or the 404 of a missing owner.
    fn scope(self, conn: &mut DbConn)
        -> impl std::future::Future<Output = Result<Scope, ApiError>>;
}

impl PolicyOwner for TemplateId {
    const WHAT: &'static str = "template";
    async fn scope(self, conn: &mut DbConn) -> Result<Scope, ApiError> {
        match templates::find_row(conn, self).await? {
            Some(_) => Ok(Scope::Template(self.0)),
            None => Err(ApiError::new(
                ErrorCode::TemplateNotFound,
                format!("template {self} not found"),
            )),
        }
    }
}

impl PolicyOwner for CompanyId {
    const WHAT: &'static str = "company";
    async fn scope(self, conn: &mut DbConn) -> Result<Scope, ApiError> {
        match companies::find(conn, self).await? {
            Some(_) => Ok(Scope::Company(self.0)),
            None => Err(ApiError::new(
                ErrorCode::CompanyNotFound,
                format!("company {self} not found"),
            )),
        }
    }
}

/// `PUT .../pool-policy`: sets (replaces) the policy. A company's is the
/// default of its templates that have none of their own.
pub async fn put<T: PolicyOwner>(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<T>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let policy = parse(&body)?;
    let json = serde_json::to_value(&policy)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut conn = state.db.conn().await?;
    let scope = path.into_inner().scope(&mut conn).await?;
    pool_policies::put(&mut conn, scope, &json).await?;
    Ok(HttpResponse::Ok().json(policy))
}

/// `GET .../pool-policy`: the policy as stored.
pub async fn get<T: PolicyOwner>(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<T>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let scope = id.scope(&mut conn).await?;
    let stored = pool_policies::get(&mut conn, scope)
        .await?
        .ok_or_else(|| no_policy(format!("{} {id}", T::WHAT)))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(stored))
}

/// `DELETE .../pool-policy`: removes it (a template falls back to its
/// company's default, if any).
pub async fn delete<T: PolicyOwner>(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<T>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.db.conn().await?;
    let scope = id.scope(&mut conn).await?;
    if pool_policies::delete(&mut conn, scope).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(no_policy(format!("{} {id}", T::WHAT)))
    }
}
