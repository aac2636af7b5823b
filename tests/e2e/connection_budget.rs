//! The API's Postgres connections stay within `database.max_connections`
//! although every actix worker has a pool of its own (so that a request's
//! round trips run on the thread that serves it): half the budget is the
//! process-wide pool, the other half is split between the workers.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures::future::join_all;
use prewarm_tests::{Options, TestStack};
use reqwest::StatusCode;

const APP: &str = "prewarm-budget-test";

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Backends the API process under test holds open now.
async fn backends(stack: &TestStack) -> i64 {
    let mut conn = stack.db.conn().await.unwrap();
    diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1")
        .bind::<diesel::sql_types::Text, _>(APP)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_two_workers_never_opens_more_than_the_connection_budget() {
    // No pool: every design is copied, and holds a connection for each of
    // its statements.
    let stack = TestStack::spawn(Options {
        worker: false,
        pool_target: 0,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 1_000).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    let url = stack
        .env
        .iter()
        .find(|(k, _)| k == "PREWARM_DATABASE__URL")
        .map(|(_, v)| v.clone())
        .expect("the stack's database URL");
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}application_name={APP}");
    let (_api, base) = stack.spawn_api_process(&[
        ("PREWARM_DATABASE__URL", &url),
        ("PREWARM_DATABASE__MAX_CONNECTIONS", "4"),
        ("PREWARM_SERVER__WORKERS", "2"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ]);
    stack.wait_healthy(&base).await;

    let (done, most) = (AtomicBool::new(false), AtomicI64::new(0));
    let watch = async {
        while !AtomicBool::load(&done, Ordering::Relaxed) {
            AtomicI64::fetch_max(&most, backends(&stack).await, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let burst = async {
        let posts = (0..40).map(|_| {
            stack
                .http
                .post(format!("{base}/designs"))
                .bearer_auth(&tenant.key)
                .json(&serde_json::json!({ "template_id": template.id }))
                .send()
        });
        let answers = join_all(posts).await;
        done.store(true, Ordering::Relaxed);
        answers
    };
    let (answers, ()) = tokio::join!(burst, watch);
    for answer in answers {
        assert_eq!(answer.unwrap().status(), StatusCode::CREATED);
    }
    let most = AtomicI64::load(&most, Ordering::Relaxed);
    // Both workers' pools were in use at once, and never more than 4 in all.
    assert!((2..=4).contains(&most), "{most} backends at most");
    stack.finish().await;
}
