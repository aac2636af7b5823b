//! Operator pool policies in the sizer's memory: which templates a policy
//! governs (their own, or their company's default) and the bounds it puts
//! on their target at a given instant.
//!
//! Reloaded whole when `pool_policy_version` moved (one row read a pass);
//! in between, the templates their companies create are picked up from the
//! owner index range since the last pass. At most `pool.max_policy_templates`
//! templates are governed (the most recently set policies first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prewarm_store::db::pool_policies::{self, StoredPolicy};
use prewarm_store::db::{DbConn, StoreError};
use shared_domain::ids::TemplateId;
use shared_domain::pool_policy::{PolicyLimits, PoolPolicy, ValidPolicy, Window};
use uuid::Uuid;

use shared_domain::pool::{PolicySource as Source, MAX_POLICY_TARGET};

#[derive(Debug, Clone)]
pub struct Governed {
    pub policy: Arc<ValidPolicy>,
    pub source: Source,
}

/// What a policy allows a template's target to be at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub floor: i32,
    pub ceiling: i32,
}

impl Bounds {
    pub fn clamp(&self, target: i32) -> i32 {
        target.clamp(self.floor, self.ceiling.max(self.floor))
    }
}

/// `policy`'s bounds at `now`, windows due within `lead` counted as on,
/// around the global `[min, max]`: a fixed target is floor and ceiling at
/// once; a window raises the floor (and the ceiling, if it is above it).
pub fn bounds(
    policy: &ValidPolicy,
    min: i32,
    max: i32,
    now: chrono::DateTime<chrono::Utc>,
    lead: Duration,
) -> Bounds {
    let p = policy.policy();
    let window = policy.window_at(now, lead).map_or(0, |w| w.target);
    match p.target {
        Some(target) => {
            let t = target.max(window);
            Bounds {
                floor: t,
                ceiling: t,
            }
        }
        None => {
            // A policy's `max` below `pool.min` lowers the floor with it.
            let floor = p
                .min
                .unwrap_or(min.min(p.max.unwrap_or(i32::MAX)))
                .max(window);
            Bounds {
                floor,
                ceiling: p.max.unwrap_or(max).max(floor),
            }
        }
    }
}

/// The largest target any of `policy`'s windows asks for (the lead time
/// is the time to fill that many).
pub fn largest_window(policy: &PoolPolicy) -> i32 {
    policy
        .windows
        .iter()
        .map(|w| match w {
            Window::OneOff { target, .. } | Window::Recurring { target, .. } => *target,
        })
        .max()
        .unwrap_or(0)
}

/// How far back each pass reads a company's new templates again.
const ADOPT_OVERLAP: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Policies {
    /// The version loaded (`None`: never).
    version: Option<i64>,
    governed: HashMap<TemplateId, Governed>,
    companies: HashMap<Uuid, Arc<ValidPolicy>>,
    /// Templates of the companies with a policy are read up to here.
    read_to: f64,
}

impl Policies {
    pub fn get(&self, template: &TemplateId) -> Option<&Governed> {
        self.governed.get(template)
    }

    pub fn governed(&self) -> impl Iterator<Item = (&TemplateId, &Governed)> {
        self.governed.iter()
    }

    pub fn len(&self) -> usize {
        self.governed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.governed.is_empty()
    }

