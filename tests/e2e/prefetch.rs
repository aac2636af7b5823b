//! Pool ids popped ahead of the next design (`serving.prefetch_hold_ms`,
//! `template-api/src/prefetch.rs`): the next design takes the held id, an
//! unused one is listed again after the hold and at shutdown (unless the
//! ledger no longer serves it), a prefetch never takes a list's last id, and
//! a held id retired meanwhile is refused by the claim like any stale id.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use prewarm_store::db::pool_items;
use prewarm_store::pause::{self, PausePoints};
use prewarm_tests::invariants::check_designs;
use prewarm_tests::{metric_value, Options, TestStack};
use shared_domain::design::ServedFrom;
use shared_domain::ids::{PoolItemId, TemplateId};
use shared_domain::template::Template;
use template_api::startup::Application;

const FILL: Duration = Duration::from_secs(45);

/// Prefetching with a hold of `hold_ms`, one id at a time (the rules that
/// follow are those of any one held id; batches have a test of their own).
fn with_hold(hold_ms: &str, reconcile: bool) -> Options {
    let mut options = Options {
        env: vec![
            ("PREWARM_SERVING__PREFETCH_HOLD_MS".into(), hold_ms.into()),
            ("PREWARM_SERVING__PREFETCH_BATCH".into(), "1".into()),
        ],
        ..Options::default()
    };
    if !reconcile {
        options.worker_env = vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into())];
    }
    options
}

/// The ids an API process holds: ready in the ledger, popped and not
/// listed. (A refill's new item is ready a moment before it is listed, but it
/// was never popped; a claimed id is popped but no longer ready.)
async fn held_ids(stack: &TestStack, template: &Template) -> Vec<PoolItemId> {
    let (t, v) = (template.id, template.version);
    let listed: HashSet<_> = stack
        .index
        .list(PoolKey::new(t, v))
        .await
        .unwrap()
        .into_iter()
        .collect();
    let popped: HashSet<_> = stack
        .index
        .popped(PoolKey::new(t, v))
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut conn = stack.db.conn().await.unwrap();
    pool_items::ready_ids(&mut conn, PoolKey::new(t, v))
        .await
        .unwrap()
        .into_iter()
        .filter(|id| popped.contains(id) && !listed.contains(id))
        .collect()
}

