//! `pool_live` and `pool_live_total`: the objects of each template's live
//! (`copying` + `ready`) items as its last budgeted reserve counted them, and
//! their sum. A reserve under `pool.budget_objects` checks the budget against
//! these instead of counting every live item of every template, so its cost
//! does not grow with the pooled items.
//!
//! Why the sum bounds the live items from above: a template's row is exact
//! when its reserve commits (counted under the template's lock) and can only
//! be too high afterwards, because only a reserve adds live items, while
//! claims, discards and expired leases remove them without touching the row.
//! So the budget holds. A slot that a claim frees is seen at that template's
//! next reserve, which the claim's own warm-up request starts.
//!
//! Workers without a budget do not keep the rows; a worker started with one
//! recounts them all once ([`recount`]). Budgeted reserves serialize on the
//! total's row lock, each for O(1) work.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::TemplateId;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Locks the total until the end of the transaction (serializing budgeted
/// reserves) and returns the recorded live objects of every template but
/// `template`. `None` when the total's row is missing ([`recount`] makes it).
///
/// Two statements: the template's row is read after the lock is granted, in
/// a snapshot of its own, so a [`recount`] that held the lock is seen whole
/// (one statement would take the total after the wait but the row from
/// before it).
pub async fn others(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
) -> Result<Option<i64>, diesel::result::Error> {
    let total: Option<Count> =
        diesel::sql_query("SELECT objects AS n FROM pool_live_total WHERE id FOR UPDATE")
            .get_result(conn)
            .await
            .optional()?;
    let Some(total) = total else {
        return Ok(None);
    };
    let mine: Option<Count> =
        diesel::sql_query("SELECT objects AS n FROM pool_live WHERE template_id = $1")
            .bind::<SqlUuid, _>(template.0)
            .get_result(conn)
            .await
            .optional()?;
    Ok(Some(total.n - mine.map_or(0, |m| m.n)))
}

/// Records `template`'s `live` objects and sets the total to `others + live`
/// (`others` from [`others`], in the same transaction).
pub async fn record(
    conn: &mut AsyncPgConnection,
    template: TemplateId,
    live: i64,
    others: i64,
) -> Result<(), diesel::result::Error> {
    if live > 0 {
        diesel::sql_query(
            "INSERT INTO pool_live (template_id, objects) VALUES ($1, $2)
             ON CONFLICT (template_id) DO UPDATE SET objects = EXCLUDED.objects",
        )
        .bind::<SqlUuid, _>(template.0)
        .bind::<BigInt, _>(live)
        .execute(conn)
        .await?;
    } else {
        diesel::sql_query("DELETE FROM pool_live WHERE template_id = $1")
            .bind::<SqlUuid, _>(template.0)
            .execute(conn)
            .await?;
    }
    diesel::sql_query("UPDATE pool_live_total SET objects = $1 WHERE id")
        .bind::<BigInt, _>(others + live)
        .execute(conn)
        .await?;
    Ok(())
}

/// Recounts every template's live objects from the ledger (O(live items), once
/// at the start of a worker with a budget), under the total's lock, so no
/// budgeted reserve is between its check and its commit meanwhile. Returns
/// the total.
pub async fn recount(conn: &mut AsyncPgConnection) -> Result<i64, diesel::result::Error> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query(
            "INSERT INTO pool_live_total (id, objects) VALUES (TRUE, 0) ON CONFLICT (id) DO NOTHING",
        )
        .execute(conn)
        .await?;
        diesel::sql_query("SELECT objects AS n FROM pool_live_total WHERE id FOR UPDATE")
            .get_result::<Count>(conn)
            .await?;
        diesel::sql_query("DELETE FROM pool_live").execute(conn).await?;
        diesel::sql_query(
            "INSERT INTO pool_live (template_id, objects)
             SELECT template_id, sum(image_count) FROM pool_items
              WHERE state IN ('copying', 'ready') GROUP BY template_id
             HAVING sum(image_count) > 0",
        )
        .execute(conn)
        .await?;
        let total: Count = diesel::sql_query(
            "UPDATE pool_live_total SET objects = (SELECT coalesce(sum(objects), 0) FROM pool_live)::bigint
              WHERE id RETURNING objects AS n",
        )
        .get_result(conn)
        .await?;
        Ok(total.n)
    })
    .await
}
