//! An operator's pool policy for one template (or a company's default for
//! its templates): a floor, a ceiling or a fixed target, and schedule
//! windows that raise the target while they are on. The API validates it
//! ([`PoolPolicy::validate`]) and stores its JSON; the worker's sizer reads
//! it back ([`PoolPolicy::parse_json`]) and asks
//! [`ValidPolicy::target_at`] every pass. [`cron`] holds the schedule
//! grammar.
//!
//! The JSON is read by hand from a `serde_json::Value` (also behind
//! `Deserialize`), not derived: every refusal then names its field path
//! (`windows[2].end`), where derived serde errors do not say which field a
//! bad value sat in and an untagged enum says only that no form matched.
//! Integer fields take integral JSON numbers ([`crate::json_number`]).
//!
//! A fixed or window target outside the policy's own `[min, max]` is
//! refused, not clamped: it could not take effect as written.

pub mod cron;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use cron::{Cron, CronError};

/// The most any pool policy's count (`min`, `max`, `target`, a window's
/// `target`) may be.
pub const MAX_POLICY_TARGET: i32 = 10_000;

/// A template's pool policy as the operator wrote it; unchecked until
/// [`PoolPolicy::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPolicy {
    /// Floor of the template's target (overrides `pool.min`); `null` is
    /// the same as leaving it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_POLICY_TARGET))]
    pub min: Option<i32>,
    /// Ceiling (overrides `pool.max`); at least `min`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_POLICY_TARGET))]
    pub max: Option<i32>,
    /// A fixed target instead of the demand-driven one, within `[min, max]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_POLICY_TARGET))]
    pub target: Option<i32>,
    /// Schedule windows: while one is on (or due within the lead time), the
    /// target is at least its `target`. `null` is the same as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Option<Vec<Window>>", length(max = 16))]
    pub windows: Vec<Window>,
}

/// A schedule window; its JSON form is told by its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Window {
    /// On once, from `start` (inclusive) to `end` (exclusive), at most 31 days.
    OneOff {
        start: DateTime<Utc>,
        /// After `start`, at most 31 days after it.
        end: DateTime<Utc>,
        /// Within the policy's `[min, max]`.
        #[schemars(range(min = 0, max = MAX_POLICY_TARGET))]
        target: i32,
    },
    /// On for `duration_secs` from each time `cron` fires in `time_zone`.
    Recurring {
        /// `minute hour day-of-month month day-of-week`, e.g. `0 9 * * MON-FRI`.
        #[schemars(length(max = 128))]
        cron: String,
        #[schemars(range(min = 1, max = 604_800))]
        duration_secs: u32,
        /// An IANA time zone name, case-sensitive.
        #[serde(default = "utc")]
        time_zone: String,
        /// Within the policy's `[min, max]`.
        #[schemars(range(min = 0, max = MAX_POLICY_TARGET))]
        target: i32,
    },
}

fn utc() -> String {
    "UTC".into()
}

/// The bounds a policy is checked against that are not the policy's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Every count (`min`, `max`, `target`, a window's `target`) is at most this.
    pub max_target: i32,
}

/// Why a policy was refused: the field path (`windows[2].cron`; empty for
/// the document as a whole) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "`{}`: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for PolicyError {}

fn error(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A validated policy with its schedules parsed once, so the sizer's
/// passes do not parse them again.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPolicy {
    policy: PoolPolicy,
    schedules: Vec<Schedule>,
}

#[derive(Debug, Clone, PartialEq)]
enum Schedule {
    OneOff {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        target: i32,
    },
    Recurring {
        cron: Cron,
        tz: Tz,
        duration: TimeDelta,
        target: i32,
    },
}

/// A window on or due at some instant, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActiveWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub target: i32,
}

impl PoolPolicy {
    pub const MAX_WINDOWS: usize = 16;

