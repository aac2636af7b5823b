//! What the catalogue scenario reads from a strategy's ledger: a sample of
//! the pools every second ([`sample`]), and after the run what was copied
//! and what of it was wasted ([`copies_since`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use prewarm_store::db::Db;

/// The pools at one moment.
#[derive(Debug, Clone, Copy, Default, QueryableByName)]
pub struct Sample {
    /// Objects of every `copying` and `ready` item.
    #[diesel(sql_type = BigInt)]
    pub objects: i64,
    /// Ready items of the peak subset, of the launch template, of the
    /// burst's template.
    #[diesel(sql_type = BigInt)]
    pub peak_ready: i64,
    #[diesel(sql_type = BigInt)]
    pub launch_ready: i64,
    #[diesel(sql_type = BigInt)]
    pub burst_ready: i64,
    /// The peak subset's planned targets: the sum over its templates with
    /// a plan row, and how many have one (the others keep the default).
    #[diesel(sql_type = BigInt)]
    pub peak_planned: i64,
    #[diesel(sql_type = BigInt)]
    pub peak_rows: i64,
}

/// The templates a sample looks at.
#[derive(Debug, Clone)]
pub struct Watched {
    pub peak: Vec<uuid::Uuid>,
    pub launch: uuid::Uuid,
    pub burst: uuid::Uuid,
}

pub async fn sample(db: &Db, w: &Watched) -> anyhow::Result<Sample> {
    let mut conn = db.conn().await?;
    let s: Sample = diesel::sql_query(
        "SELECT coalesce(sum(n), 0)::bigint AS objects,
                count(*) FILTER (WHERE state = 'ready' AND template_id = ANY($1)) AS peak_ready,
                count(*) FILTER (WHERE state = 'ready' AND template_id = $2) AS launch_ready,
                count(*) FILTER (WHERE state = 'ready' AND template_id = $3) AS burst_ready,
                (SELECT coalesce(sum(target), 0)::bigint FROM pool_targets WHERE template_id = ANY($1)) AS peak_planned,
                (SELECT count(*) FROM pool_targets WHERE template_id = ANY($1)) AS peak_rows
           FROM (SELECT template_id, state, image_count AS n FROM pool_items
                  WHERE state IN ('copying', 'ready')) live",
    )
    .bind::<Array<SqlUuid>, _>(&w.peak)
    .bind::<SqlUuid, _>(w.launch)
    .bind::<SqlUuid, _>(w.burst)
    .get_result(&mut conn)
    .await?;
    Ok(s)
}

/// One template's pool now: live (`copying` and `ready`) items, their
/// objects, and its planned fill level (`None`: no plan row).
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Pool {
    #[diesel(sql_type = BigInt)]
    pub items: i64,
    #[diesel(sql_type = BigInt)]
    pub objects: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub fill: Option<i32>,
}

/// Every template's pool now (templates with live items).
pub async fn pools(db: &Db) -> anyhow::Result<HashMap<uuid::Uuid, Pool>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        template_id: uuid::Uuid,
        #[diesel(embed)]
        pool: Pool,
    }
    let mut conn = db.conn().await?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT p.template_id, count(*) AS items, sum(p.n)::bigint AS objects, max(pt.target) AS fill
           FROM (SELECT template_id, image_count AS n FROM pool_items
                  WHERE state IN ('copying', 'ready')) p
           LEFT JOIN pool_targets pt ON pt.template_id = p.template_id
          GROUP BY p.template_id",
    )
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.template_id, r.pool)).collect())
}

/// Objects a run left pooled beyond what its pools need: per template, the
/// live items above both its starting stock and its planned fill level at
/// the end (`default_fill` without a plan row), at its objects per item.
/// Stock up to the start replaced used items; stock up to the fill level
/// is what the demand as it stands keeps pooled anyway (a head template of
/// a seed of one item each grows to its size: working stock, not waste);
/// what is above both is a surplus the sizer holds, used by later designs
/// or retired.
pub fn held_above_need(
    start: &HashMap<uuid::Uuid, Pool>,
    end: &HashMap<uuid::Uuid, Pool>,
    default_fill: i64,
) -> i64 {
    end.iter()
        .map(|(t, p)| {
            let started = start.get(t).map_or(0, |s| s.items);
            let need = started.max(p.fill.map_or(default_fill, i64::from));
            let surplus = (p.items - need).max(0);
            surplus * p.objects / p.items.max(1)
        })
        .sum()
}

