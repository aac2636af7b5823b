//! `pool_items`: the pool ledger, source of truth for
//! every ready-made copy. Redis only indexes the `ready` rows.
//!
//! A refill is three steps, so the target is never exceeded and no copied
//! object is ever unknown to the database:
//! 1. [`reserve`]: under a per-template advisory lock, count live items
//!    (`copying` + `ready`) of the current version and insert `copying` rows
//!    for the gap only (an item's keys follow from its template, id and
//!    image count: `object_keys::pool_images`).
//! 2. The caller copies the objects (no transaction open meanwhile).
//! 3. [`mark_ready`] flips each fully copied item to `ready`; [`discard`]
//!    gives up on the others and returns their keys for deletion.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::{PoolItemId, TemplateId, TemplateVersion};
use shared_domain::object_keys;
use shared_domain::pool::{PoolItemState, PoolKey, PoolLevels};
use uuid::Uuid;

use crate::pause;

use super::pool_live;
use super::schema::{pool_items, template_images, templates};
use super::StoreError;

/// Rows per INSERT statement (x at most 8 columns, well under Postgres' bind limit).
const INSERT_CHUNK: usize = 5_000;

/// One object to copy for a reserved item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCopy {
    pub position: i32,
    pub source_key: String,
    pub object_key: String,
}

/// A reserved (`copying`) item and the copies it needs.
#[derive(Debug, Clone)]
pub struct ReservedItem {
    pub id: PoolItemId,
    pub copies: Vec<PlannedCopy>,
}

/// An item taken out of service; its objects must be deleted.
#[derive(Debug, Clone)]
pub struct DiscardedItem {
    pub id: PoolItemId,
    pub object_keys: Vec<String>,
}

/// What [`reserve`] decided for one template.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub pool: PoolKey,
    /// Live items of the current version before this reservation.
    pub live_before: i64,
    /// New slots to fill (empty when the pool is already at target).
    pub reserved: Vec<ReservedItem>,
    /// Ready items of older versions, now discarded (I8).
    pub stale: Vec<DiscardedItem>,
    /// Ready items above a lowered target (adaptive sizing), now discarded.
    pub surplus: Vec<DiscardedItem>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    #[allow(dead_code)]
    locked: bool,
}

/// Serializes refills of one template across workers and replicas, for the
/// rest of the current transaction.
async fn lock_template(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) IS NULL AS locked")
        .bind::<Text, _>(format!("pool:{template}"))
        .get_result::<Locked>(conn)
        .await?;
    Ok(())
}

