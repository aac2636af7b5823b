//! What the catalogue scenario reads from a strategy's ledger: a sample of
//! the pools every second ([`sample`]), and after the run what was copied
//! and what of it was wasted ([`copies_since`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use prewarm_store::db::pool_live::ITEM_OBJECTS_SQL;
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
    let s: Sample = diesel::sql_query(format!(
        "SELECT coalesce(sum(n), 0)::bigint AS objects,
                count(*) FILTER (WHERE state = 'ready' AND template_id = ANY($1)) AS peak_ready,
                count(*) FILTER (WHERE state = 'ready' AND template_id = $2) AS launch_ready,
                count(*) FILTER (WHERE state = 'ready' AND template_id = $3) AS burst_ready,
                (SELECT coalesce(sum(target), 0)::bigint FROM pool_targets WHERE template_id = ANY($1)) AS peak_planned,
                (SELECT count(*) FROM pool_targets WHERE template_id = ANY($1)) AS peak_rows
           FROM (SELECT template_id, state, {ITEM_OBJECTS_SQL} AS n FROM pool_items
                  WHERE state IN ('copying', 'ready')) live"
    ))
    .bind::<Array<SqlUuid>, _>(&w.peak)
    .bind::<SqlUuid, _>(w.launch)
    .bind::<SqlUuid, _>(w.burst)
    .get_result(&mut conn)
    .await?;
    Ok(s)
}

/// Objects pooled (`copying` and `ready` items) per template now.
pub async fn pooled_by_template(db: &Db) -> anyhow::Result<HashMap<uuid::Uuid, i64>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        template_id: uuid::Uuid,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await?;
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT template_id, sum({ITEM_OBJECTS_SQL})::bigint AS n FROM pool_items
          WHERE state IN ('copying', 'ready') GROUP BY template_id"
    ))
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.template_id, r.n)).collect())
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
    /// How far each template's pooled objects stand above where they
    /// stood when the run began, summed over the templates.
    pub grown: i64,
}

impl Copies {
    /// Copies wasted at most: retired, discarded before ready, and each
    /// pool's growth over the run. A copy that replaced a used item left
    /// its pool's stock as it was; an item still pooled above the pool's
    /// starting stock is used by a later design or retired, so the growth
    /// bounds what the run may yet waste. Counted per template, so one
    /// pool using up its held surplus does not hide another's new stock.
    pub fn wasted(&self) -> i64 {
        self.retired + self.unready + self.grown
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
/// (`start`, from [`pooled_by_template`]).
pub async fn copies_since(
    db: &Db,
    since: DateTime<Utc>,
    start: &HashMap<uuid::Uuid, i64>,
) -> anyhow::Result<Copies> {
    let mut conn = db.conn().await?;
    let c: Counted = diesel::sql_query(format!(
        "SELECT coalesce(sum(n) FILTER (WHERE created_at >= $1), 0)::bigint AS made,
                coalesce(sum(n) FILTER (WHERE state = 'discarded' AND ready_at IS NOT NULL
                                          AND finished_at >= $1), 0)::bigint AS retired,
                coalesce(sum(n) FILTER (WHERE state = 'discarded' AND ready_at IS NULL
                                          AND created_at >= $1), 0)::bigint AS unready,
                coalesce(sum(n) FILTER (WHERE state IN ('copying', 'ready') AND created_at >= $1), 0)::bigint AS unused
           FROM (SELECT state, created_at, ready_at, finished_at, {ITEM_OBJECTS_SQL} AS n
                   FROM pool_items WHERE created_at >= $1 OR finished_at >= $1) recent"
    ))
    .bind::<Timestamptz, _>(since)
    .get_result(&mut conn)
    .await?;
    drop(conn);
    let end = pooled_by_template(db).await?;
    let grown = end
        .iter()
        .map(|(t, n)| (n - start.get(t).copied().unwrap_or(0)).max(0))
        .sum();
    Ok(Copies {
        made: c.made,
        retired: c.retired,
        unready: c.unready,
        unused: c.unused,
        grown,
    })
}