/// What the pools copied from `since` on, in objects.
#[derive(Debug, Clone, Default)]
pub struct Copies {
    /// Every item reserved since (whatever became of it).
    pub made: i64,
    /// Items that became ready and were discarded since (retired or
    /// discarded unused), whenever they were made.
    pub retired: i64,
    /// Items reserved since and discarded before they were ready: copies
    /// that landed above a lowered hold level, failed, or were superseded
    /// (and reserved items handed back before any copy, which cost none).
    pub unready: i64,
    /// Items reserved since and still unused (`copying` or `ready`).
    pub unused: i64,
    /// Objects held above what the pools need at the end
    /// ([`held_above_need`]).
    pub held: i64,
}

impl Copies {
    /// Copies wasted at most: retired, discarded before ready, and the
    /// surplus still held above need at the end (used by later designs or
    /// retired: a 75-s trace cannot tell which).
    pub fn wasted(&self) -> i64 {
        self.retired + self.unready + self.held
    }
}

#[derive(Debug, Clone, Copy, Default, QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    made: i64,
    #[diesel(sql_type = BigInt)]
    retired: i64,
    #[diesel(sql_type = BigInt)]
    unready: i64,
    #[diesel(sql_type = BigInt)]
    unused: i64,
}

/// What was copied since `since`, against the pools as they stood then
/// (`start`, from [`pools`]); `default_fill`: a template's fill level
/// without a plan row.
pub async fn copies_since(
    db: &Db,
    since: DateTime<Utc>,
    start: &HashMap<uuid::Uuid, Pool>,
    default_fill: i64,
) -> anyhow::Result<Copies> {
    let mut conn = db.conn().await?;
    let c: Counted = diesel::sql_query(
        "SELECT coalesce(sum(n) FILTER (WHERE created_at >= $1), 0)::bigint AS made,
                coalesce(sum(n) FILTER (WHERE state = 'discarded' AND ready_at IS NOT NULL
                                          AND finished_at >= $1), 0)::bigint AS retired,
                coalesce(sum(n) FILTER (WHERE state = 'discarded' AND ready_at IS NULL
                                          AND created_at >= $1), 0)::bigint AS unready,
                coalesce(sum(n) FILTER (WHERE state IN ('copying', 'ready') AND created_at >= $1), 0)::bigint AS unused
           FROM (SELECT state, created_at, ready_at, finished_at, image_count AS n
                   FROM pool_items WHERE created_at >= $1 OR finished_at >= $1) recent",
    )
    .bind::<Timestamptz, _>(since)
    .get_result(&mut conn)
    .await?;
    drop(conn);
    let end = pools(db).await?;
    Ok(Copies {
        made: c.made,
        retired: c.retired,
        unready: c.unready,
        unused: c.unused,
        held: held_above_need(start, &end, default_fill),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stock_above_the_start_and_the_fill_level_counts_as_held() {
        let t = |n: u128| uuid::Uuid::from_u128(n);
        let pool = |items, objects, fill| Pool {
            items,
            objects,
            fill,
        };
        let start = HashMap::from([(t(1), pool(1, 4, None)), (t(2), pool(1, 2, None))]);
        let end = HashMap::from([
            // Grew to its size (working stock): nothing held.
            (t(1), pool(5, 20, Some(5))),
            // Holds 6 above a fill of 2: 6 items of 2 objects.
            (t(2), pool(8, 16, Some(2))),
            // No row, the default fill of 1, started with none: 2 held.
            (t(3), pool(3, 3, None)),
        ]);
        assert_eq!(held_above_need(&start, &end, 1), 12 + 2);
    }
}
