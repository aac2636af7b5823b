//! Reliability: the pool heals without messages (I6), after a Redis flush
//! (I7), after a request died between pop and claim (I4), and across worker
//! crashes at random points (I1-I3, I5); the GC collects what crashes leave (I3).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use prewarm_store::db::{designs, pool_items};
use prewarm_tests::{error_code, Options, TestStack};
use rand::Rng;
use reqwest::StatusCode;
use shared_domain::object_keys::{DESIGNS_PREFIX, POOL_PREFIX};
use shared_domain::template::Template;

const INTERVAL_MS: &str = "500";

fn reconciling(extra: &[(&str, &str)]) -> Options {
    let mut worker_env = vec![(
        "PREWARM_WORKER__RECONCILE_INTERVAL_MS".to_string(),
        INTERVAL_MS.to_string(),
    )];
    worker_env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Options {
        worker_env,
        ..Options::default()
    }
}

/// Every object under the pool and design prefixes is referenced by a design
/// or a live item, every referenced object exists, and no key is in two designs.
async fn assert_no_leak_and_no_sharing(stack: &TestStack) {
    let mut conn = stack.db.conn().await.unwrap();
    let design_keys = designs::all_object_keys(&mut conn).await.unwrap();
    let live_keys = pool_items::live_object_keys(&mut conn).await.unwrap();
    let unique: HashSet<&String> = design_keys.iter().collect();
    assert_eq!(
        unique.len(),
        design_keys.len(),
        "an object is in two designs"
    );
    let referenced: HashSet<String> = design_keys.iter().chain(&live_keys).cloned().collect();
    let mut stored = stack.objects.list(POOL_PREFIX).await.unwrap();
    stored.extend(stack.objects.list(DESIGNS_PREFIX).await.unwrap());
    let stored: HashSet<String> = stored.into_iter().collect();
    let leaked: Vec<_> = stored.difference(&referenced).collect();
    assert!(
        leaked.is_empty(),
        "{} unreferenced objects, e.g. {:?}",
        leaked.len(),
        leaked.first()
    );
    let missing: Vec<_> = design_keys
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "designs reference missing objects: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_fill_without_any_warmup_message() {
    // The worker listens on a topic nobody publishes to: only the reconciler acts.
    let stack = TestStack::spawn(reconciling(&[(
        "PREWARM_KAFKA__TOPIC",
        "prewarm.nobody-publishes-here",
    )]))
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    let started = Instant::now();
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(3))
        .await;
    let first = started.elapsed();
    for _ in 0..3 {
        stack.create_design(&tenant, template.id).await;
    }
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(3))
        .await;
    eprintln!("filled without messages in {first:?}");
    stack.finish().await;
}

