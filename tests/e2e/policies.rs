//! Operator pool policies and the forecast of recurring demand, on the real
//! stack: the admin API validates and stores policies; the sizer (driven
//! pass by pass here, the stack's worker off) grows a pool ahead of a
//! window and of a recurring peak, lets it go afterwards, applies a
//! company's default, and keeps every policy inside the budget.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use diesel_async::RunQueryDsl;
use prewarm_tests::{error_code, Options, Tenant, TestStack};
use serde_json::{json, Value};
use shared_domain::ids::TemplateId;
use shared_domain::pool::{PolicySource, PoolSizing};

fn options(sizing: &[(&str, &str)]) -> Options {
    let mut env: Vec<(String, String)> = [
        ("PREWARM_POOL__MIN", "1"),
        ("PREWARM_POOL__MAX", "12"),
        ("PREWARM_POOL__SIZING_INTERVAL_MS", "200"),
    ]
    .iter()
    .chain(sizing)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("PREWARM_POOL__TARGET".into(), "2".into()));
    Options {
        worker: false,
        env,
        ..Options::default()
    }
}

const ADAPTIVE: &[(&str, &str)] = &[("PREWARM_POOL__SIZING", "adaptive")];

async fn admin(
    stack: &TestStack,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = stack
        .http
        .request(method, stack.url(path))
        .bearer_auth(&stack.admin_token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn put_policy(stack: &TestStack, path: &str, policy: Value) {
    let resp = admin(stack, reqwest::Method::PUT, path, Some(policy)).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}

async fn sizing(stack: &TestStack, template: TemplateId) -> PoolSizing {
    let resp = admin(
        stack,
        reqwest::Method::GET,
        &format!("/admin/templates/{template}/sizing"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn ready(stack: &TestStack, template: TemplateId) -> i64 {
    let mut conn = stack.db.conn().await.unwrap();
    prewarm_store::db::pool_items::counts(&mut conn, PoolKey::new(template, TemplateVersion(1)))
        .await
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_policy_is_validated_stored_and_shown() {
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let t = stack.create_template(&tenant, 1, "private").await.id;
    let path = format!("/admin/templates/{t}/pool-policy");

    for (bad, field) in [
        (json!({"min": 5, "max": 2}), "max"),
        (json!({"target": 2.5}), "target"),
        (
            json!({"windows": [{"cron": "0 25 * * *", "duration_secs": 60, "target": 3}]}),
            "windows[0].cron",
        ),
        (
            json!({"windows": [{"cron": "0 9 * * *", "duration_secs": 60, "time_zone": "Mars/Olympus", "target": 3}]}),
            "windows[0].time_zone",
        ),
        (
            json!({"windows": [{"start": "2027-01-01T00:00:00Z", "target": 3}]}),
            "windows[0]",
        ),
        (json!({"min": 1, "extra": true}), "extra"),
    ] {
        let resp = admin(&stack, reqwest::Method::PUT, &path, Some(bad.clone())).await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{bad}: {message} names {field}");
    }
    let resp = admin(&stack, reqwest::Method::GET, &path, None).await;
    assert_eq!(error_code(resp).await.1, "policy_not_found");

    let policy = json!({"min": 2, "max": 8, "windows": [
        {"cron": "0 9 * * MON-FRI", "duration_secs": 3600, "time_zone": "Europe/Berlin", "target": 6}
    ]});
    put_policy(&stack, &path, policy.clone()).await;
    let stored: Value = admin(&stack, reqwest::Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored, policy);
    let s = sizing(&stack, t).await;
    assert_eq!(s.policy_source, Some(PolicySource::Template));
    assert_eq!(s.policy.unwrap().min, Some(2));

    // A company default shows on its other templates; unknown ids are 404.
    let other = stack.create_template(&tenant, 1, "private").await.id;
    put_policy(
        &stack,
        &format!("/admin/companies/{}/pool-policy", tenant.id),
        json!({"target": 3}),
    )
    .await;
    assert_eq!(
        sizing(&stack, other).await.policy_source,
        Some(PolicySource::Company)
    );
    let missing = uuid::Uuid::now_v7();
    let resp = admin(
        &stack,
        reqwest::Method::PUT,
        &format!("/admin/templates/{missing}/pool-policy"),
        Some(json!({})),
    )
    .await;
    assert_eq!(error_code(resp).await.1, "template_not_found");
    let resp = admin(
        &stack,
        reqwest::Method::PUT,
        &format!("/admin/companies/{missing}/pool-policy"),
        Some(json!({})),
    )
    .await;
    assert_eq!(error_code(resp).await.1, "company_not_found");
    // Tenants cannot reach it.
    let resp = stack
        .http
        .get(stack.url(&path))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = admin(&stack, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        sizing(&stack, t).await.policy_source,
        Some(PolicySource::Company),
        "the company's default applies once the template's own is gone"
    );
    let resp = admin(&stack, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(error_code(resp).await.1, "policy_not_found");
    stack.finish().await;
}

/// A one-off window: the pool is grown one lead time before the start (not
/// earlier), is full when the window starts, and goes back after its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_fills_its_pool_by_its_start_and_lets_it_go_after() {
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let t = stack.create_template(&tenant, 2, "private").await.id;
    let sizer = stack.sizer(&[]).await;
    sizer.tick().await.unwrap();
    // The lead: a pass, plus filling 6 items at the refill time estimate.
    let lead = sizer.lead_secs_for(6, 2);
    assert!(lead > 0.2 && lead < 30.0, "lead {lead}");

    let far = Utc::now() + TimeDelta::seconds(120);
    let window = |start: chrono::DateTime<Utc>, secs: i64| json!({"windows": [{"start": start.to_rfc3339(), "end": (start + TimeDelta::seconds(secs)).to_rfc3339(), "target": 6}]});
    let path = format!("/admin/templates/{t}/pool-policy");
    put_policy(&stack, &path, window(far, 60)).await;
    let report = sizer.tick().await.unwrap();
    assert_eq!(report.governed, 1);
    assert_eq!(report.windows, 0, "two minutes away is not due");
    assert_eq!(sizing(&stack, t).await.target, 1);
    assert!(ready(&stack, t).await <= 1);

    // Due within the lead: the pass grows the pool before the start.
    let start = Utc::now() + TimeDelta::milliseconds((lead * 1000.0 * 0.5) as i64);
    put_policy(&stack, &path, window(start, 2)).await;
    let report = sizer.tick().await.unwrap();
    assert_eq!(report.windows, 1);
    let s = sizing(&stack, t).await;
    assert_eq!(s.target, 6, "{s:?}");
    assert_eq!(ready(&stack, t).await, 6, "full by the pass's end");
    assert!(Utc::now() < start + TimeDelta::seconds(2));
    assert!(s.window.is_some(), "the window shows: {s:?}");

    // After its end, the target is back at the demand's size at once (pops
    // are not refilled above it), and the hold level comes down an item a
    // pass (no demand: nothing is held for it).
    let wait = (start + TimeDelta::seconds(2) - Utc::now())
        .num_milliseconds()
        .max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait + 100)).await;
    let mut levels = Vec::new();
    for _ in 0..5 {
        sizer.tick().await.unwrap();
        let s = sizing(&stack, t).await;
        levels.push((s.target, s.hold));
    }
    assert_eq!(levels, [(1, 5), (1, 4), (1, 3), (1, 2), (1, 1)]);
    assert_eq!(ready(&stack, t).await, 1, "the surplus is retired");
    stack.finish().await;
}

/// A company's default governs each of its templates (those created after
/// it too) until one has its own; under fixed sizing as under adaptive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_default_governs_its_templates_until_one_has_its_own() {
    let stack = TestStack::spawn(options(&[("PREWARM_POOL__SIZING", "fixed")])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let other = stack.create_tenant("other", 100).await;
    let a = stack.create_template(&tenant, 1, "private").await.id;
    let elsewhere = stack.create_template(&other, 1, "private").await.id;
    let sizer = stack.sizer(&[]).await;
    put_policy(
        &stack,
        &format!("/admin/companies/{}/pool-policy", tenant.id),
        json!({"target": 3}),
    )
    .await;
    sizer.tick().await.unwrap();
    assert_eq!(ready(&stack, a).await, 3);
    let b = stack.create_template(&tenant, 1, "private").await.id;
    // Templates are read up to the clock less the commit lag (1 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sizer.tick().await.unwrap();
    assert_eq!(ready(&stack, b).await, 3, "a template created later");
    assert_eq!(
        sizing(&stack, elsewhere).await.target,
        2,
        "pool.target elsewhere"
    );

    put_policy(
        &stack,
        &format!("/admin/templates/{b}/pool-policy"),
        json!({"target": 5}),
    )
    .await;
    sizer.tick().await.unwrap();
    assert_eq!(ready(&stack, b).await, 5, "its own policy wins");
    assert_eq!(ready(&stack, a).await, 3);
    let resp = admin(
        &stack,
        reqwest::Method::DELETE,
        &format!("/admin/companies/{}/pool-policy", tenant.id),
        None,
    )
    .await;
    assert_eq!(resp.status(), 204);
    sizer.tick().await.unwrap();
    assert_eq!(sizing(&stack, a).await.target, 2, "back to pool.target");
    assert_eq!(ready(&stack, a).await, 2);
    stack.finish().await;
}

/// Adaptive sizing under a budget of 6 objects, two 1-image templates, and
/// a policy of floor `min` on the first.
async fn governed_and_plain(min: i32) -> (TestStack, Tenant, TemplateId, TemplateId) {
    let mut sizing_env = ADAPTIVE.to_vec();
    sizing_env.push(("PREWARM_POOL__BUDGET_OBJECTS", "6"));
    let stack = TestStack::spawn(options(&sizing_env)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let governed = stack.create_template(&tenant, 1, "private").await.id;
    let plain = stack.create_template(&tenant, 1, "private").await.id;
    put_policy(
        &stack,
        &format!("/admin/templates/{governed}/pool-policy"),
        json!({ "min": min }),
    )
    .await;
    (stack, tenant, governed, plain)
}

/// The budget is the storage bill: a policy's floor is served first, but
/// never past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_wins_over_a_policy_and_policies_come_first_within_it() {
    let (stack, _, governed, plain) = governed_and_plain(9).await;
    let sizer = stack.sizer(&[("PREWARM_POOL__BUDGET_OBJECTS", "6")]).await;
    sizer.tick().await.unwrap();
    let refiller = stack
        .reconciler(&[("PREWARM_POOL__BUDGET_OBJECTS", "6")])
        .await
        .refiller;
    refiller.refill(plain).await.unwrap();
    refiller.refill(governed).await.unwrap();
    let (g, p) = (ready(&stack, governed).await, ready(&stack, plain).await);
    assert!(g + p <= 6, "{g} + {p} over the budget of 6");
    assert_eq!(
        g, 5,
        "the policy's floor first, up to the budget less the other's minimum"
    );
    assert_eq!(p, 1);
    stack.finish().await;
}

/// Designs backdated into the previous weeks' same slot make a recurring
/// peak: the forecast grows the template's pool before any design of
/// today's; another template, and the same one with the forecast off, keep
/// the minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_peak_grows_a_pool_before_its_first_design() {
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let tenant = stack.create_tenant("acme", 10_000).await;
    let peak = stack.create_template(&tenant, 1, "private").await.id;
    let quiet = stack.create_template(&tenant, 1, "private").await.id;
    {
        let mut conn = stack.db.conn().await.unwrap();
        // Both templates are three weeks old; `peak` had 2 designs a second
        // around this time of the week, each of the last two weeks.
        diesel::sql_query("UPDATE templates SET created_at = now() - interval '21 days'")
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query(
            "INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, created_at)
             SELECT gen_random_uuid(), $1, $2, 1, '{}'::jsonb, 'pool',
                    now() - make_interval(days => 7 * w) + make_interval(secs => (s - 1800) * 0.5)
               FROM generate_series(1, 2) w, generate_series(0, 3599) s",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant.id.0)
        .bind::<diesel::sql_types::Uuid, _>(peak.0)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let off = stack.sizer(&[("PREWARM_POOL__FORECAST", "false")]).await;
    let report = off.tick().await.unwrap();
    assert_eq!(report.forecast, 0);
    assert_eq!(
        sizing(&stack, peak).await.target,
        1,
        "no forecast: the minimum"
    );

    let on = stack.sizer(&[]).await;
    let report = on.tick().await.unwrap();
    assert_eq!(report.forecast, 1, "{report:?}");
    let s = sizing(&stack, peak).await;
    assert!(s.target >= 3, "{s:?}");
    let per_minute = s.forecast_per_minute.unwrap();
    assert!(
        (60.0..=240.0).contains(&per_minute),
        "{per_minute} designs/min"
    );
    assert_eq!(ready(&stack, peak).await, i64::from(s.target), "grown now");
    assert_eq!(sizing(&stack, quiet).await.target, 1);
    stack.finish().await;
}

/// `each` designs of `template` made at each of `instants` (a second
/// apart), written straight into the ledger as history.
async fn designs_at(
    stack: &TestStack,
    tenant: &Tenant,
    template: TemplateId,
    instants: &[chrono::DateTime<Utc>],
    each: i32,
) {
    let mut conn = stack.db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO designs (id, company_id, template_id, template_version, layout, served_from, created_at)
         SELECT gen_random_uuid(), $1, $2, 1, '{}'::jsonb, 'pool', ts + make_interval(secs => s)
           FROM unnest($3) ts, generate_series(0, $4 - 1) s",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.id.0)
    .bind::<diesel::sql_types::Uuid, _>(template.0)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Timestamptz>, _>(instants)
    .bind::<diesel::sql_types::Integer, _>(each)
    .execute(&mut conn)
    .await
    .unwrap();
}

/// The profile counts designs on the forecast zone's wall clock: a peak at
/// 09:10 in Berlin on the Mondays either side of the spring clock change
/// (08:10Z, then 07:10Z) is one slot's, and the forecast reads it the
/// Monday after at 08:50 local (06:50Z). Counted in UTC, the same designs
/// are two slots an hour apart, and the coming one holds one week of them.
/// Both ways of counting -- the rebuild from history and the passes'
/// absorbing -- put the designs in the same slots, each once. A zone
/// Postgres does not know is an error before any profile is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_counts_a_peak_on_its_zones_wall_clock() {
    use prewarm_store::db::demand_profile::{self, Profile, Tz};
    use warmup_worker::forecast::Forecaster;
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let tenant = stack.create_tenant("acme", 10_000).await;
    let t = stack.create_template(&tenant, 1, "private").await.id;
    let instant = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let peaks = ["2026-03-23T08:10:00Z", "2026-03-30T07:10:00Z"].map(instant);
    designs_at(&stack, &tenant, t, &peaks, 30).await;
    let mut conn = stack.db.conn().await.unwrap();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp() as f64;
    let (upto, now) = (at("2026-04-06T06:00:00Z"), at("2026-04-06T06:50:00Z"));
    for (zone, slots, level) in [
        (Tz::Europe__Berlin, 1, 0.5 * 30.0 + 0.25 * 30.0),
        (Tz::UTC, 2, 0.5 * 30.0),
    ] {
        let f = Forecaster {
            profile: Profile { alpha: 0.5, zone },
            weeks: 4,
        };
        demand_profile::rebuild(&mut conn, upto, 4, &f.profile)
            .await
            .unwrap();
        let all = demand_profile::due(&mut conn, &(0..672).collect::<Vec<i16>>(), 0.0, 0, 100)
            .await
            .unwrap();
        assert_eq!(all.len(), slots, "{zone}: {all:?}");
        let coming = demand_profile::due(
            &mut conn,
            &f.slots(now, 1800.0),
            0.0,
            f.profile.week(now),
            100,
        )
        .await
        .unwrap();
        assert_eq!(coming.len(), 1, "{zone}: {coming:?}");
        assert_eq!(coming[0].level, level, "{zone}: {coming:?}");
        assert_eq!(
            coming[0].slot,
            f.profile.slot(at("2026-03-30T07:10:00Z")),
            "{zone}"
        );

        // The passes' way: an empty profile, then the designs absorbed.
        demand_profile::rebuild(&mut conn, at("2026-03-20T00:00:00Z"), 4, &f.profile)
            .await
            .unwrap();
        demand_profile::absorb(&mut conn, at("2026-03-20T00:00:00Z"), upto, &f.profile)
            .await
            .unwrap();
        let absorbed = demand_profile::due(&mut conn, &(0..672).collect::<Vec<i16>>(), 0.0, 0, 100)
            .await
            .unwrap();
        let slots_of = |rows: &[demand_profile::ProfileRow]| {
            let mut s: Vec<i16> = rows.iter().map(|r| r.slot).collect();
            s.sort();
            s
        };
        assert_eq!(
            slots_of(&absorbed),
            slots_of(&all),
            "{zone}: the same slots"
        );
        assert_eq!(
            absorbed.iter().map(|r| r.current).sum::<f64>(),
            60.0,
            "{zone}: every design once"
        );
    }
    demand_profile::check_zone(&mut conn, "Europe/Berlin")
        .await
        .unwrap();
    let unknown = demand_profile::check_zone(&mut conn, "Mars/Olympus_Mons").await;
    assert!(
        unknown
            .as_ref()
            .is_err_and(|e| format!("{e:?}").contains("not recognized")),
        "{unknown:?}"
    );
    drop(conn);
    stack.finish().await;
}

/// A sizer counting in another zone than the stored profile's (a changed
/// `pool.forecast_time_zone`) rebuilds it: no row keeps the old zone's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_forecast_zone_rebuilds_the_profile() {
    use prewarm_store::db::demand_profile::{Profile, Tz};
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let tenant = stack.create_tenant("acme", 10_000).await;
    let t = stack.create_template(&tenant, 1, "private").await.id;
    // A minute into a slot a week ago, so its 10 designs share the slot
    // (slots are 15 minutes in UTC and in Kolkata's +05:30 alike).
    let week_ago = (Utc::now() - TimeDelta::days(7)).timestamp();
    let when = chrono::DateTime::from_timestamp(week_ago - week_ago % 900 + 60, 0).unwrap();
    {
        let mut conn = stack.db.conn().await.unwrap();
        diesel::sql_query("UPDATE templates SET created_at = now() - interval '21 days'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    designs_at(&stack, &tenant, t, &[when], 10).await;
    let slots = || async {
        #[derive(diesel::QueryableByName)]
        struct Slot {
            #[diesel(sql_type = diesel::sql_types::SmallInt)]
            slot: i16,
        }
        let mut conn = stack.db.conn().await.unwrap();
        diesel::sql_query("SELECT slot FROM demand_profile WHERE template_id = $1 ORDER BY slot")
            .bind::<diesel::sql_types::Uuid, _>(t.0)
            .load::<Slot>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.slot)
            .collect::<Vec<_>>()
    };
    let slot_in = |zone| Profile { alpha: 0.5, zone }.slot(when.timestamp() as f64);
    let utc = stack.sizer(&[]).await;
    assert!(!utc.tick().await.unwrap().skipped);
    assert_eq!(slots().await, vec![slot_in(Tz::UTC)]);
    drop(utc);
    let zone = [("PREWARM_POOL__FORECAST_TIME_ZONE", "Asia/Kolkata")];
    let kolkata = stack.sizer(&zone).await;
    assert!(!kolkata.tick().await.unwrap().skipped);
    let rebuilt = slots().await;
    assert_eq!(rebuilt, vec![slot_in(Tz::Asia__Kolkata)]);
    assert_ne!(
        rebuilt,
        vec![slot_in(Tz::UTC)],
        "five and a half hours apart"
    );
    stack.finish().await;
}

/// A governed template deleted under a budget leaves the plan at the next
/// pass: its floor no longer holds the budget from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_governed_template_gives_its_budget_back() {
    let (stack, tenant, governed, plain) = governed_and_plain(6).await;
    let sizer = stack.sizer(&[]).await;
    sizer.tick().await.unwrap();
    // The untracked template keeps its minimum; the policy takes the rest.
    assert_eq!(sizing(&stack, governed).await.target, 5);
    let resp = stack
        .http
        .delete(stack.url(&format!("/templates/{governed}")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // Deletions are read up to the clock less the commit lag.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = sizer.tick().await.unwrap();
    assert_eq!(report.governed, 0, "{report:?}");
    let resp = admin(
        &stack,
        reqwest::Method::GET,
        &format!("/admin/templates/{governed}/pool-policy"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 404, "the policy went with the template");
    let mut conn = stack.db.conn().await.unwrap();
    let row = prewarm_store::db::pool_targets::find(&mut conn, governed)
        .await
        .unwrap();
    assert!(row.is_none(), "its plan is gone: {row:?}");
    drop(conn);
    assert_eq!(sizing(&stack, plain).await.target, 1);
    stack.finish().await;
}

/// Two passes that read the designs from the same position (a lease lost
/// mid-pass): only the first records its work, so the forecast's profile
/// counts each design once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_passes_from_one_position_record_their_work_once() {
    use prewarm_store::db::demand_profile::Profile;
    use prewarm_store::db::pool_targets::{self, ProfileStep};
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let t = stack.create_template(&tenant, 1, "private").await.id;
    for _ in 0..3 {
        stack.create_design(&tenant, t).await;
    }
    let mut conn = stack.db.conn().await.unwrap();
    let (after, upper) = (0.0, Utc::now().timestamp() as f64 + 1.0);
    let step = |marker: &'static str| ProfileStep {
        after,
        upper,
        profile: Profile {
            alpha: 0.5,
            zone: prewarm_store::db::demand_profile::Tz::UTC,
        },
        marker: ("test-forecast", marker),
    };
    let first = pool_targets::apply(
        &mut conn,
        &[],
        &[],
        Some(step("a")),
        ("test-sizer", "", "1"),
    )
    .await;
    let second = pool_targets::apply(
        &mut conn,
        &[],
        &[],
        Some(step("b")),
        ("test-sizer", "", "1"),
    )
    .await;
    assert!(first.unwrap());
    assert!(!second.unwrap(), "the second pass finds the cursor moved");
    let counted: f64 = {
        #[derive(diesel::QueryableByName)]
        struct Sum {
            #[diesel(sql_type = diesel::sql_types::Double)]
            n: f64,
        }
        diesel::sql_query("SELECT coalesce(sum(current), 0)::float8 AS n FROM demand_profile")
            .get_result::<Sum>(&mut conn)
            .await
            .unwrap()
            .n
    };
    assert_eq!(counted, 3.0, "each design once");
    let moved = pool_targets::apply(&mut conn, &[], &[], None, ("test-sizer", "1", "2")).await;
    assert!(moved.unwrap(), "from where it is, it moves");
    drop(conn);
    stack.finish().await;
}

/// A pass that would rebuild the demand profile after another replica's
/// pass moved the sizer's cursor on (a lease lost mid-pass) rebuilds
/// nothing: the other pass absorbed the designs after the old position,
/// and a rebuild up to it would drop them from the history for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_behind_the_sizers_cursor_writes_nothing() {
    use prewarm_store::db::cursors;
    use prewarm_store::db::demand_profile::{Profile, Tz};
    use warmup_worker::forecast::Forecaster;
    let stack = TestStack::spawn(options(ADAPTIVE)).await;
    let mut conn = stack.db.conn().await.unwrap();
    let f = Forecaster {
        profile: Profile {
            alpha: 0.5,
            zone: Tz::UTC,
        },
        weeks: 4,
    };
    let now = Utc::now().timestamp() as f64;
    let (old, moved) = (format!("{:.6}", now - 10.0), format!("{:.6}", now));
    // The other pass moved the cursor and left its marker.
    let theirs = format!("1 {moved} UTC");
    cursors::set(&mut conn, "sizer", &moved).await.unwrap();
    cursors::set(&mut conn, "forecast", &theirs).await.unwrap();
    let late = f.ensure_built(&mut conn, &old, ("sizer", &old)).await;
    assert!(matches!(late, Ok(None)), "{late:?}");
    let marker = cursors::get(&mut conn, "forecast").await.unwrap();
    assert_eq!(
        marker.as_deref(),
        Some(theirs.as_str()),
        "rebuilt behind the cursor"
    );
    // From where the cursor is, a rebuild (the marker gone) goes ahead.
    cursors::clear(&mut conn, "forecast").await.unwrap();
    let current = f.ensure_built(&mut conn, &moved, ("sizer", &moved)).await;
    assert!(matches!(current, Ok(Some(_))), "{current:?}");
    let marker = cursors::get(&mut conn, "forecast").await.unwrap().unwrap();
    assert!(marker.contains(&moved), "{marker}");
    drop(conn);
    stack.finish().await;
}
