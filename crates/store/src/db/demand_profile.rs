//! `demand_profile`: each template's seasonal demand, by 15-minute slot of
//! the week on one zone's wall clock ([`Profile::zone`],
//! `pool.forecast_time_zone`), for the sizer's forecast. Slots and weeks
//! are counted in that zone's local time, so a peak at 09:00 local stays in
//! its slot when the clocks change: in UTC it would move by an hour and be
//! grown for an hour too late (or early) until the weeks after forgot it. Per (template, slot): the
//! designs made in the slot during `week` (`current`), and `level`, the
//! exponentially weighted mean (weight [`Profile::alpha`] on the newest) of
//! the counts of the finished weeks before it.
//!
//! Kept incrementally: each sizer pass adds the designs it read
//! ([`absorb`], in the transaction that moves its cursor, so every design
//! counts once); a week rolling over folds `current` into `level` on the
//! next write of that row, and readers roll rows they read forward
//! ([`Profile::rate`]). Built once from the designs table ([`rebuild`]),
//! so a new deployment forecasts from the history it already has.
//!
//! The forecast reads only the coming slots' rows above a threshold (an
//! index range on `(slot, greatest(level, current))`), never the catalogue.

use chrono::{Offset, TimeZone};
/// The zones a [`Profile`] counts in (`chrono-tz`'s IANA database).
pub use chrono_tz::Tz;
use diesel::prelude::*;
use diesel::sql_types::{Array, Double, Integer, SmallInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::demand_profile;
use super::StoreError;

/// Seconds in a slot, and slots in a week.
pub const SLOT_SECS: f64 = 900.0;
pub const SLOTS: i64 = 672;
const WEEK_SECS: f64 = SLOT_SECS * SLOTS as f64;

/// The slot of the week of `secs` (local seconds since the local epoch:
/// [`Profile::local`]).
pub fn slot_of(secs: f64) -> i16 {
    ((secs.rem_euclid(WEEK_SECS)) / SLOT_SECS).floor() as i16
}

/// Weeks since the epoch of `secs` (local seconds, as [`slot_of`]).
pub fn week_of(secs: f64) -> i32 {
    (secs / WEEK_SECS).floor() as i32
}

/// One stored row.
#[derive(Debug, Clone, PartialEq, QueryableByName, Queryable, Selectable)]
#[diesel(table_name = demand_profile)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ProfileRow {
    #[diesel(sql_type = SqlUuid)]
    pub template_id: Uuid,
    #[diesel(sql_type = SmallInt)]
    pub slot: i16,
    #[diesel(sql_type = Integer)]
    pub week: i32,
    #[diesel(sql_type = Double)]
    pub current: f64,
    #[diesel(sql_type = Double)]
    pub level: f64,
}

/// How designs are counted into rows and rows read into a rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Weight of the newest finished week in `level` (0 < alpha <= 1).
    pub alpha: f64,
    /// The zone whose wall clock the slots and weeks follow.
    pub zone: Tz,
}

impl Profile {
    /// `secs` (seconds since the epoch, UTC) as seconds since the epoch on
    /// the zone's wall clock: what the SQL's `created_at AT TIME ZONE`
    /// gives, for [`slot_of`] and [`week_of`].
    pub fn local(&self, secs: f64) -> f64 {
        let offset = chrono::DateTime::from_timestamp(secs.floor() as i64, 0).map_or(0, |t| {
            self.zone
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        });
        secs + f64::from(offset)
    }

    /// The local slot of the week of `secs` (UTC seconds).
    pub fn slot(&self, secs: f64) -> i16 {
        slot_of(self.local(secs))
    }

    /// The local week of `secs` (UTC seconds).
    pub fn week(&self, secs: f64) -> i32 {
        week_of(self.local(secs))
    }

    /// `level` rolled forward to week `now_week`: the finished weeks'
    /// weighted mean, the row's own `current` week folded in if it is over.
    pub fn level_at(&self, row: &ProfileRow, now_week: i32) -> f64 {
        let gap = now_week - row.week;
        if gap <= 0 {
            return row.level;
        }
        let keep = 1.0 - self.alpha;
        row.level * keep.powi(gap) + self.alpha * row.current * keep.powi(gap - 1)
    }

