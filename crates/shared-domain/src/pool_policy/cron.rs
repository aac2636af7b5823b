//! The 5-field cron expressions of recurring pool policy windows
//! (`minute hour day-of-month month day-of-week`, the Vixie grammar) and
//! their next occurrence in a time zone.
//!
//! Hand-written rather than a crate: the grammar is small, and an
//! expression is tenant/operator input, so its length is bounded
//! ([`Cron::MAX_LEN`]) and every search is bounded ([`Cron::HORIZON_DAYS`]).
//!
//! Grammar per field: `*`, a number, `a-b`, `*/n`, `a-b/n`, and lists of
//! those joined by `,`; month names `JAN`-`DEC` and day names `SUN`-`SAT`
//! (any case) wherever a number goes; day-of-week 0-7 with 0 and 7 both
//! Sunday. Day rule (POSIX, as Vixie cron reads it): when both day fields
//! are restricted a day matches if EITHER matches; a day field that begins
//! with `*` (`*` or `*/n`) counts as unrestricted, and then a day must match
//! both. No `@daily`-style macros, no seconds, no `L`/`W`/`#`.
//!
//! Time zones (DST): the fields are local times of the window's zone. A
//! local time that does not exist (the spring-forward gap) does not fire
//! that day: `30 2 * * *` in Europe/Berlin skips the last Sunday of March.
//! A local time that exists twice (fall back) fires once, at the earlier
//! instant: every local time, `*` hours included, fires at most once.

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A parsed cron expression: one bit per value each field allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1-31.
    days: u32,
    /// Bits 1-12.
    months: u16,
    /// Bits 0-6, 0 = Sunday (7 is folded into 0).
    weekdays: u8,
    /// Day-of-month / day-of-week began with `*` (see the module docs).
    days_star: bool,
    weekdays_star: bool,
}

/// Why an expression was refused: `field` is `expression` or the name of
/// one of the five fields (`minute`, `hour`, `day-of-month`, `month`,
/// `day-of-week`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for CronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for CronError {}

