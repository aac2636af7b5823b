//! The warm path, the cold path, refills and the pool bound.

use std::collections::HashSet;
use std::time::Duration;

use prewarm_store::db::pool_items;
use prewarm_tests::{metric_value, Options, TestStack};
use shared_domain::design::{Design, ServedFrom};
use shared_domain::template::Template;
use shared_domain::warmup::{Reason, WarmupRequest};

const FILL: Duration = Duration::from_secs(45);

/// Every object of every design exists, and no key is shared by two designs
/// or with the template.
async fn assert_owned_objects(stack: &TestStack, template: &Template, designs: &[Design]) {
    let template_keys: HashSet<&str> = template
        .images
        .iter()
        .map(|i| i.object_key.as_str())
        .collect();
    let mut seen = HashSet::new();
    for design in designs {
        assert_eq!(
            design.images.len(),
            template.images.len(),
            "design {} has every image",
            design.id
        );
        for img in &design.images {
            assert!(
                !template_keys.contains(img.object_key.as_str()),
                "design shares a template object"
            );
            assert!(
                seen.insert(img.object_key.clone()),
                "object {} in two designs",
                img.object_key
            );
            assert!(
                stack.objects.exists(&img.object_key).await.unwrap(),
                "object {} missing",
                img.object_key
            );
        }
        // Copies carry the template's bytes, by position.
        let first = &design.images[0];
        let source = template
            .images
            .iter()
            .find(|i| i.position == first.position)
            .unwrap();
        assert_eq!(
            stack.objects.get(&first.object_key).await.unwrap(),
            stack.objects.get(&source.object_key).await.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_path_serves_from_the_pool_and_the_pool_refills() {
    let stack = TestStack::spawn(Options::default()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 5, "private").await;

    // A new template's pool fills without any design request.
    stack.wait_pool(&tenant, template.id, 4, FILL).await;

    let mut designs = Vec::new();
    for _ in 0..3 {
        let design = stack.create_design(&tenant, template.id).await;
        assert_eq!(design.served_from, ServedFrom::Pool);
        assert!(design.pool_item_id.is_some());
        assert_eq!(design.template_version, template.version);
        designs.push(design);
    }
    assert_owned_objects(&stack, &template, &designs).await;

    // Each pop sent a warm-up request: the pool is back at its target.
    stack.wait_pool(&tenant, template.id, 4, FILL).await;

    // The design reads back as created.
    let resp = stack
        .get(&tenant, &format!("/designs/{}", designs[0].id))
        .await;
    assert_eq!(resp.status(), 200);
    let read: Design = resp.json().await.unwrap();
    assert_eq!(read, designs[0]);

    // Metrics: three pool hits, and the latency histogram keyed by route pattern.
    let text = stack.metrics().await;
    let hits = metric_value(
        &text,
        "prewarm_designs_created_total",
        &[("served_from", "pool")],
    );
    let observed = metric_value(
        &text,
        "prewarm_http_request_duration_seconds_count",
        &[("route", "/designs"), ("method", "POST"), ("status", "201")],
    );
    let by_id = metric_value(
        &text,
        "prewarm_http_request_duration_seconds_count",
        &[("route", "/designs/{id}"), ("status", "200")],
    );
    assert_eq!((hits, observed, by_id), (Some(3.0), Some(3.0), Some(1.0)));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_path_copies_on_the_spot_when_the_pool_is_empty() {
    // No worker: the pool stays empty, every design is copied on the request path.
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 6, "private").await;

    let mut designs = Vec::new();
    for _ in 0..2 {
        let resp = stack.post_design(&tenant, template.id).await;
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-served-from"], "copy");
        let design: Design = resp.json().await.unwrap();
        assert_eq!(design.served_from, ServedFrom::Copy);
        assert!(design.pool_item_id.is_none());
        designs.push(design);
    }
    assert_owned_objects(&stack, &template, &designs).await;
    let misses = stack
        .metric(
            "prewarm_designs_created_total",
            &[("served_from", "copy"), ("cause", "pool_empty")],
        )
        .await;
    assert_eq!(misses, 2.0);

    // Deleting a design deletes its objects, and only its objects.
    let resp = stack
        .http
        .delete(stack.url(&format!("/designs/{}", designs[0].id)))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    for img in &designs[0].images {
        assert!(!stack.objects.exists(&img.object_key).await.unwrap());
    }
    for img in &designs[1].images {
        assert!(stack.objects.exists(&img.object_key).await.unwrap());
    }
    assert_eq!(
        stack
            .get(&tenant, &format!("/designs/{}", designs[0].id))
            .await
            .status(),
        404
    );
    stack.finish().await;
}

/// The API's warm-up asks by outcome (`queued`, `coalesced`).
async fn warmup_asks(stack: &TestStack) -> (f64, f64) {
    let text = stack.metrics().await;
    let count = |outcome| {
        metric_value(
            &text,
            "prewarm_warmup_requests_total",
            &[("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    (count("queued"), count("coalesced"))
}

/// The first ask after a quiet window goes at once; the asks after it
/// within the window join one message sent at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_designs_within_one_window_send_the_first_ask_at_once_and_the_rest_as_one_message() {
    const WINDOW_MS: u64 = 3_000;
    let window = WINDOW_MS.to_string();
    let stack = TestStack::spawn(Options {
        env: vec![("PREWARM_SERVING__WARMUP_COALESCE_MS".into(), window)],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;
    // The creation's own ask has been sent and its window has passed.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 500)).await;
    let (queued, coalesced) = warmup_asks(&stack).await;

    let first = stack.create_design(&tenant, template.id).await;
    assert_eq!(first.served_from, ServedFrom::Pool);
    assert_eq!(warmup_asks(&stack).await, (queued + 1.0, coalesced));
    for _ in 0..3 {
        let design = stack.create_design(&tenant, template.id).await;
        assert_eq!(design.served_from, ServedFrom::Pool);
    }
    // Three more asks within the window: the first of them waits, two join it.
    assert_eq!(warmup_asks(&stack).await, (queued + 1.0, coalesced + 2.0));
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 500)).await;
    assert_eq!(warmup_asks(&stack).await, (queued + 2.0, coalesced + 2.0));

    // The two messages reach the worker and refill every gap the four
    // designs left.
    stack.wait_pool(&tenant, template.id, 4, FILL).await;
    let pop_refills = || async {
        let text = stack.worker_metrics().await;
        metric_value(
            &text,
            "prewarm_refill_lag_seconds_count",
            &[("reason", "pool_pop")],
        )
        .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pop_refills().await < 1.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One refill per message at most (one that found the gap filled
    // copies nothing and measures no lag).
    let refills = pop_refills().await;
    assert!((1.0..=2.0).contains(&refills), "{refills} refills");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_warmup_messages_never_push_a_pool_above_target() {
    let stack = TestStack::spawn(Options::default()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;

    for _ in 0..20 {
        let msg = WarmupRequest::new(template.pool(), Reason::PoolPop, 0);
        assert!(stack.publisher.publish(&msg));
    }
    // And ten refills racing each other directly, as several replicas would.
    let refiller = stack.refiller.clone().unwrap();
    let racing = futures::future::join_all((0..10).map(|_| refiller.refill(template.id))).await;
    assert!(racing.iter().all(Result::is_ok));

    // Sample for a while: never above the target, in Redis or in the ledger.
    for _ in 0..60 {
        let status = stack.pool_status(&tenant, template.id).await;
        assert!(status.indexed <= 4, "{status:?}");
        assert!(status.ready + status.copying <= 4, "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.wait_pool(&tenant, template.id, 4, FILL).await;
    // No copies were made beyond the first fill: duplicates found no gap.
    let mut conn = stack.db.conn().await.unwrap();
    assert_eq!(
        pool_items::total_reserved(&mut conn, template.id)
            .await
            .unwrap(),
        4
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pool_id_is_skipped_and_never_used_twice() {
    // Without prefetching, so the second design pops the stale id at the
    // head instead of taking the one popped ahead for it.
    let stack = TestStack::spawn(Options {
        env: vec![("PREWARM_SERVING__PREFETCH_HOLD_MS".into(), "0".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 4, FILL).await;

    let first = stack.create_design(&tenant, template.id).await;
    let used = first.pool_item_id.unwrap();
    // Put the used id back in Redis, as a replayed or duplicated index write would.
    stack.index.push_front(template.pool(), used).await.unwrap();
    let second = stack.create_design(&tenant, template.id).await;
    assert_eq!(second.served_from, ServedFrom::Pool);
    assert_ne!(
        second.pool_item_id,
        Some(used),
        "a used item was handed out again"
    );
    stack.finish().await;
}