/// A template deleted where no message and no change window sees it (here:
/// the row marked deleted, dated an hour back, no warm-up message) still
/// has its ready items discarded, by the rolling sweep: nothing keeps
/// objects, or budget, for a template no design can use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_template_every_message_missed_is_retired_by_the_sweep() {
    use diesel_async::RunQueryDsl;
    let stack = TestStack::spawn(reconciling(&[])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    let prefix = format!("{POOL_PREFIX}{}/", template.id);
    assert_eq!(stack.objects.list(&prefix).await.unwrap().len(), 8);
    let mut conn = stack.db.conn().await.unwrap();
    diesel::sql_query(
        "UPDATE templates SET deleted_at = now(), version = version + 1,
                updated_at = now() - interval '1 hour' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(template.id.0)
    .execute(&mut conn)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        let (ready, copying) = pool_items::counts(&mut conn, template.pool())
            .await
            .unwrap();
        if ready + copying == 0 || Instant::now() > deadline {
            break ready + copying;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(live, 0, "a deleted template's items still live");
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stack.objects.list(&prefix).await.unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stack.objects.list(&prefix).await.unwrap(),
        Vec::<String>::new()
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_flush_mid_load_heals_within_an_interval_without_5xx() {
    let stack = TestStack::spawn(reconciling(&[])).await;
    let tenant = stack.create_tenant("acme", 1000).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;

    let mut statuses = Vec::new();
    let load_until = Instant::now() + Duration::from_secs(3);
    let mut flushed = false;
    while Instant::now() < load_until {
        let resp = stack.post_design(&tenant, template.id).await;
        statuses.push(resp.status().as_u16());
        if !flushed && statuses.len() >= 5 && stack.index.len(template.pool()).await.unwrap() > 0 {
            let deleted = stack.index.clear_prefix().await.unwrap();
            assert!(deleted > 0, "nothing to flush");
            flushed = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(flushed, "the pool list never existed to be flushed");
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let healed = Instant::now();
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(3))
        .await;
    eprintln!(
        "{} requests, healed {:?} after the load",
        statuses.len(),
        healed.elapsed()
    );
    assert_no_leak_and_no_sharing(&stack).await;
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_popped_by_a_request_that_died_is_indexed_again() {
    // A popped id stays out of its list for `redis.pop_memory_ms` (so no
    // rebuild relists an id a live request is claiming); then it is back.
    let stack = TestStack::spawn(reconciling(&[("PREWARM_REDIS__POP_MEMORY_MS", "1000")])).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    // A request popped this id, then its process died before the claim.
    let lost = stack.index.pop(template.pool()).await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = stack.index.list(template.pool()).await.unwrap();
        if listed.contains(&lost) {
            assert_eq!(listed.len(), 4);
            break;
        }
        assert!(Instant::now() < deadline, "item {lost} never re-indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it is usable.
    let mut conn = stack.db.conn().await.unwrap();
    assert_eq!(
        pool_items::total_reserved(&mut conn, template.id)
            .await
            .unwrap(),
        4,
        "no copy was made for it"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_only_unreferenced_objects_past_the_grace_period() {
    let stack = TestStack::spawn(Options::default()).await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    stack.create_design(&tenant, template.id).await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;
    // Debris of crashes: copies never recorded anywhere, an image of an
    // upload whose process died before saving it.
    for key in [
        "pool/crashed/item/0000",
        "designs/never-committed/0000",
        "templates/never-saved/0000",
    ] {
        stack
            .objects
            .put(key, bytes::Bytes::from_static(b"x"), "image/png")
            .await
            .unwrap();
    }
    let patient = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "3600")])
        .await;
    let report = patient.gc().await.unwrap();
    assert_eq!(
        report.deleted, 0,
        "young objects are within the grace period"
    );

    let eager = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    let report = eager.gc().await.unwrap();
    assert_eq!(report.deleted, 3, "{report:?}");
    // The live template's images stay.
    for image in &template.images {
        stack.objects.get(&image.object_key).await.unwrap();
    }
    assert_no_leak_and_no_sharing(&stack).await;
    stack.finish().await;
}

/// A garbage key the store refuses to delete (a bucket policy protecting
/// it; its batch refused whole) is left and counted, and the collector goes
/// on past it: the keys after it on its page and the pages after it are
/// still collected, pass after pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_goes_on_past_a_key_the_store_refuses_to_delete() {
    use prewarm_testkit::fault_proxy::{FaultProxy, Faults};
    let proxy = FaultProxy::start(0, "http://127.0.0.1:9000", Faults::default()).unwrap();
    let stack = TestStack::spawn(Options::without_worker()).await;
    let keys = [
        "pool/a-protected/item/0000",
        "pool/b-crashed/item/0000",
        "designs/never-committed/0000",
    ];
    for key in keys {
        stack
            .objects
            .put(key, bytes::Bytes::from_static(b"x"), "image/png")
            .await
            .unwrap();
    }
    proxy.set(Faults {
        protect: Some("protected".into()),
        ..Faults::default()
    });
    let gc = stack
        .reconciler(&[
            ("PREWARM_WORKER__GC_GRACE_SECS", "0"),
            ("PREWARM_S3__ENDPOINT", &proxy.url()),
        ])
        .await;
    for pass in 0..2 {
        let report = gc.gc().await.unwrap();
        let expected = if pass == 0 { 2 } else { 0 };
        assert_eq!(
            (report.deleted, report.undeletable, report.finished),
            (expected, 1, true),
            "pass {pass}: {report:?}"
        );
    }
    assert_eq!(
        stack.objects.list(POOL_PREFIX).await.unwrap(),
        vec![keys[0].to_string()]
    );
    assert!(stack.objects.list(DESIGNS_PREFIX).await.unwrap().is_empty());
    // Unprotected, it goes at the next pass.
    proxy.set(Faults::default());
    let report = gc.gc().await.unwrap();
    assert_eq!((report.deleted, report.undeletable), (1, 0), "{report:?}");
    proxy.stop().await;
    stack.finish().await;
}

/// `POST /templates` of one image, sent from a task of its own.
fn upload_in_background(
    stack: &TestStack,
    tenant: &prewarm_tests::Tenant,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let (http, url, key) = (
        stack.http.clone(),
        stack.url("/templates"),
        tenant.key.clone(),
    );
    tokio::spawn(async move {
        let form = prewarm_tests::template_form(1, &serde_json::json!({"name": "t"}));
        http.post(url)
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    })
}

/// An upload's image is in S3 before its template is saved: the garbage
/// collector (grace 0) runs right then and must keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_takes_an_uploaded_image_before_its_template_is_saved() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let mut gate = stack.pause.arm(prewarm_store::pause::at::UPLOAD_STORED);
    let upload = upload_in_background(&stack, &tenant);
    gate.reached().await;
    let stored = stack.objects.list("templates/").await.unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the image is in S3, no template holds it yet"
    );
    let eager = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    let report = eager.gc().await.unwrap();
    assert_eq!(report.deleted, 0, "an announced upload is kept: {report:?}");
    gate.release();
    let resp = upload.await.unwrap();
    assert_eq!(resp.status(), 201);
    let template: Template = resp.json().await.unwrap();
    assert_eq!(template.images[0].object_key, stored[0]);
    // Saved: the template holds it now, its announcement is gone.
    assert_eq!(eager.gc().await.unwrap().deleted, 0);
    stack.objects.get(&stored[0]).await.unwrap();
    stack.finish().await;
}

/// sled-style crash test: the real worker binary is killed with SIGKILL at a
/// random point of its refills, 50 times; then the reconciler (leases
/// shortened) and the GC (grace 0) run, and the invariants are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_at_random_points_loses_and_leaks_nothing() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10_000).await;
    let mut templates = Vec::new();
    for _ in 0..3 {
        templates.push(stack.create_template(&tenant, 4, "private").await);
    }
    // Leases of 1 s: items and background passes a killed worker held are
    // free again a second after the last kill.
    let worker_env = [
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "50"),
        ("PREWARM_POOL__LEASE_SECS", "1"),
        ("PREWARM_WORKER__SINGLETON_LEASE_SECS", "1"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ];
    let cycles = 50;
    let mut designs_made = 0;
    for cycle in 0..cycles {
        // Open a gap: take a design from each template (warm if the pool has one).
        for t in &templates {
            stack.create_design(&tenant, t.id).await;
            designs_made += 1;
        }
        let mut child = stack.spawn_worker_process(&worker_env);
        let delay = rand::rng().random_range(20..400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().expect("SIGKILL the worker");
        child.wait().expect("reap the worker");
        if cycle % 10 == 9 {
            eprintln!("crash cycle {} done", cycle + 1);
        }
    }

    // Let every lease expire, then heal and collect.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reconciler = stack
        .reconciler(&[
            ("PREWARM_POOL__LEASE_SECS", "1"),
            ("PREWARM_WORKER__GC_GRACE_SECS", "0"),
        ])
        .await;
    let tick = reconciler.tick().await.unwrap();
    assert!(
        !tick.skipped,
        "a killed worker's lease outlived its time to live"
    );
    eprintln!("after {cycles} kills: {tick:?}");
    // A second pass re-indexes what the first one's refills made ready.
    reconciler.tick().await.unwrap();
    let gc = reconciler.gc().await.unwrap();
    eprintln!("gc: {gc:?}");

    for t in &templates {
        let status = stack.pool_status(&tenant, t.id).await;
        assert_eq!(
            (status.ready, status.copying, status.indexed),
            (4, 0, 4),
            "{status:?}"
        );
    }
    let list: serde_json::Value = stack
        .get(&tenant, "/designs?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["designs"].as_array().unwrap().len(),
        designs_made.min(100)
    );
    assert_no_leak_and_no_sharing(&stack).await;
    stack.finish().await;
}

/// The API is killed with SIGKILL in the middle of a burst of design
/// requests, 5 times. Afterwards every 201 has its design and objects, no
/// pool item was used twice, and items popped by the dead process are listed
/// again (I1, I2, I4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_killed_mid_burst_loses_no_design_and_uses_no_item_twice() {
    let stack = TestStack::spawn(reconciling(&[("PREWARM_REDIS__POP_MEMORY_MS", "1000")])).await;
    let tenant = stack.create_tenant("acme", 10_000).await;
    let template = stack.create_template(&tenant, 3, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;

    let mut created: Vec<shared_domain::design::Design> = Vec::new();
    let mut answered = 0;
    for round in 0..5 {
        // Cold copies a killed process announced expire after the lease.
        let (mut api, base) = stack.spawn_api_process(&[
            ("PREWARM_DATABASE__MIGRATE", "false"),
            ("PREWARM_POOL__LEASE_SECS", "2"),
        ]);
        let ready = Instant::now();
        while stack
            .http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                ready.elapsed() < Duration::from_secs(20),
                "api process did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Four clients send designs back to back until the process dies under them.
        let burst: Vec<_> = (0..4)
            .map(|_| {
                let http = stack.http.clone();
                let url = format!("{base}/designs");
                let key = tenant.key.clone();
                let body = serde_json::json!({ "template_id": template.id });
                tokio::spawn(async move {
                    let mut designs = Vec::new();
                    let mut cut = 0;
                    loop {
                        match http.post(&url).bearer_auth(&key).json(&body).send().await {
                            Ok(resp) if resp.status().as_u16() == 201 => match resp.json().await {
                                Ok(design) => designs.push(design),
                                Err(_) => {
                                    cut += 1;
                                    break;
                                }
                            },
                            Ok(resp) => panic!("unexpected status {}", resp.status()),
                            Err(_) => {
                                cut += 1;
                                break;
                            }
                        }
                    }
                    (designs, cut)
                })
            })
            .collect();
        let kill_after = rand::rng().random_range(100..400);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        api.kill().expect("SIGKILL the api");
        api.wait().expect("reap the api");
        for client in burst {
            let (designs, cut): (Vec<shared_domain::design::Design>, usize) =
                client.await.expect("client task");
            created.extend(designs);
            answered += cut;
        }
        eprintln!(
            "round {round}: killed after {kill_after} ms; {} designs so far",
            created.len()
        );
    }
    // Every 201 answer has its committed design, readable with its objects.
    for design in &created {
        let resp = stack.get(&tenant, &format!("/designs/{}", design.id)).await;
        assert_eq!(
            resp.status(),
            200,
            "design {} answered 201 but is missing",
            design.id
        );
        for img in &design.images {
            assert!(stack.objects.exists(&img.object_key).await.unwrap());
        }
    }
    // No item twice: each design's item is distinct (also a unique constraint).
    let items: HashSet<_> = created.iter().filter_map(|d| d.pool_item_id).collect();
    assert_eq!(
        items.len(),
        created.iter().filter(|d| d.pool_item_id.is_some()).count()
    );
    // Popped-but-unclaimed items are listed again; the pool is whole.
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(10))
        .await;
    eprintln!(
        "{} designs (201) and {answered} requests cut by the kills, across 5 kills",
        created.len()
    );
    assert!(
        created.len() >= 5,
        "too few designs to mean anything: {}",
        created.len()
    );
    // The announcements of cold copies the kills cut short expire (lease
    // 2 s); then the GC takes their objects.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_no_leak_after_gc(&stack).await;
    stack.finish().await;
}

/// Runs the GC with no grace, then checks for leaks and sharing.
async fn assert_no_leak_after_gc(stack: &TestStack) {
    let gc = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    let report = gc.gc().await.unwrap();
    eprintln!("gc: {report:?}");
    assert_no_leak_and_no_sharing(stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_that_keeps_failing_is_dead_lettered_with_its_reason() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};

    let stack = TestStack::spawn(Options {
        worker_env: vec![("PREWARM_WORKER__REFILL_ATTEMPTS".into(), "2".into())],
        ..Options::default()
    })
    .await;
    let tenant = stack.create_tenant("acme", 100).await;
    let template = stack.create_template(&tenant, 2, "private").await;
    stack
        .wait_pool(&tenant, template.id, 4, Duration::from_secs(30))
        .await;

    // Break the template: its source objects vanish, so every copy fails.
    let sources: Vec<String> = template
        .images
        .iter()
        .map(|i| i.object_key.clone())
        .collect();
    stack.objects.delete_many(&sources).await.unwrap();
    let design = stack.create_design(&tenant, template.id).await;
    assert_eq!(design.served_from, shared_domain::design::ServedFrom::Pool);

    let topic = stack
        .env
        .iter()
        .find(|(k, _)| k == "PREWARM_KAFKA__TOPIC")
        .unwrap()
        .1
        .clone();
    let brokers = stack
        .env
        .iter()
        .find(|(k, _)| k == "PREWARM_KAFKA__BROKERS")
        .unwrap()
        .1
        .clone();
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("dlq-reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[format!("{topic}.dead-letter").as_str()])
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("a dead letter within 60 s")
        .unwrap();
    assert_eq!(msg.key(), Some(template.id.to_string().as_bytes()));
    let headers = msg.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(header("attempts").as_deref(), Some("2"));
    let reason = header("reason").unwrap_or_default();
    assert!(reason.contains("copy"), "reason: {reason}");
    // The failed item was discarded: the pool holds what it had, not more.
    // A reconciler or sizer pass may be topping the broken pool up at this
    // very moment (its item copying, about to fail and be discarded too):
    // the ready count never moves, and nothing stays copying.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = stack.pool_status(&tenant, template.id).await;
        assert_eq!(status.ready, 3, "{status:?}");
        if status.copying == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an item stayed copying: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.finish().await;
}

/// Duplicate delivery across several consumers and a forced rebalance: three
/// worker processes share the consumer group (no reconciler: only Kafka drives
/// them), 30 duplicate warm-up requests per template arrive while designs are
/// taken, and one worker leaves mid-run (SIGTERM: the group rebalances). No
/// pool ever exceeds its target, and every copy is accounted for: items
/// reserved = ready + used + discarded, and S3 holds exactly the objects of
/// the ready and used items once the GC ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_across_consumers_and_a_rebalance_never_overfill() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10_000).await;
    let mut templates = Vec::new();
    for _ in 0..3 {
        templates.push(stack.create_template(&tenant, 2, "private").await);
    }
    let no_reconciler = [
        ("PREWARM_WORKER__RECONCILE_INTERVAL_MS", "0"),
        ("PREWARM_DATABASE__MIGRATE", "false"),
    ];
    let mut workers: Vec<prewarm_tests::Process> = (0..3)
        .map(|_| stack.spawn_worker_process(&no_reconciler))
        .collect();
    for t in &templates {
        stack
            .wait_pool(&tenant, t.id, 4, Duration::from_secs(60))
            .await;
    }

    let mut designs = 0;
    for round in 0..6 {
        for t in &templates {
            for _ in 0..5 {
                let msg = shared_domain::warmup::WarmupRequest::new(
                    t.pool(),
                    shared_domain::warmup::Reason::PoolPop,
                    0,
                );
                assert!(stack.publisher.publish(&msg));
            }
            stack.create_design(&tenant, t.id).await;
            designs += 1;
        }
        if round == 2 {
            // One consumer leaves: its partitions move to the others.
            let leaving = workers.remove(0);
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &leaving.id().to_string()])
                .status();
            let mut leaving = leaving;
            let _ = leaving.wait();
        }
        for t in &templates {
            let status = stack.pool_status(&tenant, t.id).await;
            assert!(status.ready + status.copying <= 4, "{status:?}");
            assert!(status.indexed <= 4, "{status:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in &templates {
        stack
            .wait_pool(&tenant, t.id, 4, Duration::from_secs(60))
            .await;
    }
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_no_leak_after_gc(&stack).await;

    // Copies accounting, per template: every reserved item is ready, used by
    // exactly one design, or discarded -- and only ready and used items still
    // have objects in S3.
    let list: serde_json::Value = stack
        .get(&tenant, "/designs?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let mut conn = stack.db.conn().await.unwrap();
    for t in &templates {
        let reserved = pool_items::total_reserved(&mut conn, t.id).await.unwrap();
        let by_state = pool_items::state_counts(&mut conn, t.id).await.unwrap();
        let count = |s: &str| by_state.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let (ready, used, discarded, copying) = (
            count("ready"),
            count("used"),
            count("discarded"),
            count("copying"),
        );
        assert_eq!(copying, 0);
        assert_eq!(reserved, ready + used + discarded);
        let warm_designs = list["designs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["template_id"] == serde_json::json!(t.id) && d["served_from"] == "pool")
            .count() as i64;
        assert_eq!(
            used, warm_designs,
            "pool items used != designs served from the pool"
        );
        let objects = stack
            .objects
            .list(&format!("{POOL_PREFIX}{}/", t.id))
            .await
            .unwrap()
            .len() as i64;
        assert_eq!(
            objects,
            (ready + used) * 2,
            "pool objects are exactly those of ready and used items"
        );
        eprintln!("template {}: reserved {reserved} = ready {ready} + used {used} + discarded {discarded}; objects {objects}", t.id);
    }
    eprintln!("{designs} designs with 30 duplicate requests per template and one consumer leaving");
    stack.finish().await;
}

/// I1/I3 for uploads: an upload's image announcement expires (a body slower
/// than the announcement's life) and the garbage collector takes the image
/// before the template is saved. The save takes the announcements over in
/// its transaction and refuses (408): no template points at a missing image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_whose_upload_outlived_its_announcement_is_not_saved() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let tenant = stack.create_tenant("acme", 10).await;
    let mut gate = stack.pause.arm(prewarm_store::pause::at::UPLOAD_STORED);
    let upload = upload_in_background(&stack, &tenant);
    gate.reached().await;
    {
        use diesel_async::RunQueryDsl;
        let mut conn = stack.db.conn().await.unwrap();
        diesel::sql_query("UPDATE pending_copies SET expires_at = now() - interval '1 second'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let eager = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    let report = eager.gc().await.unwrap();
    assert_eq!(
        report.deleted, 1,
        "the expired image was collected: {report:?}"
    );
    gate.release();
    let resp = upload.await.unwrap();
    assert_eq!(
        error_code(resp).await,
        (StatusCode::REQUEST_TIMEOUT, "request_timeout".to_string())
    );
    let listed: serde_json::Value = stack.get(&tenant, "/templates").await.json().await.unwrap();
    assert_eq!(listed["templates"], serde_json::json!([]), "{listed}");
    stack.finish().await;
}

/// A process killed mid-upload leaves an incomplete multipart upload: its
/// parts are billed and no object listing shows them. The GC aborts those
/// begun longer ago than `worker.gc_multipart_age_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_aborts_multipart_uploads_a_crash_left_incomplete() {
    let stack = TestStack::spawn(Options::without_worker()).await;
    let mut upload = stack.objects.upload("templates/crashed/image", "image/png");
    upload
        .write(&vec![7u8; prewarm_store::object_upload::PART_BYTES])
        .await
        .unwrap();
    // The process dies: nothing completes or aborts it.
    std::mem::forget(upload);
    assert_eq!(
        stack.objects.incomplete_uploads(100).await.unwrap().len(),
        1
    );

    // (The age rule itself is `reconciler::tests::only_uploads_older_than_the_age_are_aborted`:
    // moto answers every upload's `Initiated` as 2010-11-10, so here each one is old.)
    let eager = stack
        .reconciler(&[("PREWARM_WORKER__GC_MULTIPART_AGE_SECS", "0")])
        .await;
    let report = eager.gc().await.unwrap();
    assert_eq!(report.aborted_uploads, 1, "{report:?}");
    let left = stack.objects.incomplete_uploads(100).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    stack.finish().await;
}