    /// Reads and validates a stored policy in one call (the worker's path).
    pub fn parse_json(text: &str, limits: &PolicyLimits) -> Result<ValidPolicy, PolicyError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| error("", format!("the policy is not JSON: {e}")))?;
        Self::from_json(&value)?.validate(limits)
    }

    /// Reads a policy's JSON, checking its shape only: known fields, their
    /// types, integral numbers, one form per window.
    pub fn from_json(value: &Value) -> Result<PoolPolicy, PolicyError> {
        let map = object(value, "", &["min", "max", "target", "windows"])?;
        let windows = match present(map, "windows") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Window::from_json(item, &format!("windows[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(error("windows", "must be an array")),
        };
        Ok(PoolPolicy {
            min: integer(map, "", "min")?,
            max: integer(map, "", "max")?,
            target: integer(map, "", "target")?,
            windows,
        })
    }

    /// Checks every rule: counts within `0..=limits.max_target`;
    /// `min <= max`; the fixed and every window target within the policy's
    /// `[min, max]`; at most [`Self::MAX_WINDOWS`] windows, each valid
    /// ([`Window::MAX_ONE_OFF`], [`Window::MAX_DURATION_SECS`], a cron that
    /// parses and fires, a known time zone).
    pub fn validate(&self, limits: &PolicyLimits) -> Result<ValidPolicy, PolicyError> {
        for (field, count) in [("min", self.min), ("max", self.max)] {
            if let Some(count) = count {
                check_count(field, count, limits)?;
            }
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                return Err(error("max", format!("{max} is below `min` ({min})")));
            }
        }
        if let Some(target) = self.target {
            self.check_target("target", target, limits)?;
        }
        if self.windows.len() > Self::MAX_WINDOWS {
            return Err(error(
                "windows",
                format!(
                    "has {} windows; at most {} are allowed",
                    self.windows.len(),
                    Self::MAX_WINDOWS
                ),
            ));
        }
        let schedules = self
            .windows
            .iter()
            .enumerate()
            .map(|(i, window)| window.schedule(&format!("windows[{i}]"), self, limits))
            .collect::<Result<_, _>>()?;
        Ok(ValidPolicy {
            policy: self.clone(),
            schedules,
        })
    }

    /// A target (the fixed one or a window's) in `0..=max_target` and in
    /// this policy's `[min, max]`.
    fn check_target(
        &self,
        field: &str,
        target: i32,
        limits: &PolicyLimits,
    ) -> Result<(), PolicyError> {
        check_count(field, target, limits)?;
        if let Some(min) = self.min.filter(|&min| target < min) {
            return Err(error(
                field,
                format!("{target} is below `min` ({min}), so it could not take effect"),
            ));
        }
        if let Some(max) = self.max.filter(|&max| target > max) {
            return Err(error(
                field,
                format!("{target} is above `max` ({max}), so it could not take effect"),
            ));
        }
        Ok(())
    }
}

/// A count in `0..=max_target`.
fn check_count(field: &str, count: i32, limits: &PolicyLimits) -> Result<(), PolicyError> {
    if (0..=limits.max_target).contains(&count) {
        return Ok(());
    }
    Err(error(
        field,
        format!("{count} is outside 0 to {}", limits.max_target),
    ))
}

impl Window {
    /// The longest one-off window.
    pub const MAX_ONE_OFF: TimeDelta = TimeDelta::days(31);
    /// The longest recurring window (7 days).
    pub const MAX_DURATION_SECS: u32 = 7 * 86_400;

