//! Background work proportional to what changed (issue 15), on the real
//! stack: the reconciler checks the templates that changed plus a bounded
//! sweep page and resumes both; the garbage collector walks one listing page
//! at a time and resumes from the stored key, also from another replica;
//! idle templates shrink to the minimum and grow back on demand; a warm
//! design owns its item's objects without copying rows; a remembered
//! template version never yields a design of an old version or of a
//! template the company may not see.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use prewarm_tests::invariants::{check_designs, check_pool_list};
use prewarm_tests::{error_code, Options, TestStack};
use shared_domain::design::ServedFrom;
use shared_domain::ids::TemplateId;
use shared_domain::object_keys::POOL_PREFIX;

const FILL: Duration = Duration::from_secs(30);

/// A stack whose worker only consumes warm-up messages (no reconciler, no
/// GC): the test drives the passes.
pub(crate) fn quiet(pool_target: i32, worker: bool) -> Options {
    Options {
        pool_target,
        worker,
        worker_env: vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "0".into())],
        ..Options::default()
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(stack: &TestStack, sql: &str) -> i64 {
    let mut conn = stack.db.conn().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

/// Ready items of `template`'s current version, from the ledger.
async fn ready(stack: &TestStack, template: TemplateId) -> i64 {
    let mut conn = stack.db.conn().await.unwrap();
    let row = prewarm_store::db::templates::find_row(&mut conn, template)
        .await
        .unwrap()
        .unwrap();
    prewarm_store::db::pool_items::counts(&mut conn, row.pool())
        .await
        .unwrap()
        .0
}

/// `(template, ready, goal)` rows of a depth pass, sorted.
fn depth_rows(report: &warmup_worker::depths::DepthReport) -> Vec<(String, i64, i64)> {
    let mut rows = report.rows.clone();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_depth_metrics_read_the_changed_the_depleted_and_a_sweep_page() {
    let stack = TestStack::spawn(quiet(2, false)).await;
    let (tenant, mut templates) = stack.tenant_with_templates("acme", 3, 1).await;
    templates.sort_by_key(|t| t.0);
    let name = |i: usize| templates[i].to_string();
    let depths = stack
        .depths(&[
            ("PREWARM_WORKER__RECONCILE_SWEEP", "2"),
            ("PREWARM_WORKER__METRICS_TEMPLATES", "1"),
        ])
        .await;
    // Created before the pass began watching: only the sweep finds them,
    // one page of 2 at a time; both are empty, so both are kept.
    let first = depths.pass().await.unwrap();
    assert_eq!(first.checked, 2, "{first:?}");
    assert_eq!(depth_rows(&first), vec![(name(0), 0, 2), (name(1), 0, 2)]);
    assert_eq!(first.total, 0);

    let mut reconciler = stack.reconciler(&[]).await;
    reconciler.commit_lag = Duration::ZERO;
    reconciler.tick().await.unwrap();
    // The two depleted ones are checked again (now full), with the sweep's
    // next page (the third); of the settled, only the latest
    // `metrics_templates` = 1 is kept... all three were seen together, so
    // the tie goes to the lowest id.
    let second = depths.pass().await.unwrap();
    assert_eq!(second.checked, 3, "{second:?}");
    assert_eq!(depth_rows(&second), vec![(name(0), 2, 2)]);
    assert_eq!(second.total, 6);

    // A warm design (nobody refills): the change stream brings the template
    // in, below target, and it stays known while it is.
    let design = stack.create_design(&tenant, templates[2]).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let third = depths.pass().await.unwrap();
    assert!(depth_rows(&third).contains(&(name(2), 1, 2)), "{third:?}");
    assert_eq!(third.total, 5);
    let fourth = depths.pass().await.unwrap();
    assert!(depth_rows(&fourth).contains(&(name(2), 1, 2)), "{fourth:?}");

    // Refilled: checked again as a depleted one, and settled.
    reconciler.tick().await.unwrap();
    let fifth = depths.pass().await.unwrap();
    assert!(
        depth_rows(&fifth)
            .iter()
            .all(|(_, ready, goal)| ready >= goal),
        "{fifth:?}"
    );
    assert_eq!(fifth.total, 6);
    check_designs(&stack, tenant.id, &[design]).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_checks_what_changed_and_a_bounded_sweep_page() {
    // No worker: only the reconciler fills pools, so a refill it makes is
    // one it found.
    let stack = TestStack::spawn(quiet(2, false)).await;
    let (tenant, templates) = stack.tenant_with_templates("acme", 5, 1).await;
    let mut reconciler = stack
        .reconciler(&[("PREWARM_WORKER__RECONCILE_SWEEP", "2")])
        .await;
    // Changes are read up to the clock (no allowance for late commits), so
    // each pass sees what the test just did.
    reconciler.commit_lag = Duration::ZERO;
    // First pass: Redis was never built from the ledger, so every template
    // is checked (the change watermark starts now: what came before is the
    // rebuild's).
    let first = reconciler.tick().await.unwrap();
    assert!(first.rebuilt, "{first:?}");
    assert_eq!((first.changed, first.refilled), (0, 5), "{first:?}");
    for t in &templates {
        assert_eq!(ready(&stack, *t).await, 2);
        check_pool_list(&stack, *t, true).await;
    }

    // Quiet passes: nothing changed, one sweep page of 2 each, resumed where
    // the last stopped: 2 + 2 + 1 covers the five, then it wraps.
    let mut swept = Vec::new();
    for _ in 0..4 {
        let pass = reconciler.tick().await.unwrap();
        assert_eq!(pass.changed, 0, "{pass:?}");
        assert_eq!((pass.refilled, pass.reindexed), (0, 0), "{pass:?}");
        assert!(!pass.rebuilt);
        swept.push(pass.templates);
    }
    assert_eq!(swept, vec![2, 2, 1, 2], "sweep pages");

    // A warm design (no worker consumes its warm-up message): the template
    // changed, so the very next pass refills it -- whichever page the
    // sweep is on.
    let design = stack.create_design(&tenant, templates[3]).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let pass = reconciler.tick().await.unwrap();
    assert_eq!((pass.changed, pass.refilled), (1, 1), "{pass:?}");
    assert_eq!(ready(&stack, templates[3]).await, 2);

    // An id gone from a list with no ledger change (a request that popped it
    // and died): no change records it, the sweep finds it within a cycle.
    let listed = stack
        .index
        .list(PoolKey::new(templates[0], TemplateVersion(1)))
        .await
        .unwrap();
    stack
        .index
        .remove_ids(PoolKey::new(templates[0], TemplateVersion(1)), &listed[..1])
        .await
        .unwrap();
    let mut healed = false;
    for _ in 0..3 {
        let pass = reconciler.tick().await.unwrap();
        if pass.reindexed == 1 {
            healed = true;
            break;
        }
    }
    assert!(healed, "the sweep never rebuilt the list");
    check_pool_list(&stack, templates[0], true).await;

    // A new reconciler (a restart) resumes the watermark: nothing to redo.
    let restarted = stack.reconciler(&[]).await;
    let pass = restarted.tick().await.unwrap();
    assert_eq!((pass.changed, pass.refilled), (0, 0), "{pass:?}");
    check_designs(&stack, tenant.id, &[design]).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gc_walks_one_page_at_a_time_and_resumes_on_another_replica() {
    let stack = TestStack::spawn(quiet(1, true)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack.wait_pool(&tenant, template.id, 1, FILL).await;
    let design = stack.create_design(&tenant, template.id).await;
    // Seven objects nobody references, among the live ones.
    let mut garbage = Vec::new();
    for i in 0..7 {
        let key = format!("{POOL_PREFIX}{}/00/orphan-{i}/0000", template.id);
        stack
            .objects
            .put(&key, bytes::Bytes::from_static(b"x"), "image/png")
            .await
            .unwrap();
        garbage.push(key);
    }
    let settings = [
        ("PREWARM_WORKER__GC_GRACE_SECS", "0"),
        ("PREWARM_WORKER__GC_PAGES_PER_PASS", "1"),
    ];
    let mut one = stack.reconciler(&settings).await;
    let mut two = stack.reconciler(&settings).await;
    one.gc_page = 3;
    two.gc_page = 3;
    // Alternate replicas: each pass lists one page of 3 and the next pass,
    // on the other replica, resumes after it.
    let mut passes = 0;
    let mut deleted = 0;
    loop {
        let gc = if passes % 2 == 0 { &one } else { &two };
        let report = gc.gc().await.unwrap();
        passes += 1;
        assert!(
            report.scanned <= 3,
            "a pass held more than a page: {report:?}"
        );
        assert_eq!(report.pages, 1);
        deleted += report.deleted;
        if report.finished {
            break;
        }
        assert!(passes < 50, "the GC never finished a cycle");
    }
    assert_eq!(deleted, 7, "every orphan, once");
    // pool/ holds 7 orphans + the design's 2 + the ready item's 2 (a few
    // pages), then designs/ and templates/ one page each at least.
    assert!(passes >= 6, "{passes} passes");
    let left: HashSet<String> = stack
        .objects
        .list(&format!("{POOL_PREFIX}{}/", template.id))
        .await
        .unwrap()
        .into_iter()
        .collect();
    for key in &garbage {
        assert!(!left.contains(key), "{key} survived");
    }
    check_designs(&stack, tenant.id, &[design]).await;
    check_pool_list(&stack, template.id, true).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_templates_keep_the_minimum_and_grow_back_on_demand() {
    let env = [
        ("PREWARM_POOL__IDLE_SECS", "6"),
        ("PREWARM_POOL__MIN", "1"),
        ("PREWARM_POOL__SIZING_INTERVAL_MS", "200"),
    ];
    let stack = TestStack::spawn(Options {
        pool_target: 3,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        worker_env: vec![("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "300".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let used = stack.create_template(&tenant, 2, "private").await.id;
    let unused = stack.create_template(&tenant, 2, "private").await.id;
    // Young templates count as in demand: the fixed target.
    stack.wait_pool(&tenant, used, 3, FILL).await;
    stack.wait_pool(&tenant, unused, 3, FILL).await;
    let mut designs = vec![stack.create_design(&tenant, used).await];
    stack.wait_pool(&tenant, used, 3, FILL).await;
    // Six seconds without a design: both keep only the minimum, and the
    // retired items' objects are deleted.
    stack.wait_pool(&tenant, unused, 1, FILL).await;
    stack.wait_pool(&tenant, used, 1, FILL).await;
    let deadline = Instant::now() + FILL;
    loop {
        let objects = stack
            .objects
            .list(&format!("{POOL_PREFIX}{unused}/"))
            .await
            .unwrap();
        if objects.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{} objects left", objects.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Demand again: back to the fixed target.
    designs.push(stack.create_design(&tenant, unused).await);
    stack.wait_pool(&tenant, unused, 3, FILL).await;
    check_designs(&stack, tenant.id, &designs).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_design_owns_its_items_objects_without_copying_rows() {
    let stack = TestStack::spawn(quiet(1, true)).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 5, "private").await;
    stack.wait_pool(&tenant, template.id, 1, FILL).await;
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let item = design.pool_item_id.unwrap();
    assert_eq!(design.images.len(), 5);
    assert_eq!(
        count(
            &stack,
            &format!(
                "SELECT count(*) AS n FROM design_images WHERE design_id = '{}'",
                design.id
            )
        )
        .await,
        0,
        "a warm design writes no image rows"
    );
    check_designs(&stack, tenant.id, std::slice::from_ref(&design)).await;
    assert_eq!(
        count(
            &stack,
            &format!(
                "SELECT count(*) AS n FROM pool_items WHERE id = '{item}' AND image_count = 5"
            )
        )
        .await,
        1,
        "the item's row holds its image count (positions 0 to 4); its keys follow the key scheme"
    );
    let expected = shared_domain::object_keys::pool_images(template.id, item, 5);
    let keys: Vec<String> = design.images.iter().map(|i| i.object_key.clone()).collect();
    assert_eq!(keys, expected, "a warm design's keys are its item's");
    // The GC keeps a design's objects (its item's, named by their keys).
    let gc = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    gc.gc().await.unwrap();
    check_designs(&stack, tenant.id, std::slice::from_ref(&design)).await;
    // Deleting the design deletes its objects and its item.
    let resp = stack
        .http
        .delete(stack.url(&format!("/designs/{}", design.id)))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    for image in &design.images {
        assert!(!stack.objects.exists(&image.object_key).await.unwrap());
    }
    assert_eq!(
        count(
            &stack,
            &format!("SELECT count(*) AS n FROM pool_items WHERE id = '{item}'")
        )
        .await,
        0
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_version_never_makes_an_old_or_hidden_design() {
    let stack = TestStack::spawn(quiet(2, true)).await;
    let owner = stack.create_tenant("owner", 100).await;
    let other = stack.create_tenant("other", 100).await;
    let template = stack.create_template(&owner, 1, "private").await;
    stack.wait_pool(&owner, template.id, 2, FILL).await;
    // The API remembers version 1 from this design.
    let first = stack.create_design(&owner, template.id).await;
    stack.wait_pool(&owner, template.id, 2, FILL).await;

    // Another company: a 404, and the item it popped is listed again.
    let (status, code) = error_code(stack.post_design(&other, template.id).await).await;
    assert_eq!(
        (status.as_u16(), code.as_str()),
        (404, "template_not_found")
    );
    stack.wait_pool(&owner, template.id, 2, FILL).await;

    // The version moves on behind the API's back (no invalidation message):
    // the claim refuses the remembered version, the API reads the template
    // again and makes a design of version 2.
    {
        let mut conn = stack.db.conn().await.unwrap();
        diesel::sql_query(format!(
            "INSERT INTO template_images (template_id, version, position, object_key, content_type, size_bytes)
             SELECT template_id, 2, position, object_key, content_type, size_bytes
               FROM template_images WHERE template_id = '{}' AND version = 1",
            template.id
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        diesel::sql_query(format!(
            "UPDATE templates SET version = 2, updated_at = now() WHERE id = '{}'",
            template.id
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let second = stack.create_design(&owner, template.id).await;
    assert_eq!(second.template_version, TemplateVersion(2), "{second:?}");
    check_designs(&stack, owner.id, &[first, second]).await;
    stack.finish().await;
}
