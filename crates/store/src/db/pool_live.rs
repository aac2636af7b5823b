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
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::TemplateId;

use super::schema::{pool_live, pool_live_total};

/// The total's one row has the key `TRUE`.
const TOTAL: bool = true;

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
    let total: Option<i64> = pool_live_total::table
        .find(TOTAL)
        .select(pool_live_total::objects)
        .for_update()
        .get_result(conn)
        .await
        .optional()?;
    let Some(total) = total else {
        return Ok(None);
    };
    let mine: Option<i64> = pool_live::table
        .find(template.0)
        .select(pool_live::objects)
        .get_result(conn)
        .await
        .optional()?;
    Ok(Some(total - mine.unwrap_or(0)))
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
        diesel::insert_into(pool_live::table)
            .values((
                pool_live::template_id.eq(template.0),
                pool_live::objects.eq(live),
            ))
            .on_conflict(pool_live::template_id)
            .do_update()
            .set(pool_live::objects.eq(live))
            .execute(conn)
            .await?;
    } else {
        diesel::delete(pool_live::table.find(template.0))
            .execute(conn)
            .await?;
    }
    diesel::update(pool_live_total::table.find(TOTAL))
        .set(pool_live_total::objects.eq(others + live))
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
        diesel::insert_into(pool_live_total::table)
            .values((pool_live_total::id.eq(TOTAL), pool_live_total::objects.eq(0)))
            .on_conflict(pool_live_total::id)
            .do_nothing()
            .execute(conn)
            .await?;
        pool_live_total::table
            .find(TOTAL)
            .select(pool_live_total::objects)
            .for_update()
            .get_result::<i64>(conn)
            .await?;
        diesel::delete(pool_live::table).execute(conn).await?;
        // A grouped INSERT ... SELECT with HAVING: SQL says it plainly.
        diesel::sql_query(
            "INSERT INTO pool_live (template_id, objects)
             SELECT template_id, sum(image_count) FROM pool_items
              WHERE state IN ('copying', 'ready') GROUP BY template_id
             HAVING sum(image_count) > 0",
        )
        .execute(conn)
        .await?;
        // sum(bigint) is numeric in Postgres (BigDecimal in diesel): cast
        // in SQL instead of pulling in a decimal type for one statement.
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let total = diesel::sql_query(
            "UPDATE pool_live_total SET objects = (SELECT coalesce(sum(objects), 0) FROM pool_live)::bigint
              WHERE id RETURNING objects AS n",
        )
        .get_result::<Count>(conn)
        .await?
        .n;
        Ok(total)
    })
    .await
}
