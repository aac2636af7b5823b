//! Which S3 objects the ledger still needs, asked one page of keys at a
//! time, and `pending_copies`: the announcement of objects about to be
//! written for a row that is not committed yet -- the cold path's copies
//! (owner: the design's id) and uploaded template images (owner: the
//! upload's id).
//!
//! An object is referenced when its key belongs to a design (a cold
//! design's own row, or the pool item a warm design owns), to a live
//! (`copying` or `ready`) pool item, to a live template (any version), or to
//! a pending copy. Every path that creates an object records its key first
//! (a pool item is reserved, a pending copy announced) and every move
//! between these sets happens in one transaction (a claim turns a ready
//! item's keys into a design's; a cold design turns its pending keys into a
//! design's; an upload's keys are a template's from the commit that saves
//! them, before its announcement is dropped). So [`referenced`], one
//! statement over one snapshot, never misses a key that is in use, and a key
//! it does not return for a listed object is garbage for good.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::pending_copies;
use super::StoreError;

#[derive(diesel::QueryableByName)]
struct Key {
    #[diesel(sql_type = Text)]
    object_key: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The keys among `keys` that a design, a live pool item or a pending copy
/// holds (one statement, so one consistent snapshot).
pub async fn referenced(
    conn: &mut AsyncPgConnection,
    keys: &[String],
) -> Result<HashSet<String>, StoreError> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    // A pool key names its owner (template, item, position): it is probed by
    // the item's primary key. Anything else under `pool/` that is not in
    // the key scheme's exact form owns nothing (NULLs: no probe matches).
    let owners: Vec<_> = keys
        .iter()
        .map(|k| shared_domain::object_keys::parse_pool_image(k))
        .collect();
    let templates: Vec<Option<Uuid>> = owners.iter().map(|o| o.map(|(t, _, _)| t.0)).collect();
    let items: Vec<Option<Uuid>> = owners.iter().map(|o| o.map(|(_, i, _)| i.0)).collect();
    let positions: Vec<Option<i32>> = owners.iter().map(|o| o.map(|(_, _, p)| p)).collect();
    // Per key, index probes, stopping at the first hit (a lateral subquery
    // with LIMIT: the planner cannot turn it into a scan of a whole table),
    // so a page costs its keys' probes whatever the tables hold; one
    // statement, so one snapshot; no JIT (`jit_off`).
    let query = diesel::sql_query(
        "SELECT u.k AS object_key
           FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::int[]) AS u(k, tpl, item, pos),
         LATERAL (
             (SELECT 1 FROM design_images d WHERE d.object_key = u.k LIMIT 1)
             UNION ALL
             (SELECT 1 FROM pool_items p
               WHERE p.id = u.item AND p.template_id = u.tpl AND u.pos < p.image_count
                 AND (p.state IN ('copying', 'ready')
                      OR EXISTS (SELECT 1 FROM designs x WHERE x.pool_item_id = p.id))
               LIMIT 1)
             UNION ALL
             (SELECT 1 FROM template_images t JOIN templates tp ON tp.id = t.template_id
               WHERE t.object_key = u.k AND tp.deleted_at IS NULL LIMIT 1)
             UNION ALL
             (SELECT 1 FROM pending_copies c WHERE c.object_key = u.k LIMIT 1)
             LIMIT 1) AS held",
    )
    .bind::<Array<Text>, _>(keys)
    .bind::<Array<Nullable<SqlUuid>>, _>(templates)
    .bind::<Array<Nullable<SqlUuid>>, _>(items)
    .bind::<Array<Nullable<Integer>>, _>(positions);
    let rows: Vec<Key> = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            super::jit_off(conn).await?;
            query.load(conn).await
        })
        .await?;
    Ok(rows.into_iter().map(|r| r.object_key).collect())
}

/// Announces objects about to be written for `owner` (a cold design's id,
/// an upload's id); they count as referenced until the owner settles or
/// forgets them, or `ttl` passes.
pub async fn announce(
    conn: &mut AsyncPgConnection,
    owner: Uuid,
    keys: &[String],
    ttl: Duration,
) -> Result<(), StoreError> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(300));
    diesel::sql_query(
        "INSERT INTO pending_copies (object_key, design_id, expires_at)
         SELECT k, $2, $3 FROM unnest($1::text[]) AS k",
    )
    .bind::<Array<Text>, _>(keys)
    .bind::<SqlUuid, _>(owner)
    .bind::<Timestamptz, _>(super::now() + ttl)
    .execute(conn)
    .await?;
    Ok(())
}

/// Extends every standing announcement of `owner` to `ttl` from now (an
/// upload renews its earlier images' announcements as each new one starts,
/// so a long body with many images never outlives the first one's). An
/// announcement already expired is not revived: its objects may be gone,
/// and the save that settles them will see it missing.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    owner: Uuid,
    ttl: Duration,
) -> Result<(), StoreError> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(300));
    diesel::update(
        pending_copies::table
            .filter(pending_copies::design_id.eq(owner))
            .filter(pending_copies::expires_at.ge(diesel::dsl::now)),
    )
    .set(pending_copies::expires_at.eq(super::now() + ttl))
    .execute(conn)
    .await?;
    Ok(())
}

/// In the transaction that commits their owner (a cold design, a saved
/// template): takes over its pending copies; returns how many were still
/// standing (fewer than announced: some expired and may have been
/// collected, so the owner must not be recorded).
pub async fn settle(
    conn: &mut AsyncPgConnection,
    owner: Uuid,
) -> Result<usize, diesel::result::Error> {
    // Only announcements still standing count: an expired one is refused
    // whether or not a GC pass has purged it (and collected its objects)
    // yet, so the outcome does not hang on the collector's timing.
    let n: Count = diesel::sql_query(
        "WITH gone AS (DELETE FROM pending_copies WHERE design_id = $1 RETURNING expires_at)
         SELECT count(*) FILTER (WHERE expires_at >= now()) AS n FROM gone",
    )
    .bind::<SqlUuid, _>(owner)
    .get_result(conn)
    .await?;
    Ok(usize::try_from(n.n).unwrap_or(0))
}

/// Drops an announcement: its objects were deleted (a failed design or
/// upload), or are held by a committed row now (a saved template).
pub async fn forget(conn: &mut AsyncPgConnection, owner: Uuid) -> Result<(), StoreError> {
    settle(conn, owner).await?;
    Ok(())
}

/// Deletes announcements past their expiry (their requests died or gave up);
/// their objects are then unreferenced. Returns how many.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> Result<usize, StoreError> {
    let n = diesel::delete(
        pending_copies::table.filter(pending_copies::expires_at.lt(diesel::dsl::now)),
    )
    .execute(conn)
    .await?;
    Ok(n)
}
