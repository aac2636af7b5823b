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
//! ([`POLL`]): librdkafka is handed the whole second, so (within the
//! kernel's timer slack) no time is left to spin in (strace: one futex wait
//! per poll). What would still spin is the
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

/// One wait of the polling thread: a second plus a margin, so that
/// librdkafka is handed the whole 1,000 ms (not 999 after truncation) as
/// long as less than the margin passes between `poll` setting its deadline
/// and handing over the time left (well under a microsecond unless the
/// thread is preempted there). That wait then ends at most the margin
/// before the deadline; the kernel wakes a sleeping thread up to 50 µs late
/// (its default timer slack), so in practice nothing is left to spin in,
/// and at most 20 µs a second is. An event ends the wait at once, so the
/// length only bounds how long the thread outlives the producer's last
/// handle.
pub const POLL: Duration = Duration::from_micros(1_000_020);

/// Which deliveries librdkafka reports back (`delivery.report.only.error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    /// Failed deliveries only: nothing comes back in normal operation, so
    /// the polling thread sleeps through its one-second waits. `send_acked`
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
    /// How long an acked send waits for its report: `message.timeout.ms`
    /// plus a margin, so a polling thread that died cannot hang a sender.
    ack_timeout: Duration,
    /// The polling thread's name.
    thread: String,
    _stop: Arc<StopOnDrop>,
}

/// Polling threads are named `kafka-poll-<n>` (15 bytes at most, the
/// kernel's limit), `n` counting this process's producers.
static PRODUCERS: AtomicUsize = AtomicUsize::new(0);

/// A waiter's entry, removed when its sender is done or dropped (a
/// cancelled send's report is then counted and logged as a fire-and-forget
/// one's).
struct Waiter<'a> {
    deliveries: &'a Deliveries,
    ticket: usize,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.deliveries
            .waiters
            .lock()
            .expect("waiters")
            .remove(&self.ticket);
    }
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
        // librdkafka's default is 300 s; 0 means no limit.
        let message_timeout = config
            .get("message.timeout.ms")
            .and_then(|ms| ms.parse().ok())
            .filter(|ms| *ms > 0)
            .unwrap_or(300_000);
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
        let n = PRODUCERS.fetch_add(1, Ordering::Relaxed) % 10_000;
        let thread = format!("kafka-poll-{n}");
        {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name(thread.clone())
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
            ack_timeout: Duration::from_millis(message_timeout) + Duration::from_secs(5),
            thread,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// The polling thread's name (`kafka-poll-<n>`), as `/proc` shows it.
    pub fn polling_thread(&self) -> &str {
        &self.thread
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
    /// then waits for the delivery report (which `message.timeout.ms`
    /// bounds; 5 s more, and it gives up, should the polling thread be gone).
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
        let _waiter = Waiter { deliveries, ticket };
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
                Err((e, _)) => return Err(e),
            }
        }
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(report) => report.unwrap_or(Err(KafkaError::Canceled)),
            Err(_) => Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
        }
    }

    /// Waits for buffered messages to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}
