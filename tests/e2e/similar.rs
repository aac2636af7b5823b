//! Similar templates through the real API, the stand-in recommendation
//! service (real HTTP, counting its calls) and both cache tiers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use prewarm_recommender::Faults;
use prewarm_tests::{error_code, Options, Tenant, TestStack};
use serde_json::json;
use shared_domain::ids::TemplateId;
use shared_domain::template::{SimilarTemplates, Template};

fn fast() -> Faults {
    Faults {
        latency_ms: 0,
        ..Faults::default()
    }
}

fn options(faults: Faults, env: &[(&str, &str)]) -> Options {
    Options {
        // No pools needed here: keep the worker (and its copies) out.
        worker: false,
        recommender: Some(faults),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    }
}

async fn template(
    stack: &TestStack,
    tenant: &Tenant,
    name: &str,
    category: &str,
    visibility: &str,
) -> Template {
    let resp = stack
        .upload_template(
            tenant,
            1,
            json!({"name": name, "category": category, "visibility": visibility}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn similar(
    stack: &TestStack,
    base: &str,
    tenant: &Tenant,
    id: TemplateId,
    page: u32,
) -> (SimilarTemplates, String) {
    let resp = stack.similar_at(base, tenant, id, page).await;
    assert_eq!(resp.status(), 200);
    let cache = resp.headers()["x-cache"].to_str().unwrap().to_string();
    (resp.json().await.unwrap(), cache)
}

fn ids(page: &SimilarTemplates) -> HashSet<TemplateId> {
    page.items.iter().map(|t| t.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_pulls_pages_until_ten_pass_and_stops_at_the_last_page() {
    let stack = TestStack::spawn(options(
        fast(),
        &[("PREWARM_SIMILAR__UPSTREAM_PAGE_SIZE", "3")],
    ))
    .await;
    // Cached entries are what these tests read: fill them after the
    // invalidation listener's start-up flush.
    stack.wait_subscribed(1).await;
    let a = stack.create_tenant("a", 100).await;
    let b = stack.create_tenant("b", 100).await;
    let source = template(&stack, &a, "blue birthday card", "cards", "public").await;
    // Ranked first (same words and category) but private to B: filtered out for A.
    let mut b_private = HashSet::new();
    for _ in 0..6 {
        b_private.insert(
            template(&stack, &b, "blue birthday card", "cards", "private")
                .await
                .id,
        );
    }
    let mut public_cards = HashSet::new();
    for i in 0..12 {
        public_cards.insert(
            template(&stack, &a, &format!("blue card {i}"), "cards", "public")
                .await
                .id,
        );
    }
    // Other category: never shown.
    for _ in 0..5 {
        template(&stack, &a, "blue birthday card flyer", "flyers", "public").await;
    }
    // Upstream ranking (24 templates, 3 per page): the source and B's 6 private
    // cards (score 1.0), then the 12 public cards (0.75), then the flyers.

    let (page1, cache) = similar(&stack, &stack.base, &a, source.id, 1).await;
    assert_eq!(cache, "miss");
    assert_eq!(page1.items.len(), 10);
    assert!(
        ids(&page1).is_subset(&public_cards),
        "only visible cards, never the source"
    );
    assert_eq!(page1.next_page, Some(2));
    // The 10th passing template is the 17th ranked: upstream pages 1..=6, no more.
    assert_eq!(stack.upstream_calls().await, 6);

    let (page2, _) = similar(&stack, &stack.base, &a, source.id, 2).await;
    assert_eq!(page2.items.len(), 2, "12 public cards in all");
    assert!(ids(&page2).is_subset(&public_cards));
    assert!(ids(&page1).is_disjoint(&ids(&page2)));
    assert_eq!(page2.next_page, None);
    // Pages 7 and 8 were read; page 8 was the last, so there was no 9th call.
    assert_eq!(stack.upstream_calls().await, 8);

    // B sees its own private cards, from the same cached upstream pages.
    let (b_page, cache) = similar(&stack, &stack.base, &b, source.id, 1).await;
    assert_eq!(cache, "hit");
    assert!(b_private.is_subset(&ids(&b_page)));
    assert_eq!(stack.upstream_calls().await, 8);

    // Bad pages are 400s; an invisible source is a 404.
    let resp = stack.similar_at(&stack.base, &a, source.id, 0).await;
    assert_eq!(error_code(resp).await.1, "invalid_request");
    let private = *b_private.iter().next().unwrap();
    let resp = stack.similar_at(&stack.base, &a, private, 1).await;
    assert_eq!(error_code(resp).await.1, "template_not_found");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_a_cold_key_make_one_upstream_call() {
    // The stand-in's default latency (900 ms) keeps every request in the window.
    let stack = TestStack::spawn(options(Faults::default(), &[])).await;
    stack.wait_subscribed(1).await;
    let a = stack.create_tenant("a", 100).await;
    let source = template(&stack, &a, "poster", "posters", "public").await;
    for i in 0..10 {
        template(&stack, &a, &format!("poster {i}"), "posters", "public").await;
    }
    let requests = (0..1000).map(|_| stack.similar_at(&stack.base, &a, source.id, 1));
    let responses = futures::future::join_all(requests).await;
    let mut answers = HashSet::new();
    for resp in responses {
        assert_eq!(resp.status(), 200);
        let page: SimilarTemplates = resp.json().await.unwrap();
        assert_eq!(page.items.len(), 10);
        let mut order: Vec<TemplateId> = page.items.iter().map(|t| t.id).collect();
        order.dedup();
        answers.insert(order);
    }
    assert_eq!(answers.len(), 1, "every reader got the same answer");
    assert_eq!(stack.upstream_calls().await, 1, "exactly one upstream call");
    let (_, cache) = similar(&stack, &stack.base, &a, source.id, 1).await;
    assert_eq!(cache, "hit");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_and_unread_ones_are_swept() {
    let stack = TestStack::spawn(options(
        fast(),
        &[
            ("PREWARM_SIMILAR__TTL_SECS", "1"),
            ("PREWARM_SIMILAR__REFRESH_AHEAD_SECS", "0"),
            ("PREWARM_SIMILAR__STALE_IF_ERROR_SECS", "0"),
            ("PREWARM_SIMILAR__SWEEP_INTERVAL_MS", "200"),
        ],
    ))
    .await;
    // Cached entries are what these tests read: fill them after the
    // invalidation listener's start-up flush.
    stack.wait_subscribed(1).await;
    let a = stack.create_tenant("a", 100).await;
    let s1 = template(&stack, &a, "menu", "menus", "public").await;
    let s2 = template(&stack, &a, "menu two", "menus", "public").await;

    assert_eq!(similar(&stack, &stack.base, &a, s1.id, 1).await.1, "miss");
    assert_eq!(similar(&stack, &stack.base, &a, s1.id, 1).await.1, "hit");
    assert_eq!(stack.upstream_calls().await, 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(similar(&stack, &stack.base, &a, s1.id, 1).await.1, "miss");
    assert_eq!(stack.upstream_calls().await, 2, "expired: asked again");

    // s2 is read once and never again: the sweeper removes it (moka's timer
    // wheel has ~1 s granularity, so allow a few seconds).
    similar(&stack, &stack.base, &a, s2.id, 1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = stack
            .metric("prewarm_cache_entries", &[("cache", "similar_pages")])
            .await;
        if held == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} expired entries still held"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_serves_stale_within_its_window_and_cold_keys_fail_fast() {
    let stack = TestStack::spawn(options(
        fast(),
        &[
            ("PREWARM_SIMILAR__TTL_SECS", "1"),
            ("PREWARM_SIMILAR__REFRESH_AHEAD_SECS", "0"),
            ("PREWARM_SIMILAR__STALE_IF_ERROR_SECS", "2"),
            ("PREWARM_SIMILAR__UPSTREAM_TIMEOUT_MS", "500"),
        ],
    ))
    .await;
    // Cached entries are what these tests read: fill them after the
    // invalidation listener's start-up flush.
    stack.wait_subscribed(1).await;
    let a = stack.create_tenant("a", 100).await;
    let warm = template(&stack, &a, "invite", "invites", "public").await;
    template(&stack, &a, "invite party", "invites", "public").await;
    let cold = template(&stack, &a, "badge", "badges", "public").await;
    let (before, _) = similar(&stack, &stack.base, &a, warm.id, 1).await;

    stack
        .set_upstream_faults(&Faults {
            latency_ms: 0,
            failure_rate: 1.0,
            stall: false,
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Expired, upstream failing: the stale answer, from both tiers' copies.
    let (after, cache) = similar(&stack, &stack.base, &a, warm.id, 1).await;
    assert_eq!(
        (after.items, cache.as_str()),
        (before.items.clone(), "stale")
    );

    // A cold key has nothing to fall back on: a quick, clear 503.
    let started = Instant::now();
    let resp = stack.similar_at(&stack.base, &a, cold.id, 1).await;
    assert_eq!(
        error_code(resp).await,
        (
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "recommendations_unavailable".into()
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A stalled upstream: 504 after the 500 ms timeout, not a hang.
    stack
        .set_upstream_faults(&Faults {
            latency_ms: 0,
            failure_rate: 0.0,
            stall: true,
        })
        .await;
    let started = Instant::now();
    let resp = stack.similar_at(&stack.base, &a, cold.id, 1).await;
    assert_eq!(
        error_code(resp).await,
        (
            reqwest::StatusCode::GATEWAY_TIMEOUT,
            "recommendations_timeout".into()
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Past TTL + stale-if-error (3 s), the stale answer is no longer served.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let resp = stack.similar_at(&stack.base, &a, warm.id, 1).await;
    assert_eq!(error_code(resp).await.1, "recommendations_timeout");
    let stale = stack
        .metric(
            "prewarm_cache_requests_total",
            &[("cache", "similar_pages"), ("result", "stale")],
        )
        .await;
    assert!(stale >= 1.0);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_answers_and_edits_invalidate_both() {
    let mut stack = TestStack::spawn(options(fast(), &[])).await;
    let second = stack.spawn_second_api(&[]).await;
    stack.wait_subscribed(2).await;
    let first = stack.base.clone();
    let a = stack.create_tenant("a", 100).await;
    let source = template(&stack, &a, "wedding card", "cards", "public").await;
    let x = template(&stack, &a, "wedding card gold", "cards", "public").await;
    let y = template(&stack, &a, "wedding card silver", "cards", "public").await;
    let z = template(&stack, &a, "wedding card rose", "cards", "public").await;

    let (on_first, _) = similar(&stack, &first, &a, source.id, 1).await;
    assert_eq!(ids(&on_first), HashSet::from([x.id, y.id, z.id]));
    // The second instance misses locally but finds the answer in Redis.
    let (on_second, cache) = similar(&stack, &second, &a, source.id, 1).await;
    assert_eq!((ids(&on_second), cache.as_str()), (ids(&on_first), "miss"));
    assert_eq!(stack.upstream_calls().await, 1, "the shared tier answered");

    // Edit x through the first instance: the second stops showing it.
    let resp = stack
        .http
        .patch(format!("{first}/templates/{}", x.id))
        .bearer_auth(&a.key)
        .json(&json!({"category": "flyers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Delete y through the first instance.
    let resp = stack
        .http
        .delete(format!("{first}/templates/{}", y.id))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (page, _) = similar(&stack, &second, &a, source.id, 1).await;
        if ids(&page) == HashSet::from([z.id]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second instance still serves {:?}",
            ids(&page)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = stack.similar_at(&second, &a, y.id, 1).await;
    assert_eq!(error_code(resp).await.1, "template_not_found");

    // Editing the source drops its pages in both tiers: the next read asks upstream.
    let calls = stack.upstream_calls().await;
    let resp = stack
        .http
        .patch(format!("{first}/templates/{}", source.id))
        .bearer_auth(&a.key)
        .json(&json!({"name": "wedding card classic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, cache) = similar(&stack, &second, &a, source.id, 1).await;
    assert_eq!(cache, "miss");
    assert_eq!(stack.upstream_calls().await, calls + 1);
    stack.finish().await;
}

/// A lost invalidation is found and repaired: a relay in front of the
/// second replica's Redis drops the pub/sub message of one edit. The
/// replica sees the gap in the numbers (here by its poll of the counter: no
/// later message reveals it), reads the lost message back from the log and
/// drops what it names -- and only that: another source's cached page is
/// still a hit (dropping everything was the old fallback, and is still the
/// one when the log no longer holds what was missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_invalidation_is_read_back_and_drops_only_what_it_names() {
    use prewarm_tests::pubsub_relay::PubSubDropRelay;

    let mut stack = TestStack::spawn(options(fast(), &[])).await;
    let relay = PubSubDropRelay::start("127.0.0.1:6379").await;
    let relayed = format!("redis://127.0.0.1:{}", relay.port);
    let second = stack
        .spawn_second_api(&[("PREWARM_REDIS__URL", relayed.as_str())])
        .await;
    stack.wait_subscribed(2).await;
    let first = stack.base.clone();
    let a = stack.create_tenant("a", 100).await;
    let source = template(&stack, &a, "wedding card", "cards", "public").await;
    let x = template(&stack, &a, "wedding card gold", "cards", "public").await;
    let y = template(&stack, &a, "wedding card silver", "cards", "public").await;
    let other = template(&stack, &a, "summer poster", "posters", "public").await;
    let p = template(&stack, &a, "summer poster bold", "posters", "public").await;

    let (page, _) = similar(&stack, &second, &a, source.id, 1).await;
    assert_eq!(ids(&page), HashSet::from([x.id, y.id]));
    let (page, _) = similar(&stack, &second, &a, other.id, 1).await;
    assert_eq!(ids(&page), HashSet::from([p.id]));
    assert_eq!(similar(&stack, &second, &a, other.id, 1).await.1, "hit");

    relay.drop_messages_containing(&x.id.to_string());
    let resp = stack
        .http
        .patch(format!("{first}/templates/{}", x.id))
        .bearer_auth(&a.key)
        .json(&json!({"category": "flyers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (page, _) = similar(&stack, &second, &a, source.id, 1).await;
        if ids(&page) == HashSet::from([y.id]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second replica still shows the edited template: {:?} (dropped {})",
            ids(&page),
            relay.dropped()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relay.dropped() >= 1, "the relay lost no message");
    let (page, cache) = similar(&stack, &second, &a, other.id, 1).await;
    assert_eq!((ids(&page), cache.as_str()), (HashSet::from([p.id]), "hit"));
    stack.finish().await;
}

/// A load that began before an edit never reaches the shared tier: the
/// first replica's slow upstream call for a page is still running when the
/// page's template is edited (its entries dropped, its generation moved);
/// the answer it then gets is not shared, so the second replica asks the
/// upstream again instead of serving what was true before the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_began_before_an_edit_never_reaches_the_shared_tier() {
    let mut stack = TestStack::spawn(options(fast(), &[])).await;
    let second = stack.spawn_second_api(&[]).await;
    stack.wait_subscribed(2).await;
    let first = stack.base.clone();
    let a = stack.create_tenant("a", 100).await;
    let source = template(&stack, &a, "wedding card", "cards", "public").await;
    let _x = template(&stack, &a, "wedding card gold", "cards", "public").await;

    stack
        .set_upstream_faults(&Faults {
            latency_ms: 800,
            ..Faults::default()
        })
        .await;
    let before = stack.upstream_calls().await;
    let slow = {
        let (http, url, key) = (
            stack.http.clone(),
            format!("{first}/templates/{}/similar?page=1", source.id),
            a.key.clone(),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(key).send().await.unwrap() })
    };
    // The load has read the shared tier (and its generation) once the
    // upstream has its call; the edit comes while the call runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.upstream_calls().await == before {
        assert!(
            Instant::now() < deadline,
            "the load never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = stack
        .http
        .patch(format!("{first}/templates/{}", source.id))
        .bearer_auth(&a.key)
        .json(&json!({"name": "wedding card classic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(slow.await.unwrap().status(), 200);
    stack.set_upstream_faults(&fast()).await;

    let calls = stack.upstream_calls().await;
    let (_, cache) = similar(&stack, &second, &a, source.id, 1).await;
    assert_eq!(cache, "miss");
    assert_eq!(
        stack.upstream_calls().await,
        calls + 1,
        "the second replica served the answer loaded before the edit"
    );
    stack.finish().await;
}
