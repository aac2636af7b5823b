//! `pool_targets`: the sizer's plan and the demand it is computed from, one
//! row per template *with recent demand* (a template without a row keeps the
//! default: `pool.min` with adaptive sizing or when idle, `pool.target`
//! otherwise). The sizer keeps the rows incrementally: each pass reads only
//! the designs made since the previous one ([`designs_since`]) and writes
//! only the rows that changed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::TemplateId;
use shared_domain::pool::PoolLevels;
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
    /// The demand fields are as of this time (they decay from it).
    pub computed_at: DateTime<Utc>,
    /// The template's latest design seen by the sizer.
    pub last_design_at: Option<DateTime<Utc>>,
    /// The forecast of its recurring demand it was planned with
    /// (designs/s; 0 without one).
    pub forecast: f64,
    /// The retire level: items above it are retired (`None`: `target`).
    pub hold: Option<i32>,
}

impl PoolTargetRow {
    /// The levels the pool is kept between.
    pub fn levels(&self) -> PoolLevels {
        PoolLevels::new(self.target, self.hold)
    }
}

/// Replaces the plan: upserts every row and drops rows of templates no longer planned.
pub async fn save(conn: &mut AsyncPgConnection, rows: &[PoolTargetRow]) -> Result<(), StoreError> {
    let rows = rows.to_vec();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.template_id).collect();
        diesel::delete(pool_targets::table.filter(pool_targets::template_id.ne_all(&ids)))
            .execute(conn)
            .await?;
        upsert_in(conn, &rows).await
    })
    .await?;
    Ok(())
}

/// What a sizer pass adds to the forecast's profile: the designs of
/// `(after, upper]`, and the marker recording how far the profile has read.
#[derive(Debug, Clone, Copy)]
pub struct ProfileStep<'a> {
    pub after: f64,
    pub upper: f64,
    pub profile: super::demand_profile::Profile,
    pub marker: (&'a str, &'a str),
}

/// One incremental step of the plan, in one transaction: moves the sizer's
/// `cursor` (name, from, to: how far it has read the designs) if it is still
/// where this pass read it from, upserts `rows`, drops the rows of `dropped`
/// (back to the default), and adds the designs read to the forecast's
/// profile -- so every design counts once. `false`: another pass moved the
/// cursor meanwhile (a lease lost mid-pass); nothing was written.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    rows: &[PoolTargetRow],
    dropped: &[Uuid],
    profile: Option<ProfileStep<'_>>,
    cursor: (&str, &str, &str),
) -> Result<bool, StoreError> {
    let (rows, dropped) = (rows.to_vec(), dropped.to_vec());
    let (name, from, to) = (
        cursor.0.to_string(),
        cursor.1.to_string(),
        cursor.2.to_string(),
    );
    let profile = profile.map(|p| {
        (
            p.after,
            p.upper,
            p.profile,
            p.marker.0.to_string(),
            p.marker.1.to_string(),
        )
    });
    let done = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            if !super::cursors::advance_in(conn, &name, &from, &to).await? {
                return Err(diesel::result::Error::RollbackTransaction);
            }
            if let Some((after, upper, profile, marker, position)) = &profile {
                super::demand_profile::absorb(conn, *after, *upper, profile).await?;
                super::cursors::set_in(conn, marker, position).await?;
            }
            if !dropped.is_empty() {
                diesel::delete(
                    pool_targets::table.filter(pool_targets::template_id.eq_any(&dropped)),
                )
                .execute(conn)
                .await?;
            }
            upsert_in(conn, &rows).await
        })
        .await;
    match done {
        Ok(()) => Ok(true),
        Err(diesel::result::Error::RollbackTransaction) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn upsert_in(
    conn: &mut AsyncPgConnection,
    rows: &[PoolTargetRow],
) -> Result<(), diesel::result::Error> {
    for chunk in rows.chunks(5_000) {
        diesel::insert_into(pool_targets::table)
            .values(chunk)
            .on_conflict(pool_targets::template_id)
            .do_update()
            .set((
                pool_targets::target.eq(diesel::upsert::excluded(pool_targets::target)),
                pool_targets::demand_fast.eq(diesel::upsert::excluded(pool_targets::demand_fast)),
                pool_targets::demand_slow.eq(diesel::upsert::excluded(pool_targets::demand_slow)),
                pool_targets::refill_secs.eq(diesel::upsert::excluded(pool_targets::refill_secs)),
                pool_targets::computed_at.eq(diesel::upsert::excluded(pool_targets::computed_at)),
                pool_targets::last_design_at
                    .eq(diesel::upsert::excluded(pool_targets::last_design_at)),
                pool_targets::forecast.eq(diesel::upsert::excluded(pool_targets::forecast)),
                pool_targets::hold.eq(diesel::upsert::excluded(pool_targets::hold)),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// What the sizer keeps about one template with a row, as stored.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct TrackedRow {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub target: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub hold: Option<i32>,
    #[diesel(sql_type = Double)]
    pub demand_fast: f64,
    #[diesel(sql_type = Double)]
    pub demand_slow: f64,
    /// Seconds since the epoch.
    #[diesel(sql_type = Double)]
    pub computed_at: f64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Double>)]
    pub last_design_at: Option<f64>,
    #[diesel(sql_type = Double)]
    pub forecast: f64,
}

/// Every row of the plan (the sizer's state after a restart or a hand-over).
pub async fn load_tracked(conn: &mut AsyncPgConnection) -> Result<Vec<TrackedRow>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT template_id, target, hold, demand_fast, demand_slow,
                extract(epoch FROM computed_at)::float8 AS computed_at,
                extract(epoch FROM last_design_at)::float8 AS last_design_at, forecast
           FROM pool_targets",
    )
    .load(conn)
    .await?)
}

