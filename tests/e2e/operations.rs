//! Running it: health, readiness and metrics of the worker; graceful
//! shutdown of both services on SIGTERM.

use std::time::{Duration, Instant};

use prewarm_testkit::fault_proxy::{FaultProxy, Faults};
use prewarm_tests::{metric_value, Options, TestStack};
use shared_domain::object_keys::POOL_PREFIX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_health_readiness_and_metrics() {
    // Only the consumer refills here: a reconciler pass could fill the pool
    // first, and the consumer would then coalesce the creation's and the
    // pop's messages into one refill (one count, reason of the oldest) --
    // which made this test fail about 1 run in 3 under `make test`.
    let stack = TestStack::spawn(Options {
        worker_env: vec![
            ("PREWARM_WORKER__METRICS_INTERVAL_MS".into(), "100".into()),
            ("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into()),
        ],
        ..Options::default()
    })
    .await;
    let base = stack.worker_base.clone().expect("in-process worker");
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    // The creation's refill is counted before the pop's message is sent.
    let counted = Instant::now() + Duration::from_secs(10);
    while metric_value(
        &stack.worker_metrics().await,
        "prewarm_refills_total",
        &[("outcome", "ok")],
    ) < Some(1.0)
    {
        assert!(
            Instant::now() < counted,
            "the first refill was never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.create_design(&tenant, template.id).await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;

    let health = stack
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = stack
        .http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    for dep in ["postgres", "redis", "s3", "kafka"] {
        assert_eq!(ready["checks"][dep], "ok", "{ready}");
    }

    // Refills, copies, lag and pool depth are counted; consumer lag arrives
    // with librdkafka's statistics (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let text = stack.worker_metrics().await;
        let refills = metric_value(&text, "prewarm_refills_total", &[("outcome", "ok")]);
        let items = metric_value(&text, "prewarm_pool_items_total", &[("outcome", "ready")]);
        let copies = metric_value(
            &text,
            "prewarm_item_copy_duration_seconds_count",
            &[("outcome", "ok")],
        );
        let lag = metric_value(
            &text,
            "prewarm_refill_lag_seconds_count",
            &[("reason", "pool_pop")],
        );
        let depth = metric_value(
            &text,
            "prewarm_pool_ready_items",
            &[("template", &template.id.to_string())],
        );
        let total = metric_value(&text, "prewarm_pool_ready_items_total", &[]);
        let consumer_lag = metric_value(&text, "prewarm_consumer_lag_messages", &[]);
        let done = refills >= Some(2.0)
            && items == Some(5.0)
            && copies == Some(5.0)
            && lag >= Some(1.0)
            && depth == Some(4.0)
            && total == Some(4.0)
            && consumer_lag == Some(0.0);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\nrefills {refills:?} items {items:?} copies {copies:?} lag {lag:?} depth {depth:?} \
             total {total:?} consumer lag {consumer_lag:?}",
            text.lines().filter(|l| l.contains("refill")).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.finish().await;
}

/// Every statement either service sends is timed under its verb and table
/// or function (`prewarm_db_query_seconds`), with no call site opting in:
/// one warm design is one claim in the API's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_timed_by_verb_and_table() {
    let stack = TestStack::spawn(Options::default()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    let claims = |text: &str| {
        metric_value(
            text,
            "prewarm_db_query_seconds_count",
            &[("statement", "call prewarm_claim_item")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(claims(&stack.metrics().await), 0.0);
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, shared_domain::design::ServedFrom::Pool);
    let api = stack.metrics().await;
    assert_eq!(claims(&api), 1.0, "{api}");
    let inserts = metric_value(
        &api,
        "prewarm_db_query_seconds_count",
        &[("statement", "insert templates")],
    );
    assert!(inserts >= Some(1.0), "the template's insert: {inserts:?}");
    // The worker's refills write the ledger through the same timer.
    let worker = stack.worker_metrics().await;
    let timed: f64 = worker
        .lines()
        .filter(|l| l.starts_with("prewarm_db_query_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(timed > 0.0, "the worker timed no statement");
    stack.finish().await;
}

/// A statement that returns rows is timed to its last row, not to the
/// server's first answer (diesel-async reports a load done when its bind is
/// answered; a large result is flushed while the server still runs it):
/// rows whose last one takes 200 ms read as at least 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_timed_to_its_rows_not_to_its_bind() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Slept {
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[allow(dead_code)]
        t: String,
    }
    let stack = TestStack::spawn(Options::without_worker()).await;
    // A pool of its own over the same spec: the API's metrics, and a
    // statement (over pg_class) nothing else sends.
    let db = stack.db.local_copy(1).unwrap();
    let metrics = db.query_metrics().clone();
    let before = (
        metrics.count("select pg_class"),
        metrics.sum("select pg_class"),
    );
    {
        let mut conn = db.conn().await.unwrap();
        // 3,000 rows of 200 bytes: the server sends the first ones (and
        // the bind's answer) long before it sleeps over the last one.
        let rows: Vec<Slept> = diesel::sql_query(
            "SELECT CASE WHEN g = 3000 THEN pg_sleep(0.2)::text ELSE repeat('x', 200) END AS t
               FROM pg_class, generate_series(1, 3000) AS g
              WHERE pg_class.oid = 'pg_class'::regclass",
        )
        .load(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows.len(), 3000);
    }
    let count = metrics.count("select pg_class") - before.0;
    let took = metrics.sum("select pg_class") - before.1;
    assert_eq!(count, 1);
    assert!(
        took >= 0.2,
        "timed {took:.4} s of rows whose last took 0.2 s"
    );
    stack.finish().await;
}

/// SIGTERM while a refill is copying: the worker finishes the refill (items
/// ready and indexed), commits, and exits 0; nothing is left half-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_refill_finishes_it_and_loses_nothing() {
    // A gap of 4, all 4 in flight (`worker.items_in_flight` = 8).
    sigterm_mid_refill(4, 8, 4).await;
}

/// SIGTERM while a refill of a 6-item gap copies its first 2 items (2 in
/// flight): those 2 finish (ready, indexed), the 4 not started are handed
/// back to the ledger at once instead of being copied before the worker may
/// exit, and nothing of theirs is in S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_refill_hands_back_the_items_it_has_not_started() {
    sigterm_mid_refill(6, 2, 2).await;
}

/// A worker process refills a gap of `gap` items of 5 images, `in_flight`
/// at a time, one 400 ms copy at a time per item (2 s an item); SIGTERM
/// 300 ms into the copies. It must exit 0 leaving `ready` items ready and
/// indexed, none copying, and exactly their objects in S3; the next worker
/// replays the message and fills the gap.
async fn sigterm_mid_refill(gap: i32, in_flight: usize, ready: i64) {
    let stack = TestStack::spawn(Options {
        worker: false,
        pool_target: gap,
        ..Options::default()
    })
    .await;
    let slow = FaultProxy::start(0, "http://127.0.0.1:9000", Faults::default()).unwrap();
    slow.set(Faults {
        delay: Duration::from_millis(400),
        ..Faults::default()
    });
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 5, "private").await;
    let proxy_url = slow.url();
    let in_flight = in_flight.to_string();
    let mut child = stack.spawn_worker_process(&[
        ("PREWARM_S3__ENDPOINT", proxy_url.as_str()),
        ("PREWARM_WORKER__ITEM_PARALLELISM", "1"),
        ("PREWARM_WORKER__ITEMS_IN_FLIGHT", in_flight.as_str()),
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "0"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack.pool_status(&tenant, template.id).await.copying == 0 {
        assert!(Instant::now() < deadline, "the refill never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = child.wait().unwrap();
    eprintln!(
        "worker exited {exit:?} {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(exit.success(), "{exit:?}");

    let status = stack.pool_status(&tenant, template.id).await;
    assert_eq!(
        (status.ready, status.copying, status.indexed),
        (ready, 0, ready),
        "{status:?}"
    );
    let objects = stack
        .objects
        .list(&format!("{POOL_PREFIX}{}/", template.id))
        .await
        .unwrap();
    assert_eq!(objects.len() as i64, ready * 5, "{objects:?}");

    // The batch ended while the worker stopped, so its offset was not
    // committed: the next worker of the group replays the message and
    // fills the rest of the gap (no reconciler runs here).
    let mut next = stack.spawn_worker_process(&[
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "0"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ]);
    stack
        .wait_pool(&tenant, template.id, gap as i64, Duration::from_secs(30))
        .await;
    next.kill().unwrap();
    next.wait().unwrap();
    stack.finish().await;
}

/// SIGTERM while designs are being copied: the API stops accepting new
/// connections and finishes the requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let slow = FaultProxy::start(0, "http://127.0.0.1:9000", Faults::default()).unwrap();
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 4, "private").await;
    slow.set(Faults {
        delay: Duration::from_millis(400),
        ..Faults::default()
    });
    let proxy_url = slow.url();
    let (mut api, base) = stack.spawn_api_process(&[
        ("PREWARM_S3__ENDPOINT", proxy_url.as_str()),
        ("PREWARM_SERVING__FROM_POOL", "false"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "api never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Three cold designs in flight (each at least 400 ms of copying).
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let http = stack.http.clone();
            let url = format!("{base}/designs");
            let key = tenant.key.clone();
            let id = template.id;
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(key)
                    .json(&serde_json::json!({"template_id": id}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    std::process::Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status()
        .unwrap();
    for r in in_flight {
        assert_eq!(
            r.await.unwrap().unwrap(),
            201,
            "an in-flight request was cut"
        );
    }
    let exit = api.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    // Stopped: new connections are refused.
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{base}/healthz")).send().await.is_err());
    let list: serde_json::Value = stack.get(&tenant, "/designs").await.json().await.unwrap();
    assert_eq!(list["designs"].as_array().unwrap().len(), 3);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_its_openapi_document_as_committed() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let served: serde_json::Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed);
    assert_eq!(served["openapi"], "3.1.0");
    stack.finish().await;
}

/// One trace covers the design request in template-api, the warm-up message
/// and the refill in warmup-worker (two processes exporting to one OTLP
/// receiver); the API's JSON log lines carry that trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_the_request_the_message_and_the_refill() {
    use prewarm_tests::otlp::OtlpReceiver;

    let receiver = OtlpReceiver::start().unwrap();
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let endpoint = receiver.url();
    let traced = [
        ("PREWARM_TRACE__OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
        // Only Kafka messages fill the pool here, so a full pool proves the
        // consumer is live before the traced request is sent.
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "0"),
    ];
    let dir = std::env::temp_dir().join(format!("prewarm-trace-{}", tenant.id));
    std::fs::create_dir_all(&dir).unwrap();
    let worker_log = dir.join("warmup-worker.log");
    let mut worker = stack.spawn_logged("warmup-worker", &traced, Some(&worker_log));
    let template = stack.create_template(&tenant, 2, "private").await;
    // The first fill (from the untraced template upload) is done first, so
    // the traced request's message is not coalesced with it.
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;

    let api_log = dir.join("template-api.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut api_env = traced.to_vec();
    api_env.push(("PREWARM_SERVER__PORT", port.as_str()));
    let mut api = stack.spawn_logged("template-api", &api_env, Some(&api_log));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "api never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = stack
        .http
        .post(format!("{base}/designs"))
        .bearer_auth(&tenant.key)
        .json(&serde_json::json!({"template_id": template.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Wait for a trace holding spans of both services.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shared = loop {
        let spans = receiver.spans();
        let api_traces: std::collections::HashSet<String> = spans
            .iter()
            .filter(|s| s.service == "template-api" && s.name == "POST /designs")
            .map(|s| s.trace_id.clone())
            .collect();
        let joined = spans.iter().find(|s| {
            s.service == "warmup-worker"
                && s.name == "warm-up refill"
                && api_traces.contains(&s.trace_id)
        });
        if let Some(refill) = joined {
            assert!(
                !refill.parent_span_id.is_empty(),
                "the refill has a remote parent"
            );
            // The request's span carries its answer's status.
            let request = spans
                .iter()
                .find(|s| s.name == "POST /designs" && s.trace_id == refill.trace_id)
                .expect("the request's span");
            assert_eq!(
                request.attribute("http.response.status_code"),
                Some("201"),
                "{request:?}"
            );
            // The statements of both are spans of the same trace.
            for service in ["template-api", "warmup-worker"] {
                assert!(
                    spans.iter().any(|s| s.service == service
                        && s.name == "db.query"
                        && s.trace_id == refill.trace_id),
                    "no statement span of {service} in the request's trace: {spans:?}"
                );
            }
            break refill.trace_id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no trace spans both services: {spans:?}\nworker log:\n{}",
            std::fs::read_to_string(&worker_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // SIGTERM flushes; the request's log line names the same trace.
    for child in [&mut api, &mut worker] {
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
    let log = std::fs::read_to_string(&api_log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("POST /designs"))
        .unwrap_or_else(|| panic!("no access log line in {log}"));
    let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(parsed["span"]["trace_id"], shared.as_str(), "{line}");
    // The request id is in the access log line too (the client got it as X-Request-Id).
    let id = parsed["span"]["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "no request id in {line}");
    receiver.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    stack.finish().await;
}

/// Replicas of both services starting together on a new database (with
/// `database.migrate`) all migrate it: `CREATE TABLE IF NOT EXISTS` of the
/// migrations lease table raced itself (one process failed on the
/// catalog's unique index, seen in a lab: the worker exited at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_starting_together_on_a_new_database_all_migrate() {
    for _ in 0..3 {
        let (run, mut admin) = new_database().await;
        let url = run.db_url();
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { prewarm_store::db::run_migrations(&url).await })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(starts).await;
        run.drop_database(&mut admin).await.unwrap();
        for r in results {
            r.unwrap()
                .expect("a process failed to migrate a new database");
        }
    }
}

/// A new, empty database of its own, and the admin connection that drops it.
async fn new_database() -> (
    prewarm_testkit::isolated::Isolated,
    diesel_async::AsyncPgConnection,
) {
    use diesel_async::AsyncConnection;
    let run = prewarm_testkit::isolated::Isolated::new("test", &prewarm_tests::pg_server());
    let mut admin =
        diesel_async::AsyncPgConnection::establish(&format!("{}/postgres", run.pg_server))
            .await
            .unwrap();
    run.create_database(&mut admin).await.unwrap();
    (run, admin)
}

/// A database migrated by a build from before the baseline migration is
/// refused with what to do, and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_baseline_is_refused_with_what_to_do() {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let (run, mut admin) = new_database().await;
    let url = run.db_url();
    let mut conn = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY, run_on TIMESTAMP NOT NULL DEFAULT now())",
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('20261123000001'), ('20261208000018')",
        "CREATE TABLE companies (id uuid PRIMARY KEY)",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    let refused = prewarm_store::db::run_migrations(&url).await;
    let message = format!("{:?}", refused.as_ref().err());
    let tables: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'singleton_leases'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    drop(conn);
    run.drop_database(&mut admin).await.unwrap();
    assert!(refused.is_err(), "a pre-baseline database was migrated");
    assert!(
        message.contains("before the baseline") && message.contains("create a new database"),
        "{message}"
    );
    assert_eq!(tables, 2, "the refused database was changed");
}

/// The caller's W3C trace context travels into the warm-up message even
/// when this API exports no traces (no `trace.otlp_endpoint`): the context
/// is the caller's, not ours to drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_traceparent_reaches_the_warmup_message_without_an_exporter() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};

    let stack = TestStack::spawn(Options {
        worker: false,
        // One message per ask: the design's is not merged into the
        // (untraced) one of the template's creation.
        env: vec![("PREWARM_SERVING__WARMUP_COALESCE_MS".into(), "0".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let resp = stack
        .http
        .post(stack.url("/designs"))
        .bearer_auth(&tenant.key)
        .header("traceparent", &traceparent)
        .json(&serde_json::json!({"template_id": template.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let setting = |name: &str| stack.env.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", setting("PREWARM_KAFKA__BROKERS"))
        .set("group.id", format!("trace-reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[setting("PREWARM_KAFKA__TOPIC").as_str()])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let carried = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, consumer.recv())
            .await
            .expect("the design's warm-up message within 30 s")
            .unwrap();
        let found = msg.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "traceparent")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
        });
        if let Some(value) = found {
            break value;
        }
    };
    assert_eq!(carried, traceparent);
    stack.finish().await;
}
