//! `Idempotency-Key` on `POST /designs` and `POST /templates`: one key makes
//! one resource however many requests carry it at once, the first answer is
//! replayed (also after the API died between its commit and its reply), the
//! same key with another body is refused, a failed request frees its key.

use std::time::{Duration, Instant};

use futures::future::join_all;
use prewarm_tests::relay::TcpRelay;
use prewarm_tests::{template_form, Options, Tenant, TestStack};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared_domain::company::Company;
use shared_domain::design::Design;
use shared_domain::ids::TemplateId;

async fn post_keyed(
    stack: &TestStack,
    base: &str,
    tenant: &Tenant,
    template: TemplateId,
    key: &str,
) -> reqwest::Result<reqwest::Response> {
    stack
        .http
        .post(format!("{base}/designs"))
        .bearer_auth(&tenant.key)
        .header("Idempotency-Key", key)
        .json(&json!({ "template_id": template }))
        .send()
        .await
}

async fn company(stack: &TestStack, tenant: &Tenant) -> Company {
    let mut conn = stack.db.conn().await.unwrap();
    prewarm_store::db::companies::find(&mut conn, tenant.id)
        .await
        .unwrap()
        .unwrap()
}

async fn designs_of(stack: &TestStack, tenant: &Tenant) -> Vec<Design> {
    let mut conn = stack.db.conn().await.unwrap();
    prewarm_store::db::designs::list(
        &mut conn,
        tenant.id,
        1000,
        &prewarm_store::db::page::PageAt::FIRST,
    )
    .await
    .unwrap()
}

