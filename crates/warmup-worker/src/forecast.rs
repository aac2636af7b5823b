//! The forecast of recurring demand (`pool.forecast`): each template's own
//! history, as a profile by 15-minute slot of the week on the wall clock of
//! `pool.forecast_time_zone` (`prewarm_store::db::demand_profile`), says how
//! many designs a coming slot brought in past weeks. The sizer takes the larger of the current
//! demand and the forecast for the slots from now to one lead time ahead
//! (the measured refill time plus a pass), so a pool is grown before a
//! recurring peak, not by its first misses.
//!
//! The profile is built once from the designs table (the weeks of
//! `pool.forecast_weeks` before the sizer's read position), then kept by the
//! sizer's passes in the transaction that moves its cursor. The `forecast`
//! cursor records the profile's first week, how far it has read and its
//! zone: a profile left behind (the forecast switched off for a while, or a
//! replica without it) or counted on another zone's clock is rebuilt whole,
//! never counted twice or with a gap (docs/design.md, "Local time", says
//! how replicas of two zones at once may mix them until the next rebuild). A build
//! that fails is retried after [`RETRY_BUILD`]; meanwhile the sizer plans
//! without a forecast.

use std::collections::HashMap;

use prewarm_store::db::demand_profile::{self, Profile, ProfileRow, Tz, SLOT_SECS};
use prewarm_store::db::{cursors, DbConn, StoreError};
use shared_domain::ids::TemplateId;

/// The cursor recording that the profile was built, and its first week.
pub const CURSOR: &str = "forecast";
/// Most templates one pass forecasts for (the largest first).
const MAX_DUE: i64 = 10_000;
/// How long after a failed build the next is tried.
pub const RETRY_BUILD: std::time::Duration = std::time::Duration::from_secs(600);

/// The marker's text: the profile's first week, the sizer position it has
/// read the designs up to, and the zone it counts in.
pub fn marker_of(first_week: i32, through: &str, zone: Tz) -> String {
    format!("{first_week} {through} {}", zone.name())
}

