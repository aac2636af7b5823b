//! `/admin`: companies and API keys (issue, list, revoke, rotate), behind
//! the admin token.

use actix_web::{web, HttpResponse};
use prewarm_store::db::pool_policies::{self, Scope};
use prewarm_store::db::{api_keys, companies, pool_items, pool_targets, templates};
use shared_domain::company::{ApiKeyCreated, ApiKeyList, ApiKeyRotated, NewCompany, RotateApiKey};
use shared_domain::error::Chain;
use shared_domain::error::ErrorCode;
use shared_domain::ids::{ApiKeyId, CompanyId, TemplateId};
use shared_domain::pool::{PolicySource, PoolSizing, MAX_POLICY_TARGET};
use shared_domain::pool_policy::{PolicyLimits, PoolPolicy, ValidPolicy};

use crate::auth::{hash_token, key_hint, new_api_key, Admin};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn create_company(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewCompany>,
) -> Result<HttpResponse, ApiError> {
    let new = body.parse()?;
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
    company_exists(&mut conn, company).await?;
    let key = new_api_key();
    let id = api_keys::insert(&mut conn, company, &hash_token(&key), &key_hint(&key)).await?;
    Ok(HttpResponse::Created().json(ApiKeyCreated {
        id,
        company_id: company,
        api_key: key,
    }))
}

async fn company_exists(
    conn: &mut prewarm_store::db::DbConn,
    company: CompanyId,
) -> Result<(), ApiError> {
    if companies::find(conn, company).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::CompanyNotFound,
            format!("company {company} not found"),
        ));
    }
    Ok(())
}

fn key_not_found(id: ApiKeyId) -> ApiError {
    ApiError::new(
        ErrorCode::ApiKeyNotFound,
        format!("API key {id} not found (or no longer live)"),
    )
}

/// `GET /admin/companies/{id}/api-keys`: every key of the company, oldest
/// first, with its state; never a secret.
pub async fn list_api_keys(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<CompanyId>,
) -> Result<HttpResponse, ApiError> {
    let company = path.into_inner();
    let mut conn = state.db.conn().await?;
    company_exists(&mut conn, company).await?;
    let api_keys = api_keys::list(&mut conn, company).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList { api_keys }))
}

/// Drops a key from this replica's cache and tells the others.
async fn publish_revocation(state: &AppState, key_hash: &[u8]) {
    state.auth.cache.forget(key_hash);
    if let Err(e) = state.shared_cache.revoke_key(key_hash).await {
        // Replicas that miss it stop accepting the key within
        // `server.auth_cache_ttl_secs`.
        tracing::warn!(error = %Chain(&e), "could not publish a key revocation");
    }
}

/// `DELETE /admin/api-keys/{id}`: the key stops working at once, on every
/// replica (the revocation is published; caches drop the key).
pub async fn revoke_api_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<ApiKeyId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let hash = {
        let mut conn = state.db.conn().await?;
        api_keys::revoke(&mut conn, id)
            .await?
            .ok_or_else(|| key_not_found(id))?
    };
    publish_revocation(&state, &hash).await;
    Ok(HttpResponse::NoContent().finish())
}

/// The longest grace period of a rotated key.
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;

