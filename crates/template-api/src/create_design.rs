//! The hot path: turn a template into a company's design.
//!
//! Warm: `LPOP` one item id from the template version's Redis list (the
//! version remembered from earlier designs, else read) -- or take the one
//! this process popped ahead for it (`prefetch`), then one Postgres
//! statement checks the template, claims the item (only if still `ready`
//! for this version), takes a plan slot and records a design that owns the
//! item's objects (`designs::create_from_pool_item`).
//! Cold (empty pool, Redis down, or pool disabled): copy every image with
//! bounded parallelism, then record the design the same way. Either way a
//! warm-up request is published after the commit, without waiting for Kafka.
//! With an `Idempotency-Key` claim, the design's answer is stored in the
//! transaction that records it (see `idempotency`).

use prewarm_store::db::designs::{self, ColdOutcome, DesignSpec, WarmOutcome, WarmSpec};
use prewarm_store::db::idempotency::Claim;
use prewarm_store::db::{companies, object_refs, templates};
use prewarm_store::pause;
use shared_domain::design::{Design, DesignImage};
use shared_domain::error::Chain;
use shared_domain::error::ErrorCode;
use shared_domain::ids::{CompanyId, DesignId, TemplateId};
use shared_domain::object_keys;
use shared_domain::pool::PoolKey;
use shared_domain::template::TemplateImage;
use shared_domain::warmup::Reason;

use crate::error::ApiError;
use crate::metrics::Served;
use crate::state::AppState;

fn limit_reached() -> ApiError {
    ApiError::new(
        ErrorCode::DesignLimitReached,
        "the company has reached its plan's design limit",
    )
}

/// How many times a design is attempted when the template changes under it.
const TEMPLATE_CHANGE_ATTEMPTS: usize = 3;

enum Attempt {
    Created(Design),
    /// The template was edited or deleted after it was read: nothing was
    /// written (copies already deleted); read it again.
    TemplateChanged,
}

pub async fn create_design(
    state: &AppState,
    company: CompanyId,
    template_id: TemplateId,
    key: Option<&Claim>,
) -> Result<Design, ApiError> {
    for _ in 0..TEMPLATE_CHANGE_ATTEMPTS {
        if let Attempt::Created(design) = attempt(state, company, template_id, key).await? {
            return Ok(design);
        }
        tracing::debug!(%template_id, "template changed while making a design; reading it again");
    }
    Err(ApiError::new(
        ErrorCode::TemplateChanged,
        format!("template {template_id} kept changing; retry"),
    ))
}

async fn attempt(
    state: &AppState,
    company: CompanyId,
    template_id: TemplateId,
    key: Option<&Claim>,
) -> Result<Attempt, ApiError> {
    // A version remembered from an earlier design spares the template read
    // on the warm path: the claim checks it on the locked row.
    let mut template = None;
    let version = match state.versions.get(template_id) {
        Some(version) => version,
        None => {
            let row = read_template(state, company, template_id).await?;
            let version = row.template_version();
            state.versions.remember(template_id, version);
            template = Some(row);
            version
        }
    };
    let id = DesignId::new();
    let served = if state.settings.serving.from_pool {
        let spec = WarmSpec {
            id,
            company,
            template: template_id,
            template_version: version,
        };
        match from_pool(state, &spec, key).await? {
            Warm::Done(attempt) => return Ok(attempt),
            Warm::Miss(served) => served,
        }
    } else {
        Served::CopyPoolDisabled
    };
    let template = match template {
        Some(row) => row,
        None => read_template(state, company, template_id).await?,
    };
    if template.template_version() != version {
        state
            .versions
            .remember(template_id, template.template_version());
    }
    let spec = DesignSpec {
        id,
        company,
        template: template_id,
        template_version: template.template_version(),
        layout: template.layout,
    };
    let attempt = create_cold(state, spec, key).await?;
    if matches!(attempt, Attempt::Created(_)) {
        state.metrics.design_created(served);
    }
    Ok(attempt)
}

/// What the pool gave: a finished attempt, or nothing (served by copy, and why).
enum Warm {
    Done(Attempt),
    Miss(Served),
}

