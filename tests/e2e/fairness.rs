//! One tenant's load costs the others at most a constant (I13): shared
//! capacity in the API is bounded per company.

use std::time::Duration;

use futures::future::join_all;
use prewarm_testkit::fault_proxy::{FaultProxy, Faults};
use prewarm_tests::{error_code, Options, TestStack};
use shared_domain::design::{Design, ServedFrom};
use shared_domain::object_keys::DESIGNS_PREFIX;

/// A company's cold designs in flight are bounded per replica
/// (`serving.cold_designs_per_company`): one more is answered 503 `busy`
/// before anything is copied, and another company's cold design is made
/// meanwhile -- it does not queue behind the first one's misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_companys_cold_designs_are_bounded_and_another_still_copies() {
    let proxy = FaultProxy::start(0, "http://127.0.0.1:9000", Faults::default()).unwrap();
    let stack = TestStack::spawn(Options {
        // No pools: every design copies.
        worker: false,
        env: vec![
            ("PREWARM_S3__ENDPOINT".into(), proxy.url()),
            (
                "PREWARM_SERVING__COLD_DESIGNS_PER_COMPANY".into(),
                "2".into(),
            ),
        ],
        ..Options::default()
    })
    .await;
    let greedy = stack.create_tenant("greedy", 1000).await;
    let other = stack.create_tenant("other", 1000).await;
    let big = stack.create_template(&greedy, 4, "private").await;
    let small = stack.create_template(&other, 2, "private").await;
    // Each copy takes 600 ms: the greedy company's eight requests are all
    // in flight while its first two copy.
    proxy.set(Faults {
        delay: Duration::from_millis(600),
        ..Faults::default()
    });
    let greedy_calls = join_all((0..8).map(|_| stack.post_design(&greedy, big.id)));
    let other_call = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stack.post_design(&other, small.id).await
    };
    let (greedy_answers, other_answer) = tokio::join!(greedy_calls, other_call);

    assert_eq!(other_answer.status(), 201, "the other company's design");
    let design: Design = other_answer.json().await.unwrap();
    assert_eq!(design.served_from, ServedFrom::Copy);
    let (mut made, mut busy) = (0, 0);
    for answer in greedy_answers {
        match answer.status().as_u16() {
            201 => made += 1,
            503 => {
                assert!(answer.headers().contains_key("retry-after"));
                assert_eq!(error_code(answer).await.1, "busy");
                busy += 1;
            }
            other => panic!("greedy design answered {other}"),
        }
    }
    assert!(made >= 2 && busy >= 4, "made {made}, busy {busy}");
    assert_eq!(made + busy, 8);
    // The refused requests copied nothing; the slots came back.
    let stored = stack.objects.list(DESIGNS_PREFIX).await.unwrap();
    assert_eq!(stored.len(), made * 4 + 2, "objects under designs/");
    proxy.set(Faults::default());
    assert_eq!(stack.post_design(&greedy, big.id).await.status(), 201);
    proxy.stop().await;
    stack.finish().await;
}