    /// Designs per second the row forecasts for its slot in week
    /// `now_week`, for a template with `weeks` finished weeks of history:
    /// the weighted mean is divided by its weights' sum `1 - (1-alpha)^weeks`
    /// (a template with two weeks of history is not forecast at a fraction
    /// of its demand because the weights of weeks it did not exist in are
    /// missing). `None` without a finished week.
    pub fn rate(&self, row: &ProfileRow, now_week: i32, weeks: i32) -> Option<f64> {
        if weeks < 1 {
            return None;
        }
        let weight = 1.0 - (1.0 - self.alpha).powi(weeks.min(520));
        Some(self.level_at(row, now_week) / weight.max(f64::MIN_POSITIVE) / SLOT_SECS)
    }
}

/// Adds the designs made in `(after, upper]` (seconds since the epoch) to
/// their templates' local slots: one statement over the range of the
/// designs' `(created_at, template_id)` index the sizer reads anyway. A row
/// whose week is over folds its count into `level` first. Call it in the
/// transaction that moves the reader's cursor.
pub async fn absorb(
    conn: &mut AsyncPgConnection,
    after: f64,
    upper: f64,
    profile: &Profile,
) -> Result<usize, diesel::result::Error> {
    // Grouped by (template, slot) with the latest week: two weeks of one
    // slot in one range (a range over a week long) would otherwise be two
    // rows for one key; their counts are merged into the later week.
    diesel::sql_query(
        "INSERT INTO demand_profile AS p (template_id, slot, week, current, level)
         SELECT template_id, (l % 604800 / 900)::smallint AS slot, max((l / 604800)::int), count(*)::float8, 0
           FROM (SELECT template_id, floor(extract(epoch FROM created_at AT TIME ZONE $4))::bigint AS l
                   FROM designs
                  WHERE created_at > to_timestamp($1) AND created_at <= to_timestamp($2)) d
          GROUP BY template_id, slot
         ON CONFLICT (template_id, slot) DO UPDATE SET
           level = CASE WHEN p.week >= EXCLUDED.week THEN p.level
                        ELSE p.level * power(1 - $3, EXCLUDED.week - p.week)
                             + $3 * p.current * power(1 - $3, EXCLUDED.week - p.week - 1) END,
           current = CASE WHEN p.week >= EXCLUDED.week THEN p.current + EXCLUDED.current
                          ELSE EXCLUDED.current END,
           week = greatest(p.week, EXCLUDED.week)",
    )
    .bind::<Double, _>(after)
    .bind::<Double, _>(upper)
    .bind::<Double, _>(profile.alpha)
    .bind::<Text, _>(profile.zone.name())
    .execute(conn)
    .await
}

/// Rebuilds every row from the designs of the `weeks` local weeks before
/// `upto` (seconds since the epoch) and of `upto`'s own week: a finished
/// week `w` weighs `alpha (1-alpha)^(W-1-w)` in `level` (`W` = `upto`'s
/// week, the same mean [`absorb`] keeps), `upto`'s week is `current`. One
/// aggregate over those weeks of designs, run once (the sizer records that
/// it ran); designs after `upto` are the sizer's to [`absorb`].
pub async fn rebuild(
    conn: &mut AsyncPgConnection,
    upto: f64,
    weeks: i32,
    profile: &Profile,
) -> Result<usize, diesel::result::Error> {
    let now_week = profile.week(upto);
    let first_week = now_week - weeks.max(0);
    // The first local week begins within a day of the same instant in UTC
    // (offsets are under 15 h): the index range starts a day early and the
    // weeks before the first are left out by their local week.
    let from = f64::from(first_week) * WEEK_SECS - 86_400.0;
    diesel::delete(demand_profile::table).execute(conn).await?;
    diesel::sql_query(
        "INSERT INTO demand_profile (template_id, slot, week, current, level)
         SELECT template_id, slot, $3,
                coalesce(sum(n) FILTER (WHERE week = $3), 0),
                coalesce(sum(n * $4 * power(1 - $4, $3 - 1 - week)) FILTER (WHERE week < $3), 0)
           FROM (SELECT template_id, (l % 604800 / 900)::smallint AS slot, (l / 604800)::int AS week,
                        count(*)::float8 AS n
                   FROM (SELECT template_id, floor(extract(epoch FROM created_at AT TIME ZONE $5))::bigint AS l
                           FROM designs
                          WHERE created_at >= to_timestamp($1) AND created_at <= to_timestamp($2)) d
                  WHERE l >= $6::bigint * 604800
                  GROUP BY 1, 2, 3) w
          GROUP BY template_id, slot",
    )
    .bind::<Double, _>(from)
    .bind::<Double, _>(upto)
    .bind::<Integer, _>(now_week)
    .bind::<Double, _>(profile.alpha)
    .bind::<Text, _>(profile.zone.name())
    .bind::<Integer, _>(first_week)
    .execute(conn)
    .await
}

