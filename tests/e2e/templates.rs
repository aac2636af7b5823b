//! Templates: create, read, list, edit (version bump), replace images; and
//! freshness (I8): after an edit no design is made from the old version.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
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
    assert_eq!(template.version, TemplateVersion(1));
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
    assert_eq!(
        (renamed.version, renamed.name.as_str()),
        (TemplateVersion(1), "Renamed")
    );

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
    assert_eq!(edited.version, TemplateVersion(2));
    assert_eq!(edited.images.len(), 2);

    // The very next design is of version 2, whatever the old pool holds.
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.template_version, TemplateVersion(2));
    assert_eq!(design.images.len(), 2);

    // The pool of version 2 fills; version 1's items are discarded and their objects deleted.
    let status = stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(45))
        .await;
    assert_eq!(status.template_version, TemplateVersion(2));
    let warm = stack.create_design(&tenant, template.id).await;
    assert_eq!(
        (warm.served_from, warm.template_version),
        (ServedFrom::Pool, TemplateVersion(2))
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
    use prewarm_store::db::designs::{self, ColdOutcome, DesignSpec, WarmOutcome};
    use shared_domain::design::DesignImage;
    use shared_domain::ids::{DesignId, PoolItemId};

    let stack = TestStack::spawn(Options::without_worker()).await;
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
    let cold = designs::create_from_copies(&mut conn, &spec, &images, None)
        .await
        .unwrap();
    assert!(matches!(cold, ColdOutcome::TemplateChanged), "{cold:?}");
    let warm_spec = designs::WarmSpec {
        id: spec.id,
        company: spec.company,
        template: spec.template,
        template_version: spec.template_version,
    };
    let warm = designs::create_from_pool_item(&mut conn, &warm_spec, PoolItemId::new(), None)
        .await
        .unwrap();
    assert!(matches!(warm, WarmOutcome::TemplateChanged), "{warm:?}");
    // Through the API the request re-reads the template and succeeds on version 2.
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.template_version, TemplateVersion(2));
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
        let old = pool_items::counts(&mut conn, template.pool())
            .await
            .unwrap();
        let new = pool_items::counts(
            &mut conn,
            PoolKey::new(template.id, template.version.next()),
        )
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
/// not a new version (one that was would copy every image row and retire the
/// pool, 100 times a second at the read budget); a real change is, and once the
/// worker has refilled the new version, the older versions' image rows are
/// gone (a listing reads the current ones only) and a replaced image's
/// object is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_real_change_makes_a_version_and_old_versions_are_collected() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let same = template.layout.clone();
    for _ in 0..3 {
        let unchanged = patch_layout(&stack, &tenant, template.id, same.clone()).await;
        assert_eq!(
            unchanged.version,
            TemplateVersion(1),
            "an unchanged layout bumped the version"
        );
        assert_eq!(
            unchanged.updated_at, template.updated_at,
            "nothing was written"
        );
    }
    let v2 = patch_layout(&stack, &tenant, template.id, json!({"blocks": [1]})).await;
    assert_eq!(v2.version, TemplateVersion(2));
    let v3 = replace_images(&stack, &tenant, template.id).await;
    assert_eq!((v3.version, v3.images.len()), (TemplateVersion(3), 1));

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

