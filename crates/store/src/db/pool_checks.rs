//! What the reconciler reads to find the templates whose pool needs work
//! without visiting every template: the templates that changed since a
//! watermark (items used or discarded, templates created, edited or
//! deleted -- two index range scans), a rolling sweep in id order, and the
//! pool state of a batch of templates in one statement.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Double, Integer, Interval, Nullable, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::TemplateId;
use uuid::Uuid;

use super::StoreError;

/// A position in the stream of pool changes: (time, template id).
pub type Watermark = (DateTime<Utc>, Uuid);

#[derive(diesel::QueryableByName)]
struct Changed {
    #[diesel(sql_type = SqlUuid)]
    template_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

/// Up to `limit` templates whose pool may have changed after `from` and up
/// to `until`: an item of theirs left the pool (`finished_at`: used,
/// discarded, rescued), the template row changed (`updated_at`: created,
/// edited, deleted), or -- with `idle` -- the template turned `idle` old
/// (its default target drops to the minimum). Ordered by their latest
/// change, so the last one returned is the next watermark when the batch is
/// full. Cost: the changes in the window (index range scans), not the
/// catalogue.
pub async fn changed_templates(
    conn: &mut AsyncPgConnection,
    from: Watermark,
    until: DateTime<Utc>,
    idle: Option<chrono::TimeDelta>,
    limit: i64,
) -> Result<Vec<(TemplateId, Watermark)>, StoreError> {
    // Without idle templates the third range is empty (an idle time past
    // any template's age).
    let idle = idle.unwrap_or(chrono::TimeDelta::days(365 * 1000));
    let rows: Vec<Changed> = diesel::sql_query(
        "WITH ev AS (
             SELECT template_id, finished_at AS at FROM pool_items
              WHERE finished_at >= $1 AND finished_at <= $3
             UNION ALL
             SELECT id, updated_at FROM templates
              WHERE updated_at >= $1 AND updated_at <= $3
             UNION ALL
             SELECT id, created_at + $5 FROM templates
              WHERE created_at >= $1 - $5 AND created_at <= $3 - $5 AND deleted_at IS NULL)
         SELECT template_id, max(at) AS at FROM ev
          GROUP BY template_id
         HAVING (max(at), template_id) > ($1, $2)
          ORDER BY 2, 1
          LIMIT $4",
    )
    .bind::<Timestamptz, _>(from.0)
    .bind::<SqlUuid, _>(from.1)
    .bind::<Timestamptz, _>(until)
    .bind::<BigInt, _>(limit)
    .bind::<Interval, _>(interval(idle))
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (TemplateId(r.template_id), (r.at, r.template_id)))
        .collect())
}

fn interval(d: chrono::TimeDelta) -> diesel::data_types::PgInterval {
    diesel::data_types::PgInterval::from_microseconds(d.num_microseconds().unwrap_or(i64::MAX))
}

/// The next `limit` templates after `after` in id order that have a pool
/// to keep: the live ones, and deleted ones that still have live items
/// (the rolling sweep; a primary-key range scan, and one probe of
/// `pool_items_live` per deleted template passed). A delete is otherwise
/// retired only by its warm-up message or the one change window that holds
/// it; with both missed (Kafka down, a failed or interrupted refill, a
/// commit later than the window's lag) its ready items would hold their
/// objects, and the budget, for good.
pub async fn templates_after(
    conn: &mut AsyncPgConnection,
    after: Uuid,
    limit: i64,
) -> Result<Vec<TemplateId>, StoreError> {
    use super::schema::{pool_items, templates};
    let has_live_items = diesel::dsl::exists(
        pool_items::table
            .filter(pool_items::template_id.eq(templates::id))
            .filter(pool_items::state.eq_any(["copying", "ready"])),
    );
    let ids: Vec<Uuid> = templates::table
        .filter(templates::id.gt(after))
        .filter(templates::deleted_at.is_null().or(has_live_items))
        .order(templates::id)
        .limit(limit)
        .select(templates::id)
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(TemplateId).collect())
}

/// One template's pool as the ledger has it.
#[derive(Debug, Clone, PartialEq, diesel::QueryableByName)]
pub struct PoolState {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    #[diesel(sql_type = Integer)]
    pub version: i32,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
    /// Seconds since the template was created.
    #[diesel(sql_type = Double)]
    pub age: f64,
    /// The sizer's target and hold level, if it planned them.
    #[diesel(sql_type = Nullable<Integer>)]
    pub planned: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub planned_hold: Option<i32>,
    /// `copying` + `ready` items of the current version.
    #[diesel(sql_type = BigInt)]
    pub live: i64,
    #[diesel(sql_type = BigInt)]
    pub ready: i64,
    /// `ready` items of older versions (to discard).
    #[diesel(sql_type = BigInt)]
    pub stale: i64,
}

impl PoolState {
    /// The pool of the template's current version.
    pub fn pool(&self) -> shared_domain::pool::PoolKey {
        shared_domain::pool::PoolKey::new(
            shared_domain::ids::TemplateId(self.template_id),
            shared_domain::ids::TemplateVersion(self.version),
        )
    }

    /// The sizer's planned levels, if it planned them.
    pub fn planned_levels(&self) -> Option<shared_domain::pool::PoolLevels> {
        self.planned
            .map(|fill| shared_domain::pool::PoolLevels::new(fill, self.planned_hold))
    }
}

/// The pool state of each of `templates` that exists, in one statement:
/// per template, a primary-key probe and a probe of the partial index of
/// live items (lateral subqueries with LIMIT, so the planner cannot turn
/// `id = ANY(batch)` into a scan of the whole catalogue, as it did at 10^5
/// templates), without JIT (`jit_off`). Cost: the batch, not the catalogue.
pub async fn pool_states(
    conn: &mut AsyncPgConnection,
    templates: &[TemplateId],
) -> Result<Vec<PoolState>, StoreError> {
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            super::jit_off(conn).await?;
            load_states(conn, templates).await
        })
        .await?)
}

/// [`pool_states`]' statement, inside the caller's transaction (which has
/// turned JIT off).
pub(super) async fn load_states(
    conn: &mut AsyncPgConnection,
    templates: &[TemplateId],
) -> Result<Vec<PoolState>, diesel::result::Error> {
    let mut ids: Vec<Uuid> = templates.iter().map(|t| t.0).collect();
    ids.sort_unstable();
    ids.dedup();
    diesel::sql_query(
        "SELECT t.id AS template_id, t.version, t.deleted_at IS NOT NULL AS deleted,
                extract(epoch FROM now() - t.created_at)::float8 AS age,
                pt.target AS planned, pt.hold AS planned_hold,
                c.live, c.ready, c.stale
           FROM unnest($1::uuid[]) AS k(id)
          CROSS JOIN LATERAL (
                SELECT id, version, deleted_at, created_at FROM templates
                 WHERE id = k.id LIMIT 1) t
           LEFT JOIN LATERAL (
                SELECT target, hold FROM pool_targets
                 WHERE template_id = t.id LIMIT 1) pt ON true
          CROSS JOIN LATERAL (
                SELECT count(*) FILTER (WHERE p.template_version = t.version) AS live,
                       count(*) FILTER (WHERE p.template_version = t.version AND p.state = 'ready') AS ready,
                       count(*) FILTER (WHERE p.template_version <> t.version AND p.state = 'ready') AS stale
                  FROM pool_items p
                 WHERE p.template_id = t.id AND p.state IN ('copying', 'ready')) c",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await
}
