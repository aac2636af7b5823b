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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_design_is_never_recorded_for_a_version_older_than_a_committed_edit() {
    use prewarm_store::db::designs::{self, CreateOutcome, DesignSpec};
    use shared_domain::design::DesignImage;
    use shared_domain::ids::{DesignId, PoolItemId};

    let stack = TestStack::spawn(Options {
        worker: false,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 1, "private").await;
    let spec = DesignSpec {
        id: DesignId::new(),
        company: tenant.id,
        template: template.id,
        template_version: template.version,
        layout: json!({}),
    };
    // An edit commits after the request read version 1 ...
    let resp = stack
        .http
        .patch(stack.url(&format!("/templates/{}", template.id)))
        .bearer_auth(&tenant.key)
        .json(&json!({"layout": {"v": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // ... so neither path may record a design of version 1.
    let mut conn = stack.db.conn().await.unwrap();
    let images = [DesignImage {
        position: 0,
        object_key: format!("designs/{}/0000", spec.id),
        url: None,
    }];
    let cold = designs::create_from_copies(&mut conn, &spec, &images, None, &Default::default())
        .await
        .unwrap();
    assert!(matches!(cold, CreateOutcome::TemplateChanged), "{cold:?}");
    let warm_spec = designs::WarmSpec {
        id: spec.id,
        company: spec.company,
        template: spec.template,
        template_version: spec.template_version,
    };
    let warm = designs::create_from_pool_item(&mut conn, &warm_spec, PoolItemId::new(), None)
        .await
        .unwrap();
    assert!(matches!(warm, CreateOutcome::TemplateChanged), "{warm:?}");
    // Through the API the request re-reads the template and succeeds on version 2.
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.template_version, 2);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_template_hides_it_retires_its_pool_and_deletes_its_images() {
    use prewarm_store::db::pool_items;

    let stack = TestStack::spawn(Options::default()).await;
    let owner = stack.create_tenant("owner", 100).await;
    let other = stack.create_tenant("other", 100).await;
    let template = stack.create_template(&owner, 2, "public").await;
    stack
        .wait_pool(&owner, template.id, 4, Duration::from_secs(45))
        .await;
    let design = stack.create_design(&owner, template.id).await;

    let delete = |tenant: &prewarm_tests::Tenant| {
        stack
            .http
            .delete(stack.url(&format!("/templates/{}", template.id)))
            .bearer_auth(&tenant.key)
            .send()
    };
    let (status, code) = prewarm_tests::error_code(delete(&other).await.unwrap()).await;
    assert_eq!((status.as_u16(), code.as_str()), (403, "forbidden"));
    assert_eq!(delete(&owner).await.unwrap().status(), 204);
    let (status, code) = prewarm_tests::error_code(delete(&owner).await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), code.as_str()),
        (404, "template_not_found")
    );

    for tenant in [&owner, &other] {
        let resp = stack
            .get(tenant, &format!("/templates/{}", template.id))
            .await;
        assert_eq!(resp.status(), 404);
        let resp = stack.post_design(tenant, template.id).await;
        assert_eq!(
            prewarm_tests::error_code(resp).await.1,
            "template_not_found"
        );
        let list: serde_json::Value = stack.get(tenant, "/templates").await.json().await.unwrap();
        assert_eq!(list["templates"].as_array().unwrap().len(), 0);
    }
    // Its images are gone from S3; the design made before keeps its own copies.
    for img in &template.images {
        assert!(!stack.objects.exists(&img.object_key).await.unwrap());
    }
    for img in &design.images {
        assert!(stack.objects.exists(&img.object_key).await.unwrap());
    }
    // Its pool is retired: no ready or copying item of any version remains.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = stack.db.conn().await.unwrap();
        let old = pool_items::counts(&mut conn, template.id, template.version)
            .await
            .unwrap();
        let new = pool_items::counts(&mut conn, template.id, template.version + 1)
            .await
            .unwrap();
        if (old, new) == ((0, 0), (0, 0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pool not retired: {old:?} {new:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.finish().await;
}

async fn patch_layout(
    stack: &TestStack,
    tenant: &prewarm_tests::Tenant,
    id: shared_domain::ids::TemplateId,
    layout: serde_json::Value,
) -> Template {
    let resp = stack
        .http
        .patch(stack.url(&format!("/templates/{id}")))
        .bearer_auth(&tenant.key)
        .json(&json!({ "layout": layout }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Version churn: a patch that sets the layout the template already has is
/// not a new version (it used to copy every image row and retire the pool,
/// 100 times a second at the read budget); a real change is, and once the
/// worker has refilled the new version, the older versions' image rows are
/// gone (a listing reads the current ones only) and a replaced image's
/// object is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_real_change_makes_a_version_and_old_versions_are_collected() {
    let stack = TestStack::spawn(Options {
        worker: false,
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let same = template.layout.clone();
    for _ in 0..3 {
        let unchanged = patch_layout(&stack, &tenant, template.id, same.clone()).await;
        assert_eq!(
            unchanged.version, 1,
            "an unchanged layout bumped the version"
        );
        assert_eq!(
            unchanged.updated_at, template.updated_at,
            "nothing was written"
        );
    }
    let v2 = patch_layout(&stack, &tenant, template.id, json!({"blocks": [1]})).await;
    assert_eq!(v2.version, 2);
    let resp = stack
        .http
        .put(stack.url(&format!("/templates/{}/images", template.id)))
        .bearer_auth(&tenant.key)
        .multipart(Form::new().part("image", prewarm_tests::png_part(7, 300)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v3: Template = resp.json().await.unwrap();
    assert_eq!((v3.version, v3.images.len()), (3, 1));

    let reconciler = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    reconciler
        .refiller
        .refill(template.id)
        .await
        .expect("refill");
    let rows: Vec<(i32, i64)> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use prewarm_store::db::schema::template_images::dsl as ti;
        let mut conn = stack.db.conn().await.unwrap();
        ti::template_images
            .filter(ti::template_id.eq(template.id.0))
            .group_by(ti::version)
            .select((ti::version, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(rows, vec![(3, 1)], "older versions' rows remain");
    let report = reconciler.gc().await.expect("gc");
    assert_eq!(report.deleted, 2, "the two replaced images: {report:?}");
    let stored = stack
        .objects
        .list(&format!("templates/{}/", template.id))
        .await
        .unwrap();
    assert_eq!(stored, vec![v3.images[0].object_key.clone()]);
    let list: serde_json::Value = stack.get(&tenant, "/templates").await.json().await.unwrap();
    assert_eq!(list["templates"][0]["images"].as_array().unwrap().len(), 1);
    stack.finish().await;
}