/// The warm path: pops item ids (at most `serving.pop_attempts` stale ones)
/// and claims the first that is still ready, in one statement.
async fn from_pool(
    state: &AppState,
    spec: &WarmSpec,
    key: Option<&Claim>,
) -> Result<Warm, ApiError> {
    let template_id = spec.template;
    let pool = PoolKey::new(spec.template, spec.template_version);
    let mut served = Served::CopyPoolEmpty;
    let prefetch = state.prefetch.as_ref();
    let mut popped = false;
    for _ in 0..state.settings.serving.pop_attempts {
        let held = prefetch.and_then(|p| p.take(pool));
        let item = match held {
            Some(item) => item,
            None => match state.index.pop(pool).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%template_id, error = %Chain(&e), "pool index unavailable; degraded to serving by copy");
                    state.metrics.degraded("redis");
                    served = Served::CopyRedisDown;
                    break;
                }
            },
        };
        // The next design's id is popped while this one's claim is in flight.
        if let Some(prefetch) = prefetch {
            prefetch.fetch_next(&state.index, pool);
        }
        state.pause.reach(pause::at::WARM_POPPED).await;
        let outcome = match state.db.conn().await {
            Ok(mut conn) => designs::create_from_pool_item(&mut conn, spec, item, key).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(WarmOutcome::Created(design)) => {
                state.metrics.design_created(Served::Pool);
                state.request_warmup(pool, Reason::PoolPop);
                return Ok(Warm::Done(Attempt::Created(design)));
            }
            // The item is of a version that is no longer current: the
            // reconciler discards it; it is not put back.
            Ok(WarmOutcome::TemplateChanged) => {
                state.versions.forget(template_id);
                return Ok(Warm::Done(Attempt::TemplateChanged));
            }
            // Another company's private template, known to this replica
            // from that company's designs: read it as this company.
            Ok(WarmOutcome::TemplateHidden) => {
                requeue(state, pool, item).await;
                read_template(state, spec.company, template_id).await?;
                return Ok(Warm::Done(Attempt::TemplateChanged));
            }
            Ok(WarmOutcome::ItemUnavailable) => {
                tracing::debug!(%item, "popped a stale pool item id; trying the next");
                popped = true;
                served = Served::CopyPoolStale;
            }
            Ok(WarmOutcome::LimitReached) => {
                requeue(state, pool, item).await;
                return Err(limit_reached());
            }
            Ok(WarmOutcome::KeyLost) => {
                requeue(state, pool, item).await;
                return Err(crate::idempotency::in_progress());
            }
            Err(e) => {
                // The transaction rolled back: the item is still ready.
                requeue(state, pool, item).await;
                return Err(e.into());
            }
        }
    }
    if served == Served::CopyPoolEmpty && !popped {
        served = miss_cause(state, pool).await;
    }
    Ok(Warm::Miss(served))
}

/// Why an empty list missed: items on their way (refill lag) or none (the
/// pool was too small). One indexed count, on a path about to copy every
/// image; a failure to count says `pool_empty`.
async fn miss_cause(state: &AppState, pool: PoolKey) -> Served {
    let copying = match state.db.conn().await {
        Ok(mut conn) => prewarm_store::db::pool_items::counts(&mut conn, pool)
            .await
            .map(|(_, copying)| copying)
            .unwrap_or(0),
        Err(_) => 0,
    };
    if copying > 0 {
        Served::CopyPoolRefilling
    } else {
        Served::CopyPoolEmpty
    }
}

/// The template as `company` may see it, or 404.
async fn read_template(
    state: &AppState,
    company: CompanyId,
    template_id: TemplateId,
) -> Result<templates::TemplateRow, ApiError> {
    let mut conn = state.db.conn().await?;
    templates::find_visible_row(&mut conn, template_id, company)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::TemplateNotFound,
                format!("template {template_id} not found"),
            )
        })
    // The connection goes back to the pool here: none is held while Redis
    // answers, so a stalled Redis cannot drain the pool.
}

/// Puts back an item that was popped but not used, so it is not stranded
/// until the reconciler re-indexes it.
async fn requeue(state: &AppState, pool: PoolKey, item: shared_domain::ids::PoolItemId) {
    if let Err(e) = state.index.push_front(pool, item).await {
        tracing::warn!(template = %pool.template, %item, error = %Chain(&e), "could not re-index an unused pool item");
    }
}

async fn create_cold(
    state: &AppState,
    spec: DesignSpec,
    key: Option<&Claim>,
) -> Result<Attempt, ApiError> {
    // Held until the design is recorded or its copies deleted.
    let _slot = state.cold_slots.try_take(spec.company).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Busy,
            "this replica is making as many designs by copy for this company as it may \
             (serving.cold_designs_per_company); retry",
        )
        .retry_after(1)
    })?;
    let images = announce_copies(state, &spec).await?;
    let pairs: Vec<(String, String)> = images
        .iter()
        .map(|img| {
            (
                img.object_key.clone(),
                object_keys::design_image(spec.id, img.position),
            )
        })
        .collect();
    let Some(copied) = copy_images(state, &spec, &pairs).await? else {
        return Ok(Attempt::TemplateChanged);
    };
    let design_images: Vec<DesignImage> = images
        .iter()
        .zip(&pairs)
        .map(|(img, (_, dest))| DesignImage {
            position: img.position,
            object_key: dest.clone(),
            url: None,
        })
        .collect();
    state.pause.reach(pause::at::COLD_COPIED).await;
    record_cold(state, &spec, &design_images, &copied, key).await
}

