//! An operator's pool policy (`PUT /admin/.../pool-policy`): any JSON is
//! refused with a field-named error or validated into a policy whose
//! windows evaluate without a panic, in bounded time, at any instant --
//! the cron search included -- and that stores and reads back equal.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use shared_domain::pool_policy::{PolicyLimits, PoolPolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, json)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let limits = PolicyLimits { max_target: 10_000 };
    let Ok(valid) = PoolPolicy::from_json(&value).and_then(|p| p.validate(&limits)) else {
        return;
    };
    // An instant anywhere from 1970 to about 2100, and a lead of up to ~4 h.
    let now = DateTime::<Utc>::from_timestamp(i64::from(seed) * 16_000_000, 0).unwrap();
    let lead = std::time::Duration::from_secs(u64::from(seed) * 60);
    let target = valid.target_at(1, now, lead);
    let policy = valid.policy();
    if let Some(max) = policy.max {
        assert!(target <= max);
    }
    let _ = valid.window_at(now, lead);
    let stored = serde_json::to_string(policy).unwrap();
    let back = PoolPolicy::parse_json(&stored, &limits).expect("a stored policy reads back");
    assert_eq!(back.policy(), policy);
});