/// 50 requests with one key at once, `path` says warm or cold: every answer
/// that is a 201 names the same design; exactly one design, one plan slot,
/// one set of objects.
async fn fifty_at_once(stack: &TestStack, tenant: &Tenant, template: TemplateId, images: usize) {
    let answers =
        join_all((0..50).map(|_| post_keyed(stack, &stack.base, tenant, template, "order-42")))
            .await;
    let mut ids = Vec::new();
    let mut replayed = 0;
    for answer in answers {
        let answer = answer.unwrap();
        let status = answer.status();
        let replay = answer.headers().get("idempotent-replayed").is_some();
        let body: Value = answer.json().await.unwrap();
        match status {
            StatusCode::CREATED => {
                replayed += usize::from(replay);
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "request_in_progress", "{body}")
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "every 201 names one design: {ids:?}");
    assert!(replayed >= 1, "the others were replays");
    let made = designs_of(stack, tenant).await;
    assert_eq!(made.len(), 1, "one design");
    assert_eq!(made[0].id.to_string(), ids[0]);
    assert_eq!(
        company(stack, tenant).await.design_count,
        1,
        "one plan slot"
    );
    let objects = stack.objects.list("designs/").await.unwrap();
    assert_eq!(objects.len(), images, "one set of objects: {objects:?}");
    let checked = prewarm_tests::invariants::check_designs(stack, tenant.id, &made).await;
    assert_eq!(checked.designs, 1);
    assert_eq!(pending_copies(stack).await, 0, "no copy left announced");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn pending_copies(stack: &TestStack) -> i64 {
    use diesel_async::RunQueryDsl;
    let mut conn = stack.db.conn().await.unwrap();
    let counted: Count = diesel::sql_query("SELECT count(*) AS n FROM pending_copies")
        .get_result(&mut conn)
        .await
        .unwrap();
    counted.n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_make_one_cold_design() {
    // No worker: the pool stays empty, every attempt would copy.
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    fifty_at_once(&stack, &tenant, template.id, 3).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_make_one_warm_design() {
    let stack = TestStack::spawn(Options {
        pool_target: 4,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    // Count only designs' objects: the pool's own copies live elsewhere.
    fifty_at_once(&stack, &tenant, template.id, 0).await;
    let made = designs_of(&stack, &tenant).await;
    assert_eq!(made[0].served_from.as_str(), "pool");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_replays_its_answer_refuses_another_body_and_is_freed_by_a_failure() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![("PREWARM_IDEMPOTENCY__RETENTION_SECS".into(), "2".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let other = stack.create_tenant("globex", 100).await;
    let a = stack.create_template(&tenant, 1, "public").await;
    let b = stack.create_template(&tenant, 1, "private").await;

    let first = post_keyed(&stack, &stack.base, &tenant, a.id, "k1")
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post_keyed(&stack, &stack.base, &tenant, a.id, "k1")
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["x-served-from"], "copy");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the first answer, byte for byte");

    // Same key, other body.
    let reused = post_keyed(&stack, &stack.base, &tenant, b.id, "k1")
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = reused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    // Keys are per company: another tenant's "k1" is its own.
    let theirs = post_keyed(&stack, &stack.base, &other, a.id, "k1")
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert!(theirs.headers().get("idempotent-replayed").is_none());

    // A request that fails makes nothing and frees its key.
    let missing = TemplateId::new();
    let failed = post_keyed(&stack, &stack.base, &tenant, missing, "k2")
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::NOT_FOUND);
    let retried = post_keyed(&stack, &stack.base, &tenant, b.id, "k2")
        .await
        .unwrap();
    assert_eq!(
        retried.status(),
        StatusCode::CREATED,
        "a failed request does not hold its key"
    );

    // A bad key is a 400.
    let bad = stack
        .http
        .post(stack.url("/designs"))
        .bearer_auth(&tenant.key)
        .header("Idempotency-Key", "x".repeat(300))
        .json(&json!({ "template_id": a.id }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // After the retention the key is free again (and the purge removes it).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let reused_later = post_keyed(&stack, &stack.base, &tenant, b.id, "k1")
        .await
        .unwrap();
    assert_eq!(reused_later.status(), StatusCode::CREATED);
    assert!(reused_later.headers().get("idempotent-replayed").is_none());
    assert_eq!(designs_of(&stack, &tenant).await.len(), 3);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_api_died_between_commit_and_reply_gets_the_same_design() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let (mut api, base) = stack.spawn_api_process(&[]);
    stack.wait_healthy(&base).await;
    let relay = TcpRelay::start(base.trim_start_matches("http://")).await;
    relay.hold_replies();
    let through = format!("http://127.0.0.1:{}", relay.port);
    let request = {
        let (http, key, url) = (
            stack.http.clone(),
            tenant.key.clone(),
            format!("{through}/designs"),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "lost-reply")
                .json(&json!({ "template_id": template.id }))
                .send()
                .await
        })
    };
    // The design and its stored answer commit together; the reply is held.
    let deadline = Instant::now() + Duration::from_secs(30);
    while designs_of(&stack, &tenant).await.is_empty() {
        assert!(Instant::now() < deadline, "the design was never made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.kill().unwrap();
    api.wait().unwrap();
    relay.cut();
    assert!(
        request.await.unwrap().is_err(),
        "the client never got its answer"
    );

    let (mut api, base) = stack.spawn_api_process(&[]);
    stack.wait_healthy(&base).await;
    let retry = post_keyed(&stack, &base, &tenant, template.id, "lost-reply")
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let replayed: Design = retry.json().await.unwrap();
    let made = designs_of(&stack, &tenant).await;
    assert_eq!(made.len(), 1, "no second design");
    assert_eq!(replayed.id, made[0].id);
    assert_eq!(replayed.images, made[0].images);
    assert_eq!(company(&stack, &tenant).await.design_count, 1);
    api.kill().unwrap();
    api.wait().unwrap();
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_upload_with_a_key_is_stored_once() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let metadata = json!({"name": "Flyer", "layout": {}});
    let upload = |n: usize, metadata: Value| {
        stack
            .http
            .post(stack.url("/templates"))
            .bearer_auth(&tenant.key)
            .header("Idempotency-Key", "upload-1")
            .multipart(template_form(n, &metadata))
            .send()
    };
    let first = upload(2, metadata.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = upload(2, metadata.clone()).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other = upload(3, metadata).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // One template, and only its two images in the bucket (the retries'
    // uploads were deleted).
    let listed: Value = stack.get(&tenant, "/templates").await.json().await.unwrap();
    assert_eq!(listed["templates"].as_array().unwrap().len(), 1);
    let objects = stack.objects.list("templates/").await.unwrap();
    assert_eq!(objects.len(), 2, "{objects:?}");
    stack.finish().await;
}
