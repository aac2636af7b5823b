//! Connections configured the hardened way, against real servers that
//! `make up` starts (`scripts/stack.sh`) with certificates from a test CA it
//! makes (`~/.cache/prewarm/tls/`).

use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use prewarm_store::db::tls::{PgTls, SslMode};
use prewarm_tests::{env_or, Options, TestStack};
use shared_domain::design::ServedFrom;
use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;

/// A file of the test CA `make up` made (`$PREWARM_CACHE/tls`, default
/// `~/.cache/prewarm/tls`: shared by every clone on the machine, like the
/// TLS servers started with it).
fn tls_file(name: &str) -> String {
    let cache = std::env::var("PREWARM_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/prewarm", std::env::var("HOME").unwrap()));
    format!("{cache}/tls/{name}")
}

fn pg_tls_server() -> String {
    env_or("PREWARM_TEST_PG_TLS", "postgres://postgres@localhost:5433")
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_work_over_postgres_tls_with_verify_full() {
    let stack = TestStack::spawn(Options {
        pg_server: Some(pg_tls_server()),
        pg_tls: Some(("verify-full".into(), tls_file("ca.pem"))),
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    // The worker refilled over TLS; the API claims over TLS.
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(30))
        .await;
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let mut conn = stack.db.conn().await.unwrap();
    let ssl: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(ssl.ssl, "the pool's connection is not encrypted");
    // The server really refuses plain connections.
    let plain = PgTls::default()
        .establish(&format!("{}/postgres", pg_tls_server()))
        .await;
    assert!(plain.is_err(), "a plain connection was accepted");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_at_start_with_the_reason() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let mut env = stack.env.clone();
    env.extend(
        [
            (
                "PREWARM_DATABASE__URL",
                format!("{}/postgres", pg_tls_server()),
            ),
            ("PREWARM_DATABASE__MIGRATE", "false".into()),
            ("PREWARM_DATABASE__SSL_MODE", "verify-full".into()),
            ("PREWARM_DATABASE__SSL_ROOT_CERT", tls_file("other-ca.pem")),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let settings = template_api::settings::load_from(env.clone().into_iter()).unwrap();
    let error = match template_api::startup::Application::build(settings).await {
        Ok(_) => panic!("the API started against a server its CA does not vouch for"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("Postgres at start") && error.contains("UnknownIssuer"),
        "unclear error: {error}"
    );
    // The same CA with `verify-ca` is refused too; `require` encrypts
    // without checking, and connects.
    let other = std::path::PathBuf::from(tls_file("other-ca.pem"));
    let url = format!("{}/postgres", pg_tls_server());
    let verify_ca = PgTls::new(SslMode::VerifyCa, Some(&other)).unwrap();
    assert!(verify_ca.establish(&url).await.is_err());
    let require = PgTls::new(SslMode::Require, Some(&other)).unwrap();
    assert!(require.establish(&url).await.is_ok());
    // A missing CA file is named at start.
    let Err(missing) = PgTls::new(SslMode::VerifyFull, Some(&"/nonexistent/ca.pem".into())) else {
        panic!("a missing CA file is an error");
    };
    assert!(missing.contains("database.ssl_root_cert"), "{missing}");
    stack.finish().await;
}

/// The stored objects' encryption as S3 reports it (`ServerSideEncryption`,
/// `SSEKMSKeyId` of a HEAD), read with an independent client: boto3 from
/// the venv `make up` installs moto into, not the AWS SDK for Rust the
/// services use.
fn stored_encryption(
    stack: &TestStack,
    keys: &[String],
) -> std::collections::HashMap<String, (Option<String>, Option<String>)> {
    const HEAD: &str = r#"
import boto3, json, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
print(json.dumps({k: [h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")]
                  for k in sys.argv[3:]
                  for h in [s3.head_object(Bucket=sys.argv[2], Key=k)]}))
"#;
    let cache = std::env::var("PREWARM_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/prewarm", std::env::var("HOME").unwrap()));
    let out = std::process::Command::new(format!("{cache}/venv/bin/python"))
        .arg("-c")
        .arg(HEAD)
        .arg(env_or("PREWARM_TEST_S3", "http://127.0.0.1:9000"))
        .arg(stack.objects.bucket())
        .args(keys)
        .output()
        .expect("run boto3 (installed by `make up`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("boto3 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_is_written_with_the_configured_server_side_encryption() {
    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/prewarm-test";
    for (sse, kms_key) in [("AES256", ""), ("aws:kms", KEY)] {
        let stack = TestStack::spawn(Options {
            pool_target: 1,
            env: vec![
                ("PREWARM_S3__SERVER_SIDE_ENCRYPTION".into(), sse.into()),
                ("PREWARM_S3__SSE_KMS_KEY_ID".into(), kms_key.into()),
            ],
            ..Options::default()
        })
        .await;
        let tenant = stack.create_tenant("acme", 100).await;
        let template = stack.create_template(&tenant, 2, "private").await;
        stack
            .wait_pool(&tenant, template.id, 1, std::time::Duration::from_secs(30))
            .await;
        // A put (the template), a worker's copy (warm) and the API's copy (cold).
        let warm = stack.create_design(&tenant, template.id).await;
        let cold = stack.create_design(&tenant, template.id).await;
        assert_eq!(
            (warm.served_from, cold.served_from),
            (ServedFrom::Pool, ServedFrom::Copy)
        );
        let keys: Vec<String> = template
            .images
            .iter()
            .map(|i| i.object_key.clone())
            .chain(
                warm.images
                    .iter()
                    .chain(&cold.images)
                    .map(|i| i.object_key.clone()),
            )
            .collect();
        let stored = stored_encryption(&stack, &keys);
        assert_eq!(stored.len(), keys.len());
        for (key, (found, found_key)) in stored {
            assert_eq!(found.as_deref(), Some(sse), "{key}");
            if !kms_key.is_empty() {
                assert_eq!(found_key.as_deref(), Some(kms_key), "{key}");
            }
        }
        stack.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_static_keys_s3_credentials_come_from_web_identity() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let token = std::env::temp_dir().join(format!("prewarm-web-identity-{}", uuid::Uuid::new_v4()));
    std::fs::write(&token, "a-projected-service-account-token").unwrap();
    let token = token.to_string_lossy().to_string();
    let s3 = env_or("PREWARM_TEST_S3", "http://127.0.0.1:9000");
    let web_identity = [
        ("PREWARM_S3__ACCESS_KEY_ID", ""),
        ("PREWARM_S3__SECRET_ACCESS_KEY", ""),
        ("PREWARM_DATABASE__MIGRATE", "false"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/prewarm"),
        ("AWS_ROLE_SESSION_NAME", "prewarm-test"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()),
        // STS is the local S3-protocol server (moto answers STS too).
        ("AWS_ENDPOINT_URL_STS", s3.as_str()),
        ("AWS_REGION", "us-east-1"),
        // Never look for instance metadata (a link-local address).
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let (mut api, base) = stack.spawn_api_process(&web_identity);
    stack.wait_healthy(&base).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let metadata = serde_json::json!({
        "name": "Spring sale", "category": "poster",
        "layout": {"blocks": []}, "visibility": "private"
    });
    // An upload through the process: its S3 puts are signed with the role's
    // temporary credentials.
    let resp = stack
        .http
        .post(format!("{base}/templates"))
        .bearer_auth(&tenant.key)
        .multipart(prewarm_tests::template_form(2, &metadata))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let key = body["images"][0]["object_key"].as_str().unwrap();
    assert!(stack.objects.exists(key).await.unwrap());
    api.kill().unwrap();
    let _ = api.wait();

    // Without the role there are no credentials at all: the write fails.
    let no_role: Vec<(&str, &str)> = web_identity
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_ROLE_ARN"))
        .copied()
        .collect();
    let (mut api, base) = stack.spawn_api_process(&no_role);
    stack.wait_healthy(&base).await;
    let resp = stack
        .http
        .post(format!("{base}/templates"))
        .bearer_auth(&tenant.key)
        .multipart(prewarm_tests::template_form(2, &metadata))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    api.kill().unwrap();
    let _ = api.wait();
    let _ = std::fs::remove_file(&token);
    stack.finish().await;
}

/// The whole warm path, the refill, the shared cache tier and its
/// invalidation channel, against one Redis `url` (`ca` for TLS).
async fn everything_through_redis(url: &str, ca: &str) {
    let mut stack = TestStack::spawn(Options {
        env: vec![
            ("PREWARM_REDIS__URL".into(), url.into()),
            ("PREWARM_REDIS__CA_FILE".into(), ca.into()),
            // Rate limits on (never refusing): a request's buckets are one
            // script over three keys, which a Cluster runs only in one slot.
            ("PREWARM_RATE_LIMIT__ENABLED".into(), "true".into()),
            ("PREWARM_RATE_LIMIT__READ_BURST".into(), "100000".into()),
            (
                "PREWARM_RATE_LIMIT__CREATE_DESIGN_BURST".into(),
                "100000".into(),
            ),
            ("PREWARM_RATE_LIMIT__UPLOAD_BURST".into(), "100000".into()),
        ],
        recommender: Some(Default::default()),
        ..Options::default()
    })
    .await;
    let (status, body) = {
        let resp = stack
            .http
            .get(stack.ops_url("/readyz"))
            .send()
            .await
            .unwrap();
        (
            resp.status(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    let tenant = stack.create_tenant("acme", 100).await;
    let source = stack.create_template(&tenant, 2, "public").await;
    let similar_one = stack.create_template(&tenant, 1, "public").await;
    // Refill (the worker pushes) and warm claim (the API pops), through this Redis.
    stack
        .wait_pool(&tenant, source.id, 4, std::time::Duration::from_secs(30))
        .await;
    let design = stack.create_design(&tenant, source.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    // Every request so far was limited through this Redis, none in-process.
    assert_eq!(
        stack
            .metric("prewarm_degraded_total", &[("dependency", "redis")])
            .await,
        0.0,
        "the rate buckets fell back to in-process limits"
    );
    // The shared tier: a second replica's first read is answered from it.
    let first = stack.base.clone();
    let second = stack.spawn_second_api(&[]).await;
    assert_eq!(
        stack
            .similar_at(&first, &tenant, source.id, 1)
            .await
            .status(),
        200
    );
    let calls = stack.upstream_calls().await;
    let page: serde_json::Value = stack
        .similar_at(&second, &tenant, source.id, 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stack.upstream_calls().await,
        calls,
        "the shared tier answered"
    );
    assert!(
        page.to_string().contains(&similar_one.id.to_string()),
        "{page}"
    );
    // The channel: an edit through the first replica reaches the second.
    let resp = stack
        .http
        .delete(format!("{first}/templates/{}", similar_one.id))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page: serde_json::Value = stack
            .similar_at(&second, &tenant, source.id, 1)
            .await
            .json()
            .await
            .unwrap();
        if !page.to_string().contains(&similar_one.id.to_string()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second replica still shows the deleted template"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_an_acl_user() {
    let port = env_or("PREWARM_TEST_REDIS_TLS_PORT", "6380");
    everything_through_redis(
        &format!("rediss://prewarm:prewarm-secret@localhost:{port}"),
        &tls_file("ca.pem"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_with_three_primaries() {
    let port = env_or("PREWARM_TEST_REDIS_CLUSTER_PORT", "7000");
    everything_through_redis(&format!("redis-cluster://127.0.0.1:{port}"), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_with_the_ca_checked() {
    let brokers = env_or("PREWARM_TEST_KAFKA_TLS", "localhost:9093");
    let tls = |ca: &str| -> Vec<(String, String)> {
        [
            ("PREWARM_KAFKA__BROKERS", brokers.clone()),
            ("PREWARM_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "ssl".into()),
            ("PREWARM_KAFKA__PROPERTIES__SSL_CA_LOCATION", tls_file(ca)),
            (
                "PREWARM_KAFKA__PROPERTIES__SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
                "https".into(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    };
    // Only the consumer refills (no reconciler): a full pool means the
    // warm-up message went API -> broker -> worker over TLS.
    let stack = TestStack::spawn(Options {
        env: tls("ca.pem"),
        worker_env: vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(60))
        .await;
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(
        stack
            .metric(
                "prewarm_warmup_requests_total",
                &[("outcome", "undelivered")]
            )
            .await,
        0.0
    );
    // The same broker with a CA that did not sign its certificate: the
    // producer cannot deliver (the API still serves, by copy).
    let mut env = stack.env.clone();
    env.extend(tls("other-ca.pem"));
    env.push(("PREWARM_KAFKA__MESSAGE_TIMEOUT_MS".into(), "2000".into()));
    env.push(("PREWARM_KAFKA__CREATE_TOPIC".into(), "false".into()));
    let settings = template_api::settings::load_from(env.into_iter()).unwrap();
    let publisher = prewarm_store::warmup_topic::WarmupPublisher::new(&settings.kafka).unwrap();
    assert!(
        publisher
            .ping(std::time::Duration::from_secs(3))
            .await
            .is_err(),
        "a broker whose certificate the CA did not sign was accepted"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recommender_and_the_trace_collector_over_https() {
    use prewarm_tests::otlp::OtlpReceiver;
    use prewarm_tests::tls_relay::TlsRelay;
    let (cert, key) = (tls_file("server.pem"), tls_file("server.key"));
    let mut stack = TestStack::spawn(Options {
        recommender: Some(Default::default()),
        ..Options::default()
    })
    .await;
    let upstream = stack.recommender.as_ref().unwrap().url();
    let https = TlsRelay::start(upstream.trim_start_matches("http://"), &cert, &key).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let source = stack.create_template(&tenant, 1, "public").await;
    stack.create_template(&tenant, 1, "public").await;
    let https_url = format!("https://localhost:{}", https.port);
    // Trusting the test CA: answered over HTTPS.
    let trusting = stack
        .spawn_second_api(&[
            ("PREWARM_SIMILAR__UPSTREAM_URL", https_url.as_str()),
            ("PREWARM_SIMILAR__CA_FILE", tls_file("ca.pem").as_str()),
            // Every answer from the upstream itself, not from Redis.
            ("PREWARM_SIMILAR__SHARED_TIER", "false"),
        ])
        .await;
    let resp = stack.similar_at(&trusting, &tenant, source.id, 1).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // Trusting another CA only: the certificate is refused.
    let wary = stack
        .spawn_second_api(&[
            ("PREWARM_SIMILAR__UPSTREAM_URL", https_url.as_str()),
            (
                "PREWARM_SIMILAR__CA_FILE",
                tls_file("other-ca.pem").as_str(),
            ),
            ("PREWARM_SIMILAR__SHARED_TIER", "false"),
        ])
        .await;
    let (status, code) =
        prewarm_tests::error_code(stack.similar_at(&wary, &tenant, source.id, 1).await).await;
    assert_eq!(
        (status.as_u16(), code.as_str()),
        (503, "recommendations_unavailable")
    );

    // Spans reach a collector behind HTTPS (a child process: tracing is
    // set up once per process).
    let receiver = OtlpReceiver::start().unwrap();
    let collector =
        TlsRelay::start(receiver.url().trim_start_matches("http://"), &cert, &key).await;
    let endpoint = format!("https://localhost:{}", collector.port);
    let (mut api, base) = stack.spawn_api_process(&[
        ("PREWARM_DATABASE__MIGRATE", "false"),
        ("PREWARM_TRACE__OTLP_ENDPOINT", endpoint.as_str()),
        ("PREWARM_TRACE__CA_FILE", tls_file("ca.pem").as_str()),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let _ = stack
            .http
            .get(format!("{base}/templates/{}", source.id))
            .bearer_auth(&tenant.key)
            .send()
            .await;
        if receiver.spans().iter().any(|s| s.service == "template-api") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no span reached the HTTPS collector"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    api.kill().unwrap();
    let _ = api.wait();
    stack.finish().await;
}

fn pgbouncer() -> String {
    env_or(
        "PREWARM_TEST_PGBOUNCER",
        "postgres://postgres@127.0.0.1:6432",
    )
}

/// Every connection (API, worker, migrations, the test's own) goes through a
/// real PgBouncer in transaction mode: warm and cold designs, refills, an
/// edit; two worker replicas, exactly one running each background pass;
/// workers killed mid-refill, then healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_through_pgbouncer_in_transaction_mode() {
    use prewarm_store::pause::at;
    use prewarm_tests::invariants::check_designs;
    let stack = TestStack::spawn(Options {
        pg_server: Some(pgbouncer()),
        worker_env: vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(30))
        .await;
    let mut made = Vec::new();
    for _ in 0..6 {
        made.push(stack.create_design(&tenant, template.id).await);
    }
    assert!(made.iter().any(|d| d.served_from == ServedFrom::Pool));
    assert!(made.iter().any(|d| d.served_from == ServedFrom::Copy));
    let resp = stack
        .http
        .patch(stack.url(&format!("/templates/{}", template.id)))
        .bearer_auth(&tenant.key)
        .json(&serde_json::json!({ "layout": { "edited": true } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    made.push(stack.create_design(&tenant, template.id).await);

    // Two replicas: one holds the reconciler's lease while paused (on a
    // list one id short of the ledger, which it rebuilds); the other's pass
    // is skipped.
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(30))
        .await;
    let listed = stack
        .index
        .list(PoolKey::new(template.id, TemplateVersion(2)))
        .await
        .unwrap();
    stack
        .index
        .remove_ids(PoolKey::new(template.id, TemplateVersion(2)), &listed[..1])
        .await
        .unwrap();
    let (one, two) = (stack.reconciler(&[]).await, stack.reconciler(&[]).await);
    let mut gate = stack.pause.arm(at::REINDEX_READ);
    let first = tokio::spawn(async move { one.tick().await });
    gate.reached().await;
    assert!(
        two.tick().await.expect("tick").skipped,
        "two replicas ran the reconciler at once"
    );
    gate.release();
    assert!(!first.await.unwrap().expect("tick").skipped);

    // Worker processes killed mid-refill, then a healing pass (leases of 1 s).
    let worker_env = [
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "50"),
        ("PREWARM_POOL__LEASE_SECS", "1"),
        ("PREWARM_WORKER__SINGLETON_LEASE_SECS", "1"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ];
    for _ in 0..5 {
        made.push(stack.create_design(&tenant, template.id).await);
        let mut child = stack.spawn_worker_process(&worker_env);
        let delay = rand::Rng::random_range(&mut rand::rng(), 50..400);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let healer = stack
        .reconciler(&[
            ("PREWARM_POOL__LEASE_SECS", "1"),
            ("PREWARM_WORKER__GC_GRACE_SECS", "0"),
        ])
        .await;
    assert!(!healer.tick().await.expect("tick").skipped);
    healer.tick().await.expect("tick");
    healer.gc().await.expect("gc");
    stack
        .wait_pool(&tenant, template.id, 4, std::time::Duration::from_secs(30))
        .await;
    check_designs(&stack, tenant.id, &made).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_behind_a_sentinel() {
    let port = env_or("PREWARM_TEST_REDIS_SENTINEL_PORT", "26379");
    everything_through_redis(
        &format!("redis-sentinel://127.0.0.1:{port}/0?sentinelServiceName=prewarm"),
        "",
    )
    .await;
}