    /// Reads one window's JSON (shape only); `path` prefixes field names.
    fn from_json(value: &Value, path: &str) -> Result<Window, PolicyError> {
        let fields = [
            "start",
            "end",
            "target",
            "cron",
            "duration_secs",
            "time_zone",
        ];
        let map = object(value, path, &fields)?;
        let has = |name| present(map, name).is_some();
        let one_off = has("start") || has("end");
        let recurring = has("cron") || has("duration_secs") || has("time_zone");
        let window = match (one_off, recurring) {
            (true, true) => {
                return Err(error(
                    path,
                    "mixes a one-off window's `start`/`end` with a recurring window's \
                     `cron`/`duration_secs`/`time_zone`",
                ))
            }
            (false, false) => {
                return Err(error(
                    path,
                    "needs `start` and `end` (one-off) or `cron` and `duration_secs` (recurring)",
                ))
            }
            (true, false) => Window::OneOff {
                start: need(instant(map, path, "start")?, path, "start")?,
                end: need(instant(map, path, "end")?, path, "end")?,
                target: need(integer(map, path, "target")?, path, "target")?,
            },
            (false, true) => Window::Recurring {
                cron: need(string(map, path, "cron")?, path, "cron")?.to_string(),
                duration_secs: need(integer(map, path, "duration_secs")?, path, "duration_secs")?,
                time_zone: string(map, path, "time_zone")?.map_or_else(utc, str::to_string),
                target: need(integer(map, path, "target")?, path, "target")?,
            },
        };
        Ok(window)
    }

    fn schedule(
        &self,
        path: &str,
        policy: &PoolPolicy,
        limits: &PolicyLimits,
    ) -> Result<Schedule, PolicyError> {
        match self {
            &Window::OneOff { start, end, target } => {
                policy.check_target(&join(path, "target"), target, limits)?;
                if end <= start {
                    return Err(error(join(path, "end"), "must be after `start`"));
                }
                if end - start > Self::MAX_ONE_OFF {
                    return Err(error(
                        join(path, "end"),
                        format!(
                            "is more than {} days after `start`",
                            Self::MAX_ONE_OFF.num_days()
                        ),
                    ));
                }
                Ok(Schedule::OneOff { start, end, target })
            }
            Window::Recurring {
                cron,
                duration_secs,
                time_zone,
                target,
            } => {
                policy.check_target(&join(path, "target"), *target, limits)?;
                if !(1..=Self::MAX_DURATION_SECS).contains(duration_secs) {
                    return Err(error(
                        join(path, "duration_secs"),
                        format!(
                            "{duration_secs} is outside 1 to {} (7 days)",
                            Self::MAX_DURATION_SECS
                        ),
                    ));
                }
                let parsed =
                    Cron::parse(cron).map_err(|e| error(join(path, "cron"), e.to_string()))?;
                if !parsed.ever_fires() {
                    return Err(error(
                        join(path, "cron"),
                        "never fires: no month it allows has a day of month it allows",
                    ));
                }
                let tz: Tz = time_zone.parse().map_err(|_| {
                    error(
                        join(path, "time_zone"),
                        format!(
                            "`{}` is not an IANA time zone name (they are case-sensitive: \
                             `Europe/Berlin`, `UTC`)",
                            clip(time_zone)
                        ),
                    )
                })?;
                Ok(Schedule::Recurring {
                    cron: parsed,
                    tz,
                    duration: TimeDelta::seconds((*duration_secs).into()),
                    target: *target,
                })
            }
        }
    }
}

impl<'de> Deserialize<'de> for PoolPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_json(&value, "").map_err(serde::de::Error::custom)
    }
}

impl ValidPolicy {
    pub fn policy(&self) -> &PoolPolicy {
        &self.policy
    }

    pub fn into_policy(self) -> PoolPolicy {
        self.policy
    }

    /// The target given `base` (what demand or forecast asks for, already
    /// clamped to the global min/max by the caller) at `now`, counting
    /// windows that start within `lead` (the measured refill time: a
    /// window's pool must be full at its start) as on: the fixed target or
    /// `base`, raised to every on-or-due window's target, then clamped to
    /// the policy's `[min, max]`.
    pub fn target_at(&self, base: i32, now: DateTime<Utc>, lead: Duration) -> i32 {
        let mut target = self.policy.target.unwrap_or(base);
        for window in self.on_or_due(now, lead) {
            target = target.max(window.target);
        }
        if let Some(min) = self.policy.min {
            target = target.max(min);
        }
        if let Some(max) = self.policy.max {
            target = target.min(max);
        }
        target
    }