/// A marker's first week, position and zone (a marker without a zone
/// predates zones: UTC).
fn parse_marker(text: &str) -> Option<(i32, &str, &str)> {
    let mut parts = text.splitn(3, ' ');
    let first = parts.next()?.parse().ok()?;
    let through = parts.next()?;
    Some((first, through, parts.next().unwrap_or("UTC")))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecaster {
    pub profile: Profile,
    /// Weeks of designs the profile is built from.
    pub weeks: u32,
}

impl Forecaster {
    /// The profile's first week, building it first (from the designs up
    /// to `through`, the sizer's read position -- later designs are its
    /// passes' to add) unless the marker says it has read exactly that far
    /// in this zone: never built, left behind while the forecast was off
    /// (or by a replica without it), or counted in another zone, it is
    /// rebuilt whole. Fails, leaving the passes without a forecast, when
    /// Postgres does not know the zone. `None`: the sizer's cursor
    /// (`reader`: its name and this pass's `from`) moved on meanwhile -- a
    /// pass of another replica committed, this one will be dropped -- so
    /// nothing was rebuilt (see [`demand_profile::rebuild_recorded`]).
    pub async fn ensure_built(
        &self,
        conn: &mut DbConn,
        through: &str,
        reader: (&str, &str),
    ) -> Result<Option<i32>, StoreError> {
        demand_profile::check_zone(conn, self.profile.zone.name()).await?;
        let marker = cursors::get(conn, CURSOR).await?;
        if let Some((first, read, zone)) = marker.as_deref().and_then(parse_marker) {
            if read == through && zone == self.profile.zone.name() {
                return Ok(Some(first));
            }
        }
        let upto: f64 = through.parse().unwrap_or(0.0);
        let first = self.profile.week(upto) - self.weeks as i32;
        let weeks = self.weeks as i32;
        let started = std::time::Instant::now();
        let rows = demand_profile::rebuild_recorded(
            conn,
            upto,
            weeks,
            &self.profile,
            (CURSOR, &marker_of(first, through, self.profile.zone)),
            reader,
        )
        .await?;
        let Some(rows) = rows else {
            return Ok(None);
        };
        tracing::info!(
            rows,
            weeks,
            zone = self.profile.zone.name(),
            took = ?started.elapsed(),
            "forecast: demand profile built from the designs table"
        );
        Ok(Some(first))
    }

    /// The local slots from `now` to `now + lead` (seconds since the
    /// epoch), at most a week's. Stepped in UTC: an hour the clocks skip
    /// has no slot to read, an hour they repeat reads its slots once.
    pub fn slots(&self, now: f64, lead: f64) -> Vec<i16> {
        let lead = lead.clamp(0.0, SLOT_SECS * demand_profile::SLOTS as f64);
        let mut slots = Vec::new();
        let mut t = now;
        loop {
            let slot = self.profile.slot(t);
            if !slots.contains(&slot) {
                slots.push(slot);
            }
            if t >= now + lead || slots.len() >= demand_profile::SLOTS as usize {
                break;
            }
            t = (t + SLOT_SECS).min(now + lead);
        }
        slots
    }

    /// The profile rows of the coming slots that may forecast at least
    /// `min_rate` designs/s (a row's level is at most its rate times a slot
    /// at the smallest weight, `alpha`).
    pub async fn due(
        &self,
        conn: &mut DbConn,
        now: f64,
        lead: f64,
        min_rate: f64,
    ) -> Result<Vec<ProfileRow>, StoreError> {
        let min_count = min_rate * SLOT_SECS * self.profile.alpha;
        let now_week = self.profile.week(now);
        demand_profile::due(conn, &self.slots(now, lead), min_count, now_week, MAX_DUE).await
    }

    /// Each template's forecast rate (designs/s) at `now`: the largest over
    /// its due rows. `created_at` gives each template's first week (weeks
    /// before it, or before the profile's `first_week`, were not observed
    /// and weigh nothing).
    pub fn rates(
        &self,
        rows: &[ProfileRow],
        now: f64,
        first_week: i32,
        created_at: &HashMap<TemplateId, f64>,
    ) -> HashMap<TemplateId, f64> {
        let now_week = self.profile.week(now);
        let mut out: HashMap<TemplateId, f64> = HashMap::new();
        for row in rows {
            let id = TemplateId(row.template_id);
            let Some(created) = created_at.get(&id) else {
                continue; // deleted meanwhile
            };
            let since = self.profile.week(*created).max(first_week);
            let Some(rate) = self.profile.rate(row, now_week, now_week - since) else {
                continue;
            };
            let best = out.entry(id).or_insert(0.0);
            *best = best.max(rate);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forecaster(zone: Tz) -> Forecaster {
        Forecaster {
            profile: Profile { alpha: 0.5, zone },
            weeks: 4,
        }
    }

    #[test]
    fn the_coming_slots_cover_now_to_the_lead() {
        let f = forecaster(Tz::UTC);
        let t = 10.0 * SLOT_SECS + 850.0; // 50 s before slot 11
        assert_eq!(f.slots(t, 10.0), vec![10]);
        assert_eq!(f.slots(t, 60.0), vec![10, 11]);
        assert_eq!(f.slots(t, 2.0 * SLOT_SECS), vec![10, 11, 12]);
        assert_eq!(f.slots(t, 1e12).len(), 672, "a week at most");
        // An hour ahead of UTC, the same instant is four slots later.
        let paris = forecaster(Tz::Europe__Paris);
        assert_eq!(paris.slots(t, 60.0), vec![14, 15]);
    }

    #[test]
    fn the_slots_around_a_clock_change_are_local() {
        let f = forecaster(Tz::Europe__Berlin);
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp() as f64;
        let slot = |local: &str| f.profile.slot(at(local));
        // Autumn: at 01:00Z the clocks go back from 03:00 CEST to 02:00
        // CET, so 00:50Z and 01:50Z are both 02:50 local, one slot.
        let (first, again) = (at("2026-10-25T00:50:00Z"), at("2026-10-25T01:50:00Z"));
        assert_eq!(f.profile.slot(first), f.profile.slot(again));
        let slots = f.slots(first, 3600.0 + 600.0);
        // 70 minutes from 02:50 CEST: 02:45, (back) 02:00, 02:15, 02:30,
        // 02:45 again, 03:00 -- five slots, 02:45 read once.
        assert_eq!(slots.len(), 5, "{slots:?}");
        assert_eq!(slots[0], slot("2026-10-25T02:50:00+02:00"));
        // Spring: at 01:00Z the clocks jump from 02:00 to 03:00; ten
        // minutes before it, the next slot is 03:00's.
        let before = at("2026-03-29T00:50:00Z");
        assert_eq!(
            f.slots(before, 600.0),
            vec![
                slot("2026-03-29T01:50:00+01:00"),
                slot("2026-03-29T03:00:00+02:00")
            ]
        );
    }

    #[test]
    fn markers_name_their_zone() {
        let m = marker_of(7, "123.5", Tz::Europe__Berlin);
        assert_eq!(parse_marker(&m), Some((7, "123.5", "Europe/Berlin")));
        assert_eq!(parse_marker("7 123.5"), Some((7, "123.5", "UTC")));
    }

    #[test]
    fn a_template_forecasts_from_the_weeks_it_was_seen() {
        let f = forecaster(Tz::UTC);
        let id = uuid::Uuid::from_u128(7);
        let week = 7.0 * 24.0 * 3600.0;
        let now = 100.0 * week + 5.0;
        // 90 designs in slot 0 in each of the last two weeks (the template
        // was created two weeks ago): level 0.5*90 + 0.25*90.
        let row = ProfileRow {
            template_id: id,
            slot: 0,
            week: 100,
            current: 0.0,
            level: 67.5,
        };
        let created = HashMap::from([(TemplateId(id), 98.0 * week + 1.0)]);
        let rates = f.rates(std::slice::from_ref(&row), now, 96, &created);
        let rate = rates[&TemplateId(id)];
        assert!((rate - 90.0 / SLOT_SECS).abs() < 1e-9, "{rate}");
        // Created before the profile began: four weeks weigh, and the same
        // level reads as less.
        let old = HashMap::from([(TemplateId(id), 50.0 * week)]);
        let rates = f.rates(&[row], now, 96, &old);
        assert!(rates[&TemplateId(id)] < rate);
    }
}