/// [`rebuild`] and a cursor recording it (`marker`: name, position), in
/// one transaction: a crash between them cannot count history twice.
///
/// Only while the pass that reads on from the rebuild is still where it
/// read from (`reader`: its cursor's name and the position it read, empty
/// for none): its cursor row is locked for the transaction, so another
/// pass that moved it meanwhile -- and absorbed the designs after it into
/// the profile -- is not undone by a rebuild up to the old position (a gap
/// in the history), and one moving it now waits for the rebuild, then
/// absorbs on from it. `None`: the reader had moved on; nothing written.
pub async fn rebuild_recorded(
    conn: &mut AsyncPgConnection,
    upto: f64,
    weeks: i32,
    profile: &Profile,
    marker: (&str, &str),
    reader: (&str, &str),
) -> Result<Option<usize>, StoreError> {
    use diesel_async::AsyncConnection;
    let (name, position) = (marker.0.to_string(), marker.1.to_string());
    let (reader, read) = (reader.0.to_string(), reader.1.to_string());
    let profile = *profile;
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let at: Option<String> = super::schema::background_cursors::table
                .find(&reader)
                .select(super::schema::background_cursors::position)
                .for_update()
                .get_result(conn)
                .await
                .optional()?;
            if at.as_deref().unwrap_or("") != read {
                return Ok(None);
            }
            let rows = rebuild(conn, upto, weeks, &profile).await?;
            super::cursors::set_in(conn, &name, &position).await?;
            Ok(Some(rows))
        })
        .await?)
}

/// The rows of `slots` whose level or current count is at least
/// `min_count` designs a slot and that were written in the last
/// [`STALE_WEEKS`] weeks before `now_week` (at most `limit`, largest first):
/// the templates a coming slot may need a larger pool for. An index range.
/// A row not written for longer has decayed below a useful rate
/// (`(1-alpha)^8`, under 0.4 % at the default 0.5), whatever it stores.
pub async fn due(
    conn: &mut AsyncPgConnection,
    slots: &[i16],
    min_count: f64,
    now_week: i32,
    limit: i64,
) -> Result<Vec<ProfileRow>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT template_id, slot, week, current, level FROM demand_profile
          WHERE slot = ANY($1) AND greatest(level, current) >= $2 AND week >= $3
          ORDER BY greatest(level, current) DESC LIMIT $4",
    )
    .bind::<Array<SmallInt>, _>(slots)
    .bind::<Double, _>(min_count)
    .bind::<Integer, _>(now_week - STALE_WEEKS)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Weeks after which a row no longer counts as due.
pub const STALE_WEEKS: i32 = 8;

