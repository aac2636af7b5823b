//! Every response carries `X-Request-Id` (the caller's if sane, else a new
//! one), error bodies quote it, and a 5xx body says which dependency failed
//! and nothing more: the details go to the log under that id.

use prewarm_tests::relay::TcpRelay;
use prewarm_tests::{Options, TestStack};
use serde_json::Value;

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_echoes_a_sane_one() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let made = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    let id = request_id(&made);
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let echoed = stack
        .http
        .get(stack.url("/healthz"))
        .header("X-Request-Id", "client-7.abc_1")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&echoed), "client-7.abc_1");
    let replaced = stack
        .http
        .get(stack.url("/healthz"))
        .header("X-Request-Id", "no spaces, please")
        .send()
        .await
        .unwrap();
    assert_ne!(request_id(&replaced), "no spaces, please");
    // An error body quotes the same id.
    let missing = stack
        .http
        .get(stack.url("/templates"))
        .header("X-Request-Id", "trace-me")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-me", "{body}");
    stack.finish().await;
}

/// The body of a 5xx: the stable code, the generic message, the request id,
/// and none of the internal words given.
async fn assert_opaque(resp: reqwest::Response, code: &str, internals: &[&str]) {
    assert_eq!(resp.status().as_u16() / 100, 5, "{}", resp.status());
    let id = request_id(&resp);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], code, "{text}");
    assert_eq!(body["error"]["request_id"], id.as_str(), "{text}");
    for word in internals {
        assert!(!text.contains(word), "a 5xx body leaks {word:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_s3_failures_are_opaque_to_the_client() {
    let pg = TcpRelay::start("127.0.0.1:5432").await;
    let s3 = TcpRelay::start("127.0.0.1:9000").await;
    let stack = TestStack::spawn(Options {
        worker: false,
        pg_server: Some(format!("postgres://postgres@127.0.0.1:{}", pg.port)),
        env: vec![
            (
                "PREWARM_S3__ENDPOINT".into(),
                format!("http://127.0.0.1:{}", s3.port),
            ),
            ("PREWARM_S3__MAX_ATTEMPTS".into(), "1".into()),
            ("PREWARM_SERVING__FROM_POOL".into(), "false".into()),
        ],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;

    // S3 gone: a design (copied on the spot) fails with the store's code only.
    s3.cut();
    let resp = stack.post_design(&tenant, template.id).await;
    let s3_port = s3.port.to_string();
    assert_opaque(
        resp,
        "object_store_unavailable",
        &[
            "designs/",
            "templates/",
            "127.0.0.1",
            &s3_port,
            "copy",
            "dispatch",
        ],
    )
    .await;

    // Postgres gone: the database's code only.
    pg.cut();
    let resp = stack.get(&tenant, "/designs").await;
    let pg_port = pg.port.to_string();
    assert_opaque(
        resp,
        "storage_unavailable",
        &[
            "Postgres",
            "127.0.0.1",
            &pg_port,
            "connection",
            "prewarm_test_",
        ],
    )
    .await;
    stack.finish().await;
}

/// An unknown API key is remembered as such: trying it again costs no
/// database query (it is refused even with the database gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_costs_no_database_query_when_tried_again() {
    let pg = TcpRelay::start("127.0.0.1:5432").await;
    let stack = TestStack::spawn(Options {
        worker: false,
        pg_server: Some(format!("postgres://postgres@127.0.0.1:{}", pg.port)),
        ..Options::default()
    })
    .await;
    let attempt = || {
        stack
            .http
            .get(stack.url("/templates"))
            .bearer_auth("pw_made_up_key")
            .send()
    };
    let first = attempt().await.unwrap();
    assert_eq!(first.status(), 401);
    pg.cut();
    let again = attempt().await.unwrap();
    assert_eq!(again.status(), 401, "the unknown key cost a database query");
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_auth");
    stack.finish().await;
}
