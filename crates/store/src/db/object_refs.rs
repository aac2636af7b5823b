//! Which S3 objects the ledger still needs, asked one page of keys at a
//! time, and `pending_copies`: the cold path's announcement of objects it is
//! about to copy for a design that is not committed yet.
//!
//! An object is referenced when its key belongs to a design, to a live
//! (`copying` or `ready`) pool item, or to a pending copy. Every path that
//! creates an object records its key first (a pool item is reserved, a
//! pending copy announced) and every move between these sets happens in one
//! transaction (a claim turns a ready item's keys into a design's; a cold
//! design turns its pending keys into a design's). So [`referenced`], one
//! statement over one snapshot, never misses a key that is in use, and a key
//! it does not return for a listed object is garbage for good.

use std::collections::HashSet;
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared_domain::ids::DesignId;

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
    let rows: Vec<Key> = diesel::sql_query(
        "SELECT k AS object_key FROM unnest($1::text[]) AS k
          WHERE EXISTS (SELECT 1 FROM design_images d WHERE d.object_key = k)
             OR EXISTS (SELECT 1 FROM pool_item_images i JOIN pool_items p ON p.id = i.item_id
                         WHERE i.object_key = k AND p.state IN ('copying', 'ready'))
             OR EXISTS (SELECT 1 FROM pending_copies c WHERE c.object_key = k)",
    )
    .bind::<Array<Text>, _>(keys)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.object_key).collect())
}

/// Announces the copies a cold design is about to make; they count as
/// referenced until the design commits or `ttl` passes.
pub async fn announce(
    conn: &mut AsyncPgConnection,
    design: DesignId,
    keys: &[String],
    ttl: Duration,
) -> Result<(), StoreError> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(300));
    diesel::sql_query(
        "INSERT INTO pending_copies (object_key, design_id, expires_at)
         SELECT k, $2, $3 FROM unnest($1::text[]) AS k",
    )
    .bind::<Array<Text>, _>(keys)
    .bind::<SqlUuid, _>(design.0)
    .bind::<Timestamptz, _>(super::now() + ttl)
    .execute(conn)
    .await?;
    Ok(())
}

/// In the design's transaction: takes over its pending copies; returns how
/// many were still there (fewer than announced: some expired and may have
/// been collected, so the design must not be recorded).
pub async fn settle(
    conn: &mut AsyncPgConnection,
    design: DesignId,
) -> Result<usize, diesel::result::Error> {
    let n: Count = diesel::sql_query(
        "WITH gone AS (DELETE FROM pending_copies WHERE design_id = $1 RETURNING 1)
         SELECT count(*) AS n FROM gone",
    )
    .bind::<SqlUuid, _>(design.0)
    .get_result(conn)
    .await?;
    Ok(usize::try_from(n.n).unwrap_or(0))
}

/// Drops a failed design's announcement (its copies were deleted).
pub async fn forget(conn: &mut AsyncPgConnection, design: DesignId) -> Result<(), StoreError> {
    settle(conn, design).await?;
    Ok(())
}

/// Deletes announcements past their expiry (their requests died or gave up);
/// their objects are then unreferenced. Returns how many.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> Result<usize, StoreError> {
    let n = diesel::sql_query("DELETE FROM pending_copies WHERE expires_at < now()")
        .execute(conn)
        .await?;
    Ok(n)
}