/// The template version's images, after announcing their copies' keys
/// (so the garbage collector never takes a copy of a design not committed
/// yet). A company at its limit is refused first, costing no copies. No
/// connection is held during the seconds of copying that follow.
async fn announce_copies(
    state: &AppState,
    spec: &DesignSpec,
) -> Result<Vec<TemplateImage>, ApiError> {
    let mut conn = state.db.conn().await?;
    if !companies::has_design_room(&mut conn, spec.company).await? {
        return Err(limit_reached());
    }
    let images = templates::images(&mut conn, spec.template, spec.template_version).await?;
    let keys: Vec<String> = images
        .iter()
        .map(|img| object_keys::design_image(spec.id, img.position))
        .collect();
    object_refs::announce(&mut conn, spec.id.0, &keys, state.settings.pool.lease()).await?;
    Ok(images)
}

/// Copies every (source, destination) pair with bounded parallelism; the
/// copies made, or `None` when the template changed meanwhile (its
/// sources went with it). On any failure the copies made are deleted.
async fn copy_images(
    state: &AppState,
    spec: &DesignSpec,
    pairs: &[(String, String)],
) -> Result<Option<Vec<String>>, ApiError> {
    let results = state
        .objects
        .copy_all(
            pairs,
            state.settings.serving.cold_copy_parallelism,
            Some(state.copy_limiter.clone()),
        )
        .await;
    let copied: Vec<String> = pairs
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|((_, dest), _)| dest.clone())
        .collect();
    let Some(Err(e)) = results.iter().find(|r| r.is_err()) else {
        return Ok(Some(copied));
    };
    let message = e.to_string();
    abandon(state, spec.id, &copied).await;
    // A template deleted or edited meanwhile takes its sources with it:
    // read it again rather than report an S3 fault.
    if !still_current(state, spec).await {
        return Ok(None);
    }
    Err(ApiError::new(ErrorCode::ObjectStoreUnavailable, message))
}

/// Records the cold design over its copies; any refusal deletes them.
async fn record_cold(
    state: &AppState,
    spec: &DesignSpec,
    images: &[DesignImage],
    copied: &[String],
    key: Option<&Claim>,
) -> Result<Attempt, ApiError> {
    let outcome = match state.db.conn().await {
        Ok(mut conn) => {
            let record = designs::create_from_copies(&mut conn, spec, images, key);
            state.pause.scope(record).await
        }
        Err(e) => {
            // No transaction began: nothing can have committed.
            abandon(state, spec.id, copied).await;
            return Err(e.into());
        }
    };
    let failed = match outcome {
        Ok(ColdOutcome::Created(design)) => {
            state.request_warmup(
                PoolKey::new(spec.template, spec.template_version),
                Reason::PoolMiss,
            );
            return Ok(Attempt::Created(design));
        }
        // Made private meanwhile: the next attempt reads it again (404).
        Ok(ColdOutcome::TemplateChanged | ColdOutcome::TemplateHidden) => {
            state.versions.forget(spec.template);
            Ok(Attempt::TemplateChanged)
        }
        Ok(ColdOutcome::LimitReached) => Err(limit_reached()),
        Ok(ColdOutcome::KeyLost) => Err(crate::idempotency::in_progress()),
        Ok(ColdOutcome::CopiesExpired) => Err(ApiError::new(
            ErrorCode::ObjectStoreUnavailable,
            "copying the template's images took longer than pool.lease_secs; retry",
        )),
        // The commit may have happened even so (a lost reply): the copies
        // stay. The announcement keeps them until it expires; then they are
        // the design's if it committed, and the garbage collector's if not.
        Err(e) => return Err(e.into()),
    };
    abandon(state, spec.id, copied).await;
    failed
}

/// Is the template still at the version the design was started from?
async fn still_current(state: &AppState, spec: &DesignSpec) -> bool {
    let Ok(mut conn) = state.db.conn().await else {
        return true;
    };
    matches!(
        templates::find_row(&mut conn, spec.template).await,
        Ok(Some(row)) if row.template_version() == spec.template_version
    )
}

/// A cold design that will not be recorded: its copies are deleted, then
/// its announcement dropped (what fails here, the garbage collector takes
/// once the announcement expires).
async fn abandon(state: &AppState, design: DesignId, copied: &[String]) {
    delete_quietly(state, copied).await;
    let forgotten = match state.db.conn().await {
        Ok(mut conn) => object_refs::forget(&mut conn, design.0).await,
        Err(e) => Err(e),
    };
    if let Err(e) = forgotten {
        tracing::warn!(%design, error = %Chain(&e), "could not drop the announcement of abandoned copies");
    }
}

/// Deletes copies no design will own (no leak on a failed request). A failure
/// here is logged; the garbage collector sweeps what stays behind.
async fn delete_quietly(state: &AppState, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    if let Err(e) = state.objects.delete_many(keys).await {
        tracing::warn!(count = keys.len(), error = %Chain(&e), "could not delete orphaned copies");
    }
}