/// Rows of `templates` a plan read: every scan node's rows out plus the
/// rows its filter removed.
fn template_rows_read(plan: &serde_json::Value) -> f64 {
    let own = if plan["Relation Name"] == "templates" {
        plan["Actual Rows"].as_f64().unwrap_or(0.0) * plan["Actual Loops"].as_f64().unwrap_or(1.0)
            + plan["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
    } else {
        0.0
    };
    own + plan["Plans"]
        .as_array()
        .map_or(0.0, |plans| plans.iter().map(template_rows_read).sum())
}

/// A listing costs its page, whatever other tenants hold: company A keeps
/// 2,000 private templates newer than anything B may see and 2,000 public
/// ones; B's first page reads about a page of rows (two index ranges read
/// newest first), where a single OR-filtered query would either walk A's
/// newer private rows or read every public one and sort them -- so one
/// tenant's catalogue would make every tenant's listing slower.
/// Planned as on a large table (no sequential scans).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reads_about_one_page_whatever_other_tenants_hold() {
    use diesel::sql_types::Uuid as SqlUuid;
    use diesel_async::RunQueryDsl;

    let stack = TestStack::spawn(Options::without_worker()).await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let public = stack.create_template(&a, 1, "public").await;
    let own = stack.create_template(&b, 1, "private").await;
    let mut conn = stack.db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO templates (id, owner_company_id, visibility, name, category, layout, version, created_at, updated_at)
         SELECT gen_random_uuid(), $1, CASE WHEN i % 2 = 0 THEN 'public' ELSE 'private' END,
                'n', 'c', '{}', 1,
                -- the private ones newer than anything B may see, the public older
                now() + CASE WHEN i % 2 = 0 THEN -1 ELSE 1 END * make_interval(secs => i), now()
           FROM generate_series(1, 4000) AS i",
    )
    .bind::<SqlUuid, _>(a.id.0)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE templates")
        .execute(&mut conn)
        .await
        .unwrap();

    let listed: serde_json::Value = stack.get(&b, "/templates").await.json().await.unwrap();
    let page = listed["templates"].as_array().unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[0]["id"], own.id.to_string());
    assert_eq!(page[1]["id"], public.id.to_string());
    assert!(
        page[1..].iter().all(|t| t["visibility"] == "public"),
        "another company's private template listed"
    );

    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan: String,
    }
    // The listing's statement with its values written in, explained.
    let mut sql = prewarm_store::db::templates::listing_sql(false);
    for (n, value) in [
        (7, "1048576".to_string()),
        (6, "0".to_string()),
        (5, "51".to_string()),
        (4, "51".to_string()),
        (3, format!("'{}'::uuid", uuid::Uuid::nil())),
        (2, "now()".to_string()),
        (1, format!("'{}'::uuid", b.id.0)),
    ] {
        sql = sql.replace(&format!("${n}"), &value);
    }
    for statement in [
        "SET enable_seqscan = off",
        "CREATE FUNCTION pg_temp.explain_json(q text) RETURNS json LANGUAGE plpgsql AS $f$
         DECLARE r json; BEGIN EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO r; RETURN r; END $f$",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let plan: Plan = diesel::sql_query("SELECT pg_temp.explain_json($1)::text AS plan")
        .bind::<diesel::sql_types::Text, _>(&sql)
        .get_result(&mut conn)
        .await
        .unwrap();
    let plan: serde_json::Value = serde_json::from_str(&plan.plan).unwrap();
    let read = template_rows_read(&plan[0]["Plan"]);
    assert!(
        read <= 60.0,
        "B's first page read {read} template rows: {}",
        serde_json::to_string_pretty(&plan).unwrap()
    );
    stack.finish().await;
}