/// Objects of the template's live items, of every version (its share of
/// the budget).
async fn live_objects_any(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<i64, diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Objects {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let live: Objects = diesel::sql_query(
        "SELECT coalesce(sum(image_count), 0)::bigint AS n FROM pool_items
          WHERE template_id = $1 AND state IN ('copying', 'ready')",
    )
    .bind::<diesel::sql_types::Uuid, _>(template.0)
    .get_result(conn)
    .await?;
    Ok(live.n)
}

/// An item's identity and size: all it takes to name its objects.
#[derive(QueryableByName, Queryable)]
struct Owned {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    template_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    image_count: i32,
}

impl Owned {
    fn keys(&self) -> Vec<String> {
        object_keys::pool_images(
            TemplateId(self.template_id),
            PoolItemId(self.id),
            self.image_count,
        )
    }

    fn discarded(self) -> DiscardedItem {
        DiscardedItem {
            object_keys: self.keys(),
            id: PoolItemId(self.id),
        }
    }
}

/// Step 1 of a refill: reserve slots up to `levels.fill` for the template's
/// current version, and (with a `budget` in objects) no more than keeps the
/// live items' objects of all templates within it (as [`pool_live`] records
/// them). `None` when the template no longer exists. One transaction under
/// the template's lock, in four steps: discard stale items, retire the
/// surplus above `levels.hold`, count the gap below `levels.fill`, insert
/// `copying` rows for it. A pool between the two levels is left as it is.
pub async fn reserve(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
    levels: PoolLevels,
    lease: Duration,
    budget: Option<i64>,
) -> Result<Option<Reservation>, StoreError> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(300));
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            lock_template(conn, template).await?;
            let Some((version, deleted_at)) = templates::table
                .find(template.0)
                .select((templates::version, templates::deleted_at))
                .first::<(i32, Option<chrono::DateTime<chrono::Utc>>)>(conn)
                .await
                .optional()?
            else {
                return Ok(None);
            };
            let pool = PoolKey::new(template, TemplateVersion(version));
            // A deleted template keeps no pool: its items were of older
            // versions (deletion bumps it) and are discarded below.
            // A hold below the fill level is the fill level (never retire
            // what the same transaction would copy again).
            let levels = if deleted_at.is_some() {
                PoolLevels::at(0)
            } else {
                PoolLevels::new(levels.fill, Some(levels.hold))
            };
            let now = super::now();
            let stale = discard_stale(conn, pool, now).await?;
            if version > 1 {
                prune_old_versions(conn, pool).await?;
            }
            let (ready_before, copying) = count_states(conn, pool).await?;
            let live_before = ready_before + copying;
            // Only ready items can retire, and only those above the hold
            // level: copies in flight that would take the pool past it are
            // trimmed as they land (`mark_ready`), so a pool never goes
            // empty for items that have not landed yet.
            let excess = ready_before - i64::from(levels.hold);
            let surplus = if excess > 0 {
                retire_surplus(conn, pool, excess, now).await?
            } else {
                Vec::new()
            };
            let mut gap = (i64::from(levels.fill) - live_before).max(0);
            // A global cap: whatever the plan said when each template read
            // it, live items never exceed the budget (a slot moved from one
            // template to another is filled once the first gave it back).
            // Checked against each template's recorded live items, not a
            // count of them all (see `pool_live`).
            let sources = if gap > 0 {
                sources_of(conn, pool).await?
            } else {
                Vec::new()
            };
            let budgeted = match budget {
                Some(budget) => {
                    let live = live_objects_any(conn, template).await?;
                    let others = match pool_live::others(conn, template).await? {
                        Some(others) => others,
                        None => pool_live::recount(conn).await? - live,
                    };
                    let each = (sources.len() as i64).max(1);
                    gap = gap.min((budget - others - live).max(0) / each);
                    Some((live, others))
                }
                None => None,
            };
            let reserved = if gap > 0 {
                insert_items(conn, pool, &sources, gap, now, now + lease).await?
            } else {
                Vec::new()
            };
            if let Some((live, others)) = budgeted {
                pause::reach(pause::at::BUDGET_CHECKED).await;
                let added = (reserved.len() * sources.len()) as i64;
                pool_live::record(conn, template, live + added, others).await?;
            }
            Ok(Some(Reservation {
                pool,
                live_before,
                reserved,
                stale,
                surplus,
            }))
        })
        .await?)
}

