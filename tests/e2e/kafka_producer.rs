//! The Kafka producer under the warm-up publisher (`prewarm_store::kafka_producer`):
//! its polling thread sleeps while there is nothing to serve, also once it
//! has served a delivery, and a publisher that is not told of successful
//! deliveries refuses to wait for one.

use shared_domain::ids::TemplateVersion;
use shared_domain::pool::PoolKey;
use std::time::Duration;

use prewarm_store::warmup_topic::{self, KafkaSettings, WarmupPublisher};
use prewarm_tests::env_or;
use shared_domain::ids::TemplateId;
use shared_domain::warmup::{Reason, WarmupRequest};

fn settings(topic: &str) -> KafkaSettings {
    serde_json::from_value(serde_json::json!({
        "brokers": env_or("PREWARM_TEST_KAFKA", "127.0.0.1:9092"),
        "topic": topic,
        "create_topic": true,
    }))
    .expect("kafka settings")
}

/// CPU nanoseconds the thread of this process named `name` has run
/// (`schedstat`), once it has named itself (it does so when it starts).
async fn cpu_ns(name: &str) -> u64 {
    for _ in 0..50 {
        for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let task = task.expect("task").path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim() == name {
                let stat = std::fs::read_to_string(task.join("schedstat"))
                    .expect("schedstat: the kernel keeps no per-thread CPU time here");
                return stat.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no thread named {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_polling_thread_sleeps_while_idle() {
    let topic = format!("prewarm-test-producer-{}", uuid::Uuid::new_v4());
    let settings = settings(&topic);
    warmup_topic::ensure_topic(&settings).await.expect("topic");
    let publisher = WarmupPublisher::new(&settings).expect("publisher");
    let acked = WarmupPublisher::acked(&settings).expect("acked publisher");

    // Each serves a delivery first: one fire-and-forget (reported to the
    // acked kind only), one acked.
    let request = WarmupRequest::new(
        PoolKey::new(TemplateId::new(), TemplateVersion(1)),
        Reason::PoolPop,
        0,
    );
    assert!(publisher.publish(&request));
    assert!(acked.publish(&request));
    acked
        .dead_letter(&topic, &request, "test", 1)
        .await
        .expect("the broker acks a dead letter");
    // The poll that served them ends (`kafka_producer::POLL`): what comes
    // after is idle.
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    for p in [&publisher, &acked] {
        let thread = p.polling_thread();
        let start = cpu_ns(thread).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let spent_ms = (cpu_ns(thread).await - start) as f64 / 1e6;
        // A thread polling with rdkafka's `poll(100 ms)` spends ~9 ms a
        // second in non-blocking polls (the last sub-millisecond of every
        // call); a thread that sleeps in librdkafka's wait, well under 1 ms.
        assert!(
            spent_ms < 2.0,
            "the idle polling thread {thread} ran {spent_ms:.2} ms in 2 s: it spins"
        );
    }
    publisher.flush(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_told_only_of_failures_refuses_to_wait_for_an_ack() {
    let topic = format!("prewarm-test-producer-{}", uuid::Uuid::new_v4());
    let publisher = WarmupPublisher::new(&settings(&topic)).expect("publisher");
    let request = WarmupRequest::new(
        PoolKey::new(TemplateId::new(), TemplateVersion(1)),
        Reason::PoolPop,
        0,
    );
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        publisher.dead_letter(&topic, &request, "test", 1),
    )
    .await
    .expect("answers at once: a success would never be reported");
    assert!(answer.is_err(), "{answer:?}");
}
