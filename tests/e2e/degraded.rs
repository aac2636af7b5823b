//! Dependencies failing at run time: the API degrades to the cold path or a
//! clear 503, never a panic, a hang or a leaked object.

use std::time::Duration;

use prewarm_testkit::fault_proxy::{FaultProxy, Faults};
use prewarm_tests::relay::TcpRelay;
use prewarm_tests::{error_code, Options, TestStack};
use shared_domain::design::{Design, ServedFrom};
use shared_domain::object_keys::DESIGNS_PREFIX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_to_copies_without_5xx() {
    let relay = TcpRelay::start("127.0.0.1:6379").await;
    let stack = TestStack::spawn(Options {
        env: vec![(
            "PREWARM_REDIS__URL".into(),
            format!("redis://127.0.0.1:{}", relay.port),
        )],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;

    relay.cut();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let resp = stack.post_design(&tenant, template.id).await;
        assert_eq!(resp.status(), 201, "a 5xx or 4xx while Redis is down");
        let design: Design = resp.json().await.unwrap();
        assert_eq!(design.served_from, ServedFrom::Copy);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        for img in &design.images {
            assert!(stack.objects.exists(&img.object_key).await.unwrap());
        }
    }
    // The pool items are untouched in the ledger, waiting for Redis to return.
    let status = stack.pool_status(&tenant, template.id).await;
    assert_eq!((status.ready, status.indexed), (4, 0), "{status:?}");
    // The fall-back is visible in metrics, not only in the log.
    let degraded = stack
        .metric("prewarm_degraded_total", &[("dependency", "redis")])
        .await;
    let by_copy = stack
        .metric(
            "prewarm_designs_created_total",
            &[("served_from", "copy"), ("cause", "redis_down")],
        )
        .await;
    assert_eq!((degraded, by_copy), (3.0, 3.0));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_are_retried_and_failures_are_clear_503s_without_leaks() {
    let proxy = FaultProxy::start(0, "http://127.0.0.1:9000", Faults::default()).unwrap();
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![("PREWARM_S3__ENDPOINT".into(), proxy.url())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let template = stack.create_template(&tenant, 4, "private").await;

    // One S3 request in four fails with 503 SlowDown: the SDK retries them.
    proxy.set(Faults {
        error_rate: 0.25,
        ..Faults::default()
    });
    let (mut ok, mut unavailable) = (0, 0);
    for _ in 0..12 {
        let resp = stack.post_design(&tenant, template.id).await;
        match resp.status().as_u16() {
            201 => ok += 1,
            503 => {
                let (_, code) = error_code(resp).await;
                assert_eq!(code, "object_store_unavailable");
                unavailable += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    eprintln!("with 25% of S3 requests failing: {ok} designs, {unavailable} clear 503s");
    assert!(ok >= 9, "retries should absorb most faults: {ok} of 12");

    // S3 down altogether: a clear 503 with a stable code, quickly, never a hang.
    proxy.set(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (status, code) = error_code(stack.post_design(&tenant, template.id).await).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (503, "object_store_unavailable")
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "took {:?}",
            started.elapsed()
        );
    }

    // Every design's objects exist; nothing else is left under designs/ once
    // the collector ran (a failed request's cleanup may itself have failed).
    proxy.set(Faults::default());
    let gc = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    gc.gc().await.unwrap();
    let list: serde_json::Value = stack.get(&tenant, "/designs").await.json().await.unwrap();
    let designs: Vec<Design> = serde_json::from_value(list["designs"].clone()).unwrap();
    assert_eq!(designs.len(), ok);
    let stored = stack.objects.list(DESIGNS_PREFIX).await.unwrap();
    assert_eq!(
        stored.len(),
        ok * 4,
        "objects under designs/: {}",
        stored.len()
    );
    proxy.stop().await;
    stack.finish().await;
}

/// A copy answered a bare `408 Request Timeout` with `Connection: close` --
/// an S3 server timing out a kept-alive connection as the request went out
/// on it -- is sent again: with one S3 request in five answered so, every
/// design (four copies each, on the request path) is made, and has its
/// objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_answered_408_on_a_closing_connection_is_retried() {
    let proxy = FaultProxy::start(0, "http://127.0.0.1:9000", Faults::default()).unwrap();
    let stack = TestStack::spawn(Options {
        worker: false,
        env: vec![
            ("PREWARM_S3__ENDPOINT".into(), proxy.url()),
            ("PREWARM_S3__MAX_ATTEMPTS".into(), "8".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let template = stack.create_template(&tenant, 4, "private").await;
    proxy.set(Faults {
        timeout_rate: 0.2,
        ..Faults::default()
    });
    for _ in 0..10 {
        let resp = stack.post_design(&tenant, template.id).await;
        assert_eq!(resp.status().as_u16(), 201, "{:?}", error_code(resp).await);
    }
    proxy.set(Faults::default());
    let stored = stack.objects.list(DESIGNS_PREFIX).await.unwrap();
    assert_eq!(stored.len(), 10 * 4, "objects under designs/");
    proxy.stop().await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_unreachable_never_blocks_designs_and_pools_still_fill() {
    // Nothing listens on port 1: every warm-up request is undeliverable.
    let stack = TestStack::spawn(Options {
        env: vec![
            ("PREWARM_KAFKA__BROKERS".into(), "127.0.0.1:1".into()),
            ("PREWARM_KAFKA__CREATE_TOPIC".into(), "false".into()),
            ("PREWARM_KAFKA__MESSAGE_TIMEOUT_MS".into(), "1000".into()),
        ],
        worker_env: vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "300".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    // Only the reconciler can fill the pool: no message ever arrives.
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(10))
        .await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let design = stack.create_design(&tenant, template.id).await;
        assert_eq!(design.served_from, ServedFrom::Pool);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a design waited for Kafka: {:?}",
            started.elapsed()
        );
    }
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(10))
        .await;
    // Each undeliverable warm-up message (the creation's, and the pops',
    // coalesced per `serving.warmup_coalesce_ms`) is counted once the producer
    // gives up.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let [queued, coalesced, undelivered] = stack
            .warmup_requests(["queued", "coalesced", "undelivered"])
            .await;
        if queued >= 2.0 && undelivered == queued {
            assert_eq!(
                queued + coalesced,
                4.0,
                "one ask per design and one for the creation"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "undelivered warm-up requests not counted: {undelivered} of {queued}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_is_checked_after_idling_and_never_handed_out_closed() {
    use diesel::sql_types::Integer;
    use diesel_async::RunQueryDsl;
    use prewarm_store::db::Db;

    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    async fn backend(db: &Db) -> i32 {
        let mut conn = db.conn().await.expect("a pooled connection");
        diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(&mut conn)
            .await
            .expect("a query on a handed-out connection")
            .pid
    }

    let stack = TestStack::spawn(Options::without_worker()).await;
    let url = stack
        .env
        .iter()
        .find(|(k, _)| k == "PREWARM_DATABASE__URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    const CHECK_IDLE: Duration = Duration::from_millis(1_000);
    let db = Db::connect_with(
        &url,
        1,
        Duration::from_secs(5),
        CHECK_IDLE,
        &Default::default(),
    )
    .unwrap();

    // Used again within the window: handed out without a check.
    let first = backend(&db).await;
    assert_eq!(backend(&db).await, first);
    assert_eq!(db.checks(), 0);
    // Idle longer than the window: checked (`SELECT 1`) first.
    tokio::time::sleep(CHECK_IDLE + Duration::from_millis(300)).await;
    assert_eq!(backend(&db).await, first);
    assert_eq!(db.checks(), 1);

    // Killed behind the pool's back (a failover, a restart): even within the
    // window the closed connection is not handed out; a new one is.
    let mut admin = stack.db.conn().await.unwrap();
    diesel::sql_query(format!("SELECT pg_terminate_backend({first})"))
        .execute(&mut admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let replaced = backend(&db).await;
    assert_ne!(replaced, first);
    stack.finish().await;
}