/// Designs of one template made in a window, as decayed sums at its end.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct NewDemand {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub designs: i64,
    /// `sum(exp(-(upper - created_at) / fast_secs))`.
    #[diesel(sql_type = Double)]
    pub fast_sum: f64,
    #[diesel(sql_type = Double)]
    pub slow_sum: f64,
    /// Seconds since the epoch of the latest design.
    #[diesel(sql_type = Double)]
    pub last: f64,
    /// ... and of the earliest.
    #[diesel(sql_type = Double)]
    pub first: f64,
}

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = Double)]
    now: f64,
}

/// The database's clock less `lag_secs`, in seconds since the epoch: the
/// upper end of the window a pass reads (designs committing late by less
/// than the lag are not missed).
pub async fn read_horizon(conn: &mut AsyncPgConnection, lag_secs: f64) -> Result<f64, StoreError> {
    let now: Now = diesel::sql_query("SELECT extract(epoch FROM now())::float8 - $1 AS now")
        .bind::<Double, _>(lag_secs)
        .get_result(conn)
        .await?;
    Ok(now.now)
}

/// The designs made in `(after, upper]` (seconds since the epoch), per
/// template: a range scan of the `(created_at, template_id)` index, so a pass
/// costs the designs made since the previous one, not hours of them.
pub async fn designs_since(
    conn: &mut AsyncPgConnection,
    after: f64,
    upper: f64,
    fast_secs: f64,
    slow_secs: f64,
) -> Result<Vec<NewDemand>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT template_id, count(*) AS designs,
                sum(exp(-($2 - extract(epoch FROM created_at)) / $3))::float8 AS fast_sum,
                sum(exp(-($2 - extract(epoch FROM created_at)) / $4))::float8 AS slow_sum,
                max(extract(epoch FROM created_at))::float8 AS last,
                min(extract(epoch FROM created_at))::float8 AS first
           FROM designs
          WHERE created_at > to_timestamp($1) AND created_at <= to_timestamp($2)
          GROUP BY template_id",
    )
    .bind::<Double, _>(after)
    .bind::<Double, _>(upper)
    .bind::<Double, _>(fast_secs.max(1.0))
    .bind::<Double, _>(slow_secs.max(1.0))
    .load(conn)
    .await?)
}

