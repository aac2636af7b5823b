//! Adaptive pool sizing on the real stack: demand grows a template's pool,
//! decayed demand shrinks it back (surplus objects deleted), idle templates
//! keep the minimum, and a global budget is never exceeded.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::time::{Duration, Instant};

use prewarm_store::pause::at;
use prewarm_tests::{Options, Tenant, TestStack};
use serde_json::Value;
use shared_domain::ids::TemplateId;
use shared_domain::object_keys::POOL_PREFIX;
use shared_domain::pool::{PoolLevels, PoolSizing};

fn adaptive(extra: &[(&str, &str)]) -> Options {
    let mut env: Vec<(String, String)> = [
        ("PREWARM_POOL__SIZING", "adaptive"),
        ("PREWARM_POOL__MIN", "1"),
        ("PREWARM_POOL__MAX", "12"),
        ("PREWARM_POOL__SIZING_INTERVAL_MS", "200"),
        ("PREWARM_POOL__DEMAND_FAST_SECS", "1"),
        ("PREWARM_POOL__DEMAND_SLOW_SECS", "2"),
        ("PREWARM_POOL__MISS_TARGET", "0.01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Options {
        env,
        ..Options::default()
    }
}

/// Live (copying or ready) and ready items of every template, in one statement.
async fn pooled_items(stack: &TestStack) -> (i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Pooled {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        live: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ready: i64,
    }
    let mut conn = stack.db.conn().await.unwrap();
    let p: Pooled = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) FILTER (WHERE state IN ('copying', 'ready')) AS live,
                    count(*) FILTER (WHERE state = 'ready') AS ready
               FROM pool_items",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    (p.live, p.ready)
}

/// A stack without a worker (adaptive sizing, `extra` settings), and two
/// templates of 1 image with empty pools.
async fn two_templates_without_a_worker(
    extra: &[(&str, &str)],
) -> (TestStack, TemplateId, TemplateId) {
    let mut options = adaptive(extra);
    options.worker = false;
    let stack = TestStack::spawn(options).await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let a = stack.create_template(&tenant, 1, "private").await.id;
    let b = stack.create_template(&tenant, 1, "private").await.id;
    (stack, a, b)
}

/// Saves a plan (the sizer's `pool_targets` rows) of the given targets.
async fn save_plan(stack: &TestStack, targets: &[(TemplateId, i32)]) {
    let levels: Vec<_> = targets
        .iter()
        .map(|(t, n)| (*t, PoolLevels::at(*n)))
        .collect();
    save_levels(stack, &levels).await;
}

/// The same with both levels.
async fn save_levels(stack: &TestStack, targets: &[(TemplateId, PoolLevels)]) {
    let rows: Vec<_> = targets
        .iter()
        .map(|(t, l)| prewarm_store::db::pool_targets::PoolTargetRow {
            template_id: t.0,
            target: l.fill,
            hold: Some(l.hold),
            demand_fast: 0.0,
            demand_slow: 0.0,
            refill_secs: 1.0,
            computed_at: chrono::Utc::now(),
            last_design_at: None,
            forecast: 0.0,
        })
        .collect();
    let mut conn = stack.db.conn().await.unwrap();
    prewarm_store::db::pool_targets::save(&mut conn, &rows)
        .await
        .unwrap();
}

/// The budget's recorded total of live items (`pool_live_total`).
async fn recorded_live(stack: &TestStack) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Total {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        live: i64,
    }
    let mut conn = stack.db.conn().await.unwrap();
    let t: Total = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT objects AS live FROM pool_live_total"),
        &mut conn,
    )
    .await
    .unwrap();
    t.live
}

