//! Readiness that matches degraded mode: `/readyz` fails only when the pod
//! cannot serve at all (Postgres unreachable); Redis, S3 or Kafka trouble is
//! reported in its body and in `prewarm_dependency_up`, and the pod stays in
//! rotation. The API starts with Redis down and uses it once it answers.

use std::time::{Duration, Instant};

use prewarm_tests::relay::TcpRelay;
use prewarm_tests::{Options, TestStack};
use reqwest::StatusCode;
use serde_json::Value;
use shared_domain::design::ServedFrom;

async fn readyz(stack: &TestStack) -> (StatusCode, Value) {
    let resp = stack
        .http
        .get(stack.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_without_redis_and_uses_it_once_it_answers() {
    let relay = TcpRelay::start("127.0.0.1:6379").await;
    relay.refuse();
    let stack = TestStack::spawn(Options {
        env: vec![(
            "PREWARM_REDIS__URL".into(),
            format!("redis://127.0.0.1:{}", relay.port),
        )],
        // The worker reaches Redis directly and fills the pool meanwhile.
        worker_env: vec![("PREWARM_REDIS__URL".into(), "redis://127.0.0.1:6379".into())],
        ..Options::default()
    })
    .await;
    let (status, body) = readyz(&stack).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_ne!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(
        stack
            .metric("prewarm_dependency_up", &[("dependency", "redis")])
            .await,
        0.0
    );
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Copy);

    // Redis answers again: the API reconnects by itself.
    relay.accept();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(&stack).await;
        if body["status"] == "ready" {
            assert_eq!(status, StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        stack
            .metric("prewarm_dependency_up", &[("dependency", "redis")])
            .await,
        1.0
    );
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_postgres_takes_the_api_out_of_rotation() {
    let s3 = TcpRelay::start("127.0.0.1:9000").await;
    let pg = TcpRelay::start("127.0.0.1:5432").await;
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![(
            "PREWARM_S3__ENDPOINT".into(),
            format!("http://127.0.0.1:{}", s3.port),
        )],
        pg_server: Some(format!("postgres://postgres@127.0.0.1:{}", pg.port)),
        ..Options::default()
    })
    .await;
    let (status, body) = readyz(&stack).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{body}"
    );

    // S3 gone: warm designs still work, so the pod stays ready (degraded).
    s3.refuse();
    let (status, body) = readyz(&stack).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_ne!(body["checks"]["s3"], "ok", "{body}");

    // Postgres gone: nothing can be served.
    pg.cut();
    let (status, body) = readyz(&stack).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(
        stack
            .metric("prewarm_dependency_up", &[("dependency", "postgres")])
            .await,
        0.0
    );
    stack.finish().await;
}