    /// Brings the memory up to date at `upper` (seconds since the epoch).
    /// A policy that no longer parses (written by a newer release, say) is
    /// skipped with a warning.
    pub async fn refresh(
        &mut self,
        conn: &mut DbConn,
        upper: f64,
        limit: usize,
    ) -> Result<(), StoreError> {
        let version = pool_policies::version(conn).await?;
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        if self.version != Some(version) {
            let (templates, companies) = pool_policies::load_all(conn, limit_i).await?;
            self.governed.clear();
            self.companies = companies
                .iter()
                .filter_map(|p| Some((p.id, Arc::new(parse(p)?))))
                .collect();
            for p in &templates {
                if let Some(policy) = parse(p) {
                    self.governed.insert(
                        TemplateId(p.id),
                        Governed {
                            policy: Arc::new(policy),
                            source: Source::Template,
                        },
                    );
                }
            }
            self.version = Some(version);
            // Every live template of theirs, however new: later passes
            // read the range since `upper` again (adopting twice is a no-op).
            self.adopt(conn, None, None, limit).await?;
        } else {
            // A template's `created_at` is the API host's clock, stamped before
            // its insert commits: the range reaches back [`ADOPT_OVERLAP`]
            // so one committed late (or stamped by a skewed clock) is still
            // seen.
            let after = self.read_to - ADOPT_OVERLAP.as_secs_f64();
            self.adopt(conn, Some(after), Some(upper), limit).await?;
        }
        self.read_to = upper;
        Ok(())
    }

    /// Governs the templates of companies with a policy created in
    /// `(after, upper]` that have none of their own.
    async fn adopt(
        &mut self,
        conn: &mut DbConn,
        after: Option<f64>,
        upper: Option<f64>,
        limit: usize,
    ) -> Result<(), StoreError> {
        let room = limit.saturating_sub(self.governed.len());
        if self.companies.is_empty() || room == 0 {
            return Ok(());
        }
        let ids: Vec<Uuid> = self.companies.keys().copied().collect();
        let found = pool_policies::company_templates(conn, &ids, after, upper, room as i64).await?;
        for t in found {
            let Some(policy) = self.companies.get(&t.company_id) else {
                continue;
            };
            self.governed
                .entry(TemplateId(t.template_id))
                .or_insert_with(|| Governed {
                    policy: policy.clone(),
                    source: Source::Company,
                });
        }
        Ok(())
    }
}

fn parse(stored: &StoredPolicy) -> Option<ValidPolicy> {
    let limits = PolicyLimits {
        max_target: MAX_POLICY_TARGET,
    };
    match PoolPolicy::parse_json(&stored.policy, &limits) {
        Ok(policy) => Some(policy),
        Err(e) => {
            tracing::warn!(id = %stored.id, error = %e, "a stored pool policy does not parse; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(json: &str) -> ValidPolicy {
        PoolPolicy::parse_json(
            json,
            &PolicyLimits {
                max_target: MAX_POLICY_TARGET,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_policy_bounds_the_target_and_a_window_raises_the_floor() {
        let now = chrono::Utc::now();
        let lead = Duration::from_secs(60);
        let fixed = valid(r#"{"target": 6}"#);
        assert_eq!(
            bounds(&fixed, 1, 32, now, lead),
            Bounds {
                floor: 6,
                ceiling: 6
            }
        );
        let clamp = valid(r#"{"min": 2, "max": 5}"#);
        assert_eq!(bounds(&clamp, 1, 32, now, lead).clamp(9), 5);
        assert_eq!(bounds(&clamp, 1, 32, now, lead).clamp(0), 2);
        let start = now + chrono::TimeDelta::seconds(30);
        let end = start + chrono::TimeDelta::seconds(600);
        let due = valid(&format!(
            r#"{{"windows": [{{"start": "{}", "end": "{}", "target": 12}}]}}"#,
            start.to_rfc3339(),
            end.to_rfc3339()
        ));
        assert_eq!(
            bounds(&due, 1, 32, now, lead).floor,
            12,
            "due within the lead"
        );
        assert_eq!(
            bounds(&due, 1, 32, now, Duration::from_secs(10)).floor,
            1,
            "not yet due"
        );
        assert_eq!(largest_window(due.policy()), 12);
        let none = valid(r#"{"max": 0}"#);
        assert_eq!(
            bounds(&none, 1, 32, now, lead),
            Bounds {
                floor: 0,
                ceiling: 0
            },
            "a max below pool.min takes its place"
        );
    }
}
