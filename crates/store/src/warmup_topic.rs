//! The Kafka warm-up topic: a non-blocking publisher for the API (on the
//! quiet producer of `kafka_producer`), the worker's consumer and dead
//! letters, topic creation for dev/tests, and the client configuration
//! both services use.

use shared_domain::error::Chain;
use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use shared_domain::warmup::WarmupRequest;

use crate::kafka_producer::{Producer, Reports};

/// How to reach the broker and which topic carries warm-up requests.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Create the topic at start when missing (dev, tests; off where topics
    /// are provisioned by the platform).
    #[serde(default)]
    pub create_topic: bool,
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// How long a produced message may wait for delivery before it is dropped
    /// (and logged): warm-up requests are hints, the reconciler heals gaps.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// Where refills that keep failing are parked, with their reason
    /// (default: `<topic>.dead-letter`).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Any librdkafka client property, passed through as is and applied
    /// last (over Prewarm's own): `security.protocol`, `ssl.*`, `sasl.*`,
    /// timeouts... In names, `_` stands for `.` (environment variables
    /// cannot hold dots): `PREWARM_KAFKA__PROPERTIES__SECURITY_PROTOCOL=ssl`.
    /// Serialized with values hidden: they may hold a SASL password.
    #[serde(default, serialize_with = "names_only")]
    pub properties: BTreeMap<String, String>,
}

fn names_only<S: serde::Serializer>(
    properties: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(properties.keys().map(|k| (k, "<hidden>")))
}

impl KafkaSettings {
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dead-letter", self.topic))
    }
}

fn default_topic() -> String {
    "prewarm.warmup".into()
}
fn default_partitions() -> i32 {
    4
}
fn default_message_timeout_ms() -> u64 {
    5_000
}

/// The client properties every Kafka client of Prewarm starts from; the
/// caller adds its own, then [`with_properties`] applies `kafka.properties`
/// last, so an operator's property always wins.
pub fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.max.ms", "2000");
    config
}

/// Applies `kafka.properties` (names with `_` read as `.`), over whatever
/// the config holds.
pub fn with_properties<'a>(
    config: &'a mut ClientConfig,
    settings: &KafkaSettings,
) -> &'a mut ClientConfig {
    for (name, value) in &settings.properties {
        config.set(name.replace('_', "."), value);
    }
    config
}

/// How the worker's consumer group reads the topic (`worker.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct ConsumerTuning<'a> {
    pub group_id: &'a str,
    pub max_poll_interval_ms: u64,
    pub fetch_wait_ms: u64,
}

