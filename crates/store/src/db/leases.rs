//! `singleton_leases`: which replica runs a background pass (reconciler, GC,
//! sizer) now. A lease is taken with one conditional upsert (free, expired,
//! or already ours), renewed while the pass runs, and given back after it.
//! No session state: safe behind a transaction-pooling proxy, and a replica
//! that dies mid-pass frees its lease when it expires.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Interval, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;

#[derive(diesel::QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    #[allow(dead_code)]
    holder: String,
}

fn interval(ttl: Duration) -> diesel::data_types::PgInterval {
    diesel::data_types::PgInterval::from_microseconds(
        i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX),
    )
}

/// Takes lease `name` for `holder` for `ttl`, if it is free, expired or
/// already `holder`'s. True when `holder` holds it now.
pub async fn try_acquire(
    conn: &mut AsyncPgConnection,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let rows: Vec<Holder> = diesel::sql_query(
        "INSERT INTO singleton_leases (name, holder, expires_at) VALUES ($1, $2, now() + $3)
         ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
          WHERE singleton_leases.expires_at < now() OR singleton_leases.holder = EXCLUDED.holder
         RETURNING holder",
    )
    .bind::<Text, _>(name)
    .bind::<Text, _>(holder)
    .bind::<Interval, _>(interval(ttl))
    .load(conn)
    .await?;
    Ok(!rows.is_empty())
}

/// Extends `holder`'s lease by `ttl` from now; false if it is no longer theirs.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let n = diesel::sql_query(
        "UPDATE singleton_leases SET expires_at = now() + $3 WHERE name = $1 AND holder = $2",
    )
    .bind::<Text, _>(name)
    .bind::<Text, _>(holder)
    .bind::<Interval, _>(interval(ttl))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Gives `holder`'s lease back (another replica may take it at once).
pub async fn release(
    conn: &mut AsyncPgConnection,
    name: &str,
    holder: &str,
) -> Result<(), StoreError> {
    use super::schema::singleton_leases as leases;
    diesel::delete(
        leases::table
            .filter(leases::name.eq(name))
            .filter(leases::holder.eq(holder)),
    )
    .execute(conn)
    .await?;
    Ok(())
}
