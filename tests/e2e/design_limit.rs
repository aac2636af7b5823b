//! The company's plan limit, on both paths.

use prewarm_tests::{error_code, Options, TestStack};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_design_past_the_limit_is_refused_and_creates_nothing_cold() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("small", 2).await;
    let template = stack.create_template(&tenant, 4, "private").await;
    stack.create_design(&tenant, template.id).await;
    stack.create_design(&tenant, template.id).await;

    let (status, code) = error_code(stack.post_design(&tenant, template.id).await).await;
    assert_eq!(status, 409);
    assert_eq!(code, "design_limit_reached");

    let list: serde_json::Value = stack.get(&tenant, "/designs").await.json().await.unwrap();
    assert_eq!(list["designs"].as_array().unwrap().len(), 2);
    // No orphan copies: exactly the two designs' objects exist under designs/.
    let keys = stack.objects.list("designs/").await.unwrap();
    assert_eq!(keys.len(), 2 * 4, "{keys:?}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_design_past_the_limit_is_refused_on_the_warm_path_and_the_item_stays() {
    let stack = TestStack::spawn(Options::default()).await;
    let tenant = stack.create_tenant("small", 1).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(45))
        .await;
    stack.create_design(&tenant, template.id).await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(45))
        .await;

    let (status, code) = error_code(stack.post_design(&tenant, template.id).await).await;
    assert_eq!(status, 409);
    assert_eq!(code, "design_limit_reached");
    // The popped item went back: the pool is still full and nothing was
    // used -- once the id popped ahead for a next design is listed again
    // (`serving.prefetch_hold_ms`, 500 ms).
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(3))
        .await;
    let list: serde_json::Value = stack.get(&tenant, "/designs").await.json().await.unwrap();
    assert_eq!(list["designs"].as_array().unwrap().len(), 1);
    stack.finish().await;
}