/// Templates deleted in `(after, upper]` (seconds since the epoch): their
/// rows and memory go at once, not when their demand has decayed (a
/// deleted template planned under a budget would hold its share). A range
/// of the `(updated_at, id)` index: a delete sets `updated_at`.
pub async fn deleted_since(
    conn: &mut AsyncPgConnection,
    after: f64,
    upper: f64,
) -> Result<Vec<Uuid>, StoreError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let ids: Vec<Id> = diesel::sql_query(
        "SELECT id FROM templates
          WHERE updated_at > to_timestamp($1) AND updated_at <= to_timestamp($2)
            AND deleted_at IS NOT NULL",
    )
    .bind::<Double, _>(after)
    .bind::<Double, _>(upper)
    .load(conn)
    .await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// What the sizer needs of a template besides its demand.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct TemplateFacts {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    /// Seconds since the epoch.
    #[diesel(sql_type = Double)]
    pub created_at: f64,
    /// Images of the current version.
    #[diesel(sql_type = BigInt)]
    pub images: i64,
}

/// Creation time and image count of those of `ids` that are live templates.
pub async fn template_facts(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<TemplateFacts>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(
        "SELECT t.id AS template_id, extract(epoch FROM t.created_at)::float8 AS created_at,
                (SELECT count(*) FROM template_images i
                  WHERE i.template_id = t.id AND i.version = t.version) AS images
           FROM templates t
          WHERE t.id = ANY($1) AND t.deleted_at IS NULL",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Live templates and the images of their current versions (each keeps at
/// least the minimum under a budget, which costs its images per item): one
/// pass over the catalogue, which the sizer makes at most every few minutes.
pub async fn live_templates(conn: &mut AsyncPgConnection) -> Result<(i64, i64), StoreError> {
    #[derive(QueryableByName)]
    struct Live {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = BigInt)]
        images: i64,
    }
    let live: Live = diesel::sql_query(
        "SELECT count(*) AS n,
                coalesce(sum((SELECT count(*) FROM template_images i
                               WHERE i.template_id = t.id AND i.version = t.version)), 0)::bigint
                  AS images
           FROM templates t WHERE t.deleted_at IS NULL",
    )
    .get_result(conn)
    .await?;
    Ok((live.n, live.images))
}

/// The change in live templates over `(after, upper]` (seconds since the
/// epoch): created in it and still live, less those deleted in it that were
/// created before it -- two index range scans, so the sizer keeps the count
/// without counting the catalogue every pass.
pub async fn live_templates_delta(
    conn: &mut AsyncPgConnection,
    after: f64,
    upper: f64,
) -> Result<i64, StoreError> {
    let total: Total = diesel::sql_query(
        "SELECT (SELECT count(*) FROM templates
                  WHERE created_at > to_timestamp($1) AND created_at <= to_timestamp($2)
                    AND deleted_at IS NULL)
              - (SELECT count(*) FROM templates
                  WHERE updated_at > to_timestamp($1) AND updated_at <= to_timestamp($2)
                    AND deleted_at > to_timestamp($1) AND deleted_at <= to_timestamp($2)
                    AND created_at <= to_timestamp($1)) AS n",
    )
    .bind::<Double, _>(after)
    .bind::<Double, _>(upper)
    .get_result(conn)
    .await?;
    Ok(total.n)
}

#[derive(QueryableByName)]
struct Inputs {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    planned: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    hold: Option<i32>,
    #[diesel(sql_type = Double)]
    age: f64,
}

/// A template's planned levels (if it has a row) and its age in seconds, in
/// one statement: what the worker's target rule needs.
pub async fn target_inputs(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<Option<(Option<PoolLevels>, f64)>, StoreError> {
    let rows: Vec<Inputs> = diesel::sql_query(
        "SELECT p.target AS planned, p.hold, extract(epoch FROM now() - t.created_at)::float8 AS age
           FROM templates t LEFT JOIN pool_targets p ON p.template_id = t.id
          WHERE t.id = $1",
    )
    .bind::<SqlUuid, _>(template.0)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|r| (r.planned.map(|fill| PoolLevels::new(fill, r.hold)), r.age)))
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

/// Sum of all planned items, held ones included (budget use).
pub async fn planned_total(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    let total: Option<i64> = pool_targets::table
        .select(diesel::dsl::sql::<diesel::sql_types::Nullable<BigInt>>(
            "sum(GREATEST(target, COALESCE(hold, target)))::bigint",
        ))
        .first(conn)
        .await?;
    Ok(total.unwrap_or(0))
}
