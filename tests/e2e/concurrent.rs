//! Every background mechanism at once, in tight loops, while clients claim
//! designs: GC with no grace period, reconciler passes (lease rescue, refill,
//! Redis list rebuild), pools shrinking and growing (a replica with a lowered
//! target and one with a raised target), template edits and a template
//! delete, short leases renewed by heartbeats. Then the invariants of
//! `prewarm_tests::invariants` must hold for every 201.
//!
//! The forced interleavings are in `interleavings.rs`; this test finds the
//! ones nobody thought of.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prewarm_tests::invariants::{check_designs, check_pool_list};
use prewarm_tests::{error_code, Options, TestStack};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;
use shared_domain::design::Design;
use shared_domain::ids::TemplateId;
use tokio_util::sync::CancellationToken;

const RUN: Duration = Duration::from_secs(10);
/// Designs the run goes on for past `RUN`, up to `MAX_RUN`.
const MIN_DESIGNS: usize = 30;
const MAX_RUN: Duration = Duration::from_secs(90);
const CLIENTS: usize = 4;

#[derive(Default)]
struct Counts {
    gc_passes: AtomicUsize,
    gc_deleted: AtomicUsize,
    ticks: AtomicUsize,
    rescued: AtomicUsize,
    reindexed: AtomicUsize,
    resizes: AtomicUsize,
    edits: AtomicUsize,
    refused: AtomicUsize,
    unavailable: AtomicUsize,
}