/// One field's name, value range and names (the first name is `min`).
struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Spec = Spec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Spec = Spec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Spec = Spec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: Spec = Spec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl Cron {
    /// The longest expression accepted, in bytes.
    pub const MAX_LEN: usize = 128;
    /// How far [`Cron::next_after`] looks ahead before giving up.
    pub const HORIZON_DAYS: u64 = 5 * 366;

    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let whole = |reason: String| CronError {
            field: "expression",
            reason,
        };
        if text.len() > Self::MAX_LEN {
            return Err(whole(format!("is longer than {} bytes", Self::MAX_LEN)));
        }
        if !text.is_ascii() {
            return Err(whole("must be ASCII".into()));
        }
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(whole(format!(
                "has {} fields; expected 5 (minute hour day-of-month month day-of-week)",
                fields.len()
            )));
        };
        // Left to right, so the first bad field is the one named.
        let minutes = field(minute, &MINUTE)?;
        let hours = field(hour, &HOUR)?;
        let days = field(day, &DAY_OF_MONTH)?;
        let months = field(month, &MONTH)?;
        let weekdays = field(weekday, &DAY_OF_WEEK)?;
        Ok(Cron {
            minutes,
            // Each mask fits its type: the field's values are below its width.
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: ((weekdays | weekdays >> 7) & 0x7f) as u8,
            days_star: day.starts_with('*'),
            weekdays_star: weekday.starts_with('*'),
        })
    }

    /// Whether the expression fires at `local` (seconds ignored).
    pub fn matches(&self, local: NaiveDateTime) -> bool {
        self.months & (1 << local.month()) != 0
            && self.day_matches(local.date())
            && self.hours & (1 << local.hour()) != 0
            && self.minutes & (1 << local.minute()) != 0
    }

    /// Whether some date matches at all: `0 0 31 2 *` never does. With the
    /// OR rule every week has a matching day; otherwise some allowed month
    /// must have an allowed day of month (February has a 29th), and every
    /// such date falls on each weekday in some year.
    pub fn ever_fires(&self) -> bool {
        if !self.days_star && !self.weekdays_star {
            return true;
        }
        (1..=12u32).any(|month| {
            let longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
            self.months & (1 << month) != 0 && self.days & (u32::MAX >> (31 - longest)) != 0
        })
    }

    /// The first occurrence strictly after `after`, reading the fields as
    /// local times of `tz` (DST as in the module docs); `None` if there is
    /// none within [`Cron::HORIZON_DAYS`].
    ///
    /// Skips whole months and days that do not match, so a call costs at
    /// most a few thousand cheap steps, not a scan of every minute.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        let horizon = local
            .date()
            .checked_add_days(Days::new(Self::HORIZON_DAYS))?;
        let minute = TimeDelta::minutes(1);
        let mut from = local
            .with_second(0)?
            .with_nanosecond(0)?
            .checked_add_signed(minute)?;
        // Each round moves `from` forward and `next_local` stops at the
        // horizon, so this ends. It repeats only for local times in a gap
        // or fired already (the earlier pass of a repeated hour before `after`).
        loop {
            let candidate = self.next_local(from, horizon)?;
            if let Some(at) = tz.from_local_datetime(&candidate).earliest() {
                let at = at.with_timezone(&Utc);
                if at > after {
                    return Some(at);
                }
            }
            from = candidate.checked_add_signed(minute)?;
        }
    }

    /// The first matching local time at or after `from`, not after `horizon`.
    fn next_local(&self, from: NaiveDateTime, horizon: NaiveDate) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour(), from.minute());
        while date <= horizon {
            if self.months & (1 << date.month()) == 0 {
                let (year, month) = match date.month() {
                    12 => (date.year().checked_add(1)?, 1),
                    m => (date.year(), m + 1),
                };
                date = NaiveDate::from_ymd_opt(year, month, 1)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date) {
                if let Some((h, m)) = self.time_from(hour, minute) {
                    return date.and_hms_opt(h, m, 0);
                }
            }
            date = date.succ_opt()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    /// The first allowed hour:minute at or after `hour:minute` of one day.
    fn time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        let hours = u64::from(self.hours);
        let h = next_bit(hours, hour)?;
        if h == hour {
            if let Some(m) = next_bit(self.minutes, minute) {
                return Some((h, m));
            }
            let h = next_bit(hours, hour + 1)?;
            return Some((h, self.minutes.trailing_zeros()));
        }
        Some((h, self.minutes.trailing_zeros()))
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        }
    }
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let above = mask.checked_shr(from)?.checked_shl(from)?;
    (above != 0).then(|| above.trailing_zeros())
}