/// Waits until exactly one id is held and returns it.
async fn wait_held(stack: &TestStack, template: &Template) -> PoolItemId {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let ids = held_ids(stack, template).await;
        if let [id] = ids[..] {
            return id;
        }
        assert!(Instant::now() < deadline, "no id held: {ids:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until no id is held; returns the list.
async fn wait_listed_again(
    stack: &TestStack,
    template: &Template,
    within: Duration,
) -> Vec<PoolItemId> {
    let deadline = Instant::now() + within;
    loop {
        if held_ids(stack, template).await.is_empty() {
            return stack.index.list(template.pool()).await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "a held id was not listed again within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_design_takes_the_id_popped_ahead_and_an_unused_one_is_listed_again() {
    let stack = TestStack::spawn(with_hold("1500", true)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;

    let first = stack.create_design(&tenant, template.id).await;
    assert_eq!(first.served_from, ServedFrom::Pool);
    let held = wait_held(&stack, &template).await;
    assert_ne!(first.pool_item_id, Some(held));

    let second = stack.create_design(&tenant, template.id).await;
    assert_eq!(second.served_from, ServedFrom::Pool);
    assert_eq!(
        second.pool_item_id,
        Some(held),
        "the next design did not take the id held for it"
    );

    // The id popped for a third design that never comes goes back to the
    // head of the list after the hold (1.5 s; the sweeper runs every 0.75 s).
    let unused = wait_held(&stack, &template).await;
    let listed = wait_listed_again(&stack, &template, Duration::from_secs(4)).await;
    assert_eq!(listed.first(), Some(&unused), "{listed:?}");

    let metrics = stack.metrics().await;
    let count = |outcome| {
        metric_value(
            &metrics,
            "prewarm_pool_prefetched_total",
            &[("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("used"), 1.0);
    assert_eq!(count("returned"), 1.0);
    check_designs(&stack, tenant.id, &[first, second]).await;
    stack.finish().await;
}

/// Waits until exactly `n` ids are held and returns them.
async fn wait_held_n(stack: &TestStack, template: &Template, n: usize) -> Vec<PoolItemId> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ids = held_ids(stack, template).await;
        if ids.len() == n {
            return ids;
        }
        assert!(Instant::now() < deadline, "{} ids held, not {n}", ids.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `serving.prefetch_batch`: a version's batch starts at one id and doubles
/// each time a batch is used up; ids that outlive the hold are listed again
/// in their order, and the batch starts over at one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_batch_doubles_and_an_unused_one_goes_back_in_order() {
    let stack = TestStack::spawn(Options {
        pool_target: 16,
        env: vec![
            ("PREWARM_SERVING__PREFETCH_HOLD_MS".into(), "1500".into()),
            ("PREWARM_SERVING__PREFETCH_BATCH".into(), "4".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 16, FILL).await;

    let mut designs = vec![stack.create_design(&tenant, template.id).await];
    // Batches of 1, 2, then 4 (the most): each used up by the designs that
    // follow. The last design before the batch of 4 is popped sees the
    // list it is popped from (nothing else pops; refills append).
    let mut list_before = Vec::new();
    for size in [1, 2] {
        let mut held = wait_held_n(&stack, &template, size).await;
        let mut used = Vec::new();
        for i in 0..size {
            if size == 2 && i == 1 {
                list_before = stack.index.list(template.pool()).await.unwrap();
            }
            let design = stack.create_design(&tenant, template.id).await;
            assert_eq!(design.served_from, ServedFrom::Pool);
            used.push(design.pool_item_id.unwrap());
            designs.push(design);
        }
        held.sort();
        used.sort();
        assert_eq!(used, held, "the designs did not take the ids held for them");
    }
    let mut popped_at_once = wait_held_n(&stack, &template, 4).await;
    popped_at_once.sort();
    let mut head = list_before[..4].to_vec();
    head.sort();
    assert_eq!(popped_at_once, head, "the batch is not the list's head");

    // No more designs: after the hold (1.5 s; the sweeper runs every 0.75
    // s) the four are listed again at the head, in their order.
    let listed = wait_listed_again(&stack, &template, Duration::from_secs(4)).await;
    assert_eq!(listed[..4], list_before[..4], "{listed:?}");
    // The batch starts over at one id.
    designs.push(stack.create_design(&tenant, template.id).await);
    wait_held_n(&stack, &template, 1).await;

    let metrics = stack.metrics().await;
    let count = |outcome| {
        metric_value(
            &metrics,
            "prewarm_pool_prefetched_total",
            &[("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("used"), 3.0);
    assert_eq!(count("returned"), 4.0);
    check_designs(&stack, tenant.id, &designs).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_never_takes_the_last_listed_id_nor_more_than_half_the_rest() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let pool = PoolKey::new(TemplateId::new(), TemplateVersion::FIRST);
    let ids: Vec<PoolItemId> = (0..7).map(|_| PoolItemId::new()).collect();
    stack.index.push(pool, &ids).await.unwrap();

    // 7 listed: 6 beyond the last, at most 3 of them, head first.
    let ahead = stack.index.pop_ahead(pool, 1, 8).await.unwrap();
    assert_eq!(ahead, ids[..3]);
    // 4 listed, a batch of 1 asked for: 1.
    let ahead = stack.index.pop_ahead(pool, 1, 1).await.unwrap();
    assert_eq!(ahead, ids[3..4]);
    // 3 listed: 2 beyond the last, 1 of them.
    let ahead = stack.index.pop_ahead(pool, 1, 8).await.unwrap();
    assert_eq!(ahead, ids[4..5]);
    // 2 listed: 1 beyond the last, and it is taken (at least one).
    let ahead = stack.index.pop_ahead(pool, 1, 8).await.unwrap();
    assert_eq!(ahead, ids[5..6]);
    let ahead = stack.index.pop_ahead(pool, 1, 8).await.unwrap();
    assert_eq!(ahead, [], "a prefetch took the last listed id");
    assert_eq!(stack.index.list(pool).await.unwrap(), [ids[6]]);
    let popped: HashSet<_> = stack
        .index
        .popped(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        popped,
        ids[..6].iter().copied().collect(),
        "each id popped ahead is remembered"
    );
    // A request still gets it.
    let popped = stack.index.pop(pool).await.unwrap();
    assert_eq!(popped, Some(ids[6]));
    stack.finish().await;
}

/// The held id is retired (a replica with a lowered target shrinks the pool
/// to nothing) before the design that takes it: the claim refuses it, and
/// the design is made by copy, owning nothing of the retired item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_id_retired_meanwhile_is_refused_and_the_design_is_still_made() {
    // No worker: nothing refills behind the test's back.
    let stack = TestStack::spawn(Options {
        worker: false,
        ..with_hold("10000", false)
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let filler = stack.reconciler(&[]).await.refiller;
    filler.refill(template.id).await.expect("fill");

    let first = stack.create_design(&tenant, template.id).await;
    let held = wait_held(&stack, &template).await;
    let shrinker = stack
        .reconciler(&[("PREWARM_POOL__TARGET", "0")])
        .await
        .refiller;
    shrinker.refill(template.id).await.expect("shrink");
    {
        let mut conn = stack.db.conn().await.unwrap();
        let ready = pool_items::ready_ids(&mut conn, template.pool())
            .await
            .unwrap();
        assert!(ready.is_empty(), "the shrink left {ready:?}");
    }

    let second = stack.create_design(&tenant, template.id).await;
    assert_eq!(second.served_from, ServedFrom::Copy);
    assert_eq!(second.pool_item_id, None);
    assert_ne!(first.pool_item_id, Some(held));
    check_designs(&stack, tenant.id, &[first, second]).await;
    stack.finish().await;
}

/// The template is deleted while the API holds one of its ids: after the
/// hold the id is dropped, not listed -- a put-back would recreate the
/// deleted template's list, which no reconciler pass visits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_id_of_a_deleted_template_is_dropped_not_listed() {
    let stack = TestStack::spawn(Options {
        worker: false,
        ..with_hold("300", false)
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let refiller = stack.reconciler(&[]).await.refiller;
    refiller.refill(template.id).await.expect("fill");
    stack.create_design(&tenant, template.id).await;
    wait_held(&stack, &template).await;

    let resp = stack
        .http
        .delete(stack.url(&format!("/templates/{}", template.id)))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    // The deleted template's refill discards its items and empties its list.
    refiller.refill(template.id).await.expect("discard");
    assert!(stack.index.list(template.pool()).await.unwrap().is_empty());

    let deadline = Instant::now() + Duration::from_secs(3);
    let dropped = loop {
        let metrics = stack.metrics().await;
        let dropped = metric_value(
            &metrics,
            "prewarm_pool_prefetched_total",
            &[("outcome", "dropped")],
        );
        let returned = metric_value(
            &metrics,
            "prewarm_pool_prefetched_total",
            &[("outcome", "returned")],
        );
        if dropped.is_some() || returned.is_some() || Instant::now() >= deadline {
            break (dropped, returned);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dropped, (Some(1.0), None));
    let listed = stack.index.list(template.pool()).await.unwrap();
    assert!(
        listed.is_empty(),
        "a deleted template's list was recreated: {listed:?}"
    );
    stack.finish().await;
}

/// SIGTERM: the API lists the id it holds again before it exits, instead of
/// leaving it to the reconciler after `redis.pop_memory_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lists_the_held_id_again() {
    let stack = TestStack::spawn(with_hold("30000", false)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;
    let (mut api, base) = stack.spawn_api_process(&[
        ("PREWARM_SERVING__PREFETCH_HOLD_MS", "30000"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ]);
    stack.wait_healthy(&base).await;
    let resp = stack
        .http
        .post(format!("{base}/designs"))
        .bearer_auth(&tenant.key)
        .json(&serde_json::json!({ "template_id": template.id }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.headers()["x-served-from"], "pool");
    let held = wait_held(&stack, &template).await;

    std::process::Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status()
        .unwrap();
    let exit = api.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let listed = stack.index.list(template.pool()).await.unwrap();
    assert_eq!(listed.first(), Some(&held), "{listed:?}");
    assert!(held_ids(&stack, &template).await.is_empty());
    stack.finish().await;
}

/// Shutdown with a prefetch pop in flight (parked between its pop and its
/// hold): the server waits for it before it stops, and the popped id is
/// listed again, instead of dying with the request's runtime and waiting
/// for the reconciler after `redis.pop_memory_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_pop_in_flight_and_lists_its_id_again() {
    let stack = TestStack::spawn(with_hold("30000", false)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;
    let settings = template_api::settings::load_from(stack.env.clone().into_iter()).unwrap();
    let points = PausePoints::enabled();
    let mut gate = points.arm(pause::at::PREFETCH_POPPED);
    let app = Application::build_with_pause_points(settings, points.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let resp = stack
        .http
        .post(format!("{base}/designs"))
        .bearer_auth(&tenant.key)
        .json(&serde_json::json!({ "template_id": template.id }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    gate.reached().await;
    let in_flight = wait_held(&stack, &template).await;

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server.is_finished(),
        "the server stopped with a prefetch pop in flight"
    );
    gate.release();
    server.await.unwrap().unwrap();
    let listed = stack.index.list(template.pool()).await.unwrap();
    assert_eq!(listed.first(), Some(&in_flight), "{listed:?}");
    assert!(held_ids(&stack, &template).await.is_empty());
    stack.finish().await;
}