/// Runs `step` until `stop`, counting nothing itself.
fn looping<F, Fut>(stop: &CancellationToken, mut step: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            step().await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_design_loses_an_object_while_every_background_mechanism_runs() {
    let stack = TestStack::spawn(Options {
        pool_target: 3,
        env: vec![("PREWARM_POOL__LEASE_SECS".into(), "1".into())],
        worker_env: vec![
            ("PREWARM_WORKER__RECONCILE_INTERVAL_MS".into(), "200".into()),
            ("PREWARM_WORKER__GC_INTERVAL_SECS".into(), "1".into()),
            ("PREWARM_WORKER__GC_GRACE_SECS".into(), "0".into()),
        ],
        ..Options::default()
    })
    .await;
    let stack = Arc::new(stack);
    let tenant = stack.create_tenant("acme", 100_000).await;
    let mut templates = Vec::new();
    for _ in 0..3 {
        templates.push(stack.create_template(&tenant, 3, "private").await);
    }
    let ids: Vec<TemplateId> = templates.iter().map(|t| t.id).collect();
    let (edited, deleted) = (ids[0], ids[2]);
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    // Background mechanisms, each its own replica.
    let gc = stack
        .reconciler(&[("PREWARM_WORKER__GC_GRACE_SECS", "0")])
        .await;
    let c = counts.clone();
    tasks.push(looping(&stop, move || {
        let (gc, c) = (gc.clone(), c.clone());
        async move {
            if let Ok(report) = gc.gc().await {
                c.gc_passes.fetch_add(1, Relaxed);
                c.gc_deleted.fetch_add(report.deleted, Relaxed);
            }
        }
    }));
    let reconciler = stack.reconciler(&[]).await;
    let c = counts.clone();
    tasks.push(looping(&stop, move || {
        let (r, c) = (reconciler.clone(), c.clone());
        async move {
            if let Ok(report) = r.tick().await {
                c.ticks.fetch_add(1, Relaxed);
                c.rescued.fetch_add(report.rescued, Relaxed);
                c.reindexed.fetch_add(report.reindexed, Relaxed);
            }
        }
    }));
    let small = stack
        .reconciler(&[("PREWARM_POOL__TARGET", "1")])
        .await
        .refiller;
    let large = stack
        .reconciler(&[("PREWARM_POOL__TARGET", "5")])
        .await
        .refiller;
    let c = counts.clone();
    let resize_ids = ids.clone();
    tasks.push(looping(&stop, move || {
        let (small, large, c, ids) = (small.clone(), large.clone(), c.clone(), resize_ids.clone());
        async move {
            let t = ids[rand::rng().random_range(0..ids.len())];
            let refiller = if rand::rng().random_bool(0.5) {
                small
            } else {
                large
            };
            let _ = refiller.refill(t).await;
            c.resizes.fetch_add(1, Relaxed);
        }
    }));
    let c = counts.clone();
    let edit_stack = stack.clone();
    let edit_key = tenant.key.clone();
    tasks.push(looping(&stop, move || {
        let (s, c, key) = (edit_stack.clone(), c.clone(), edit_key.clone());
        async move {
            let n = c.edits.fetch_add(1, Relaxed);
            let resp = s
                .http
                .patch(s.url(&format!("/templates/{edited}")))
                .bearer_auth(key)
                .json(&json!({ "layout": { "edit": n } }))
                .send()
                .await
                .expect("patch");
            assert_eq!(resp.status(), StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }));

    // Clients.
    let made = Arc::new(std::sync::Mutex::new(Vec::<Design>::new()));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (s, tenant, ids, made, c) = (
            stack.clone(),
            tenant.clone(),
            ids.clone(),
            made.clone(),
            counts.clone(),
        );
        clients.push(tokio::spawn(async move {
            // RUN at least, and on until enough designs to mean something
            // (a machine busy with the rest of the suite makes fewer).
            while started.elapsed() < RUN
                || (made.lock().unwrap().len() < MIN_DESIGNS && started.elapsed() < MAX_RUN)
            {
                let t = ids[rand::rng().random_range(0..ids.len())];
                let resp = s.post_design(&tenant, t).await;
                if resp.status() == StatusCode::CREATED {
                    let design: Design = resp.json().await.unwrap();
                    made.lock().unwrap().push(design);
                    continue;
                }
                let (status, code) = error_code(resp).await;
                // S3 slower than the copy timeout (the local S3 server on a
                // machine busy with the whole suite) is a clear 503 that
                // makes nothing; the checks below still find every design's
                // objects.
                if status == StatusCode::SERVICE_UNAVAILABLE && code == "object_store_unavailable" {
                    c.unavailable.fetch_add(1, Relaxed);
                    continue;
                }
                // Only the deleted template may refuse ("not found"), and the
                // edited one if it kept changing under three attempts in a row.
                let allowed = (t == deleted && code == "template_not_found")
                    || (t == edited && code == "template_changed");
                assert!(allowed, "design of {t}: {status} {code}");
                c.refused.fetch_add(1, Relaxed);
            }
        }));
    }
    tokio::time::sleep(RUN / 2).await;
    let resp = stack
        .http
        .delete(stack.url(&format!("/templates/{deleted}")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(RUN / 2).await;
    for client in clients {
        client.await.expect("a client panicked");
    }
    stop.cancel();
    for task in tasks {
        task.await.expect("a loop panicked");
    }

    // Quiet now: one last pass makes the lists match the ledger.
    stack
        .reconciler(&[])
        .await
        .tick()
        .await
        .expect("final tick");
    let made = made.lock().unwrap().clone();
    let checked = check_designs(&stack, tenant.id, &made).await;
    for t in &ids {
        check_pool_list(&stack, *t, true).await;
    }
    eprintln!(
        "concurrent run: {} designs ({} objects HEADed, 0 lost), {} refused after delete, {} S3 timeouts; \
         {} GC passes ({} objects deleted), {} reconciler passes ({} rescued, {} lists rebuilt), \
         {} resizes, {} edits",
        checked.designs,
        checked.objects,
        counts.refused.load(Relaxed),
        counts.unavailable.load(Relaxed),
        counts.gc_passes.load(Relaxed),
        counts.gc_deleted.load(Relaxed),
        counts.ticks.load(Relaxed),
        counts.rescued.load(Relaxed),
        counts.reindexed.load(Relaxed),
        counts.resizes.load(Relaxed),
        counts.edits.load(Relaxed),
    );
    assert!(checked.designs > 20, "too few designs to mean anything");
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.finish().await,
        Err(_) => panic!("stack still shared"),
    }
}
