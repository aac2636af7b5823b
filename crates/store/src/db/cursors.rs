//! `background_cursors`: where a paged background pass stopped (the GC's
//! listing position, the reconciler's watermark and sweep position), so the
//! next pass -- on this replica or another after a restart -- resumes there
//! instead of starting over. Positions are opaque text to this module.

use diesel::dsl::now;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::background_cursors as cursors;
use super::StoreError;

/// The stored position of pass `name`, if any.
pub async fn get(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(cursors::table
        .find(name)
        .select(cursors::position)
        .get_result(conn)
        .await
        .optional()?)
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
    diesel::insert_into(cursors::table)
        .values((
            cursors::name.eq(name),
            cursors::position.eq(position),
            cursors::updated_at.eq(now),
        ))
        .on_conflict(cursors::name)
        .do_update()
        .set((
            cursors::position.eq(excluded(cursors::position)),
            cursors::updated_at.eq(now),
        ))
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
        diesel::insert_into(cursors::table)
            .values((
                cursors::name.eq(name),
                cursors::position.eq(to),
                cursors::updated_at.eq(now),
            ))
            .on_conflict(cursors::name)
            .do_nothing()
            .execute(conn)
            .await?
    } else {
        diesel::update(
            cursors::table
                .filter(cursors::name.eq(name))
                .filter(cursors::position.eq(from)),
        )
        .set((cursors::position.eq(to), cursors::updated_at.eq(now)))
        .execute(conn)
        .await?
    };
    Ok(moved == 1)
}

/// Forgets the position of pass `name` (its next pass starts over).
pub async fn clear(conn: &mut AsyncPgConnection, name: &str) -> Result<(), StoreError> {
    diesel::delete(cursors::table.find(name))
        .execute(conn)
        .await?;
    Ok(())
}