/// Reserve, step 1: `ready` items of older versions are discarded (I8).
async fn discard_stale(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<DiscardedItem>, diesel::result::Error> {
    let (template, version) = (pool.template, pool.version.0);
    let ids: Vec<Uuid> = pool_items::table
        .filter(pool_items::template_id.eq(template.0))
        .filter(pool_items::template_version.ne(version))
        .filter(pool_items::state.eq(PoolItemState::Ready.as_str()))
        .select(pool_items::id)
        .load(conn)
        .await?;
    discard_if(conn, &ids, PoolItemState::Ready, None, now).await
}

/// Reserve, step 1b: the image rows of the template's older versions, once
/// no item of theirs is still copying from them. Nothing else reads them (a
/// design owns its copies; a cold design of an old version fails its
/// version check), and while they stand the garbage collector keeps their
/// objects: a template whose images were replaced would keep every old set
/// in S3 for as long as it lives, and a listing would read them all.
/// Objects the current version still uses stay referenced by its rows.
async fn prune_old_versions(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
) -> Result<usize, diesel::result::Error> {
    let (template, version) = (pool.template, pool.version.0);
    diesel::sql_query(
        "DELETE FROM template_images t
          WHERE t.template_id = $1 AND t.version < $2
            AND NOT EXISTS (SELECT 1 FROM pool_items p
                             WHERE p.template_id = $1 AND p.template_version = t.version
                               AND p.state = 'copying')",
    )
    .bind::<diesel::sql_types::Uuid, _>(template.0)
    .bind::<diesel::sql_types::Integer, _>(version)
    .execute(conn)
    .await
}

/// `ready` and `copying` items of the template's `version` (inside a
/// transaction or not).
async fn count_states(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
) -> Result<(i64, i64), diesel::result::Error> {
    let (template, version) = (pool.template, pool.version.0);
    let rows: Vec<(String, i64)> = pool_items::table
        .filter(pool_items::template_id.eq(template.0))
        .filter(pool_items::template_version.eq(version))
        .filter(pool_items::state.eq_any([
            PoolItemState::Copying.as_str(),
            PoolItemState::Ready.as_str(),
        ]))
        .group_by(pool_items::state)
        .select((pool_items::state, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let get = |s: PoolItemState| {
        rows.iter()
            .find(|(st, _)| st == s.as_str())
            .map_or(0, |(_, n)| *n)
    };
    Ok((get(PoolItemState::Ready), get(PoolItemState::Copying)))
}

/// Reserve, step 2: a lowered hold level retires the newest `excess` ready items.
async fn retire_surplus(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
    excess: i64,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<DiscardedItem>, diesel::result::Error> {
    let (template, version) = (pool.template, pool.version.0);
    let newest: Vec<Uuid> = pool_items::table
        .filter(pool_items::template_id.eq(template.0))
        .filter(pool_items::template_version.eq(version))
        .filter(pool_items::state.eq(PoolItemState::Ready.as_str()))
        .order(pool_items::ready_at.desc())
        .limit(excess)
        .select(pool_items::id)
        .load(conn)
        .await?;
    pause::reach(pause::at::RETIRE_CHOSEN).await;
    discard_if(conn, &newest, PoolItemState::Ready, None, now).await
}

/// The version's images (position, source key), in order: what each item
/// of it copies.
async fn sources_of(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
) -> Result<Vec<(i32, String)>, diesel::result::Error> {
    let (template, version) = (pool.template, pool.version.0);
    template_images::table
        .filter(template_images::template_id.eq(template.0))
        .filter(template_images::version.eq(version))
        .order(template_images::position.asc())
        .select((template_images::position, template_images::object_key))
        .load(conn)
        .await
}

/// Reserve, step 4: `gap` new `copying` items of `version`, each with its
/// planned copies: the `i`-th source to the item's position `i`.
async fn insert_items(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
    sources: &[(i32, String)],
    gap: i64,
    now: chrono::DateTime<Utc>,
    lease_until: chrono::DateTime<Utc>,
) -> Result<Vec<ReservedItem>, diesel::result::Error> {
    let (template, version) = (pool.template, pool.version.0);
    let mut reserved = Vec::new();
    let mut item_rows = Vec::new();
    let count = i32::try_from(sources.len()).unwrap_or(i32::MAX);
    for _ in 0..gap {
        let id = PoolItemId::new();
        let copies: Vec<PlannedCopy> = (0..)
            .zip(sources)
            .zip(object_keys::pool_images(template, id, count))
            .map(|((position, (_, source)), object_key)| PlannedCopy {
                position,
                source_key: source.clone(),
                object_key,
            })
            .collect();
        item_rows.push((
            pool_items::id.eq(id.0),
            pool_items::template_id.eq(template.0),
            pool_items::template_version.eq(version),
            pool_items::state.eq(PoolItemState::Copying.as_str()),
            pool_items::created_at.eq(now),
            pool_items::lease_until.eq(Some(lease_until)),
            pool_items::image_count.eq(count),
        ));
        reserved.push(ReservedItem { id, copies });
    }
    // Chunked: Postgres takes at most 65,535 bind parameters a statement.
    for chunk in item_rows.chunks(INSERT_CHUNK) {
        diesel::insert_into(pool_items::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(reserved)
}

/// The one way an item is taken out of service: a compare-and-set on its
/// state. Of `ids`, those still in state `from` (and, with `lease_before`,
/// whose lease ended before it) become `discarded`; returns them with their
/// keys for deletion. An item that moved meanwhile (a claim made it `used`,
/// a heartbeat renewed its lease) is left as it is: the update and the
/// concurrent change serialize on the row, and the second re-checks it.
async fn discard_if(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    from: PoolItemState,
    lease_before: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<DiscardedItem>, diesel::result::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Owned> = diesel::sql_query(
        "UPDATE pool_items SET state = 'discarded', finished_at = $3
          WHERE id = ANY($1) AND state = $2
            AND ($4::timestamptz IS NULL OR lease_until < $4)
         RETURNING id, template_id, image_count",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<Text, _>(from.as_str())
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(lease_before)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(Owned::discarded).collect())
}

/// Step 3: items whose copies all landed become `ready` -- unless the template
/// moved to a newer version meanwhile, or as many as `hold` (the template's
/// retire level as the caller reads it now) are ready already: a level
/// lowered while the items copied (reserve counts `copying` items towards
/// the levels but can only retire `ready` ones) must not be overfilled when
/// they land (I5). Returns the ids that became ready; the others were
/// discarded (here, or by a lease rescue while they copied) and come back in
/// the second list for deletion.
pub async fn mark_ready(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
    ids: &[PoolItemId],
    hold: i32,
) -> Result<(Vec<PoolItemId>, Vec<DiscardedItem>), StoreError> {
    let (template, version) = (pool.template, pool.version.0);
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // Same lock as `reserve`, so an edit racing a refill is seen here.
            lock_template(conn, template).await?;
            let current: Option<i32> = templates::table
                .find(template.0)
                .filter(templates::deleted_at.is_null())
                .select(templates::version)
                .first(conn)
                .await
                .optional()?;
            let now = super::now();
            // An item rescued while its copies ran (its lease lapsed) is
            // discarded already; copies that landed after the rescue deleted
            // its objects must go too.
            let mut gone: Vec<DiscardedItem> = pool_items::table
                .filter(pool_items::id.eq_any(&ids))
                .filter(pool_items::state.eq(PoolItemState::Discarded.as_str()))
                .select((
                    pool_items::id,
                    pool_items::template_id,
                    pool_items::image_count,
                ))
                .load::<Owned>(conn)
                .await?
                .into_iter()
                .map(Owned::discarded)
                .collect();
            if current != Some(version) {
                gone.extend(discard_in_tx(conn, &ids).await?);
                // These may have been the last copies from an older
                // version's images, the ones that kept `reserve` from
                // pruning them; with the pool already full, no reserve
                // would come to prune them for as long as it stays so.
                if let Some(current) = current {
                    prune_old_versions(conn, PoolKey::new(template, TemplateVersion(current)))
                        .await?;
                }
                return Ok((Vec::new(), gone));
            }
            let ready_now: i64 = pool_items::table
                .filter(pool_items::template_id.eq(template.0))
                .filter(pool_items::template_version.eq(version))
                .filter(pool_items::state.eq(PoolItemState::Ready.as_str()))
                .count()
                .get_result(conn)
                .await?;
            let room = (i64::from(hold) - ready_now).max(0) as usize;
            let mut landing: Vec<Uuid> = pool_items::table
                .filter(pool_items::id.eq_any(&ids))
                .filter(pool_items::state.eq(PoolItemState::Copying.as_str()))
                .select(pool_items::id)
                .order(pool_items::id)
                .load(conn)
                .await?;
            let over = landing.split_off(room.min(landing.len()));
            gone.extend(discard_in_tx(conn, &over).await?);
            let ready: Vec<Uuid> = diesel::update(
                pool_items::table
                    .filter(pool_items::id.eq_any(&landing))
                    .filter(pool_items::state.eq(PoolItemState::Copying.as_str())),
            )
            .set((
                pool_items::state.eq(PoolItemState::Ready.as_str()),
                pool_items::ready_at.eq(now),
                pool_items::lease_until.eq(None::<chrono::DateTime<Utc>>),
            ))
            .returning(pool_items::id)
            .get_results(conn)
            .await?;
            Ok((ready.into_iter().map(PoolItemId).collect(), gone))
        })
        .await?)
}

/// Discards the refill's own `copying` items among `ids` (never a `ready`
/// one: a client may be claiming it).
async fn discard_in_tx(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<DiscardedItem>, diesel::result::Error> {
    discard_if(conn, ids, PoolItemState::Copying, None, super::now()).await
}

/// Gives up on items (a failed copy, say); returns their keys for deletion.
pub async fn discard(
    conn: &mut AsyncPgConnection,
    ids: &[PoolItemId],
) -> Result<Vec<DiscardedItem>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    Ok(discard_in_tx(conn, &ids).await?)
}

/// Extends the leases of those of `ids` still `copying` (the refill's
/// heartbeat while it copies); returns how many were extended.
pub async fn renew_leases(
    conn: &mut AsyncPgConnection,
    ids: &[PoolItemId],
    lease: Duration,
) -> Result<usize, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(300));
    Ok(diesel::update(
        pool_items::table
            .filter(pool_items::id.eq_any(&ids))
            .filter(pool_items::state.eq(PoolItemState::Copying.as_str())),
    )
    .set(pool_items::lease_until.eq(Some(super::now() + lease)))
    .execute(conn)
    .await?)
}

/// Discards `copying` items whose lease expired (their worker died or gave
/// up mid-copy) and returns their keys for deletion. A lease renewed after
/// the read is re-checked by the update: that item keeps copying.
pub async fn rescue_expired(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<DiscardedItem>, StoreError> {
    let now = super::now();
    let expired: Vec<Uuid> = pool_items::table
        .filter(pool_items::state.eq(PoolItemState::Copying.as_str()))
        .filter(pool_items::lease_until.lt(now))
        .select(pool_items::id)
        .load(conn)
        .await?;
    pause::reach(pause::at::RESCUE_READ).await;
    Ok(discard_if(conn, &expired, PoolItemState::Copying, Some(now), now).await?)
}

/// Counts of `ready` and `copying` items for one template version.
pub async fn counts(conn: &mut AsyncPgConnection, pool: PoolKey) -> Result<(i64, i64), StoreError> {
    Ok(count_states(conn, pool).await?)
}

/// Live (`copying` + `ready`) items of each of `templates`' current version
/// -- what reserve counts (templates without any are left out): what the
/// sizer caps a hold level at, as a held surplus is used up.
pub async fn live_counts(
    conn: &mut AsyncPgConnection,
    templates: &[TemplateId],
) -> Result<std::collections::HashMap<TemplateId, i64>, StoreError> {
    let ids: Vec<Uuid> = templates.iter().map(|t| t.0).collect();
    let rows: Vec<(Uuid, i64)> = pool_items::table
        .inner_join(
            templates::table.on(templates::id
                .eq(pool_items::template_id)
                .and(templates::version.eq(pool_items::template_version))),
        )
        .filter(pool_items::template_id.eq_any(&ids))
        .filter(pool_items::state.eq_any([
            PoolItemState::Copying.as_str(),
            PoolItemState::Ready.as_str(),
        ]))
        .group_by(pool_items::template_id)
        .select((pool_items::template_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(t, n)| (TemplateId(t), n)).collect())
}

/// Ids of the `ready` items of one template version (to rebuild the Redis index).
pub async fn ready_ids(
    conn: &mut AsyncPgConnection,
    pool: PoolKey,
) -> Result<Vec<PoolItemId>, StoreError> {
    let (template, version) = (pool.template, pool.version.0);
    let ids: Vec<Uuid> = pool_items::table
        .filter(pool_items::template_id.eq(template.0))
        .filter(pool_items::template_version.eq(version))
        .filter(pool_items::state.eq(PoolItemState::Ready.as_str()))
        .order(pool_items::ready_at.asc())
        .select(pool_items::id)
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(PoolItemId).collect())
}

/// Those of `ids` still servable: `ready`, of their template's current
/// version, the template not deleted (ids held out of the index, checked
/// before they are listed again, so a put-back does not recreate the list
/// of a deleted template or an old version).
pub async fn still_ready(
    conn: &mut AsyncPgConnection,
    ids: &[PoolItemId],
) -> Result<Vec<PoolItemId>, StoreError> {
    let raw: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    let ready: Vec<Uuid> = pool_items::table
        .inner_join(templates::table)
        .filter(pool_items::id.eq_any(raw))
        .filter(pool_items::state.eq(PoolItemState::Ready.as_str()))
        .filter(pool_items::template_version.eq(templates::version))
        .filter(templates::deleted_at.is_null())
        .select(pool_items::id)
        .load(conn)
        .await?;
    Ok(ready.into_iter().map(PoolItemId).collect())
}

/// Every object key held by a live (`copying` or `ready`) item.
pub async fn live_object_keys(conn: &mut AsyncPgConnection) -> Result<Vec<String>, StoreError> {
    let live: Vec<Owned> = pool_items::table
        .filter(pool_items::state.eq_any([
            PoolItemState::Copying.as_str(),
            PoolItemState::Ready.as_str(),
        ]))
        .select((
            pool_items::id,
            pool_items::template_id,
            pool_items::image_count,
        ))
        .load(conn)
        .await?;
    Ok(live.into_iter().flat_map(|o| o.keys()).collect())
}

/// How many items were ever reserved for a template (copies made = this x images).
pub async fn total_reserved(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<i64, StoreError> {
    Ok(pool_items::table
        .filter(pool_items::template_id.eq(template.0))
        .count()
        .get_result(conn)
        .await?)
}

/// Items of a template (all versions) by state, e.g. `[("ready", 4), ("used", 6)]`.
pub async fn state_counts(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(pool_items::table
        .filter(pool_items::template_id.eq(template.0))
        .group_by(pool_items::state)
        .select((pool_items::state, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}

/// Ready items of all templates (any version), counted exactly over the
/// partial index of live items: O(pooled items), so no periodic pass uses
/// it (the metrics keep a running total, [`super::pool_depths`]); tests
/// check that total against it.
pub async fn ready_total(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    Ok(pool_items::table
        .filter(pool_items::state.eq(PoolItemState::Ready.as_str()))
        .count()
        .get_result(conn)
        .await?)
}