/// A listing page is bounded in bytes, not only rows: company A's six
/// public templates with 240-KB layouts are listed to B five to a page
/// (a page ends once its layouts reach 1 MiB, its first always kept), the
/// rest behind the cursor -- where a 50-row page of them would be 14 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_page_ends_at_its_layout_bytes() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let blob = "x".repeat(240_000);
    let mut made = Vec::new();
    for i in 0..6 {
        let resp = stack
            .upload_template(
                &a,
                1,
                json!({"name": format!("big {i}"), "category": "c", "visibility": "public",
                       "layout": {"blob": blob}}),
            )
            .await;
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        made.push(resp.json::<serde_json::Value>().await.unwrap()["id"].clone());
    }
    let first = stack.get(&b, "/templates?limit=100").await;
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    let first_bytes = first.bytes().await.unwrap();
    assert!(
        first_bytes.len() < 1_300_000,
        "a page of {} bytes",
        first_bytes.len()
    );
    let first: serde_json::Value = serde_json::from_slice(&first_bytes).unwrap();
    let page = first["templates"].as_array().unwrap();
    assert_eq!(page.len(), 5, "five layouts start under 1 MiB");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let rest: serde_json::Value = stack
        .get(&b, &format!("/templates?limit=100&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(rest["next_cursor"].is_null(), "nothing after the sixth");
    let rest = rest["templates"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    let mut seen: Vec<serde_json::Value> =
        page.iter().chain(rest).map(|t| t["id"].clone()).collect();
    seen.reverse();
    assert_eq!(seen, made, "every template once, newest first");
    stack.finish().await;
}

/// A page's bytes count each template's images too: 40 public templates
/// with empty layouts and 200 images each (about 32 KB of JSON apiece) are
/// listed 33 to a page -- the templates started under 1 MiB -- where a
/// layout-only bound listed all 40 (1.3 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_page_counts_each_templates_images() {
    use diesel_async::RunQueryDsl;
    let stack = TestStack::spawn(Options::without_worker()).await;
    let a = stack.create_tenant("a", 10).await;
    let b = stack.create_tenant("b", 10).await;
    let mut conn = stack.db.conn().await.unwrap();
    diesel::sql_query(
        "WITH made AS (
           INSERT INTO templates (id, owner_company_id, visibility, name, category, layout, version, created_at, updated_at)
           SELECT gen_random_uuid(), $1, 'public', 'many', 'c', '{}', 1,
                  now() - make_interval(secs => i), now()
             FROM generate_series(1, 40) AS i
           RETURNING id)
         INSERT INTO template_images (template_id, version, position, object_key, content_type, size_bytes)
         SELECT made.id, 1, p, 'templates/' || made.id || '/' || p, 'image/png', 100
           FROM made, generate_series(0, 199) AS p",
    )
    .bind::<diesel::sql_types::Uuid, _>(a.id.0)
    .execute(&mut conn)
    .await
    .unwrap();
    let first = stack.get(&b, "/templates?limit=100").await;
    let first_bytes = first.bytes().await.unwrap();
    let first: serde_json::Value = serde_json::from_slice(&first_bytes).unwrap();
    let page = first["templates"].as_array().unwrap();
    assert_eq!(page.len(), 33, "a page of {} bytes", first_bytes.len());
    assert_eq!(page[0]["images"].as_array().unwrap().len(), 200);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let rest: serde_json::Value = stack
        .get(&b, &format!("/templates?limit=100&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["templates"].as_array().unwrap().len(), 7);
    assert!(rest["next_cursor"].is_null());
    stack.finish().await;
}

/// Old image rows go when the last copies of their version land, not only
/// at the next reserve: a template whose images were replaced while its
/// first items were still copying from them, and whose new pool then
/// filled (no reserve would come while it stays full), does not keep the
/// old images in S3 for as long as it lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_image_rows_go_when_the_last_copies_from_them_land() {
    use prewarm_store::db::pool_items;
    use shared_domain::pool::PoolLevels;
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    let mut conn = stack.db.conn().await.unwrap();
    let lease = std::time::Duration::from_secs(300);
    // Version 1's items are being copied...
    let v1 = pool_items::reserve(&mut conn, template.id, PoolLevels::at(2), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1.reserved.len(), 2);
    // ...when its images are replaced.
    replace_images(&stack, &tenant, template.id).await;
    // Version 2's refill cannot prune version 1's rows: copies use them.
    let v2 = pool_items::reserve(&mut conn, template.id, PoolLevels::at(2), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image_versions(&mut conn, template.id).await, vec![1, 2]);
    // Version 2's pool is full; then version 1's copies land.
    let ids = |r: &pool_items::Reservation| r.reserved.iter().map(|i| i.id).collect::<Vec<_>>();
    pool_items::mark_ready(&mut conn, v2.pool, &ids(&v2), 2)
        .await
        .unwrap();
    let (ready, discarded) = pool_items::mark_ready(&mut conn, v1.pool, &ids(&v1), 2)
        .await
        .unwrap();
    assert_eq!((ready.len(), discarded.len()), (0, 2), "superseded copies");
    assert_eq!(
        image_versions(&mut conn, template.id).await,
        vec![2],
        "version 1's rows outlived its last copies"
    );
    drop(conn);
    stack.finish().await;
}

/// The versions a template has image rows of.
async fn image_versions(
    conn: &mut diesel_async::AsyncPgConnection,
    template: shared_domain::ids::TemplateId,
) -> Vec<i32> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use prewarm_store::db::schema::template_images::dsl as ti;
    ti::template_images
        .filter(ti::template_id.eq(template.0))
        .select(ti::version)
        .distinct()
        .order(ti::version)
        .load::<i32>(conn)
        .await
        .unwrap()
}

/// `PUT /templates/{id}/images` with one new image: the template's next version.
async fn replace_images(
    stack: &TestStack,
    tenant: &prewarm_tests::Tenant,
    template: shared_domain::ids::TemplateId,
) -> Template {
    let resp = stack
        .http
        .put(stack.url(&format!("/templates/{template}/images")))
        .bearer_auth(&tenant.key)
        .multipart(Form::new().part("image", prewarm_tests::png_part(7, 300)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}
