//! The running total of ready items behind `prewarm_pool_ready_items_total`
//! (issue 15): every worker replica's depth pass records the ready items of
//! the templates it checked and moves the total by the difference, instead
//! of counting every pooled item. Checked against the ledger's exact count
//! while designs are claimed and two replicas' passes run at once, and with
//! the dangerous interleaving forced: a replica that read the ledger before
//! a design was made must not record over one that read it after.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures::future::join_all;
use prewarm_store::db::{pool_depths, pool_items};
use prewarm_store::pause::at;
use prewarm_tests::{Options, TestStack};
use shared_domain::design::ServedFrom;

const FILL: Duration = Duration::from_secs(30);

/// A stack whose worker, if any, only consumes warm-up messages.
fn quiet(worker: bool) -> Options {
    crate::background::quiet(2, worker)
}

#[derive(diesel::QueryableByName)]
struct Sum {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `(running total, sum of the recorded rows, exact count of ready items)`.
async fn totals(stack: &TestStack) -> (i64, i64, i64) {
    let mut conn = stack.db.conn().await.unwrap();
    let total = pool_depths::total(&mut conn).await.unwrap();
    let rows = diesel::sql_query("SELECT coalesce(sum(ready), 0)::bigint AS n FROM pool_depths")
        .get_result::<Sum>(&mut conn)
        .await
        .unwrap()
        .n;
    let exact = pool_items::ready_total(&mut conn).await.unwrap();
    (total, rows, exact)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_read_the_depths_earlier_never_records_over_a_later_one() {
    let stack = TestStack::spawn(quiet(false)).await;
    let (tenant, templates) = stack.tenant_with_templates("acme", 3, 1).await;
    let mut reconciler = stack.reconciler(&[]).await;
    reconciler.commit_lag = Duration::ZERO;
    reconciler.tick().await.unwrap();
    let (one, two) = (stack.depths(&[]).await, stack.depths(&[]).await);
    assert_eq!(totals(&stack).await, (0, 0, 6), "before any pass");

    // One replica reads every template's depth (its sweep page covers all
    // three) and is held before recording them...
    let mut gate = stack.pause.arm(at::DEPTHS_READ);
    let first = tokio::spawn(async move { one.pass().await });
    gate.reached().await;
    // ...a design takes an item, and the other replica's pass starts: it
    // waits for the first to record, then reads what the design left.
    let design = stack.create_design(&tenant, templates[0]).await;
    assert_eq!(design.served_from, ServedFrom::Pool);
    let second = tokio::spawn(async move { two.pass().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "two replicas read and recorded depths at once"
    );
    gate.release();
    assert_eq!(
        first.await.unwrap().unwrap().total,
        6,
        "read before the design"
    );
    assert_eq!(second.await.unwrap().unwrap().total, 5, "read after it");
    assert_eq!(totals(&stack).await, (5, 5, 5));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_stays_exact_while_two_replicas_pass_and_designs_are_claimed() {
    let stack = TestStack::spawn(quiet(true)).await;
    let (tenant, templates) = stack.tenant_with_templates("acme", 6, 1).await;
    for t in &templates {
        stack.wait_pool(&tenant, *t, 2, FILL).await;
    }
    // One template per sweep page: most of what a pass checks comes from the
    // change stream and the depleted templates it is waiting on.
    let sweep = [("PREWARM_WORKER__RECONCILE_SWEEP", "1")];
    let replicas = [stack.depths(&sweep).await, stack.depths(&sweep).await];
    let stop = tokio_util::sync::CancellationToken::new();
    let passes: Vec<_> = replicas
        .into_iter()
        .map(|depths| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    depths.pass().await.expect("depth pass");
                }
                depths
            })
        })
        .collect();
    // 24 designs from 3 clients, round robin over the templates, while the
    // worker refills what they take.
    join_all((0..3).map(|c| {
        let (stack, tenant, templates) = (&stack, &tenant, &templates);
        async move {
            for i in 0..8 {
                let template = templates[(c + i * 3) % templates.len()];
                stack.create_design(tenant, template).await;
            }
        }
    }))
    .await;
    for t in &templates {
        stack.wait_pool(&tenant, *t, 2, FILL).await;
    }
    stop.cancel();
    let mut replicas = Vec::new();
    for pass in passes {
        replicas.push(pass.await.unwrap());
    }
    let (total, rows, _) = totals(&stack).await;
    assert_eq!(total, rows, "the total drifted from the rows it sums");
    // A sweep cycle later every template has been read again: exact.
    for _ in 0..templates.len() {
        for depths in &replicas {
            depths.pass().await.unwrap();
        }
    }
    assert_eq!(totals(&stack).await, (12, 12, 12));
    stack.finish().await;
}
