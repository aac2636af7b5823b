//! `pool_targets`: the adaptive sizer's plan (one row per live template), and
//! the demand it is computed from.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::TemplateId;
use uuid::Uuid;

use super::schema::pool_targets;
use super::StoreError;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = pool_targets)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct PoolTargetRow {
    pub template_id: Uuid,
    pub target: i32,
    pub demand_fast: f64,
    pub demand_slow: f64,
    pub refill_secs: f64,
    pub computed_at: DateTime<Utc>,
}

/// What the sizer reads of one live template.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct TemplateDemand {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    /// Images of the current version (drives the refill time).
    #[diesel(sql_type = BigInt)]
    pub images: i64,
    /// Designs per second, exponentially decayed with the fast time constant.
    #[diesel(sql_type = Double)]
    pub fast: f64,
    /// The same with the slow time constant.
    #[diesel(sql_type = Double)]
    pub slow: f64,
}

/// Every live template's image count and decayed design rates: the sum over
/// its recent designs of `exp(-age/tau) / tau` (a steady rate of r designs/s
/// reads r), for `tau` = `fast_secs` and `slow_secs`. A template younger than
/// a few `tau` has not had the time to build that sum up, so it is divided by
/// `1 - exp(-W/tau)`, `W` the template's age (at least 1 s): an unbiased
/// estimate from the first seconds on, so new popular templates are sized
/// while they are new.
pub async fn demand(
    conn: &mut AsyncPgConnection,
    fast_secs: f64,
    slow_secs: f64,
) -> Result<Vec<TemplateDemand>, StoreError> {
    Ok(diesel::sql_query(
        "WITH recent AS (
             SELECT template_id,
                    sum(exp(-extract(epoch FROM now() - created_at) / $1)) AS fast,
                    sum(exp(-extract(epoch FROM now() - created_at) / $2)) AS slow
               FROM designs
              WHERE created_at > now() - make_interval(secs => $2 * 6)
              GROUP BY template_id),
         live AS (
             SELECT t.id, count(i.position) AS images,
                    greatest(extract(epoch FROM now() - t.created_at), 1.0)::float8 AS age
               FROM templates t
               JOIN template_images i ON i.template_id = t.id AND i.version = t.version
              WHERE t.deleted_at IS NULL
              GROUP BY t.id)
         SELECT live.id AS template_id, live.images,
                (coalesce(recent.fast, 0) / ($1 * (1 - exp(-live.age / $1))))::float8 AS fast,
                (coalesce(recent.slow, 0) / ($2 * (1 - exp(-live.age / $2))))::float8 AS slow
           FROM live LEFT JOIN recent ON recent.template_id = live.id",
    )
    .bind::<Double, _>(fast_secs.max(1.0))
    .bind::<Double, _>(slow_secs.max(1.0))
    .load(conn)
    .await?)
}

/// Replaces the plan: upserts every row and drops rows of templates no longer planned.
pub async fn save(conn: &mut AsyncPgConnection, rows: &[PoolTargetRow]) -> Result<(), StoreError> {
    let rows = rows.to_vec();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.template_id).collect();
        diesel::delete(pool_targets::table.filter(pool_targets::template_id.ne_all(&ids)))
            .execute(conn)
            .await?;
        for chunk in rows.chunks(5_000) {
            diesel::insert_into(pool_targets::table)
                .values(chunk)
                .on_conflict(pool_targets::template_id)
                .do_update()
                .set((
                    pool_targets::target.eq(diesel::upsert::excluded(pool_targets::target)),
                    pool_targets::demand_fast
                        .eq(diesel::upsert::excluded(pool_targets::demand_fast)),
                    pool_targets::demand_slow
                        .eq(diesel::upsert::excluded(pool_targets::demand_slow)),
                    pool_targets::refill_secs
                        .eq(diesel::upsert::excluded(pool_targets::refill_secs)),
                    pool_targets::computed_at
                        .eq(diesel::upsert::excluded(pool_targets::computed_at)),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// The planned row of one template, if the sizer has planned it.
pub async fn find(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<Option<PoolTargetRow>, StoreError> {
    Ok(pool_targets::table
        .find(template.0)
        .select(PoolTargetRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Sum of all planned targets (budget use).
pub async fn planned_total(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    let total: Option<i64> = pool_targets::table
        .select(diesel::dsl::sum(pool_targets::target))
        .first(conn)
        .await?;
    Ok(total.unwrap_or(0))
}

/// Every planned target.
pub async fn all(
    conn: &mut AsyncPgConnection,
) -> Result<std::collections::HashMap<TemplateId, i32>, StoreError> {
    let rows: Vec<(Uuid, i32)> = pool_targets::table
        .select((pool_targets::template_id, pool_targets::target))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(t, n)| (TemplateId(t), n)).collect())
}