async fn sizing(stack: &TestStack, template: TemplateId) -> PoolSizing {
    let resp = stack
        .http
        .get(stack.url(&format!("/admin/templates/{template}/sizing")))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn wait_for(
    stack: &TestStack,
    template: TemplateId,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&PoolSizing) -> bool,
) -> PoolSizing {
    let deadline = Instant::now() + timeout;
    loop {
        let s = sizing(stack, template).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn burst(stack: &TestStack, tenant: &Tenant, template: TemplateId, n: usize) {
    let requests = (0..n).map(|_| stack.post_design(tenant, template));
    for resp in futures::future::join_all(requests).await {
        assert_eq!(resp.status(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_grows_a_pool_and_its_decay_shrinks_it_back() {
    let stack = TestStack::spawn(adaptive(&[])).await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let hot = stack.create_template(&tenant, 3, "private").await;
    let idle = stack.create_template(&tenant, 3, "private").await;
    for t in [hot.id, idle.id] {
        wait_for(&stack, t, Duration::from_secs(20), "min pool", |s| {
            s.sizing == shared_domain::pool::Sizing::Adaptive && s.target == 1 && s.ready == 1
        })
        .await;
    }

    // A burst on `hot`: its demand, then its target and its pool grow.
    burst(&stack, &tenant, hot.id, 24).await;
    let grown = wait_for(&stack, hot.id, Duration::from_secs(20), "no growth", |s| {
        s.target >= 3 && s.ready >= i64::from(s.target) && s.planned_at.is_some()
    })
    .await;
    eprintln!("after the burst: {grown:?}");
    // The fast estimate may read 0 at the pass that grew it (a woken
    // template's first designs are counted as a rate once there are 3);
    // the larger of the two is what the size follows.
    let demand = grown
        .demand_fast_per_minute
        .unwrap()
        .max(grown.demand_slow_per_minute.unwrap());
    assert!(demand > 0.0);
    assert!(grown.refill_secs.unwrap() > 0.0);
    assert_eq!(
        sizing(&stack, idle.id).await.target,
        1,
        "idle keeps the minimum"
    );

    // Demand decays: back to the minimum, surplus items retired, their objects deleted.
    let shrunk = wait_for(&stack, hot.id, Duration::from_secs(40), "no shrink", |s| {
        s.target == 1 && s.ready == 1
    })
    .await;
    eprintln!("after the decay: {shrunk:?}");
    // Objects under pool/<hot>/ belong to the one ready item or to designs
    // made from pool items; none to the retired items.
    let list: Value = stack
        .get(&tenant, "/designs?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let warm = list["designs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["template_id"] == hot.id.to_string() && d["served_from"] == "pool")
        .count();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let objects = stack
            .objects
            .list(&format!("{POOL_PREFIX}{}/", hot.id))
            .await
            .unwrap();
        if objects.len() == (1 + warm) * 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} pool objects left for 1 ready item and {warm} warm designs",
            objects.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker's metrics show the plan.
    let text = stack.worker_metrics().await;
    let planned = prewarm_tests::metric_value(&text, "prewarm_pool_planned_items_total", &[]);
    assert_eq!(planned, Some(2.0), "two templates at their minimum");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_the_items_pooled_across_templates() {
    // 2-image templates: 10 objects hold 5 items.
    let stack = TestStack::spawn(adaptive(&[
        ("PREWARM_POOL__BUDGET_OBJECTS", "10"),
        ("PREWARM_POOL__DEMAND_FAST_SECS", "30"),
        ("PREWARM_POOL__DEMAND_SLOW_SECS", "60"),
    ]))
    .await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let mut templates = Vec::new();
    for _ in 0..3 {
        templates.push(stack.create_template(&tenant, 2, "private").await);
    }
    for t in &templates {
        burst(&stack, &tenant, t.id, 16).await;
    }
    // Demand wants far more than 5 in all; the plan holds 5, and the ledger
    // follows. Each total is read in one statement: a sum of per-template
    // reads mixes plans of different passes (the plan moves slots between
    // templates as their demand changes) and once read "targets 6".
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = sizing(&stack, templates[0].id).await;
        let planned = s.planned_items_total.unwrap_or(0);
        let (live, ready) = pooled_items(&stack).await;
        assert!(
            planned <= 5 && live <= 5,
            "planned {planned}, live items {live}"
        );
        if planned == 5 && ready == 5 {
            for t in &templates {
                assert!(
                    sizing(&stack, t.id).await.target >= 1,
                    "each keeps its minimum"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plan never used the budget: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body: Value = stack
        .get(&tenant, &format!("/templates/{}/pool", templates[0].id))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["target"].as_i64().unwrap() >= 1);
    stack.finish().await;
}

/// Items of a template ever reserved (in any state).
async fn items_ever(stack: &TestStack, template: TemplateId) -> i64 {
    use diesel::prelude::*;
    use prewarm_store::db::schema::pool_items;
    let mut conn = stack.db.conn().await.unwrap();
    diesel_async::RunQueryDsl::get_result(
        pool_items::table
            .filter(pool_items::template_id.eq(template.0))
            .count(),
        &mut conn,
    )
    .await
    .unwrap()
}

/// A pool between its fill and hold levels is left alone: a refill after a
/// pop copies nothing (the surplus of a burst that ended is used up by the
/// designs that follow, not retired and copied again), and retires nothing;
/// below the fill level it is refilled to it, above the hold level retired
/// down to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_between_its_fill_and_hold_levels_is_neither_refilled_nor_retired() {
    let mut options = adaptive(&[]);
    options.worker = false;
    let stack = TestStack::spawn(options).await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let a = stack.create_template(&tenant, 1, "private").await.id;
    let refiller = stack.reconciler(&[]).await.refiller;
    save_levels(&stack, &[(a, PoolLevels::at(5))]).await;
    refiller.refill(a).await.unwrap();
    assert_eq!(pooled_items(&stack).await, (5, 5));
    // The burst is over: filled to 2, held to 4.
    save_levels(&stack, &[(a, PoolLevels { fill: 2, hold: 4 })]).await;
    refiller.refill(a).await.unwrap();
    assert_eq!(
        pooled_items(&stack).await,
        (4, 4),
        "retired down to the hold level"
    );
    for left in [3, 2] {
        assert_eq!(stack.post_design(&tenant, a).await.status(), 201);
        refiller.refill_for(a, true).await.unwrap();
        assert_eq!(
            pooled_items(&stack).await,
            (left, left),
            "a pop above the fill level is not refilled"
        );
    }
    assert_eq!(
        items_ever(&stack, a).await,
        5,
        "nothing copied since the first fill"
    );
    assert_eq!(stack.post_design(&tenant, a).await.status(), 201);
    refiller.refill_for(a, true).await.unwrap();
    assert_eq!(
        pooled_items(&stack).await,
        (2, 2),
        "refilled to the fill level"
    );
    assert_eq!(items_ever(&stack, a).await, 6);
    let shown = sizing(&stack, a).await;
    assert_eq!((shown.target, shown.hold), (2, 4), "{shown:?}");
    stack.finish().await;
}

/// A held surplus the designs used up stops being planned: each pass caps
/// a hold level at the items the pool still has, so a pool that went back
/// to its fill level claims no budget for items that are gone (and the
/// admin view does not show them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_level_comes_down_to_what_the_pool_still_has() {
    let keep = [("PREWARM_POOL__KEEP_SECS", "3600")];
    let mut options = adaptive(&keep);
    options.worker = false;
    let stack = TestStack::spawn(options).await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let a = stack.create_template(&tenant, 1, "private").await.id;
    let sizer = stack.sizer(&keep).await;
    // A burst (copied on the spot: no pool yet) grows the plan to the max.
    burst(&stack, &tenant, a, 12).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sizer.tick().await.unwrap();
    let grown = wait_for(&stack, a, Duration::from_secs(20), "pool grown", |s| {
        s.target == 12 && s.ready == 12
    })
    .await;
    assert_eq!(grown.hold, 12);
    // Ten designs take ten items; with no worker nothing refills them.
    for _ in 0..10 {
        assert_eq!(stack.post_design(&tenant, a).await.status(), 201);
    }
    // The demand decays: the size falls, and `keep_secs` would hold the
    // twelve for the hour -- but only two are left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sizer.tick().await.unwrap();
    let after = sizing(&stack, a).await;
    assert!(after.target < 12, "{after:?}");
    assert!(
        after.hold <= after.target.max(2),
        "the hold level claims items the pool no longer has: {after:?}"
    );
    stack.finish().await;
}

/// The plan moves slots between templates; whichever template a replica
/// refills first, live items never exceed the budget (the reserve checks it
/// against every template's recorded live items, under one lock), and the
/// moved slots are filled once the shrinking template gave them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_moves_slots_never_overfills_the_budget() {
    let (stack, a, b) =
        two_templates_without_a_worker(&[("PREWARM_POOL__BUDGET_OBJECTS", "5")]).await;
    let refiller = stack.reconciler(&[]).await.refiller;
    save_plan(&stack, &[(a, 4), (b, 1)]).await;
    refiller.refill(a).await.unwrap();
    refiller.refill(b).await.unwrap();
    assert_eq!(pooled_items(&stack).await, (5, 5));
    // The plan turns around; the growing template is refilled first.
    save_plan(&stack, &[(a, 1), (b, 4)]).await;
    refiller.refill(b).await.unwrap();
    let (live, _) = pooled_items(&stack).await;
    assert!(live <= 5, "live items {live} over the budget of 5");
    refiller.refill(a).await.unwrap();
    refiller.refill(b).await.unwrap();
    assert_eq!(pooled_items(&stack).await, (5, 5));
    let mut conn = stack.db.conn().await.unwrap();
    let (ready_b, _) =
        prewarm_store::db::pool_items::counts(&mut conn, PoolKey::new(b, TemplateVersion(1)))
            .await
            .unwrap();
    assert_eq!(ready_b, 4, "the moved slots were filled");
    stack.finish().await;
}

/// Two replicas refill two templates at once, each planned 4 of a budget of
/// 5. The first is held after it read the budget's room and inserted its
/// items, before it recorded them; the second must wait for it (the total
/// is locked from the check to the commit) and then gets only what is left.
/// Without the lock both would read an empty budget and pool 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_refills_racing_for_the_budgets_last_slots_never_overfill_it() {
    let (stack, a, b) =
        two_templates_without_a_worker(&[("PREWARM_POOL__BUDGET_OBJECTS", "5")]).await;
    save_plan(&stack, &[(a, 4), (b, 4)]).await;
    let first = stack.reconciler(&[]).await.refiller;
    let second = stack.reconciler(&[]).await.refiller;

    let mut gate = stack.pause.arm(at::BUDGET_CHECKED);
    let held = tokio::spawn(async move { first.refill(a).await });
    gate.reached().await;
    let racing = tokio::spawn(async move { second.refill(b).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !racing.is_finished(),
        "the second refill went past the budget while the first held it"
    );
    gate.release();
    held.await.unwrap().expect("first refill");
    racing.await.unwrap().expect("second refill");

    assert_eq!(
        pooled_items(&stack).await,
        (5, 5),
        "the budget is full, not over"
    );
    assert_eq!(recorded_live(&stack).await, 5);
    stack.finish().await;
}

/// The budget counts objects: an item of a 3-image template takes three
/// times the room of a 1-image one, whatever the plan asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_counts_each_items_objects() {
    let mut options = adaptive(&[("PREWARM_POOL__BUDGET_OBJECTS", "5")]);
    options.worker = false;
    let stack = TestStack::spawn(options).await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let three = stack.create_template(&tenant, 3, "private").await.id;
    let one = stack.create_template(&tenant, 1, "private").await.id;
    save_plan(&stack, &[(three, 4), (one, 4)]).await;
    let refiller = stack.reconciler(&[]).await.refiller;
    refiller.refill(three).await.unwrap();
    refiller.refill(one).await.unwrap();
    let mut conn = stack.db.conn().await.unwrap();
    let (ready_three, _) =
        prewarm_store::db::pool_items::counts(&mut conn, PoolKey::new(three, TemplateVersion(1)))
            .await
            .unwrap();
    let (ready_one, _) =
        prewarm_store::db::pool_items::counts(&mut conn, PoolKey::new(one, TemplateVersion(1)))
            .await
            .unwrap();
    drop(conn);
    assert_eq!(
        (ready_three, ready_one),
        (1, 2),
        "5 objects: one 3-image item and two 1-image ones"
    );
    assert_eq!(recorded_live(&stack).await, 5);
    stack.finish().await;
}

/// Workers without a budget do not keep the live-item records; a worker
/// started with one recounts them, so items pooled meanwhile count against
/// its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_with_a_budget_counts_what_was_pooled_without_one() {
    let (stack, a, b) = two_templates_without_a_worker(&[]).await;
    save_plan(&stack, &[(a, 4), (b, 4)]).await;
    let unbudgeted = stack.reconciler(&[]).await.refiller;
    unbudgeted.refill(a).await.expect("refill without a budget");
    assert_eq!(pooled_items(&stack).await, (4, 4));

    let budgeted = stack
        .reconciler(&[("PREWARM_POOL__BUDGET_OBJECTS", "5")])
        .await
        .refiller;
    assert_eq!(recorded_live(&stack).await, 4, "recounted at its start");
    budgeted.refill(b).await.expect("refill with a budget");
    assert_eq!(pooled_items(&stack).await, (5, 5));
    stack.finish().await;
}