    /// The on-or-due window (as in [`Self::target_at`]) with the largest
    /// target, the first listed on a tie. A recurring window whose
    /// occurrences overlap shows its earliest one still on.
    pub fn window_at(&self, now: DateTime<Utc>, lead: Duration) -> Option<ActiveWindow> {
        self.on_or_due(now, lead).reduce(|best, window| {
            if window.target > best.target {
                window
            } else {
                best
            }
        })
    }

    fn on_or_due(
        &self,
        now: DateTime<Utc>,
        lead: Duration,
    ) -> impl Iterator<Item = ActiveWindow> + '_ {
        let due_by = TimeDelta::from_std(lead)
            .ok()
            .and_then(|lead| now.checked_add_signed(lead))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.schedules
            .iter()
            .filter_map(move |schedule| schedule.on_or_due(now, due_by))
    }
}

impl Schedule {
    /// The occurrence that is on at `now` or starts by `due_by`: for a
    /// one-off `start <= due_by` and `now < end`; for a recurring one, the
    /// first start after `now - duration` (so it ends after `now`), if it is
    /// no later than `due_by`.
    fn on_or_due(&self, now: DateTime<Utc>, due_by: DateTime<Utc>) -> Option<ActiveWindow> {
        let (start, end, target) = match self {
            &Schedule::OneOff { start, end, target } => (start, end, target),
            Schedule::Recurring {
                cron,
                tz,
                duration,
                target,
            } => {
                let start = cron.next_after(now.checked_sub_signed(*duration)?, *tz)?;
                (start, start.checked_add_signed(*duration)?, *target)
            }
        };
        (start <= due_by && now < end).then_some(ActiveWindow { start, end, target })
    }
}

/// `value` as an object with no field outside `known`.
fn object<'a>(
    value: &'a Value,
    path: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, PolicyError> {
    let Value::Object(map) = value else {
        return Err(error(path, "must be a JSON object"));
    };
    if let Some(key) = map.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(error(
            join(path, &clip(key)),
            format!("is not a field; expected one of: {}", known.join(", ")),
        ));
    }
    Ok(map)
}

/// A field's value, `null` read as absent.
fn present<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|value| !value.is_null())
}

fn integer<T: TryFrom<i64>>(
    map: &Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<T>, PolicyError> {
    present(map, name)
        .map(|value| {
            crate::json_number::integer(value)
                .map_err(|e: serde_json::Error| error(join(path, name), e.to_string()))
        })
        .transpose()
}

fn string<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<&'a str>, PolicyError> {
    present(map, name)
        .map(|value| {
            value
                .as_str()
                .ok_or_else(|| error(join(path, name), "must be a string"))
        })
        .transpose()
}

fn instant(
    map: &Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<DateTime<Utc>>, PolicyError> {
    string(map, path, name)?
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|at| at.to_utc())
                .map_err(|e| {
                    error(
                        join(path, name),
                        format!("`{}` is not an RFC 3339 instant ({e})", clip(text)),
                    )
                })
        })
        .transpose()
}

