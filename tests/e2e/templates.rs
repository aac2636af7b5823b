//! Templates: create, read, list, edit (version bump), replace images; and
//! freshness (I8): after an edit no design is made from the old version.

use std::time::Duration;

use prewarm_tests::{Options, TestStack};
use reqwest::multipart::{Form, Part};
use serde_json::json;
use shared_domain::design::ServedFrom;
use shared_domain::template::Template;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_bump_the_version_and_designs_follow_the_new_one() {
    let stack = TestStack::spawn(Options::default()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    assert_eq!(template.version, 1);
    assert_eq!(template.images.len(), 3);
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(45))
        .await;

    // A rename is not a new version.
    let resp = stack
        .http
        .patch(stack.url(&format!("/templates/{}", template.id)))
        .bearer_auth(&tenant.key)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let renamed: Template = resp.json().await.unwrap();
    assert_eq!((renamed.version, renamed.name.as_str()), (1, "Renamed"));

    // New images are.
    let mut form = Form::new();
    for i in 10..12 {
        form = form.part(
            "image",
            Part::bytes(prewarm_tests::images::png(i, 300))
                .file_name("n.png")
                .mime_str("image/png")
                .unwrap(),
        );
    }
    let resp = stack
        .http
        .put(stack.url(&format!("/templates/{}/images", template.id)))
        .bearer_auth(&tenant.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let edited: Template = resp.json().await.unwrap();
    assert_eq!(edited.version, 2);
    assert_eq!(edited.images.len(), 2);

    // The very next design is of version 2, whatever the old pool holds.
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.template_version, 2);
    assert_eq!(design.images.len(), 2);

    // The pool of version 2 fills; version 1's items are discarded and their objects deleted.
    let status = stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(45))
        .await;
    assert_eq!(status.template_version, 2);
    let warm = stack.create_design(&tenant, template.id).await;
    assert_eq!(
        (warm.served_from, warm.template_version),
        (ServedFrom::Pool, 2)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pool_keys = stack
            .objects
            .list(&format!("pool/{}/", template.id))
            .await
            .unwrap();
        // Live v2 items (4 x 2 images) plus the warm design's 2 objects, nothing of v1.
        if pool_keys.len() == 4 * 2 + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "v1 pool objects not deleted: {}",
            pool_keys.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Lists show the template once, at its current version.
    let list: serde_json::Value = stack.get(&tenant, "/templates").await.json().await.unwrap();
    let templates = list["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0]["version"], 2);
    assert_eq!(templates[0]["images"].as_array().unwrap().len(), 2);
    stack.finish().await;
}
