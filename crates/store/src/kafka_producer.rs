//! A Kafka producer whose polling thread sleeps while there is nothing to
//! serve.
//!
//! rdkafka's `FutureProducer` (and the `ThreadedProducer` under it) polls
//! its event queue in a thread with `poll(100 ms)`. `BaseProducer::poll`
//! loops until an `Instant` deadline and hands librdkafka the remaining
//! time truncated to whole milliseconds, so the last sub-millisecond of
//! every call -- and of the time left after each delivery report -- is
//! spent in non-blocking polls: measured here, ~6 ms of CPU a second in an
//! idle API and 8.8% of its CPU under load (docs/design.md, "Kafka
//! producer").
//!
//! This producer keeps `BaseProducer` and polls it from a thread of its own
//! with a deadline a few microseconds past a whole number of milliseconds
//! ([`POLL`]): the one wait librdkafka is given ends at or after the
//! deadline, so no time is left to spin in (strace: one futex wait per
//! poll). What would still spin is the
//! remainder after an event, so an event is made rare: the API's
//! fire-and-forget requests ask librdkafka for reports of failed deliveries
//! only ([`Reports::FailuresOnly`]); a producer that waits for acks
//! ([`Reports::All`], the worker's dead letters) is idle between them.
//!
//! Delivery reports go to [`Deliveries`]: a waiter registered by
//! [`Producer::send_acked`] is woken with the outcome; any other failed
//! delivery is counted and logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use shared_domain::error::Chain;
use tokio::sync::oneshot;

/// One wait of the polling thread: a second plus a margin that covers the
/// time from `poll`'s deadline being set to librdkafka being handed the
/// remaining milliseconds (well under a microsecond unless the thread is
/// preempted there), so that wait ends at or past the deadline. An event
/// ends the wait at once, so the length only bounds how long the thread
/// outlives the producer's last handle.
pub const POLL: Duration = Duration::from_micros(1_000_020);

/// Which deliveries librdkafka reports back (`delivery.report.only.error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    /// Failed deliveries only: nothing comes back in normal operation, so
    /// the polling thread sleeps between its 100 ms waits. `send_acked`
    /// is refused (a success would never be reported).
    FailuresOnly,
    /// Every delivery: for a producer that waits for acks.
    All,
}

/// The producer's delivery reports: waiters of acked sends by ticket, and
/// the count of failed fire-and-forget deliveries.
pub struct Deliveries {
    waiters: Mutex<HashMap<usize, oneshot::Sender<KafkaResult<()>>>>,
    next_ticket: AtomicUsize,
    undelivered: IntCounter,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// 0 for a fire-and-forget message, else the ticket of its waiter.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        if ticket != 0 {
            let waiter = self.waiters.lock().expect("waiters").remove(&ticket);
            if let Some(waiter) = waiter {
                // The sender gave up (timed out) if this fails: nothing to do.
                let _ = waiter.send(outcome);
                return;
            }
        }
        if let Err((e, message)) = result {
            self.undelivered.inc();
            let key = message
                .key()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            tracing::warn!(topic = message.topic(), %key, error = %Chain(e), "kafka message not delivered; kafka degraded");
        }
    }
}

/// The polling thread's stop flag: set when the last [`Producer`] clone is
/// dropped; the thread sees it within one [`POLL`] (a second) and exits, dropping the
/// client (which purges and flushes for up to 500 ms). Not joined: a drop
/// on an async thread does not block.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A `BaseProducer` with its own quiet polling thread (module docs).
#[derive(Clone)]
pub struct Producer {
    producer: Arc<BaseProducer<Deliveries>>,
    reports: Reports,
    _stop: Arc<StopOnDrop>,
}

impl Producer {
    /// Creates the client from `config` (to which the report setting is
    /// added) and starts its polling thread. `undelivered` counts failed
    /// deliveries that no `send_acked` waits for.
    pub fn new(
        config: &ClientConfig,
        reports: Reports,
        undelivered: IntCounter,
    ) -> KafkaResult<Self> {
        let mut config = config.clone();
        config.set(
            "delivery.report.only.error",
            (reports == Reports::FailuresOnly).to_string(),
        );
        let deliveries = Deliveries {
            waiters: Mutex::default(),
            next_ticket: AtomicUsize::new(1),
            undelivered,
        };
        let producer: Arc<BaseProducer<Deliveries>> =
            Arc::new(config.create_with_context(deliveries)?);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kafka-poll".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL);
                    }
                })
                .map_err(|e| KafkaError::ClientCreation(format!("polling thread: {e}")))?;
        }
        Ok(Self {
            producer,
            reports,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// Asks the broker for the topic's metadata (blocks up to `timeout`).
    pub fn fetch_metadata(&self, topic: &str, timeout: Duration) -> KafkaResult<()> {
        self.producer
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map(|_| ())
    }

    /// Enqueues a message and returns at once (an error: librdkafka's
    /// queue is full or the producer is failing); a failed delivery is
    /// counted and logged by [`Deliveries`].
    pub fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> KafkaResult<()> {
        let record = BaseRecord::with_opaque_to(topic, 0)
            .key(key)
            .payload(payload)
            .headers(headers);
        self.producer.send(record).map_err(|(e, _)| e)
    }

    /// Sends a message and waits for the broker's ack: while librdkafka's
    /// queue is full it tries again every 100 ms for up to `queue_timeout`,
    /// then waits for the delivery report (bounded by `message.timeout.ms`).
    pub async fn send_acked(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
        queue_timeout: Duration,
    ) -> KafkaResult<()> {
        if self.reports != Reports::All {
            return Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidArgument,
            ));
        }
        let deliveries = self.producer.context();
        let ticket = deliveries.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        deliveries
            .waiters
            .lock()
            .expect("waiters")
            .insert(ticket, tx);
        let deadline = tokio::time::Instant::now() + queue_timeout;
        let mut record = BaseRecord::with_opaque_to(topic, ticket)
            .key(key)
            .payload(payload)
            .headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if tokio::time::Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((e, _)) => {
                    deliveries.waiters.lock().expect("waiters").remove(&ticket);
                    return Err(e);
                }
            }
        }
        rx.await.unwrap_or(Err(KafkaError::Canceled))
    }

    /// Waits for buffered messages to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}
