//! Forced interleavings: each test parks one background mechanism at a pause
//! point (`prewarm_store::pause`), in the middle of a decision a concurrent
//! change could make unsafe, makes the change a client would make, lets it go on,
//! and checks that no design lost an object. Each failed on the code before
//! the fix it guards (see `docs/reliability.md`).

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use prewarm_store::db::pool_items;
use prewarm_store::pause::at;
use prewarm_tests::invariants::{check_designs, check_pool_list};
use prewarm_tests::relay::TcpRelay;
use prewarm_tests::{error_code, Options, TestStack};
use reqwest::StatusCode;
use shared_domain::design::{Design, ServedFrom};

/// The stack's own worker consumes warm-up messages but runs no reconciler
/// passes: the test drives the background mechanism it pauses.
fn quiet_worker(pool_target: i32, env: &[(&str, &str)]) -> Options {
    Options {
        pool_target,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        worker_env: vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into())],
        ..Options::default()
    }
}

const FILL: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_surplus_never_discards_an_item_a_design_claimed() {
    let stack = TestStack::spawn(quiet_worker(4, &[])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;

    // A replica with a lowered target retires the 3 newest ready items...
    let shrinker = stack
        .reconciler(&[("PREWARM_POOL__TARGET", "1")])
        .await
        .refiller;
    let mut gate = stack.pause.arm(at::RETIRE_CHOSEN);
    let t = template.id;
    let shrink = tokio::spawn(async move { shrinker.refill(t).await });
    gate.reached().await;
    // ...and, after it chose them, clients claim every item.
    let mut made = Vec::new();
    for _ in 0..4 {
        let design = stack.create_design(&tenant, template.id).await;
        assert_eq!(design.served_from, ServedFrom::Pool);
        made.push(design);
    }
    gate.release();
    shrink.await.unwrap().expect("shrink");
    check_designs(&stack, tenant.id, &made).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_deletes_the_objects_of_an_item_claimed_while_it_decides() {
    let stack = TestStack::spawn(quiet_worker(2, &[])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack.wait_pool(&tenant, template.id, 2, FILL).await;

    let gc = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    let mut gate = stack.pause.arm(at::GC_DECIDING);
    let collecting = tokio::spawn(async move { gc.gc().await });
    gate.reached().await;
    // Both ready items become designs while the GC decides what is garbage.
    let made = vec![
        stack.create_design(&tenant, template.id).await,
        stack.create_design(&tenant, template.id).await,
    ];
    assert!(made.iter().all(|d| d.served_from == ServedFrom::Pool));
    gate.release();
    collecting.await.unwrap().expect("gc");
    check_designs(&stack, tenant.id, &made).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_deletes_a_cold_designs_copies_before_it_commits() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![("PREWARM_SERVING__FROM_POOL".into(), "false".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    let gc = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;

    // The copies have landed; the design is not committed yet.
    let mut gate = stack.pause.arm(at::COLD_LOCKED);
    let post = stack.post_design_in_background(&tenant, template.id);
    gate.reached().await;
    let report = gc.gc().await.expect("gc");
    gate.release();
    let resp = post.await.unwrap().expect("post design");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let design: Design = resp.json().await.unwrap();
    assert_eq!(design.served_from, ServedFrom::Copy);
    check_designs(&stack, tenant.id, &[design]).await;
    assert_eq!(report.deleted, 0, "nothing was garbage: {report:?}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_delete_waits_for_a_design_being_recorded() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![("PREWARM_SERVING__FROM_POOL".into(), "false".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;

    let mut gate = stack.pause.arm(at::COLD_LOCKED);
    let post = stack.post_design_in_background(&tenant, template.id);
    gate.reached().await;
    // The design holds the template's version lock: the delete must wait.
    let delete = {
        let (http, url, key) = (
            stack.http.clone(),
            stack.url(&format!("/templates/{}", template.id)),
            tenant.key.clone(),
        );
        tokio::spawn(async move { http.delete(url).bearer_auth(key).send().await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let deleted_first = delete.is_finished();
    gate.release();
    let design = post.await.unwrap().expect("post design");
    let deleted = delete.await.unwrap().expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(
        !deleted_first,
        "the delete committed while a design of the template was being recorded"
    );
    assert_eq!(design.status(), StatusCode::CREATED);
    let design: Design = design.json().await.unwrap();
    check_designs(&stack, tenant.id, &[design]).await;
    // After the delete committed, no design of it can be made.
    let (status, code) = error_code(stack.post_design(&tenant, template.id).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "template_not_found")
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_a_pool_list_keeps_new_ids_and_never_relists_popped_ones() {
    let stack = TestStack::spawn(quiet_worker(2, &[])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 2, FILL).await;
    // One ready id goes missing from the list (as if popped by a request
    // that died): the list is shorter than the ledger, so the pass rebuilds it.
    let listed = stack
        .index
        .list(PoolKey::new(template.id, TemplateVersion(1)))
        .await
        .unwrap();
    let lost = listed[0];
    stack
        .index
        .remove_ids(PoolKey::new(template.id, TemplateVersion(1)), &[lost])
        .await
        .unwrap();

    let reconciler = stack.reconciler(&[]).await;
    let mut gate = stack.pause.arm(at::REINDEX_READ);
    let tick = tokio::spawn(async move { reconciler.tick().await });
    gate.reached().await;
    // Meanwhile the listed id is popped and claimed, and the worker refills
    // the pool: a new id is pushed.
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let claimed = design.pool_item_id.expect("warm design has an item");
    let deadline = Instant::now() + FILL;
    loop {
        let listed = stack
            .index
            .list(PoolKey::new(template.id, TemplateVersion(1)))
            .await
            .unwrap();
        if listed.len() == 1 && !listed.contains(&claimed) && !listed.contains(&lost) {
            break;
        }
        assert!(Instant::now() < deadline, "pool not refilled: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate.release();
    tick.await.unwrap().expect("tick");
    let listed = stack
        .index
        .list(PoolKey::new(template.id, TemplateVersion(1)))
        .await
        .unwrap();
    assert!(
        !listed.contains(&claimed),
        "the rebuild listed a claimed id again: {listed:?}"
    );
    assert!(
        listed.contains(&lost),
        "the lost id was not listed again: {listed:?}"
    );
    assert_eq!(listed.len(), 2, "the new id was kept: {listed:?}");
    check_pool_list(&stack, template.id, true).await;
    check_designs(&stack, tenant.id, &[design]).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_slower_than_its_lease_keeps_its_items() {
    let stack = TestStack::spawn(Options {
        worker: false,
        pool_target: 2,
        env: vec![("PREWARM_POOL__LEASE_SECS".into(), "1".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let refiller = stack.reconciler(&[]).await.refiller;
    let rescuer = stack.reconciler(&[]).await;

    // One item's copy takes 2.5 lease periods.
    let mut gate = stack.pause.arm(at::ITEM_COPYING);
    let t = template.id;
    let refill = tokio::spawn(async move { refiller.refill(t).await });
    gate.reached().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let report = rescuer.tick().await.expect("reconciler tick");
    gate.release();
    let outcome = refill.await.unwrap().expect("refill");
    assert_eq!(
        report.rescued, 0,
        "a running refill was rescued: {report:?}"
    );
    assert!(
        matches!(
            outcome,
            warmup_worker::refill::Outcome::Refilled {
                ready: 2,
                failed: 0,
                ..
            }
        ),
        "{outcome:?}"
    );
    let mut conn = stack.db.conn().await.unwrap();
    let states = pool_items::state_counts(&mut conn, template.id)
        .await
        .unwrap();
    assert_eq!(states, vec![("ready".to_string(), 2)], "{states:?}");
    stack.finish().await;
}

/// A rescue reads the expired leases; before it discards them (held at a
/// pause point) the item's worker renews its lease. The discard re-checks
/// the lease in the same statement, so the item keeps copying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewed_after_the_rescue_read_keeps_its_item() {
    let stack = TestStack::spawn(Options {
        worker: false,
        pool_target: 1,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    let reconciler = stack.reconciler(&[]).await;
    reconciler
        .tick()
        .await
        .expect("the first pass fills the pool");
    // Its one item back to `copying` with a lease that ran out (a worker
    // that stalled past its lease), and out of the Redis list.
    let mut conn = stack.db.conn().await.unwrap();
    let ids = pool_items::ready_ids(&mut conn, template.pool())
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    diesel::sql_query(
        "UPDATE pool_items SET state = 'copying', lease_until = now() - interval '1 second'
          WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(ids[0].0)
    .execute(&mut conn)
    .await
    .unwrap();
    stack.index.remove_ids(template.pool(), &ids).await.unwrap();

    let mut gate = stack.pause.arm(at::RESCUE_READ);
    let tick = tokio::spawn(async move { reconciler.tick().await });
    gate.reached().await;
    let renewed = pool_items::renew_leases(&mut conn, &ids, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    gate.release();
    let report = tick.await.unwrap().expect("tick");
    assert_eq!(report.rescued, 0, "a renewed lease was rescued: {report:?}");
    let states = pool_items::state_counts(&mut conn, template.id)
        .await
        .unwrap();
    assert_eq!(states, vec![("copying".to_string(), 1)], "{states:?}");
    drop(conn);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_degrades_to_copies_without_exhausting_the_database() {
    const MAX_CONNECTIONS: usize = 4;
    let relay = TcpRelay::start("127.0.0.1:6379").await;
    let stack = TestStack::spawn(Options {
        worker: false,
        pool_target: 2,
        env: vec![
            (
                "PREWARM_REDIS__URL".into(),
                format!("redis://127.0.0.1:{}", relay.port),
            ),
            (
                "PREWARM_DATABASE__MAX_CONNECTIONS".into(),
                MAX_CONNECTIONS.to_string(),
            ),
            ("PREWARM_DATABASE__ACQUIRE_TIMEOUT_MS".into(), "1000".into()),
            ("PREWARM_REDIS__COMMAND_TIMEOUT_MS".into(), "1000".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    relay.stall();
    let burst = 5 * MAX_CONNECTIONS;
    let posts: Vec<_> = (0..burst)
        .map(|_| stack.post_design(&tenant, template.id))
        .collect();
    let responses = futures::future::join_all(posts).await;
    relay.resume();
    let mut made = Vec::new();
    let mut errors = Vec::new();
    for resp in responses {
        if resp.status() == StatusCode::CREATED {
            made.push(resp.json::<Design>().await.unwrap());
        } else {
            errors.push(error_code(resp).await);
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {burst} failed: {errors:?}",
        errors.len()
    );
    assert!(made.iter().all(|d| d.served_from == ServedFrom::Copy));
    check_designs(&stack, tenant.id, &made).await;
    stack.finish().await;
}

/// A batch starts no refill after half of `max.poll.interval.ms`: a slow
/// refill (held at a pause point past the budget) makes the batch defer the
/// next template instead of starving the consumer's poll; the deferred
/// template is refilled by a later request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_batch_defers_what_it_cannot_start_within_the_poll_budget() {
    let stack = TestStack::spawn(Options {
        worker_env: vec![
            ("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into()),
            (
                "PREWARM_WORKER__MAX_POLL_INTERVAL_MS".into(),
                "10000".into(),
            ),
            ("PREWARM_WORKER__REFILL_PARALLELISM".into(), "1".into()),
            // Both creations' messages land in one batch.
            ("PREWARM_WORKER__BATCH_WINDOW_MS".into(), "3000".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let mut gate = stack.pause.arm(at::ITEM_COPYING);
    let first = stack.create_template(&tenant, 1, "private").await;
    let second = stack.create_template(&tenant, 1, "private").await;
    gate.reached().await;
    // The batch budget is 5 s; the first refill holds the batch for 6.
    tokio::time::sleep(Duration::from_secs(6)).await;
    gate.release();
    let deadline = Instant::now() + FILL;
    loop {
        let text = stack.worker_metrics().await;
        let deferred =
            prewarm_tests::metric_value(&text, "prewarm_refills_total", &[("outcome", "deferred")]);
        if deferred == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "nothing deferred: {deferred:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.wait_pool(&tenant, first.id, 4, FILL).await;
    let status = stack.pool_status(&tenant, second.id).await;
    assert_eq!((status.ready, status.copying), (0, 0), "{status:?}");
    // The next request for it brings its refill.
    let design = stack.create_design(&tenant, second.id).await;
    assert_eq!(design.served_from, ServedFrom::Copy);
    stack.wait_pool(&tenant, second.id, 4, FILL).await;
    stack.finish().await;
}

/// Batches overlap: while one template's refill is held mid-copy, a warm-up
/// request for another template that arrives later is refilled at once, not
/// after the held batch ends (a request waited for every refill of the
/// batch before it, which put up to a copy time on top of its own refill).
/// Its batch's offset is stored only after the held one's: a restart
/// replays both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_refill_does_not_hold_back_later_requests() {
    let stack = TestStack::spawn(quiet_worker(2, &[])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let mut gate = stack.pause.arm(at::ITEM_COPYING);
    let held = stack.create_template(&tenant, 1, "private").await;
    gate.reached().await;
    let later = stack.create_template(&tenant, 1, "private").await;
    // Well past a copy (no latency injected) and the batch window.
    stack
        .wait_pool(&tenant, later.id, 2, Duration::from_secs(10))
        .await;
    assert!(
        stack.pool_status(&tenant, held.id).await.ready < 2,
        "the held refill finished while its gate was closed"
    );
    gate.release();
    stack.wait_pool(&tenant, held.id, 2, FILL).await;
    stack.finish().await;
}

/// Two worker replicas: while one runs a reconciler pass (held at a pause
/// point), the other's pass is skipped; once it is done, the other runs.
/// The lease is a row, not a session lock, so a transaction-pooling proxy
/// cannot break it; a holder that dies frees it when it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_runs_each_background_pass() {
    let stack = TestStack::spawn(quiet_worker(2, &[])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    stack.wait_pool(&tenant, template.id, 2, FILL).await;
    // A list shorter than the ledger: the pass rebuilds it (and pauses there).
    let listed = stack
        .index
        .list(PoolKey::new(template.id, TemplateVersion(1)))
        .await
        .unwrap();
    stack
        .index
        .remove_ids(PoolKey::new(template.id, TemplateVersion(1)), &listed[..1])
        .await
        .unwrap();
    let (one, two) = (stack.reconciler(&[]).await, stack.reconciler(&[]).await);
    assert_ne!(one.singleton.holder(), two.singleton.holder());
    let mut gate = stack.pause.arm(at::REINDEX_READ);
    let first = tokio::spawn(async move { one.tick().await });
    gate.reached().await;
    let meanwhile = two.tick().await.expect("tick");
    assert!(meanwhile.skipped, "two replicas ran the reconciler at once");
    // The GC's lease is another one: it runs.
    assert!(!two.gc().await.expect("gc").skipped);
    gate.release();
    assert!(!first.await.unwrap().expect("tick").skipped);
    assert!(
        !two.tick().await.expect("tick").skipped,
        "the lease was not given back"
    );

    // A holder that died mid-pass: its lease expires, then another takes it.
    let mut conn = stack.db.conn().await.unwrap();
    let lease = std::time::Duration::from_millis(300);
    assert!(
        prewarm_store::db::leases::try_acquire(&mut conn, "gc", "dead-replica", lease)
            .await
            .unwrap()
    );
    assert!(two.gc().await.expect("gc").skipped);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!two.gc().await.expect("gc").skipped);
    stack.finish().await;
}

/// The sizer's plan for one template (adaptive sizing), set by hand.
async fn plan_target(stack: &TestStack, template: shared_domain::ids::TemplateId, target: i32) {
    use prewarm_store::db::pool_targets::{self, PoolTargetRow};
    let mut conn = stack.db.conn().await.unwrap();
    let row = PoolTargetRow {
        template_id: template.0,
        target,
        demand_fast: 0.0,
        demand_slow: 0.0,
        refill_secs: 1.0,
        computed_at: chrono::Utc::now(),
        last_design_at: None,
        forecast: 0.0,
        hold: None,
    };
    pool_targets::save(&mut conn, &[row]).await.unwrap();
}

/// I5: the sizer lowers a target from 4 to 1 while a refill's 4 items copy.
/// Reserve counted them towards the target but could retire none (none was
/// ready), so each item, as it lands, checks the target as it is then: one
/// becomes ready, three are discarded and their copies deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_landing_after_the_target_was_lowered_do_not_overfill_the_pool() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let refiller = stack
        .reconciler(&[
            ("PREWARM_POOL__SIZING", "adaptive"),
            ("PREWARM_WORKER__ITEMS_IN_FLIGHT", "1"),
        ])
        .await
        .refiller;
    plan_target(&stack, template.id, 4).await;
    let mut gate = stack.pause.arm(at::ITEM_COPYING);
    let t = template.id;
    let refill = tokio::spawn(async move { refiller.refill(t).await });
    gate.reached().await;
    plan_target(&stack, template.id, 1).await;
    gate.release();
    let outcome = refill.await.unwrap().expect("refill");
    assert!(
        matches!(
            outcome,
            warmup_worker::refill::Outcome::Refilled {
                ready: 1,
                failed: 3,
                ..
            }
        ),
        "{outcome:?}"
    );
    let mut conn = stack.db.conn().await.unwrap();
    let mut states = pool_items::state_counts(&mut conn, template.id)
        .await
        .unwrap();
    states.sort();
    assert_eq!(
        states,
        vec![("discarded".to_string(), 3), ("ready".to_string(), 1)]
    );
    let pooled = stack.objects.list("pool/").await.unwrap();
    assert_eq!(pooled.len(), 2, "one item of two images: {pooled:?}");
    check_pool_list(&stack, template.id, true).await;
    stack.finish().await;
}

/// A lowered level with copies in flight retires no ready item for them:
/// a pool of 3 ready items growing to 6 has 3 copying when the plan drops to
/// 4. Retiring "live above 4" would discard 2 of the 3 ready ones (only
/// ready items can retire) and leave the pool short until copies land; the
/// copies that would take it past 4 are the ones trimmed, as they land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_lowered_under_copies_in_flight_keeps_the_ready_items() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    let settings = [
        ("PREWARM_POOL__SIZING", "adaptive"),
        ("PREWARM_WORKER__ITEMS_IN_FLIGHT", "1"),
    ];
    let growing = stack.reconciler(&settings).await.refiller;
    let lowering = stack.reconciler(&settings).await.refiller;
    let t = template.id;
    plan_target(&stack, t, 3).await;
    growing.refill(t).await.unwrap();
    plan_target(&stack, t, 6).await;
    let mut gate = stack.pause.arm(at::ITEM_COPYING);
    let refill = tokio::spawn(async move { growing.refill(t).await });
    gate.reached().await;
    plan_target(&stack, t, 4).await;
    lowering.refill(t).await.unwrap();
    let mut conn = stack.db.conn().await.unwrap();
    let (ready, copying) = pool_items::counts(&mut conn, PoolKey::new(t, TemplateVersion(1)))
        .await
        .unwrap();
    assert_eq!(
        (ready, copying),
        (3, 3),
        "no ready item retired for copies in flight"
    );
    gate.release();
    refill.await.unwrap().expect("refill");
    let (ready, copying) = pool_items::counts(&mut conn, PoolKey::new(t, TemplateVersion(1)))
        .await
        .unwrap();
    assert_eq!(
        (ready, copying),
        (4, 0),
        "the copies past 4 trimmed as they landed"
    );
    drop(conn);
    check_pool_list(&stack, t, true).await;
    stack.finish().await;
}

/// Version churn costs the copies in flight, not whole pools: a refill of
/// four items (one at a time) is parked in its first item's copies while
/// the template is edited. The first item lands superseded (discarded, its
/// copies deleted); the three not started yet are handed back, never
/// copied (copying them in full only to discard them would waste the
/// shared copy capacity).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_a_superseded_version_are_never_started() {
    let stack = TestStack::spawn(Options {
        worker: false,
        pool_target: 4,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    let refiller = stack
        .reconciler(&[("PREWARM_WORKER__ITEMS_IN_FLIGHT", "1")])
        .await
        .refiller;
    let mut gate = stack.pause.arm(at::ITEM_COPYING);
    let t = template.id;
    let refill = tokio::spawn(async move { refiller.refill(t).await });
    gate.reached().await;
    let resp = stack
        .http
        .patch(stack.url(&format!("/templates/{}", template.id)))
        .bearer_auth(&tenant.key)
        .json(&serde_json::json!({"layout": {"edited": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gate.release();
    let outcome = refill.await.unwrap().expect("refill");
    assert!(
        matches!(
            outcome,
            warmup_worker::refill::Outcome::Refilled {
                ready: 0,
                failed: 1,
                handed_back: 3,
                ..
            }
        ),
        "{outcome:?}"
    );
    let pooled = stack
        .objects
        .list(&format!("pool/{}/", template.id))
        .await
        .unwrap();
    assert!(pooled.is_empty(), "{pooled:?}");
    stack.finish().await;
}
