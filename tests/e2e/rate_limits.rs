//! Rate limits: token buckets per API key and per client address, shared by
//! the replicas through Redis, with in-process buckets while Redis is down;
//! failed authentications limited per address. Every limited answer carries
//! `RateLimit-*` headers; a 429 `Retry-After`.

use prewarm_tests::relay::TcpRelay;
use prewarm_tests::{Options, Tenant, TestStack};
use reqwest::StatusCode;
use serde_json::Value;

fn limited(read_burst: u32) -> Vec<(String, String)> {
    [
        ("PREWARM_RATE_LIMIT__ENABLED", "true".to_string()),
        // One token back every 20 s: a burst test sees no refill.
        ("PREWARM_RATE_LIMIT__READ_PER_SEC", "0.05".into()),
        ("PREWARM_RATE_LIMIT__READ_BURST", read_burst.to_string()),
        // Both tenants come from 127.0.0.1: the address budget stays out of the way.
        ("PREWARM_RATE_LIMIT__ADDRESS_FACTOR", "100".into()),
        ("PREWARM_RATE_LIMIT__FAILED_AUTH_PER_MIN", "1".into()),
        ("PREWARM_RATE_LIMIT__FAILED_AUTH_BURST", "3".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn header(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()[name].to_str().unwrap().parse().unwrap()
}

async fn list(stack: &TestStack, base: &str, tenant: &Tenant) -> reqwest::Response {
    stack
        .http
        .get(format!("{base}/designs"))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_limit_gets_429s_across_two_replicas_and_spares_other_tenants() {
    let mut stack = TestStack::spawn(Options {
        worker: false,
        env: limited(6),
        ..Options::default()
    })
    .await;
    let second = stack.spawn_second_api(&[]).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let other = stack.create_tenant("globex", 10).await;
    let mut remaining = Vec::new();
    let mut refused = 0;
    for i in 0..10 {
        // Alternate replicas: they share one bucket per key.
        let base = if i % 2 == 0 {
            stack.base.clone()
        } else {
            second.clone()
        };
        let resp = list(&stack, &base, &tenant).await;
        assert_eq!(header(&resp, "ratelimit-limit"), 6);
        match resp.status() {
            StatusCode::OK => remaining.push(header(&resp, "ratelimit-remaining")),
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert_eq!(header(&resp, "ratelimit-remaining"), 0);
                let retry = header(&resp, "retry-after");
                assert!((1..=20).contains(&retry), "retry-after {retry}");
                let reset = header(&resp, "ratelimit-reset");
                assert!((100..=120).contains(&reset), "reset {reset}");
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        remaining,
        vec![5, 4, 3, 2, 1, 0],
        "one bucket across replicas"
    );
    assert_eq!(refused, 4);
    // Another tenant has its own budget.
    let theirs = list(&stack, &second, &other).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    assert_eq!(header(&theirs, "ratelimit-remaining"), 5);
    // Health and metrics are never limited.
    assert_eq!(
        stack
            .http
            .get(stack.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        stack
            .metric("prewarm_rate_limited_total", &[("class", "read")])
            .await
            >= 2.0
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_limited_per_address() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: limited(100),
        ..Options::default()
    })
    .await;
    stack.wait_subscribed(1).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let newcomer = stack.create_tenant("initech", 10).await;
    // Known valid on this replica (cached) before the guessing starts.
    assert_eq!(
        list(&stack, &stack.base, &tenant).await.status(),
        StatusCode::OK
    );
    // A missing header is not a guess: it spends nothing.
    for _ in 0..5 {
        let resp = stack.http.get(stack.url("/designs")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let guess = |n: u32| Tenant {
        id: tenant.id,
        key: format!("pw_guess{n}"),
    };
    for n in 0..3 {
        let resp = list(&stack, &stack.base, &guess(n)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // The address used its failed-authentication budget: the next guess is
    // refused before it is checked, and so is a key this replica has not
    // seen valid yet; a key it knows valid keeps working.
    let resp = list(&stack, &stack.base, &guess(9)).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&resp, "retry-after") >= 1);
    let resp = list(&stack, &stack.base, &newcomer).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let resp = list(&stack, &stack.base, &tenant).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a known key is not locked out"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_replica_limits_on_its_own() {
    let redis = TcpRelay::start("127.0.0.1:6379").await;
    let mut env = limited(4);
    env.push((
        "PREWARM_REDIS__URL".into(),
        format!("redis://127.0.0.1:{}", redis.port),
    ));
    env.push(("PREWARM_REDIS__COMMAND_TIMEOUT_MS".into(), "200".into()));
    let stack = TestStack::spawn(Options {
        worker: false,
        env,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 10).await;
    assert_eq!(
        list(&stack, &stack.base, &tenant).await.status(),
        StatusCode::OK
    );
    let degraded_before = stack
        .metric("prewarm_degraded_total", &[("dependency", "redis")])
        .await;
    redis.stall();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(list(&stack, &stack.base, &tenant).await.status().as_u16());
    }
    // The in-process bucket starts full: 4 pass, then 429s -- never a 5xx.
    assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    // Only the first request waited for the stalled Redis (its three
    // buckets); the others went straight to the in-process ones.
    let degraded = stack
        .metric("prewarm_degraded_total", &[("dependency", "redis")])
        .await
        - degraded_before;
    assert!(
        degraded <= 3.0,
        "Redis was asked {degraded} times while backing off"
    );
    stack.finish().await;
}

/// A limit is checked on the request as the router reads it: `/%64esigns`
/// reaches `POST /designs` and spends its bucket (it was classed as a read
/// by its raw bytes), and an edit spends the write budget, not the reads'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oddly_encoded_path_spends_the_budget_of_the_route_it_reaches() {
    let mut env = limited(100);
    env.extend([
        (
            "PREWARM_RATE_LIMIT__CREATE_DESIGN_PER_SEC".into(),
            "0.05".into(),
        ),
        ("PREWARM_RATE_LIMIT__CREATE_DESIGN_BURST".into(), "2".into()),
        ("PREWARM_RATE_LIMIT__WRITE_PER_SEC".into(), "0.05".into()),
        ("PREWARM_RATE_LIMIT__WRITE_BURST".into(), "2".into()),
    ]);
    let stack = TestStack::spawn(Options {
        worker: false,
        env,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 10).await;
    let missing = uuid::Uuid::new_v4();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = stack
            .http
            .post(format!("{}/%64esigns", stack.base))
            .bearer_auth(&tenant.key)
            .json(&serde_json::json!({"template_id": missing}))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "ratelimit-limit"), 2);
        statuses.push(resp.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = stack
            .http
            .patch(format!("{}/templates/{missing}", stack.base))
            .bearer_auth(&tenant.key)
            .json(&serde_json::json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    stack.finish().await;
}

/// `POST /admin/companies` with `token` as the admin token.
async fn create_company(stack: &TestStack, token: &str) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/admin/companies", stack.base))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "x", "design_limit": 1}))
        .send()
        .await
        .unwrap()
}

/// Guesses at the admin token spend the address's failed-authentication
/// bucket like guesses at an API key: the fourth is refused unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guesses_are_limited_per_address() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: limited(100),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let resp = create_company(&stack, &format!("guess-{i}")).await;
        statuses.push(resp.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    stack.finish().await;
}

/// Guesses sent at once cannot all pass a bucket that only finished 401s
/// would empty: an admin request spends a failed-authentication token
/// before its token is checked (given back unless refused). Of 20
/// concurrent guesses against a burst of 3, at most 3 are checked; valid
/// admin requests, given their token back, never drain the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admin_guesses_spend_the_bucket_before_they_are_checked() {
    let stack = TestStack::spawn(Options {
        worker: false,
        env: limited(100),
        ..Options::default()
    })
    .await;
    for _ in 0..5 {
        let resp = create_company(&stack, &stack.admin_token).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "a valid admin call");
    }
    let guesses: Vec<String> = (0..20).map(|i| format!("guess-{i}")).collect();
    let statuses: Vec<StatusCode> =
        futures::future::join_all(guesses.iter().map(|token| create_company(&stack, token)))
            .await
            .into_iter()
            .map(|r| r.status())
            .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, 20, "{statuses:?}");
    assert!(checked <= 3, "{checked} guesses were checked: {statuses:?}");
    stack.finish().await;
}

/// A valid admin request spends nothing of the failed-authentication
/// bucket: four admin calls in flight at once (held up in Postgres by a
/// table lock the test holds) all succeed against a burst of 3, one more
/// whose client goes away before the answer costs nothing either, and the
/// address still has all 3 of its guesses. (When each admin request spent
/// a token ahead and got it back at the end, the fourth concurrent valid
/// call got 429.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_admin_requests_at_once_never_spend_the_failed_auth_bucket() {
    use diesel_async::RunQueryDsl;
    use tokio::io::AsyncWriteExt;
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let stack = TestStack::spawn(Options {
        worker: false,
        env: limited(100),
        ..Options::default()
    })
    .await;
    let waiting = || async {
        let mut conn = stack.db.conn().await.unwrap();
        let w: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
              WHERE c.relname = 'companies' AND NOT l.granted",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        w.n
    };
    // Every company insert waits on this lock until the test lets go.
    let mut holder = stack.db.conn().await.unwrap();
    for statement in ["BEGIN", "LOCK TABLE companies IN EXCLUSIVE MODE"] {
        diesel::sql_query(statement)
            .execute(&mut holder)
            .await
            .unwrap();
    }
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let (http, url, token) = (
                stack.http.clone(),
                stack.url("/admin/companies"),
                stack.admin_token.clone(),
            );
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({"name": format!("held-{i}"), "design_limit": 1}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let addr = stack.base.trim_start_matches("http://").to_string();
    for i in 0..1 {
        let body = format!("{{\"name\":\"dropped-{i}\",\"design_limit\":1}}");
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "POST /admin/companies HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            stack.admin_token,
            body.len()
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(socket);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while waiting().await < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let held = waiting().await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    drop(holder);
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "valid admin calls at once ({held} inserts held): {statuses:?}"
    );
    while waiting().await > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for i in 0..3 {
        let resp = create_company(&stack, &format!("guess-{i}")).await;
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "guess {i}: valid admin requests spent the bucket"
        );
    }
    let resp = create_company(&stack, "guess-3").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    stack.finish().await;
}

/// A key refused by its own budget spends nothing of its address's, so it
/// cannot crowd out the address's other keys: with a key budget of 2 and an
/// address budget of 3 for `POST /designs`, a key that keeps going after
/// its 2 leaves another key from the same address the third; only then is
/// the address refused. (The three buckets are decided in one Redis
/// script: the address's is spent only when the other two allow.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refused_by_its_own_budget_spends_nothing_of_its_addresss() {
    let env = [
        ("PREWARM_RATE_LIMIT__ENABLED", "true"),
        ("PREWARM_RATE_LIMIT__CREATE_DESIGN_PER_SEC", "0.01"),
        ("PREWARM_RATE_LIMIT__CREATE_DESIGN_BURST", "2"),
        ("PREWARM_RATE_LIMIT__ADDRESS_FACTOR", "1.5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let stack = TestStack::spawn(Options {
        worker: false,
        env,
        ..Options::default()
    })
    .await;
    let noisy = stack.create_tenant("noisy", 10).await;
    let quiet = stack.create_tenant("quiet", 10).await;
    // A template nobody has: each allowed request is a 404, after the limits.
    let missing = shared_domain::ids::TemplateId::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(stack.post_design(&noisy, missing).await.status());
    }
    assert_eq!(
        &statuses[..2],
        [StatusCode::NOT_FOUND, StatusCode::NOT_FOUND]
    );
    assert!(
        statuses[2..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let first = stack.post_design(&quiet, missing).await;
    assert_eq!(
        first.status(),
        StatusCode::NOT_FOUND,
        "the noisy key's refused requests spent the address's budget"
    );
    let second = stack.post_design(&quiet, missing).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = second.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("from this address"), "{body}");
    stack.finish().await;
}