/// `POST /admin/api-keys/{id}/rotate`: a new key for the same company; the
/// old one keeps working for the grace period (`grace_secs`, default 24 h).
pub async fn rotate_api_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<ApiKeyId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // No body: the defaults. A body that does not parse is a 400, never
    // silently the default (an admin ending a leaked key sends 0).
    let asked: RotateApiKey = if body.iter().all(u8::is_ascii_whitespace) {
        RotateApiKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            let code = if e.is_data() {
                ErrorCode::InvalidRequest
            } else {
                ErrorCode::MalformedJson
            };
            ApiError::new(code, e.to_string())
        })?
    };
    let grace = asked.grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("`grace_secs` must be at most {MAX_GRACE_SECS}"),
        ));
    }
    let old_expires_at = prewarm_store::db::now() + chrono::Duration::seconds(grace as i64);
    let key = new_api_key();
    let rotated = {
        let mut conn = state.db.conn().await?;
        api_keys::rotate(
            &mut conn,
            id,
            &hash_token(&key),
            &key_hint(&key),
            old_expires_at,
        )
        .await?
        .ok_or_else(|| key_not_found(id))?
    };
    // Cached entries of the old key must learn its end: drop them.
    publish_revocation(&state, &rotated.old_hash).await;
    Ok(HttpResponse::Created().json(ApiKeyRotated {
        new_key: ApiKeyCreated {
            id: rotated.new_id,
            company_id: rotated.company,
            api_key: key,
        },
        old_key_expires_at: rotated.old_expires_at,
    }))
}

/// `GET /admin/templates/{id}/sizing`: the template's target, demand,
/// forecast and refill-time estimates, the operator policy that governs it
/// and its window on or due, and the budget's use (any template, any
/// company).
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
    let (ready, _) = pool_items::counts(&mut conn, row.pool()).await?;
    let planned = pool_targets::find(&mut conn, id).await?;
    let age = (chrono::Utc::now() - row.created_at).as_seconds_f64();
    let governing = governing_policy(&mut conn, id, row.owner_company_id).await?;
    // The worker counts a window due within the time its pool takes to
    // grow: at least one sizing pass, plus the refill time it measured.
    let lead = std::time::Duration::from_secs_f64(
        pool.sizing_interval_ms as f64 / 1000.0 + planned.as_ref().map_or(0.0, |p| p.refill_secs),
    );
    let window = governing
        .as_ref()
        .and_then(|(p, _)| p.window_at(chrono::Utc::now(), lead));
    let (policy, policy_source) = match governing {
        Some((p, source)) => (Some(p.into_policy()), Some(source)),
        None => (None, None),
    };
    let adaptive = pool.adaptive();
    let levels = planned.as_ref().map_or(
        shared_domain::pool::PoolLevels::at(pool.default_target(age)),
        |p| p.levels(),
    );
    let sizing = PoolSizing {
        template_id: id,
        sizing: pool.sizing,
        target: levels.fill,
        hold: levels.hold,
        ready,
        demand_fast_per_minute: planned
            .as_ref()
            .filter(|_| adaptive)
            .map(|p| p.demand_fast * 60.0),
        demand_slow_per_minute: planned
            .as_ref()
            .filter(|_| adaptive)
            .map(|p| p.demand_slow * 60.0),
        refill_secs: planned.as_ref().filter(|_| adaptive).map(|p| p.refill_secs),
        planned_at: planned.as_ref().map(|p| p.computed_at),
        planned_items_total: match adaptive {
            true => Some(pool_targets::planned_total(&mut conn).await?),
            false => None,
        },
        budget_objects: adaptive.then_some(pool.budget_objects),
        policy,
        policy_source,
        window,
        forecast_per_minute: planned
            .as_ref()
            .filter(|p| adaptive && p.forecast > 0.0)
            .map(|p| p.forecast * 60.0),
    };
    Ok(HttpResponse::Ok().json(sizing))
}

/// The template's own policy, else its owner's default, validated once.
async fn governing_policy(
    conn: &mut prewarm_store::db::DbConn,
    template: TemplateId,
    owner: uuid::Uuid,
) -> Result<Option<(ValidPolicy, PolicySource)>, ApiError> {
    let limits = PolicyLimits {
        max_target: MAX_POLICY_TARGET,
    };
    for (scope, source) in [
        (Scope::Template(template.0), PolicySource::Template),
        (Scope::Company(owner), PolicySource::Company),
    ] {
        if let Some(text) = pool_policies::get(conn, scope).await? {
            let policy = PoolPolicy::parse_json(&text, &limits)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            return Ok(Some((policy, source)));
        }
    }
    Ok(None)
}
