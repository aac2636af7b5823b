//! `background_cursors`: where a paged background pass stopped (the GC's
//! listing position, the reconciler's watermark and sweep position), so the
//! next pass -- on this replica or another after a restart -- resumes there
//! instead of starting over. Positions are opaque text to this module.

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StoreError;

#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    position: String,
}

/// The stored position of pass `name`, if any.
pub async fn get(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<String>, StoreError> {
    let rows: Vec<Position> =
        diesel::sql_query("SELECT position FROM background_cursors WHERE name = $1")
            .bind::<Text, _>(name)
            .load(conn)
            .await?;
    Ok(rows.into_iter().next().map(|r| r.position))
}

/// Stores the position of pass `name`.
pub async fn set(
    conn: &mut AsyncPgConnection,
    name: &str,
    position: &str,
) -> Result<(), StoreError> {
    Ok(set_in(conn, name, position).await?)
}

/// [`set`] inside a caller's transaction (the position commits with the
/// work it records).
pub async fn set_in(
    conn: &mut AsyncPgConnection,
    name: &str,
    position: &str,
) -> Result<(), diesel::result::Error> {
    diesel::sql_query(
        "INSERT INTO background_cursors (name, position, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
    )
    .bind::<Text, _>(name)
    .bind::<Text, _>(position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves pass `name` from position `from` (empty: never stored) to `to`,
/// inside a caller's transaction, only if it is still at `from`: whether it
/// moved. Two passes that read from the same position (a lease lost and
/// taken over mid-pass) cannot both record their work.
pub async fn advance_in(
    conn: &mut AsyncPgConnection,
    name: &str,
    from: &str,
    to: &str,
) -> Result<bool, diesel::result::Error> {
    let moved = if from.is_empty() {
        diesel::sql_query(
            "INSERT INTO background_cursors (name, position, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (name) DO NOTHING",
        )
        .bind::<Text, _>(name)
        .bind::<Text, _>(to)
        .execute(conn)
        .await?
    } else {
        diesel::sql_query(
            "UPDATE background_cursors SET position = $3, updated_at = now()
              WHERE name = $1 AND position = $2",
        )
        .bind::<Text, _>(name)
        .bind::<Text, _>(from)
        .bind::<Text, _>(to)
        .execute(conn)
        .await?
    };
    Ok(moved == 1)
}

/// Forgets the position of pass `name` (its next pass starts over).
pub async fn clear(conn: &mut AsyncPgConnection, name: &str) -> Result<(), StoreError> {
    diesel::sql_query("DELETE FROM background_cursors WHERE name = $1")
        .bind::<Text, _>(name)
        .execute(conn)
        .await?;
    Ok(())
}
