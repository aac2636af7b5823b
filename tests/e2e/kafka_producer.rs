//! The Kafka producer under the warm-up publisher (`prewarm_store::kafka_producer`):
//! its polling thread sleeps while there is nothing to serve, also right
//! after serving a delivery, and a publisher that is not told of successful
//! deliveries refuses to wait for one.

use std::collections::BTreeSet;
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

/// This process's producer polling threads, by thread id.
fn poll_threads() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| {
            let t = t.ok()?.path();
            let name = std::fs::read_to_string(t.join("comm")).ok()?;
            let tid = t.file_name()?.to_string_lossy().into_owned();
            (name.trim() == "kafka-poll").then_some(tid)
        })
        .collect()
}

/// CPU nanoseconds a thread of this process has run (`schedstat`), while
/// it lives.
fn cpu_ns(tid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_polling_thread_sleeps_while_idle() {
    let topic = format!("prewarm-test-producer-{}", uuid::Uuid::new_v4());
    let settings = settings(&topic);
    warmup_topic::ensure_topic(&settings).await.expect("topic");
    let before = poll_threads();
    let publisher = WarmupPublisher::new(&settings).expect("publisher");
    let acked = WarmupPublisher::acked(&settings).expect("acked publisher");

    // Each serves a delivery first: one fire-and-forget, one acked.
    let request = WarmupRequest::new(TemplateId::new(), 1, Reason::PoolPop, 0);
    assert!(publisher.publish(&request));
    acked
        .dead_letter(&topic, &request, "test", 1)
        .await
        .expect("the broker acks a dead letter");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A thread names itself once it runs, so they are looked for now.
    // Other tests' threads may have started since: each polling thread
    // spins alike when broken, so the quietest of them is the measure.
    let ours: Vec<String> = poll_threads().difference(&before).cloned().collect();
    assert!(ours.len() >= 2, "polling threads not found: {ours:?}");
    let start: Vec<Option<u64>> = ours.iter().map(|t| cpu_ns(t)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent_ms = ours
        .iter()
        .zip(&start)
        .filter_map(|(t, s)| Some((cpu_ns(t)? - (*s)?) as f64 / 1e6))
        .fold(f64::MAX, f64::min);
    // A thread polling with rdkafka's `poll(100 ms)` spends ~9 ms a second
    // in non-blocking polls (the last sub-millisecond of every call); a
    // thread that sleeps in librdkafka's wait spends well under 1 ms.
    assert!(
        spent_ms < 2.0,
        "an idle polling thread ran {spent_ms:.2} ms in 2 s: it spins"
    );
    publisher.flush(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_told_only_of_failures_refuses_to_wait_for_an_ack() {
    let topic = format!("prewarm-test-producer-{}", uuid::Uuid::new_v4());
    let publisher = WarmupPublisher::new(&settings(&topic)).expect("publisher");
    let request = WarmupRequest::new(TemplateId::new(), 1, Reason::PoolPop, 0);
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        publisher.dead_letter(&topic, &request, "test", 1),
    )
    .await
    .expect("answers at once: a success would never be reported");
    assert!(answer.is_err(), "{answer:?}");
}