/// Whether Postgres knows `zone` (`AT TIME ZONE` fails on a name its time
/// zone database lacks): checked before a profile is used, so a zone it
/// does not know stops the forecast, not the sizer's passes that absorb.
pub async fn check_zone(conn: &mut AsyncPgConnection, zone: &str) -> Result<(), StoreError> {
    diesel::sql_query("SELECT now() AT TIME ZONE $1")
        .bind::<Text, _>(zone)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets every row (forecasting switched off: a later start rebuilds).
pub async fn clear(conn: &mut AsyncPgConnection) -> Result<(), StoreError> {
    diesel::delete(demand_profile::table).execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(week: i32, current: f64, level: f64) -> ProfileRow {
        ProfileRow {
            template_id: Uuid::nil(),
            slot: 0,
            week,
            current,
            level,
        }
    }

    #[test]
    fn slots_and_weeks_share_one_origin() {
        assert_eq!(slot_of(0.0), 0);
        assert_eq!(slot_of(899.9), 0);
        assert_eq!(slot_of(900.0), 1);
        assert_eq!(slot_of(WEEK_SECS - 1.0), 671);
        assert_eq!(slot_of(WEEK_SECS), 0);
        assert_eq!(week_of(WEEK_SECS - 1.0), 0);
        assert_eq!(week_of(WEEK_SECS), 1);
        // The SQL's integer arithmetic agrees at a real instant.
        let t = 1_796_601_600.0 + 3.0 * 3600.0 + 1234.0;
        assert_eq!(
            i64::from(slot_of(t)),
            (t.floor() as i64 % 604_800) / 900,
            "as absorb computes it"
        );
    }

    #[test]
    fn local_time_follows_the_zones_clock_change() {
        let berlin = Profile {
            alpha: 0.5,
            zone: Tz::Europe__Berlin,
        };
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp() as f64;
        // Clocks went forward at 2026-03-29T01:00Z: 09:10 local was 08:10Z
        // the Monday before and 07:10Z the Monday after, one local slot.
        let (before, after) = (at("2026-03-23T08:10:00Z"), at("2026-03-30T07:10:00Z"));
        assert_eq!(berlin.local(before) - before, 3600.0);
        assert_eq!(berlin.local(after) - after, 7200.0);
        assert_eq!(berlin.slot(before), berlin.slot(after));
        assert_eq!(berlin.week(after), berlin.week(before) + 1);
        let utc = Profile {
            zone: Tz::UTC,
            ..berlin
        };
        assert_ne!(utc.slot(before), utc.slot(after), "in UTC the peak moves");
        assert_eq!(utc.local(before), before);
        // The second before and the instant of the change.
        let change = at("2026-03-29T01:00:00Z");
        assert_eq!(berlin.local(change - 1.0) - (change - 1.0), 3600.0);
        assert_eq!(berlin.local(change) - change, 7200.0);
    }

    #[test]
    fn a_steady_weekly_peak_is_forecast_at_its_rate() {
        let p = Profile {
            alpha: 0.5,
            zone: Tz::UTC,
        };
        // 90 designs in the slot every week, for 2 finished weeks, as the
        // rebuild stores them in week 10: level = 0.5*90 + 0.25*90.
        let r = row(10, 0.0, 0.5 * 90.0 + 0.25 * 90.0);
        let rate = p.rate(&r, 10, 2).unwrap();
        assert!((rate - 90.0 / SLOT_SECS).abs() < 1e-12, "{rate}");
        // A week later, the row not written meanwhile (no design in the
        // slot): the weighted mean decays, the weights' sum grows.
        let later = p.rate(&r, 11, 3).unwrap();
        assert!(later < rate, "an empty week lowers the forecast");
        assert_eq!(p.rate(&r, 10, 0), None, "no finished week, no forecast");
    }

    #[test]
    fn a_row_rolls_its_current_week_in_once_it_is_over() {
        let p = Profile {
            alpha: 0.5,
            zone: Tz::UTC,
        };
        let r = row(10, 40.0, 20.0);
        assert_eq!(p.level_at(&r, 10), 20.0);
        assert_eq!(p.level_at(&r, 11), 0.5 * 20.0 + 0.5 * 40.0);
        assert_eq!(p.level_at(&r, 12), 0.25 * 20.0 + 0.25 * 40.0);
    }
}