/// One field's mask: bit `v` set for each value `v` it allows.
fn field(text: &str, spec: &Spec) -> Result<u64, CronError> {
    let error = |reason: String| CronError {
        field: spec.name,
        reason,
    };
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(error(format!("`{text}` has an empty list item")));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (value(low, spec)?, value(high, spec)?);
            if low > high {
                return Err(error(format!("`{range}` is a reversed range")));
            }
            (low, high)
        } else {
            if step.is_some() {
                return Err(error(format!(
                    "`{item}`: a step needs `*` or a range (`*/n`, `a-b/n`)"
                )));
            }
            let v = value(range, spec)?;
            (v, v)
        };
        let step = match step {
            None => 1,
            Some(step) => {
                let span = spec.max - spec.min + 1;
                match digits(step) {
                    Some(n) if (1..=span).contains(&n) => n,
                    _ => {
                        return Err(error(format!(
                            "`{item}`: the step must be a number from 1 to {span}"
                        )))
                    }
                }
            }
        };
        for v in (low..=high).step_by(step as usize) {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

/// A number or a name within the field's range.
fn value(text: &str, spec: &Spec) -> Result<u32, CronError> {
    let error = |reason: String| CronError {
        field: spec.name,
        reason,
    };
    if let Some(i) = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(spec.min + i as u32);
    }
    match digits(text) {
        Some(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        Some(_) => Err(error(format!(
            "{text} is out of range {}-{}",
            spec.min, spec.max
        ))),
        None if spec.names.is_empty() => Err(error(format!("`{text}` is not a number"))),
        None => Err(error(format!("`{text}` is not a number or a name"))),
    }
}

/// A decimal number of at most 4 digits (longer ones are out of range).
fn digits(text: &str) -> Option<u32> {
    match text.len() {
        1..=4 if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        5.. if text.bytes().all(|b| b.is_ascii_digit()) => Some(u32::MAX),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(text: &str) -> Cron {
        Cron::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    fn next(expr: &str, after: &str, tz: &str) -> Option<DateTime<Utc>> {
        cron(expr).next_after(at(after), tz.parse().unwrap())
    }

    fn bits(mask: u64) -> Vec<u32> {
        (0..64).filter(|b| mask & (1 << b) != 0).collect()
    }

    #[test]
    fn each_form_of_the_grammar_parses_to_its_values() {
        let c = cron("*/15 9-17/4 1,15,31 jan-Mar,DEC mon-fri");
        assert_eq!(bits(c.minutes), [0, 15, 30, 45]);
        assert_eq!(bits(c.hours.into()), [9, 13, 17]);
        assert_eq!(bits(c.days.into()), [1, 15, 31]);
        assert_eq!(bits(c.months.into()), [1, 2, 3, 12]);
        assert_eq!(bits(c.weekdays.into()), [1, 2, 3, 4, 5]);
        assert!(!c.days_star && !c.weekdays_star);

        let c = cron("  5   0  *  *  0,7 ");
        assert_eq!(bits(c.minutes), [5]);
        assert_eq!(bits(c.days.into()), (1..=31).collect::<Vec<_>>());
        assert_eq!(bits(c.weekdays.into()), [0], "7 is Sunday too");
        assert!(c.days_star && !c.weekdays_star);

        assert_eq!(bits(cron("0 0 * * 5-7").weekdays.into()), [0, 5, 6]);
        assert_eq!(
            bits(cron("0 0 * * SUN-SAT").weekdays.into()),
            (0..=6).collect::<Vec<_>>()
        );
        assert_eq!(bits(cron("0 0 */10 * *").days.into()), [1, 11, 21, 31]);
        assert_eq!(bits(cron("1-59/29 0 * * *").minutes), [1, 30, 59]);
        assert!(
            cron("0 0 */2 * *").days_star,
            "a `*/n` day field counts as `*`"
        );
    }

    #[test]
    fn matches_reads_every_field() {
        let c = cron("30 9 * 3 MON-FRI");
        assert!(c.matches(local("2026-03-02 09:30")), "a Monday in March");
        assert!(!c.matches(local("2026-03-01 09:30")), "a Sunday");
        assert!(!c.matches(local("2026-04-01 09:30")), "April");
        assert!(!c.matches(local("2026-03-02 09:31")));
        assert!(!c.matches(local("2026-03-02 10:30")));
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 13th, or any Friday.
        let c = cron("0 12 13 * FRI");
        assert!(c.matches(local("2026-01-13 12:00")), "Tuesday the 13th");
        assert!(c.matches(local("2026-01-16 12:00")), "Friday the 16th");
        assert!(!c.matches(local("2026-01-14 12:00")));
        // With a `*`-led day field, both must match (Vixie).
        let c = cron("0 12 */2 * FRI");
        assert!(c.matches(local("2026-01-23 12:00")), "Friday the 23rd");
        assert!(!c.matches(local("2026-01-16 12:00")), "Friday the 16th");
        assert!(!c.matches(local("2026-01-13 12:00")), "Tuesday the 13th");
        assert_eq!(
            next("0 12 13 * FRI", "2026-01-13T12:00:00Z", "UTC"),
            Some(at("2026-01-16T12:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_are_refused_naming_the_field() {
        for (text, field, reason) in [
            ("60 * * * *", "minute", "60 is out of range 0-59"),
            ("* 24 * * *", "hour", "24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month", "0 is out of range 1-31"),
            ("* * 32 * *", "day-of-month", "32 is out of range 1-31"),
            ("* * * 13 *", "month", "13 is out of range 1-12"),
            ("* * * * 8", "day-of-week", "8 is out of range 0-7"),
            ("* * * * 99999", "day-of-week", "99999 is out of range 0-7"),
            (
                "*/0 * * * *",
                "minute",
                "the step must be a number from 1 to 60",
            ),
            (
                "*/61 * * * *",
                "minute",
                "the step must be a number from 1 to 60",
            ),
            (
                "* */x * * *",
                "hour",
                "the step must be a number from 1 to 24",
            ),
            ("5/10 * * * *", "minute", "a step needs `*` or a range"),
            ("* 17-9 * * *", "hour", "`17-9` is a reversed range"),
            (
                "* * * * FRI-MON",
                "day-of-week",
                "`FRI-MON` is a reversed range",
            ),
            ("* * * * MONDAY", "day-of-week", "is not a number or a name"),
            ("* * * JANUARY *", "month", "is not a number or a name"),
            ("* * * * JAN", "day-of-week", "is not a number or a name"),
            ("1,,2 * * * *", "minute", "has an empty list item"),
            ("* -1 * * *", "hour", "`` is not a number"),
            ("*-5 * * * *", "minute", "`*` is not a number"),
            ("0 0 * * * *", "expression", "has 6 fields"),
            ("0 0 * *", "expression", "has 4 fields"),
            ("", "expression", "has 0 fields"),
            ("@daily", "expression", "has 1 fields"),
            ("what is this cron even", "minute", "`what` is not a number"),
            ("0 0 * * mön", "expression", "must be ASCII"),
        ] {
            let error = Cron::parse(text).expect_err(text);
            assert_eq!(error.field, field, "{text}: {error}");
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
        let long = format!("0 0 * * {}", "1,".repeat(64) + "1");
        assert!(long.len() > Cron::MAX_LEN);
        let error = Cron::parse(&long).unwrap_err();
        assert_eq!(error.to_string(), "expression: is longer than 128 bytes");
    }

    #[test]
    fn a_weekly_time_in_the_spring_gap_fires_the_week_after() {
        // 02:xx on Sunday 8 March 2026 does not exist in New York: the next
        // firing is the Sunday after, more than 8 days on (a search that
        // stops after a week and a day misses it).
        let c = cron("* 2 * * 0");
        let new_york: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            c.next_after(at("2026-03-07T05:59:59Z"), new_york),
            Some(at("2026-03-15T06:00:00Z"))
        );
    }

    #[test]
    fn weekdays_at_nine_in_berlin_follow_its_dst_changes() {
        let c = cron("0 9 * * MON-FRI");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let mut t = at("2026-03-26T12:00:00Z");
        let mut seen = Vec::new();
        for _ in 0..4 {
            t = c.next_after(t, berlin).unwrap();
            seen.push(t);
        }
        // Summer time begins Sunday 29 March 2026.
        assert_eq!(
            seen,
            [
                at("2026-03-27T08:00:00Z"), // Fri, CET
                at("2026-03-30T07:00:00Z"), // Mon, CEST
                at("2026-03-31T07:00:00Z"),
                at("2026-04-01T07:00:00Z"),
            ]
        );
        // It ends Sunday 25 October 2026.
        assert_eq!(
            c.next_after(at("2026-10-23T07:00:00Z"), berlin),
            Some(at("2026-10-26T08:00:00Z")),
            "Friday 23 Oct at 07:00Z is its 09:00 CEST, so the next is Monday's 09:00 CET"
        );
        assert_eq!(
            c.next_after(at("2026-10-23T06:59:59Z"), berlin),
            Some(at("2026-10-23T07:00:00Z"))
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_is_skipped_and_a_repeated_one_fires_once() {
        // Berlin skips 02:00-03:00 on 29 March 2026: that day has no 02:30.
        assert_eq!(
            next("30 2 * * *", "2026-03-28T01:30:00Z", "Europe/Berlin"),
            Some(at("2026-03-30T00:30:00Z"))
        );
        // It has 02:00-03:00 twice on 25 October 2026: 02:30 fires at the
        // earlier (CEST) instant only.
        assert_eq!(
            next("30 2 * * *", "2026-10-24T23:00:00Z", "Europe/Berlin"),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            next("30 2 * * *", "2026-10-25T00:30:00Z", "Europe/Berlin"),
            Some(at("2026-10-26T01:30:00Z"))
        );
        // Even from within the second pass, where 02:30 is still ahead on the clock.
        assert_eq!(
            next("30 2 * * *", "2026-10-25T01:10:00Z", "Europe/Berlin"),
            Some(at("2026-10-26T01:30:00Z"))
        );
        // Every minute pauses in the second pass, then goes on at 03:00 CET.
        assert_eq!(
            next("* * * * *", "2026-10-25T01:10:00Z", "Europe/Berlin"),
            Some(at("2026-10-25T02:00:00Z"))
        );
        // New York's gap: 2026-03-08 02:00-03:00 EST -> EDT.
        assert_eq!(
            next("15 2 * * *", "2026-03-08T06:00:00Z", "America/New_York"),
            Some(at("2026-03-09T06:15:00Z"))
        );
    }

    #[test]
    fn the_next_occurrence_is_strictly_after() {
        assert_eq!(
            next("0 9 * * *", "2026-05-04T09:00:00Z", "UTC"),
            Some(at("2026-05-05T09:00:00Z"))
        );
        assert_eq!(
            next("0 9 * * *", "2026-05-04T08:59:59.999Z", "UTC"),
            Some(at("2026-05-04T09:00:00Z"))
        );
        assert_eq!(
            next("0 9 * * *", "2026-05-04T09:00:00.001Z", "UTC"),
            Some(at("2026-05-05T09:00:00Z"))
        );
        assert_eq!(
            next("59 23 31 12 *", "2026-12-31T23:59:00Z", "UTC"),
            Some(at("2027-12-31T23:59:00Z"))
        );
        // Kolkata is UTC+05:30 with no DST.
        assert_eq!(
            next("0 0 * * *", "2026-05-04T12:00:00Z", "Asia/Kolkata"),
            Some(at("2026-05-04T18:30:00Z"))
        );
    }

    #[test]
    fn months_that_do_not_match_are_skipped_from_any_time_of_day() {
        assert_eq!(
            next("0 0 1 6 *", "2026-05-15T13:30:00Z", "UTC"),
            Some(at("2026-06-01T00:00:00Z"))
        );
        assert_eq!(
            next("30 12 * jan *", "2026-02-10T18:00:00Z", "UTC"),
            Some(at("2027-01-01T12:30:00Z"))
        );
        assert_eq!(
            next("0 8 1-7 MAR,SEP mon", "2026-03-10T00:00:00Z", "UTC"),
            Some(at("2026-03-16T08:00:00Z")),
            "both day fields restricted: any Monday of March too"
        );
        assert_eq!(
            next("0 8 */7 MAR,SEP mon", "2026-03-10T00:00:00Z", "UTC"),
            Some(at("2027-03-01T08:00:00Z")),
            "a `*/7` day field: a Monday that is the 1st, 8th, 15th, 22nd or 29th (none in 2026)"
        );
    }

    #[test]
    fn february_29_comes_every_four_years_and_february_31_never() {
        assert_eq!(
            next("0 0 29 2 *", "2024-02-29T00:00:00Z", "UTC"),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert!(cron("0 0 29 2 *").ever_fires());
        for never in [
            "0 0 31 2 *",
            "0 0 30,31 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 31 2 */2",
        ] {
            let c = cron(never);
            assert!(!c.ever_fires(), "{never}");
            assert_eq!(
                c.next_after(at("2026-01-01T00:00:00Z"), Tz::UTC),
                None,
                "{never}"
            );
        }
        // With the OR rule, Fridays in February still fire.
        assert!(cron("0 0 31 2 FRI").ever_fires());
        assert!(cron("0 0 31 1-2 *").ever_fires());
    }

    #[test]
    fn the_search_ends_at_the_horizon_and_at_the_end_of_time() {
        // 2100 is not a leap year: the next 29 February is 2104, past the horizon.
        assert_eq!(next("0 0 29 2 *", "2096-03-01T00:00:00Z", "UTC"), None);
        assert_eq!(
            cron("* * * * *").next_after(DateTime::<Utc>::MAX_UTC, Tz::UTC),
            None
        );
    }

    mod random {
        use super::*;
        use proptest::prelude::*;

        /// One list item; `star` allows the `*`-led forms.
        fn item(min: u32, max: u32, star: bool) -> impl Strategy<Value = String> {
            let forms = if star { 0..4u8 } else { 1..3u8 };
            (min..=max, min..=max, 1..=max - min + 1, forms).prop_map(move |(a, b, n, form)| {
                let (a, b) = (a.min(b), a.max(b));
                match form {
                    0 => "*".to_string(),
                    1 => a.to_string(),
                    2 => format!("{a}-{b}/{n}"),
                    _ => format!("*/{n}"),
                }
            })
        }

        fn list(min: u32, max: u32) -> impl Strategy<Value = String> {
            prop::collection::vec(item(min, max, true), 1..3).prop_map(|items| items.join(","))
        }

        /// `*`, or a list with no `*`-led item (so two such day fields
        /// take the OR rule, which fires at least weekly).
        fn day_field(min: u32, max: u32) -> impl Strategy<Value = String> {
            let listed = prop::collection::vec(item(min, max, false), 1..3)
                .prop_map(|items| items.join(","));
            prop_oneof![Just("*".to_string()), listed]
        }

        /// Expressions that fire at least weekly (no month or day-of-month
        /// field), so a brute-force scan of 8 days finds every occurrence.
        fn weekly() -> impl Strategy<Value = String> {
            (list(0, 59), list(0, 23), list(0, 7)).prop_map(|(m, h, w)| format!("{m} {h} * * {w}"))
        }

        /// Expressions with day-of-month lists too: each fires within 62
        /// days (the 31st alone: 31 May, then 31 July).
        fn monthly() -> impl Strategy<Value = String> {
            (list(0, 59), list(0, 23), day_field(1, 31), day_field(0, 7))
                .prop_map(|(m, h, d, w)| format!("{m} {h} {d} * {w}"))
        }

        /// Any month list as well: each fires within 4 years (29 February)
        /// or never.
        fn yearly() -> impl Strategy<Value = String> {
            let fields = (list(0, 59), list(0, 23), day_field(1, 31), list(1, 12));
            (fields, day_field(0, 7)).prop_map(|((m, h, d, mo), w)| format!("{m} {h} {d} {mo} {w}"))
        }

        /// A zone and an instant: half the time in the 30 hours before one
        /// of the zone's 2026 DST changes (or just after), at any second.
        fn zone_and_instant() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
            let changes = vec![
                (Tz::Europe__Berlin, "2026-03-29T01:00:00Z"),
                (Tz::Europe__Berlin, "2026-10-25T01:00:00Z"),
                (Tz::America__New_York, "2026-03-08T07:00:00Z"),
                (Tz::America__New_York, "2026-11-01T06:00:00Z"),
                // Lord Howe shifts by 30 minutes, Chatham at 02:45/03:45.
                (Tz::Australia__Lord_Howe, "2026-04-04T15:00:00Z"),
                (Tz::Australia__Lord_Howe, "2026-10-03T15:30:00Z"),
                (Tz::Pacific__Chatham, "2026-04-04T14:00:00Z"),
                (Tz::Pacific__Chatham, "2026-09-26T14:00:00Z"),
                (Tz::America__St_Johns, "2026-03-08T05:30:00Z"),
                (Tz::America__St_Johns, "2026-11-01T04:30:00Z"),
            ];
            let near = (prop::sample::select(changes), -30 * 3600..3 * 3600i64)
                .prop_map(|((tz, change), secs)| (tz, at(change) + TimeDelta::seconds(secs)));
            let zones = vec![
                Tz::UTC,
                Tz::Europe__Berlin,
                Tz::America__New_York,
                Tz::Australia__Lord_Howe,
                Tz::Asia__Kolkata,
                Tz::Pacific__Chatham,
            ];
            let anywhere = (prop::sample::select(zones), 0..366 * 86_400i64)
                .prop_map(|(tz, secs)| (tz, at("2026-01-01T00:00:00Z") + TimeDelta::seconds(secs)));
            prop_oneof![near, anywhere]
        }

        /// Whether the expression fires at the whole minute `t`: its local
        /// time matches and `t` is that local time's earlier instant.
        fn fires(c: &Cron, t: DateTime<Utc>, tz: Tz) -> bool {
            let local = t.with_timezone(&tz).naive_local();
            c.matches(local)
                && tz
                    .from_local_datetime(&local)
                    .earliest()
                    .map(|e| e.to_utc())
                    == Some(t)
        }

        /// `next_after(t)` is after `t`, fires (matches in local time, the
        /// earlier instant of a repeated one), and no whole minute between
        /// fires: checked minute by minute over `days`.
        fn check(expr: &str, tz: Tz, t: DateTime<Utc>, days: i64) -> Result<(), TestCaseError> {
            let c = Cron::parse(expr).unwrap();
            let found = c.next_after(t, tz);
            let minute = t.with_second(0).unwrap().with_nanosecond(0).unwrap();
            let mut scan = minute + TimeDelta::minutes(1);
            let end = t + TimeDelta::days(days);
            while scan <= end && Some(scan) != found {
                prop_assert!(
                    !fires(&c, scan, tz),
                    "{expr} fires at {scan}, before {found:?}"
                );
                scan += TimeDelta::minutes(1);
            }
            let Some(found) = found else {
                prop_assert!(
                    !c.ever_fires(),
                    "{expr} fires, yet none found in {days} days"
                );
                return Ok(());
            };
            prop_assert!(found > t);
            prop_assert!(found <= end, "{expr}: {found} after {end}");
            prop_assert!(c.matches(found.with_timezone(&tz).naive_local()));
            prop_assert!(fires(&c, found, tz));
            Ok(())
        }

        proptest! {
            #[test]
            fn next_after_is_the_first_firing_minute_after(
                expr in weekly(),
                (tz, t) in zone_and_instant(),
            ) {
                // Two weeks and a day: a weekly time in a daylight-saving
                // gap is skipped that week, so the next may be 14 days on.
                check(&expr, tz, t, 15)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn next_after_reads_day_of_month_and_the_or_rule(
                expr in monthly(),
                (tz, t) in zone_and_instant(),
            ) {
                check(&expr, tz, t, 63)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            #[test]
            fn next_after_skips_months_and_years(
                expr in yearly(),
                secs in 0..2 * 365 * 86_400i64,
            ) {
                let t = at("2026-01-01T00:00:00Z") + TimeDelta::seconds(secs);
                check(&expr, Tz::UTC, t, 4 * 366)?;
            }
        }
    }
}
