//! The running total of ready items (`pool_depth_total`), behind
//! `prewarm_pool_ready_items_total`: counting every pooled item on every
//! pass grew with the pool (4x from 10^4 to 10^5 templates), so each depth
//! pass instead records the ready items of the templates it checked in
//! `pool_depths` and moves `pool_depth_total` by the difference. Cost: the
//! templates checked, not the pool.
//!
//! Every worker replica runs a depth pass. A batch is read and recorded
//! under one transaction-scoped advisory lock, so passes take turns: a pass
//! that read the ledger earlier can never record over what a later one
//! recorded, and two passes meeting a new template never both add it.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::TemplateId;
use uuid::Uuid;

use super::pool_checks::{self, PoolState};
use super::StoreError;
use crate::pause;

#[derive(diesel::QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    ready: i64,
}

/// Reads the pool state of `templates` (as [`pool_checks::pool_states`])
/// and records their ready items (any version) in the running total, in one
/// transaction under the depth passes' lock. A checked template without
/// ready items, or gone, leaves `pool_depths`. Returns the states and the
/// total after the batch.
pub async fn observe(
    conn: &mut AsyncPgConnection,
    templates: &[TemplateId],
) -> Result<(Vec<PoolState>, i64), StoreError> {
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended('pool:depths', 0))::text",
            )
            .execute(conn)
            .await?;
            super::jit_off(conn).await?;
            let states = pool_checks::load_states(conn, templates).await?;
            pause::reach(pause::at::DEPTHS_READ).await;
            let found: HashMap<Uuid, i64> = states
                .iter()
                .map(|s| (s.template_id, s.ready + s.stale))
                .collect();
            // Each template once (a row is written at most once a statement).
            let mut ids: Vec<Uuid> = templates.iter().map(|t| t.0).collect();
            ids.sort_unstable();
            ids.dedup();
            let ready: Vec<i64> = ids
                .iter()
                .map(|id| found.get(id).copied().unwrap_or(0))
                .collect();
            let total = record(conn, &ids, &ready).await?;
            Ok((states, total))
        })
        .await?)
}

/// Sets the ready items of templates `ids` to `ready` (0: none, its row
/// leaves) and moves the total by the difference. Each id is looked up
/// through the primary key (a lateral probe: `= ANY(batch)` was planned as
/// a scan of every row, 22 ms at 10^5 templates), and only the rows that
/// differ are written.
async fn record(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    ready: &[i64],
) -> Result<i64, diesel::result::Error> {
    // One statement: every part sees the rows as they were before it, so
    // `was` is what the total holds for each template.
    let total: Total = diesel::sql_query(
        "WITH seen AS (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS s(template_id, ready)),
              diff AS MATERIALIZED (
                  SELECT s.template_id, s.ready, coalesce(d.ready, 0) AS was
                    FROM seen s
                    LEFT JOIN LATERAL (SELECT p.ready FROM pool_depths p
                                        WHERE p.template_id = s.template_id LIMIT 1) d ON TRUE
                   WHERE s.ready <> coalesce(d.ready, 0)),
              emptied AS (DELETE FROM pool_depths
                           WHERE template_id = ANY (ARRAY(SELECT template_id FROM diff WHERE ready = 0))),
              put AS (INSERT INTO pool_depths (template_id, ready)
                      SELECT template_id, ready FROM diff WHERE ready > 0
                      ON CONFLICT (template_id) DO UPDATE SET ready = EXCLUDED.ready)
         UPDATE pool_depth_total SET ready = ready + (SELECT coalesce(sum(ready - was), 0) FROM diff)
         RETURNING ready",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<BigInt>, _>(ready)
    .get_result(conn)
    .await?;
    Ok(total.ready)
}

/// The running total as the last pass left it.
pub async fn total(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    use super::schema::pool_depth_total;
    Ok(pool_depth_total::table
        .select(pool_depth_total::ready)
        .get_result(conn)
        .await?)
}