/// A required field's value.
fn need<T>(value: Option<T>, path: &str, name: &str) -> Result<T, PolicyError> {
    value.ok_or_else(|| error(join(path, name), "is missing"))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Client text as echoed in an error: at most 64 characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PolicyLimits = PolicyLimits { max_target: 10_000 };

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn valid(json: &str) -> ValidPolicy {
        PoolPolicy::parse_json(json, &LIMITS).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn refused(json: &str) -> PolicyError {
        match PoolPolicy::parse_json(json, &LIMITS) {
            Ok(policy) => panic!("{json} was accepted: {policy:?}"),
            Err(e) => e,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn both_window_forms_read_and_round_trip() {
        let json = r#"{
            "min": 2, "max": 40.0,
            "windows": [
                {"start": "2026-11-27T08:00:00+01:00", "end": "2026-11-28T00:00:00Z", "target": 30},
                {"cron": "0 9 * * MON-FRI", "duration_secs": 7200, "time_zone": "Europe/Berlin", "target": 12},
                {"cron": "0 0 1 * *", "duration_secs": 3600, "target": 5}
            ]
        }"#;
        let policy = valid(json).into_policy();
        assert_eq!(
            policy,
            PoolPolicy {
                min: Some(2),
                max: Some(40),
                target: None,
                windows: vec![
                    Window::OneOff {
                        start: at("2026-11-27T07:00:00Z"),
                        end: at("2026-11-28T00:00:00Z"),
                        target: 30
                    },
                    Window::Recurring {
                        cron: "0 9 * * MON-FRI".into(),
                        duration_secs: 7200,
                        time_zone: "Europe/Berlin".into(),
                        target: 12
                    },
                    Window::Recurring {
                        cron: "0 0 1 * *".into(),
                        duration_secs: 3600,
                        time_zone: "UTC".into(),
                        target: 5
                    },
                ],
            }
        );
        let written = serde_json::to_string(&policy).unwrap();
        assert!(!written.contains("target\":null"), "{written}");
        assert_eq!(valid(&written).into_policy(), policy);
        assert_eq!(
            serde_json::from_str::<PoolPolicy>(&written).unwrap(),
            policy
        );
        assert_eq!(valid("{}").into_policy(), PoolPolicy::default());
        assert_eq!(serde_json::to_string(&PoolPolicy::default()).unwrap(), "{}");
        assert_eq!(
            valid(r#"{"min": null, "target": 3, "windows": null}"#).into_policy(),
            PoolPolicy {
                target: Some(3),
                ..PoolPolicy::default()
            }
        );
    }

    #[test]
    fn bad_json_is_refused_naming_the_field() {
        let window = |fields: &str| {
            format!(
                r#"{{"windows": [{{"cron": "0 9 * * *", "duration_secs": 60, "target": 1}}, {{{fields}}}]}}"#
            )
        };
        for (json, field, reason) in [
            ("[1]".to_string(), "", "must be a JSON object"),
            ("{".to_string(), "", "not JSON"),
            (
                r#"{"min": 1.5}"#.into(),
                "min",
                "`1.5` is not an integer in range",
            ),
            (r#"{"max": "7"}"#.into(), "max", "invalid type: string"),
            (
                r#"{"target": 3000000000}"#.into(),
                "target",
                "not an integer in range",
            ),
            (
                r#"{"mni": 1}"#.into(),
                "mni",
                "is not a field; expected one of: min, max, target, windows",
            ),
            (r#"{"windows": {}}"#.into(), "windows", "must be an array"),
            (
                r#"{"windows": [3]}"#.into(),
                "windows[0]",
                "must be a JSON object",
            ),
            (
                window(r#""start": "2026-01-01T00:00:00Z", "target": 1"#),
                "windows[1].end",
                "is missing",
            ),
            (
                window(r#""cron": "* * * * *", "target": 1"#),
                "windows[1].duration_secs",
                "is missing",
            ),
            (
                window(r#""time_zone": "UTC", "duration_secs": 5, "target": 1"#),
                "windows[1].cron",
                "is missing",
            ),
            (
                window(r#""cron": "* * * * *", "duration_secs": 60"#),
                "windows[1].target",
                "is missing",
            ),
            (
                window(r#""cron": "* * * * *", "duration_secs": 60, "target": 2.5"#),
                "windows[1].target",
                "`2.5` is not an integer",
            ),
            (
                window(r#""cron": "* * * * *", "duration_secs": -60, "target": 2"#),
                "windows[1].duration_secs",
                "not an integer in range",
            ),
            (
                window(r#""cron": 5, "duration_secs": 60, "target": 2"#),
                "windows[1].cron",
                "must be a string",
            ),
            (
                window(r#""start": "2026-01-01", "end": "2026-01-02T00:00:00Z", "target": 2"#),
                "windows[1].start",
                "`2026-01-01` is not an RFC 3339 instant",
            ),
            (
                window(r#""start": "2026-01-01T00:00:00Z", "cron": "* * * * *", "target": 2"#),
                "windows[1]",
                "mixes a one-off window",
            ),
            (
                window(r#""target": 2"#),
                "windows[1]",
                "needs `start` and `end` (one-off) or `cron`",
            ),
            (
                window(r#""cron": "* * * * *", "duration_secs": 60, "target": 2, "tz": "UTC""#),
                "windows[1].tz",
                "is not a field",
            ),
        ] {
            let e = refused(&json);
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
        // Through serde, the message names the field the same way.
        let e = serde_json::from_str::<PoolPolicy>(&window(
            r#""cron": "* * * * *", "duration_secs": 0.5, "target": 2"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("`windows[1].duration_secs`: `0.5` is not an integer in range"),
            "{e}"
        );
        let long_key = format!(r#"{{"{}": 1}}"#, "k".repeat(1000));
        assert!(refused(&long_key).field.len() < 80);
    }

    #[test]
    fn each_rule_is_checked_naming_the_field() {
        let w = |fields: &str| format!(r#"{{"min": 1, "max": 50, "windows": [{{{fields}}}]}}"#);
        let sixteen = format!(
            r#"{{"windows": [{}]}}"#,
            vec![r#"{"cron": "0 0 * * *", "duration_secs": 60, "target": 1}"#; 17].join(",")
        );
        for (json, field, reason) in [
            (
                r#"{"min": -1}"#.to_string(),
                "min",
                "-1 is outside 0 to 10000",
            ),
            (
                r#"{"max": 10001}"#.into(),
                "max",
                "10001 is outside 0 to 10000",
            ),
            (
                r#"{"min": 5, "max": 4}"#.into(),
                "max",
                "4 is below `min` (5)",
            ),
            (
                r#"{"min": 5, "target": 4}"#.into(),
                "target",
                "4 is below `min` (5)",
            ),
            (
                r#"{"max": 5, "target": 6}"#.into(),
                "target",
                "6 is above `max` (5)",
            ),
            (sixteen, "windows", "has 17 windows; at most 16"),
            (
                w(r#""start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "target": 5"#),
                "windows[0].end",
                "must be after `start`",
            ),
            (
                w(r#""start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:01Z", "target": 5"#),
                "windows[0].end",
                "more than 31 days after",
            ),
            (
                w(
                    r#""start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "target": 51"#,
                ),
                "windows[0].target",
                "51 is above `max` (50)",
            ),
            (
                w(r#""cron": "0 9 * * *", "duration_secs": 60, "target": 0"#),
                "windows[0].target",
                "0 is below `min` (1)",
            ),
            (
                w(r#""cron": "0 9 * * *", "duration_secs": 0, "target": 5"#),
                "windows[0].duration_secs",
                "0 is outside 1 to 604800",
            ),
            (
                w(r#""cron": "0 9 * * *", "duration_secs": 604801, "target": 5"#),
                "windows[0].duration_secs",
                "604801 is outside",
            ),
            (
                w(r#""cron": "0 9 32 * *", "duration_secs": 60, "target": 5"#),
                "windows[0].cron",
                "day-of-month: 32 is out of range 1-31",
            ),
            (
                w(r#""cron": "0 0 31 2 *", "duration_secs": 60, "target": 5"#),
                "windows[0].cron",
                "never fires",
            ),
            (
                w(
                    r#""cron": "0 9 * * *", "duration_secs": 60, "time_zone": "europe/berlin", "target": 5"#,
                ),
                "windows[0].time_zone",
                "`europe/berlin` is not an IANA time zone name",
            ),
            (
                w(r#""cron": "0 9 * * *", "duration_secs": 60, "time_zone": "CEST", "target": 5"#),
                "windows[0].time_zone",
                "is not an IANA",
            ),
        ] {
            let e = refused(&json);
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
        // The bounds themselves: 31 days exactly, 7 days exactly, 16 windows.
        valid(&w(
            r#""start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z", "target": 50"#,
        ));
        valid(&w(
            r#""cron": "0 9 * * *", "duration_secs": 604800, "time_zone": "America/Argentina/Buenos_Aires", "target": 1"#,
        ));
        valid(&format!(
            r#"{{"windows": [{}]}}"#,
            vec![r#"{"cron": "0 0 * * *", "duration_secs": 60, "target": 1}"#; 16].join(",")
        ));
        valid(r#"{"min": 0, "max": 10000, "target": 10000}"#);
        valid(r#"{"min": 7, "max": 7}"#);
    }

    #[test]
    fn a_fixed_target_replaces_the_base_and_min_max_clamp_it() {
        let now = at("2026-06-01T12:00:00Z");
        assert_eq!(valid("{}").target_at(9, now, secs(0)), 9);
        assert_eq!(valid(r#"{"target": 4}"#).target_at(9, now, secs(0)), 4);
        let bounded = valid(r#"{"min": 3, "max": 20}"#);
        assert_eq!(bounded.target_at(1, now, secs(0)), 3);
        assert_eq!(bounded.target_at(12, now, secs(0)), 12);
        assert_eq!(bounded.target_at(80, now, secs(0)), 20);
    }

    #[test]
    fn a_window_raises_the_target_while_on_and_from_lead_before() {
        let policy = valid(
            r#"{"max": 25, "windows": [
                {"start": "2026-06-01T12:00:00Z", "end": "2026-06-01T14:00:00Z", "target": 10}
            ]}"#,
        );
        let target = |now: &str, lead: u64| policy.target_at(2, at(now), secs(lead));
        assert_eq!(
            target("2026-06-01T11:59:30Z", 60),
            10,
            "due in 30 s with lead 60 s"
        );
        assert_eq!(
            target("2026-06-01T11:58:30Z", 60),
            2,
            "due in 90 s with lead 60 s"
        );
        assert_eq!(
            target("2026-06-01T11:59:00Z", 60),
            10,
            "due in exactly the lead"
        );
        assert_eq!(target("2026-06-01T12:00:00Z", 0), 10, "on from its start");
        assert_eq!(target("2026-06-01T13:59:59Z", 0), 10);
        assert_eq!(target("2026-06-01T14:00:00Z", 0), 2, "off at its end");
        assert_eq!(target("2026-06-01T16:00:00Z", 3600), 2, "after the end");
        assert_eq!(
            policy.target_at(40, at("2026-06-01T13:00:00Z"), secs(0)),
            25,
            "max clamps"
        );
        assert_eq!(
            policy.window_at(at("2026-06-01T11:59:30Z"), secs(60)),
            Some(ActiveWindow {
                start: at("2026-06-01T12:00:00Z"),
                end: at("2026-06-01T14:00:00Z"),
                target: 10
            })
        );
        assert_eq!(policy.window_at(at("2026-06-01T11:58:30Z"), secs(60)), None);
        assert_eq!(policy.window_at(at("2026-06-01T14:00:00Z"), secs(0)), None);
        // A fixed target below a window's is raised too.
        let fixed = valid(
            r#"{"target": 4, "windows": [{"start": "2026-06-01T12:00:00Z", "end": "2026-06-01T14:00:00Z", "target": 10}]}"#,
        );
        assert_eq!(fixed.target_at(2, at("2026-06-01T13:00:00Z"), secs(0)), 10);
        assert_eq!(fixed.target_at(2, at("2026-06-01T15:00:00Z"), secs(0)), 4);
    }

    #[test]
    fn overlapping_windows_take_the_largest_target() {
        let policy = valid(
            r#"{"min": 1, "max": 40, "windows": [
                {"start": "2026-06-01T12:00:00Z", "end": "2026-06-01T14:00:00Z", "target": 10},
                {"start": "2026-06-01T13:00:00Z", "end": "2026-06-01T15:00:00Z", "target": 30},
                {"cron": "30 13 * * *", "duration_secs": 600, "target": 20}
            ]}"#,
        );
        let target = |now: &str| policy.target_at(2, at(now), secs(0));
        assert_eq!(target("2026-06-01T12:30:00Z"), 10);
        assert_eq!(target("2026-06-01T13:35:00Z"), 30);
        assert_eq!(target("2026-06-01T14:30:00Z"), 30);
        assert_eq!(target("2026-06-01T15:00:00Z"), 2);
        assert_eq!(
            policy.target_at(35, at("2026-06-01T13:35:00Z"), secs(0)),
            35,
            "base above every window"
        );
        assert_eq!(
            policy.target_at(90, at("2026-06-01T13:35:00Z"), secs(0)),
            40,
            "max still clamps"
        );
        assert_eq!(
            policy
                .window_at(at("2026-06-01T13:35:00Z"), secs(0))
                .map(|w| w.target),
            Some(30)
        );
    }

    #[test]
    fn a_recurring_window_is_on_for_its_duration_from_each_occurrence() {
        // Weekdays 09:00-11:00 Berlin (07:00-09:00Z in summer), target 12.
        let policy = valid(
            r#"{"target": 3, "windows": [{"cron": "0 9 * * MON-FRI", "duration_secs": 7200, "time_zone": "Europe/Berlin", "target": 12}]}"#,
        );
        let target = |now: &str, lead: u64| policy.target_at(99, at(now), secs(lead));
        assert_eq!(
            target("2026-06-01T06:59:30Z", 60),
            12,
            "Monday, due in 30 s"
        );
        assert_eq!(target("2026-06-01T06:58:30Z", 60), 3, "due in 90 s");
        assert_eq!(target("2026-06-01T07:00:00Z", 0), 12);
        assert_eq!(target("2026-06-01T08:59:59Z", 0), 12);
        assert_eq!(target("2026-06-01T09:00:00Z", 0), 3, "ended");
        assert_eq!(target("2026-06-06T07:30:00Z", 0), 3, "Saturday");
        assert_eq!(
            policy.window_at(at("2026-06-01T08:00:00Z"), secs(0)),
            Some(ActiveWindow {
                start: at("2026-06-01T07:00:00Z"),
                end: at("2026-06-01T09:00:00Z"),
                target: 12
            })
        );
        // A window running past midnight: Friday 22:00 for 4 hours.
        let late = valid(
            r#"{"windows": [{"cron": "0 22 * * FRI", "duration_secs": 14400, "target": 8}]}"#,
        );
        assert_eq!(late.target_at(1, at("2026-06-06T01:59:00Z"), secs(0)), 8);
        assert_eq!(late.target_at(1, at("2026-06-06T02:00:00Z"), secs(0)), 1);
    }

    #[test]
    fn the_schema_offers_both_window_forms() {
        let schema = serde_json::to_value(schemars::schema_for!(PoolPolicy)).unwrap();
        let forms = &schema["$defs"]["Window"]["anyOf"];
        assert_eq!(forms.as_array().map(Vec::len), Some(2), "{schema:#}");
        assert_eq!(
            forms[0]["required"],
            serde_json::json!(["start", "end", "target"])
        );
        assert_eq!(
            forms[1]["required"],
            serde_json::json!(["cron", "duration_secs", "target"])
        );
        assert_eq!(forms[1]["properties"]["time_zone"]["default"], "UTC");
    }
}