/// The warm-up topic's consumer in `tuning.group_id`, not yet subscribed
/// (a worker built for its passes alone must not join the group: the group
/// would hand it partitions nobody consumes). Offsets are committed every
/// second but stored by the caller, after the refill is durable; `context`
/// gets librdkafka's statistics every 5 s (the consumer-lag gauge).
pub fn consumer<C: ConsumerContext + 'static>(
    settings: &KafkaSettings,
    tuning: ConsumerTuning<'_>,
    context: C,
) -> Result<StreamConsumer<C>, KafkaError> {
    let mut config = base_config(settings);
    config
        .set("group.id", tuning.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set(
            "max.poll.interval.ms",
            tuning.max_poll_interval_ms.to_string(),
        )
        .set("fetch.wait.max.ms", tuning.fetch_wait_ms.to_string())
        .set("statistics.interval.ms", "5000");
    with_properties(&mut config, settings).create_with_context(context)
}

/// Creates the warm-up topic and its dead-letter topic unless they exist.
pub async fn ensure_topic(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        with_properties(&mut base_config(settings), settings).create()?;
    let dead_letter = settings.dead_letter_topic();
    let topics = [
        NewTopic::new(
            &settings.topic,
            settings.partitions,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(&dead_letter, 1, TopicReplication::Fixed(1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // One topic per request: simpler for Kafka-protocol brokers other than Kafka.
    for topic in &topics {
        for result in admin.create_topics([topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    tracing::error!(topic = %name, ?code, "create topic");
                    return Err(KafkaError::AdminOp(code));
                }
            }
        }
    }
    Ok(())
}

/// Publishes warm-up requests keyed by template id. `publish` only enqueues
/// into librdkafka's buffer and returns, so the request path never waits
/// for the broker; a failed delivery is counted and logged by the
/// producer's polling thread.
#[derive(Clone)]
pub struct WarmupPublisher {
    producer: Producer,
    topic: String,
    /// `prewarm_warmup_requests_total{outcome}`: queued, coalesced (merged
    /// into a request already waiting), dropped (local queue full or
    /// producer failing), undelivered (the broker never acked).
    outcomes: IntCounterVec,
}

impl WarmupPublisher {
    /// The API's publisher: fire and forget, only failed deliveries are
    /// reported back.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Self::with_reports(settings, Reports::FailuresOnly)
    }

    /// The worker's: every delivery is reported, so [`dead_letter`]
    /// (Self::dead_letter) can wait for the broker's ack.
    pub fn acked(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Self::with_reports(settings, Reports::All)
    }

    fn with_reports(settings: &KafkaSettings, reports: Reports) -> Result<Self, KafkaError> {
        let mut config = base_config(settings);
        config
            .set(
                "message.timeout.ms",
                settings.message_timeout_ms.to_string(),
            )
            // Small linger: batches bursts of pops without adding visible latency.
            .set("linger.ms", "2")
            .set("queue.buffering.max.messages", "100000");
        let outcomes = IntCounterVec::new(
            Opts::new(
                "prewarm_warmup_requests_total",
                "Warm-up requests by outcome: queued, coalesced (merged into one already waiting), dropped (never queued), undelivered (no broker ack). \
                 Dropped or undelivered requests mean Kafka is degraded; the reconciler heals the pools.",
            ),
            &["outcome"],
        )
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        let producer = Producer::new(
            with_properties(&mut config, settings),
            reports,
            outcomes.with_label_values(&["undelivered"]),
        )?;
        Ok(Self {
            producer,
            topic: settings.topic.clone(),
            outcomes,
        })
    }

    /// Readiness: the broker answers a metadata request for the topic within
    /// `timeout` (run off the async threads; librdkafka blocks).
    pub async fn ping(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || producer.fetch_metadata(&topic, timeout))
            .await
            .map_err(|_| KafkaError::MetadataFetch(RDKafkaErrorCode::Fail))
            .and_then(|r| r)
    }

    /// The name of the producer's polling thread, as `/proc` shows it.
    pub fn polling_thread(&self) -> &str {
        self.producer.polling_thread()
    }

    /// Counts a request merged into one already waiting to be sent
    /// (`outcome="coalesced"`).
    pub fn count_coalesced(&self) {
        self.outcomes.with_label_values(&["coalesced"]).inc();
    }

    /// Exposes this producer's outcome counter in `registry`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.outcomes.clone()))
    }

    /// Enqueues one request; never blocks. Returns false if it was dropped
    /// (local queue full or producer failing), which the caller counts.
    /// The caller's trace goes along, so the refill joins it.
    pub fn publish(&self, request: &WarmupRequest) -> bool {
        self.publish_traced(request, prewarm_service_kit::telemetry::inject())
    }

    /// [`publish`](Self::publish) with a trace context captured earlier
    /// (`telemetry::inject`), for a request sent after its caller returned.
    pub fn publish_traced(&self, request: &WarmupRequest, trace: Vec<(String, String)>) -> bool {
        let payload = request.to_bytes();
        let mut headers = OwnedHeaders::new();
        for (key, value) in trace {
            headers = headers.insert(Header {
                key: &key,
                value: Some(&value),
            });
        }
        let key = request.template_id.as_bytes();
        match self.producer.send(&self.topic, key, &payload, headers) {
            Ok(()) => {
                self.outcomes.with_label_values(&["queued"]).inc();
                true
            }
            Err(e) => {
                self.outcomes.with_label_values(&["dropped"]).inc();
                tracing::warn!(template = %request.template_id, error = %Chain(&e), "warm-up request dropped; kafka degraded");
                false
            }
        }
    }

    /// Parks a request that keeps failing on the dead-letter topic, with its
    /// reason and attempt count in headers; waits for the broker's ack.
    pub async fn dead_letter(
        &self,
        topic: &str,
        request: &WarmupRequest,
        reason: &str,
        attempts: u32,
    ) -> Result<(), KafkaError> {
        let payload = request.to_bytes();
        let attempts = attempts.to_string();
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: "reason",
                value: Some(reason.as_bytes()),
            })
            .insert(rdkafka::message::Header {
                key: "attempts",
                value: Some(attempts.as_bytes()),
            });
        self.producer
            .send_acked(
                topic,
                request.template_id.as_bytes(),
                &payload,
                headers,
                Duration::from_secs(5),
            )
            .await
    }

    /// Waits for buffered messages to be delivered (graceful shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %Chain(&e), "flushing warm-up producer");
        }
    }
}
